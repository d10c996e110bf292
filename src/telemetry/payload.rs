//! MQTT payloads, pure: the `…/position` body (the fix as `gps replay` prints it, plus `tst`,
//! `id` and `created_at`) and the OwnTracks `_type: "location"` body, with the field names,
//! units, trigger letters and omissions of the OwnTracks JSON booklet (`vel` in km/h, `acc` and
//! `alt` in metres, `cog` in degrees, `tst` and `created_at` in unix seconds), so OwnTracks
//! Recorder and its frontends read it as they are.

use serde_json::{Value, json};

use super::Point;
use super::rules::Trigger;

/// The curbside position body: every field of the fix, `tst` (unix seconds of the fix), the
/// point's `id` (the same in every copy sent: drop repeats by it) and `created_at` (unix
/// seconds when this message was made: `created_at - tst` is how long the point waited).
pub fn position(p: &Point, created_at: i64) -> Value {
    let mut v = serde_json::to_value(&p.fix).expect("a fix serializes");
    // No float noise on the wire (`53.557783500000006`): the same fields, to what they can say.
    for (field, decimals) in [("lat", 7), ("lon", 7), ("speed_mps", 2), ("course_deg", 1), ("alt_m", 1), ("hdop", 2)] {
        if let Some(x) = v.get(field).and_then(Value::as_f64) {
            v[field] = json!(crate::units::round(x, decimals));
        }
    }
    v["tst"] = json!(p.tst);
    if let Some(id) = p.id {
        v["id"] = json!(id);
    }
    v["created_at"] = json!(created_at);
    v
}

/// The compact position (`mode = "compact"`, opt-in): one JSON array, `[2, tst, lat, lon,
/// speed_mps, course_deg, accuracy_m]`: `2` the format's version, `tst` unix seconds of the fix,
/// coordinates to 7 decimals, speed to 0.01 m/s, course and accuracy to 0.1, `null` where
/// unknown. No id and no time of sending: every copy of a point is the same bytes, so a consumer
/// drops repeats by the body. `None` without coordinates.
pub fn compact(p: &Point) -> Option<Value> {
    use crate::units::round;
    let (lat, lon) = p.fix.position()?;
    Some(json!([
        2,
        p.tst,
        round(lat, 7),
        round(lon, 7),
        p.fix.speed_mps.map(|v| round(v, 2)),
        p.fix.course_deg.map(|c| round(c, 1)),
        p.fix.accuracy_m().map(|a| round(a, 1)),
    ]))
}

/// OwnTracks' trigger letter, where the booklet has one: `p` for a ping (the heartbeat while
/// parked), `t` for a timer-based publish while moving, `r` for the answer to a
/// `reportLocation` command. Points made because the van moved or
/// turned far enough (or stopped, or the first fix) are automatic location updates, which
/// carry no `t`.
pub fn owntracks_trigger(t: Trigger) -> Option<&'static str> {
    match t {
        Trigger::Heartbeat => Some("p"),
        Trigger::Interval => Some("t"),
        Trigger::Requested => Some("r"),
        Trigger::First | Trigger::Distance | Trigger::Heading | Trigger::Stopped => None,
    }
}

