//! Helpers shared by the integration tests: the corpus, waiting on the live fix.

use std::path::PathBuf;
use std::time::Duration;

use curbside::gps::LatestFix;
use curbside::gps::latest::GpsState;

/// The real-receiver corpus (gpsd's regression logs).
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpsd")
}

/// Every `NAME.log` in the corpus that has gpsd's decode `NAME.log.chk` beside it, sorted.
pub fn corpus_logs() -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus present")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log") && p.with_extension("log.chk").exists())
        .collect();
    logs.sort();
    logs
}

/// Waits (real time, as a pty is real I/O) until `pred` holds for the GPS state, or panics with
/// the state after `limit`.
pub async fn wait_for(latest: &LatestFix, limit: Duration, what: &str, pred: impl Fn(&GpsState) -> bool) {
    let mut rx = latest.subscribe();
    let res = tokio::time::timeout(limit, async {
        loop {
            if pred(&rx.borrow_and_update()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(res.is_ok(), "timed out after {limit:?} waiting for {what}; state: {:?}", latest.snapshot());
}

pub mod agent;
pub mod broker;
pub mod pod;
pub mod receiver;

/// A command running the curbside binary under test. When the suite itself runs under an
/// emulator (the ARM builds in CI run under qemu-user, which cannot start foreign binaries by
/// itself without binfmt_misc), `CURBSIDE_TEST_RUNNER` names the emulator and its arguments,
/// e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`.
pub fn curbside() -> std::process::Command {
    let bin = env!("CARGO_BIN_EXE_curbside");
    match std::env::var("CURBSIDE_TEST_RUNNER").ok().filter(|r| !r.trim().is_empty()) {
        Some(runner) => {
            let mut words = runner.split_whitespace();
            let mut cmd = std::process::Command::new(words.next().expect("a runner"));
            cmd.args(words).arg(bin);
            // `curbside run` re-executes itself to cap malloc arenas unless this is set; an
            // emulated process cannot exec a foreign binary (no binfmt_misc), so set it here.
            cmd.env("MALLOC_ARENA_MAX", "2");
            cmd
        }
        None => std::process::Command::new(bin),
    }
}

/// `curbside run --config CONFIG`, quiet (warnings only, output discarded), ready to spawn.
pub fn run_agent(config: &std::path::Path) -> std::process::Command {
    let mut cmd = curbside();
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// A positions transport's part of `GET /api/v1/status` (`owntracks_http`, `traccar`), and the
/// waits the tests of each make on it.
pub mod transport {
    use std::time::Duration;

    use serde_json::Value;

    use super::agent::TestAgent;
    use crate::mqtt::{WAIT, fix};

    /// `status[key]`.
    pub async fn status(agent: &TestAgent, key: &str) -> Value {
        agent.get("/api/v1/status").await[key].clone()
    }

    /// Waits until `pred` holds for `status[key]`; panics with it after [`WAIT`].
    pub async fn wait(agent: &TestAgent, key: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = status(agent, key).await;
            if pred(&s) {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; status: {s:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes fixes one at a time, each once the agent has made it a point.
    pub async fn feed(agent: &TestAgent, key: &str, range: std::ops::Range<i64>) {
        let made = |s: &Value| s["positions_made"].as_u64().unwrap_or(0);
        for i in range {
            let before = made(&status(agent, key).await);
            agent.running.latest.publish(fix(i));
            wait(agent, key, &format!("fix {i} made a point"), |s| made(s) > before).await;
        }
    }
}
