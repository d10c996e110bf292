//! The operator's webhook routes: `POST /api/v1/webhooks/{name}/test` (a sample event through the
//! endpoint's format, sent, with what the format made) and `/enable` (after a 410).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use super::{Api, ApiError};
use crate::webhook::{self, Endpoint};

fn endpoint(api: &Api, name: &str) -> Result<Arc<Endpoint>, ApiError> {
    api.sources
        .endpoints
        .iter()
        .find(|e| e.name == name)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, Some("name"), format!("no webhook named {name:?}")))
}

pub(super) async fn test(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let ep = endpoint(&api, &name)?;
    let event = webhook::format::sample(&api.sources.vehicle_id);
    let (now, _) = api.sources.clock.now();
    let started = std::time::Instant::now();
    let ctx = webhook::format::Context { tz: api.sources.tz, history: &[], stop: None };
    let runner = webhook::format::jq::Runner::current();
    let outs = match webhook::format::render(&ep.format, &event, &ctx, &runner).await {
        Ok(outs) => outs,
        Err(e) => {
            let outcome = webhook::schedule::Outcome::Park(e.to_string());
            return Ok(Json(json!({
                "endpoint": name, "event_id": event.id, "status": null, "body": null, "duration_ms": 0,
                "delivered": false, "outcome": outcome.to_string(), "sent": [],
            })));
        }
    };
    // What the format made, as the receiver gets it (a transform's outputs, one per request).
    let made: Vec<Value> = outs.iter().map(|o| serde_json::from_slice(&o.body).unwrap_or(Value::Null)).collect();
    let Some(first) = outs.first() else {
        let outcome = webhook::schedule::Outcome::Filtered;
        return Ok(Json(json!({
            "endpoint": name, "event_id": event.id, "status": null, "body": null, "duration_ms": 0,
            "delivered": false, "outcome": outcome.to_string(), "sent": made,
        })));
    };
    // The first request goes out (a fan-out's others are shown, not sent).
    let result = match webhook::request(&api.client, &ep, first, now.timestamp()) {
        Ok(req) => Ok(req.send().await),
        Err(e) => Err(e),
    };
    let took_ms = started.elapsed().as_millis() as u64;
    // Only reports: a 410 to a test does not disable the endpoint for real events.
    let (outcome, status, body) = match result {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(String::from);
            let body = tokio::time::timeout(Duration::from_secs(5), resp.bytes()).await.ok().and_then(|r| r.ok());
            let body = body.map(|b| String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned());
            (webhook::schedule::classify(status, retry_after.as_deref(), now), Some(status), body)
        }
        Ok(Err(e)) => (webhook::classify_error(&e.without_url(), ep.delivery.timeout), None, None),
        Err(error) => (webhook::schedule::Outcome::Failed { status: None, error, retry_after: None }, None, None),
    };
    let delivered = matches!(outcome, webhook::schedule::Outcome::Delivered(_));
    Ok(Json(json!({
        "endpoint": name, "event_id": event.id, "status": status, "body": body, "duration_ms": took_ms,
        "delivered": delivered, "outcome": outcome.to_string(), "sent": made,
    })))
}

pub(super) async fn enable(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    endpoint(&api, &name)?;
    let was = api.sources.outbox.enable(&name)?;
    Ok(Json(json!({ "endpoint": name, "was_disabled": was })))
}
