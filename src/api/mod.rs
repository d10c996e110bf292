//! The local HTTP API: driver taps, status, and the operator's outbox and webhook actions, and
//! the driver page ([`page`]). Bound to loopback by default; with a token configured (required
//! off loopback) every request needs `Authorization: Bearer TOKEN`, except that a phone paired
//! with a one-time code ([`pairing`]) may use the driver's routes with its session cookie from
//! the page's own origin. Bad input gets a 4xx with `{"error", "field"}` and nothing stored.

pub mod metrics;
pub mod multipart;
pub mod page;
pub mod pairing;
mod route;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::outbox::{ListState, OutboxError};
use crate::status::{Sources, Status};
use crate::taps::{self, Taps};
use crate::webhook::sign::constant_time_eq;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Everything the tap route checks before it stores anything: the job id from the path, the
/// `Idempotency-Key` header, the body (UTF-8, JSON without a key twice, a tap that says one
/// thing). Pure, so that it is fuzzed as it is (`fuzz/fuzz_targets/api_tap.rs`).
pub fn parse_tap_request<'h>(
    job_id: &str,
    headers: &'h HeaderMap,
    body: &[u8],
) -> Result<(taps::Tap, Option<&'h str>), ApiError> {
    taps::validate_job_id(job_id)?;
    let key = idempotency_key(headers)?;
    let value =
        taps::parse_json(body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, Some(&e.field), e.message))?;
    Ok((taps::parse_tap(&value)?, key))
}

/// The `Idempotency-Key` header, if given: 1 to [`taps::MAX_IDEMPOTENCY_KEY`] visible ASCII
/// characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let k = v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= taps::MAX_IDEMPOTENCY_KEY);
            Ok(Some(k.ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    Some("Idempotency-Key"),
                    format!("must be 1 to {} visible ASCII characters", taps::MAX_IDEMPOTENCY_KEY),
                )
            })?))
        }
    }
}

/// A request body: refused at once when it announces more than [`BODY_LIMIT`], and given up on
/// when it does not arrive within `timeout` (`api.request_timeout`: a client that announces a
/// body and sends nothing holds its connection no longer than that).
async fn read_body(headers: &HeaderMap, body: Body, timeout: Duration) -> Result<axum::body::Bytes, ApiError> {
    read_body_up_to(headers, body, timeout, BODY_LIMIT).await
}

/// As [`read_body`], with another limit.
async fn read_body_up_to(
    headers: &HeaderMap,
    body: Body,
    timeout: Duration,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, Some("body"), format!("larger than {limit} bytes"));
    let announced =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            Some("body"),
            format!("did not arrive within {} s", timeout.as_secs()),
        )),
    }
}

/// Everything the handlers use; cheap to clone.
#[derive(Debug, Clone)]
pub struct Api {
    /// Tap recorder.
    pub taps: Taps,
    /// The parts' handles: the store, the fix, the clock, the endpoints and their loops (and
    /// what status is read from).
    pub sources: Sources,
    /// HTTP client for `webhook test`.
    pub client: reqwest::Client,
    /// Required bearer token, if any.
    pub token: Option<Arc<str>>,
    /// How long a request body may take to arrive (`api.request_timeout`).
    pub body_timeout: Duration,
    /// One-time pairing codes for the driver page.
    pub pairing: Arc<pairing::Pairing>,
}

/// An error answer: status, message, and the field at fault.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl ApiError {
    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Self {
        Self { status, field: field.map(String::from), message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = match &self.field {
            Some(f) => format!("{f}: {}", self.message),
            None => self.message.clone(),
        };
        (self.status, Json(json!({ "error": error, "field": self.field }))).into_response()
    }
}

impl From<crate::stops::store::ReplaceError> for ApiError {
    fn from(e: crate::stops::store::ReplaceError) -> Self {
        match e {
            crate::stops::store::ReplaceError::VersionMismatch { expected, current } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                Some("If-Match"),
                format!(
                    "the stop list is at version {current}, not {expected}: GET it again, then replace it; nothing changed"
                ),
            ),
            crate::stops::store::ReplaceError::Store(e) => e.into(),
        }
    }
}

impl From<taps::Invalid> for ApiError {
    fn from(e: taps::Invalid) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Some(&e.field), e.message)
    }
}

impl From<taps::RecordError> for ApiError {
    fn from(e: taps::RecordError) -> Self {
        match e {
            taps::RecordError::Invalid(e) => e.into(),
            taps::RecordError::Outbox(e) => e.into(),
        }
    }
}

