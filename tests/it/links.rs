//! The links' meter (issue 25): every byte a link carries is counted, the same count as a relay
//! in front of the far end sees (both count what crosses TCP: TLS, keepalives, handshakes);
//! today's totals carry across a restart; a far end that cannot be reached is reported with
//! the reason, whether the proxy dialled it (https) or the agent's own client (plain http,
//! `link::direct`); and a spent daily budget thins
//! positions but never events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::common::agent::{free_addr, start_with_gps};
use crate::common::broker::{Subscriber, rumqttd};
use crate::common::receiver::Receiver;
use crate::common::transport;
use crate::mqtt::{NO_GPS, WAIT, fix, mqtt_with};

/// A relay in front of `target` that counts the bytes each way as they cross.
struct Counting {
    addr: SocketAddr,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl Counting {
    async fn to(target: SocketAddr) -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let relay = Counting { addr: listener.local_addr().unwrap(), up: up.clone(), down: down.clone() };
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(target).await else { continue };
                let (in_r, in_w) = inbound.into_split();
                let (out_r, out_w) = outbound.into_split();
                tokio::spawn(pipe(in_r, out_w, up.clone()));
                tokio::spawn(pipe(out_r, in_w, down.clone()));
            }
        });
        relay
    }

    fn bytes(&self) -> (u64, u64) {
        (self.up.load(Ordering::SeqCst), self.down.load(Ordering::SeqCst))
    }
}

