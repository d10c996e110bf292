//! The domain of a driver's tap: [`StatusEvent`] and its parts, exactly as they are stored in the
//! outbox and sent in the `standard` webhook format. A route event (the day's route started,
//! loading done, a break, ended: [`Status::is_route`]) is a `StatusEvent` too, kept under
//! [`ROUTE_KEY`] and carrying [`RouteMark`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::gps::clock::ClockSource;
use crate::gps::fix::Mode;

/// A job status a driver can tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// On the way to the job's address.
    HeadingTo,
    /// At the address.
    Arrived,
    /// Delivered (proof of delivery: `received_by`, `note`).
    Delivered,
    /// Some items delivered, some not (`items` with `rejected`).
    PartiallyDelivered,
    /// Not delivered (`reason_code` required).
    Failed,
    /// Picked up from the address.
    PickedUp,
    /// Left the address after arriving (recorded by the geofence).
    Departed,
    /// The day's route started (the driver, or the van leaving the depot). A route event: see
    /// [`Status::is_route`].
    RouteStarted,
    /// Loading done (at the depot).
    LoadingDone,
    /// Unloading done (returns, at the depot).
    UnloadingDone,
    /// The driver went on a break.
    BreakStarted,
    /// The break is over.
    BreakEnded,
    /// The day's route ended (the driver, or the van back at the depot); carries the summary.
    RouteEnded,
}

impl Status {
    /// Every job status, in the order a job usually goes through them.
    pub const ALL: [Status; 7] = [
        Status::HeadingTo,
        Status::Arrived,
        Status::Delivered,
        Status::PartiallyDelivered,
        Status::Failed,
        Status::PickedUp,
        Status::Departed,
    ];

    /// The route statuses, in the order a day usually goes through them.
    pub const ROUTE: [Status; 6] = [
        Status::RouteStarted,
        Status::LoadingDone,
        Status::UnloadingDone,
        Status::BreakStarted,
        Status::BreakEnded,
        Status::RouteEnded,
    ];

    /// Whether it is about the day's route, not a job: recorded by `POST /api/v1/route/status`
    /// (or the depot's geofence), stored under [`ROUTE_KEY`], `job_id` `null` on the wire.
    pub fn is_route(self) -> bool {
        Status::ROUTE.contains(&self)
    }

    /// A route status's name in `POST /api/v1/route/status` and in the `route.<name>` event
    /// type (`started`, `loading_done`, ..., `ended`); `None` for a job status.
    pub fn route_name(self) -> Option<&'static str> {
        Some(match self {
            Status::RouteStarted => "started",
            Status::LoadingDone => "loading_done",
            Status::UnloadingDone => "unloading_done",
            Status::BreakStarted => "break_started",
            Status::BreakEnded => "break_ended",
            Status::RouteEnded => "ended",
            _ => return None,
        })
    }

    /// The route status named `s` in `POST /api/v1/route/status`.
    pub fn parse_route(s: &str) -> Option<Status> {
        Status::ROUTE.into_iter().find(|x| x.route_name() == Some(s))
    }

    /// The wire name, e.g. `heading_to`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::HeadingTo => "heading_to",
            Status::Arrived => "arrived",
            Status::Delivered => "delivered",
            Status::PartiallyDelivered => "partially_delivered",
            Status::Failed => "failed",
            Status::PickedUp => "picked_up",
            Status::Departed => "departed",
            Status::RouteStarted => "route_started",
            Status::LoadingDone => "loading_done",
            Status::UnloadingDone => "unloading_done",
            Status::BreakStarted => "break_started",
            Status::BreakEnded => "break_ended",
            Status::RouteEnded => "route_ended",
        }
    }

    /// Parses a wire name (a job status or a route status).
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().chain(Status::ROUTE).find(|x| x.as_str() == s)
    }
}

/// Why a delivery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Nobody answered.
    CustomerNotPresent,
    /// The address could not be found.
    AddressNotFound,
    /// The customer refused the parcel.
    Refused,
    /// The parcel was damaged.
    Damaged,
    /// The driver could not get in (gate, concierge, ...).
    AccessDenied,
    /// Anything else (say what in `reason`).
    Other,
}

