//! The van back on the map within seconds of its broker returning, however long the outage:
//! mosquitto stopped for 15 s, 60 s and 300 s. A module of its own, named to sort first: the
//! test takes five minutes of mostly waiting, and the suite runs tests in name order, so it
//! starts at once and the rest of the suite runs beside it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::agent::start_with_gps;
use crate::common::broker::{Mosquitto, Subscriber};
use crate::mqtt::{
    NO_GPS, POSITION, WAIT, distinct, feed_until, first_arrivals, mqtt, mqtt_status, positions, wait_status,
};

/// The van is back on the map within seconds of its broker returning, however long it was
/// away: mosquitto stopped for 15 s, 60 s and 300 s (at once, one broker and agent each) while
/// fixes keep coming; then every point arrives, in time order (`order = "time"`), and a point
/// that comes twice (in flight when mosquitto went) has the same `id` both times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_within_3_s_of_mosquitto_returning_with_every_point_in_time_order() {
    let outages: &[u64] = if std::env::var_os("CURBSIDE_TEST_RUNNER").is_some() {
        eprintln!("under emulation: the 15 s outage only (60 s and 300 s run natively)");
        &[15]
    } else {
        &[15, 60, 300]
    };
    let mut runs = tokio::task::JoinSet::new();
    for &secs in outages {
        runs.spawn(async move { (secs, outage(Duration::from_secs(secs)).await) });
    }
    let mut results = Vec::new();
    while let Some(r) = runs.join_next().await {
        results.push(r.unwrap());
    }
    results.sort();
    for (secs, (back, points, twice)) in &results {
        eprintln!(
            "mosquitto away {secs} s: connected again {back:?} after its restart began; {points} points, {twice} twice"
        );
    }
    for (secs, (back, _, _)) in results {
        assert!(back < Duration::from_secs(3), "after {secs} s away, back only after {back:?}");
    }
}

/// One agent and mosquitto; mosquitto is away for `away`. Returns how long after mosquitto's
/// restart began the agent was connected again, the points made, and how many came twice.
async fn outage(away: Duration) -> (Duration, i64, usize) {
    let mut mosq = Mosquitto::start().await;
    let sub = Subscriber::connect_persistent(mosq.addr, POSITION).await;
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &mqtt(mosq.addr, "order = \"time\"")).await;
    wait_status(&agent, "connected", |s| s["connected"] == true).await;
    let stop = AtomicBool::new(false);
    let (end, back) = tokio::join!(feed_until(&agent, 0, Duration::from_millis(250), &stop), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        mosq.stop();
        wait_status(&agent, "disconnected", |s| s["connected"] == false).await;
        tokio::time::sleep(away).await;
        let restart = tokio::time::Instant::now();
        mosq.restart().await;
        let deadline = restart + WAIT;
        while mqtt_status(&agent).await["connected"] != true {
            assert!(tokio::time::Instant::now() < deadline, "not connected {WAIT:?} after mosquitto returned");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let back = restart.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        back
    });
    let msgs = sub.wait_until(WAIT * 3, "every point", |m| distinct(&positions(m)).len() as i64 == end).await;
    let got = positions(&msgs);
    assert_eq!(distinct(&got), (0..end).collect(), "every point arrived");
    let firsts = first_arrivals(&got);
    assert!(firsts.is_sorted(), "time order: {firsts:?}");
    let mut ids: std::collections::BTreeMap<i64, BTreeSet<String>> = Default::default();
    for m in &msgs {
        let v = m.json();
        let id = v["id"].as_str().unwrap_or_else(|| panic!("no id: {v}")).to_string();
        ids.entry(v["tst"].as_i64().unwrap()).or_default().insert(id);
    }
    assert!(ids.values().all(|s| s.len() == 1), "a repeat has the id of the first copy");
    let all_ids: BTreeSet<&String> = ids.values().flatten().collect();
    assert_eq!(all_ids.len() as i64, end, "every point its own id");
    agent.stop().await;
    (back, end, got.len() - firsts.len())
}
