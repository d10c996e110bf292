//! OwnTracks HTTP mode (`[owntracks_http]`): positions POSTed to an OwnTracks HTTP endpoint (the
//! Recorder's `/pub`, or any server that speaks the booklet's HTTP mode) instead of published
//! over MQTT.
//!
//! # Data flow
//! Every point the rules make (or a `reportLocation` asks for) goes to the outbox's telemetry
//! ring first; the sender POSTs the ring's oldest point and removes it only on a 2xx answer. So
//! what the endpoint receives is in the ring's order, which is time order; a point waiting for the
//! endpoint survives a restart; and a live point is one ring write away from the wire. One POST
//! is in flight at a time and carries one message, as the Recorder's `/pub` reads them: it stores
//! messages in the order they arrive, and POSTs in parallel could arrive out of order. A backlog
//! therefore drains at one point per round trip.
//!
//! # What the endpoint gets
//! `POST {url}`, `Content-Type: application/json`, `X-Limit-U: {user}`, `X-Limit-D: {device}`,
//! HTTP Basic auth when credentials are set, and the body of MQTT's OwnTracks mode (`_type:
//! "location"`, the booklet's names and units, `inregions`/`inrids` inside a stop). Delivery is
//! at least once: a POST whose answer is lost is sent again.
//!
//! # What its answer does
//! A 2xx means delivered. (The booklet lets an app count any answer, even a 5xx, as posted;
//! curbside keeps the point until a 2xx, so nothing is lost to a failing server.) A 2xx body
//! that is a JSON array is read as the booklet says: each `_type: "cmd"` is carried out
//! (`reportLocation`, `setWaypoints`, as over MQTT, counted the same way); other types
//! (friends' locations, cards) are for phones and ignored. An answer that is not 2xx backs off;
//! an endpoint that cannot be reached is tried every second ([`crate::reconnect`]).

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::settings::OwnTracksHttpConfig;
use super::{Deps, Point, payload};
use crate::reconnect::{Failure, Reconnect};

/// Ring points read from disk at a time.
const READ_AHEAD: usize = 256;
/// Delivered points removed from the ring together while a backlog drains (one removal per
/// point was half the time a point took on loopback); all of them as soon as nothing more is
/// waiting, before a retry's wait and at shutdown. A kill can resend at most this many.
const REMOVE_EVERY: u64 = 64;

/// The most of an answer read for commands; a longer one is delivered but its commands ignored.
pub const ANSWER_MAX: usize = 256 * 1024;

/// The HTTP client for the endpoint ([`crate::tls::http_client`]: no redirects, the system's
/// roots for `https://`).
pub fn client(cfg: &OwnTracksHttpConfig) -> anyhow::Result<reqwest::Client> {
    crate::tls::http_client((cfg.url.scheme() == "https").then(|| "owntracks_http.url".to_string()))
}

/// Runs sampler and sender until shutdown. Never fails because the endpoint is away.
pub async fn run(
    cfg: Arc<OwnTracksHttpConfig>,
    client: reqwest::Client,
    vehicle_id: String,
    deps: Deps,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(1024);
    let sampler = super::sample(deps.clone(), tx, shutdown.clone());
    let (stops_tx, stops_rx) = mpsc::channel(4);
    let applier = super::stops::apply(stops_rx, deps.outbox.clone(), deps.status.clone());
    let sender = Sender { cfg, client, tid: payload::tracker_id(&vehicle_id), deps, stops: stops_tx };
    // The applier ends when the sender (and its sender half) is gone.
    tokio::join!(sampler, sender.run(rx, shutdown), applier);
    Ok(())
}

/// The ring as the sender reads it: points read ahead (the front one is the next to send), the
/// last sequence read, and the delivered points not yet removed from the ring.
#[derive(Default)]
struct Cursor {
    ahead: VecDeque<crate::outbox::RingPoint>,
    read: Option<u64>,
    delivered: Option<u64>,
    unremoved: u64,
}

struct Sender {
    cfg: Arc<OwnTracksHttpConfig>,
    client: reqwest::Client,
    tid: String,
    deps: Deps,
    /// `setWaypoints` lists, to [`super::stops::apply`].
    stops: mpsc::Sender<Vec<u8>>,
}

