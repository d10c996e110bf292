//! A store written by an older release opens and drains: `tests/fixtures/store-v1` is a state
//! directory written by curbside at eef64a4 (outbox record version 1: JSON), with nine taps
//! queued for two endpoints, attempts spent and logged, two deliveries parked as failed, a photo
//! and a signature, idempotency keys, the jobs' history and two route events (how it was made:
//! `tests/fixtures/store-v1/make.py`). Today's agent must deliver every one of them, byte for
//! byte the event it acknowledged then, and read the old idempotency records.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::agent;
use crate::common::receiver::Receiver;

fn fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_by_the_version_1_release_opens_and_drains() {
    let expected: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let untar = std::process::Command::new("tar")
        .arg("xzf")
        .arg(fixture().join("state.tar.gz"))
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(untar.success());
    // The idempotency records of the old release still read. Asked of the store before the agent
    // runs: the agent forgets keys older than a week, and these were written on 2026-12-04.
    {
        let store = curbside::outbox::Outbox::open(&dir.path().join("state"), vec![]).unwrap();
        let first = store.first_with_key("JOB-A", "a-3").unwrap().expect("the key's first event");
        assert_eq!(serde_json::to_value(first).unwrap(), expected[2], "the first event, not a new one");
    }
    let receiver = Receiver::start(None, vec![]).await;
    let base = format!("http://{}", receiver.addr);
    let a = agent::start_in(
        dir,
        &format!(
            "[[webhook]]\nname = \"bo\"\nurl = \"{base}/hook\"\n\
             [[webhook]]\nname = \"late\"\nurl = \"{base}/late\"\nevents = [\"delivered\"]\n"
        ),
    )
    .await;
    // "bo" has all nine; "late" parked both of its deliveries, which wait for an operator.
    let got = receiver.wait_for(expected.len(), Duration::from_secs(30)).await;
    let retried = a.post("/api/v1/events/retry-failed").await;
    assert_eq!(retried["retried"], json!(2), "{retried}");
    let got = {
        receiver.wait_for(expected.len() + 2, Duration::from_secs(30)).await;
        let _ = got;
        receiver.got()
    };
    let data = |path: &str| -> Vec<Value> {
        // Per-job order is the promise (endpoints deliver 4 at a time): compared in sequence order.
        let mut d: Vec<Value> = got.iter().filter(|g| g.path == path).map(|g| g.json()["data"].clone()).collect();
        d.sort_by_key(|e| e["sequence"].as_u64());
        d
    };
    let hook = data("/hook");
    assert_eq!(hook.len(), expected.len());
    for (got, want) in hook.iter().zip(&expected) {
        assert_eq!(got, want, "every queued event as the old release acknowledged it");
    }
    let delivered: Vec<Value> = expected.iter().filter(|e| e["status"] == "delivered").cloned().collect();
    assert_eq!(data("/late"), delivered);
    for g in &got {
        let id = g.json()["data"]["id"].as_str().unwrap().to_string();
        assert_eq!(g.header("webhook-id"), id, "the same id the old release gave it");
    }
    let status = a.get("/api/v1/status").await;
    assert_eq!(status["outbox"]["events"], json!(0), "nothing left: {}", status["outbox"]);
}
