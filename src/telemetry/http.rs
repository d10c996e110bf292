//! Positions over HTTP instead of MQTT, one point per request from the ring: OwnTracks HTTP mode
//! (`[owntracks_http]`: the Recorder's `/pub`, or any server that speaks the booklet's HTTP
//! mode), or a Traccar server's OsmAnd port (`[traccar]`, whose requests [`super::traccar`]
//! makes; events go there too, each a position with its attributes, from the outbox's
//! `traccar:event` deliveries, oldest first and ahead of waiting points: they are few and
//! matter most, and Traccar places a position by its own time). What follows
//! says OwnTracks; Traccar differs only where [`super::traccar`] says.
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

use super::settings::{OwnTracksHttpConfig, TraccarConfig};
use super::{Deps, Point, payload, traccar};
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
pub fn client(cfg: &OwnTracksHttpConfig, proxy: Option<std::net::SocketAddr>) -> anyhow::Result<reqwest::Client> {
    crate::tls::http_client((cfg.url.scheme() == "https").then(|| "owntracks_http.url".to_string()), proxy)
}

/// The HTTP client for the Traccar server (as [`client`]).
pub fn traccar_client(cfg: &TraccarConfig, proxy: Option<std::net::SocketAddr>) -> anyhow::Result<reqwest::Client> {
    crate::tls::http_client((cfg.url.scheme() == "https").then(|| "traccar.url".to_string()), proxy)
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
    let wire = Wire::OwnTracks { cfg, tid: payload::tracker_id(&vehicle_id), stops: stops_tx };
    let sender = Sender { wire, client, deps };
    // The applier ends when the sender (and its sender half) is gone.
    tokio::join!(sampler, sender.run(rx, shutdown), applier);
    Ok(())
}

/// As [`run`], to a Traccar server: positions from the ring and events from the outbox.
pub async fn run_traccar(
    cfg: Arc<TraccarConfig>,
    client: reqwest::Client,
    driver_id: Option<String>,
    deps: Deps,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(1024);
    let sampler = super::sample(deps.clone(), tx, shutdown.clone());
    let sender = Sender { wire: Wire::Traccar { cfg, driver_id }, client, deps };
    tokio::join!(sampler, sender.run(rx, shutdown));
    Ok(())
}

/// Who the sender talks to.
enum Wire {
    /// OwnTracks HTTP mode; `setWaypoints` lists go to `stops` ([`super::stops::apply`]).
    OwnTracks { cfg: Arc<OwnTracksHttpConfig>, tid: String, stops: mpsc::Sender<Vec<u8>> },
    /// Traccar's OsmAnd port.
    Traccar { cfg: Arc<TraccarConfig>, driver_id: Option<String> },
}

impl Wire {
    /// For logs.
    fn name(&self) -> &'static str {
        match self {
            Wire::OwnTracks { .. } => "owntracks http",
            Wire::Traccar { .. } => "traccar",
        }
    }

    fn url(&self) -> &reqwest::Url {
        match self {
            Wire::OwnTracks { cfg, .. } => &cfg.url,
            Wire::Traccar { cfg, .. } => &cfg.url,
        }
    }
}