impl Sender {
    async fn run(self, mut points: mpsc::Receiver<Point>, shutdown: CancellationToken) {
        let mut reconnect = Reconnect::default();
        let mut up = false;
        // Said once at `warn` per outage, then at `debug` on every retry.
        let mut said = false;
        let mut cursor = Cursor::default();
        loop {
            // Every point made so far joins the ring, behind the older ones.
            while let Ok(p) = points.try_recv() {
                super::store(&self.deps, &p);
            }
            let Some((seq, point)) = self.next(&mut cursor) else {
                self.remove_delivered(&mut cursor);
                tokio::select! {
                    p = points.recv() => match p {
                        Some(p) => super::store(&self.deps, &p),
                        None => return self.keep_all(&mut cursor, &mut points),
                    },
                    _ = shutdown.cancelled() => return self.keep_all(&mut cursor, &mut points),
                }
                continue;
            };
            // A POST cut short by shutdown leaves its point in the ring: sent again next start.
            let attempt = tokio::select! {
                r = self.post(&point) => r,
                _ = shutdown.cancelled() => return self.keep_all(&mut cursor, &mut points),
            };
            let failure = match attempt {
                Ok(answer) => {
                    cursor.ahead.pop_front();
                    cursor.delivered = Some(seq);
                    cursor.unremoved += 1;
                    if cursor.unremoved >= REMOVE_EVERY {
                        self.remove_delivered(&mut cursor);
                    }
                    if !up {
                        tracing::info!(url = %self.cfg.url, "owntracks http: delivering");
                    }
                    self.deps.status.update(|c| {
                        c.positions_published += 1;
                        if !up {
                            c.connected = true;
                            c.since = Some(Utc::now());
                            c.connects += 1;
                        }
                    });
                    (up, said) = (true, false);
                    reconnect.connected();
                    self.on_answer(&answer);
                    continue;
                }
                Err((e, failure)) => {
                    if !said {
                        tracing::warn!(error = %e, "owntracks http: not delivered; positions wait in the backlog");
                        said = true;
                    } else {
                        tracing::debug!(error = %e, "owntracks http: still not delivered");
                    }
                    self.deps.status.update(|c| {
                        if up || c.since.is_none() {
                            c.since = Some(Utc::now());
                        }
                        c.connected = false;
                        c.last_error = Some(e);
                    });
                    up = false;
                    self.remove_delivered(&mut cursor);
                    failure
                }
            };
            let until = Instant::now() + reconnect.after(failure, crate::reconnect::jitter());
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    p = points.recv() => match p {
                        Some(p) => super::store(&self.deps, &p),
                        None => return self.keep_all(&mut cursor, &mut points),
                    },
                    _ = shutdown.cancelled() => return self.keep_all(&mut cursor, &mut points),
                }
            }
        }
    }

    /// The oldest point not yet delivered that can still be sent (left at the front of
    /// `cursor.ahead` until it is); unreadable ones and ones past the age limit are passed over
    /// (and leave the ring with the delivered ones).
    fn next(&self, cursor: &mut Cursor) -> Option<(u64, Point)> {
        let oldest_kept = super::oldest_kept(&self.deps);
        loop {
            if cursor.ahead.is_empty() {
                match self.deps.outbox.ring().after(cursor.read, READ_AHEAD) {
                    Ok(more) => cursor.ahead.extend(more),
                    Err(e) => {
                        tracing::warn!(error = %e, "telemetry ring: cannot read");
                        return None;
                    }
                }
                cursor.read = cursor.ahead.back().map(|p| p.seq).or(cursor.read);
            }
            let p = cursor.ahead.front()?;
            match serde_json::from_slice::<Point>(&p.payload) {
                Ok(point) if p.tst >= oldest_kept && point.fix.position().is_some() => return Some((p.seq, point)),
                _ => {
                    cursor.delivered = Some(p.seq);
                    cursor.ahead.pop_front();
                }
            }
        }
    }

    /// Removes the delivered points from the ring.
    fn remove_delivered(&self, cursor: &mut Cursor) {
        let Some(seq) = cursor.delivered.take() else { return };
        cursor.unremoved = 0;
        if let Err(e) = self.deps.outbox.ring().remove_through(seq) {
            tracing::warn!(error = %e, "telemetry ring: delivered positions stay (sent again later)");
        }
    }

    /// One POST of one point: the answer's body on a 2xx (empty when it could not be read, or
    /// was longer than [`ANSWER_MAX`]), else what went wrong and what kind of failure it was.
    async fn post(&self, p: &Point) -> Result<Vec<u8>, (String, Failure)> {
        let body = super::owntracks_body(&self.deps, p, &self.tid)
            .and_then(|v| serde_json::to_vec(&v).ok())
            .ok_or_else(|| ("a position without coordinates".to_string(), Failure::Refused))?;
        let mut request = self
            .client
            .post(self.cfg.url.clone())
            .timeout(self.cfg.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Limit-U", &self.cfg.user)
            .header("X-Limit-D", &self.cfg.device)
            .body(body);
        if let Some((user, password)) = &self.cfg.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let mut response = request.send().await.map_err(|e| {
            let failure = if crate::webhook::send::tls_failed(&e) { Failure::Refused } else { Failure::Unreachable };
            (crate::webhook::send::error_chain(&e), failure)
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err((format!("the endpoint answered {status}"), Failure::Refused));
        }
        let mut answer = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if answer.len() + chunk.len() <= ANSWER_MAX => answer.extend_from_slice(&chunk),
                Ok(Some(_)) => {
                    tracing::info!("owntracks http: an answer longer than {ANSWER_MAX} bytes; its commands ignored");
                    return Ok(Vec::new());
                }
                Ok(None) => return Ok(answer),
                // Delivered all the same: the status said so.
                Err(e) => {
                    tracing::debug!(error = %e, "owntracks http: the answer's body was cut short; ignored");
                    return Ok(Vec::new());
                }
            }
        }
    }

    /// The answer to a delivered point: its `cmd`s are carried out; anything else is ignored.
    fn on_answer(&self, answer: &[u8]) {
        if answer.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(answer) else {
            tracing::debug!("owntracks http: an answer that is not a JSON array; ignored");
            return;
        };
        for item in items.iter().filter(|i| i.get("_type").and_then(Value::as_str) == Some("cmd")) {
            let bytes = serde_json::to_vec(item).unwrap_or_default();
            if let Some(p) = super::command(&self.deps, &self.stops, &bytes) {
                super::store(&self.deps, &p);
            }
        }
    }

    /// Shutdown: the delivered points leave the ring, those still in the channel join it.
    fn keep_all(&self, cursor: &mut Cursor, points: &mut mpsc::Receiver<Point>) {
        self.remove_delivered(cursor);
        while let Ok(p) = points.try_recv() {
            super::store(&self.deps, &p);
        }
    }
}
