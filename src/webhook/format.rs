//! Webhook payload formats: pure functions from a [`StatusEvent`] to the bytes a receiver gets.
//!
//! - `standard`: `{"type": "job.status.<status>", "timestamp", "data": StatusEvent}`.
//! - `detrack-v1`, `detrack-v2`: Detrack's V1 and V2 push, every field of the examples in
//!   Detrack's webhook document, local times in the van's `timezone`.
//! - `carrier`: a carrier's webhook contract (`id`, `carrierTrackingNumber`, `metaData`,
//!   `status`, `location`, `ts`, `trackingUrl`, `code`, `failedStatus`, `details`).
//!
//! Each follows its document field by field; the golden tests below compare them with the
//! documents' own examples (`tests/fixtures/formats/`).

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::event::{Attachment, AttachmentKind, Milestone, Source, Status, StatusEvent};

/// A payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Format {
    /// curbside's own: the whole event under `data`.
    #[default]
    #[serde(rename = "standard")]
    Standard,
    /// Detrack V1 push field names.
    #[serde(rename = "detrack-v1")]
    DetrackV1,
    /// Detrack V2 push field names.
    #[serde(rename = "detrack-v2")]
    DetrackV2,
    /// Carrier tracking style.
    #[serde(rename = "carrier")]
    Carrier,
}

impl Format {
    /// The config names of every format.
    pub const NAMES: [&str; 4] = ["standard", "detrack-v1", "detrack-v2", "carrier"];

    /// Parses a config value.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "standard" => Some(Format::Standard),
            "detrack-v1" => Some(Format::DetrackV1),
            "detrack-v2" => Some(Format::DetrackV2),
            "carrier" => Some(Format::Carrier),
            _ => None,
        }
    }
}

/// What a format needs besides the event: the van's time zone (formats with local times) and
/// the job's history up to this event (Detrack V2's `milestones[]`).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The van's time zone (`timezone` in the config).
    pub tz: Tz,
    /// The job's events up to this one (included), oldest first; empty when not needed.
    pub history: &'a [Milestone],
}

impl Context<'_> {
    /// UTC, no history (tests, and formats that need neither).
    pub const UTC: Context<'static> = Context { tz: Tz::UTC, history: &[] };
}

impl Format {
    /// Whether bodies of this format carry the job's history (so that the delivery loop reads it).
    pub fn needs_history(self) -> bool {
        self == Format::DetrackV2
    }

    /// The statuses this format's document names, sent when a webhook does not list `events`;
    /// `None`: every status. The others are sent only when listed, under curbside's names (see
    /// the README, "Webhook formats").
    pub fn documented(self) -> Option<&'static [Status]> {
        match self {
            Format::Standard => None,
            Format::DetrackV1 | Format::DetrackV2 => {
                Some(&[Status::HeadingTo, Status::Delivered, Status::PartiallyDelivered, Status::Failed])
            }
            Format::Carrier => Some(&[Status::HeadingTo, Status::Delivered, Status::Failed]),
        }
    }
}

/// The standard payload as a JSON value (the bytes come from [`crate::event::envelope`]).
pub fn standard(e: &StatusEvent) -> Value {
    json!({ "type": crate::event::event_type(e.status), "timestamp": e.occurred_at, "data": e })
}

/// A coordinate without float noise (7 decimals, about 1 cm).
fn coord(x: f64) -> f64 {
    (x * 1e7).round() / 1e7
}

