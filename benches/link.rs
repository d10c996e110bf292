//! What the van costs on the cellular link (issue 25): the real binary on the simulated route at
//! the default `[positions]` rules, in real time (the rules are timed as they run), each link
//! through a byte-counting TCP relay on loopback with real TLS behind it: every byte both ways,
//! handshakes, TLS records and keepalives included.
//!
//! - **idle** (no GPS; MQTT, a `standard` webhook and `[pod]` uploads, each over TLS): what an
//!   MQTT connection costs (TLS handshake, CONNECT, subscriptions, the retained `online`) and
//!   each keepalive; then five taps (bytes per event on MQTT and on the webhook, the webhook's
//!   TLS connection apart) and a tap with a photo (the upload's bytes over the file's); the
//!   agent's own meter (`status.links`) against each relay's count.
//! - **driving**, positions only, five times: MQTT today's mode, `mode = "compact"`, compact
//!   with `batch = "60s"`, then `[owntracks_http]` and `[traccar]` (HTTPS): bytes per position
//!   with and without the connection, and per 10-hour shift (one connection a shift). For MQTT,
//!   at the end the relay cuts the link (a dead zone): the new connection's first 3 s are the
//!   cost of coming back.
//!
//! MQTT payloads are read back by a subscriber on a plain listener of the same broker (not
//! through a relay), so the report shows how much of a position's cost is its JSON.
//!
//! Run: `cargo bench --bench link` (`-- --seconds N` to drive longer than 120 s). Needs
//! mosquitto (Debian: `apt-get install mosquitto`; `.ci/run` installs it).

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::free_port;

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

    fn bytes(&self) -> (u64, u64) {
        (self.up.load(Ordering::Relaxed), self.down.load(Ordering::Relaxed))
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

/// An HTTPS receiver for `localhost` (the bench CA's certificate): every request is answered
/// `200` with an empty body on a kept-alive connection; requests and body bytes are counted.
#[derive(Default)]
struct Https {
    requests: AtomicU64,
    body_bytes: AtomicU64,
}

fn https(dir: &Path) -> (u16, Arc<Https>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{BufRead, Read, Write};
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = Arc::new(rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Https::default());
    let g = got.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, g) = (config.clone(), g.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = std::io::BufReader::new(rustls::StreamOwned::new(conn, tcp));
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match tls.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    if tls.read_exact(&mut body).is_err() {
                        return;
                    }
                    g.requests.fetch_add(1, Ordering::Relaxed);
                    g.body_bytes.fetch_add(length as u64, Ordering::Relaxed);
                    let out = tls.get_mut();
                    if out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").and_then(|_| out.flush()).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, got)
}

struct Agent {
    child: Child,
    api: String,
}

impl Agent {
    /// The agent on `gps` with `links` (TOML tables), trusting the bench CA (for https).
    fn start(dir: &Path, name: &str, gps: &str, links: &str) -> Agent {
        let api = format!("127.0.0.1:{}", free_port());
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\n{gps}\n[api]\nlisten = \"{api}\"\n{links}\n",
                dir.join(name).display().to_string(),
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_curbside"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "error")
            .env("SSL_CERT_FILE", dir.join("ca.pem"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Agent { child, api }
    }

    async fn status(&self, http: &reqwest::Client) -> serde_json::Value {
        match http.get(format!("http://{}/api/v1/status", self.api)).send().await {
            Ok(r) => r.json::<serde_json::Value>().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    }

    /// Waits until `status[part]` says it is connected (or delivering).
    async fn wait_connected(&self, http: &reqwest::Client, part: &str) {
        for _ in 0..1200 {
            if self.status(http).await[part]["connected"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{part} never connected");
    }

    async fn tap(&self, http: &reqwest::Client, job: &str) {
        let r = http
            .post(format!("http://{}/api/v1/jobs/{job}/status", self.api))
            .json(&serde_json::json!({"status": "delivered", "received_by": "A. Meyer"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    fn stop(mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        self.child.wait().unwrap();
    }
}

/// Waits until `f` holds (at most a minute).
async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const KEEPALIVE_S: u64 = 30; // [mqtt] keepalive's default (without batch)
const NO_GPS: &str = "source = \"serial\"\ndevice = \"/nonexistent/bench-tty\"";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 =
        args.iter().position(|a| a == "--seconds").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(120);
    let base = std::env::var_os("CURBSIDE_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    curbside::tls::install_crypto();
    let dir = tempfile::tempdir_in(base).unwrap();
    pki(dir.path());
    let (tls, plain) = (free_port(), free_port());
    let mut broker = mosquitto(dir.path(), tls, plain);
    let payloads = subscribe(plain).await;
    let (receiver, got) = https(dir.path());
    let http = reqwest::Client::new();
    let ca = dir.path().join("ca.pem").display().to_string();
    let mqtt =
        |port: u16, extra: &str| format!("[mqtt]\nurl = \"mqtts://localhost:{port}\"\nca_file = {ca:?}\n{extra}\n");

    println!("the van on the link: default [positions], simulated route, real time, every link over TLS");
    let idle = idle(&Lab { dir: dir.path(), tls, receiver, payloads: &payloads, got: &got, http: &http }, &mqtt).await;

    let lab = Lab { dir: dir.path(), tls, receiver, payloads: &payloads, got: &got, http: &http };
    let mut drives = Vec::new();
    for (name, what, extra) in [
        ("full", "MQTT, today's positions", ""),
        ("compact", "MQTT, mode = \"compact\"", "mode = \"compact\""),
        ("batched", "MQTT, compact, batch = \"60s\"", "mode = \"compact\"\nbatch = \"60s\""),
    ] {
        let port = free_port();
        let relay = Relay::start(port, tls).await;
        let d = drive(&lab, name, &mqtt(port, extra), &relay, seconds, true).await;
        drives.push((what, d, Some(idle.connect)));
    }
    for (name, what) in [("owntracks_http", "OwnTracks HTTP (HTTPS)"), ("traccar", "Traccar OsmAnd (HTTPS)")] {
        let port = free_port();
        let relay = Relay::start(port, receiver).await;
        let links = match name {
            "traccar" => format!("[traccar]\nurl = \"https://localhost:{port}\"\n"),
            _ => format!("[owntracks_http]\nurl = \"https://localhost:{port}/pub\"\n"),
        };
        let d = drive(&lab, name, &links, &relay, seconds, false).await;
        drives.push((what, d, None));
    }
    broker.kill().unwrap();
    broker.wait().unwrap();

    for (what, d, connect) in &drives {
        let total = (d.up + d.down) as f64;
        let n = d.positions.max(1) as f64;
        let steady = total - connect.unwrap_or(0) as f64;
        let shift = steady / d.seconds * 36_000.0 + connect.unwrap_or(0) as f64;
        let per_shift_position = shift / (n / d.seconds * 36_000.0);
        println!("  {what}:");
        println!("    driving {:.0} s: {} positions; {} bytes up, {} down", d.seconds, d.positions, d.up, d.down);
        println!("    bytes per position, this drive's connection included: {:.0}", total / n);
        if connect.is_some() {
            println!(
                "    bytes per position without the connection (TLS records, keepalives, acks): {:.0}",
                steady / n
            );
            println!("    a position's payload: {:.0} bytes", d.position_json);
            println!("    keepalive share: {:.1}%", 100.0 * idle.keepalive * (d.seconds / d.keepalive_s) / total);
            println!("    a reconnect after a dead zone (the new connection's first 3 s): {} bytes", d.reconnect);
        }
        println!(
            "    per 10-hour shift at this rate, one connection: {:.3} MB ({per_shift_position:.0} bytes a position)",
            shift / 1e6
        );
    }
    let per = |d: &Drive| (d.up + d.down) as f64 / d.positions.max(1) as f64;
    let base = &drives[0].1;
    for (what, d, _) in &drives[1..] {
        println!("  {what} / today's MQTT, bytes per position: {:.2}", per(d) / per(base));
    }
}

/// Where the runs happen: the directory (certificates, configs, stores), the broker's TLS port,
/// the HTTPS receiver's port, the subscriber's and the receiver's counts, the API client.
#[derive(Clone, Copy)]
struct Lab<'a> {
    dir: &'a Path,
    tls: u16,
    receiver: u16,
    payloads: &'a Payloads,
    got: &'a Https,
    http: &'a reqwest::Client,
}

/// What the idle run measured.
struct Idle {
    connect: u64,
    keepalive: f64,
}

/// The idle agent: the MQTT connection and keepalive, then events on MQTT and the webhook, and
/// a photo's upload; its own meter against the relays.
async fn idle(lab: &Lab<'_>, mqtt: &dyn Fn(u16, &str) -> String) -> Idle {
    let Lab { dir, tls, receiver, payloads, got, http } = *lab;
    let (mq, hook, files) = (free_port(), free_port(), free_port());
    let (mq_relay, hook_relay, files_relay) =
        (Relay::start(mq, tls).await, Relay::start(hook, receiver).await, Relay::start(files, receiver).await);
    let links = format!(
        "{}[[webhook]]\nname = \"office\"\nurl = \"https://localhost:{hook}/hook\"\n\
         [pod]\nupload_url = \"https://localhost:{files}/pod/{{event_id}}-{{kind}}-{{index}}.{{ext}}\"\n",
        mqtt(mq, "")
    );
    let agent = Agent::start(dir, "idle", NO_GPS, &links);
    agent.wait_connected(http, "mqtt").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let connect = mq_relay.total();
    tokio::time::sleep(Duration::from_secs(2 * KEEPALIVE_S + 2)).await;
    let keepalive = (mq_relay.total() - connect) as f64 / 2.0;
    println!("  MQTT (mosquitto): a connection (TLS handshake, CONNECT, subscriptions, online): {connect} bytes");
    println!("  MQTT: a keepalive ({KEEPALIVE_S} s): {keepalive:.0} bytes");

    // Five events: the first opens the webhook's TLS connection; four more reuse it.
    let (m0, e0, eb0) =
        (mq_relay.total(), payloads.events.load(Ordering::Relaxed), payloads.event_bytes.load(Ordering::Relaxed));
    let r0 = got.requests.load(Ordering::Relaxed);
    agent.tap(http, "J-0").await;
    until("the first webhook", async || got.requests.load(Ordering::Relaxed) > r0).await;
    let first = hook_relay.total();
    for i in 1..5 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        agent.tap(http, &format!("J-{i}")).await;
    }
    until("five webhooks", async || got.requests.load(Ordering::Relaxed) >= r0 + 5).await;
    until("five MQTT events", async || payloads.events.load(Ordering::Relaxed) >= e0 + 5).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let event_json = (payloads.event_bytes.load(Ordering::Relaxed) - eb0) as f64 / 5.0;
    println!(
        "  an event: {:.0} bytes on MQTT (its JSON {event_json:.0}); on the webhook, {:.0} bytes a request once \
         connected (the first, with its TLS connection: {first})",
        (mq_relay.total() - m0) as f64 / 5.0,
        (hook_relay.total() - first) as f64 / 4.0
    );

    // A photo: the upload's bytes over the file's.
    let photo = photo(100_000);
    let parts = [
        curbside::api::multipart::Part {
            name: "event",
            filename: None,
            content_type: Some("application/json"),
            bytes: br#"{"status":"delivered","received_by":"A. Meyer"}"#,
        },
        curbside::api::multipart::Part {
            name: "photo",
            filename: Some("photo.jpg"),
            content_type: Some("image/jpeg"),
            bytes: &photo,
        },
    ];
    let (content_type, body) = curbside::api::multipart::encode(&parts);
    let r = http
        .post(format!("http://{}/api/v1/jobs/J-photo/status", agent.api))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    until("the upload and its webhook", async || got.requests.load(Ordering::Relaxed) >= r0 + 7).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let upload = files_relay.total();
    println!(
        "  a photo of {} bytes: {upload} bytes on the upload link ({:.3}x, its TLS connection included)",
        photo.len(),
        upload as f64 / photo.len() as f64
    );

    // The agent's own meter against each relay.
    let links = agent.status(http).await["links"].clone();
    for (what, port, relay) in
        [("MQTT", mq, &mq_relay), ("webhook", hook, &hook_relay), ("uploads", files, &files_relay)]
    {
        let to = format!("localhost:{port}");
        let u = links["to"].as_array().unwrap().iter().find(|u| u["to"] == to).cloned().unwrap_or_default();
        let (up, down) = relay.bytes();
        println!(
            "  the agent's meter for {what} ({to}): {} sent, {} received; the relay saw {up} and {down}",
            u["sent_bytes"], u["received_bytes"]
        );
    }
    agent.stop();
    for r in [&mq_relay, &hook_relay, &files_relay] {
        r.cut.notify_waiters();
    }
    Idle { connect, keepalive }
}

/// A JPEG of about `bytes` of noise (hardly compressible, as a photo is).
fn photo(bytes: usize) -> Vec<u8> {
    let width: u16 = 512;
    let height = ((bytes as f64 / (width as f64 * 1.9)).ceil() as u16).max(8);
    let mut state = 0x2545f4914f6cdd1du64;
    let pixels: Vec<u8> = (0..width as usize * height as usize * 3)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90).encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).unwrap();
    out
}

/// What one drive cost.
struct Drive {
    seconds: f64,
    keepalive_s: f64,
    positions: u64,
    up: u64,
    down: u64,
    position_json: f64,
    reconnect: u64,
}

/// A fresh agent with `links` driving the simulated route for `seconds`, positions only,
/// through `relay`; with `cut`, then the link cut (MQTT) and the agent back.
async fn drive(lab: &Lab<'_>, name: &str, links: &str, relay: &Relay, seconds: u64, cut: bool) -> Drive {
    let Lab { dir, payloads, http, .. } = *lab;
    let part = if cut { "mqtt" } else { name };
    let agent = Agent::start(dir, name, "source = \"sim\"", links);
    agent.wait_connected(http, part).await;
    let (p0, pb0) = (payloads.positions.load(Ordering::Relaxed), payloads.position_bytes.load(Ordering::Relaxed));
    let start = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let driven = start.elapsed().as_secs_f64();
    // Every position made is counted with what it cost: a batch still waiting goes first.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let s = loop {
        let s = agent.status(http).await[part].clone();
        let (made, published) = (s["positions_made"].as_u64(), s["positions_published"].as_u64());
        if published >= made || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (up, down) = relay.bytes();
    let published = s["positions_published"].as_u64().unwrap_or(0);
    let position_json = payloads.position_bytes.load(Ordering::Relaxed) - pb0;
    let positions_seen = payloads.positions.load(Ordering::Relaxed) - p0;
    let keepalive_s = if links.contains("batch") { 120.0 } else { KEEPALIVE_S as f64 };

    let mut reconnect = 0;
    if cut {
        // A dead zone: the link cut, the agent back.
        let before = relay.total();
        relay.cut.notify_waiters();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while relay.connections.load(Ordering::Relaxed) < 2 {
            assert!(std::time::Instant::now() < deadline, "the agent did not reconnect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        agent.wait_connected(http, part).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        reconnect = relay.total() - before;
    }
    agent.stop();
    relay.cut.notify_waiters();
    Drive {
        seconds: driven,
        keepalive_s,
        positions: published,
        up,
        down,
        position_json: position_json as f64 / positions_seen.max(1) as f64,
        reconnect,
    }
}
