//! Traccar (`[traccar]`): positions, and every event as a position with its attributes, sent to
//! a Traccar server's OsmAnd port, the protocol the Traccar Client app speaks. Pure: what one
//! request carries; `telemetry::http` sends it (the ring's oldest point, removed on a 2xx; events
//! from the outbox, removed on a 2xx).
//!
//! # What the server gets
//! `POST {url}` with an `application/x-www-form-urlencoded` body, which Traccar's
//! `OsmAndProtocolDecoder` reads when the query string is empty (so nothing of the position is
//! in a URL a proxy logs): `id` (the device: `device_id`, default the vehicle id), `timestamp`
//! (unix seconds of the fix), `lat`, `lon` (7 decimals), `speed` (knots, as the protocol
//! measures it), `bearing` (degrees), `altitude` (m), `accuracy` (m, from HDOP), `hdop`,
//! `driverUniqueId` (`driver_id`, when set: Traccar's driver attribute). Each decimal to what it
//! can say, the unknown ones left out.
//!
//! An event (a tap, a geofence arrival, a route event) is one more position, where and when it
//! happened, with its attributes (curbside's names; Traccar keeps any other key as an attribute
//! of the position): `event` (curbside's type, `job.status.delivered`, `route.started`),
//! `status` (`delivered`), `job` (the job id; absent for a route event), `route` (the route id,
//! for a route event), `reason` (the reason code, on `failed`), `eventId` (the event's id: the
//! same on every retry, so a repeat can be recognised).
//!
//! # What its answer means
//! A 2xx: delivered. A `400` is what Traccar answers for a device it does not know: the point
//! stays, status says so and how to fix it, and it is tried again (backed off). Anything else
//! that is not 2xx backs off the same way; a server that cannot be reached is probed every second.

use std::fmt::Write as _;

use super::Point;
use crate::event::StatusEvent;
use crate::units::round;

/// The outbox endpoint events wait under for the Traccar server.
pub const EVENT_ENDPOINT: &str = "traccar:event";

/// Knots per m/s (the OsmAnd protocol's `speed` is in knots).
const KNOTS_PER_MPS: f64 = 3600.0 / 1852.0;

/// A form body, `k=v&k=v`, percent-encoded.
#[derive(Debug, Default)]
struct Form(String);

impl Form {
    fn add(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        let value = value.to_string();
        let _ = write!(
            self.0,
            "{}={}",
            key,
            percent_encoding::utf8_percent_encode(&value, percent_encoding::NON_ALPHANUMERIC)
        );
        self
    }

    fn maybe(&mut self, key: &str, value: Option<f64>) -> &mut Self {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.add(key, v);
        }
        self
    }
}

/// The form of position `p`; `None` without coordinates.
pub fn position(device_id: &str, driver_id: Option<&str>, p: &Point) -> Option<String> {
    let (lat, lon) = p.fix.position()?;
    let mut f = Form::default();
    f.add("id", device_id).add("timestamp", p.tst).add("lat", round(lat, 7)).add("lon", round(lon, 7));
    f.maybe("speed", p.fix.speed_mps.map(|v| round(v * KNOTS_PER_MPS, 1)))
        .maybe("bearing", p.fix.course_deg.map(|c| round(c, 1)))
        .maybe("altitude", p.fix.alt_m.map(|a| round(a, 1)))
        .maybe("accuracy", p.fix.accuracy_m().map(|a| round(a, 1)))
        .maybe("hdop", p.fix.hdop.map(|h| round(h, 2)));
    if let Some(d) = driver_id {
        f.add("driverUniqueId", d);
    }
    Some(f.0)
}

