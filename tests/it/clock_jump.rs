//! A system clock that jumps days ahead or behind while positions wait for the broker: a Pi has
//! no RTC and boots on the time `fake-hwclock` saved, or takes a bad NTP answer. The backlog's
//! age limit (`backlog_max_age`, 7 days) is measured against GPS time, never against the system
//! clock alone, so no jump throws the backlog away. Each case runs against rumqttd with the
//! agent's system clock read through a [`Wall`] the test moves.

use std::collections::BTreeSet;

use chrono::Utc;
use curbside::gps::Fix;
use curbside::gps::clock::Wall;

use crate::common::agent::{TestAgent, start_with_gps_wall};
use crate::common::broker::{Link, Msg, Subscriber, rumqttd};
use crate::mqtt::{NO_GPS, POSITION, WAIT, fix, mqtt, mqtt_status, wait_status};

const POINTS: i64 = 20;

/// Fix `i`, stamped with the real time now: GPS agrees with the system clock before the jump.
fn fix_now(i: i64) -> Fix {
    Fix { time: Some(Utc::now()), ..fix(i) }
}

/// Which fixes arrived, by their latitude (several share a second).
fn arrived(msgs: &[Msg]) -> BTreeSet<i64> {
    msgs.iter()
        .filter(|m| m.topic == POSITION)
        .filter_map(|m| m.json()["lat"].as_f64())
        .map(|lat| ((lat - 53.55) / 0.0001).round() as i64)
        .collect()
}

/// Feeds fixes `range`, each once the one before became a point.
async fn feed_now(agent: &TestAgent, range: std::ops::Range<i64>) {
    let made = |s: &serde_json::Value| s["positions_made"].as_u64().unwrap_or(0);
    for i in range {
        let before = made(&mqtt_status(agent).await);
        agent.running.latest.publish(fix_now(i));
        wait_status(agent, &format!("fix {i} made a point"), |s| made(s) > before).await;
    }
}

/// The backlog of `POINTS` positions made offline with the clock agreeing with GPS time; then
/// the clock jumps by `days`, across a restart (the van's next boot, no fix yet) or while the
/// agent runs (the receiver lost in a depot); then the broker comes up. Every point must arrive.
async fn backlog_after_a_jump(days: i64, restart: bool) {
    let case = format!("clock {days:+} days, {}", if restart { "across a restart" } else { "while running" });
    // The broker and a subscriber are up from the start; the agent reaches the broker through a
    // link that is cut until the jump is done, so nothing it sends can pass unseen.
    let broker = rumqttd().await;
    let sub = Subscriber::connect(broker, POSITION).await;
    let mut link = Link::to(broker).await;
    link.cut();
    let config = mqtt(link.addr, "");
    let wall = Wall::system();
    let mut agent = start_with_gps_wall(tempfile::tempdir().unwrap(), NO_GPS, &config, &wall).await;
    feed_now(&agent, 0..POINTS).await;
    wait_status(&agent, "the backlog", |s| s["backlog"]["points"].as_i64() == Some(POINTS)).await;
    let clock = agent.get("/api/v1/status").await["clock"].clone();
    assert_eq!(clock["trusted"], true, "{case}: the clock agreed with GPS before the jump: {clock}");

    wall.jump(chrono::Duration::days(days));
    if restart {
        let dir = agent.stop().await;
        agent = start_with_gps_wall(dir, NO_GPS, &config, &wall).await;
    }
    link.restore().await;
    let msgs = sub.wait_until(WAIT, &case, |m| arrived(m).len() as i64 == POINTS).await;
    assert_eq!(arrived(&msgs), (0..POINTS).collect(), "{case}: every point arrived");
    let s = wait_status(&agent, "drained", |s| s["backlog"]["points"] == 0).await;
    assert_eq!(s["backlog"]["dropped"], 0, "{case}: none dropped as old: {s:#}");

    // A fix again: its GPS time is the truth now, and a point made from it goes out too.
    feed_now(&agent, POINTS..POINTS + 1).await;
    sub.wait_until(WAIT, &case, |m| arrived(m).contains(&POINTS)).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_ten_days_ahead_at_the_next_boot_keeps_the_backlog() {
    backlog_after_a_jump(10, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_ten_days_behind_at_the_next_boot_keeps_the_backlog() {
    backlog_after_a_jump(-10, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_that_jumps_ten_days_ahead_while_running_keeps_the_backlog() {
    backlog_after_a_jump(10, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_that_jumps_ten_days_behind_while_running_keeps_the_backlog() {
    backlog_after_a_jump(-10, false).await;
}
