//! The driver's whole day with the real binary over real HTTP: a replayed receiver log of a known
//! track (parked at the depot, one noisy lap of the demo route's five drops, back to the depot)
//! at ten times real time. The depot's geofence starts and ends the route, the stops' geofence
//! records the arrivals, the driver taps loading done and each stop's outcome, and `route.ended`
//! carries the summary: the distance within 2% of the track's length, the stops counted right.
//! Receivers get route events in the formats that can say them, and only there. A second run
//! SIGKILLs the agent while driving: the odometer loses at most 200 m, the day's start survives.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::agent::free_addr;
use crate::common::receiver::Receiver;
use crate::geofence::{Noise, second};

/// Seconds parked at the depot before the lap and after it.
const BEFORE_S: i64 = 100;
const AFTER_S: i64 = 120;

/// The day's NMEA log: parked at the depot (the demo route's first stop), the lap, parked again.
fn day_log() -> String {
    let route = curbside::gps::source::sim::Route::demo();
    let depot = route.stops()[0];
    let start: chrono::DateTime<chrono::Utc> = "2026-11-23T07:00:00Z".parse().unwrap();
    let mut noise = Noise::new(0x9e37_79b9_7f4a_7c15);
    let lap = route.lap_s() as i64;
    let mut log = String::from("# a day: parked at the depot, one noisy lap of the demo route, back at the depot\n");
    for t in -BEFORE_S..=lap + AFTER_S {
        let s = route.at(t.clamp(0, lap) as f64);
        let (lat, lon, knots) = if !(0..lap).contains(&t) {
            (depot.0 + noise.next(15.0) / 111_320.0, depot.1 + noise.next(15.0) / 66_000.0, noise.next(0.4).abs())
        } else if s.speed_mps == 0.0 {
            (s.lat + noise.next(20.0) / 111_320.0, s.lon + noise.next(20.0) / 66_000.0, noise.next(0.4).abs())
        } else {
            (s.lat + noise.next(5.0) / 111_320.0, s.lon + noise.next(5.0) / 66_000.0, s.speed_mps * 3600.0 / 1852.0)
        };
        log.push_str(&second(start + chrono::Duration::seconds(t + BEFORE_S), lat, lon, knots, s.course_deg));
    }
    log
}

/// The day's list: route R-1 with its depot, the five drops.
fn day() -> Value {
    let route = curbside::gps::source::sim::Route::demo();
    let r = route.stops();
    let stops: Vec<Value> = r[1..]
        .iter()
        .enumerate()
        .map(|(i, (lat, lng))| json!({"job_id": format!("S{}", i + 1), "sequence": i + 1, "lat": lat, "lng": lng}))
        .collect();
    json!({"route": {"id": "R-1", "date": "2026-11-23", "depot": {"lat": r[0].0, "lng": r[0].1, "radius_m": 100}},
           "stops": stops})
}

/// Seconds the lap spends driving (its length over the cruise speed).
fn lap_driving_s() -> f64 {
    let route = curbside::gps::source::sim::Route::demo();
    route.lap_s() - 20.0 * route.stops().len() as f64
}

struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Van {
    http: reqwest::Client,
    api: std::net::SocketAddr,
}

impl Van {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    async fn get(&self, path: &str) -> Option<Value> {
        self.http.get(self.url(path)).send().await.ok()?.json().await.ok()
    }

