//! The odometer with the real binary: a replayed receiver log of a known track (one noisy lap of
//! the demo route, parked wander at the stops) sums to the track's length within 2%, events
//! carry it, and SIGKILLs while driving lose at most 200 m of it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::agent::free_addr;

/// The lap's true length: the route sampled every second, as the log is, without its noise.
pub(crate) fn lap_length_m() -> f64 {
    let route = curbside::gps::source::sim::Route::demo();
    let lap = route.lap_s() as u64;
    (0..lap)
        .map(|t| {
            let (a, b) = (route.at(t as f64), route.at(t as f64 + 1.0));
            curbside::stops::geofence::distance_m((a.lat, a.lon), (b.lat, b.lon))
        })
        .sum()
}

fn config(dir: &std::path::Path, gps: &str, api: std::net::SocketAddr) -> std::path::PathBuf {
    let path = dir.join("curbside.toml");
    let text = format!(
        "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\n{gps}\n[api]\nlisten = \"{api}\"\n",
        dir.join("state").display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn status(http: &reqwest::Client, api: std::net::SocketAddr) -> Option<Value> {
    http.get(format!("http://{api}/api/v1/status")).send().await.ok()?.json().await.ok()
}

struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn up(http: &reqwest::Client, api: std::net::SocketAddr) -> Value {
    for _ in 0..200 {
        if let Some(s) = status(http, api).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the agent did not answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_track_sums_to_its_length_and_a_kill_loses_at_most_200_m() {
    curbside::tls::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let end = (53.55073, 9.99760);
    let log = dir.path().join("lap.nmea");
    std::fs::write(&log, crate::geofence::noisy_lap(end)).unwrap();
    let api = free_addr();
    let gps =
        format!("source = \"replay\"\nfile = {:?}\nspeed = 10.0\nstale_after = \"2s\"", log.display().to_string());
    let cfg = config(dir.path(), &gps, api);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();

    // Killed three times while driving; each restart replays the log from its start, so the
    // total runs past one lap: what is checked is that no kill loses more than 200 m.
    let mut before = 0.0;
    for kill in 0..3 {
        let mut agent = Agent(crate::common::run_agent(&cfg).spawn().unwrap());
        let after = up(&http, api).await["odometer"]["total_m"].as_f64().unwrap();
        assert!(after >= before - 200.0, "kill {kill}: {before} m before, {after} m after the restart");
        eprintln!("odometer: kill {kill}: {before} m before, {after} m after the restart");
        tokio::time::sleep(Duration::from_millis(6_000 + kill * 1_500)).await;
        before = status(&http, api).await.unwrap()["odometer"]["total_m"].as_f64().unwrap();
        assert!(before > after, "kill {kill}: not driving? {before} m");
        agent.0.kill().unwrap();
        agent.0.wait().unwrap();
    }

    // A fresh store, one whole lap: the replay ends, and the odometer is the lap's length.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let _agent = Agent(crate::common::run_agent(&cfg).spawn().unwrap());
    up(&http, api).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    let s = loop {
        let s = status(&http, api).await.unwrap();
        if s["gps"]["fix"].is_null() && s["gps"]["last_known"]["fix"]["lon"].as_f64() == Some(end.1) {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "the replay never ended: {}", s["gps"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (driven, truth) = (s["odometer"]["total_m"].as_f64().unwrap(), lap_length_m());
    eprintln!("odometer: {driven:.1} m driven for a {truth:.1} m lap ({:+.2}%)", (driven - truth) / truth * 100.0);
    assert!((driven - truth).abs() / truth < 0.02, "{driven:.0} m driven for a {truth:.0} m lap");
    assert!(s["odometer"]["trips"].as_u64().unwrap() >= 1, "{}", s["odometer"]);
    let e: Value = http
        .post(format!("http://{api}/api/v1/jobs/J-1/status"))
        .json(&json!({"status": "delivered"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(e["odometer_m"].as_f64(), Some(driven), "{e}");
    let metrics = http.get(format!("http://{api}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("curbside_odometer_meters_total "), "{metrics}");
}
