//! MQTT backlog benchmark, against a baseline measured in the same run on the same machine:
//! publishing 100,000 buffered positions to a loopback broker (mosquitto, a process of its own),
//! positions/s, against a bare rumqttc publish loop sending the same payloads to the same topic
//! with the same QoS (1) and in-flight limit (100). Both count a position once the broker
//! acknowledged it; both are timed from the start (the agent from its process start). Target
//! ≥ 0.5×. Also the agent's peak RSS while publishing and the store's size.
//!
//! Run: `cargo bench --bench mqtt` (add `-- --points N` to publish fewer). Needs mosquitto
//! (Debian: `apt-get install mosquitto`; `.ci/run` installs it).

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use curbside::outbox::EndpointFilter;
use curbside::telemetry::{EVENT_ENDPOINT, payload};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

mod common;
use common::{STALL, Stall, buffer, dir_size, free_port, peak_rss_kb, spawn_agent};

const TOPIC: &str = "curbside/van-17/position";

fn mosquitto(dir: &Path, port: u16) -> Child {
    common::mosquitto(dir, &format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"), port)
}

/// The baseline: a bare rumqttc loop publishing `bodies` at QoS 1, counting PUBACKs.
async fn bare(port: u16, bodies: Vec<Vec<u8>>) -> Duration {
    let n = bodies.len();
    let t = Instant::now();
    let mut o = MqttOptions::new("bench-bare", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(100);
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    let (client, mut eventloop) = AsyncClient::new(o, 256);
    let publisher = tokio::spawn(async move {
        for b in bodies {
            client.publish(TOPIC, QoS::AtLeastOnce, false, b).await.unwrap();
        }
        client
    });
    let mut acked = 0;
    while acked < n {
        let Ok(event) = tokio::time::timeout(STALL, eventloop.poll()).await else {
            panic!("bare rumqttc loop: nothing from the broker for {STALL:?} ({acked} of {n} acked)");
        };
        if let Event::Incoming(Incoming::PubAck(_)) = event.expect("broker connection") {
            acked += 1;
        }
    }
    let took = t.elapsed();
    drop(publisher.await);
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: i64 =
        args.iter().position(|a| a == "--points").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(100_000);
    let base = std::env::var_os("CURBSIDE_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    curbside::tls::install_crypto();
    let dir = tempfile::tempdir_in(base).unwrap();
    let state = dir.path().join("state");

    let filters = vec![EndpointFilter { name: EVENT_ENDPOINT.into(), events: None, files_only: false }];
    let points = buffer(&state, n, filters).await;
    let size_before = dir_size(&state);

    let broker_port = free_port();
    let mut broker = mosquitto(dir.path(), broker_port);

    // Baseline: the same payloads the agent will publish.
    let bodies: Vec<Vec<u8>> =
        points.iter().map(|p| serde_json::to_vec(&payload::position(p, p.tst)).unwrap()).collect();
    let bare_took = bare(broker_port, bodies).await;

    // The agent publishing its backlog (no GPS: nothing live competes).
    let api = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\nsource = \"serial\"\ndevice = \"/nonexistent/bench-tty\"\n\
             [api]\nlisten = \"{api}\"\n[positions]\nbacklog_max_points = {n}\n[mqtt]\nurl = \"mqtt://127.0.0.1:{broker_port}\"\n",
            state.display().to_string()
        ),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let t = Instant::now();
    let mut agent = spawn_agent(&config);
    let pid = agent.id();
    let mut peak = 0;
    let status = format!("http://{api}/api/v1/status");
    let mut stall = Stall::new("the agent to publish its backlog");
    loop {
        let left = match http.get(&status).send().await {
            Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|v| v["mqtt"]["backlog"]["points"].as_u64()),
            Err(_) => None,
        };
        peak = peak.max(peak_rss_kb(pid));
        if left == Some(0) {
            break;
        }
        if let Err(e) = stall.check(left) {
            let _ = agent.kill();
            let _ = broker.kill();
            panic!("{e}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t.elapsed();
    peak = peak.max(peak_rss_kb(pid));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    agent.wait().unwrap();
    broker.kill().unwrap();
    broker.wait().unwrap();
    let size_after = dir_size(&state);

    let (ours, theirs) = (n as f64 / took.as_secs_f64(), n as f64 / bare_took.as_secs_f64());
    println!("publishing a backlog of {n} positions to a loopback mosquitto, QoS 1, 100 in flight");
    println!("  bare rumqttc loop:  {:>9.0} positions/s ({:.2} s)", theirs, bare_took.as_secs_f64());
    println!("  curbside agent:     {:>9.0} positions/s ({:.2} s, from process start)", ours, took.as_secs_f64());
    println!("  ratio agent/bare = {:.2}x (target >= 0.5x)", ours / theirs);
    println!("  agent peak RSS while publishing: {:.1} MB", peak as f64 / 1024.0);
    println!("  store on disk: {:.1} MB before, {:.1} MB after", size_before as f64 / 1e6, size_after as f64 / 1e6);
}
