//! The day's route on the van: whether it started, breaks, whether it ended, and the time the
//! van spent driving, stopped and idle in between, from which `route_ended` carries its
//! [`Summary`]. Recorded by the driver (`POST /api/v1/route/status`, `curbside route …`, the
//! page) and by the depot's geofence (`taps::day`).
//!
//! [`Day`] is the decisions, pure: which route event may come next ([`Day::check`]), what it
//! changes ([`Day::apply`]) and how a span of time counts ([`Day::feed`]). [`RouteHandle`]
//! keeps it in the store's `route` tree (key `day`, JSON [`Day`]): written with each route event
//! in the event's transaction, and the time counters every [`SAVE_EVERY`] of route time, so a
//! power cut loses at most that much of them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Milestone, Status, StopCounts, Summary};
use crate::input::{Invalid, invalid};
use crate::outbox::{Alongside, Outbox, OutboxError, PartTree};
use crate::stops::{Stop, StopState};

/// The tree and its key.
const TREE: &str = "route";
const KEY: &str = "day";

/// The time counters are saved at least this often (route time).
pub const SAVE_EVERY: Duration = Duration::from_secs(60);
/// A gap between two fixes longer than this (no fix, or the agent was down) is not counted.
pub const MAX_GAP: Duration = Duration::from_secs(30);

/// The day's route as the van knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Day {
    /// The route it is about (`None`: the day's list came without a route).
    pub route_id: Option<String>,
    /// When it started, and the odometer then.
    pub started: Option<(DateTime<Utc>, f64)>,
    /// When it ended, and the odometer then.
    pub ended: Option<(DateTime<Utc>, f64)>,
    /// On a break.
    pub on_break: bool,
    /// Seconds moving, since the start.
    pub driving_s: f64,
    /// Seconds stopped, since the start (breaks included).
    pub stopped_s: f64,
    /// Seconds stopped away from the stops and the depot, not on a break.
    pub idle_s: f64,
    /// Seconds on a break.
    pub break_s: f64,
}

/// Where the van is for the time counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whereabouts {
    /// Moving (the odometer's moving speed).
    Moving,
    /// Stopped at a stop or the depot.
    AtAStop,
    /// Stopped anywhere else.
    Elsewhere,
}

impl Day {
    /// This day, if it is about route `id`; else a fresh day for it (a new day's list came).
    pub fn for_route(self, id: Option<&str>) -> Day {
        if self.route_id.as_deref() == id { self } else { Day { route_id: id.map(String::from), ..Day::default() } }
    }

    /// Whether the route is under way (started, not ended).
    pub fn under_way(&self) -> bool {
        self.started.is_some() && self.ended.is_none()
    }

    /// Whether route event `status` may come now; why not, naming `status`.
    pub fn check(&self, status: Status) -> Result<(), Invalid> {
        let ended = |what: &str| {
            invalid(
                "status",
                format!("the route {what}ended; load the next day's stops (with a new route id) to start again"),
            )
        };
        match status {
            Status::RouteStarted if self.ended.is_some() && self.route_id.is_some() => Err(ended("already ")),
            Status::RouteStarted if self.under_way() => Err(invalid("status", "the route already started")),
            Status::RouteEnded | Status::BreakStarted if self.started.is_none() => {
                Err(invalid("status", "the route has not started"))
            }
            Status::RouteEnded | Status::BreakStarted | Status::BreakEnded if self.ended.is_some() => {
                Err(ended("has "))
            }
            Status::BreakStarted if self.on_break => Err(invalid("status", "already on a break")),
            Status::BreakEnded if !self.on_break => Err(invalid("status", "not on a break")),
            s if !s.is_route() => Err(invalid("status", format!("{:?} is a job status, not a route's", s.as_str()))),
            _ => Ok(()),
        }
    }

    /// The day after route event `status` at `at` with the odometer at `odometer_m` (checked
    /// first with [`Day::check`]).
    pub fn apply(&mut self, status: Status, at: DateTime<Utc>, odometer_m: f64) {
        match status {
            Status::RouteStarted => {
                // A day without a route id starts again after it ended.
                *self = Day { route_id: self.route_id.take(), started: Some((at, odometer_m)), ..Day::default() };
            }
            Status::BreakStarted => self.on_break = true,
            Status::BreakEnded => self.on_break = false,
            Status::RouteEnded => {
                self.ended = Some((at, odometer_m));
                self.on_break = false;
            }
            _ => {}
        }
    }

