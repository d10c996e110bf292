//! Telemetry: positions chosen by the acquisition rules (`[positions]`) and their transport,
//! either MQTT ([`mqtt`]: positions, every status event mirrored, a retained online/offline
//! state) or OwnTracks HTTP ([`http`]).
//!
//! # Data flow
//! - The sampler (`sample`) watches the live fix and turns the fixes the [`rules`] pick into
//!   [`Point`]s (each with its id, made once).
//! - The transport sends each point at once when it can and keeps it in the outbox's telemetry
//!   ring (bounded by `[positions]`; the oldest are dropped and counted) when it cannot; the ring
//!   is the backlog it drains, oldest first, once the link is back. One transport reads the ring.
//! - OwnTracks' messages are built here for both transports (`owntracks_body`, `command`)
//!   from the pure [`payload`] and [`owntracks`] modules; a back office's stop list (over MQTT,
//!   or an OwnTracks `setWaypoints`) is applied by [`stops`].

pub mod connect;
pub mod http;
mod inflight;
pub mod mqtt;
pub mod owntracks;
pub mod payload;
pub mod rules;
pub mod settings;
pub mod stops;
pub mod traccar;

pub use connect::{Topics, options};
pub use mqtt::{EVENT_ENDPOINT, WINDOW, run};

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::gps::Fix;
use crate::gps::clock::Clock;
use crate::gps::latest::LatestFix;
use crate::outbox::Outbox;
use rules::{Sent, Trigger};

/// A position chosen by the rules, as kept in the ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Made once, when the point is made, and sent with every copy of it (QoS 1 is at least
    /// once: a consumer drops repeats by it). `None` for points kept by an older version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// Unix seconds of the fix.
    pub tst: i64,
    /// Why it was chosen.
    pub trigger: Trigger,
    /// The fix.
    pub fix: Fix,
}

/// What the publisher reports, for status and metrics. Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct TelemetryStatus(Arc<Mutex<Counters>>);

/// Counters of the publisher.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Counters {
    /// Connected to the broker now.
    pub connected: bool,
    /// Since when connected (or when the last connection ended).
    pub since: Option<DateTime<Utc>>,
    /// Why the last connection failed or ended.
    pub last_error: Option<String>,
    /// Connections made since start.
    pub connects: u64,
    /// Positions the acquisition rules chose since start (published live or kept for later).
    pub positions_made: u64,
    /// Positions the broker acknowledged (or that were sent, at QoS 0) since start.
    pub positions_published: u64,
    /// Status events the broker acknowledged since start.
    pub events_published: u64,
    /// Messages on `{prefix}/stops` since start (applied, refused, or applied already).
    #[serde(default)]
    pub stops_received: u64,
    /// Stop lists from `{prefix}/stops` applied since start.
    #[serde(default)]
    pub stops_applied: u64,
    /// Stop lists from `{prefix}/stops` refused since start (bad lists; nothing replaced).
    #[serde(default)]
    pub stops_rejected: u64,
    /// Why the last one was refused: `field: message`.
    #[serde(default)]
    pub stops_last_error: Option<String>,
    /// OwnTracks commands received since start (OwnTracks mode).
    #[serde(default)]
    pub commands_received: u64,
    /// Commands not carried out (malformed, or an action curbside does not have).
    #[serde(default)]
    pub commands_rejected: u64,
    /// Why the last one was not carried out.
    #[serde(default)]
    pub last_command_error: Option<String>,
}

impl TelemetryStatus {
    fn update(&self, f: impl FnOnce(&mut Counters)) {
        if let Ok(mut c) = self.0.lock() {
            f(&mut c);
        }
    }

