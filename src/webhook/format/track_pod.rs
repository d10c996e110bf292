//! `track-pod`: Track-POD's order webhook, `{"Metadata": {"Event", "Date"}, "Data": ORDER}`, where
//! ORDER is the API 2.0 `Order` object field-exact: every property of the published schema
//! (`track_pod_order.json` lists them in the specification's order, each at its "unknown"
//! value), with its name and JSON type, null where curbside has no value.
//!
//! Times are the van's local time without an offset, as the specification's examples write
//! them (`2019-02-01T15:31:00`). What the specification does not say is curbside's choice, and
//! docs/deliveries.md marks each: the `Status` words, `Metadata.Event` (`OrderUpdated` unless
//! set per status), `CreateSource` (`WebApi`), `RouteStatus` (`InProgress`), the ids derived
//! from the job (`TrackId`, `TrackKey`), and the Standard Webhooks signature (Track-POD's own
//! scheme is unpublished).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::*;
use crate::event::ReasonCode;

/// `format = "track-pod"` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `Metadata.Event` per status (`event_names`); the others send [`DEFAULT_EVENT`].
    pub event_names: BTreeMap<Status, String>,
}

/// The wire name a connector shows for an order change.
pub const DEFAULT_EVENT: &str = "OrderUpdated";

/// The statuses an order's `StatusId` can say (the others are sent only when listed).
pub const DOCUMENTED: &[Status] = &[
    Status::HeadingTo,
    Status::Arrived,
    Status::Delivered,
    Status::PartiallyDelivered,
    Status::Failed,
    Status::PickedUp,
    Status::RouteStarted,
    Status::RouteEnded,
];

/// Every property of `Order`, at its unknown value.
static ORDER: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(|| {
    serde_json::from_str(include_str!("track_pod_order.json")).expect("the Track-POD Order template is JSON")
});

/// `StatusId` and `Status`: 1 in progress, 2 not done because of the site, 3 done, 4 partly
/// done, 5 not done because of the order. The words are curbside's (the specification gives
/// "Delivered" as an example only).
pub fn track_pod_status(e: &StatusEvent) -> (u8, &'static str) {
    let collection = e.status == Status::PickedUp;
    match e.status {
        Status::HeadingTo | Status::Arrived | Status::Departed => (1, "In progress"),
        // Route events are sent as a Route, not an Order (see `track_pod_route`).
        Status::RouteStarted
        | Status::LoadingDone
        | Status::UnloadingDone
        | Status::BreakStarted
        | Status::BreakEnded
        | Status::RouteEnded => (1, "In progress"),
        Status::Delivered => (3, "Delivered"),
        Status::PickedUp => (3, if collection { "Collected" } else { "Delivered" }),
        Status::PartiallyDelivered => (4, "Partially delivered"),
        Status::Failed => match e.reason_code {
            Some(ReasonCode::CustomerNotPresent | ReasonCode::AddressNotFound | ReasonCode::AccessDenied) => {
                (2, "Not delivered")
            }
            _ => (5, "Rejected"),
        },
    }
}

