//! Webhook payload formats: pure functions from a [`StatusEvent`] to the bytes a receiver gets,
//! one file per format.
//!
//! - [`standard`]: `{"type": "job.status.<status>", "timestamp", "data": StatusEvent}`.
//! - [`detrack_v1`], [`detrack_v2`]: Detrack's V1 and V2 push, every field of the examples in
//!   Detrack's webhook document, local times in the van's `timezone`.
//! - [`carrier`]: a carrier's webhook contract (`id`, `carrierTrackingNumber`, `metaData`,
//!   `status`, `location`, `ts`, `trackingUrl`, `code`, `failedStatus`, `details`).
//! - [`track_pod`]: Track-POD's `{Metadata, Data}` with `Data` the API 2.0 `Order`, field-exact.
//! - [`trackingmore`]: TrackingMore's v4 `{code, message, data}` with the tracking object, and
//!   its signature.
//! - [`antsroute`]: AntsRoute's event catalogue, one request per event, made by a shipped jq
//!   program (the body is curbside's: AntsRoute publishes none).
//! - [`jq`]: an operator's jq program; each output is one request.
//!
//! Each follows its document field by field; each file's golden tests compare it with the
//! document's own example (`tests/fixtures/formats/`). A new format is a file here (its body
//! function and its status names, with its golden test), a [`Format`] variant, and its fixture.
//! What several formats share (local times, coordinates, reasons, attachments) is below.

use std::sync::Arc;

use crate::zone::Zone;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::event::{Attachment, AttachmentKind, Milestone, Status, StatusEvent};
use crate::stops::Stop;

pub mod antsroute;
mod carrier;
mod detrack_v1;
mod detrack_v2;
#[cfg(test)]
mod golden;
pub mod jq;
mod standard;
pub mod track_pod;
pub mod trackingmore;

pub use carrier::{carrier, carrier_code, carrier_status};
pub use detrack_v1::{detrack_v1, detrack_v1_status};
pub use detrack_v2::{detrack_v2, detrack_v2_status};
pub use standard::standard;

/// A payload format, with what it was configured with.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Format {
    /// curbside's own: the whole event under `data`.
    #[default]
    Standard,
    /// Detrack V1 push field names.
    DetrackV1,
    /// Detrack V2 push field names.
    DetrackV2,
    /// Carrier tracking style.
    Carrier,
    /// Track-POD's order webhook.
    TrackPod(Arc<track_pod::Settings>),
    /// TrackingMore's v4 webhook.
    TrackingMore(Arc<trackingmore::Settings>),
    /// AntsRoute's event catalogue (the shipped program, or the operator's).
    AntsRoute(Arc<jq::Program>),
    /// An operator's jq program.
    Jq(Arc<jq::Program>),
}

impl Format {
    /// The config names of every format.
    pub const NAMES: [&str; 8] =
        ["standard", "detrack-v1", "detrack-v2", "carrier", "track-pod", "trackingmore", "antsroute", "jq"];

    /// Parses a config value, for the formats that need no other key (the others are built by
    /// `webhook::settings`).
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "standard" => Some(Format::Standard),
            "detrack-v1" => Some(Format::DetrackV1),
            "detrack-v2" => Some(Format::DetrackV2),
            "carrier" => Some(Format::Carrier),
            _ => None,
        }
    }

    /// Its config name.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Standard => "standard",
            Format::DetrackV1 => "detrack-v1",
            Format::DetrackV2 => "detrack-v2",
            Format::Carrier => "carrier",
            Format::TrackPod(_) => "track-pod",
            Format::TrackingMore(_) => "trackingmore",
            Format::AntsRoute(_) => "antsroute",
            Format::Jq(_) => "jq",
        }
    }
}

/// What a format needs besides the event: the van's time zone (formats with local times), the
/// job's history up to this event (Detrack V2's `milestones[]`, Track-POD's arrival and
/// departure, TrackingMore's checkpoints) and the job's stop on the day's list (Track-POD's
/// address and client).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The van's time zone (`timezone` in the config).
    pub tz: Zone,
    /// The job's events up to this one (included), oldest first; empty when not needed.
    pub history: &'a [Milestone],
    /// The job's stop, when the day's list has it.
    pub stop: Option<&'a Stop>,
}

impl Context<'_> {
    /// UTC, no history, no stop (tests, and formats that need none of them).
    pub const UTC: Context<'static> = Context { tz: Zone::UTC, history: &[], stop: None };
}

