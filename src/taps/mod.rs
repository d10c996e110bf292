//! Driver taps: validates a tap, stamps it with where and when it happened (the live fix, or the
//! last known one with its age; GPS time when the system clock cannot be trusted), and appends it
//! to the outbox. The caller answers the driver only after [`Taps::record`] returns, that is,
//! after the event is on disk.

pub mod day;
mod route;
pub mod watch;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{Attachment, AttachmentKind, Item, Location, ReasonCode, Status, StatusEvent};
use crate::gps::LatestFix;
use crate::gps::clock::Clock;
use crate::history::History;
use crate::input::invalid;
pub use crate::input::{Invalid, parse_json};
use crate::media::refs::Refs;
use crate::outbox::{Appended, Outbox, OutboxError};

/// Longest free-text fields, in characters.
pub const MAX_REASON: usize = 500;
/// See [`MAX_REASON`].
pub const MAX_RECEIVED_BY: usize = 200;
/// See [`MAX_REASON`].
pub const MAX_NOTE: usize = 2000;
/// Most item lines in one tap.
pub const MAX_ITEMS: usize = 200;
/// Longest Idempotency-Key.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// A tap that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Tap {
    /// What happened.
    pub status: Status,
    /// Why it failed.
    pub reason_code: Option<ReasonCode>,
    /// Free text reason.
    pub reason: Option<String>,
    /// Who received it.
    pub received_by: Option<String>,
    /// Driver's note.
    pub note: Option<String>,
    /// Items.
    pub items: Vec<Item>,
    /// Photos and signature, already on disk (see [`crate::media`]); photos first.
    pub proof: Vec<Proof>,
}

/// A file that came with a tap, stored (and pinned) before the tap is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Proof {
    /// Photo or signature.
    pub kind: AttachmentKind,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// Size.
    pub bytes: u64,
    /// The type its bytes were recognised as.
    pub content_type: &'static str,
    /// The part's own capture time, if it carried one.
    pub captured_at: Option<DateTime<Utc>>,
}

impl Proof {
    /// The attachment it becomes in an event stamped `occurred_at`; `index` is 1-based per kind.
    fn attachment(&self, index: u32, occurred_at: DateTime<Utc>) -> Attachment {
        Attachment {
            kind: self.kind,
            index,
            sha256: self.sha256.clone(),
            bytes: self.bytes,
            content_type: self.content_type.to_string(),
            captured_at: self.captured_at.unwrap_or(occurred_at),
            url: None,
        }
    }
}

/// The attachments of a tap's files: indexes count from 1 per kind, in the order given.
pub fn attachments(proof: &[Proof], occurred_at: DateTime<Utc>) -> Vec<Attachment> {
    let mut photos = 0;
    let mut signatures = 0;
    proof
        .iter()
        .map(|p| {
            let n = match p.kind {
                AttachmentKind::Photo => &mut photos,
                AttachmentKind::Signature => &mut signatures,
            };
            *n += 1;
            p.attachment(*n, occurred_at)
        })
        .collect()
}

/// Checks a job id: 1–64 of `[A-Za-z0-9._-]`.
pub fn validate_job_id(job_id: &str) -> Result<(), Invalid> {
    crate::event::identifier(job_id).map_err(|m| invalid("job_id", m.to_string()))
}

