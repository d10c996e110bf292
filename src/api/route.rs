//! `POST /api/v1/route/status` (a route event, durable like a tap) and `GET /api/v1/route`
//! (the day so far).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Api, ApiError, idempotency_key, read_body};
use crate::event::Source;

/// Records a route event: `{"status": "started" | ... | "ended"}` → `201` with the stored event;
/// `Idempotency-Key` as for a tap.
pub(super) async fn post(State(api): State<Api>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, api.body_timeout).await?;
    let key = idempotency_key(&headers)?;
    let value = crate::taps::parse_json(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, Some(&e.field), e.message))?;
    let status = crate::route::parse(&value)?;
    let appended = api.taps.record_route(status, key, Source::Driver, None).await?;
    let mut resp = (StatusCode::CREATED, Json(&appended.event)).into_response();
    if !appended.created {
        resp.headers_mut().insert("idempotent-replayed", header::HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// The day so far: the route (if the list has one), whether it started, ended or is on a
/// break, and its summary up to now.
pub(super) async fn get(State(api): State<Api>) -> Json<Value> {
    let (outbox, history) = (api.sources.outbox.clone(), api.sources.history.clone());
    let list = crate::stops::store::current(&outbox);
    let day = api.taps.route().day(list.route.as_ref().map(|r| r.id.as_str()));
    let counts = {
        let list = list.clone();
        tokio::task::spawn_blocking(move || crate::route::count(&list.stops, |j| history.job(j, u64::MAX)))
            .await
            .unwrap_or_default()
    };
    let now = api.taps.clock().now().0;
    let summary = day.summary(now, api.sources.odometer.total_m(), counts);
    Json(json!({
        "route": list.route,
        "started_at": day.started.map(|(at, _)| at),
        "ended_at": day.ended.map(|(at, _)| at),
        "on_break": day.on_break,
        "summary": summary,
        "stops": counts,
    }))
}