async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, n: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(k @ 1..) = from.read(&mut buf).await {
        if to.write_all(&buf[..k]).await.is_err() {
            return;
        }
        n.fetch_add(k as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown().await;
}

/// The usage of destination `to` in status.
fn usage(links: &Value, to: SocketAddr) -> Value {
    let list = links["to"].as_array().unwrap_or_else(|| panic!("links.to: {links}"));
    list.iter().find(|u| u["to"] == to.to_string()).cloned().unwrap_or_else(|| panic!("no {to} in {links:#}"))
}

/// Waits until the agent's count of `to` equals the relay's (the link is quiet then).
async fn counted_alike(agent: &crate::common::agent::TestAgent, relay: &Counting, what: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let links = transport::status(agent, "links").await;
        let u = usage(&links, relay.addr);
        let agent_counts = (u["sent_bytes"].as_u64().unwrap(), u["received_bytes"].as_u64().unwrap());
        if agent_counts == relay.bytes() && agent_counts.0 > 0 {
            return links;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the agent counted {agent_counts:?}, the relay saw {:?}: {u:#}",
            relay.bytes()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_of_a_link_is_counted_as_the_far_end_sees_it_and_today_survives_a_restart() {
    let office = Receiver::start(None, vec![]).await;
    let office_addr = reqwest::Url::parse(&office.url()).unwrap().socket_addrs(|| None).unwrap()[0];
    let office_relay = Counting::to(office_addr).await;
    let broker = rumqttd().await;
    let broker_relay = Counting::to(broker).await;
    let hook = format!("[[webhook]]\nname = \"office\"\nurl = \"http://{}/hook\"\n", office_relay.addr);
    let config = format!("{}\n{hook}", mqtt_with(broker_relay.addr, "", ""));
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &config).await;

    for (i, job) in ["J-1", "J-2", "J-3"].into_iter().enumerate() {
        agent.running.latest.publish(fix(i as i64));
        assert_eq!(agent.tap(job, json!({"status": "delivered"})).await.0, 201);
    }
    office.wait_for(3, WAIT).await;
    let links = counted_alike(&agent, &office_relay, "the webhook").await;
    let hook_use = usage(&links, office_relay.addr);
    assert_eq!(hook_use["used_by"], json!(["webhook office"]));
    assert!(hook_use["connections"].as_u64().unwrap() >= 1);
    assert_eq!(hook_use["today_sent_bytes"], hook_use["sent_bytes"], "a fresh store: today is this run");
    let links = counted_alike(&agent, &broker_relay, "mqtt").await;
    assert_eq!(usage(&links, broker_relay.addr)["used_by"], json!(["mqtt"]));
    let total: u64 = links["to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["today_sent_bytes"].as_u64().unwrap() + u["today_received_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(links["today_bytes"].as_u64(), Some(total));
    assert_eq!((links["over_budget"].as_bool(), links["daily_budget_bytes"].is_null()), (Some(false), true));
    // Metrics carry the same counts.
    let metrics = agent.http.get(agent.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = format!("curbside_link_sent_bytes_total{{to=\"{}\"}} {}", office_relay.addr, hook_use["sent_bytes"]);
    assert!(metrics.contains(&line), "{line} in\n{metrics}");

    // Stopped and started on the same store: today's totals go on from where they were.
    let before = usage(&transport::status(&agent, "links").await, office_relay.addr);
    let day_before = transport::status(&agent, "links").await["day"].clone();
    let dir = agent.stop().await;
    let agent = start_with_gps(dir, NO_GPS, &config).await;
    let links = transport::status(&agent, "links").await;
    let after = usage(&links, office_relay.addr);
    assert_eq!(after["sent_bytes"], 0, "nothing sent since this start");
    if links["day"] == day_before {
        assert_eq!(after["today_sent_bytes"], before["today_sent_bytes"], "{before:#} then {after:#}");
        assert_eq!(after["today_received_bytes"], before["today_received_bytes"]);
    } else {
        assert_eq!(after["today_sent_bytes"], 0, "a new day since: counted from 0");
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_end_that_cannot_be_reached_is_reported_with_why_by_either_path() {
    let (plain, tls) = (free_addr(), free_addr());
    let hooks = format!(
        "[[webhook]]\nname = \"plain\"\nurl = \"http://{plain}/hook\"\n[[webhook]]\nname = \"tls\"\nurl = \"https://{tls}/hook\"\n"
    );
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &hooks).await;
    assert_eq!(agent.tap("J-1", json!({"status": "delivered"})).await.0, 201);
    for (i, to) in [(0, plain), (1, tls)] {
        let s = transport::wait(&agent, "webhooks", "both endpoints unreachable", |w| {
            w[i]["state"]["last_error"].as_str().is_some_and(|e| e.contains("cannot connect"))
        })
        .await;
        let error = s[i]["state"]["last_error"].as_str().unwrap();
        assert!(error.starts_with(&format!("unreachable: cannot connect to {to}: ")), "{error}");
        assert!(error.to_lowercase().contains("refused"), "the reason is the dial's: {error}");
        assert_eq!(s[i]["state"]["reachable"], false, "held, not failed: {s:#}");
    }
    let links = transport::status(&agent, "links").await;
    assert!(usage(&links, plain)["last_error"].as_str().unwrap().to_lowercase().contains("refused"), "{links:#}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_budget_thins_positions_and_never_events() {
    let broker = rumqttd().await;
    let sub = Subscriber::connect(broker, "curbside/#").await;
    // Every fix is a point (DENSE) until the budget is spent: a megabyte's millionth, one byte.
    let positions = "daily_budget_mb = 0.000001\nover_budget_interval = \"1h\"\n";
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &mqtt_with(broker, positions, "")).await;
    let links = transport::wait(&agent, "links", "the connection spent the budget", |l| l["over_budget"] == true).await;
    assert_eq!(links["daily_budget_bytes"], 1);
    for i in 0..20 {
        agent.running.latest.publish(fix(i));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(agent.tap("J-1", json!({"status": "delivered"})).await.0, 201);
    sub.wait_until(WAIT, "the event", |m| m.iter().any(|m| m.topic.ends_with("/event"))).await;
    let made = transport::status(&agent, "mqtt").await["positions_made"].as_u64().unwrap();
    assert_eq!(made, 1, "the first fix, then at most one an hour: 20 fixes of a moving van");
    let s = agent.get("/api/v1/status").await;
    let text = curbside::status::Status::text(&serde_json::from_value(s).unwrap());
    assert!(text.contains("over the daily budget"), "{text}");
    agent.stop().await;
}