    async fn up(&self) {
        for _ in 0..200 {
            if self.get("/api/v1/status").await.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the agent did not answer");
    }

    async fn post(&self, path: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    async fn load_day(&self) {
        let resp = self.http.put(self.url("/api/v1/stops")).json(&day()).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }

    /// Waits (up to `limit`) until `GET /api/v1/route` satisfies `done`.
    async fn route_until(&self, limit: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(r) = self.get("/api/v1/route").await {
                if done(&r) {
                    return r;
                }
                assert!(tokio::time::Instant::now() < deadline, "{what}: {r}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn config(dir: &std::path::Path, api: std::net::SocketAddr, hooks: &[(&str, &str, String)]) -> std::path::PathBuf {
    let log = dir.join("day.nmea");
    std::fs::write(&log, day_log()).unwrap();
    let mut text = format!(
        "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\nsource = \"replay\"\nfile = {:?}\nspeed = 10.0\n\
         stale_after = \"2s\"\n[api]\nlisten = \"{api}\"\n",
        dir.join("state").display().to_string(),
        log.display().to_string()
    );
    for (name, format, url) in hooks {
        text.push_str(&format!("[[webhook]]\nname = \"{name}\"\nurl = \"{url}\"\nformat = \"{format}\"\n"));
    }
    let path = dir.join("curbside.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_day_starts_and_ends_at_the_depot_with_its_summary() {
    curbside::tls::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (standard, track_pod, detrack) =
        (Receiver::start(None, vec![]).await, Receiver::start(None, vec![]).await, Receiver::start(None, vec![]).await);
    let api = free_addr();
    let cfg = config(
        dir.path(),
        api,
        &[
            ("bo", "standard", standard.url()),
            ("tp", "track-pod", track_pod.url()),
            ("dt", "detrack-v1", detrack.url()),
        ],
    );
    let van = Van { http: reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap(), api };
    let _agent = Agent(crate::common::run_agent(&cfg).spawn().unwrap());
    van.up().await;
    van.load_day().await;

    // Loaded at the depot, with a key: a repeated tap is the same event.
    let (code, loaded) = van.post("/api/v1/route/status", json!({"status": "loading_done"}), Some("load-1")).await;
    assert_eq!(code, 201, "{loaded}");
    assert_eq!((loaded["status"].clone(), loaded["job_id"].clone()), (json!("loading_done"), Value::Null));
    assert_eq!(loaded["route"]["id"], "R-1");
    let (code, again) = van.post("/api/v1/route/status", json!({"status": "loading_done"}), Some("load-1")).await;
    assert_eq!((code, again["id"].clone()), (201, loaded["id"].clone()));
    let (code, early) = van.post("/api/v1/route/status", json!({"status": "ended"}), None).await;
    assert_eq!((code, early["field"].clone()), (422, json!("status")), "{early}");

    // The van leaves the depot: the route starts by itself.
    let started =
        van.route_until(Duration::from_secs(60), "the route never started", |r| !r["started_at"].is_null()).await;
    assert_eq!(started["route"]["id"], "R-1");

    // Each stop: the geofence arrives, the driver taps its outcome.
    let outcomes = [
        ("S1", json!({"status": "delivered", "received_by": "A. Meyer"})),
        ("S2", json!({"status": "failed", "reason_code": "customer_not_present"})),
        ("S3", json!({"status": "picked_up"})),
        ("S4", json!({"status": "delivered"})),
    ];
    let mut tapped = std::collections::HashSet::new();
    let mut arrived = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    let ended = loop {
        let stops = van.get("/api/v1/stops").await.unwrap_or_default();
        for s in stops["stops"].as_array().cloned().unwrap_or_default() {
            let job = s["job_id"].as_str().unwrap().to_string();
            if s["state"] != "pending" {
                arrived.insert(job.clone());
            }
            if s["state"] == "arrived" && !tapped.contains(&job) {
                if let Some((_, body)) = outcomes.iter().find(|(j, _)| *j == job) {
                    let (code, e) = van.post(&format!("/api/v1/jobs/{job}/status"), body.clone(), None).await;
                    assert_eq!(code, 201, "{e}");
                }
                tapped.insert(job);
            }
        }
        let r = van.get("/api/v1/route").await.unwrap_or_default();
        if !r["ended_at"].is_null() {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "the route never ended: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(arrived.len(), 5, "every stop arrived: {arrived:?}");

    // The summary.
    let sum = &ended["summary"];
    let (driven, truth) = (sum["distance_m"].as_f64().unwrap(), crate::odometer::lap_length_m());
    let (driving, expected) = (sum["driving_s"].as_f64().unwrap(), lap_driving_s());
    eprintln!(
        "route: {driven:.1} m for a {truth:.1} m track ({:+.2}%); driving {driving} s of {expected:.0} s; {sum}",
        (driven - truth) / truth * 100.0
    );
    assert!((driven - truth).abs() / truth < 0.02, "{driven:.0} m driven for a {truth:.0} m track");
    assert!((driving - expected).abs() / expected < 0.1, "driving {driving} s, the track drives {expected:.0} s");
    assert!(sum["stopped_s"].as_u64().unwrap() >= 80, "five 20 s stops: {sum}");
    assert!(sum["idle_s"].as_u64().unwrap() < 30, "every stop was at a stop: {sum}");
    assert_eq!(
        sum["stops"],
        json!({"delivered": 2, "partially_delivered": 0, "failed": 1, "picked_up": 1, "pending": 1})
    );

    // What the receivers got: the route in the formats that can say it, in order.
    let got = |rx: &Receiver| rx.got().iter().map(|g| g.json()).collect::<Vec<Value>>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !got(&standard).iter().any(|b| b["type"] == "route.ended") {
        assert!(tokio::time::Instant::now() < deadline, "route.ended not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let route_types: Vec<String> = got(&standard)
        .iter()
        .filter_map(|b| b["type"].as_str().filter(|t| t.starts_with("route.")).map(String::from))
        .collect();
    assert_eq!(route_types, ["route.loading_done", "route.started", "route.ended"]);
    let bodies = got(&standard);
    let of = |t: &str| bodies.iter().find(|b| b["type"] == t).unwrap()["data"].clone();
    let (start, end) = (of("route.started"), of("route.ended"));
    assert_eq!((start["source"].clone(), end["source"].clone()), (json!("geofence"), json!("geofence")));
    assert_eq!((start["job_id"].clone(), start["route"]["id"].clone()), (Value::Null, json!("R-1")));
    assert_eq!(end["route"]["summary"], *sum, "the event carries the summary the API shows");
    assert!(start["odometer_m"].as_f64().unwrap() < 200.0, "started where it left the depot: {start}");
    assert_eq!(bodies.iter().filter(|b| b["type"] == "job.status.arrived").count(), 5);

    let tp = got(&track_pod);
    let routes: Vec<&Value> = tp.iter().filter(|b| b["Data"].get("CloseDate").is_some()).collect();
    assert_eq!(routes.len(), 2, "Track-POD gets the start and the close: {routes:?}");
    assert_eq!(
        (routes[0]["Data"]["Status"].clone(), routes[1]["Data"]["Status"].clone()),
        (json!("InProgress"), json!("Closed"))
    );
    assert_eq!(routes[1]["Data"]["Track"], sum["distance_m"]);
    assert!(got(&detrack).iter().all(|b| b["status"] != "Route"), "Detrack gets no route event");
    assert_eq!(got(&detrack).len(), 3, "Detrack: the two deliveries and the failure");

    // The day is over: a second start is refused, naming the field.
    let (code, again) = van.post("/api/v1/route/status", json!({"status": "started"}), None).await;
    assert_eq!((code, again["field"].clone()), (422, json!("status")), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_while_driving_loses_at_most_200_m_and_keeps_the_day() {
    curbside::tls::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let api = free_addr();
    let cfg = config(dir.path(), api, &[]);
    let van = Van { http: reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap(), api };
    let mut agent = Agent(crate::common::run_agent(&cfg).spawn().unwrap());
    van.up().await;
    van.load_day().await;
    let started =
        van.route_until(Duration::from_secs(60), "the route never started", |r| !r["started_at"].is_null()).await;
    // Each restart replays the log from its start (parked at the depot, then the lap): the
    // odometer only grows, and no kill may lose more than 200 m of it.
    let mut before = 0.0;
    for kill in 0..2 {
        tokio::time::sleep(Duration::from_millis(4_000 + kill * 1_500)).await;
        let now = van.get("/api/v1/status").await.unwrap()["odometer"]["total_m"].as_f64().unwrap();
        assert!(now > before, "kill {kill}: not driving? {now} m");
        before = now;
        agent.0.kill().unwrap();
        agent.0.wait().unwrap();
        agent = Agent(crate::common::run_agent(&cfg).spawn().unwrap());
        van.up().await;
        let after = van.get("/api/v1/status").await.unwrap()["odometer"]["total_m"].as_f64().unwrap();
        eprintln!("route: kill {kill}: {before} m before, {after} m after the restart");
        assert!(after >= before - 200.0, "kill {kill}: {before} m before, {after} m after");
        let day = van.get("/api/v1/route").await.unwrap();
        assert_eq!(day["started_at"], started["started_at"], "kill {kill}: the day's start survives");
        assert!(day["ended_at"].is_null());
        // Leaving the depot again does not start the route again: it is under way.
        before = after;
        tokio::time::sleep(Duration::from_millis(12_000)).await;
        let day = van.get("/api/v1/route").await.unwrap();
        assert_eq!(day["started_at"], started["started_at"], "kill {kill}: started once");
    }
}
