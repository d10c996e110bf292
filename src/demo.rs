//! `curbside demo`: the whole product on a laptop, with nothing else running and no config.
//!
//! One process holds: the agent itself (the simulated route, state in a fresh temporary
//! directory removed on exit), an MQTT broker (rumqttd, in process, on a free loopback port) the
//! agent publishes its telemetry to, and a webhook receiver (on another free loopback port) that
//! checks each delivery's Standard Webhooks signature and prints it. The day's stops are the
//! simulated route's six drops, loaded through the agent's own API once it answers, so the
//! geofence records the arrivals and departures as the van goes round; taps from the driver
//! page, the API or the CLI (`curbside tap`, which finds the demo on its default port) show up at
//! the receiver too.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use crate::webhook::sign::{Secret, constant_time_eq};

/// The demo's signing secret (a demo: printed in the docs, never a real one).
const SECRET: &str = "whsec_Y3VyYnNpZGUtZGVtby1zZWNyZXQta2V5";

/// The demo stops: the simulated route's drops (`gps::source::sim::Route::demo`), named.
const STOPS: [(&str, &str, &str); 6] = [
    ("HH-1001", "Elbe Coffee Roasters", "Reimerstwiete 12, 20457 Hamburg"),
    ("HH-1002", "Dr. Petersen", "Steinstraße 7, 20095 Hamburg"),
    ("HH-1003", "Kunsthalle shop", "Glockengießerwall 5, 20095 Hamburg"),
    ("HH-1004", "M. Yilmaz", "Colonnaden 41, 20354 Hamburg"),
    ("HH-1005", "Bäckerei Kruse", "Neustädter Str. 2, 20355 Hamburg"),
    ("HH-1006", "Atelier Nord", "Herrengraben 30, 20459 Hamburg"),
];

/// `curbside demo` options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the agent's API and driver page listen (a free port if this one is taken).
    pub listen: SocketAddr,
    /// Simulation speed (1.0: real time).
    pub speed: f64,
}

/// Runs the demo until Ctrl-C (or SIGTERM).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let state = std::env::temp_dir().join(format!("curbside-demo-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(state.clone());
    let broker = start_broker().context("cannot start the in-process MQTT broker")?;
    let receiver = start_receiver().await.context("cannot start the in-process webhook receiver")?;
    let listen = match TcpListener::bind(opts.listen) {
        Ok(l) => l.local_addr()?,
        Err(_) => {
            let free = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            tracing::warn!(wanted = %opts.listen, using = %free, "demo: the port is taken; using another");
            free
        }
    };
    let config = crate::config::Config::parse(&config_text(&state, listen, broker, receiver, opts.speed), "<demo>")?;
    let base = format!("http://{listen}");
    println!("curbside demo: the van is driving six drops around central Hamburg ({}× real time)", opts.speed);
    println!("  driver page      {base}/");
    if listen.port() == 8080 && listen.ip().is_loopback() {
        println!("  CLI              curbside status; curbside tap delivered --job HH-1001 --received-by Ana");
    }
    println!("  status           {base}/api/v1/status   metrics {base}/metrics");
    println!("  MQTT broker      mqtt://{broker}  (mosquitto_sub -p {} -t 'curbside/#' -v)", broker.port());
    println!("  webhook receiver http://{receiver}/hook  (signed with {SECRET})");
    println!("  state            {} (removed on exit); Ctrl-C stops", state.display());
    let agent = tokio::spawn(crate::app::run(config, None));
    load_stops(&base).await?;
    agent.await.context("the agent task failed")?
}

fn config_text(
    state: &std::path::Path,
    listen: SocketAddr,
    broker: SocketAddr,
    receiver: SocketAddr,
    speed: f64,
) -> String {
    format!(
        r#"vehicle_id = "demo-van"
driver_id = "demo-driver"
state_dir = {state:?}

[gps]
source = "sim"
speed = {speed:?}

[api]
listen = "{listen}"

[stops]
radius_m = 75.0

[[webhook]]
name = "office"
url = "http://{receiver}/hook"
secret = "{SECRET}"

[mqtt]
url = "mqtt://{broker}"
"#,
        state = state.display().to_string(),
    )
}

/// Loads the demo stops through the agent's API once it answers.
async fn load_stops(base: &str) -> anyhow::Result<()> {
    // Plain HTTP on loopback: no trust store needed.
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(crate::tls::trusting_nobody())
        .timeout(Duration::from_secs(5))
        .build()?;
    let stops: Vec<Value> = crate::gps::source::sim::Route::demo()
        .stops()
        .iter()
        .zip(STOPS)
        .enumerate()
        .map(|(i, ((lat, lng), (job, name, address)))| {
            json!({"job_id": job, "sequence": i + 1, "name": name, "address": address, "lat": lat, "lng": lng,
                   "items": [{"sku": format!("PKG-{}", 100 + i), "desc": "parcel", "qty": 1 + i % 2}],
                   "requires": {"signature": i % 3 == 1}})
        })
        .collect();
    for _ in 0..300 {
        match client.put(format!("{base}/api/v1/stops")).json(&json!({"stops": stops})).send().await {
            Ok(r) if r.status().is_success() => {
                println!(
                    "  stops            {} loaded; the geofence records arrivals as the van gets there",
                    stops.len()
                );
                return Ok(());
            }
            Ok(r) => anyhow::bail!("the agent refused the demo stops: {}", r.status()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    anyhow::bail!("the agent's API did not answer within 30 s")
}

/// rumqttd on a free loopback port, on a thread of its own (it has no shutdown; it ends with the
/// process).
fn start_broker() -> anyhow::Result<SocketAddr> {
    let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let text = format!(
        r#"id = 0
[router]
max_connections = 20
max_outgoing_packet_count = 200
max_segment_size = 10485760
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "{addr}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1100000
max_inflight_count = 200
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&text)?;
    std::thread::Builder::new().name("demo-broker".into()).spawn(move || {
        let mut broker = rumqttd::Broker::new(config);
        if let Err(e) = broker.start() {
            tracing::error!(error = %e, "demo: the MQTT broker stopped");
        }
    })?;
    Ok(addr)
}

/// The webhook receiver: verifies each request's signature and prints one line per delivery.
async fn start_receiver() -> anyhow::Result<SocketAddr> {
    let secret = Secret::parse(SECRET).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/hook", post(receive)).with_state(secret);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "demo: the webhook receiver stopped");
        }
    });
    Ok(addr)
}

async fn receive(State(secret): State<Secret>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (id, ts) = (h("webhook-id"), h("webhook-timestamp"));
    let expected = ts.parse().map(|t| secret.sign(&id, t, &body)).unwrap_or_default();
    let signed = h("webhook-signature").split(' ').any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()));
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let d = &v["data"];
    let by = if d["source"] == "geofence" { "by the geofence" } else { "tapped" };
    let far = d["stop"]["distance_m"].as_f64().map(|m| format!(", {m:.0} m from the stop")).unwrap_or_default();
    let eta = d["eta"]["seconds"].as_u64().map(|s| format!(", ETA {} min", s.div_ceil(60))).unwrap_or_default();
    println!(
        "office ← {:<20} {:<8} {by}{far}{eta}; signature {}",
        d["status"].as_str().unwrap_or("?"),
        d["job_id"].as_str().or(d["route"].is_object().then_some("route")).unwrap_or("?"),
        if signed { "ok" } else { "WRONG" }
    );
    if signed { StatusCode::OK } else { StatusCode::UNAUTHORIZED }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