impl From<OutboxError> for ApiError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::DiskFull => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                None,
                "disk full: the event was NOT recorded; tell dispatch by other means",
            ),
            e @ OutboxError::OverBudget { .. } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                None,
                format!("{e}; tell dispatch by other means (the budget is outbox_max_mb in the config)"),
            ),
            OutboxError::NotFound(what) => ApiError::new(StatusCode::NOT_FOUND, None, format!("not found: {what}")),
            other => {
                tracing::error!(error = %other, "storage failed; tap refused");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, None, format!("the event was NOT recorded: {other}"))
            }
        }
    }
}

/// The router.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/api/v1/jobs/{job_id}/status", post(tap))
        .route("/api/v1/status", get(status))
        .route("/api/v1/stops", get(stops_get).put(stops_put))
        .route("/api/v1/route", get(route::get))
        .route("/api/v1/route/status", post(route::post))
        .route("/metrics", get(metrics))
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/{id}/retry", post(retry))
        .route("/api/v1/deliveries/{sequence}", get(delivery))
        .route("/api/v1/events/retry-failed", post(retry_all))
        .route("/api/v1/webhooks/{name}/test", post(webhooks::test))
        .route("/api/v1/webhooks/{name}/enable", post(webhooks::enable))
        .route("/api/v1/pair/codes", post(pair_code))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, None, "no such endpoint") })
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, None, format!("{} is not allowed here", req.method()))
        })
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        .merge(page::router())
        // Pairing is how a phone gets in: no credentials asked, guesses limited.
        .route("/api/v1/pair", post(pair))
        .with_state(api)
}

async fn authorize(State(api): State<Api>, req: Request, next: Next) -> Response {
    if let Some(token) = &api.token {
        let h = req.headers();
        let given = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer).unwrap_or("");
        let by_token = constant_time_eq(given.as_bytes(), token.as_bytes());
        // A paired phone: its session cookie, on the driver's routes, from the page's origin.
        let by_session = !by_token
            && driver_route(req.method(), req.uri().path())
            && same_origin(req.method(), h)
            && h.get(header::COOKIE)
                .and_then(|v| v.to_str().ok())
                .and_then(pairing::cookie)
                .is_some_and(|t| pairing::is_session(&api.sources.outbox, t));
        if !by_token && !by_session {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                None,
                "missing or wrong bearer token (a phone pairs with a code from `curbside pair`)",
            )
            .into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

/// What the driver page uses, and all a session cookie opens.
fn driver_route(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    match *method {
        Method::GET => {
            matches!(path, "/api/v1/status" | "/api/v1/stops" | "/api/v1/route")
                || path.starts_with("/api/v1/deliveries/")
        }
        Method::POST => {
            (path.starts_with("/api/v1/jobs/") && path.ends_with("/status")) || path == "/api/v1/route/status"
        }
        _ => false,
    }
}

/// A request from the page's own origin: a browser says where a request comes from
/// (`Sec-Fetch-Site`, and `Origin` on anything but a plain GET); both must name this host.
fn same_origin(method: &axum::http::Method, h: &HeaderMap) -> bool {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site").is_some_and(|s| s != "same-origin" && s != "none") {
        return false;
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => origin == format!("http://{host}") || origin == format!("https://{host}"),
        (Some(_), None) => false,
        (None, _) => matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD),
    }
}

/// `POST /api/v1/pair/codes` (with the token): a one-time code for `curbside pair`.
async fn pair_code(State(api): State<Api>) -> Json<Value> {
    let code = api.pairing.new_code();
    Json(json!({"code": code, "expires_in_s": pairing::CODE_TTL.as_secs()}))
}

