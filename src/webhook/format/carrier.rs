//! `carrier`: a carrier's webhook contract (`id`, `carrierTrackingNumber`, `metaData`, `status`,
//! `location`, `ts`, `trackingUrl`, `code`, `failedStatus`, `details`).

use serde_json::{Value, json};

use super::*;

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
        // Route events are not sent in this format (`format::expresses`).
        Status::RouteStarted
        | Status::LoadingDone
        | Status::UnloadingDone
        | Status::BreakStarted
        | Status::BreakEnded
        | Status::RouteEnded => "ROUTE",
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
        Status::RouteStarted
        | Status::LoadingDone
        | Status::UnloadingDone
        | Status::BreakStarted
        | Status::BreakEnded
        | Status::RouteEnded => 400,
    }
}

/// The headline and description in English (`en`) and Dutch (`nl`), the languages of the
/// document's example; the failed attempt's are the example's own.
/// `details.lang`: each status's headline and description, in English and Dutch.
fn carrier_lang(e: &StatusEvent) -> Value {
    let text = |lang: usize| {
        let (headline, description) = carrier_words(e.status)[lang];
        let description = match (e.status, &e.received_by) {
            (Status::Delivered, Some(r)) => format!("{description}{}{r}", RECEIVED_BY[lang]),
            _ => description.to_string(),
        };
        json!({"headline": headline, "description": description})
    };
    json!({"en": text(0), "nl": text(1)})
}

/// What a delivery's description adds before who received it: English, Dutch.
const RECEIVED_BY: [&str; 2] = [", received by ", ", in ontvangst genomen door "];

/// A status's headline and description: English, Dutch.
fn carrier_words(s: Status) -> [(&'static str, &'static str); 2] {
    match s {
        Status::HeadingTo => [
            ("Out for delivery", "The courier is on the way to the destination"),
            ("Onderweg", "De koerier is onderweg naar de bestemming"),
        ],
        Status::Arrived => [
            ("Courier arrived", "The courier arrived at the destination"),
            ("Koerier aangekomen", "De koerier is aangekomen op de bestemming"),
        ],
        Status::Delivered => [("Delivered", "Delivered at destination"), ("Bezorgd", "Bezorgd op bestemming")],
        Status::PartiallyDelivered => [
            ("Partially delivered", "Part of the shipment was delivered at destination"),
            ("Gedeeltelijk bezorgd", "Een deel van de zending is bezorgd op bestemming"),
        ],
        // English: the document's own example.
        Status::Failed => [
            ("Delivery attempt failed", "Delivery attempt failed at destination"),
            ("Afleverpoging mislukt", "Afleverpoging mislukt op bestemming"),
        ],
        Status::PickedUp => [("Picked up", "The shipment was picked up"), ("Opgehaald", "De zending is opgehaald")],
        Status::Departed => [
            ("Courier departed", "The courier left the destination"),
            ("Koerier vertrokken", "De koerier is vertrokken van de bestemming"),
        ],
        Status::RouteStarted
        | Status::LoadingDone
        | Status::UnloadingDone
        | Status::BreakStarted
        | Status::BreakEnded
        | Status::RouteEnded => [("Route", "Route"), ("Route", "Route")],
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::golden::*;
    use super::*;
    use crate::event::{ReasonCode, Status};

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
}
