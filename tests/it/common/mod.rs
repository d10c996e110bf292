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
pub mod receiver;
