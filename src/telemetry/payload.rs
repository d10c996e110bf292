//! MQTT payloads, pure: the `…/position` body (the fix as `gps replay` prints it, plus `tst`) and
//! the OwnTracks `_type: "location"` body, with the field names and units of the OwnTracks JSON
//! documentation (`vel` in km/h, `acc` and `alt` in metres, `cog` in degrees, `tst` in unix
//! seconds), so OwnTracks Recorder and its frontends read it as they are.

use serde_json::{Value, json};

use super::rules::Trigger;
use crate::gps::Fix;

/// The curbside position body: every field of [`Fix`] plus `tst` (unix seconds of the fix).
pub fn position(fix: &Fix, tst: i64) -> Value {
    let mut v = serde_json::to_value(fix).expect("a fix serializes");
    v["tst"] = json!(tst);
    v
}

/// OwnTracks' trigger letter: `p` for a ping (heartbeat), `t` for the time/distance rules, `c`
/// is left to region events, which curbside does not have.
pub fn owntracks_trigger(t: Trigger) -> &'static str {
    match t {
        Trigger::Heartbeat => "p",
        _ => "t",
    }
}

/// The OwnTracks location body; `None` when the fix has no position. `tid` is the two-character
/// tracker id OwnTracks shows on the map.
pub fn owntracks(fix: &Fix, tst: i64, tid: &str, trigger: Trigger) -> Option<Value> {
    let (lat, lon) = fix.position()?;
    let mut v =
        json!({ "_type": "location", "lat": lat, "lon": lon, "tst": tst, "tid": tid, "t": owntracks_trigger(trigger) });
    let o = v.as_object_mut().expect("an object literal");
    // OwnTracks wants integers for these.
    if let Some(acc) = fix.accuracy_m() {
        o.insert("acc".into(), json!(acc.round() as i64));
    }
    if let Some(alt) = fix.alt_m {
        o.insert("alt".into(), json!(alt.round() as i64));
    }
    if let Some(v) = fix.speed_mps {
        o.insert("vel".into(), json!((v * 3.6).round() as i64));
    }
    if let Some(c) = fix.course_deg {
        o.insert("cog".into(), json!(c.round() as i64));
    }
    Some(v)
}

/// A two-character OwnTracks tracker id from a vehicle id: its last two letters or digits.
pub fn tracker_id(vehicle_id: &str) -> String {
    let chars: Vec<char> = vehicle_id.chars().filter(char::is_ascii_alphanumeric).collect();
    let tail: String = chars[chars.len().saturating_sub(2)..].iter().collect();
    if tail.is_empty() { "cs".into() } else { tail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gps::Mode;

    fn fix() -> Fix {
        Fix {
            lat: Some(53.55),
            lon: Some(9.99),
            alt_m: Some(12.4),
            speed_mps: Some(10.0),
            course_deg: Some(271.6),
            hdop: Some(0.9),
            mode: Mode::ThreeD,
            sats: Some(9),
            ..Fix::default()
        }
    }

    #[test]
    fn the_position_body_is_the_replay_fix_plus_tst() {
        let v = position(&fix(), 1_763_800_000);
        for f in ["time", "lat", "lon", "alt_m", "speed_mps", "course_deg", "mode", "quality", "sats", "hdop", "tst"] {
            assert!(v.get(f).is_some(), "{f} missing: {v}");
        }
        assert_eq!(v["tst"], 1_763_800_000);
    }

    #[test]
    fn owntracks_uses_its_documented_names_and_units() {
        let v = owntracks(&fix(), 1_763_800_000, "17", Trigger::Distance).unwrap();
        assert_eq!(v["_type"], "location");
        assert_eq!((v["lat"].as_f64(), v["lon"].as_f64()), (Some(53.55), Some(9.99)));
        assert_eq!(v["tst"], 1_763_800_000);
        assert_eq!(v["vel"], 36, "km/h");
        assert_eq!(v["cog"], 272);
        assert_eq!(v["alt"], 12);
        assert_eq!(v["acc"], 5, "HDOP 0.9 × 5 m, rounded");
        assert_eq!((v["tid"].as_str(), v["t"].as_str()), (Some("17"), Some("t")));
        assert_eq!(owntracks(&fix(), 0, "17", Trigger::Heartbeat).unwrap()["t"], "p");
        assert!(owntracks(&Fix::default(), 0, "17", Trigger::First).is_none());
    }

    #[test]
    fn tracker_ids_are_two_characters() {
        assert_eq!(tracker_id("van-17"), "17");
        assert_eq!(tracker_id("x"), "x");
        assert_eq!(tracker_id("--"), "cs");
    }
}