impl ReasonCode {
    /// Every reason code.
    pub const ALL: [ReasonCode; 6] = [
        ReasonCode::CustomerNotPresent,
        ReasonCode::AddressNotFound,
        ReasonCode::Refused,
        ReasonCode::Damaged,
        ReasonCode::AccessDenied,
        ReasonCode::Other,
    ];

    /// The wire name, e.g. `customer_not_present`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::CustomerNotPresent => "customer_not_present",
            ReasonCode::AddressNotFound => "address_not_found",
            ReasonCode::Refused => "refused",
            ReasonCode::Damaged => "damaged",
            ReasonCode::AccessDenied => "access_denied",
            ReasonCode::Other => "other",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<ReasonCode> {
        ReasonCode::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One line of a job's items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Stock keeping unit.
    pub sku: String,
    /// Quantity handed over (or meant to be).
    pub qty: u32,
    /// Quantity rejected or not delivered.
    #[serde(default)]
    pub rejected: u32,
}

/// Where the van was when the driver tapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Latitude, degrees WGS84.
    pub lat: f64,
    /// Longitude, degrees WGS84.
    pub lng: f64,
    /// Estimated horizontal accuracy, metres (from HDOP), when known.
    pub accuracy_m: Option<f64>,
    /// Age of the fix at the tap, seconds: 0 for a live fix, more for the last known one.
    pub fix_age_s: f64,
    /// Speed over ground, m/s.
    pub speed_mps: Option<f64>,
    /// Course over ground, degrees true.
    pub course_deg: Option<f64>,
    /// Fix dimension.
    pub mode: Mode,
}

impl Location {
    /// As it leaves the van: coordinates to 7 decimals (about 1 cm), speed to 0.01 m/s, course,
    /// accuracy and the fix's age to 0.1; no float noise in any body.
    pub fn tidy(self) -> Location {
        use crate::units::round;
        Location {
            lat: round(self.lat, 7),
            lng: round(self.lng, 7),
            accuracy_m: self.accuracy_m.map(|a| round(a, 1)),
            fix_age_s: round(self.fix_age_s, 1),
            speed_mps: self.speed_mps.map(|v| round(v, 2)),
            course_deg: self.course_deg.map(|c| round(c, 1)),
            mode: self.mode,
        }
    }
}

/// What a proof-of-delivery file shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentKind {
    /// A photo (`image/jpeg`, `image/png`, `image/webp`); up to 10 per tap.
    Photo,
    /// The recipient's signature (`image/png`, `image/svg+xml`); at most one per tap.
    Signature,
}

impl AttachmentKind {
    /// The wire name (`photo`, `signature`): the multipart part's name and `{kind}` in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::Photo => "photo",
            AttachmentKind::Signature => "signature",
        }
    }
}

/// A file of a tap's proof of delivery, stored content-addressed under `state_dir/media/`
/// before the event is (see [`crate::media`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Photo or signature.
    pub kind: AttachmentKind,
    /// 1-based, per kind, in the order the parts arrived (`photo_1` … `photo_10`).
    pub index: u32,
    /// SHA-256 of the bytes, lower-case hex: the file's name on the van.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// The content type the bytes were recognised as (magic numbers), e.g. `image/jpeg`.
    pub content_type: String,
    /// When it was captured: the part's own `Captured-At`, else the tap's `occurred_at`.
    pub captured_at: DateTime<Utc>,
    /// Where a receiver fetches it (`[pod] public_url`); `null` when stored, filled in each
    /// time the event is sent, and `null` without an upload.
    #[serde(default)]
    pub url: Option<String>,
}