/// `2014-02-13T09:30:45+08:00`: seconds and the van's offset (Detrack V1).
fn local_secs(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// `2022-04-11T16:18:18.032+08:00`: milliseconds and the van's offset (Detrack V2).
fn local_millis(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// The van's local date.
fn local_date(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).date_naive().to_string()
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

/// Detrack V1 `status`: the document's trigger list ("Heading To", "Partially Completed",
/// "Failed") and example ("Delivered"); "Arrived" and "Collected" are curbside's.
pub fn detrack_v1_status(s: Status) -> &'static str {
    match s {
        Status::HeadingTo => "Heading To",
        Status::Arrived => "Arrived",
        Status::Delivered => "Delivered",
        Status::PartiallyDelivered => "Partially Completed",
        Status::Failed => "Failed",
        Status::PickedUp => "Collected",
        Status::Departed => "Departed",
    }
}

/// The Detrack V1 push: every field of the document's example, `""` where curbside knows
/// nothing (as the example does), local `date` and `time` (seconds, offset).
pub fn detrack_v1(e: &StatusEvent, ctx: &Context<'_>) -> Value {
    let (lat, lng) = match &e.location {
        Some(l) => (json!(coord(l.lat)), json!(coord(l.lng))),
        None => (json!(""), json!("")),
    };
    let first_photo = photos(e).next();
    json!({
        "date": local_date(e.occurred_at, ctx.tz),
        "address": "",
        "delivery_time": "",
        "deliver_to": "",
        "phone": "",
        "notify_email": "",
        "notify_url": "",
        "assign_to": assignee(&e.driver_id, &e.vehicle_id),
        "instructions": "",
        "zone": "",
        "reason": reason_text(e).unwrap_or_default(),
        "note": e.note.clone().unwrap_or_default(),
        "received_by": e.received_by.clone().unwrap_or_default(),
        "image": photos(e).count(),
        "view_image_url": first_photo.and_then(|a| a.url.clone()).unwrap_or_default(),
        "do": e.job_id,
        "status": detrack_v1_status(e.status),
        "time": local_secs(e.occurred_at, ctx.tz),
        "pod_lat": lat,
        "pod_lng": lng,
        "pod_address": "",
        "items": e.items.iter().map(|i| json!({
            "sku": i.sku, "desc": "", "qty": i.qty, "reject": i.rejected, "reason": "",
        })).collect::<Vec<_>>(),
    })
}

/// Detrack V2 `status` (also `primary_job_status`, `tracking_status_code`), `tracking_status`,
/// and the milestone's `status`: "dispatched", "Out for delivery" and "out_for_delivery" are
/// the document's example; the others follow the V1 names in V2's lower-case style.
pub fn detrack_v2_status(s: Status) -> (&'static str, &'static str, &'static str) {
    match s {
        Status::HeadingTo => ("dispatched", "Out for delivery", "out_for_delivery"),
        Status::Arrived => ("dispatched", "Arrived", "arrived"),
        Status::Delivered => ("completed", "Delivered", "completed"),
        Status::PartiallyDelivered => ("partially_completed", "Partially Completed", "partially_completed"),
        Status::Failed => ("failed", "Failed", "failed"),
        Status::PickedUp => ("completed", "Collected", "collected"),
        Status::Departed => ("dispatched", "Departed", "departed"),
    }
}

/// Every field of the V2 example, at its "unknown" value (null; `false`, `""`, `0` and `[]`
/// where the example has them for an empty job).
static DETRACK_V2: std::sync::LazyLock<serde_json::Map<String, Value>> = std::sync::LazyLock::new(|| {
    serde_json::from_str(include_str!("detrack_v2.json")).expect("the Detrack V2 template is JSON")
});

/// The Detrack V2 push: the example's fields, null where curbside knows nothing (as Detrack
/// sends them), local times with milliseconds and offset, photos and signature as URLs, and
/// the job's events as `milestones[]`.
pub fn detrack_v2(e: &StatusEvent, ctx: &Context<'_>) -> Value {
    let tz = ctx.tz;
    let at = |t: DateTime<Utc>| json!(local_millis(t, tz));
    let mut v = DETRACK_V2.clone();
    let mut set = |k: &str, value: Value| {
        debug_assert!(v.contains_key(k), "{k} is a field of the V2 example");
        v.insert(k.to_string(), value);
    };
    let (status, tracking, _) = detrack_v2_status(e.status);
    set("id", json!(e.id.to_string()));
    set("type", json!(if e.status == Status::PickedUp { "Collection" } else { "Delivery" }));
    set("do_number", json!(e.job_id));
    set("date", json!(local_date(e.occurred_at, tz)));
    set("start_date", json!(local_date(e.occurred_at, tz)));
    set("primary_job_status", json!(status));
    set("status", json!(status));
    set("tracking_status", json!(tracking));
    set("tracking_status_code", json!(status));
    set("assign_to", json!(assignee(&e.driver_id, &e.vehicle_id)));
    set("reason", json!(reason_text(e)));
    set("received_by_sent_by", json!(e.received_by));
    set("note", json!(e.note));
    set("time_zone", json!(tz.name()));
    let earlier = |s: Status| ctx.history.iter().rev().find(|m| m.status == s && m.sequence <= e.sequence);
    let failures = ctx.history.iter().filter(|m| m.status == Status::Failed && m.sequence < e.sequence).count();
    set("attempt", json!(failures + 1));
    if let Some(m) =
        (e.status == Status::HeadingTo).then(|| Milestone::of(e)).or_else(|| earlier(Status::HeadingTo).cloned())
    {
        set("head_to_delivery_at", at(m.occurred_at));
    }
    if let Some(m) =
        (e.status == Status::Arrived).then(|| Milestone::of(e)).or_else(|| earlier(Status::Arrived).cloned())
    {
        set("arrived_at", at(m.occurred_at));
        if let Some((lat, lng)) = m.position {
            set("arrived_lat", json!(coord(lat)));
            set("arrived_lng", json!(coord(lng)));
        }
    }
    // The arrival the geofence recorded (the document has no type for these: a local time as
    // its other `_at` fields, coordinates as numbers as `arrived_lat/lng`).
    let by_fence = |m: &Milestone| m.status == Status::Arrived && m.source == Source::Geofence;
    if let Some(m) = Some(Milestone::of(e))
        .filter(by_fence)
        .or_else(|| ctx.history.iter().rev().find(|m| by_fence(m) && m.sequence <= e.sequence).cloned())
    {
        set("geofence_ack_at", at(m.occurred_at));
        if let Some((lat, lng)) = m.position {
            set("geofence_ack_lat", json!(coord(lat)));
            set("geofence_ack_lng", json!(coord(lng)));
        }
    }
    // A heading_to's estimate (straight line, recent moving speed): both the planned and the
    // live estimate, as curbside has only the live one.
    if let Some(eta) = &e.eta {
        set("eta_time", at(eta.at));
        set("live_eta", at(eta.at));
    }
    if matches!(e.status, Status::Delivered | Status::PartiallyDelivered | Status::Failed | Status::PickedUp) {
        set("pod_at", at(e.occurred_at));
        if let Some(l) = &e.location {
            // Strings, as the example's empty ones are.
            set("pod_lat", json!(coord(l.lat).to_string()));
            set("pod_lng", json!(coord(l.lng).to_string()));
        }
    }
    for (n, a) in photos(e).take(10).enumerate() {
        set(&format!("photo_{}_file_url", n + 1), json!(a.url));
        set(&format!("photo_{}_at", n + 1), at(a.captured_at));
    }
    if let Some(a) = signature(e) {
        set("signature_file_url", json!(a.url));
        set("signed_at", at(a.captured_at));
    }
    set("items_count", json!(e.items.len()));
    set(
        "items",
        e.items
            .iter()
            .map(|i| json!({"sku": i.sku, "description": null, "quantity": i.qty, "reject_quantity": i.rejected, "reject_reason": null}))
            .collect(),
    );
    let mut steps: Vec<Milestone> = ctx.history.iter().filter(|m| m.sequence < e.sequence).cloned().collect();
    steps.push(Milestone::of(e));
    set(
        "milestones",
        steps
            .iter()
            .map(|m| {
                let reason = match (m.reason_code, &m.reason) {
                    (Some(c), Some(r)) => Some(format!("{}: {r}", c.as_str())),
                    (Some(c), None) => Some(c.as_str().to_string()),
                    (None, r) => r.clone(),
                };
                json!({
                    "status": detrack_v2_status(m.status).2,
                    "assign_to": assignee(&m.driver_id, &m.vehicle_id),
                    "reason": reason,
                    "pod_at": at(m.occurred_at),
                    "created_at": at(m.occurred_at),
                    "user_name": assignee(&m.driver_id, &m.vehicle_id),
                })
            })
            .collect(),
    );
    Value::Object(v)
}

/// The carrier status code of a status: `OUT_FOR_DELIVERY`, `DELIVERED` and `FAILED_ATTEMPT`
/// are the document's; `ARRIVED`, `PARTIALLY_DELIVERED` and `PICKED_UP` are curbside's (sent
/// only to a webhook that lists them in `events`).
pub fn carrier_status(s: Status) -> &'static str {
    match s {
        Status::HeadingTo => "OUT_FOR_DELIVERY",
        Status::Arrived => "ARRIVED",
        Status::Delivered => "DELIVERED",
        Status::PartiallyDelivered => "PARTIALLY_DELIVERED",
        Status::Failed => "FAILED_ATTEMPT",
        Status::PickedUp => "PICKED_UP",
        Status::Departed => "DEPARTED",
    }
}

