//! What the van costs on the cellular link (issue 25): the real binary on the simulated route at
//! the default `[positions]` rules, in real time (the rules are timed as they run), MQTT over TLS
//! to mosquitto through a byte-counting TCP relay on loopback: every byte both ways, TLS and
//! keepalive included.
//!
//! Three runs, each a fresh agent and store:
//! - **idle**: no GPS, for two keepalive periods and a bit: what a connection costs (TLS
//!   handshake, CONNECT, subscriptions, the retained `online`), and what each keepalive costs;
//! - **driving**, three times (today's positions, `mode = "compact"`, and compact with
//!   `batch = "60s"`): the simulated route for `--seconds` (default 300), a tap every minute: bytes per
//!   position (everything on the link over the positions published), per event, and per 10-hour
//!   shift at this rate;
//! - **reconnect**: at the end of the drive the relay cuts the link (a dead zone); the bytes of
//!   the new connection's first 3 s are the cost of coming back.
//!
//! The payloads themselves are read back by a subscriber on a plain listener of the same broker
//! (not through the relay), so the report shows how much of a position's cost is its JSON.
//!
//! Run: `cargo bench --bench link` (`-- --seconds N` to drive longer). Needs mosquitto (Debian:
//! `apt-get install mosquitto`; `.ci/run` installs it).

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{free_port, spawn_agent};

/// Bytes through the relay, and its live connections (to cut them).
#[derive(Default)]
struct Relay {
    up: AtomicU64,
    down: AtomicU64,
    connections: AtomicU64,
    cut: tokio::sync::Notify,
}

impl Relay {
    fn total(&self) -> u64 {
        self.up.load(Ordering::Relaxed) + self.down.load(Ordering::Relaxed)
    }

    /// Listens on `port`, relaying each connection to `broker`, counting, until cut.
    async fn start(port: u16, broker: u16) -> Arc<Relay> {
        let relay = Arc::new(Relay::default());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let r = relay.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", broker)).await else { continue };
                r.connections.fetch_add(1, Ordering::Relaxed);
                let r = r.clone();
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::select! {
                        _ = pump(&mut cr, &mut sw, &r.up) => {}
                        _ = pump(&mut sr, &mut cw, &r.down) => {}
                        _ = r.cut.notified() => {}
                    }
                });
            }
        });
        relay
    }
}

/// Copies `from` to `to`, counting, until either side ends.
async fn pump(from: &mut tokio::net::tcp::OwnedReadHalf, to: &mut tokio::net::tcp::OwnedWriteHalf, count: &AtomicU64) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        count.fetch_add(n as u64, Ordering::Relaxed);
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// mosquitto with a TLS listener (for the agent, through the relay) and a plain one (for the
/// bench's subscriber).
fn mosquitto(dir: &Path, tls: u16, plain: u16) -> Child {
    let p = |f: &str| dir.join(f).display().to_string();
    let conf = format!(
        "per_listener_settings false\nallow_anonymous true\nlistener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
         listener {plain} 127.0.0.1\n",
        p("ca.pem"),
        p("server.pem"),
        p("server.key")
    );
    common::mosquitto(dir, &conf, plain)
}

