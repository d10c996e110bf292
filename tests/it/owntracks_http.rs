//! OwnTracks HTTP mode against a loopback endpoint that checks what the OwnTracks booklet's
//! HTTP mode says a server gets: one `_type: "location"` message per POST, `X-Limit-U` and
//! `X-Limit-D`, HTTP Basic auth; with the endpoint unreachable for a while (a TCP link cut),
//! every point arrives, in time order, and the van is back within seconds of the endpoint.
//! Its answers: a JSON array whose `cmd`s are carried out, and a 5xx that keeps the point.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::common::agent::{TestAgent, start_with_gps};
use crate::common::broker::Link;
use crate::common::receiver::{Got, Receiver, Reply};
use crate::common::transport;
use crate::mqtt::{DENSE, NO_GPS, WAIT, t0};

async fn wait_status(agent: &TestAgent, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    transport::wait(agent, "owntracks_http", what, pred).await
}

async fn feed(agent: &TestAgent, range: std::ops::Range<i64>) {
    transport::feed(agent, "owntracks_http", range).await
}

fn config(endpoint: std::net::SocketAddr) -> String {
    format!(
        "{DENSE}[owntracks_http]\nurl = \"http://van17:s3cret@{endpoint}/pub\"\nuser = \"fleet\"\ndevice = \"van-17\"\ntimeout = \"5s\"\n"
    )
}

/// Seconds since t0 of each location POSTed, in arrival order.
fn tsts(got: &[Got]) -> Vec<i64> {
    got.iter().map(|g| g.json()["tst"].as_i64().unwrap() - t0().timestamp()).collect()
}