/// `POST /api/v1/pair` `{"code"}`: a right code becomes a session cookie; a wrong, expired or
/// used one is a 403 naming `code`, and too many wrong ones a 429.
async fn pair(State(api): State<Api>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    if headers.get("origin").is_some() && !same_origin(&axum::http::Method::POST, &headers) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, None, "pairing is only from the van's own page"));
    }
    let bytes = read_body(&headers, body, api.body_timeout).await?;
    let v = taps::parse_json(&bytes).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, Some(&e.field), e.message))?;
    let code = v.get("code").and_then(Value::as_str).filter(|c| c.len() <= 64).ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Some("code"), "is required: the code `curbside pair` printed")
    })?;
    match api.pairing.redeem(code) {
        Ok(()) => {}
        Err(pairing::Refused::Wrong) => {
            tracing::warn!("pairing: a wrong, expired or used code");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                Some("code"),
                "is wrong, expired or used already: ask for a new one (curbside pair)",
            ));
        }
        Err(pairing::Refused::TooMany(wait)) => {
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                Some("code"),
                format!("too many wrong codes: try again in {} s", wait.as_secs().max(1)),
            )
            .into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(wait.as_secs().max(1)));
            return Ok(resp);
        }
    }
    let (token, digest) = pairing::new_session();
    pairing::remember(&api.sources.outbox, digest).await?;
    tracing::info!("pairing: a phone paired");
    let cookie = format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        pairing::COOKIE,
        pairing::SESSION_TTL.as_secs()
    );
    let mut resp = Json(json!({"paired": true, "expires_in_s": pairing::SESSION_TTL.as_secs()})).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme is case-insensitive,
/// RFC 9110 §11.1).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

async fn tap(
    State(api): State<Api>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // A bad path is answered before any body is read.
    taps::validate_job_id(&job_id)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (tap, key, pinned) = match multipart::boundary(content_type) {
        None => {
            let bytes = read_body(&headers, body, api.body_timeout).await?;
            let (tap, key) = parse_tap_request(&job_id, &headers, &bytes)?;
            require_proof(&api.sources.pod, &tap)?;
            (tap, key, None)
        }
        Some(boundary) => {
            let (tap, key, pinned) = proof_tap(&api, &job_id, &headers, body, boundary?).await?;
            (tap, key, Some(pinned))
        }
    };
    let recorded = api.taps.record(&job_id, tap, key).await;
    if let Some(pinned) = pinned {
        // Stored files that no event took (a refused tap, or a replay of one already stored
        // with them) go now; those the event refers to stay until it is delivered.
        let shas = pinned.shas().to_vec();
        drop(pinned);
        let (media, refs) = (api.sources.media.clone(), api.sources.media_refs.clone());
        tokio::task::spawn_blocking(move || media.release(shas, |s| refs.referenced(s)));
    }
    let appended = recorded?;
    let public = api.sources.pod.upload.as_ref().map(|u| &u.public);
    let event = crate::media::upload::with_urls(&appended.event, public);
    let mut resp = (StatusCode::CREATED, Json(&event)).into_response();
    if !appended.created {
        resp.headers_mut().insert("idempotent-replayed", header::HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// The multipart tap: its files streamed to disk and committed to their content address
/// (pinned, so that nothing removes them before the event refers to them).
async fn proof_tap<'h>(
    api: &Api,
    job_id: &str,
    headers: &'h HeaderMap,
    body: Body,
    boundary: String,
) -> Result<(taps::Tap, Option<&'h str>, crate::media::Pinned), ApiError> {
    let announced =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > multipart::MAX_REQUEST) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("body"),
            format!(
                "larger than {} bytes (10 photos of 8 MiB, a signature of 1 MiB and the event)",
                multipart::MAX_REQUEST
            ),
        ));
    }
    let media = api.sources.media.clone();
    let parts = multipart::read(&media, body, boundary, api.body_timeout).await?;
    let (mut tap, key) = parse_tap_request(job_id, headers, &parts.event)?;
    let mut files = parts.files;
    // Photos first, each kind in the order it arrived (the indexes of the attachments).
    files.sort_by_key(|(s, _, _)| s.kind);
    tap.proof = files
        .iter()
        .map(|(s, t, at)| taps::Proof {
            kind: s.kind,
            sha256: crate::media::hex(&s.sha256),
            bytes: s.bytes,
            content_type: t.mime(),
            captured_at: *at,
        })
        .collect();
    require_proof(&api.sources.pod, &tap)?;
    let staged = files.into_iter().map(|(s, _, _)| s).collect();
    let pinned = tokio::task::spawn_blocking(move || media.commit(staged))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, format!("storing the files failed: {e}")))?
        .map_err(|e| match e {
            e @ crate::media::MediaError::OverBudget { .. } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                None,
                format!("{e}; the tap was NOT recorded (the budget is [pod] media_max_mb; files leave the van once uploaded)"),
            ),
            crate::media::MediaError::Io(e) => multipart::store_error(e),
        })?;
    Ok((tap, key, pinned))
}