/// One request a format makes of an event: its id (`webhook-id`, the same on every retry) and
/// its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    /// The event's id for the first request; `{event id}.{n}` or `{event id}.{name}` for the
    /// others of a fan-out.
    pub id: String,
    /// JSON.
    pub body: Vec<u8>,
}

impl Format {
    /// Whether bodies of this format carry the job's history (so that the delivery loop reads it).
    pub fn needs_history(&self) -> bool {
        matches!(self, Format::DetrackV2 | Format::TrackPod(_) | Format::TrackingMore(_))
    }

    /// Whether this format can say `status` at all: every job status; the route's only in
    /// `standard`, `jq`, and the route events Track-POD and AntsRoute have (the others never get
    /// them, and refuse them in `events`).
    pub fn expresses(&self, status: Status) -> bool {
        match self {
            _ if !status.is_route() => true,
            Format::Standard | Format::Jq(_) => true,
            Format::TrackPod(_) => track_pod::DOCUMENTED.contains(&status),
            Format::AntsRoute(_) => antsroute::DOCUMENTED.contains(&status),
            Format::DetrackV1 | Format::DetrackV2 | Format::Carrier | Format::TrackingMore(_) => false,
        }
    }

    /// Whether bodies of this format carry the job's stop (so that the delivery loop reads it).
    pub fn needs_stop(&self) -> bool {
        matches!(self, Format::TrackPod(_))
    }

    /// The statuses this format's document names, sent when a webhook does not list `events`;
    /// `None`: every status. The others are sent only when listed, under curbside's names (see
    /// docs/deliveries.md, "Formats").
    pub fn documented(&self) -> Option<&'static [Status]> {
        match self {
            Format::Standard | Format::Jq(_) => None,
            Format::TrackPod(_) => Some(track_pod::DOCUMENTED),
            Format::TrackingMore(_) => Some(trackingmore::DOCUMENTED),
            Format::AntsRoute(_) => Some(antsroute::DOCUMENTED),
            Format::DetrackV1 | Format::DetrackV2 => {
                Some(&[Status::HeadingTo, Status::Delivered, Status::PartiallyDelivered, Status::Failed])
            }
            Format::Carrier => Some(&[Status::HeadingTo, Status::Delivered, Status::Failed]),
        }
    }
}

/// A coordinate without float noise (7 decimals, about 1 cm).
fn coord(x: f64) -> f64 {
    (x * 1e7).round() / 1e7
}

