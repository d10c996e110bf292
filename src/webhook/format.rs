//! Webhook payload formats: pure functions from a [`StatusEvent`] to the bytes a receiver gets.
//!
//! - `standard`: `{"type": "job.status.<status>", "timestamp", "data": StatusEvent}`.
//! - `detrack-v1`: the field names of Detrack's V1 push (`do`, `status`, `time`, `pod_lat`,
//!   `pod_lng`, `reason`, `received_by`, `note`, `items` with `sku`/`qty`/`reject`).
//! - `carrier`: the carrier style: `id`, upper-case `status` (`OUT_FOR_DELIVERY`, `ARRIVED`,
//!   `DELIVERED`, `PARTIALLY_DELIVERED`, `FAILED_ATTEMPT`, `PICKED_UP`), `ts`, `failedStatus` on
//!   failed attempts, and `location` `{lat, lng}` only on `OUT_FOR_DELIVERY` and `DELIVERED`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::event::{Status, StatusEvent};

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
    /// Carrier tracking style.
    #[serde(rename = "carrier")]
    Carrier,
}

impl Format {
    /// The config names of every format.
    pub const NAMES: [&str; 3] = ["standard", "detrack-v1", "carrier"];

    /// Parses a config value.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "standard" => Some(Format::Standard),
            "detrack-v1" => Some(Format::DetrackV1),
            "carrier" => Some(Format::Carrier),
            _ => None,
        }
    }
}

/// The standard payload as a JSON value (the bytes come from [`crate::event::envelope`]).
pub fn standard(e: &StatusEvent) -> Value {
    json!({ "type": crate::event::event_type(e.status), "timestamp": e.occurred_at, "data": e })
}

fn detrack_status(s: Status) -> &'static str {
    match s {
        Status::HeadingTo => "Out for Delivery",
        Status::Arrived => "Arrived",
        Status::Delivered => "Delivered",
        Status::PartiallyDelivered => "Partially Delivered",
        Status::Failed => "Not Delivered",
        Status::PickedUp => "Collected",
    }
}

/// The Detrack V1 style payload.
pub fn detrack_v1(e: &StatusEvent) -> Value {
    let reason = match (e.reason_code, &e.reason) {
        (Some(c), Some(r)) => Some(format!("{}: {r}", c.as_str())),
        (Some(c), None) => Some(c.as_str().to_string()),
        (None, r) => r.clone(),
    };
    json!({
        "do": e.job_id,
        "date": e.occurred_at.date_naive().to_string(),
        "status": detrack_status(e.status),
        "time": e.occurred_at,
        "pod_lat": e.location.as_ref().map(|l| l.lat),
        "pod_lng": e.location.as_ref().map(|l| l.lng),
        "reason": reason,
        "received_by": e.received_by,
        "note": e.note,
        "items": e.items.iter().map(|i| json!({"sku": i.sku, "qty": i.qty, "reject": i.rejected})).collect::<Vec<_>>(),
        "vehicle": e.vehicle_id,
        "driver": e.driver_id,
    })
}

/// The carrier status code of a status.
pub fn carrier_status(s: Status) -> &'static str {
    match s {
        Status::HeadingTo => "OUT_FOR_DELIVERY",
        Status::Arrived => "ARRIVED",
        Status::Delivered => "DELIVERED",
        Status::PartiallyDelivered => "PARTIALLY_DELIVERED",
        Status::Failed => "FAILED_ATTEMPT",
        Status::PickedUp => "PICKED_UP",
    }
}

/// The carrier style payload.
pub fn carrier(e: &StatusEvent) -> Value {
    let mut v = json!({
        "id": e.id,
        "jobId": e.job_id,
        "status": carrier_status(e.status),
        "ts": e.occurred_at,
        "vehicleId": e.vehicle_id,
    });
    let o = v.as_object_mut().expect("an object literal");
    if e.status == Status::Failed {
        o.insert("failedStatus".into(), json!(e.reason_code.map(|c| c.as_str().to_uppercase())));
        if let Some(r) = &e.reason {
            o.insert("failedReason".into(), json!(r));
        }
    }
    if matches!(e.status, Status::HeadingTo | Status::Delivered) {
        if let Some(l) = &e.location {
            o.insert("location".into(), json!({"lat": l.lat, "lng": l.lng}));
        }
    }
    if let Some(r) = &e.received_by {
        o.insert("receivedBy".into(), json!(r));
    }
    v
}

/// The request body for `format`.
pub fn body(format: Format, e: &StatusEvent) -> Vec<u8> {
    let v = match format {
        Format::Standard => return crate::event::envelope(e),
        Format::DetrackV1 => detrack_v1(e),
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

    #[test]
    fn the_fast_standard_body_equals_the_json_tree() {
        let e = event(Status::Arrived);
        let fast: Value = serde_json::from_slice(&body(Format::Standard, &e)).unwrap();
        assert_eq!(fast, standard(&e));
    }

    #[test]
    fn standard_wraps_the_whole_event() {
        let e = event(Status::Delivered);
        let v: Value = serde_json::from_slice(&body(Format::Standard, &e)).unwrap();
        assert_eq!(v["type"], "job.status.delivered");
        assert_eq!(v["data"]["job_id"], "TEST-0001");
        assert_eq!(v["data"]["location"]["lat"], 53.55073);
        assert_eq!(v["data"]["id"], e.id.to_string());
        assert_eq!(v["timestamp"], serde_json::to_value(e.occurred_at).unwrap());
    }

    #[test]
    fn detrack_v1_uses_detrack_field_names() {
        let mut e = event(Status::Failed);
        e.reason_code = Some(ReasonCode::CustomerNotPresent);
        e.reason = Some("rang twice".into());
        let v: Value = serde_json::from_slice(&body(Format::DetrackV1, &e)).unwrap();
        assert_eq!(v["do"], "TEST-0001");
        assert_eq!(v["status"], "Not Delivered");
        assert_eq!(v["pod_lat"], 53.55073);
        assert_eq!(v["pod_lng"], 9.99302);
        assert_eq!(v["reason"], "customer_not_present: rang twice");
        assert_eq!(v["received_by"], "Test Recipient");
        assert_eq!(v["items"][0]["sku"], "SAMPLE");
        assert_eq!(v["items"][0]["reject"], 0);
        assert_eq!(v["date"], e.occurred_at.date_naive().to_string());
    }

    #[test]
    fn carrier_has_location_only_when_out_for_delivery_or_delivered() {
        for s in Status::ALL {
            let v = carrier(&event(s));
            let has = v.get("location").is_some();
            assert_eq!(has, matches!(s, Status::HeadingTo | Status::Delivered), "{s:?}: {v}");
            assert_eq!(v["status"], carrier_status(s));
        }
        let d = carrier(&event(Status::Delivered));
        assert_eq!(d["location"], json!({"lat": 53.55073, "lng": 9.99302}));
    }

    #[test]
    fn carrier_failed_attempt_has_failed_status() {
        let mut e = event(Status::Failed);
        e.reason_code = Some(ReasonCode::AccessDenied);
        let v = carrier(&e);
        assert_eq!(v["status"], "FAILED_ATTEMPT");
        assert_eq!(v["failedStatus"], "ACCESS_DENIED");
        assert_eq!(v["id"], e.id.to_string());
        assert!(v.get("failedStatus").is_some() && carrier(&event(Status::Delivered)).get("failedStatus").is_none());
    }
}
