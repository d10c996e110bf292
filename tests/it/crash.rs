//! Crash safety with the real binary: concurrent clients tap while the agent is SIGKILLed at
//! random moments and restarted. In the end the receiver holds every acknowledged event; a
//! duplicate always carries the same webhook-id and body; each job's events arrive in order.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::json;

use crate::common::agent::free_addr;
use crate::common::receiver::Receiver;

const CLIENTS: usize = 4;
const JOBS_PER_CLIENT: usize = 12;
const STATUSES: [&str; 3] = ["heading_to", "arrived", "delivered"];
const KILLS: usize = 24;

fn spawn(config: &std::path::Path) -> Child {
    // The agents' logs go next to the config, for the failure message.
    let log = std::fs::OpenOptions::new().create(true).append(true).open(config.with_extension("log")).unwrap();
    crate::common::curbside()
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// One client: its jobs in turn, each job's statuses in order; a tap is retried with the same
/// Idempotency-Key until acknowledged (the agent may be dead, or restarting).
async fn client(n: usize, api: String, acked: Arc<Mutex<Vec<(String, usize, String)>>>) {
    curbside::tls::install_crypto();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    for j in 0..JOBS_PER_CLIENT {
        let job = format!("C{n}-J{j}");
        for (i, status) in STATUSES.iter().enumerate() {
            let key = format!("{job}-{i}");
            loop {
                let r = http
                    .post(format!("{api}/api/v1/jobs/{job}/status"))
                    .header("idempotency-key", &key)
                    .json(&json!({"status": status}))
                    .send()
                    .await;
                if let Ok(resp) = r {
                    if resp.status() == 201 {
                        if let Ok(e) = resp.json::<serde_json::Value>().await {
                            acked.lock().unwrap().push((job.clone(), i, e["id"].as_str().unwrap().to_string()));
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_taps_survive_sigkill_at_random_moments() {
    let receiver = Receiver::start(None, vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let api_addr = free_addr();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\nsource = \"sim\"\n[api]\nlisten = \"{api_addr}\"\n\
             [[webhook]]\nname = \"bo\"\nurl = \"{}\"\nretry_schedule = [\"100ms\"]\n",
            dir.path().join("state").display().to_string(),
            receiver.url()
        ),
    )
    .unwrap();
    let api = format!("http://{api_addr}");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut child = spawn(&config);
    let clients: Vec<_> = (0..CLIENTS).map(|n| tokio::spawn(client(n, api.clone(), acked.clone()))).collect();

    let mut kills = 0;
    while kills < KILLS {
        let wait = rand::rng().random_range(50..400);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        child = spawn(&config);
    }
    for c in clients {
        tokio::time::timeout(Duration::from_secs(60), c).await.expect("clients finish").unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    let total = CLIENTS * JOBS_PER_CLIENT * STATUSES.len();
    assert_eq!(acked.len(), total);
    let want: HashSet<&str> = acked.iter().map(|(_, _, id)| id.as_str()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = receiver.got();
        let ids: HashSet<String> = got.iter().map(|g| g.header("webhook-id").to_string()).collect();
        if want.iter().all(|id| ids.contains(*id)) {
            break got;
        }
        let log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().filter(|l| !l.contains("unreachable")).rev().take(15).collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} acknowledged events delivered; missing {:?}; agent log tail:\n{}",
            want.iter().filter(|i| ids.contains(**i)).count(),
            want.len(),
            want.iter().filter(|i| !ids.contains(**i)).collect::<Vec<_>>(),
            tail.join("\n"),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();

    // Duplicates: same webhook-id, same body.
    let mut bodies: HashMap<String, bytes::Bytes> = HashMap::new();
    let mut duplicates = 0;
    for g in &got {
        let id = g.header("webhook-id").to_string();
        match bodies.get(&id) {
            Some(b) => {
                duplicates += 1;
                assert_eq!(b, &g.body, "a redelivery of {id} changed its body");
            }
            None => {
                bodies.insert(id, g.body.clone());
            }
        }
    }
    // Order per job: first arrivals follow the acknowledged order.
    let mut first_seen: HashMap<String, Vec<String>> = HashMap::new();
    let mut seen = HashSet::new();
    for g in &got {
        let id = g.header("webhook-id").to_string();
        if seen.insert(id.clone()) {
            let job = g.json()["data"]["job_id"].as_str().unwrap().to_string();
            first_seen.entry(job).or_default().push(id);
        }
    }
    let mut acked_order: HashMap<String, Vec<String>> = HashMap::new();
    for (job, _, id) in &acked {
        acked_order.entry(job.clone()).or_default().push(id.clone());
    }
    for (job, ids) in &acked_order {
        assert_eq!(first_seen.get(job), Some(ids), "order of {job}");
    }
    assert_eq!(seen.len(), total, "no event the clients did not make");
    eprintln!("crash safety: taps={total} kills={kills} deliveries={} duplicates={duplicates}", got.len());
}