/// A CA and a server certificate for `localhost`, as PEM files.
fn pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "curbside bench CA");
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    std::fs::write(dir.join("server.pem"), params.signed_by(&key, &issuer).unwrap().pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

/// The payload sizes of what arrives on `curbside/van-17/position` and `…/event`.
#[derive(Default)]
struct Payloads {
    positions: AtomicU64,
    position_bytes: AtomicU64,
    events: AtomicU64,
    event_bytes: AtomicU64,
}

async fn subscribe(port: u16) -> Arc<Payloads> {
    let got = Arc::new(Payloads::default());
    let mut o = MqttOptions::new("bench-sub", "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 64);
    client.subscribe("curbside/van-17/#", QoS::AtMostOnce).await.unwrap();
    let g = got.clone();
    tokio::spawn(async move {
        let _client = client;
        while let Ok(e) = eventloop.poll().await {
            if let Event::Incoming(Incoming::Publish(p)) = e {
                let n = p.payload.len() as u64;
                if p.topic.ends_with("/position") {
                    // A batch (an array of arrays) counts its points.
                    let points = match serde_json::from_slice::<serde_json::Value>(&p.payload) {
                        Ok(serde_json::Value::Array(a)) if a.first().is_some_and(|f| f.is_array()) => a.len() as u64,
                        _ => 1,
                    };
                    g.positions.fetch_add(points, Ordering::Relaxed);
                    g.position_bytes.fetch_add(n, Ordering::Relaxed);
                } else if p.topic.ends_with("/event") {
                    g.events.fetch_add(1, Ordering::Relaxed);
                    g.event_bytes.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    });
    got
}

struct Agent {
    child: Child,
    api: String,
}

impl Agent {
    fn start(dir: &Path, name: &str, gps: &str, relay: u16, mqtt_extra: &str) -> Agent {
        let api = format!("127.0.0.1:{}", free_port());
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\n{gps}\n[api]\nlisten = \"{api}\"\n\
                 [mqtt]\nurl = \"mqtts://localhost:{relay}\"\nca_file = {:?}\n{mqtt_extra}\n",
                dir.join(name).display().to_string(),
                dir.join("ca.pem").display().to_string()
            ),
        )
        .unwrap();
        Agent { child: spawn_agent(&config), api }
    }

    async fn mqtt(&self, http: &reqwest::Client) -> serde_json::Value {
        match http.get(format!("http://{}/api/v1/status", self.api)).send().await {
            Ok(r) => r.json::<serde_json::Value>().await.map(|v| v["mqtt"].clone()).unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    }

    async fn wait_connected(&self, http: &reqwest::Client) {
        for _ in 0..400 {
            if self.mqtt(http).await["connected"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the agent never connected to the broker");
    }

    fn stop(mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        self.child.wait().unwrap();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 =
        args.iter().position(|a| a == "--seconds").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(300);
    let base = std::env::var_os("CURBSIDE_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    curbside::tls::install_crypto();
    let dir = tempfile::tempdir_in(base).unwrap();
    pki(dir.path());
    let (tls, plain) = (free_port(), free_port());
    let mut broker = mosquitto(dir.path(), tls, plain);
    let payloads = subscribe(plain).await;
    let http = reqwest::Client::new();
    const KEEPALIVE_S: u64 = 30; // [mqtt] keepalive's default

    // Idle: what a connection and its keepalive cost.
    let port = free_port();
    let relay = Relay::start(port, tls).await;
    let idle = Agent::start(dir.path(), "idle", "source = \"serial\"\ndevice = \"/nonexistent/bench-tty\"", port, "");
    idle.wait_connected(&http).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let connect = relay.total();
    tokio::time::sleep(Duration::from_secs(2 * KEEPALIVE_S + 2)).await;
    let keepalive = (relay.total() - connect) as f64 / 2.0;
    idle.stop();
    relay.cut.notify_waiters();

    // Driving, a tap a minute: today's positions, then the compact ones (`mode = "compact"`).
    let lab = Lab { dir: dir.path(), tls, payloads: &payloads, http: &http };
    let full = drive(&lab, "full", "", seconds).await;
    let compact = drive(&lab, "compact", "mode = \"compact\"", seconds).await;
    let batched = drive(&lab, "batched", "mode = \"compact\"\nbatch = \"60s\"", seconds).await;
    broker.kill().unwrap();
    broker.wait().unwrap();

    println!("the van on the link: MQTT over TLS to mosquitto, default [positions], simulated route, real time");
    println!("  a connection (TLS handshake, CONNECT, subscriptions, online): {connect} bytes");
    println!("  a keepalive ({KEEPALIVE_S} s): {keepalive:.0} bytes");
    for (name, d) in [
        ("curbside (today's default)", &full),
        ("compact (mode = \"compact\")", &compact),
        ("compact, batch = \"60s\"", &batched),
    ] {
        let total = (d.up + d.down) as f64;
        let per = total / d.positions.max(1) as f64;
        println!("  {name}:");
        println!(
            "    driving {:.0} s: {} positions, {} events; {} bytes up, {} down",
            d.seconds, d.positions, d.events, d.up, d.down
        );
        println!("    bytes per position on the wire (both ways, TLS, keepalive, events, the connection): {per:.0}");
        println!(
            "    the same without the connection's {connect} bytes: {:.0}",
            (total - connect as f64) / d.positions.max(1) as f64
        );
        println!("    a position's JSON: {:.0} bytes; an event's JSON: {:.0} bytes", d.position_json, d.event_json);
        println!(
            "    keepalive share: {:.1}% of the drive's bytes",
            100.0 * keepalive * (d.seconds / KEEPALIVE_S as f64) / total
        );
        println!("    per 10-hour shift at this rate: {:.2} MB", total / d.seconds * 36_000.0 / 1e6);
        println!("    a reconnect after a dead zone (the new connection's first 3 s): {} bytes", d.reconnect);
    }
    let per = |d: &Drive| (d.up + d.down) as f64 / d.positions.max(1) as f64;
    println!("  compact / curbside, bytes per position: {:.2}", per(&compact) / per(&full));
    println!("  batched / curbside, bytes per position: {:.2}", per(&batched) / per(&full));
}

/// Where the drives run: the directory (certificates, configs, stores), the broker's TLS port,
/// the subscriber's counts and the HTTP client for the agent's API.
#[derive(Clone, Copy)]
struct Lab<'a> {
    dir: &'a Path,
    tls: u16,
    payloads: &'a Payloads,
    http: &'a reqwest::Client,
}

/// What one drive cost.
struct Drive {
    seconds: f64,
    positions: u64,
    events: u64,
    up: u64,
    down: u64,
    position_json: f64,
    event_json: f64,
    reconnect: u64,
}

/// A fresh agent (`mqtt_extra` in its `[mqtt]`) driving the simulated route for `seconds`, a tap
/// a minute, through a relay of its own; then the link cut and the agent back.
async fn drive(lab: &Lab<'_>, name: &str, mqtt_extra: &str, seconds: u64) -> Drive {
    let Lab { dir, tls, payloads, http } = *lab;
    let port = free_port();
    let relay = Relay::start(port, tls).await;
    let drive = Agent::start(dir, name, "source = \"sim\"", port, mqtt_extra);
    drive.wait_connected(http).await;
    let (p0, pb0, e0, eb0) = (
        payloads.positions.load(Ordering::Relaxed),
        payloads.position_bytes.load(Ordering::Relaxed),
        payloads.events.load(Ordering::Relaxed),
        payloads.event_bytes.load(Ordering::Relaxed),
    );
    let start = std::time::Instant::now();
    let mut taps = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        let job = format!("J-{taps}");
        let r = http
            .post(format!("http://{}/api/v1/jobs/{job}/status", drive.api))
            .json(&serde_json::json!({"status": "delivered", "received_by": "A. Meyer"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        taps += 1;
        let next = Duration::from_secs(60 * taps).min(Duration::from_secs(seconds));
        tokio::time::sleep(next.saturating_sub(start.elapsed())).await;
    }
    let driven = start.elapsed().as_secs_f64();
    // Every position made is counted with what it cost: a batch still waiting goes first.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let s = loop {
        let s = drive.mqtt(http).await;
        let (made, published) = (s["positions_made"].as_u64(), s["positions_published"].as_u64());
        if published >= made || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (up, down) = (relay.up.load(Ordering::Relaxed), relay.down.load(Ordering::Relaxed));
    let published = s["positions_published"].as_u64().unwrap_or(0);
    let events = s["events_published"].as_u64().unwrap_or(0);
    let position_json = payloads.position_bytes.load(Ordering::Relaxed) - pb0;
    let positions_seen = payloads.positions.load(Ordering::Relaxed) - p0;
    let event_json = payloads.event_bytes.load(Ordering::Relaxed) - eb0;
    let events_seen = payloads.events.load(Ordering::Relaxed) - e0;

    // A dead zone: the link cut, the agent back.
    let before = relay.total();
    relay.cut.notify_waiters();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while relay.connections.load(Ordering::Relaxed) < 2 {
        assert!(std::time::Instant::now() < deadline, "the agent did not reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drive.wait_connected(http).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reconnect = relay.total() - before;
    drive.stop();
    Drive {
        seconds: driven,
        positions: published,
        events,
        up,
        down,
        position_json: position_json as f64 / positions_seen.max(1) as f64,
        event_json: event_json as f64 / events_seen.max(1) as f64,
        reconnect,
    }
}