/// The carrier `code`: 410 (`OUT_FOR_DELIVERY`) and 601 (`FAILED_ATTEMPT`) are the document's
/// examples; the others are curbside's, in the same hundreds (4xx on the way, 5xx handed over,
/// 6xx not).
pub fn carrier_code(s: Status) -> u16 {
    match s {
        Status::HeadingTo => 410,
        Status::Arrived => 420,
        Status::Delivered => 500,
        Status::PartiallyDelivered => 510,
        Status::Failed => 601,
        Status::PickedUp => 520,
        Status::Departed => 430,
    }
}

/// The headline and description in English (`en`) and Dutch (`nl`), the languages of the
/// document's example; the failed attempt's are the example's own.
fn carrier_lang(e: &StatusEvent) -> Value {
    let (en, en_text) = carrier_headline(e);
    let (nl, nl_text) = carrier_headline_nl(e);
    json!({"en": {"headline": en, "description": en_text}, "nl": {"headline": nl, "description": nl_text}})
}

fn carrier_headline_nl(e: &StatusEvent) -> (&'static str, String) {
    match e.status {
        Status::HeadingTo => ("Onderweg", "De koerier is onderweg naar de bestemming".into()),
        Status::Arrived => ("Koerier aangekomen", "De koerier is aangekomen op de bestemming".into()),
        Status::Delivered => (
            "Bezorgd",
            match &e.received_by {
                Some(r) => format!("Bezorgd op bestemming, in ontvangst genomen door {r}"),
                None => "Bezorgd op bestemming".into(),
            },
        ),
        Status::PartiallyDelivered => {
            ("Gedeeltelijk bezorgd", "Een deel van de zending is bezorgd op bestemming".into())
        }
        Status::Failed => ("Afleverpoging mislukt", "Afleverpoging mislukt op bestemming".into()),
        Status::PickedUp => ("Opgehaald", "De zending is opgehaald".into()),
        Status::Departed => ("Koerier vertrokken", "De koerier is vertrokken van de bestemming".into()),
    }
}