/// `[pod] require_photo` / `require_signature`: 422 naming the missing part.
fn require_proof(pod: &crate::media::settings::Pod, tap: &taps::Tap) -> Result<(), ApiError> {
    use crate::event::AttachmentKind;
    for (required, kind, field) in [
        (&pod.require_photo, AttachmentKind::Photo, "photo"),
        (&pod.require_signature, AttachmentKind::Signature, "signature"),
    ] {
        if required.contains(&tap.status) && !tap.proof.iter().any(|p| p.kind == kind) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(field),
                format!(
                    "is required for {} ([pod] require_{field}); send the tap as multipart/form-data with a {field} part",
                    tap.status.as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// `GET /api/v1/stops`: the list, each stop with its state, and the version as `ETag`.
async fn stops_get(State(api): State<Api>) -> Response {
    let (outbox, history) = (api.sources.outbox.clone(), api.sources.history.clone());
    let list = tokio::task::spawn_blocking(move || {
        let list = crate::stops::store::current(&outbox);
        let stops: Vec<Value> = list
            .stops
            .iter()
            .map(|s| {
                let (state, status) = crate::stops::state(&history.job(&s.job_id, u64::MAX));
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["state"] = json!(state);
                v["status"] = json!(status);
                v
            })
            .collect();
        let mut out = json!({"version": list.version, "stops": stops});
        if let Some(route) = &list.route {
            // Only a day that has one shows it: a plain list reads as it always did.
            out["route"] = json!(route);
        }
        out
    })
    .await
    .unwrap_or_else(|_| json!({"version": 0, "stops": []}));
    let etag = format!("\"{}\"", list["version"]);
    let mut resp = Json(list).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// `PUT /api/v1/stops`: replaces the list (with `If-Match: "VERSION"`, only that version);
/// a bad list is a 4xx naming the field, and nothing is replaced.
async fn stops_put(State(api): State<Api>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let if_match = match headers.get(header::IF_MATCH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        Some("If-Match"),
                        "must be the list's version as GET gave it in ETag, e.g. \"3\"",
                    )
                })?,
        ),
    };
    let bytes = read_body_up_to(&headers, body, api.body_timeout, crate::stops::MAX_LIST_BYTES).await?;
    let value =
        taps::parse_json(&bytes).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, Some(&e.field), e.message))?;
    let (route, stops) = crate::stops::parse_day(&value)?;
    let count = stops.len();
    let version = crate::stops::store::replace(&api.sources.outbox, route, stops, if_match).await?;
    let mut resp = Json(json!({"version": version, "stops": count})).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

async fn status(State(api): State<Api>) -> Json<Status> {
    Json(api.sources.snapshot())
}

async fn metrics(State(api): State<Api>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics::render(&api.sources.snapshot()))
        .into_response()
}

#[derive(Deserialize)]
struct EventsQuery {
    state: Option<String>,
    limit: Option<usize>,
}

async fn events(State(api): State<Api>, Query(q): Query<EventsQuery>) -> Result<Json<Value>, ApiError> {
    let state = match q.state.as_deref() {
        None | Some("all") => None,
        Some("pending") => Some(ListState::Pending),
        Some("failed") => Some(ListState::Failed),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("state"),
                format!("must be pending, failed or all; got {other:?}"),
            ));
        }
    };
    let list = api.sources.outbox.list(state, q.limit.unwrap_or(1000).min(10_000))?;
    Ok(Json(json!({ "deliveries": list })))
}

/// `GET /api/v1/deliveries/{sequence}`: whether the event has reached every endpoint
/// (`sent`), and which it has not reached yet (`waiting`; MQTT is `mqtt:event`, the files'
/// upload `pod:upload`). The driver page's "Sent to the office".
async fn delivery(State(api): State<Api>, Path(seq): Path<String>) -> Result<Json<Value>, ApiError> {
    let seq: u64 = seq.parse().map_err(|_| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Some("sequence"), "must be a whole number (0 or more)")
    })?;
    if !api.sources.outbox.issued(seq) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, Some("sequence"), "no event has had this sequence"));
    }
    let waiting = api.sources.outbox.waiting_for(seq)?;
    Ok(Json(json!({"sequence": seq, "sent": waiting.is_empty(), "waiting": waiting})))
}

async fn retry(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Some("id"), "is not a UUID"))?;
    let moved = api.sources.outbox.retry(Some(id))?;
    Ok(Json(json!({ "retried": moved })))
}

async fn retry_all(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "retried": api.sources.outbox.retry(None)? })))
}