/// Validates a tap's JSON body (already known to be JSON).
pub fn parse_tap(body: &Value) -> Result<Tap, Invalid> {
    let obj = body.as_object().ok_or_else(|| invalid("body", "must be a JSON object"))?;
    const KNOWN: [&str; 6] = ["status", "reason_code", "reason", "received_by", "note", "items"];
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(unknown.clone(), format!("unknown field; expected one of {KNOWN:?}")));
    }
    let status = match obj.get("status") {
        Some(Value::String(s)) => Status::parse(s).ok_or_else(|| {
            invalid("status", format!("unknown status {s:?}; expected one of {:?}", Status::ALL.map(Status::as_str)))
        })?,
        Some(_) => return Err(invalid("status", "must be a string")),
        None => return Err(invalid("status", "is required")),
    };
    let reason_code = match obj.get("reason_code") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(ReasonCode::parse(s).ok_or_else(|| {
            invalid(
                "reason_code",
                format!("unknown reason code {s:?}; expected one of {:?}", ReasonCode::ALL.map(ReasonCode::as_str)),
            )
        })?),
        Some(_) => return Err(invalid("reason_code", "must be a string")),
    };
    if status == Status::Failed && reason_code.is_none() {
        return Err(invalid("reason_code", "is required when status is \"failed\""));
    }
    let items = match obj.get("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            if a.len() > MAX_ITEMS {
                return Err(invalid("items", format!("at most {MAX_ITEMS} items")));
            }
            a.iter().enumerate().map(|(i, v)| item(i, v)).collect::<Result<_, _>>()?
        }
        Some(_) => return Err(invalid("items", "must be an array")),
    };
    let tap = Tap {
        status,
        reason_code,
        reason: text(obj, "reason", MAX_REASON)?,
        received_by: text(obj, "received_by", MAX_RECEIVED_BY)?,
        note: text(obj, "note", MAX_NOTE)?,
        items,
        proof: Vec::new(),
    };
    if let Some(name) = tap.status.route_name() {
        return Err(invalid(
            "status",
            format!(
                "{:?} is about the route, not a job: POST /api/v1/route/status {{\"status\": {name:?}}}",
                tap.status.as_str()
            ),
        ));
    }
    if tap.status == Status::Departed {
        return Err(invalid("status", "departed is recorded by the geofence when the van leaves a stop, not tapped"));
    }
    says_one_thing(&tap)?;
    Ok(tap)
}

/// A tap says exactly one thing: a reason only where something was not delivered, a partial
/// delivery with something delivered and something rejected, a delivery with nothing rejected.
fn says_one_thing(tap: &Tap) -> Result<(), Invalid> {
    let explains = matches!(tap.status, Status::Failed | Status::PartiallyDelivered);
    if !explains {
        let of = |field: &str| {
            invalid(
                field,
                format!("only goes with \"failed\" or \"partially_delivered\", not {:?}", tap.status.as_str()),
            )
        };
        if tap.reason_code.is_some() {
            return Err(of("reason_code"));
        }
        if tap.reason.is_some() {
            return Err(of("reason"));
        }
    }
    let rejected = tap.items.iter().filter(|i| i.rejected > 0).count();
    let delivered = tap.items.iter().filter(|i| i.qty > i.rejected).count();
    match tap.status {
        Status::PartiallyDelivered if rejected == 0 => Err(invalid(
            "items",
            "\"partially_delivered\" needs at least one item with \"rejected\" above 0 (nothing rejected is \"delivered\")",
        )),
        Status::PartiallyDelivered if delivered == 0 => Err(invalid(
            "items",
            "\"partially_delivered\" needs at least one item delivered (every item rejected is \"failed\")",
        )),
        Status::Delivered if rejected > 0 && delivered == 0 => {
            Err(invalid("items", "every item was rejected: that is \"failed\" with a reason_code, not \"delivered\""))
        }
        Status::Delivered if rejected > 0 => {
            Err(invalid("items", "some items were rejected: that is \"partially_delivered\", not \"delivered\""))
        }
        _ => Ok(()),
    }
}

impl Tap {
    /// Whether `event` records this tap (the fields the driver sent; not where or when).
    pub fn is_recorded_by(&self, event: &StatusEvent) -> bool {
        self.status == event.status
            && self.reason_code == event.reason_code
            && self.reason == event.reason
            && self.received_by == event.received_by
            && self.note == event.note
            && self.items == event.items
            && self.proof.len() == event.attachments.len()
            && self.proof.iter().zip(&event.attachments).all(|(p, a)| p.kind == a.kind && p.sha256 == a.sha256)
    }
}

