//! `trackingmore`: TrackingMore's v4 webhook, `{"code": 200, "message": "Success", "data":
//! TRACKING}`, with every field of the SDK's v4 tracking object (null where curbside has no
//! value), the job's checkpoints newest first in `origin_info.trackinfo`, and TrackingMore's
//! signature: lowercase hex HMAC-SHA256, keyed with `secret` as written, over the unix-seconds
//! timestamp, in the headers `signature` and `timestamp` (both names settable: the documentation
//! does not name them).
//!
//! The model has no coordinates and no photos: the position is text in a checkpoint's
//! `location`, a signature is `signed_by` with substatus `delivered003`. Times carry the van's
//! offset. The status mapping ([`delivery_status`]) is curbside's, from the documented codes.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::*;
use crate::event::ReasonCode;

/// `format = "trackingmore"` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `courier_code` (default `curbside`).
    pub courier_code: String,
    /// The signing key, as written (`secret`); `None`: unsigned.
    pub secret: Option<String>,
    /// The header carrying the signature (`signature_header`, default `signature`).
    pub signature_header: String,
    /// The header carrying the timestamp (`timestamp_header`, default `timestamp`).
    pub timestamp_header: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            courier_code: "curbside".into(),
            secret: None,
            signature_header: "signature".into(),
            timestamp_header: "timestamp".into(),
        }
    }
}

/// The statuses TrackingMore's status filter names (out for delivery, delivered, failed
/// attempt or exception, in transit).
pub const DOCUMENTED: &[Status] = &[Status::HeadingTo, Status::Delivered, Status::Failed, Status::PickedUp];

