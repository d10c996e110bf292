//! OwnTracks' messages besides the location (`payload` has that), pure: the last will, the
//! commands a back office sends to `owntracks/{user}/{device}/cmd`, and the van's stops as
//! OwnTracks regions (waypoints, `transition`s when the geofence decides, `inregions` on
//! points), as the OwnTracks JSON booklet describes them. A command is untrusted input:
//! anything that is not one curbside carries out is an error saying why, never a panic.
//!
//! A stop is a region: `rid` is its job id, `desc` its name, `rad` its geofence radius, `wtst`
//! the time its list was stored.

use serde_json::{Map, Value, json};

use crate::event::{Source, Status, StatusEvent};
use crate::input::{Invalid, invalid};
use crate::stops::StopList;
use crate::stops::geofence::distance_m;

/// The last will in OwnTracks mode: `_type: "lwt"` with `tst`, the time the connection was
/// made, on the device topic (not retained), so that the Recorder and the apps see the van go
/// away when it disappears without a goodbye.
pub fn lwt(tst: i64) -> Value {
    json!({ "_type": "lwt", "tst": tst })
}

/// A command curbside carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Publish the current position now (answered with `t: "r"`).
    ReportLocation,
    /// Replace the day's stops with these regions: the body of a stop list
    /// (`{"stops": [...]}`, validated as any list is).
    SetWaypoints(Value),
}

/// Why a command was not carried out (counted, and shown in status as written here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The message is not a JSON document.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// A field is missing or wrong, or the command cannot be carried out now.
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// Reads a `cmd` message.
pub fn command(bytes: &[u8]) -> Result<Command, CommandError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| CommandError::NotJson(e.to_string()))?;
    if v.get("_type").and_then(Value::as_str) != Some("cmd") {
        return Err(invalid("_type", "must be \"cmd\"").into());
    }
    match v.get("action").and_then(Value::as_str) {
        Some("reportLocation") => Ok(Command::ReportLocation),
        Some("setWaypoints") => Ok(Command::SetWaypoints(set_waypoints(&v)?)),
        Some(other) => {
            Err(invalid("action", format!("{other:?} is not one curbside carries out (reportLocation, setWaypoints)"))
                .into())
        }
        None => Err(invalid("action", "missing").into()),
    }
}

/// The stops of a `setWaypoints` command: `waypoints` is `{"_type": "waypoints", "waypoints":
/// [...]}` (or the array itself); each waypoint's `rid` becomes the stop's job id, `desc` its
/// name, `lat`/`lon`/`rad` its place and radius, the order its sequence.
fn set_waypoints(cmd: &Value) -> Result<Value, Invalid> {
    let w = cmd.get("waypoints").ok_or_else(|| invalid("waypoints", "missing"))?;
    let list = match w {
        Value::Array(a) => a,
        Value::Object(o) => o
            .get("waypoints")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("waypoints.waypoints", "must be an array"))?,
        _ => return Err(invalid("waypoints", "must be {\"_type\": \"waypoints\", \"waypoints\": [...]}")),
    };
    let mut stops = Vec::with_capacity(list.len());
    for (i, wp) in list.iter().enumerate() {
        let field = |k: &str| wp.get(k).ok_or_else(|| invalid(format!("waypoints[{i}].{k}"), "missing"));
        let mut stop = Map::new();
        stop.insert("job_id".into(), field("rid")?.clone());
        stop.insert("sequence".into(), json!(i + 1));
        stop.insert("name".into(), field("desc")?.clone());
        stop.insert("lat".into(), field("lat")?.clone());
        stop.insert("lng".into(), field("lon")?.clone());
        if let Some(rad) = wp.get("rad") {
            stop.insert("radius_m".into(), rad.clone());
        }
        stops.push(Value::Object(stop));
    }
    Ok(json!({ "stops": stops }))
}

/// One stop as an OwnTracks region, when it has coordinates.
struct Region<'a> {
    rid: &'a str,
    desc: &'a str,
    lat: f64,
    lon: f64,
    rad: f64,
}

fn regions(list: &StopList, default_radius_m: f64) -> impl Iterator<Item = Region<'_>> {
    list.stops.iter().filter_map(move |s| {
        Some(Region {
            rid: &s.job_id,
            desc: &s.name,
            lat: s.lat?,
            lon: s.lng?,
            rad: s.radius_m.unwrap_or(default_radius_m),
        })
    })
}