/// The OwnTracks location body; `None` when the fix has no position. `tid` is the two-character
/// tracker id OwnTracks shows on the map. Integers where OwnTracks wants them; `acc`, `alt`,
/// `vel` and `cog` are left out when unknown or zero, and `cog` also while the van stands (a
/// receiver's course at rest is noise, or the next leg's heading).
pub fn owntracks(p: &Point, created_at: i64, tid: &str) -> Option<Value> {
    let fix = &p.fix;
    let (lat, lon) = fix.position()?;
    let (lat, lon) = (crate::units::round(lat, 7), crate::units::round(lon, 7));
    let mut v =
        json!({ "_type": "location", "lat": lat, "lon": lon, "tst": p.tst, "tid": tid, "created_at": created_at });
    let o = v.as_object_mut().expect("an object literal");
    if let Some(t) = owntracks_trigger(p.trigger) {
        o.insert("t".into(), json!(t));
    }
    let nonzero = |x: Option<f64>| x.map(|x| x.round() as i64).filter(|x| *x != 0);
    if let Some(acc) = nonzero(fix.accuracy_m()) {
        o.insert("acc".into(), json!(acc));
    }
    if let Some(alt) = nonzero(fix.alt_m) {
        o.insert("alt".into(), json!(alt));
    }
    let vel = nonzero(fix.speed_mps.map(|v| v * 3.6));
    if let Some(vel) = vel {
        o.insert("vel".into(), json!(vel));
        if let Some(cog) = fix.course_deg.map(|c| c.round().rem_euclid(360.0) as i64) {
            o.insert("cog".into(), json!(cog));
        }
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
    use crate::gps::{Fix, Mode};

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

    fn point(fix: Fix, trigger: Trigger) -> Point {
        Point { id: Some(uuid::Uuid::nil()), tst: 1_763_800_000, trigger, fix }
    }

    #[test]
    fn the_compact_position_is_a_versioned_array_a_fifth_of_the_full_one() {
        let p = point(fix(), Trigger::Distance);
        let c = compact(&p).unwrap();
        assert_eq!(c[0], 2, "the version comes first");
        assert_eq!((c[1].as_i64(), c[2].as_f64(), c[3].as_f64()), (Some(1_763_800_000), Some(53.55), Some(9.99)));
        assert_eq!((c[4].as_f64(), c[5].as_f64()), (Some(10.0), Some(271.6)));
        assert!(c[6].as_f64().is_some(), "accuracy from HDOP");
        let (full, small) = (position(&p, 1_763_800_042).to_string().len(), c.to_string().len());
        assert!(small * 4 < full, "{small} bytes against {full}");
        let mut unknown = fix();
        unknown.speed_mps = None;
        unknown.course_deg = None;
        unknown.hdop = None;
        let c = compact(&point(unknown, Trigger::Heartbeat)).unwrap();
        assert_eq!((c[4].clone(), c[5].clone(), c[6].clone()), (Value::Null, Value::Null, Value::Null));
        let mut none = fix();
        none.lat = None;
        assert!(compact(&point(none, Trigger::Distance)).is_none());
    }

    #[test]
    fn bodies_carry_no_float_noise() {
        let noisy = Fix {
            lat: Some(53.557783500000006),
            lon: Some(9.993020000000001),
            speed_mps: Some(11.101711111111111),
            course_deg: Some(56.300000000000004),
            ..fix()
        };
        let p = point(noisy, Trigger::Distance);
        let text = position(&p, 0).to_string();
        for want in ["\"lat\":53.5577835", "\"lon\":9.99302,", "\"speed_mps\":11.1,", "\"course_deg\":56.3,"] {
            assert!(text.contains(want), "{want} in {text}");
        }
        let ot = owntracks(&p, 0, "17").unwrap().to_string();
        assert!(ot.contains("\"lat\":53.5577835") && ot.contains("\"lon\":9.99302,"), "{ot}");
    }

    #[test]
    fn the_position_body_is_the_replay_fix_plus_tst_id_and_created_at() {
        let v = position(&point(fix(), Trigger::Distance), 1_763_800_042);
        for f in ["time", "lat", "lon", "alt_m", "speed_mps", "course_deg", "mode", "quality", "sats", "hdop", "tst"] {
            assert!(v.get(f).is_some(), "{f} missing: {v}");
        }
        assert_eq!(v["tst"], 1_763_800_000);
        assert_eq!(v["created_at"], 1_763_800_042);
        assert_eq!(v["id"], "00000000-0000-0000-0000-000000000000");
        let old = Point { id: None, ..point(fix(), Trigger::Distance) };
        assert!(position(&old, 0).get("id").is_none(), "a point kept by an older version has none");
    }

    #[test]
    fn owntracks_uses_its_documented_names_and_units() {
        let v = owntracks(&point(fix(), Trigger::Interval), 1_763_800_042, "17").unwrap();
        assert_eq!(
            v,
            json!({"_type": "location", "lat": 53.55, "lon": 9.99, "tst": 1_763_800_000, "tid": "17",
                   "created_at": 1_763_800_042, "t": "t", "vel": 36, "cog": 272, "alt": 12, "acc": 5}),
            "km/h; degrees; metres; acc is HDOP 0.9 × 5 m, rounded"
        );
        assert!(owntracks(&point(Fix::default(), Trigger::First), 0, "17").is_none());
    }

    #[test]
    fn owntracks_triggers_are_the_booklets_letters_and_automatic_updates_have_none() {
        let t = |trigger| owntracks(&point(fix(), trigger), 0, "17").unwrap().get("t").cloned();
        assert_eq!(t(Trigger::Heartbeat), Some(json!("p")));
        assert_eq!(t(Trigger::Interval), Some(json!("t")));
        assert_eq!(t(Trigger::Requested), Some(json!("r")));
        for auto in [Trigger::First, Trigger::Distance, Trigger::Heading, Trigger::Stopped] {
            assert_eq!(t(auto), None, "{auto:?}");
        }
    }

    #[test]
    fn owntracks_leaves_out_zero_and_unknown_values_and_the_course_at_rest() {
        let parked = Fix { speed_mps: Some(0.1), course_deg: Some(93.0), alt_m: Some(0.2), ..fix() };
        let v = owntracks(&point(parked, Trigger::Heartbeat), 0, "17").unwrap();
        for f in ["vel", "cog", "alt"] {
            assert!(v.get(f).is_none(), "{f} present: {v}");
        }
        assert_eq!(v["acc"], 5);
        let unknown = Fix { speed_mps: None, course_deg: Some(10.0), alt_m: None, hdop: None, ..fix() };
        let v = owntracks(&point(unknown, Trigger::Distance), 0, "17").unwrap();
        for f in ["vel", "cog", "alt", "acc", "t"] {
            assert!(v.get(f).is_none(), "{f} present: {v}");
        }
        let north = Fix { course_deg: Some(359.7), ..fix() };
        assert_eq!(owntracks(&point(north, Trigger::Distance), 0, "17").unwrap()["cog"], 0, "359.7° is 0°, not 360");
    }

    #[test]
    fn tracker_ids_are_two_characters() {
        assert_eq!(tracker_id("van-17"), "17");
        assert_eq!(tracker_id("x"), "x");
        assert_eq!(tracker_id("--"), "cs");
    }
}
