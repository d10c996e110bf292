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

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::settings::OwnTracksHttpConfig;
use super::{Deps, Point, payload};
use crate::reconnect::{Failure, Reconnect};

/// The most of an answer read for commands; a longer one is delivered but its commands ignored.
pub const ANSWER_MAX: usize = 256 * 1024;

/// An HTTP client for the endpoint: rustls with the system's roots, no redirects (a redirect
/// is not a delivery), no cookies.
pub fn client(cfg: &OwnTracksHttpConfig) -> anyhow::Result<reqwest::Client> {
    let tls = match crate::tls::system_roots() {
        Ok(builder) => builder.with_no_client_auth(),
        Err(e) if cfg.url.scheme() == "https" => anyhow::bail!(
            "owntracks_http.url is https:// but the system's CA certificates cannot be loaded \
             (install the ca-certificates package): {e}"
        ),
        Err(_) => crate::tls::trusting_nobody(),
    };
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("curbside/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?)
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
        loop {
            // Every point made so far joins the ring, behind the older ones.
            while let Ok(p) = points.try_recv() {
                super::store(&self.deps, &p);
            }
            let Some((seq, point)) = self.oldest() else {
                tokio::select! {
                    p = points.recv() => match p {
                        Some(p) => super::store(&self.deps, &p),
                        None => return,
                    },
                    _ = shutdown.cancelled() => return self.keep_all(&mut points),
                }
                continue;
            };
            // A POST cut short by shutdown leaves its point in the ring: sent again next start.
            let attempt = tokio::select! {
                r = self.post(&point) => r,
                _ = shutdown.cancelled() => return self.keep_all(&mut points),
            };
            let failure = match attempt {
                Ok(answer) => {
                    if let Err(e) = self.deps.outbox.ring().remove_through(seq) {
                        tracing::warn!(error = %e, "telemetry ring: a delivered position stays (sent again later)");
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
                    failure
                }
            };
            let until = Instant::now() + reconnect.after(failure, crate::reconnect::jitter());
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    p = points.recv() => match p {
                        Some(p) => super::store(&self.deps, &p),
                        None => return,
                    },
                    _ = shutdown.cancelled() => return self.keep_all(&mut points),
                }
            }
        }
    }

    /// The oldest point in the ring that can still be sent; unreadable ones and ones past the
    /// age limit are removed on the way.
    fn oldest(&self) -> Option<(u64, Point)> {
        let ring = self.deps.outbox.ring();
        let oldest_kept =
            self.deps.clock.now().0.timestamp().saturating_sub(self.deps.positions.backlog.max_age.as_secs() as i64);
        loop {
            let p = match ring.after(None, 1) {
                Ok(mut v) => v.pop()?,
                Err(e) => {
                    tracing::warn!(error = %e, "telemetry ring: cannot read");
                    return None;
                }
            };
            match serde_json::from_slice::<Point>(&p.payload) {
                Ok(point) if p.tst >= oldest_kept && point.fix.position().is_some() => return Some((p.seq, point)),
                _ => {
                    if let Err(e) = ring.remove_through(p.seq) {
                        tracing::warn!(error = %e, "telemetry ring: cannot remove a point that cannot be sent");
                        return None;
                    }
                }
            }
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

    /// Shutdown: the points still in the channel join the ring.
    fn keep_all(&self, points: &mut mpsc::Receiver<Point>) {
        while let Ok(p) = points.try_recv() {
            super::store(&self.deps, &p);
        }
    }
}