/// The form of event `e`: a position where and when it happened, with its attributes; `None`
/// when the event has no location (no fix ever: Traccar would place it at 0,0).
pub fn event(device_id: &str, e: &StatusEvent) -> Option<String> {
    let l = e.location.as_ref()?;
    let mut f = Form::default();
    f.add("id", device_id)
        .add("timestamp", e.occurred_at.timestamp())
        .add("lat", round(l.lat, 7))
        .add("lon", round(l.lng, 7));
    f.maybe("speed", l.speed_mps.map(|v| round(v * KNOTS_PER_MPS, 1)))
        .maybe("bearing", l.course_deg.map(|c| round(c, 1)))
        .maybe("accuracy", l.accuracy_m.map(|a| round(a, 1)));
    if let Some(d) = &e.driver_id {
        f.add("driverUniqueId", d);
    }
    f.add("event", crate::event::event_type(e.status)).add("status", e.status.as_str());
    match &e.route {
        Some(r) => {
            if let Some(id) = &r.id {
                f.add("route", id);
            }
        }
        None => {
            f.add("job", &e.job_id);
        }
    }
    if let Some(code) = e.reason_code {
        f.add("reason", code.as_str());
    }
    f.add("eventId", e.id);
    Some(f.0)
}

/// What a refusal means, for status: a `400` is an unknown device.
pub fn refused(status: u16, device_id: &str) -> String {
    if status == 400 {
        format!(
            "the server answered 400: it does not know device {device_id:?}; add a device with that identifier in \
             Traccar (or set [traccar] device_id to the one it has)"
        )
    } else {
        format!("the server answered {status}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gps::{Fix, Mode};
    use crate::telemetry::rules::Trigger;

    fn point() -> Point {
        Point {
            id: None,
            tst: 1_763_800_000,
            trigger: Trigger::Distance,
            fix: Fix {
                lat: Some(53.557783500000006),
                lon: Some(9.99302),
                alt_m: Some(12.4),
                speed_mps: Some(10.0),
                course_deg: Some(271.6),
                hdop: Some(0.9),
                mode: Mode::ThreeD,
                ..Fix::default()
            },
        }
    }

    fn parse(form: &str) -> Vec<(String, String)> {
        form.split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), percent_encoding::percent_decode_str(v).decode_utf8().unwrap().into_owned())
            })
            .collect()
    }

    #[test]
    fn a_position_is_the_osmand_fields_with_speed_in_knots() {
        let f = parse(&position("van 17", Some("D-9"), &point()).unwrap());
        let get = |k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("id"), Some("van 17"), "percent-encoded and back");
        assert_eq!(get("timestamp"), Some("1763800000"));
        assert_eq!((get("lat"), get("lon")), (Some("53.5577835"), Some("9.99302")));
        assert_eq!(get("speed"), Some("19.4"), "10 m/s in knots");
        assert_eq!((get("bearing"), get("altitude"), get("hdop")), (Some("271.6"), Some("12.4"), Some("0.9")));
        assert!(get("accuracy").is_some());
        assert_eq!(get("driverUniqueId"), Some("D-9"));
        let mut bare = point();
        bare.fix.speed_mps = None;
        bare.fix.lat = None;
        assert!(position("v", None, &bare).is_none(), "no coordinates, no position");
    }

    #[test]
    fn an_event_is_a_position_with_its_attributes() {
        let mut e = crate::webhook::format::sample("van-17");
        e.status = crate::event::Status::Failed;
        e.reason_code = Some(crate::event::ReasonCode::Refused);
        let f = parse(&event("van-17", &e).unwrap());
        let get = |k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(
            (get("event"), get("status"), get("job")),
            (Some("job.status.failed"), Some("failed"), Some("TEST-0001"))
        );
        assert_eq!(get("reason"), Some("refused"));
        assert_eq!(get("eventId"), Some(e.id.to_string().as_str()));
        assert_eq!(get("timestamp"), Some(e.occurred_at.timestamp().to_string().as_str()));
        e.status = crate::event::Status::RouteStarted;
        e.job_id = crate::event::ROUTE_KEY.into();
        e.route = Some(crate::event::RouteMark { id: Some("R-1".into()), date: None, summary: None });
        let f = parse(&event("van-17", &e).unwrap());
        assert!(f.iter().all(|(k, _)| k != "job"), "a route event has no job");
        assert!(f.contains(&("route".into(), "R-1".into())) && f.contains(&("event".into(), "route.started".into())));
        e.location = None;
        assert!(event("van-17", &e).is_none());
    }

    #[test]
    fn a_400_says_the_device_is_unknown_and_what_to_do() {
        let m = refused(400, "van-17");
        assert!(m.contains("does not know device \"van-17\"") && m.contains("device_id"), "{m}");
        assert_eq!(refused(503, "van-17"), "the server answered 503");
    }
}