/// A driver's status tap, as stored and as delivered. `id` never changes, across retries and
/// restarts; it is the `webhook-id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// Stable identifier (UUIDv7: time-ordered).
    pub id: Uuid,
    /// Outbox order.
    pub sequence: u64,
    /// The job; [`ROUTE_KEY`] for a route event (`null` on the wire).
    #[serde(with = "job_key")]
    pub job_id: String,
    /// What happened.
    pub status: Status,
    /// Why it failed (`failed`, optionally `partially_delivered`).
    pub reason_code: Option<ReasonCode>,
    /// Free text reason.
    pub reason: Option<String>,
    /// Who received the delivery.
    pub received_by: Option<String>,
    /// Driver's note.
    pub note: Option<String>,
    /// Items, for partial deliveries and pickups.
    #[serde(default)]
    pub items: Vec<Item>,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Which clock `occurred_at` came from.
    pub clock_source: ClockSource,
    /// Where it happened; `null` only when there has never been a fix.
    pub location: Option<Location>,
    /// The vehicle.
    pub vehicle_id: String,
    /// The driver, if configured.
    pub driver_id: Option<String>,
    /// Photos and signature, in order (photos first); empty for a tap without files.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Who recorded it: the driver (a tap), or the geofence (the van's position).
    #[serde(default)]
    pub source: Source,
    /// Where the van was against the job's stop, when the job is on the day's list with
    /// coordinates and there was a fix; `null` otherwise.
    #[serde(default)]
    pub stop: Option<StopProximity>,
    /// For `heading_to` at a listed stop with coordinates, while the van has a recent moving
    /// speed: when it should be there (straight line, see [`crate::stops::eta`]); else `null`.
    #[serde(default)]
    pub eta: Option<Eta>,
    /// The van's odometer when it was recorded, metres (0.1 m; see [`crate::odometer`]);
    /// `null` in events stored before it existed.
    #[serde(default)]
    pub odometer_m: Option<f64>,
    /// Route events only (absent from job events): the route, and the day's summary on
    /// `route_ended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteMark>,
}

/// Where route events are kept in order and under their Idempotency-Keys, as if a job: not an
/// identifier a job can have (`~`), and `null` as `job_id` on the wire.
pub const ROUTE_KEY: &str = "~route";

/// `job_id`: a job's id, or `null` for a route event ([`ROUTE_KEY`]).
mod job_key {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &str, s: S) -> Result<S::Ok, S::Error> {
        if id == super::ROUTE_KEY { s.serialize_none() } else { s.serialize_str(id) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Option::<String>::deserialize(d)?.unwrap_or_else(|| super::ROUTE_KEY.to_string()))
    }
}

/// What a route event says of the route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteMark {
    /// The route's id, when the day's list came with a route; else `null`.
    pub id: Option<String>,
    /// The route's date, likewise.
    #[serde(default)]
    pub date: Option<chrono::NaiveDate>,
    /// On `route_ended`: the day summed up; else `null`.
    pub summary: Option<Summary>,
}

/// A route summed up on the van, carried by `route_ended`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// When the route started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// Metres driven between the two, from the odometer (0.1 m).
    pub distance_m: f64,
    /// Seconds moving (the odometer's moving speed).
    pub driving_s: u64,
    /// Seconds stopped, anywhere (breaks included).
    pub stopped_s: u64,
    /// Seconds stopped away from every stop and the depot, not on a break.
    pub idle_s: u64,
    /// Seconds on a break.
    pub break_s: u64,
    /// The day's stops by outcome.
    pub stops: StopCounts,
}

/// The day's stops counted by how each ended (its last outcome; anything else is pending).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopCounts {
    /// Delivered.
    pub delivered: u32,
    /// Partially delivered.
    pub partially_delivered: u32,
    /// Failed.
    pub failed: u32,
    /// Picked up.
    pub picked_up: u32,
    /// No outcome yet.
    pub pending: u32,
}

/// Who recorded an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A tap: the API, the CLI or the driver page.
    #[default]
    Driver,
    /// The geofence of the job's stop (`arrived`, `departed`).
    Geofence,
}

/// Where the van was against a job's stop when an event was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StopProximity {
    /// From the fix to the stop, metres (rounded to 0.1 m).
    pub distance_m: f64,
    /// Whether the fix was within the stop's radius.
    pub inside: bool,
}