/// TrackingMore's signature of `timestamp`: lowercase hex HMAC-SHA256 keyed with `secret`.
pub fn sign(secret: &str, timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// `delivery_status` and `substatus` of a step: `signed` when the step carries a signature or
/// a recipient's name.
pub fn delivery_status(status: Status, reason: Option<ReasonCode>, signed: bool) -> (&'static str, &'static str) {
    match status {
        Status::HeadingTo | Status::Arrived | Status::Departed => ("pickup", "pickup001"),
        // Route events are not sent in this format (`format::expresses`).
        Status::RouteStarted
        | Status::LoadingDone
        | Status::UnloadingDone
        | Status::BreakStarted
        | Status::BreakEnded
        | Status::RouteEnded => ("pickup", "pickup001"),
        Status::Delivered | Status::PartiallyDelivered if signed => ("delivered", "delivered003"),
        Status::Delivered | Status::PartiallyDelivered => ("delivered", "delivered001"),
        Status::PickedUp => ("transit", "transit006"),
        Status::Failed => match reason {
            Some(ReasonCode::AddressNotFound) => ("undelivered", "undelivered001"),
            Some(ReasonCode::CustomerNotPresent) => ("undelivered", "undelivered002"),
            Some(ReasonCode::AccessDenied) => ("undelivered", "undelivered003"),
            Some(ReasonCode::Refused) => ("exception", "exception009"),
            Some(ReasonCode::Damaged) => ("exception", "exception007"),
            Some(ReasonCode::Other) | None => ("undelivered", "undelivered004"),
        },
    }
}

/// What a checkpoint says, in words.
fn detail(status: Status, reason: Option<String>) -> String {
    let words = match status {
        Status::HeadingTo => "Out for delivery",
        Status::Arrived => "Driver at the address",
        Status::Departed => "Driver left the address",
        Status::Delivered => "Delivered",
        Status::PartiallyDelivered => "Partially delivered",
        Status::PickedUp => "Picked up",
        Status::Failed => "Delivery attempt failed",
        Status::RouteStarted
        | Status::LoadingDone
        | Status::UnloadingDone
        | Status::BreakStarted
        | Status::BreakEnded
        | Status::RouteEnded => "Route",
    };
    match reason {
        Some(r) => format!("{words}: {r}"),
        None => words.to_string(),
    }
}

/// One step of the job, as the checkpoint reads it.
struct Step {
    at: DateTime<Utc>,
    status: Status,
    reason_code: Option<ReasonCode>,
    reason: Option<String>,
    position: Option<(f64, f64)>,
    signed: bool,
}

fn checkpoint(s: &Step, tz: Zone) -> Value {
    let (status, substatus) = delivery_status(s.status, s.reason_code, s.signed);
    json!({
        "checkpoint_date": local_secs(s.at, tz),
        "tracking_detail": detail(s.status, s.reason.clone()),
        "location": s.position.map(|(lat, lng)| format!("{:.7},{:.7}", coord(lat), coord(lng))),
        "country_iso2": null, "state": null, "city": null, "zip": null,
        "raw_status": s.status.as_str(),
        "checkpoint_delivery_status": status,
        "checkpoint_delivery_substatus": substatus,
    })
}

/// The TrackingMore webhook body.
pub fn trackingmore(e: &StatusEvent, ctx: &Context<'_>, settings: &Settings) -> Value {
    let tz = ctx.tz;
    let signed = signature(e).is_some() || e.received_by.is_some();
    let this = Step {
        at: e.occurred_at,
        status: e.status,
        reason_code: e.reason_code,
        reason: reason_text(e),
        position: e.location.as_ref().map(|l| (l.lat, l.lng)),
        signed,
    };
    let earlier = ctx.history.iter().filter(|m| m.sequence < e.sequence).map(|m| Step {
        at: m.occurred_at,
        status: m.status,
        reason_code: m.reason_code,
        reason: m.reason.clone().or_else(|| m.reason_code.map(|c| c.as_str().to_string())),
        position: m.position,
        signed: false,
    });
    let mut steps: Vec<Step> = earlier.collect();
    steps.push(this);
    steps.reverse(); // newest first
    let first = |s: Status| steps.iter().rev().find(|x| x.status == s).map(|x| local_secs(x.at, tz));
    let milestones = json!({
        "inforeceived_date": null,
        "pickup_date": first(Status::PickedUp),
        "outfordelivery_date": first(Status::HeadingTo),
        "delivery_date": first(Status::Delivered).or_else(|| first(Status::PartiallyDelivered)),
        "returning_date": null,
        "returned_date": null,
    });
    let (status, substatus) = delivery_status(e.status, e.reason_code, signed);
    let newest = &steps[0];
    let started = steps.last().map_or(e.occurred_at, |s| s.at);
    json!({
        "code": 200,
        "message": "Success",
        "data": {
            "id": e.id.to_string(),
            "tracking_number": e.job_id,
            "courier_code": settings.courier_code,
            "order_number": e.job_id,
            "order_date": null,
            "created_at": local_secs(started, tz),
            "update_at": local_secs(e.occurred_at, tz),
            "delivery_status": status,
            "substatus": substatus,
            "archived": false,
            "updating": false,
            "destination_country": null,
            "destination_state": null,
            "destination_city": null,
            "origin_country": null,
            "origin_state": null,
            "origin_city": null,
            "customer_name": null,
            "customer_email": null,
            "customer_sms": null,
            "order_id": null,
            "title": null,
            "note": e.note,
            "label": null,
            "signed_by": if matches!(e.status, Status::Delivered | Status::PartiallyDelivered) { json!(e.received_by) } else { Value::Null },
            "service_code": null,
            "weight": null,
            "pieces": null,
            "scheduled_delivery_date": null,
            "scheduled_address": null,
            "status_info": null,
            "latest_event": detail(newest.status, newest.reason.clone()),
            "latest_checkpoint_time": local_secs(newest.at, tz),
            "transit_time": (e.occurred_at - started).num_days(),
            "origin_info": {
                "courier_code": settings.courier_code,
                "courier_phone": null,
                "weblink": null,
                "reference_number": null,
                "milestone_date": milestones,
                "trackinfo": steps.iter().map(|s| checkpoint(s, tz)).collect::<Vec<_>>(),
            },
            "destination_info": {
                "courier_code": null,
                "courier_phone": null,
                "weblink": null,
                "reference_number": null,
                "milestone_date": {
                    "inforeceived_date": null, "pickup_date": null, "outfordelivery_date": null,
                    "delivery_date": null, "returning_date": null, "returned_date": null,
                },
                "trackinfo": [],
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::*;

    #[test]
    fn the_signature_matches_the_documentations_test_vector() {
        assert_eq!(
            sign("2e55b9a3-4dd1-4416-9897-c4bd1e3d738f", 1_662_371_528),
            "a37084ab68ae16b77db1f8463f31be9fcc965e2515e03efecf8139bb1e511b06"
        );
    }

    /// The v4 tracking object's fields, as the SDK models list them.
    const FIELDS: &[&str] = &[
        "id",
        "tracking_number",
        "courier_code",
        "order_number",
        "order_date",
        "created_at",
        "update_at",
        "delivery_status",
        "substatus",
        "archived",
        "updating",
        "destination_country",
        "destination_state",
        "destination_city",
        "origin_country",
        "origin_state",
        "origin_city",
        "customer_name",
        "customer_email",
        "customer_sms",
        "order_id",
        "title",
        "note",
        "label",
        "signed_by",
        "service_code",
        "weight",
        "pieces",
        "scheduled_delivery_date",
        "scheduled_address",
        "status_info",
        "latest_event",
        "latest_checkpoint_time",
        "transit_time",
        "origin_info",
        "destination_info",
    ];

    #[test]
    fn every_field_of_the_model_and_the_checkpoints_newest_first() {
        let e = with_proof(Status::Delivered);
        let heading = Milestone { status: Status::HeadingTo, sequence: 0, ..Milestone::of(&e) };
        let e = StatusEvent { sequence: 1, ..e };
        let ctx = Context { tz: "Europe/Berlin".parse().unwrap(), history: &[heading], stop: None };
        let v = trackingmore(&e, &ctx, &Settings::default());
        assert_eq!((v["code"].clone(), v["message"].clone()), (json!(200), json!("Success")));
        let d = v["data"].as_object().unwrap();
        let keys: Vec<&str> = d.keys().map(String::as_str).collect();
        let mut want = FIELDS.to_vec();
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        assert_eq!((d["delivery_status"].as_str(), d["substatus"].as_str()), (Some("delivered"), Some("delivered003")));
        assert_eq!(d["signed_by"], json!(e.received_by));
        let track = d["origin_info"]["trackinfo"].as_array().unwrap();
        assert_eq!(track.len(), 2);
        assert_eq!(track[0]["checkpoint_delivery_substatus"], "delivered003", "newest first");
        assert_eq!(track[1]["checkpoint_delivery_substatus"], "pickup001");
        assert!(track[0]["location"].as_str().unwrap().contains(','), "the position as text");
        assert_eq!(d["latest_checkpoint_time"], track[0]["checkpoint_date"]);
        assert!(d["origin_info"]["milestone_date"]["outfordelivery_date"].is_string());
        assert!(
            d["update_at"].as_str().unwrap().ends_with("+01:00")
                || d["update_at"].as_str().unwrap().ends_with("+02:00")
        );
    }

    #[test]
    fn failures_map_to_the_documented_substatus_codes() {
        let f = |r| delivery_status(Status::Failed, Some(r), false).1;
        assert_eq!(f(ReasonCode::AddressNotFound), "undelivered001");
        assert_eq!(f(ReasonCode::CustomerNotPresent), "undelivered002");
        assert_eq!(f(ReasonCode::Refused), "exception009");
        assert_eq!(f(ReasonCode::Damaged), "exception007");
        assert_eq!(delivery_status(Status::HeadingTo, None, false), ("pickup", "pickup001"));
        assert_eq!(delivery_status(Status::Delivered, None, false), ("delivered", "delivered001"));
    }
}