    /// Counts `span` of route time spent `where_` (nothing unless under way).
    pub fn feed(&mut self, span: Duration, where_: Whereabouts) {
        if !self.under_way() || span > MAX_GAP {
            return;
        }
        let s = span.as_secs_f64();
        match where_ {
            Whereabouts::Moving => self.driving_s += s,
            _ if self.on_break => {
                self.stopped_s += s;
                self.break_s += s;
            }
            Whereabouts::AtAStop => self.stopped_s += s,
            Whereabouts::Elsewhere => {
                self.stopped_s += s;
                self.idle_s += s;
            }
        }
    }

    /// The summary of a route ending at `ended_at` with the odometer at `odometer_m` (or, once
    /// ended, when it ended); `None` when it never started.
    pub fn summary(&self, ended_at: DateTime<Utc>, odometer_m: f64, stops: StopCounts) -> Option<Summary> {
        let (started_at, from_m) = self.started?;
        let (ended_at, odometer_m) = self.ended.unwrap_or((ended_at, odometer_m));
        Some(Summary {
            started_at,
            ended_at,
            distance_m: ((odometer_m - from_m).max(0.0) * 10.0).round() / 10.0,
            driving_s: self.driving_s.round() as u64,
            stopped_s: self.stopped_s.round() as u64,
            idle_s: self.idle_s.round() as u64,
            break_s: self.break_s.round() as u64,
            stops,
        })
    }
}

