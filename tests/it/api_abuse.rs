//! Hostile and careless clients against the local API's connections: held-open connections
//! without a request, bodies that never come, idle keep-alives, more clients than the cap.
//! Correctness only (who is answered, who is closed, what is counted); how fast taps are answered
//! during a flood of 10,000 is measured by `benches/api_flood.rs`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::agent::{TestAgent, start_with_api};

async fn agent(max: u32, timeout: &str) -> TestAgent {
    let api = format!("listen = \"127.0.0.1:0\"\nmax_connections = {max}\nrequest_timeout = \"{timeout}\"");
    start_with_api(&api, "").await
}

/// A client that opens a connection per request, as a tablet that lost its pooled one would.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap()
}

/// Reads until the server closes the connection (guarded: a connection never closed fails).
async fn until_closed(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut got)).await;
    read.expect("the agent closes it").ok();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_a_request_do_not_lock_out_taps_and_are_closed() {
    let agent = agent(8, "3s").await;
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut c = TcpStream::connect(agent.addr()).await.unwrap();
        c.write_all(b"POST /api/v1/jobs/J/status HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        held.push(c);
    }
    let http = fresh_client();
    for i in 0..5 {
        let r = http.post(agent.url(&format!("/api/v1/jobs/J{i}/status"))).json(&json!({"status": "arrived"}));
        assert_eq!(r.send().await.unwrap().status(), 201, "tap {i} while 100 connections are held");
    }
    let status: Value = http.get(agent.url("/api/v1/status")).send().await.unwrap().json().await.unwrap();
    let api = &status["api"];
    assert!(api["open"].as_u64().unwrap() <= 8, "{api}");
    assert!(api["evicted"].as_u64().unwrap() >= 92, "{api}");
    assert_eq!(api["refused"], 0, "{api}");
    // The ones still open are closed once they have waited the request timeout, without an answer.
    for c in held.iter_mut().rev().take(3) {
        assert_eq!(until_closed(c).await, "");
    }
    let metrics = http.get(agent.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let count = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64
    };
    assert!(count("curbside_api_connections_evicted_total") >= 92);
    assert!(count("curbside_api_connections_timed_out_total") >= 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_inside_a_request_a_new_one_is_refused_and_counted() {
    let agent = agent(4, "8s").await;
    // Four requests whose bodies never come: each is inside its handler, waiting for the body.
    let mut busy = Vec::new();
    for i in 0..4 {
        let mut c = TcpStream::connect(agent.addr()).await.unwrap();
        let head = format!(
            "POST /api/v1/jobs/J{i}/status HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"st"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        busy.push(c);
    }
    // Time for the agent to read four sets of headers (also under emulation; the bodies time
    // out four times as long after).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut fifth = TcpStream::connect(agent.addr()).await.unwrap();
    let _ = fifth.write_all(b"GET /api/v1/status HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(until_closed(&mut fifth).await, "", "refused: closed without an answer");
    // The bodies that never came are given up on with the documented JSON.
    for c in &mut busy {
        let answer = until_closed(c).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""field":"body""#), "{answer}");
    }
    let status = agent.get("/api/v1/status").await;
    assert!(status["api"]["refused"].as_u64().unwrap() >= 1, "{}", status["api"]);
    assert_eq!(status["outbox"]["events"], 0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_request_timeout() {
    let agent = agent(16, "2s").await;
    let mut c = TcpStream::connect(agent.addr()).await.unwrap();
    c.write_all(b"GET /api/v1/status HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "answered, then closed when idle: {answer}");
    assert_eq!(agent.get("/api/v1/status").await["api"]["timed_out"], 1);
    agent.stop().await;
}