/// What the booklet says an HTTP endpoint gets, checked on every request.
fn assert_booklet(g: &Got) {
    assert_eq!((g.method.as_str(), g.path.as_str()), ("POST", "/pub"));
    assert_eq!(g.header("content-type"), "application/json");
    assert_eq!(g.header("x-limit-u"), "fleet");
    assert_eq!(g.header("x-limit-d"), "van-17");
    let basic = base64::engine::general_purpose::STANDARD.encode("van17:s3cret");
    assert_eq!(g.header("authorization"), format!("Basic {basic}"));
    let v = g.json();
    assert_eq!(v["_type"], "location", "{v}");
    assert!(v["lat"].is_f64() && v["lon"].is_f64(), "lat/lon are floats: {v}");
    for int in ["tst", "created_at", "vel", "acc", "alt"] {
        assert!(v[int].is_i64(), "{int} is an integer: {v}");
    }
    assert_eq!(v["tid"], "17");
    assert_eq!(v["vel"], 40, "11 m/s is 40 km/h: {v}");
    if let Some(t) = v.get("t") {
        assert!(["p", "t", "r"].contains(&t.as_str().unwrap()), "a booklet trigger letter: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_point_arrives_in_time_order_across_an_endpoint_outage() {
    let endpoint = Receiver::start(None, vec![]).await;
    let mut link = Link::to(endpoint.addr).await;
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &config(link.addr)).await;

    feed(&agent, 0..5).await;
    let got = endpoint.wait_for(5, WAIT).await;
    assert_eq!(tsts(&got), (0..5).collect::<Vec<_>>());
    wait_status(&agent, "delivering, nothing waiting", |s| s["connected"] == true && s["backlog"]["points"] == 0).await;

    // The endpoint away: points wait on the van.
    link.cut();
    feed(&agent, 5..25).await;
    let s = wait_status(&agent, "not delivering", |s| s["connected"] == false && s["last_error"].is_string()).await;
    assert!(s["backlog"]["points"].as_u64().unwrap() >= 19, "{s:#}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(endpoint.got().len(), 5, "nothing can arrive while the link is cut");

    link.restore().await;
    let back = tokio::time::Instant::now();
    let got = endpoint.wait_for(25, WAIT).await;
    let first = got[5].at.duration_since(back);
    eprintln!("owntracks http: first POST {first:?} after the endpoint came back");
    assert!(first < Duration::from_secs(3), "back within 3 s of the endpoint, took {first:?}");
    feed(&agent, 25..30).await;
    let got = endpoint.wait_for(30, WAIT).await;
    let s =
        wait_status(&agent, "all delivered", |s| s["backlog"]["points"] == 0 && s["positions_published"] == 30).await;
    assert_eq!(tsts(&got), (0..30).collect::<Vec<_>>(), "every point once, in time order");
    got.iter().for_each(assert_booklet);
    assert!(s["connects"].as_u64().unwrap() >= 2, "{s:#}");

    let metrics = agent.http.get(agent.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("curbside_owntracks_http_positions_delivered_total 30"), "{metrics}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_the_answer_are_carried_out_and_a_5xx_keeps_the_point() {
    let waypoints = json!({"_type": "waypoints", "waypoints": [
        {"_type": "waypoint", "desc": "Depot", "lat": 53.56, "lon": 9.99, "rad": 60, "tst": 1_763_800_000, "rid": "job-9"}
    ]});
    let answer = json!([
        {"_type": "location", "tid": "xx", "lat": 1.0, "lon": 2.0, "tst": 1},
        {"_type": "cmd", "action": "reportLocation"},
        {"_type": "cmd", "action": "setWaypoints", "waypoints": waypoints},
        {"_type": "cmd", "action": "dance"}
    ]);
    let endpoint = Receiver::start(
        None,
        vec![Reply::Status(503), Reply::Json(200, answer.to_string()), Reply::Json(200, "[]".into())],
    )
    .await;
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &config(endpoint.addr)).await;

    feed(&agent, 0..1).await;
    // 503, the same point again (backed off), then the answer with the commands; the
    // reportLocation's point after it.
    let got = endpoint.wait_for(3, WAIT).await;
    let without_created_at = |g: &Got| {
        let mut v = g.json();
        v.as_object_mut().unwrap().remove("created_at");
        v
    };
    assert_eq!(without_created_at(&got[0]), without_created_at(&got[1]), "a 5xx keeps the point: sent again");
    assert!(got[1].at.duration_since(got[0].at) >= Duration::from_millis(700), "a 5xx backs off");
    assert_eq!(got[2].json()["t"], "r", "reportLocation is answered with t: r: {}", got[2].json());
    got.iter().for_each(assert_booklet);
    let s = wait_status(&agent, "the commands counted", |s| s["commands_received"] == 3).await;
    assert_eq!(s["commands_rejected"], 1, "{s:#}");
    assert!(s["last_command_error"].as_str().unwrap().contains("dance"), "{s:#}");

    let deadline = tokio::time::Instant::now() + WAIT;
    let stops = loop {
        let list = agent.get("/api/v1/stops").await;
        if list["stops"].as_array().is_some_and(|s| !s.is_empty()) {
            break list;
        }
        assert!(tokio::time::Instant::now() < deadline, "setWaypoints never replaced the stops: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stop = &stops["stops"][0];
    assert_eq!((&stop["job_id"], &stop["name"], &stop["radius_m"]), (&json!("job-9"), &json!("Depot"), &json!(60.0)));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_waiting_for_the_endpoint_survive_a_restart_and_none_is_sent_twice() {
    let endpoint = Receiver::start(None, vec![]).await;
    let mut link = Link::to(endpoint.addr).await;
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &config(link.addr)).await;
    feed(&agent, 0..3).await;
    endpoint.wait_for(3, WAIT).await;
    // The answers back too, before the cut (a point whose answer the cut takes is sent again:
    // at least once, not what this test is about).
    wait_status(&agent, "three delivered", |s| s["positions_published"] == 3).await;
    link.cut();
    feed(&agent, 3..10).await;
    wait_status(&agent, "a backlog", |s| s["backlog"]["points"] == 7).await;
    let dir = agent.stop().await;

    link.restore().await;
    let agent = start_with_gps(dir, NO_GPS, &config(link.addr)).await;
    endpoint.wait_for(10, WAIT).await;
    feed(&agent, 10..12).await;
    let got = endpoint.wait_for(12, WAIT).await;
    wait_status(&agent, "nothing waiting", |s| s["backlog"]["points"] == 0).await;
    assert_eq!(tsts(&endpoint.got()), (0..12).collect::<Vec<_>>(), "{got:?}");
    agent.stop().await;
}