fn text(obj: &Map<String, Value>, field: &str, max: usize) -> Result<Option<String>, Invalid> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => Err(invalid(field, format!("at most {max} characters"))),
        Some(Value::String(s)) if s.chars().any(|c| c.is_control() && c != '\n') => {
            Err(invalid(field, "must not contain control characters"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn item(i: usize, v: &Value) -> Result<Item, Invalid> {
    let field = |name: &str| format!("items[{i}].{name}");
    let o = v.as_object().ok_or_else(|| invalid(format!("items[{i}]"), "must be an object"))?;
    if let Some(k) = o.keys().find(|k| !["sku", "qty", "rejected"].contains(&k.as_str())) {
        return Err(invalid(field(k), "unknown field; expected sku, qty, rejected"));
    }
    let sku = match o.get("sku") {
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 64 => s.clone(),
        Some(Value::String(_)) => return Err(invalid(field("sku"), "must be 1 to 64 characters")),
        _ => return Err(invalid(field("sku"), "is required and must be a string")),
    };
    let count = |name: &str, required: bool| -> Result<u32, Invalid> {
        match o.get(name) {
            None if !required => Ok(0),
            Some(Value::Number(n)) => n
                .as_u64()
                .filter(|n| *n <= 1_000_000)
                .map(|n| n as u32)
                .ok_or_else(|| invalid(field(name), "must be a whole number from 0 to 1000000")),
            _ => Err(invalid(field(name), "is required and must be a number")),
        }
    };
    let qty = count("qty", true)?;
    let rejected = count("rejected", false)?;
    if rejected > qty {
        return Err(invalid(field("rejected"), "must not exceed qty"));
    }
    Ok(Item { sku, qty, rejected })
}

/// Why a tap was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The tap contradicts what was stored under its Idempotency-Key.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The store refused it.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// Records taps: the one place a [`StatusEvent`] is made.
#[derive(Debug, Clone)]
pub struct Taps {
    outbox: Outbox,
    /// Each job's steps, and each event's files: written with the event.
    history: History,
    media_refs: Refs,
    latest: LatestFix,
    clock: Clock,
    vehicle_id: String,
    driver_id: Option<String>,
    /// The latest `occurred_at` stamped: a clock stepped backwards does not make a later event
    /// look older than an earlier one.
    last_stamp: Arc<Mutex<Option<DateTime<Utc>>>>,
    /// The geofence radius of a stop that gives none, metres.
    default_radius_m: f64,
    /// The odometer each event carries, when the agent runs one.
    pub(crate) odometer: Option<crate::odometer::OdometerHandle>,
    /// The day's route (route events are checked against it and written with it).
    route: crate::route::RouteHandle,
}

impl Taps {
    /// A recorder stamping events with `latest` and `clock`, storing them in `outbox`.
    pub fn new(
        outbox: Outbox,
        latest: LatestFix,
        clock: Clock,
        vehicle_id: String,
        driver_id: Option<String>,
    ) -> Result<Self, OutboxError> {
        Ok(Self {
            history: History::open(&outbox)?,
            media_refs: Refs::open(&outbox)?,
            route: crate::route::RouteHandle::open(&outbox)?,
            outbox,
            latest,
            clock,
            vehicle_id,
            driver_id,
            last_stamp: Arc::default(),
            default_radius_m: crate::stops::DEFAULT_RADIUS_M,
            odometer: None,
        })
    }

    /// Events carry `odometer`'s reading (`odometer_m`).
    pub fn with_odometer(mut self, odometer: crate::odometer::OdometerHandle) -> Self {
        self.odometer = Some(odometer);
        self
    }

    /// The day's route.
    pub fn route(&self) -> &crate::route::RouteHandle {
        &self.route
    }

    /// The clock events are stamped with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// What each job went through (written with every tap).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// With another default stop radius (`[stops] radius_m`).
    pub fn with_default_radius(mut self, radius_m: f64) -> Self {
        self.default_radius_m = radius_m;
        self
    }

    /// Where `location` is against job `job_id`'s stop, if the job is on the day's list with
    /// coordinates.
    pub fn proximity(&self, job_id: &str, location: Option<&Location>) -> Option<crate::event::StopProximity> {
        let l = location?;
        let list = crate::stops::store::current(&self.outbox);
        let stop = list.stops.iter().find(|s| s.job_id == job_id)?;
        let (lat, lng) = (stop.lat?, stop.lng?);
        let d = crate::stops::geofence::distance_m((lat, lng), (l.lat, l.lng));
        Some(crate::event::StopProximity {
            distance_m: (d * 10.0).round() / 10.0,
            inside: d <= stop.radius_m.unwrap_or(self.default_radius_m),
        })
    }

    /// Where the van is for an event: the live fix (age as it is), else the last known fix with
    /// its age, else `None` when there has never been a fix.
    pub fn location(&self) -> Option<Location> {
        let r = self.latest.live().or_else(|| self.latest.last_known())?;
        let (lat, lng) = r.fix.position()?;
        Some(Location::tidy(Location {
            lat,
            lng,
            accuracy_m: r.fix.accuracy_m(),
            fix_age_s: r.age().as_secs_f64(),
            speed_mps: r.fix.speed_mps,
            course_deg: r.fix.course_deg,
            mode: r.fix.mode,
        }))
    }

    /// An event of `status` for `job_id` with nothing but where and when, stamped now (or at
    /// `then`, if earlier). Called under the lock that hands out sequences (inside
    /// `Outbox::append_with`'s `make`), so that within a job `occurred_at` never goes backwards
    /// as `sequence` goes forwards; and the stamp never goes back past an earlier event's, even
    /// when the clock steps back.
    fn event(
        &self,
        sequence: u64,
        job_id: &str,
        status: Status,
        then: Option<DateTime<Utc>>,
        location: Option<Location>,
    ) -> StatusEvent {
        let (now, clock_source) = self.clock.now();
        let now = then.map_or(now, |t| t.min(now));
        let occurred_at = {
            let mut last = self.last_stamp.lock().unwrap_or_else(|e| e.into_inner());
            let stamp = last.map_or(now, |l| l.max(now));
            *last = Some(stamp);
            stamp
        };
        StatusEvent {
            id: Uuid::now_v7(),
            sequence,
            job_id: job_id.to_string(),
            status,
            reason_code: None,
            reason: None,
            received_by: None,
            note: None,
            items: Vec::new(),
            occurred_at,
            clock_source,
            location,
            vehicle_id: self.vehicle_id.clone(),
            driver_id: self.driver_id.clone(),
            attachments: Vec::new(),
            source: crate::event::Source::Driver,
            stop: None,
            eta: None,
            odometer_m: self.odometer.as_ref().map(|o| o.total_m()),
            route: None,
        }
    }

    /// Stores the tap durably and returns the stored event (or, for a repeated idempotency key,
    /// the first one; a different tap under a used key is refused).
    pub async fn record(&self, job_id: &str, tap: Tap, idempotency_key: Option<&str>) -> Result<Appended, RecordError> {
        self.record_from(job_id, tap, idempotency_key, crate::event::Source::Driver).await
    }

    /// As [`Taps::record`], saying who recorded it (the geofence records `arrived`/`departed`).
    pub async fn record_from(
        &self,
        job_id: &str,
        tap: Tap,
        idempotency_key: Option<&str>,
        source: crate::event::Source,
    ) -> Result<Appended, RecordError> {
        self.record_with(job_id, tap, idempotency_key, source, None).await
    }

    /// As [`Taps::record_from`], for something that happened earlier, at `when` (time and
    /// place): the geofence's departure happened when the van left the fence, not when the
    /// dwell outside confirmed it. The stamp still never goes back past an earlier event's.
    pub async fn record_with(
        &self,
        job_id: &str,
        tap: Tap,
        idempotency_key: Option<&str>,
        source: crate::event::Source,
        when: Option<watch::Then>,
    ) -> Result<Appended, RecordError> {
        let (then, location) = match &when {
            Some(w) => (Some(w.at), Some(w.location.clone())),
            None => (None, self.location()),
        };
        let odometer = when.and_then(|w| w.odometer_m);
        let stop = self.proximity(job_id, location.as_ref());
        // Only the way there has an arrival to estimate.
        let speed = (tap.status == Status::HeadingTo).then(|| self.latest.moving_speed()).flatten();
        let sent = tap.clone();
        let appended = self
            .outbox
            .append_with(
                job_id,
                idempotency_key,
                |sequence| {
                    let mut e = self.event(sequence, job_id, tap.status, then, location);
                    e.odometer_m = odometer.or(e.odometer_m);
                    e.reason_code = tap.reason_code;
                    e.reason = tap.reason;
                    e.received_by = tap.received_by;
                    e.note = tap.note;
                    e.items = tap.items;
                    e.attachments = attachments(&tap.proof, e.occurred_at);
                    e.source = source;
                    e.stop = stop;
                    e.eta = stop.and_then(|p| crate::stops::eta::estimate(p.distance_m, speed, e.occurred_at));
                    e
                },
                |event, sequence| {
                    // In the event's transaction: the job's step, and which files it refers to.
                    let mut also = self.media_refs.of(event, sequence);
                    also.push(self.history.of(event, sequence));
                    also
                },
            )
            .await?;
        let e = &appended.event;
        if appended.created {
            self.history.note(e);
            tracing::info!(job_id = %e.job_id, status = e.status.as_str(), sequence = e.sequence, id = %e.id, "tap recorded");
        } else if !sent.is_recorded_by(e) {
            return Err(invalid(
                "Idempotency-Key",
                format!(
                    "was used for another tap of this job ({} at {}); a new tap needs a new key",
                    e.status.as_str(),
                    e.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ),
            )
            .into());
        } else {
            tracing::info!(job_id = %e.job_id, id = %e.id, "tap repeated with its Idempotency-Key: answered with the first event");
        }
        Ok(appended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(v: Value) -> String {
        parse_tap(&v).unwrap_err().field
    }

    #[test]
    fn a_delivered_tap_with_proof_of_delivery_is_valid() {
        let t = parse_tap(&json!({"status": "delivered", "received_by": "J. Doe", "note": "left with neighbour",
            "items": [{"sku": "A-1", "qty": 2}]}))
        .unwrap();
        assert_eq!(t.status, Status::Delivered);
        assert_eq!(t.items, vec![Item { sku: "A-1".into(), qty: 2, rejected: 0 }]);
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(field_of(json!({})), "status");
        assert_eq!(field_of(json!({"status": "teleported"})), "status");
        assert_eq!(field_of(json!({"status": "departed"})), "status");
        assert_eq!(field_of(json!({"status": "route_started"})), "status");
        assert_eq!(field_of(json!({"status": 3})), "status");
        assert_eq!(field_of(json!({"status": "failed"})), "reason_code");
        assert_eq!(field_of(json!({"status": "failed", "reason_code": "aliens"})), "reason_code");
        assert_eq!(field_of(json!({"status": "delivered", "note": "x".repeat(MAX_NOTE + 1)})), "note");
        assert_eq!(field_of(json!({"status": "delivered", "reason": "x".repeat(MAX_REASON + 1)})), "reason");
        assert_eq!(field_of(json!({"status": "delivered", "received_by": 7})), "received_by");
        assert_eq!(field_of(json!({"status": "delivered", "colour": "red"})), "colour");
        assert_eq!(field_of(json!({"status": "delivered", "items": [{"sku": "A", "qty": -1}]})), "items[0].qty");
        assert_eq!(
            field_of(json!({"status": "delivered", "items": [{"sku": "A", "qty": 1, "rejected": 2}]})),
            "items[0].rejected"
        );
        assert_eq!(field_of(json!([1, 2])), "body");
    }

    #[test]
    fn a_tap_says_one_thing() {
        let ok = |v: Value| parse_tap(&v).map(|_| ()).map_err(|e| e.to_string());
        // A reason only where something was not delivered.
        assert_eq!(field_of(json!({"status": "arrived", "reason_code": "refused"})), "reason_code");
        assert_eq!(field_of(json!({"status": "delivered", "reason": "dog"})), "reason");
        assert_eq!(field_of(json!({"status": "picked_up", "reason_code": "refused"})), "reason_code");
        ok(json!({"status": "failed", "reason_code": "refused", "reason": "dog"})).unwrap();
        // A partial delivery: something rejected and something delivered.
        assert_eq!(field_of(json!({"status": "partially_delivered"})), "items");
        assert_eq!(field_of(json!({"status": "partially_delivered", "items": [{"sku": "A", "qty": 2}]})), "items");
        assert_eq!(
            field_of(json!({"status": "partially_delivered", "items": [{"sku": "A", "qty": 2, "rejected": 2}]})),
            "items"
        );
        ok(json!({"status": "partially_delivered", "reason_code": "damaged",
            "items": [{"sku": "A", "qty": 2, "rejected": 2}, {"sku": "B", "qty": 1}]}))
        .unwrap();
        ok(json!({"status": "partially_delivered", "items": [{"sku": "A", "qty": 3, "rejected": 1}]})).unwrap();
        // A delivery with nothing rejected.
        let all = parse_tap(&json!({"status": "delivered", "items": [{"sku": "A", "qty": 2, "rejected": 2}]}));
        assert!(all.unwrap_err().message.contains("\"failed\""));
        let some = parse_tap(&json!({"status": "delivered",
            "items": [{"sku": "A", "qty": 2, "rejected": 1}]}));
        assert!(some.unwrap_err().message.contains("partially_delivered"));
        ok(json!({"status": "delivered", "items": [{"sku": "A", "qty": 2, "rejected": 0}]})).unwrap();
    }

    #[test]
    fn a_body_with_a_key_twice_is_refused_naming_the_key() {
        let e = parse_json(br#"{"status":"delivered","status":"failed"}"#).unwrap_err();
        assert_eq!(e.field, "status");
        let e = parse_json(br#"{"status":"partially_delivered","items":[{"sku":"A","qty":1,"qty":2}]}"#).unwrap_err();
        assert_eq!(e.field, "qty");
        assert_eq!(parse_json(b"{\"a\":1} x").unwrap_err().field, "body");
        assert_eq!(parse_json(b"\xff").unwrap_err().field, "body");
        assert_eq!(parse_json(&[b'['; 10_000]).unwrap_err().field, "body", "nesting is bounded");
        let v = parse_json(br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}]}"#).unwrap();
        assert_eq!(v, json!({"a": [1, -2, 3.5, "x", null, true, {"b": {}}]}));
    }

    #[test]
    fn job_ids_are_1_to_64_safe_characters() {
        assert!(validate_job_id("JOB-2024.11_7").is_ok());
        assert!(validate_job_id("").is_err());
        assert!(validate_job_id(&"j".repeat(65)).is_err());
        assert!(validate_job_id("a/b").is_err());
        assert!(validate_job_id("ünï").is_err());
        for dots in [".", "..", "..."] {
            assert!(validate_job_id(dots).is_err(), "{dots}");
        }
        assert!(validate_job_id("a..b").is_ok());
    }
}