/// The stops as OwnTracks `_type: "waypoints"` (published to `…/waypoints` when the list
/// changes and on connect, as an app exports its regions).
pub fn waypoints(list: &StopList, default_radius_m: f64) -> Value {
    let w: Vec<Value> = regions(list, default_radius_m)
        .map(|r| {
            json!({ "_type": "waypoint", "desc": r.desc, "lat": r.lat, "lon": r.lon,
                    "rad": r.rad.round() as i64, "tst": list.updated_at, "rid": r.rid })
        })
        .collect();
    json!({ "_type": "waypoints", "waypoints": w })
}

/// `inregions` and `inrids` of a location at `(lat, lon)`: the stops whose radius it is in.
pub fn inside(list: &StopList, default_radius_m: f64, lat: f64, lon: f64) -> (Vec<String>, Vec<String>) {
    regions(list, default_radius_m)
        .filter(|r| distance_m((lat, lon), (r.lat, r.lon)) <= r.rad)
        .map(|r| (r.desc.to_string(), r.rid.to_string()))
        .unzip()
}

/// The OwnTracks `transition` of an event the geofence recorded (`arrived` is `enter`,
/// `departed` is `leave`), for `…/event`; `None` for any other event (a driver's tap is not a
/// region event).
pub fn transition(e: &StatusEvent, list: &StopList, tid: &str) -> Option<Value> {
    if e.source != Source::Geofence {
        return None;
    }
    let event = match e.status {
        Status::Arrived => "enter",
        Status::Departed => "leave",
        _ => return None,
    };
    let loc = e.location.as_ref()?;
    let desc = list.stops.iter().find(|s| s.job_id == e.job_id).map_or(e.job_id.as_str(), |s| s.name.as_str());
    let mut v = json!({ "_type": "transition", "event": event, "desc": desc, "rid": e.job_id,
        "wtst": list.updated_at, "lat": loc.lat, "lon": loc.lng, "tst": e.occurred_at.timestamp(),
        "tid": tid, "t": "c" });
    if let Some(acc) = loc.accuracy_m.map(|a| a.round() as i64).filter(|a| *a != 0) {
        v["acc"] = json!(acc);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> StopList {
        let stops = crate::stops::parse_list(&json!({"stops": [
            {"job_id": "J-1", "sequence": 1, "name": "Bakery", "lat": 53.55, "lng": 9.99, "radius_m": 40},
            {"job_id": "J-2", "sequence": 2, "name": "No coordinates"},
            {"job_id": "J-3", "sequence": 3, "name": "Depot", "lat": 53.5503, "lng": 9.99},
        ]}))
        .unwrap();
        StopList { version: 3, stops, updated_at: 1_763_700_000, route: None }
    }

    #[test]
    fn stops_with_coordinates_are_waypoints_with_the_booklets_fields() {
        assert_eq!(
            waypoints(&list(), 75.0),
            json!({"_type": "waypoints", "waypoints": [
                {"_type": "waypoint", "desc": "Bakery", "lat": 53.55, "lon": 9.99, "rad": 40, "tst": 1_763_700_000, "rid": "J-1"},
                {"_type": "waypoint", "desc": "Depot", "lat": 53.5503, "lon": 9.99, "rad": 75, "tst": 1_763_700_000, "rid": "J-3"},
            ]})
        );
    }

    #[test]
    fn a_point_is_in_the_regions_whose_radius_it_is_in() {
        // 33 m north of the bakery: inside its 40 m, and at the depot (its 75 m by default).
        let (names, rids) = inside(&list(), 75.0, 53.5503, 9.99);
        assert_eq!((names, rids), (vec!["Bakery".to_string(), "Depot".into()], vec!["J-1".to_string(), "J-3".into()]));
        let (_, rids) = inside(&list(), 75.0, 53.5508, 9.99); // 89 m from the bakery, 55 m from the depot
        assert_eq!(rids, vec!["J-3".to_string()]);
        assert!(inside(&list(), 75.0, 53.6, 9.99).1.is_empty());
    }

    #[test]
    fn geofence_arrivals_and_departures_are_transitions_and_taps_are_not() {
        use crate::event::{Location, Status};
        use crate::gps::Mode;
        let mut e: StatusEvent = serde_json::from_value(json!({
            "id": "0196a8f0-0000-7000-8000-000000000000", "sequence": 7, "job_id": "J-1", "status": "arrived",
            "occurred_at": "2026-11-22T09:00:00Z", "clock_source": "gps", "vehicle_id": "van-17",
            "source": "geofence"
        }))
        .unwrap();
        assert_eq!(transition(&e, &list(), "17"), None, "no location: no transition");
        e.location = Some(Location {
            lat: 53.5501,
            lng: 9.9901,
            accuracy_m: Some(4.2),
            fix_age_s: 0.0,
            speed_mps: Some(0.0),
            course_deg: None,
            mode: Mode::ThreeD,
        });
        assert_eq!(
            transition(&e, &list(), "17").unwrap(),
            json!({"_type": "transition", "event": "enter", "desc": "Bakery", "rid": "J-1", "wtst": 1_763_700_000,
                   "lat": 53.5501, "lon": 9.9901, "tst": 1_795_338_000, "tid": "17", "t": "c", "acc": 4})
        );
        e.status = Status::Departed;
        assert_eq!(transition(&e, &list(), "17").unwrap()["event"], "leave");
        e.source = Source::Driver;
        assert_eq!(transition(&e, &list(), "17"), None, "a tap is not a region event");
        e.source = Source::Geofence;
        e.status = Status::Delivered;
        assert_eq!(transition(&e, &list(), "17"), None);
    }

    #[test]
    fn set_waypoints_becomes_a_stop_list_checked_as_any() {
        let cmd = br#"{"_type":"cmd","action":"setWaypoints","waypoints":{"_type":"waypoints","waypoints":[
            {"_type":"waypoint","desc":"Bakery","lat":53.55,"lon":9.99,"rad":40,"tst":1,"rid":"J-1"},
            {"_type":"waypoint","desc":"Depot","lat":53.56,"lon":9.98,"tst":1,"rid":"J-3"}]}}"#;
        let Ok(Command::SetWaypoints(body)) = command(cmd) else { panic!("a setWaypoints") };
        let stops = crate::stops::parse_list(&body).unwrap();
        assert_eq!(stops.len(), 2);
        assert_eq!((stops[1].job_id.as_str(), stops[1].sequence, stops[1].name.as_str()), ("J-3", 2, "Depot"));
        assert_eq!((stops[0].lat, stops[0].lng, stops[0].radius_m), (Some(53.55), Some(9.99), Some(40.0)));
        let no_rid = br#"{"_type":"cmd","action":"setWaypoints","waypoints":[{"desc":"x","lat":1,"lon":2}]}"#;
        assert_eq!(command(no_rid).unwrap_err().to_string(), "waypoints[0].rid: missing");
        let bad_rid =
            br#"{"_type":"cmd","action":"setWaypoints","waypoints":[{"desc":"x","lat":1,"lon":2,"rid":"a b"}]}"#;
        let Ok(Command::SetWaypoints(body)) = command(bad_rid) else { panic!() };
        assert_eq!(crate::stops::parse_list(&body).unwrap_err().field, "stops[0].job_id");
        assert!(
            command(br#"{"_type":"cmd","action":"setWaypoints","waypoints":7}"#)
                .unwrap_err()
                .to_string()
                .starts_with("waypoints")
        );
    }

    #[test]
    fn the_last_will_is_the_booklets_lwt() {
        assert_eq!(lwt(1_763_800_000), json!({"_type": "lwt", "tst": 1_763_800_000}));
    }

    #[test]
    fn commands_are_read_and_anything_else_is_an_error_naming_the_field() {
        assert_eq!(command(br#"{"_type":"cmd","action":"reportLocation"}"#), Ok(Command::ReportLocation));
        for (bad, field) in [
            (&b"{not json"[..], "not JSON"),
            (b"[]", "_type"),
            (br#"{"_type":"location","action":"reportLocation"}"#, "_type"),
            (br#"{"_type":"cmd"}"#, "action"),
            (br#"{"_type":"cmd","action":"dump"}"#, "action"),
            (br#"{"_type":"cmd","action":7}"#, "action"),
            (b"\xff\xfe", "not JSON"),
        ] {
            let e = command(bad).unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }
}