fn carrier_headline(e: &StatusEvent) -> (&'static str, String) {
    match e.status {
        Status::HeadingTo => ("Out for delivery", "The courier is on the way to the destination".into()),
        Status::Arrived => ("Courier arrived", "The courier arrived at the destination".into()),
        Status::Delivered => (
            "Delivered",
            match &e.received_by {
                Some(r) => format!("Delivered at destination, received by {r}"),
                None => "Delivered at destination".into(),
            },
        ),
        Status::PartiallyDelivered => {
            ("Partially delivered", "Part of the shipment was delivered at destination".into())
        }
        // The document's own example.
        Status::Failed => ("Delivery attempt failed", "Delivery attempt failed at destination".into()),
        Status::PickedUp => ("Picked up", "The shipment was picked up".into()),
        Status::Departed => ("Courier departed", "The courier left the destination".into()),
    }
}

/// The carrier contract's body: the document's fields (`id` is the shipment, i.e. the job;
/// `metaData` carries curbside's event id; `location` null unless on `OUT_FOR_DELIVERY` and
/// `DELIVERED` with a fix), `ts` in milliseconds, `details` with headlines in English and Dutch, the
/// courier (driver, else van) and the reason; `podUrls` and `signatureUrl` on `DELIVERED`.
pub fn carrier(e: &StatusEvent) -> Value {
    let location = match (&e.location, e.status) {
        (Some(l), Status::HeadingTo | Status::Delivered) => json!({"lat": coord(l.lat), "lng": coord(l.lng)}),
        _ => Value::Null,
    };
    let mut details = json!({
        "lang": carrier_lang(e),
        "courierName": assignee(&e.driver_id, &e.vehicle_id),
    });
    let mut v = json!({
        "id": e.job_id,
        "carrierTrackingNumber": e.job_id,
        "metaData": e.id.to_string(),
        "status": carrier_status(e.status),
        "location": location,
        "ts": e.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "trackingUrl": "",
        "code": carrier_code(e.status),
    });
    let o = v.as_object_mut().expect("an object literal");
    if e.status == Status::Failed {
        o.insert(
            "failedStatus".into(),
            json!(e.reason_code.map_or("OTHER".to_string(), |c| c.as_str().to_uppercase())),
        );
        details["reason"] = json!(reason_text(e).unwrap_or_default());
    }
    if e.status == Status::Delivered {
        o.insert("podUrls".into(), json!(photos(e).filter_map(|a| a.url.clone()).collect::<Vec<_>>()));
        o.insert("signatureUrl".into(), json!(signature(e).and_then(|a| a.url.clone())));
    }
    o.insert("details".into(), details);
    v
}

