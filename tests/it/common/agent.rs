//! An agent running in-process on a temp dir, with its API on a free loopback port.

use std::net::SocketAddr;

use curbside::app::{self, Running};
use curbside::config::Config;
use curbside::gps::clock::Wall;
use serde_json::Value;

/// A running in-process agent and its state directory.
pub struct TestAgent {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// Starts an agent with the sim GPS, API on port 0, state in a temp dir, and `extra` TOML
/// appended (webhooks, ...).
pub async fn start(extra: &str) -> TestAgent {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir, extra).await
}

/// As [`start`], with top-level keys (`timezone = …`) placed before the tables.
pub async fn start_top(top: &str, extra: &str) -> TestAgent {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let text = format!("{top}\n{}", config_text(&state, "source = \"sim\"", "listen = \"127.0.0.1:0\"", extra));
    start_text(dir, &text).await
}

/// As [`start`], with the `[api]` section given.
pub async fn start_with_api(api: &str, extra: &str) -> TestAgent {
    start_full(tempfile::tempdir().unwrap(), api, extra).await
}

/// As [`start`], with a given state directory (to restart on the same store).
pub async fn start_in(dir: tempfile::TempDir, extra: &str) -> TestAgent {
    start_full(dir, "listen = \"127.0.0.1:0\"", extra).await
}

/// As [`start`], with the state directory at `state` (a mount point, say).
pub async fn start_with_state(state: &std::path::Path, extra: &str) -> TestAgent {
    start_at(tempfile::tempdir().unwrap(), state, "listen = \"127.0.0.1:0\"", extra).await
}

pub async fn start_full(dir: tempfile::TempDir, api: &str, extra: &str) -> TestAgent {
    let state = dir.path().join("state");
    start_at(dir, &state, api, extra).await
}

/// As [`start_in`], with the `[gps]` section given.
pub async fn start_with_gps(dir: tempfile::TempDir, gps: &str, extra: &str) -> TestAgent {
    let state = dir.path().join("state");
    let text = config_text(&state, gps, "listen = \"127.0.0.1:0\"", extra);
    start_text(dir, &text).await
}

/// As [`start_with_gps`], reading the system clock through `wall` (which the test can make jump).
pub async fn start_with_gps_wall(dir: tempfile::TempDir, gps: &str, extra: &str, wall: &Wall) -> TestAgent {
    let state = dir.path().join("state");
    let text = config_text(&state, gps, "listen = \"127.0.0.1:0\"", extra);
    start_text_with(dir, &text, wall).await
}

/// A whole test config: state in `state`, the given `[gps]` and `[api]` sections, then `extra`.
pub fn config_text(state: &std::path::Path, gps: &str, api: &str, extra: &str) -> String {
    format!(
        "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\n{gps}\n[api]\n{api}\n{extra}",
        state.display().to_string()
    )
}

async fn start_at(dir: tempfile::TempDir, state: &std::path::Path, api: &str, extra: &str) -> TestAgent {
    let text = config_text(state, "source = \"sim\"", api, extra);
    start_text(dir, &text).await
}

async fn start_text(dir: tempfile::TempDir, text: &str) -> TestAgent {
    start_text_with(dir, text, &Wall::system()).await
}

async fn start_text_with(dir: tempfile::TempDir, text: &str, wall: &Wall) -> TestAgent {
    use_the_binary_for_transforms();
    let config = || Config::parse(text, "test.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    // Restarted in this process on the same store: sled's threads let go of the lock shortly
    // after the last handle is dropped (a restarted process never waits).
    let mut running = app::start_with_wall(config(), wall.clone()).await;
    for _ in 0..100 {
        match &running {
            Err(e) if format!("{e:#}").contains("in use by another process") => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                running = app::start_with_wall(config(), wall.clone()).await;
            }
            _ => break,
        }
    }
    let running = running.unwrap();
    curbside::tls::install_crypto();
    TestAgent { running, dir, http: reqwest::Client::new() }
}

impl TestAgent {
    pub fn addr(&self) -> SocketAddr {
        self.running.api_addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// POSTs a tap body (raw bytes) with optional extra headers; returns status and JSON.
    pub async fn tap_raw(&self, job: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.http.post(self.url(&format!("/api/v1/jobs/{job}/status"))).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn tap(&self, job: &str, body: Value) -> (u16, Value) {
        self.tap_raw(job, serde_json::to_vec(&body).unwrap(), &[("content-type", "application/json")]).await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http.get(self.url(path)).send().await.unwrap().json().await.unwrap()
    }

    pub async fn post(&self, path: &str) -> Value {
        self.http.post(self.url(path)).send().await.unwrap().json().await.unwrap()
    }

    pub async fn stop(self) -> tempfile::TempDir {
        self.running.stop().await.unwrap();
        self.dir
    }
}

/// A free loopback port (bound and released), never the same twice in this process: a port
/// handed to one test (for a broker it has yet to start, say) is not handed to another.
pub fn free_addr() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

/// jq transforms run in a child (`curbside webhook transform`): in this suite, the binary under
/// test (behind the emulator CI names, if any), not the test binary.
pub fn use_the_binary_for_transforms() {
    let bin = env!("CARGO_BIN_EXE_curbside");
    let runner = match std::env::var("CURBSIDE_TEST_RUNNER").ok().filter(|r| !r.trim().is_empty()) {
        Some(r) => {
            let mut words = r.split_whitespace().map(std::ffi::OsString::from);
            let program = words.next().expect("a runner");
            let mut args: Vec<_> = words.collect();
            args.push(bin.into());
            curbside::webhook::format::jq::Runner::new(program, args)
        }
        None => curbside::webhook::format::jq::Runner::new(bin, Vec::new()),
    };
    runner.use_for_this_process();
}
