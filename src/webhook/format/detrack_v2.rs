//! `detrack-v2`: Detrack's V2 push, every field of the document's example (the template in
//! `detrack_v2.json`), null where curbside knows nothing, local times with milliseconds, and the
//! job's events as `milestones[]`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::event::Source;

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
        // Route events are not sent in this format (`format::expresses`).
        Status::RouteStarted
        | Status::LoadingDone
        | Status::UnloadingDone
        | Status::BreakStarted
        | Status::BreakEnded
        | Status::RouteEnded => ("dispatched", "Route", "route"),
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::golden::*;
    use super::super::*;
    use super::*;
    use crate::event::{Source, Status};

    #[test]
    fn detrack_v2_is_the_documents_example_field_by_field() {
        let tz: Zone = "Asia/Singapore".parse().unwrap();
        let mut heading = with_proof(Status::HeadingTo);
        heading.attachments.clear();
        heading.sequence = 3;
        heading.occurred_at = "2026-03-01T23:00:00.5Z".parse().unwrap();
        let mut e = with_proof(Status::Delivered);
        e.sequence = 9;
        e.received_by = Some("John".into());
        e.items = vec![crate::event::Item { sku: "T1".into(), qty: 5, rejected: 1 }];
        let history = [Milestone::of(&heading), Milestone::of(&e)];
        let v: Value = serde_json::from_slice(
            &body(&Format::DetrackV2, &e, &Context { tz, history: &history, stop: None }).unwrap(),
        )
        .unwrap();
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
        let v = detrack_v2(&out, &Context { tz, history: &[], stop: None });
        assert_eq!(
            (v["status"].as_str(), v["tracking_status"].as_str()),
            (Some("dispatched"), Some("Out for delivery"))
        );
        assert!(is_time(&v["head_to_delivery_at"], 3, true));
        assert_eq!((v["pod_at"].clone(), v["pod_lat"].as_str()), (Value::Null, Some("")), "no POD before delivery");
    }

    #[test]
    fn detrack_v2_has_the_geofence_arrival_and_the_heading_to_estimate() {
        let tz: Zone = "Asia/Singapore".parse().unwrap();
        let mut heading = with_proof(Status::HeadingTo);
        heading.attachments.clear();
        heading.sequence = 3;
        heading.eta = crate::stops::eta::estimate(18_000.0, Some(10.0), heading.occurred_at);
        let v = detrack_v2(&heading, &Context { tz, history: &[], stop: None });
        assert_eq!(v["eta_time"], "2026-03-02T08:00:45.123+08:00", "30 minutes on, local time as every _at");
        assert_eq!(v["live_eta"], v["eta_time"]);
        assert_eq!(v["geofence_ack_at"], Value::Null, "not arrived yet");
        // Arrived by the geofence, then delivered: the delivery still says where the fence fired.
        let mut arrived = with_proof(Status::Arrived);
        arrived.attachments.clear();
        arrived.sequence = 4;
        arrived.source = Source::Geofence;
        arrived.occurred_at = "2026-03-01T23:28:00Z".parse().unwrap();
        let fence = detrack_v2(&arrived, &Context { tz, history: &[Milestone::of(&heading)], stop: None });
        assert_eq!(fence["geofence_ack_at"], "2026-03-02T07:28:00.000+08:00");
        assert_eq!(
            (fence["geofence_ack_lat"].as_f64(), fence["geofence_ack_lng"].as_f64()),
            (Some(53.55073), Some(9.99302))
        );
        assert_eq!(fence["eta_time"], Value::Null, "only heading_to carries an estimate");
        let mut delivered = with_proof(Status::Delivered);
        delivered.sequence = 9;
        let history = [Milestone::of(&heading), Milestone::of(&arrived)];
        let v = detrack_v2(&delivered, &Context { tz, history: &history, stop: None });
        assert_eq!(v["geofence_ack_at"], fence["geofence_ack_at"]);
        assert_eq!(v["arrived_at"], fence["geofence_ack_at"]);
        // Tapped by the driver: an arrival, but no geofence acknowledgement.
        arrived.source = Source::Driver;
        let history = [Milestone::of(&heading), Milestone::of(&arrived)];
        let v = detrack_v2(&delivered, &Context { tz, history: &history, stop: None });
        assert_eq!((v["geofence_ack_at"].clone(), v["geofence_ack_lat"].clone()), (Value::Null, Value::Null));
        assert!(!v["arrived_at"].is_null());
    }
}