    /// A copy of the counters.
    pub fn counters(&self) -> Counters {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// What the telemetry part needs from the rest of the agent.
#[derive(Debug, Clone)]
pub struct Deps {
    /// Ring and event deliveries.
    pub outbox: Outbox,
    /// Fixes to sample.
    pub latest: LatestFix,
    /// Time for points without GPS time, and for the ring's age limit.
    pub clock: Clock,
    /// Counters.
    pub status: TelemetryStatus,
    /// Wakes when a new event is stored for [`EVENT_ENDPOINT`].
    pub events: Arc<Notify>,
    /// Where an event's files are public (`[pod] public_url`), for their `url`s.
    pub public: Option<crate::media::upload::UrlTemplate>,
    /// The radius of a stop that gives none (`[stops] radius_m`): OwnTracks regions.
    pub default_radius_m: f64,
    /// `[positions]`: the acquisition rules and the ring's bounds.
    pub positions: settings::Positions,
    /// The links' usage: why a connection failed, and today's bytes for the daily budget.
    pub meter: crate::link::Meter,
}

/// Turns the fixes the rules pick into points.
pub(crate) async fn sample(deps: Deps, tx: mpsc::Sender<Point>, shutdown: CancellationToken) {
    let mut changes = deps.latest.subscribe();
    let mut last: Option<Sent> = None;
    let mut seen: Option<Instant> = None;
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let Some(r) = changes.borrow_and_update().last.clone() else { continue };
        // The state also changes for counters and the sky: only a new epoch counts.
        if seen == Some(r.at) {
            continue;
        }
        seen = Some(r.at);
        let rules = deps.positions.rules_at(if deps.positions.budget.is_some() { deps.meter.today_total() } else { 0 });
        let Some(trigger) = rules.decide(last.as_ref(), &r.fix, r.at) else { continue };
        last = rules.sent(&r.fix, r.at);
        let tst = r.fix.time.unwrap_or_else(|| deps.clock.now().0).timestamp();
        deps.status.update(|c| c.positions_made += 1);
        let point = Point { id: Some(uuid::Uuid::now_v7()), tst, trigger, fix: r.fix };
        if tx.send(point).await.is_err() {
            return;
        }
    }
}

/// The OwnTracks location message of `p`, made now (`created_at`), with the stops it is in as
/// `inregions`/`inrids`; `None` without coordinates. The same body over MQTT and HTTP.
pub(crate) fn owntracks_body(deps: &Deps, p: &Point, tid: &str) -> Option<serde_json::Value> {
    let mut v = payload::owntracks(p, deps.clock.now().0.timestamp(), tid)?;
    let (lat, lon) = p.fix.position()?;
    let (names, rids) = owntracks::inside(&crate::stops::store::current(&deps.outbox), deps.default_radius_m, lat, lon);
    if !rids.is_empty() {
        v["inregions"] = serde_json::json!(names);
        v["inrids"] = serde_json::json!(rids);
    }
    Some(v)
}

/// Carries out an OwnTracks command (from `…/cmd` over MQTT, or an HTTP answer), counting it:
/// `reportLocation` gives the point to send now; `setWaypoints` goes to `stops` (validated,
/// counted and stored as a list on `{prefix}/stops` is). One not carried out is counted with
/// why.
pub(crate) fn command(deps: &Deps, stops: &mpsc::Sender<Vec<u8>>, payload: &[u8]) -> Option<Point> {
    deps.status.update(|c| c.commands_received += 1);
    let done = owntracks::command(payload).and_then(|cmd| match cmd {
        owntracks::Command::ReportLocation => {
            let Some(r) = deps.latest.snapshot().last_valid else {
                return Err(crate::input::invalid("reportLocation", "no position yet").into());
            };
            let tst = r.fix.time.unwrap_or_else(|| deps.clock.now().0).timestamp();
            deps.status.update(|c| c.positions_made += 1);
            Ok(Some(Point { id: Some(uuid::Uuid::now_v7()), tst, trigger: Trigger::Requested, fix: r.fix }))
        }
        owntracks::Command::SetWaypoints(list) => {
            if stops.try_send(list.to_string().into_bytes()).is_err() {
                tracing::warn!("setWaypoints: lists are coming faster than they are stored; one skipped");
            }
            Ok(None)
        }
    });
    match done {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %e, "an OwnTracks command not carried out");
            deps.status.update(|c| {
                c.commands_rejected += 1;
                c.last_command_error = Some(e.to_string());
            });
            None
        }
    }
}

/// The oldest `tst` a backlogged point may have and still be sent: `backlog_max_age` before now
/// as GPS time confirms it ([`Clock::confirmed_now`](crate::gps::clock::Clock::confirmed_now)).
/// Before this run has had GPS time, every point may be sent: the system clock alone is not
/// trusted to call a backlog old.
pub(crate) fn oldest_kept(deps: &Deps) -> i64 {
    deps.clock
        .confirmed_now()
        .map_or(i64::MIN, |t| t.timestamp().saturating_sub(deps.positions.backlog.max_age.as_secs() as i64))
}

/// Puts a point in the ring (bounded by `[positions]`: the oldest go when it is full).
pub(crate) fn store(deps: &Deps, p: &Point) {
    let Ok(bytes) = serde_json::to_vec(p) else { return };
    let now = deps.clock.confirmed_now().map(|t| t.timestamp());
    match deps.outbox.ring().push(p.tst, &bytes, deps.positions.backlog, now) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(dropped = n, "telemetry backlog full: oldest positions dropped"),
        Err(e) => tracing::warn!(error = %e, "cannot keep a position for later; dropped"),
    }
}