/// What one request carries.
enum Item {
    /// A point of the ring.
    Point(u64, Point),
    /// An event waiting in the outbox (Traccar).
    Event(u64, Box<crate::event::StatusEvent>),
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
    wire: Wire,
    client: reqwest::Client,
    deps: Deps,
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
            let Some(item) = self.next_event().or_else(|| self.next(&mut cursor).map(|(seq, p)| Item::Point(seq, p)))
            else {
                self.remove_delivered(&mut cursor);
                tokio::select! {
                    p = points.recv() => match p {
                        Some(p) => super::store(&self.deps, &p),
                        None => return self.keep_all(&mut cursor, &mut points),
                    },
                    _ = self.deps.events.notified() => {}
                    _ = shutdown.cancelled() => return self.keep_all(&mut cursor, &mut points),
                }
                continue;
            };
            // A request cut short by shutdown leaves its point in the ring (its event in the
            // outbox): sent again next start.
            let attempt = tokio::select! {
                r = self.post(&item) => r,
                _ = shutdown.cancelled() => return self.keep_all(&mut cursor, &mut points),
            };
            let failure = match attempt {
                Ok(answer) => {
                    match &item {
                        Item::Point(seq, _) => {
                            cursor.ahead.pop_front();
                            cursor.delivered = Some(*seq);
                            cursor.unremoved += 1;
                            if cursor.unremoved >= REMOVE_EVERY {
                                self.remove_delivered(&mut cursor);
                            }
                        }
                        Item::Event(seq, _) => self.event_delivered(*seq),
                    }
                    if !up {
                        tracing::info!(url = %self.wire.url(), "{}: delivering", self.wire.name());
                    }
                    let event = matches!(item, Item::Event(..));
                    self.deps.status.update(|c| {
                        if event {
                            c.events_published += 1;
                        } else {
                            c.positions_published += 1;
                        }
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
                        tracing::warn!(error = %e, "{}: not delivered; positions wait in the backlog", self.wire.name());
                        said = true;
                    } else {
                        tracing::debug!(error = %e, "{}: still not delivered", self.wire.name());
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

    /// Traccar: the oldest event waiting for the server, once it is on disk (an event without a
    /// location has nothing to send and is done).
    fn next_event(&self) -> Option<Item> {
        let Wire::Traccar { cfg, .. } = &self.wire else { return None };
        loop {
            let o = &self.deps.outbox;
            let (seq, _) = match o.pending_after(traccar::EVENT_ENDPOINT, None, 1) {
                Ok(mut v) if !v.is_empty() => v.remove(0),
                Ok(_) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "traccar: cannot read the events waiting");
                    return None;
                }
            };
            if !o.is_flushed(seq) {
                // Not acknowledged to the driver yet; the append wakes the loop once it is.
                return None;
            }
            match o.event(seq) {
                Ok(Some(e)) if traccar::event(&cfg.device_id, &e).is_some() => {
                    return Some(Item::Event(seq, Box::new(e)));
                }
                Ok(_) => self.event_delivered(seq),
                Err(e) => {
                    tracing::warn!(error = %e, "traccar: cannot read an event");
                    return None;
                }
            }
        }
    }

    fn event_delivered(&self, seq: u64) {
        if let Err(e) = self.deps.outbox.delivered(traccar::EVENT_ENDPOINT, seq) {
            tracing::warn!(error = %e, sequence = seq, "traccar: a delivered event stays (sent again later)");
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

    /// One POST of one item: the answer's body on a 2xx (empty when it could not be read, or
    /// was longer than [`ANSWER_MAX`]), else what went wrong and what kind of failure it was.
    async fn post(&self, item: &Item) -> Result<Vec<u8>, (String, Failure)> {
        let nothing = || ("a position without coordinates".to_string(), Failure::Refused);
        let request = match (&self.wire, item) {
            (Wire::OwnTracks { cfg, tid, .. }, Item::Point(_, p)) => {
                let body = super::owntracks_body(&self.deps, p, tid)
                    .and_then(|v| serde_json::to_vec(&v).ok())
                    .ok_or_else(nothing)?;
                let request = self
                    .client
                    .post(cfg.url.clone())
                    .timeout(cfg.timeout)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("X-Limit-U", &cfg.user)
                    .header("X-Limit-D", &cfg.device)
                    .body(body);
                match &cfg.credentials {
                    Some((user, password)) => request.basic_auth(user, Some(password)),
                    None => request,
                }
            }
            (Wire::Traccar { cfg, driver_id }, item) => {
                let form = match item {
                    Item::Point(_, p) => traccar::position(&cfg.device_id, driver_id.as_deref(), p),
                    Item::Event(_, e) => traccar::event(&cfg.device_id, e),
                };
                self.client
                    .post(cfg.url.clone())
                    .timeout(cfg.timeout)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.ok_or_else(nothing)?)
            }
            (Wire::OwnTracks { .. }, Item::Event(..)) => return Err(nothing()),
        };
        let mut response = request.send().await.map_err(|e| {
            if crate::webhook::send::tls_failed(&e) {
                return (crate::webhook::send::error_chain(&e), Failure::Refused);
            }
            // A refused tunnel says no more than that; the metering proxy knows why.
            let why = self.deps.meter.dial_error(self.wire.url()).filter(|_| e.is_connect());
            (why.unwrap_or_else(|| crate::webhook::send::error_chain(&e)), Failure::Unreachable)
        })?;
        if let Some(why) = crate::link::proxy::unreachable(&response) {
            return Err((why, Failure::Unreachable));
        }
        let status = response.status();
        if !status.is_success() {
            let why = match &self.wire {
                Wire::Traccar { cfg, .. } => traccar::refused(status.as_u16(), &cfg.device_id),
                Wire::OwnTracks { .. } => format!("the endpoint answered {status}"),
            };
            return Err((why, Failure::Refused));
        }
        let mut answer = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if answer.len() + chunk.len() <= ANSWER_MAX => answer.extend_from_slice(&chunk),
                Ok(Some(_)) => {
                    tracing::info!(
                        "{}: an answer longer than {ANSWER_MAX} bytes; its commands ignored",
                        self.wire.name()
                    );
                    return Ok(Vec::new());
                }
                Ok(None) => return Ok(answer),
                // Delivered all the same: the status said so.
                Err(e) => {
                    tracing::debug!(error = %e, "{}: the answer's body was cut short; ignored", self.wire.name());
                    return Ok(Vec::new());
                }
            }
        }
    }

    /// The answer to a delivered point: OwnTracks' `cmd`s are carried out; anything else (and
    /// Traccar's answer: a queued command for a phone) is ignored.
    fn on_answer(&self, answer: &[u8]) {
        let Wire::OwnTracks { stops, .. } = &self.wire else { return };
        if answer.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(answer) else {
            tracing::debug!("owntracks http: an answer that is not a JSON array; ignored");
            return;
        };
        for item in items.iter().filter(|i| i.get("_type").and_then(Value::as_str) == Some("cmd")) {
            let bytes = serde_json::to_vec(item).unwrap_or_default();
            if let Some(p) = super::command(&self.deps, stops, &bytes) {
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