/// Validates `POST /api/v1/route/status`'s body, `{"status": "started" | "loading_done" |
/// "unloading_done" | "break_started" | "break_ended" | "ended"}`.
pub fn parse(body: &serde_json::Value) -> Result<Status, Invalid> {
    let obj = body.as_object().ok_or_else(|| invalid("body", "must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "status") {
        return Err(invalid(k.clone(), "unknown field; expected only \"status\""));
    }
    let names = Status::ROUTE.map(|s| s.route_name().unwrap_or_default());
    match obj.get("status") {
        Some(serde_json::Value::String(s)) => Status::parse_route(s)
            .ok_or_else(|| invalid("status", format!("unknown route status {s:?}; expected one of {names:?}"))),
        Some(_) => Err(invalid("status", "must be a string")),
        None => Err(invalid("status", "is required")),
    }
}

/// The day's stops counted by outcome; `history` gives a job's steps.
pub fn count(stops: &[Stop], history: impl Fn(&str) -> Vec<Milestone>) -> StopCounts {
    let mut c = StopCounts::default();
    for s in stops {
        match crate::stops::state(&history(&s.job_id)) {
            (StopState::Done, Some(Status::Delivered)) => c.delivered += 1,
            (StopState::Done, Some(Status::PartiallyDelivered)) => c.partially_delivered += 1,
            (StopState::Done, Some(Status::Failed)) => c.failed += 1,
            (StopState::Done, Some(Status::PickedUp)) => c.picked_up += 1,
            _ => c.pending += 1,
        }
    }
    c
}

/// Whether any of the day's stops was visited (arrived at, or finished).
pub fn visited_any(stops: &[Stop], history: impl Fn(&str) -> Vec<Milestone>) -> bool {
    stops.iter().any(|s| matches!(crate::stops::state(&history(&s.job_id)).0, StopState::Arrived | StopState::Done))
}

/// The day kept in the store. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct RouteHandle {
    day: Arc<Mutex<Day>>,
    tree: PartTree,
    /// Route events are decided one at a time (check, then append).
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl RouteHandle {
    /// The day kept in `outbox` (a fresh one in a fresh store).
    pub fn open(outbox: &Outbox) -> Result<RouteHandle, OutboxError> {
        let tree = outbox.part_tree(TREE)?;
        let day = tree.get(KEY)?.and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default();
        Ok(RouteHandle { day: Arc::new(Mutex::new(day)), tree, gate: Arc::default() })
    }

    /// The day now, for route `id` (a fresh day when the list's route changed).
    pub fn day(&self, id: Option<&str>) -> Day {
        self.day.lock().unwrap_or_else(|e| e.into_inner()).clone().for_route(id)
    }

    /// Changes the day in memory (saved with the next event or [`RouteHandle::save`]).
    pub fn update(&self, id: Option<&str>, f: impl FnOnce(&mut Day)) {
        let mut day = self.day.lock().unwrap_or_else(|e| e.into_inner());
        let mut d = std::mem::take(&mut *day).for_route(id);
        f(&mut d);
        *day = d;
    }

    /// Holds route decisions to one at a time while the guard lives.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.gate.lock().await
    }

    /// The write of `day` that goes in with a route event.
    pub fn alongside(&self, day: &Day) -> Alongside {
        self.tree.alongside(KEY.as_bytes().to_vec(), serde_json::to_vec(day).unwrap_or_default())
    }

    /// Saves the day as it is now, durably.
    pub async fn save(&self) -> Result<(), OutboxError> {
        let bytes = serde_json::to_vec(&*self.day.lock().unwrap_or_else(|e| e.into_inner())).unwrap_or_default();
        self.tree.insert(KEY, bytes)?;
        self.tree.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_day_goes_started_break_ended_and_refuses_what_does_not_fit() {
        let mut d = Day::default().for_route(Some("R-1"));
        assert_eq!(d.check(Status::RouteEnded).unwrap_err().field, "status");
        assert!(d.check(Status::BreakStarted).is_err());
        assert!(d.check(Status::BreakEnded).is_err());
        d.check(Status::LoadingDone).unwrap();
        d.check(Status::RouteStarted).unwrap();
        d.apply(Status::RouteStarted, t(0), 1000.0);
        assert!(d.check(Status::RouteStarted).is_err());
        d.check(Status::BreakStarted).unwrap();
        d.apply(Status::BreakStarted, t(10), 1000.0);
        assert!(d.check(Status::BreakStarted).is_err());
        d.apply(Status::BreakEnded, t(20), 1000.0);
        d.check(Status::RouteEnded).unwrap();
        d.apply(Status::RouteEnded, t(30), 1500.0);
        assert!(d.check(Status::RouteStarted).unwrap_err().message.contains("next day"));
        assert!(d.check(Status::RouteEnded).is_err());
        d.check(Status::UnloadingDone).unwrap();
        assert!(d.check(Status::Delivered).is_err());
        // A new route is a new day.
        let d = d.for_route(Some("R-2"));
        assert_eq!(d, Day { route_id: Some("R-2".into()), ..Day::default() });
        // Without a route id, a day starts again after it ended.
        let mut d = Day::default();
        d.apply(Status::RouteStarted, t(0), 0.0);
        d.apply(Status::RouteEnded, t(10), 0.0);
        d.check(Status::RouteStarted).unwrap();
    }

    #[test]
    fn a_route_body_is_one_known_status() {
        use serde_json::json;
        assert_eq!(parse(&json!({"status": "started"})).unwrap(), Status::RouteStarted);
        assert_eq!(parse(&json!({"status": "ended"})).unwrap(), Status::RouteEnded);
        assert_eq!(parse(&json!({"status": "loading_done"})).unwrap(), Status::LoadingDone);
        assert_eq!(parse(&json!({"status": "delivered"})).unwrap_err().field, "status");
        assert_eq!(parse(&json!({"status": "route_started"})).unwrap_err().field, "status");
        assert_eq!(parse(&json!({"status": 1})).unwrap_err().field, "status");
        assert_eq!(parse(&json!({})).unwrap_err().field, "status");
        assert_eq!(parse(&json!({"status": "started", "note": "x"})).unwrap_err().field, "note");
        assert_eq!(parse(&json!([])).unwrap_err().field, "body");
    }

    #[test]
    fn time_counts_only_under_way_and_a_break_is_not_idle() {
        let mut d = Day::default();
        let s = Duration::from_secs(10);
        d.feed(s, Whereabouts::Moving);
        assert_eq!(d.driving_s, 0.0, "not started");
        d.apply(Status::RouteStarted, t(0), 500.0);
        d.feed(s, Whereabouts::Moving);
        d.feed(s, Whereabouts::AtAStop);
        d.feed(s, Whereabouts::Elsewhere);
        d.feed(MAX_GAP + s, Whereabouts::Elsewhere);
        d.apply(Status::BreakStarted, t(40), 500.0);
        d.feed(s, Whereabouts::Elsewhere);
        d.feed(s, Whereabouts::Moving);
        d.apply(Status::RouteEnded, t(60), 2500.25);
        d.feed(s, Whereabouts::Moving);
        let sum = d.summary(t(60), 2500.25, StopCounts { delivered: 2, ..Default::default() }).unwrap();
        assert_eq!((sum.driving_s, sum.stopped_s, sum.idle_s, sum.break_s), (20, 30, 10, 10));
        assert_eq!(sum.distance_m, 2000.3);
        assert_eq!((sum.started_at, sum.ended_at), (t(0), t(60)));
        assert!(!d.on_break, "ending ends the break");
    }
}