/// Local time without an offset, as the specification writes it.
fn local(t: DateTime<Utc>, tz: Zone) -> String {
    tz.local(t).format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A UUID that stays the same for a job (SHA-256 of `label` and the job id, as a version 8
/// UUID): Track-POD's tracking ids are per order, and curbside has no other.
fn job_uuid(label: &str, job: &str) -> String {
    let digest = Sha256::new().chain_update(label).chain_update([0]).chain_update(job).finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

/// Every property of `Route`, at its unknown value.
static ROUTE: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(|| {
    serde_json::from_str(include_str!("track_pod_route.json")).expect("the Track-POD Route template is JSON")
});

/// The wire name a connector shows for a route change.
pub const DEFAULT_ROUTE_EVENT: &str = "RouteUpdated";

/// A route event's body: `Data` is the API 2.0 `Route` object, field-exact (`Status`
/// `InProgress` on `route_started`, `Closed` with `CloseDate` and `Track`, the metres driven, on
/// `route_ended`; `LocationLat`/`LocationLon` where the van was). `Metadata.Event` is
/// `RouteUpdated` unless set per status: Track-POD names its start and close events nowhere.
fn track_pod_route(e: &StatusEvent, ctx: &Context<'_>, settings: &Settings) -> Value {
    let tz = ctx.tz;
    let mut o = ROUTE.clone();
    let mut set = |k: &str, value: Value| {
        debug_assert!(o.contains_key(k), "{k} is a property of Route");
        o.insert(k.to_string(), value);
    };
    let mark = e.route.as_ref();
    let summary = mark.and_then(|m| m.summary.as_ref());
    let id = mark.and_then(|m| m.id.clone());
    set("Code", json!(id));
    set("Id", json!(id));
    let day = mark.and_then(|m| m.date).unwrap_or_else(|| tz.local(e.occurred_at).date_naive());
    set("Date", json!(format!("{day}T00:00:00")));
    set("DriverLogin", json!(e.driver_id));
    set("DriverName", json!(e.driver_id));
    set("DriverVehicle", json!(e.vehicle_id));
    let started = match summary {
        Some(s) => Some(s.started_at),
        None => (e.status == Status::RouteStarted).then_some(e.occurred_at),
    };
    set("StartDate", json!(started.map(|t| local(t, tz))));
    set("CloseDate", json!(summary.map(|s| local(s.ended_at, tz))));
    set("Track", json!(summary.map(|s| s.distance_m)));
    if let Some(l) = &e.location {
        set("LocationLat", json!(coord(l.lat)));
        set("LocationLon", json!(coord(l.lng)));
    }
    set("CreateDateUtc", json!(e.occurred_at.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
    set("Status", json!(if e.status == Status::RouteEnded { "Closed" } else { "InProgress" }));
    set(
        "Vehicle",
        json!({"Number": e.vehicle_id, "CarrierCode": null, "Carrier": null, "Weight": null, "Volume": null, "Pallets": null}),
    );
    let event = settings.event_names.get(&e.status).map_or(DEFAULT_ROUTE_EVENT, String::as_str);
    json!({
        "Metadata": { "Event": event, "Date": local(e.occurred_at, tz) },
        "Data": o,
    })
}

/// The Track-POD webhook body: an `Order` for a job's event, a `Route` for a route event.
pub fn track_pod(e: &StatusEvent, ctx: &Context<'_>, settings: &Settings) -> Value {
    if e.status.is_route() {
        return track_pod_route(e, ctx, settings);
    }
    let tz = ctx.tz;
    let mut o = ORDER.clone();
    let mut set = |k: &str, value: Value| {
        debug_assert!(o.contains_key(k), "{k} is a property of Order");
        o.insert(k.to_string(), value);
    };
    let (status_id, status) = track_pod_status(e);
    let day = tz.local(e.occurred_at).date_naive();
    set("Number", json!(e.job_id));
    set("Date", json!(format!("{day}T00:00:00")));
    set("Type", json!(if e.status == Status::PickedUp { 1 } else { 0 }));
    set("DriverLogin", json!(e.driver_id));
    set("DriverName", json!(e.driver_id));
    set("DriverVehicle", json!(e.vehicle_id));
    set("StatusId", json!(status_id));
    set("Status", json!(status));
    set("StatusDate", json!(local(e.occurred_at, tz)));
    set("ChangeDate", json!(local(e.occurred_at, tz)));
    set("CreateDateUtc", json!(e.occurred_at.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
    if let Some(l) = &e.location {
        set("StatusLat", json!(coord(l.lat)));
        set("StatusLon", json!(coord(l.lng)));
    }
    let last = |s: Status| ctx.history.iter().rev().find(|m| m.status == s && m.sequence <= e.sequence);
    let arrived =
        last(Status::Arrived).map(|m| m.occurred_at).or((e.status == Status::Arrived).then_some(e.occurred_at));
    set("ArrivedDate", json!(arrived.map(|t| local(t, tz))));
    set("DepartedDate", json!(last(Status::Departed).map(|m| local(m.occurred_at, tz))));
    set("ETA", json!(e.eta.map(|eta| local(eta.at, tz))));
    set("SignatureName", json!(e.received_by));
    let signatures: Vec<&String> = signature(e).and_then(|a| a.url.as_ref()).into_iter().collect();
    let photo_urls: Vec<&String> = photos(e).filter_map(|a| a.url.as_ref()).collect();
    set("HasSignaturePhoto", json!(!signatures.is_empty()));
    set("SignaturePhotos", json!(signatures));
    set("HasPhoto", json!(!photo_urls.is_empty()));
    set("Photos", json!(photo_urls));
    set("RejectReason", json!((e.status == Status::Failed).then(|| reason_text(e)).flatten()));
    set("DriverComment", json!(e.note));
    set("TrackId", json!(job_uuid("TrackId", &e.job_id)));
    set("TrackKey", json!(job_uuid("TrackKey", &e.job_id)));
    if let Some(stop) = ctx.stop {
        set("SeqNumber", json!(stop.sequence));
        set("Client", json!(stop.name));
        set("Address", json!(stop.address));
        set("AddressLat", json!(stop.lat.map(coord)));
        set("AddressLon", json!(stop.lng.map(coord)));
        set("Note", json!(stop.notes));
        set("TimeSlotFrom", json!(stop.window.map(|w| local(w.from, tz))));
        set("TimeSlotTo", json!(stop.window.map(|w| local(w.to, tz))));
    }
    let goods: Vec<Value> = e
        .items
        .iter()
        .map(|i| {
            let desc = ctx.stop.and_then(|s| s.items.iter().find(|x| x.sku == i.sku)).map(|x| x.desc.clone());
            json!({
                "OrderLineId": null, "GoodsId": i.sku, "GoodsName": desc.unwrap_or_else(|| i.sku.clone()),
                "GoodsUnit": null, "Note": null, "Quantity": f64::from(i.qty),
                "QuantityFact": f64::from(i.qty.saturating_sub(i.rejected)), "Cost": null,
                "RejectReason": (i.rejected > 0).then(|| reason_text(e)).flatten(), "HasPhoto": false,
                "Photos": [], "OrderLineBarcode": null, "GoodsBarcode": null, "Scanned": null,
                "LoadStatus": null, "LoadCheckScanRejectReason": null, "ScanRejectReason": null,
            })
        })
        .collect();
    set("GoodsList", json!(goods));
    let event = settings.event_names.get(&e.status).map_or(DEFAULT_EVENT, String::as_str);
    json!({
        "Metadata": { "Event": event, "Date": local(e.occurred_at, tz) },
        "Data": o,
    })
}

#[cfg(test)]
mod tests {
    use super::super::golden::*;
    use super::*;

    #[test]
    fn the_order_has_every_property_of_the_specification_in_its_order() {
        let e = with_proof(Status::Delivered);
        let v = track_pod(&e, &Context::UTC, &Settings::default());
        let keys: Vec<&String> = v["Data"].as_object().unwrap().keys().collect();
        let template: Vec<&String> = ORDER.keys().collect();
        assert_eq!(keys, template);
        assert_eq!(keys.len(), 83);
    }

    #[test]
    fn status_ids_follow_the_specification() {
        let mut e = with_proof(Status::Failed);
        for (code, id) in [
            (ReasonCode::CustomerNotPresent, 2),
            (ReasonCode::AddressNotFound, 2),
            (ReasonCode::AccessDenied, 2),
            (ReasonCode::Refused, 5),
            (ReasonCode::Damaged, 5),
            (ReasonCode::Other, 5),
        ] {
            e.reason_code = Some(code);
            assert_eq!(track_pod_status(&e).0, id, "{code:?}");
        }
        for (s, id) in [
            (Status::HeadingTo, 1),
            (Status::Arrived, 1),
            (Status::Delivered, 3),
            (Status::PartiallyDelivered, 4),
            (Status::PickedUp, 3),
        ] {
            e.status = s;
            assert_eq!(track_pod_status(&e).0, id, "{s:?}");
        }
    }

    #[test]
    fn a_route_event_is_the_route_object_of_the_specification() {
        let schema: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/formats/track-pod-route.schema.json")).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let mut e = with_proof(Status::RouteStarted);
        e.job_id = crate::event::ROUTE_KEY.into();
        e.attachments.clear();
        e.route =
            Some(crate::event::RouteMark { id: Some("R-7".into()), date: "2026-03-02".parse().ok(), summary: None });
        let tz: Zone = "Europe/Berlin".parse().unwrap();
        let ctx = Context { tz, history: &[], stop: None };
        let started = track_pod(&e, &ctx, &Settings::default());
        let keys: Vec<&String> = started["Data"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ROUTE.keys().collect::<Vec<_>>());
        assert_eq!(keys.len(), 28);
        let errors: Vec<String> = validator.iter_errors(&started["Data"]).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(started["Metadata"]["Event"], DEFAULT_ROUTE_EVENT);
        let d = &started["Data"];
        assert_eq!((d["Code"].clone(), d["Status"].clone()), (json!("R-7"), json!("InProgress")));
        assert_eq!(d["Date"], "2026-03-02T00:00:00");
        assert_eq!(d["StartDate"], json!(local(e.occurred_at, tz)));
        assert_eq!((d["CloseDate"].clone(), d["Track"].clone()), (Value::Null, Value::Null));
        assert_eq!(d["LocationLat"], json!(coord(e.location.as_ref().unwrap().lat)));

        e.status = Status::RouteEnded;
        let summary = crate::event::Summary {
            started_at: e.occurred_at - chrono::Duration::hours(8),
            ended_at: e.occurred_at,
            distance_m: 84_512.3,
            driving_s: 14_000,
            stopped_s: 14_800,
            idle_s: 600,
            break_s: 1800,
            stops: Default::default(),
        };
        e.route.as_mut().unwrap().summary = Some(summary.clone());
        let mut settings = Settings::default();
        settings.event_names.insert(Status::RouteEnded, "RouteClosed".into());
        let closed = track_pod(&e, &ctx, &settings);
        let errors: Vec<String> = validator.iter_errors(&closed["Data"]).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        let d = &closed["Data"];
        assert_eq!(closed["Metadata"]["Event"], "RouteClosed");
        assert_eq!((d["Status"].clone(), d["Track"].clone()), (json!("Closed"), json!(84_512.3)));
        assert_eq!(d["StartDate"], json!(local(summary.started_at, tz)));
        assert_eq!(d["CloseDate"], json!(local(summary.ended_at, tz)));
        // The schema can fail: a number where a time goes is caught.
        let mut bad = d.clone();
        bad["CloseDate"] = json!(3);
        assert!(validator.iter_errors(&bad).next().is_some());
    }

    #[test]
    fn the_golden_delivered_order() {
        let mut e = with_proof(Status::Delivered);
        e.items = vec![crate::event::Item { sku: "T1".into(), qty: 5, rejected: 2 }];
        let tz: Zone = "Europe/Berlin".parse().unwrap();
        let history = vec![Milestone { status: Status::Arrived, sequence: 0, ..Milestone::of(&e) }];
        let stop = crate::stops::Stop {
            job_id: e.job_id.clone(),
            sequence: 3,
            name: "Kiosk am Markt".into(),
            address: "Marktstr. 1, Hamburg".into(),
            lat: Some(53.55),
            lng: Some(9.99),
            radius_m: None,
            window: None,
            items: vec![crate::stops::StopItem { sku: "T1".into(), desc: "Crate of water".into(), qty: 5 }],
            notes: None,
            requires: Default::default(),
        };
        let ctx = Context { tz, history: &history, stop: Some(&stop) };
        let mut settings = Settings::default();
        settings.event_names.insert(Status::Delivered, "StatusChanged".into());
        let v = track_pod(&e, &ctx, &settings);
        assert_eq!(v["Metadata"]["Event"], "StatusChanged");
        let d = &v["Data"];
        assert_eq!(
            (d["Number"].clone(), d["Type"].clone(), d["StatusId"].clone()),
            (json!("TEST-0001"), json!(0), json!(3))
        );
        assert_eq!(d["SignatureName"], json!(e.received_by));
        assert_eq!(d["HasSignaturePhoto"], true);
        assert_eq!(d["SignaturePhotos"], json!(["https://files.example/signature-1.png"]));
        assert_eq!(d["HasPhoto"], true);
        assert_eq!(d["Photos"].as_array().unwrap().len(), 2);
        assert_eq!(d["Address"], "Marktstr. 1, Hamburg");
        assert_eq!(d["GoodsList"][0]["GoodsName"], "Crate of water");
        assert_eq!(
            (d["GoodsList"][0]["Quantity"].clone(), d["GoodsList"][0]["QuantityFact"].clone()),
            (json!(5.0), json!(3.0))
        );
        let status_date = d["StatusDate"].as_str().unwrap();
        assert_eq!(status_date.len(), 19, "local time without an offset: {status_date}");
        assert_eq!(d["ArrivedDate"], d["StatusDate"], "arrived at the same moment in this fixture");
        assert_eq!(d["DepartedDate"], Value::Null);
        assert_eq!(d["TrackId"], json!(job_uuid("TrackId", "TEST-0001")), "stable per job");
        assert_eq!(d["PickupOrder"], Value::Null);
    }
}