/// Why an id was refused (the caller names the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadIdentifier {
    /// Empty, or longer than 64 bytes (the length).
    #[error("must be 1 to 64 characters, got {0}")]
    Length(usize),
    /// A character outside `[A-Za-z0-9._-]`.
    #[error("may contain only letters, digits, '.', '_' and '-', got {0:?}")]
    Characters(String),
    /// `.` or `..`: path segments (`/jobs/../status` is not a job).
    #[error("must not be only dots, got {0:?}")]
    Dots(String),
}

/// Job, vehicle, driver and endpoint ids: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn identifier(s: &str) -> Result<(), BadIdentifier> {
    if s.is_empty() || s.len() > 64 {
        return Err(BadIdentifier::Length(s.len()));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(BadIdentifier::Characters(s.into()));
    }
    if s.bytes().all(|b| b == b'.') {
        return Err(BadIdentifier::Dots(s.into()));
    }
    Ok(())
}

/// The `type` of curbside's envelope, e.g. `job.status.delivered`, `route.started`.
pub fn event_type(status: Status) -> String {
    match status.route_name() {
        Some(name) => format!("route.{name}"),
        None => format!("job.status.{}", status.as_str()),
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: String,
    timestamp: DateTime<Utc>,
    data: &'a StatusEvent,
}

/// curbside's own envelope, `{"type": "job.status.<status>", "timestamp", "data": <event>}`, as
/// JSON bytes: the `standard` webhook body and the MQTT event payload.
pub fn envelope(e: &StatusEvent) -> Vec<u8> {
    let v = Envelope { kind: event_type(e.status), timestamp: e.occurred_at, data: e };
    // A struct of strings, numbers and a derived Serialize: cannot fail.
    serde_json::to_vec(&v).unwrap_or_default()
}

/// One step of a job as formats that carry a job's history see it (Detrack V2's
/// `milestones[]`): kept per job in the outbox after the event itself is delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Milestone {
    /// The event's sequence.
    pub sequence: u64,
    /// What happened.
    pub status: Status,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// Why it failed, if it did.
    pub reason_code: Option<ReasonCode>,
    /// Free text reason.
    pub reason: Option<String>,
    /// Who tapped it.
    pub driver_id: Option<String>,
    /// The van.
    pub vehicle_id: String,
    /// Where (latitude, longitude).
    pub position: Option<(f64, f64)>,
    /// Who recorded it (the driver, or the geofence).
    #[serde(default)]
    pub source: Source,
}

impl Milestone {
    /// The milestone of an event.
    pub fn of(e: &StatusEvent) -> Milestone {
        Milestone {
            sequence: e.sequence,
            status: e.status,
            occurred_at: e.occurred_at,
            reason_code: e.reason_code,
            reason: e.reason.clone(),
            driver_id: e.driver_id.clone(),
            vehicle_id: e.vehicle_id.clone(),
            position: e.location.as_ref().map(|l| (l.lat, l.lng)),
            source: e.source,
        }
    }
}

/// How an [`Eta`] was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EtaMethod {
    /// Straight-line distance over the recent moving speed.
    StraightLine,
}

/// An estimated arrival, as an event carries it (made by `stops::eta`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eta {
    /// When the van should be there.
    pub at: DateTime<Utc>,
    /// Seconds from the estimate to `at`.
    pub seconds: u64,
    /// Straight-line distance to the stop, metres (0.1 m).
    pub distance_m: f64,
    /// The recent moving speed used, m/s (0.01 m/s).
    pub speed_mps: f64,
    /// Always `straight_line`.
    pub method: EtaMethod,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_leaves_the_van_without_float_noise() {
        let l = Location {
            lat: 53.557783500000006,
            lng: 9.993020000000001,
            accuracy_m: Some(4.500000000000001),
            fix_age_s: 0.30000000000000004,
            speed_mps: Some(11.101711111111111),
            course_deg: Some(56.300000000000004),
            mode: Mode::ThreeD,
        }
        .tidy();
        let text = serde_json::to_string(&l).unwrap();
        assert_eq!(
            text,
            r#"{"lat":53.5577835,"lng":9.99302,"accuracy_m":4.5,"fix_age_s":0.3,"speed_mps":11.1,"course_deg":56.3,"mode":"3d"}"#
        );
    }
}