/// The request body for `format`.
pub fn body(format: Format, e: &StatusEvent, ctx: &Context<'_>) -> Vec<u8> {
    let v = match format {
        Format::Standard => return crate::event::envelope(e),
        Format::DetrackV1 => detrack_v1(e, ctx),
        Format::DetrackV2 => detrack_v2(e, ctx),
        Format::Carrier => carrier(e),
    };
    serde_json::to_vec(&v).expect("JSON values serialize")
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ReasonCode;

    fn event(status: Status) -> StatusEvent {
        let mut e = sample("van-17");
        e.status = status;
        e
    }

    /// A delivered event with two photos and a signature, uploaded, at a fixed time.
    fn with_proof(status: Status) -> StatusEvent {
        let mut e = event(status);
        e.occurred_at = "2026-03-01T23:30:45.123456789Z".parse().unwrap();
        e.location.as_mut().unwrap().lat = 53.55073000000001;
        e.driver_id = Some("Adam".into());
        for (kind, index) in [(AttachmentKind::Photo, 1), (AttachmentKind::Photo, 2), (AttachmentKind::Signature, 1)] {
            e.attachments.push(Attachment {
                kind,
                index,
                sha256: "ab".repeat(32),
                bytes: 1000,
                content_type: "image/png".into(),
                captured_at: e.occurred_at,
                url: Some(format!("https://files.example/{}-{index}.png", kind.as_str())),
            });
        }
        e
    }

    fn doc(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/formats/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// `ours` has every field of the document's `example`, each of the same JSON type (a null
    /// in the example may be anything: it is a field the example leaves unknown), and no field
    /// the example lacks but `extra`. Arrays are compared element by element with the example's
    /// first.
    fn same_shape(example: &Value, ours: &Value, path: &str, extra: &[&str]) {
        shape(example, ours, path, extra, false)
    }

    /// As [`same_shape`], where curbside may also send null for a field it does not know
    /// (Detrack V2 sends unknown fields as null).
    fn same_shape_or_null(example: &Value, ours: &Value, path: &str) {
        shape(example, ours, path, &[], true)
    }

    fn shape(example: &Value, ours: &Value, path: &str, extra: &[&str], null_ok: bool) {
        let same_shape = |d: &Value, o: &Value, p: &str, e: &[&str]| shape(d, o, p, e, null_ok);
        match (example, ours) {
            (Value::Null, _) => {}
            (_, Value::Null) if null_ok => {}
            (Value::Object(d), Value::Object(o)) => {
                for (k, v) in d {
                    let ov = o.get(k).unwrap_or_else(|| panic!("{path}.{k} is missing in {ours}"));
                    same_shape(v, ov, &format!("{path}.{k}"), extra);
                }
                for k in o.keys() {
                    assert!(d.contains_key(k) || extra.contains(&k.as_str()), "{path}.{k} is not in the document");
                }
            }
            (Value::Array(d), Value::Array(o)) => {
                if let Some(first) = d.first() {
                    for (i, ov) in o.iter().enumerate() {
                        same_shape(first, ov, &format!("{path}[{i}]"), extra);
                    }
                }
            }
            (Value::String(_), Value::String(_))
            | (Value::Number(_), Value::Number(_))
            | (Value::Bool(_), Value::Bool(_)) => {}
            (d, o) => panic!("{path}: the document has {d}, curbside sends {o}"),
        }
    }

    fn is_time(v: &Value, fraction: usize, offset: bool) -> bool {
        let Some(s) = v.as_str() else { return false };
        let Ok(t) = DateTime::parse_from_rfc3339(s) else { return false };
        let frac = s.split_once('.').map_or(0, |(_, r)| r.chars().take_while(char::is_ascii_digit).count());
        frac == fraction && (offset != s.ends_with('Z')) && t.timestamp() > 0
    }

    #[test]
    fn the_fast_standard_body_equals_the_json_tree() {
        let e = with_proof(Status::Arrived);
        let fast: Value = serde_json::from_slice(&body(Format::Standard, &e, &Context::UTC)).unwrap();
        assert_eq!(fast, standard(&e));
    }

    #[test]
    fn standard_wraps_the_whole_event_and_its_attachments() {
        let e = with_proof(Status::Delivered);
        let v: Value = serde_json::from_slice(&body(Format::Standard, &e, &Context::UTC)).unwrap();
        assert_eq!(v["type"], "job.status.delivered");
        assert_eq!(v["data"]["job_id"], "TEST-0001");
        assert_eq!(v["data"]["id"], e.id.to_string());
        assert_eq!(v["timestamp"], serde_json::to_value(e.occurred_at).unwrap());
        let a = &v["data"]["attachments"];
        assert_eq!(a.as_array().unwrap().len(), 3);
        assert_eq!(
            a[2],
            json!({"kind": "signature", "index": 1, "sha256": "ab".repeat(32), "bytes": 1000,
                   "content_type": "image/png", "captured_at": "2026-03-01T23:30:45.123456789Z",
                   "url": "https://files.example/signature-1.png"})
        );
    }

    #[test]
    fn detrack_v1_is_the_documents_example_field_by_field() {
        let mut e = with_proof(Status::Delivered);
        e.items = vec![crate::event::Item { sku: "T0201".into(), qty: 1, rejected: 0 }];
        let ctx = Context { tz: "Asia/Singapore".parse().unwrap(), history: &[] };
        let v: Value = serde_json::from_slice(&body(Format::DetrackV1, &e, &ctx)).unwrap();
        same_shape(&doc("detrack-v1.json"), &v, "", &[]);
        // 23:30 UTC is the next morning in Singapore: the local date and offset.
        assert_eq!(v["date"], "2026-03-02");
        assert_eq!(v["time"], "2026-03-02T07:30:45+08:00");
        assert_eq!((v["reason"].as_str(), v["pod_address"].as_str()), (Some(""), Some("")), "\"\" as the example");
        assert_eq!(v["pod_lat"], json!(53.55073), "no float noise");
        assert_eq!(v["status"], "Delivered");
        assert_eq!(v["assign_to"], "Adam");
        assert_eq!(
            (v["image"].as_u64(), v["view_image_url"].as_str()),
            (Some(2), Some("https://files.example/photo-1.png"))
        );
        assert_eq!(v["items"][0], json!({"sku": "T0201", "desc": "", "qty": 1, "reject": 0, "reason": ""}));
        let mut failed = event(Status::Failed);
        failed.reason_code = Some(ReasonCode::CustomerNotPresent);
        failed.reason = Some("rang twice".into());
        failed.location = None;
        let v = detrack_v1(&failed, &Context::UTC);
        assert_eq!(
            (v["status"].as_str(), v["reason"].as_str()),
            (Some("Failed"), Some("customer_not_present: rang twice"))
        );
        assert_eq!(
            (v["pod_lat"].as_str(), v["image"].as_u64(), v["view_image_url"].as_str()),
            (Some(""), Some(0), Some(""))
        );
        assert!(v["time"].as_str().unwrap().ends_with("+00:00"));
    }

    #[test]
    fn detrack_v2_is_the_documents_example_field_by_field() {
        let tz: Tz = "Asia/Singapore".parse().unwrap();
        let mut heading = with_proof(Status::HeadingTo);
        heading.attachments.clear();
        heading.sequence = 3;
        heading.occurred_at = "2026-03-01T23:00:00.5Z".parse().unwrap();
        let mut e = with_proof(Status::Delivered);
        e.sequence = 9;
        e.received_by = Some("John".into());
        e.items = vec![crate::event::Item { sku: "T1".into(), qty: 5, rejected: 1 }];
        let history = [Milestone::of(&heading), Milestone::of(&e)];
        let v: Value =
            serde_json::from_slice(&body(Format::DetrackV2, &e, &Context { tz, history: &history })).unwrap();
        let example = doc("detrack-v2.json");
        same_shape_or_null(&example, &v, "");
        assert_eq!(example.as_object().unwrap().len(), v.as_object().unwrap().len(), "exactly the example's fields");
        assert_eq!((v["do_number"].as_str(), v["type"].as_str()), (Some("TEST-0001"), Some("Delivery")));
        assert_eq!((v["status"].as_str(), v["tracking_status"].as_str()), (Some("completed"), Some("Delivered")));
        assert_eq!((v["received_by_sent_by"].as_str(), v["assign_to"].as_str()), (Some("John"), Some("Adam")));
        assert_eq!(v["pod_at"], "2026-03-02T07:30:45.123+08:00");
        assert!(is_time(&v["pod_at"], 3, true) && is_time(&v["photo_2_at"], 3, true));
        assert_eq!(v["head_to_delivery_at"], "2026-03-02T07:00:00.500+08:00", "from the job's history");
        assert_eq!((v["pod_lat"].as_str(), v["pod_lng"].as_str()), (Some("53.55073"), Some("9.99302")));
        assert_eq!(v["photo_1_file_url"], "https://files.example/photo-1.png");
        assert_eq!(v["photo_2_file_url"], "https://files.example/photo-2.png");
        assert_eq!(v["photo_3_file_url"], Value::Null);
        assert_eq!(v["signature_file_url"], "https://files.example/signature-1.png");
        assert_eq!(
            v["items"][0],
            json!({"sku": "T1", "description": null, "quantity": 5, "reject_quantity": 1, "reject_reason": null})
        );
        assert_eq!(v["items_count"], 1);
        let m = v["milestones"].as_array().unwrap();
        assert_eq!(m.len(), 2);
        same_shape(&example["milestones"][0], &m[0], "milestones[0]", &[]);
        let known = [
            "id",
            "type",
            "do_number",
            "date",
            "start_date",
            "primary_job_status",
            "status",
            "tracking_status",
            "tracking_status_code",
            "assign_to",
            "received_by_sent_by",
            "pod_at",
            "pod_lat",
            "pod_lng",
            "head_to_delivery_at",
            "signature_file_url",
            "signed_at",
            "photo_1_file_url",
            "photo_1_at",
            "photo_2_file_url",
            "photo_2_at",
            "items",
            "items_count",
            "milestones",
            "attempt",
            "time_zone",
            "reason",
            "note",
        ];
        for (k, ours) in v.as_object().unwrap() {
            if known.contains(&k.as_str()) {
                assert!(k == "reason" || !ours.is_null(), "{k} is known but null");
            } else {
                assert_eq!(ours, &DETRACK_V2[k], "{k}: unknown to curbside, so as Detrack sends an unknown");
            }
        }
        assert_eq!((m[0]["status"].as_str(), m[1]["status"].as_str()), (Some("out_for_delivery"), Some("completed")));
        // Unknowns are null as Detrack sends them; the example's "" stay "".
        assert_eq!((v["tracking_number"].clone(), v["carrier"].as_str()), (Value::Null, Some("")));
        let mut out = with_proof(Status::HeadingTo);
        out.attachments.clear();
        let v = detrack_v2(&out, &Context { tz, history: &[] });
        assert_eq!(
            (v["status"].as_str(), v["tracking_status"].as_str()),
            (Some("dispatched"), Some("Out for delivery"))
        );
        assert!(is_time(&v["head_to_delivery_at"], 3, true));
        assert_eq!((v["pod_at"].clone(), v["pod_lat"].as_str()), (Value::Null, Some("")), "no POD before delivery");
    }

    #[test]
    fn detrack_v2_has_the_geofence_arrival_and_the_heading_to_estimate() {
        let tz: Tz = "Asia/Singapore".parse().unwrap();
        let mut heading = with_proof(Status::HeadingTo);
        heading.attachments.clear();
        heading.sequence = 3;
        heading.eta = crate::stops::eta::estimate(18_000.0, Some(10.0), heading.occurred_at);
        let v = detrack_v2(&heading, &Context { tz, history: &[] });
        assert_eq!(v["eta_time"], "2026-03-02T08:00:45.123+08:00", "30 minutes on, local time as every _at");
        assert_eq!(v["live_eta"], v["eta_time"]);
        assert_eq!(v["geofence_ack_at"], Value::Null, "not arrived yet");
        // Arrived by the geofence, then delivered: the delivery still says where the fence fired.
        let mut arrived = with_proof(Status::Arrived);
        arrived.attachments.clear();
        arrived.sequence = 4;
        arrived.source = Source::Geofence;
        arrived.occurred_at = "2026-03-01T23:28:00Z".parse().unwrap();
        let fence = detrack_v2(&arrived, &Context { tz, history: &[Milestone::of(&heading)] });
        assert_eq!(fence["geofence_ack_at"], "2026-03-02T07:28:00.000+08:00");
        assert_eq!(
            (fence["geofence_ack_lat"].as_f64(), fence["geofence_ack_lng"].as_f64()),
            (Some(53.55073), Some(9.99302))
        );
        assert_eq!(fence["eta_time"], Value::Null, "only heading_to carries an estimate");
        let mut delivered = with_proof(Status::Delivered);
        delivered.sequence = 9;
        let history = [Milestone::of(&heading), Milestone::of(&arrived)];
        let v = detrack_v2(&delivered, &Context { tz, history: &history });
        assert_eq!(v["geofence_ack_at"], fence["geofence_ack_at"]);
        assert_eq!(v["arrived_at"], fence["geofence_ack_at"]);
        // Tapped by the driver: an arrival, but no geofence acknowledgement.
        arrived.source = Source::Driver;
        let history = [Milestone::of(&heading), Milestone::of(&arrived)];
        let v = detrack_v2(&delivered, &Context { tz, history: &history });
        assert_eq!((v["geofence_ack_at"].clone(), v["geofence_ack_lat"].clone()), (Value::Null, Value::Null));
        assert!(!v["arrived_at"].is_null());
    }

    #[test]
    fn carrier_is_the_documents_example_field_by_field() {
        let mut failed = event(Status::Failed);
        failed.reason_code = Some(ReasonCode::CustomerNotPresent);
        failed.reason = Some("Customer not answering".into());
        let v = carrier(&failed);
        same_shape(&doc("carrier-failed.json"), &v, "", &[]);
        assert_eq!(
            (v["id"].as_str(), v["status"].as_str(), v["code"].as_u64()),
            (Some("TEST-0001"), Some("FAILED_ATTEMPT"), Some(601))
        );
        assert_eq!(v["location"], Value::Null, "null, as the document sends it");
        assert_eq!(v["failedStatus"], "CUSTOMER_NOT_PRESENT");
        assert_eq!(v["details"]["reason"], "customer_not_present: Customer not answering");
        assert!(is_time(&v["ts"], 3, false), "{}", v["ts"]);
        let out = carrier(&event(Status::HeadingTo));
        same_shape(&doc("carrier-out-for-delivery.json"), &out, "", &["details"]);
        assert_eq!((out["code"].as_u64(), &out["location"]), (Some(410), &json!({"lat": 53.55073, "lng": 9.99302})));
        let d = carrier(&with_proof(Status::Delivered));
        same_shape(&doc("carrier-out-for-delivery.json"), &d, "", &["details", "podUrls", "signatureUrl"]);
        assert_eq!(d["podUrls"], json!(["https://files.example/photo-1.png", "https://files.example/photo-2.png"]));
        assert_eq!(d["signatureUrl"], "https://files.example/signature-1.png");
        for s in Status::ALL {
            let v = carrier(&event(s));
            assert_eq!(v["location"].is_object(), matches!(s, Status::HeadingTo | Status::Delivered), "{s:?}");
            assert_eq!(v.get("failedStatus").is_some(), s == Status::Failed);
        }
    }

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
}
