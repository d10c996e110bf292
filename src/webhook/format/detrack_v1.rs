//! `detrack-v1`: Detrack's V1 push, every field of the document's example, `""` where curbside
//! knows nothing (as the example does), local `date` and `time` in the van's `timezone`.

use serde_json::{Value, json};

use super::{Context, assignee, coord, local_date, local_secs, photos, reason_text};
use crate::event::{Status, StatusEvent};

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
        // Route events are not sent in this format (`format::expresses`).
        Status::RouteStarted
        | Status::LoadingDone
        | Status::UnloadingDone
        | Status::BreakStarted
        | Status::BreakEnded
        | Status::RouteEnded => "Route",
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::golden::*;
    use super::super::*;
    use super::*;
    use crate::event::{ReasonCode, Status};

    #[test]
    fn detrack_v1_is_the_documents_example_field_by_field() {
        let mut e = with_proof(Status::Delivered);
        e.items = vec![crate::event::Item { sku: "T0201".into(), qty: 1, rejected: 0 }];
        let ctx = Context { tz: "Asia/Singapore".parse().unwrap(), history: &[], stop: None };
        let v: Value = serde_json::from_slice(&body(&Format::DetrackV1, &e, &ctx).unwrap()).unwrap();
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
}