/// `2014-02-13T09:30:45+08:00`: seconds and the van's offset (Detrack V1).
fn local_secs(t: DateTime<Utc>, tz: Zone) -> String {
    tz.local(t).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// `2022-04-11T16:18:18.032+08:00`: milliseconds and the van's offset (Detrack V2).
fn local_millis(t: DateTime<Utc>, tz: Zone) -> String {
    tz.local(t).to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// The van's local date.
fn local_date(t: DateTime<Utc>, tz: Zone) -> String {
    tz.local(t).date_naive().to_string()
}

/// A failure's reason as one text: the free text, else the code.
fn reason_text(e: &StatusEvent) -> Option<String> {
    match (e.reason_code, &e.reason) {
        (Some(c), Some(r)) => Some(format!("{}: {r}", c.as_str())),
        (Some(c), None) => Some(c.as_str().to_string()),
        (None, r) => r.clone(),
    }
}

/// Who the job is assigned to: the driver, else the van.
fn assignee(driver: &Option<String>, vehicle: &str) -> String {
    driver.clone().unwrap_or_else(|| vehicle.to_string())
}

fn photos(e: &StatusEvent) -> impl Iterator<Item = &Attachment> {
    e.attachments.iter().filter(|a| a.kind == AttachmentKind::Photo)
}

fn signature(e: &StatusEvent) -> Option<&Attachment> {
    e.attachments.iter().find(|a| a.kind == AttachmentKind::Signature)
}

/// The request body of a format that makes one request per event, without running a program
/// (`None` for antsroute and jq: see [`render`]).
pub fn body(format: &Format, e: &StatusEvent, ctx: &Context<'_>) -> Option<Vec<u8>> {
    let v = match format {
        Format::Standard => return Some(crate::event::envelope(e)),
        Format::DetrackV1 => detrack_v1(e, ctx),
        Format::DetrackV2 => detrack_v2(e, ctx),
        Format::Carrier => carrier(e),
        Format::TrackPod(s) => track_pod::track_pod(e, ctx, s),
        Format::TrackingMore(s) => trackingmore::trackingmore(e, ctx, s),
        Format::AntsRoute(_) | Format::Jq(_) => return None,
    };
    Some(serde_json::to_vec(&v).expect("JSON values serialize"))
}

/// The requests `format` makes of event `e`, in order: one for most formats; none, one or
/// several for a program (`runner` runs it, bounded). An error parks the event on that
/// endpoint.
pub async fn render(
    format: &Format,
    e: &StatusEvent,
    ctx: &Context<'_>,
    runner: &jq::Runner,
) -> Result<Vec<Out>, jq::JqError> {
    let program = match format {
        Format::AntsRoute(p) | Format::Jq(p) => p,
        other => {
            let body = body(other, e, ctx).expect("a format without a program");
            return Ok(vec![Out { id: e.id.to_string(), body }]);
        }
    };
    let outputs = runner.run(program, &crate::event::envelope(e)).await?;
    Ok(outputs
        .into_iter()
        .enumerate()
        .map(|(n, v)| {
            // A named output (AntsRoute's `event`) keeps its id whatever else the program makes.
            let id = match (n, v.get("event").and_then(serde_json::Value::as_str)) {
                (_, Some(name)) if matches!(format, Format::AntsRoute(_)) => format!("{}.{name}", e.id),
                (0, _) => e.id.to_string(),
                (n, _) => format!("{}.{n}", e.id),
            };
            Out { id, body: serde_json::to_vec(&v).expect("JSON values serialize") }
        })
        .collect())
}

/// A sample event for `curbside webhook test`.
pub fn sample(vehicle_id: &str) -> StatusEvent {
    use crate::event::{Item, Location};
    StatusEvent {
        id: uuid::Uuid::now_v7(),
        sequence: 0,
        job_id: "TEST-0001".into(),
        status: Status::Delivered,
        reason_code: None,
        reason: None,
        received_by: Some("Test Recipient".into()),
        note: Some("curbside webhook test".into()),
        items: vec![Item { sku: "SAMPLE".into(), qty: 1, rejected: 0 }],
        occurred_at: chrono::Utc::now(),
        clock_source: crate::gps::clock::ClockSource::System,
        location: Some(Location {
            lat: 53.55073,
            lng: 9.99302,
            accuracy_m: Some(4.5),
            fix_age_s: 0.0,
            speed_mps: Some(0.0),
            course_deg: None,
            mode: crate::gps::Mode::ThreeD,
        }),
        vehicle_id: vehicle_id.into(),
        driver_id: None,
        attachments: Vec::new(),
        source: crate::event::Source::Driver,
        stop: None,
        eta: None,
        odometer_m: Some(1_234.5),
        route: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_outside_a_document_are_not_sent_unless_listed() {
        assert_eq!(Format::Standard.documented(), None);
        for f in [Format::DetrackV1, Format::DetrackV2, Format::Carrier] {
            let d = f.documented().unwrap();
            assert!(
                !d.contains(&Status::Arrived) && !d.contains(&Status::PickedUp) && !d.contains(&Status::Departed),
                "{f:?}"
            );
        }
    }

    #[test]
    fn route_events_go_only_where_the_format_can_say_them() {
        let route_formats =
            [Format::Standard, Format::TrackPod(Default::default()), Format::AntsRoute(Arc::new(antsroute::program()))];
        for f in &route_formats {
            assert!(f.expresses(Status::RouteStarted) && f.expresses(Status::RouteEnded), "{f:?}");
        }
        for f in [Format::DetrackV1, Format::DetrackV2, Format::Carrier, Format::TrackingMore(Default::default())] {
            assert!(Status::ROUTE.iter().all(|s| !f.expresses(*s)), "{f:?}");
            assert!(f.documented().unwrap().iter().all(|s| !s.is_route()), "{f:?}");
            assert!(Status::ALL.iter().all(|s| f.expresses(*s)), "{f:?}");
        }
        for f in &route_formats[1..] {
            assert!(f.documented().unwrap().iter().all(|s| f.expresses(*s)), "{f:?}");
            assert!(!f.expresses(Status::BreakStarted), "{f:?}");
        }
    }

    #[test]
    fn the_new_formats_send_what_their_documents_name_and_never_a_departure() {
        let formats = [
            Format::TrackPod(Default::default()),
            Format::TrackingMore(Default::default()),
            Format::AntsRoute(Arc::new(antsroute::program())),
        ];
        for f in &formats {
            let d = f.documented().unwrap();
            assert!(d.contains(&Status::Delivered) && d.contains(&Status::Failed), "{f:?}");
            assert!(!d.contains(&Status::Departed), "{f:?}");
        }
        assert_eq!(Format::Jq(Arc::new(jq::Program::compile(".").unwrap())).documented(), None);
    }
}
