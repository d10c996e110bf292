//! The geofence on the simulated route (ten times real time; the rules count the route's own
//! seconds, so the default 20 s dwell is 2 s of real time): an arrival and a departure recorded by the geofence at every stop the van stops at,
//! none at a stop it only drives past or a stop without coordinates, and every tap for a known
//! stop says how far from it the van was.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::agent;
use crate::common::receiver::Receiver;

/// The demo route's stops, S1 to S6, then `PAST`: halfway along the first leg, driven past at
/// 40 km/h and never stopped at.
fn route_stops() -> Vec<Value> {
    let route = curbside::gps::source::sim::Route::demo();
    let r = route.stops();
    let mut stops: Vec<Value> = r
        .iter()
        .enumerate()
        .map(|(i, (lat, lng))| json!({"job_id": format!("S{}", i + 1), "sequence": i + 1, "lat": lat, "lng": lng}))
        .collect();
    let (a0, a1) = (r[0], r[1]);
    stops.push(json!({"job_id": "PAST", "sequence": 7, "lat": (a0.0 + a1.0) / 2.0, "lng": (a0.1 + a1.1) / 2.0}));
    stops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_van_arrives_and_departs_at_each_stop_it_stops_at_and_nowhere_else() {
    let rx = Receiver::start(None, vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let a = agent::start_with_gps(
        dir,
        "source = \"sim\"\nspeed = 10.0",
        &format!("[[webhook]]\nname = \"bo\"\nurl = \"{}\"\n", rx.url()),
    )
    .await;
    let mut stops = route_stops();
    stops.push(json!({"job_id": "NOWHERE", "sequence": 8, "name": "no coordinates"}));
    let resp = a.http.put(a.url("/api/v1/stops")).json(&json!({"stops": stops})).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // A lap is about 45 s at ten times real time; wait for every stop's departure.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let events = loop {
        let events: Vec<Value> = rx.got().iter().map(|g| g.json()["data"].clone()).collect();
        let departed: std::collections::HashSet<&str> =
            events.iter().filter(|e| e["status"] == "departed").filter_map(|e| e["job_id"].as_str()).collect();
        if (1..=6).all(|i| departed.contains(format!("S{i}").as_str())) {
            break events;
        }
        assert!(tokio::time::Instant::now() < deadline, "departures so far: {departed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut per_job: HashMap<String, Vec<String>> = HashMap::new();
    for e in &events {
        assert_eq!(e["source"], "geofence", "{e}");
        per_job.entry(e["job_id"].as_str().unwrap().into()).or_default().push(e["status"].as_str().unwrap().into());
    }
    for i in 1..=6 {
        let got = &per_job[&format!("S{i}")];
        // The van may be back at the first stops by now: whole visits only, never a flap.
        assert!(got.chunks(2).all(|c| c[0] == "arrived" && c.get(1).is_none_or(|d| d == "departed")), "S{i}: {got:?}");
    }
    assert!(!per_job.contains_key("PAST"), "a drive past is no arrival: {:?}", per_job.get("PAST"));
    assert!(!per_job.contains_key("NOWHERE"));
    let arrived = events.iter().find(|e| e["status"] == "arrived").unwrap();
    assert!(arrived["stop"]["inside"] == true && arrived["stop"]["distance_m"].as_f64().unwrap() < 75.0, "{arrived}");

    // A tap for a known stop says how far from it the van is; one for an unknown job does not.
    let (_, e) = a.tap("PAST", json!({"status": "delivered"})).await;
    assert!(e["stop"]["distance_m"].as_f64().is_some_and(|d| d >= 0.0), "{e}");
    let (_, e) = a.tap("UNLISTED", json!({"status": "delivered"})).await;
    assert_eq!(e["stop"], Value::Null);
    let (_, e) = a.tap("NOWHERE", json!({"status": "delivered"})).await;
    assert_eq!(e["stop"], Value::Null, "no coordinates, no distance");
    let listed = a.get("/api/v1/stops").await;
    let s1 = &listed["stops"][0];
    assert_eq!((s1["job_id"].as_str(), s1["state"].as_str()), (Some("S1"), Some("arrived")), "{s1}");

    // Heading to a stop while driving: an estimate (straight line over the recent moving speed),
    // in the event and in status; other taps have none.
    let (_, e) = a.tap("S4", json!({"status": "heading_to"})).await;
    let eta = &e["eta"];
    assert_eq!(eta["method"], "straight_line", "{e}");
    let (d, v) = (eta["distance_m"].as_f64().unwrap(), eta["speed_mps"].as_f64().unwrap());
    assert!(v >= 1.5 && (eta["seconds"].as_f64().unwrap() - d / v).abs() <= 1.0, "{eta}");
    assert_eq!(d, e["stop"]["distance_m"].as_f64().unwrap());
    let status = a.get("/api/v1/status").await;
    let next = &status["next_stop"];
    assert_eq!((next["job_id"].as_str(), next["state"].as_str()), (Some("S4"), Some("heading")), "{next}");
    assert!(next["distance_m"].as_f64().is_some(), "{next}");
    let (_, e) = a.tap("S5", json!({"status": "delivered"})).await;
    assert_eq!(e["eta"], Value::Null);
    a.stop().await;
}

/// One lap of the demo route as a receiver log with noise: ±25 m at the stops (where a parked
/// receiver wanders most), ±5 m on the road, a little speed while parked; then one fix at a
/// stop the van never reached live, after which the log ends and that fix goes stale.
pub(crate) fn noisy_lap(end: (f64, f64)) -> String {
    let route = curbside::gps::source::sim::Route::demo();
    let start: chrono::DateTime<chrono::Utc> = "2026-11-23T09:00:00Z".parse().unwrap();
    let mut noise = Noise::new(0x2545_f491_4f6c_dd1d);
    let mut log = String::from("# one noisy lap of the demo route\n");
    let lap = route.lap_s() as u64;
    for t in 0..=lap {
        let s = route.at(t as f64);
        let (lat, lon, knots) = if t == lap {
            (end.0, end.1, 0.0)
        } else if s.speed_mps == 0.0 {
            (s.lat + noise.next(25.0) / 111_320.0, s.lon + noise.next(25.0) / 66_000.0, noise.next(0.4).abs())
        } else {
            (s.lat + noise.next(5.0) / 111_320.0, s.lon + noise.next(5.0) / 66_000.0, s.speed_mps * 3600.0 / 1852.0)
        };
        log.push_str(&second(start + chrono::Duration::seconds(t as i64), lat, lon, knots, s.course_deg));
    }
    log
}

/// Reproducible noise: xorshift, uniform in ±`metres`.
pub(crate) struct Noise(u64);

impl Noise {
    pub(crate) fn new(seed: u64) -> Noise {
        Noise(seed)
    }

    pub(crate) fn next(&mut self, metres: f64) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 as f64 / u64::MAX as f64 * 2.0 - 1.0) * metres
    }
}

/// One second of a receiver's log: RMC and GGA at `when`, with their checksums.
pub(crate) fn second(when: chrono::DateTime<chrono::Utc>, lat: f64, lon: f64, knots: f64, course: f64) -> String {
    use chrono::Timelike;
    let ddmm = |v: f64, w: usize| {
        let a = v.abs();
        format!("{:0w$}{:08.5}", a.trunc() as u32, (a - a.trunc()) * 60.0)
    };
    let hms = format!("{:02}{:02}{:02}.00", when.hour(), when.minute(), when.second());
    let (la, lo) = (ddmm(lat, 2), ddmm(lon, 3));
    let rmc = format!("GPRMC,{hms},A,{la},N,{lo},E,{knots:.2},{course:.1},231126,,,A");
    let gga = format!("GPGGA,{hms},{la},N,{lo},E,1,09,0.9,12.0,M,40.0,M,,");
    [rmc, gga].iter().map(|body| curbside::gps::frame::with_checksum(&format!("${body}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_replay_arrives_once_per_stop_and_a_stale_fix_decides_nothing() {
    let end = (53.55073, 9.99760); // 300 m east of the first stop: only the log's last, stale fix
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("noisy.nmea");
    std::fs::write(&log, noisy_lap(end)).unwrap();
    let rx = Receiver::start(None, vec![]).await;
    let gps =
        format!("source = \"replay\"\nfile = {:?}\nspeed = 10.0\nstale_after = \"2s\"", log.display().to_string());
    let a = agent::start_with_gps(dir, &gps, &format!("[[webhook]]\nname = \"bo\"\nurl = \"{}\"\n", rx.url())).await;
    let mut stops = route_stops();
    stops.push(json!({"job_id": "END", "sequence": 8, "lat": end.0, "lng": end.1}));
    let resp = a.http.put(a.url("/api/v1/stops")).json(&json!({"stops": stops})).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // The lap takes about 42 s at ten times real time; then the last fix goes stale.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    loop {
        let status = a.get("/api/v1/status").await;
        let done = status["gps"]["fix"].is_null() && status["gps"]["last_known"]["fix"]["lon"].as_f64() == Some(end.1);
        if done {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the replay never ended: {}", status["gps"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut per_job: HashMap<String, Vec<String>> = HashMap::new();
    for g in rx.got() {
        let e = g.json()["data"].clone();
        per_job.entry(e["job_id"].as_str().unwrap().into()).or_default().push(e["status"].as_str().unwrap().into());
    }
    for i in 1..=6 {
        assert_eq!(
            per_job.get(&format!("S{i}")),
            Some(&vec!["arrived".to_string(), "departed".to_string()]),
            "S{i}: {per_job:?}"
        );
    }
    assert!(!per_job.contains_key("PAST"), "a drive past is no arrival: {per_job:?}");
    assert!(!per_job.contains_key("END"), "a stale fix decides nothing: {per_job:?}");
    a.stop().await;
}

/// `curbside demo --speed 5`, as the README suggests, with the default rules: the geofence counts
/// its dwell in the route's own seconds, so the van still arrives (it once recorded no arrival in
/// 75 s at 5x), and a departure carries where and when the van left the fence (it was once
/// stamped ~340 m past the stop, the dwell later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_five_times_real_time_the_default_rules_arrive_and_depart_at_the_fence() {
    let rx = Receiver::start(None, vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let a = agent::start_with_gps(
        dir,
        "source = \"sim\"\nspeed = 5.0",
        &format!("[[webhook]]\nname = \"bo\"\nurl = \"{}\"\n", rx.url()),
    )
    .await;
    let resp = a.http.put(a.url("/api/v1/stops")).json(&json!({"stops": route_stops()})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(100);
    let (arrived, departed) = loop {
        let events: Vec<Value> = rx.got().iter().map(|g| g.json()["data"].clone()).collect();
        let first = |s: &str| events.iter().find(|e| e["status"] == s).cloned();
        if let (Some(a), Some(d)) = (first("arrived"), first("departed")) {
            break (a, d);
        }
        assert!(tokio::time::Instant::now() < deadline, "no arrival and departure within 100 s: {events:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(arrived["job_id"], departed["job_id"]);
    let left_m = departed["stop"]["distance_m"].as_f64().unwrap();
    // Radius 75 m + hysteresis 30 m (+ the fix's accuracy): where the fence was left, not the
    // dwell's length of road further on.
    assert!((100.0..160.0).contains(&left_m), "departure stamped {left_m} m from the stop: {departed}");
    assert_eq!(departed["location"]["fix_age_s"], 0.0);
}
