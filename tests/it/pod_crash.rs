//! Proof of delivery through crashes, with the real binary and a file receiver that is a process
//! of its own: the driver taps 30 deliveries (12 under emulation) with photos and a signature
//! while the receiver is down and the agent is SIGKILLed at random moments (each run first
//! acknowledges a tap, so the driver gets through however slow the machine); then the receiver
//! comes up and the agent is killed again while it uploads. Every acknowledged event's files must arrive with the digest of
//! the bytes sent, each webhook after its files, its URLs must resolve, each job's events in
//! order, and `state_dir/media` must end empty.
//!
//! The receiver is this test binary run again (`file_receiver` with `CURBSIDE_FILE_RECEIVER`
//! set): it checks each PUT's `Content-Digest` against the bytes, keeps the file, serves it back
//! on GET, and appends every request to a log file in arrival order.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use rand::Rng;
use serde_json::{Value, json};

use crate::common::agent::free_addr;
use crate::common::pod::{jpeg, png, sha256};

const JOBS: usize = 30;
/// Under emulation (qemu-user runs the agent about 20 times slower) fewer jobs, the same kills.
const JOBS_EMULATED: usize = 12;
const KILLS_TAPPING: usize = 10;
const KILLS_UPLOADING: usize = 5;
const ENV: &str = "CURBSIDE_FILE_RECEIVER";

/// Kills its process when dropped (a failing test leaves nothing running).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone)]
struct Rx {
    dir: std::path::PathBuf,
    log: Arc<Mutex<std::fs::File>>,
}

fn stored(dir: &std::path::Path, path: &str) -> std::path::PathBuf {
    dir.join("files").join(path.trim_start_matches('/').replace('/', "__"))
}

async fn receive(
    State(rx): State<Rx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    let path = uri.path().to_string();
    let line = match method {
        Method::PUT => {
            let sha = sha256(&body);
            use base64::Engine as _;
            let raw: Vec<u8> = (0..64).step_by(2).map(|i| u8::from_str_radix(&sha[i..i + 2], 16).unwrap()).collect();
            let want = format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(raw));
            let digest = headers.get("content-digest").and_then(|v| v.to_str().ok()).unwrap_or("");
            if digest != want {
                return (StatusCode::BAD_REQUEST, b"Content-Digest does not match the body".to_vec());
            }
            std::fs::write(stored(&rx.dir, &path), &body).unwrap();
            json!({"put": path, "sha256": sha})
        }
        Method::POST => {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            json!({"hook": id, "body": body})
        }
        Method::GET => {
            return match std::fs::read(stored(&rx.dir, &path)) {
                Ok(bytes) => (StatusCode::OK, bytes),
                Err(_) => (StatusCode::NOT_FOUND, Vec::new()),
            };
        }
        _ => return (StatusCode::METHOD_NOT_ALLOWED, Vec::new()),
    };
    let mut f = rx.log.lock().unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
    (if method == Method::PUT { StatusCode::CREATED } else { StatusCode::OK }, Vec::new())
}

async fn serve(listener: tokio::net::TcpListener, dir: std::path::PathBuf) {
    std::fs::create_dir_all(dir.join("files")).unwrap();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log.jsonl")).unwrap();
    let rx = Rx { dir, log: Arc::new(Mutex::new(log)) };
    let app =
        axum::Router::new().fallback(receive).layer(axum::extract::DefaultBodyLimit::max(16 << 20)).with_state(rx);
    axum::serve(listener, app).await.unwrap();
}

/// The receiver: run as a process of its own by the crash test (`CURBSIDE_FILE_RECEIVER` =
/// `ADDR DIR`); run by the suite, it checks itself in process: a PUT with the right digest is
/// kept and served back, one with a wrong digest is refused.
#[tokio::test]
async fn file_receiver() {
    curbside::tls::install_crypto();
    if let Ok(spec) = std::env::var(ENV) {
        let (addr, dir) = spec.split_once(' ').unwrap();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        serve(listener, dir.into()).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, dir.path().to_path_buf()));
    let http = reqwest::Client::new();
    let photo = jpeg(1, 10_000);
    let digest = curbside::media::upload::content_digest(&curbside::media::parse_hex(&sha256(&photo)).unwrap());
    let url = format!("http://{addr}/pod/v/e/photo-1.jpg");
    let put = http.put(&url).header("content-digest", &digest).body(photo.clone()).send().await.unwrap();
    assert_eq!(put.status(), 201);
    let bad = http.put(&url).header("content-digest", &digest).body(b"other".to_vec()).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(http.get(&url).send().await.unwrap().bytes().await.unwrap(), photo);
    let log = std::fs::read_to_string(dir.path().join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
}

fn spawn_receiver(addr: std::net::SocketAddr, dir: &std::path::Path) -> Proc {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match std::env::var("CURBSIDE_TEST_RUNNER").ok().filter(|r| !r.trim().is_empty()) {
        Some(runner) => {
            let mut words = runner.split_whitespace();
            let mut c = std::process::Command::new(words.next().unwrap());
            c.args(words).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    cmd.args(["--exact", "pod_crash::file_receiver", "--nocapture"])
        .env(ENV, format!("{addr} {}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Proc(cmd.spawn().unwrap())
}

fn spawn_agent(config: &std::path::Path) -> Proc {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(config.with_extension("log")).unwrap();
    Proc(
        crate::common::curbside()
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Waits until the agent answers on its API (at most 60 s).
async fn ready(api: &str) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while http.get(format!("{api}/api/v1/status")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the agent did not start within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One job's two taps: heading_to (JSON), then delivered with 1–3 photos and a signature.
struct Job {
    id: String,
    photos: Vec<Vec<u8>>,
    signature: Vec<u8>,
}

fn emulated() -> bool {
    std::env::var("CURBSIDE_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty())
}

fn job_count() -> usize {
    if emulated() { JOBS_EMULATED } else { JOBS }
}

fn jobs() -> Vec<Job> {
    let mut rng = rand::rng();
    (0..job_count())
        .map(|j| {
            let n = rng.random_range(1..=3);
            // 50 KB doubling up to 3 MB: mostly small, some large.
            let photos = (0..n)
                .map(|p| jpeg((j * 10 + p) as u64, (50_000usize << rng.random_range(0..7)).min(3_000_000)))
                .collect();
            Job { id: format!("J{j:02}"), photos, signature: png(j as u8) }
        })
        .collect()
}

/// Posts until acknowledged, with the same Idempotency-Key (the agent may be dead or starting).
async fn tap_until_201(http: &reqwest::Client, api: &str, job: &str, key: &str, ct: &str, body: &[u8]) -> Value {
    loop {
        let r = http
            .post(format!("{api}/api/v1/jobs/{job}/status"))
            .header("idempotency-key", key)
            .header("content-type", ct)
            .body(body.to_vec())
            .send()
            .await;
        if let Ok(resp) = r {
            if resp.status() == 201 {
                if let Ok(v) = resp.json::<Value>().await {
                    return v;
                }
            } else {
                assert!(resp.status().is_server_error() || resp.status() == 408, "refused: {}", resp.status());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn driver(api: String, jobs: Arc<Vec<Job>>, acked: Arc<Mutex<Vec<Value>>>) {
    curbside::tls::install_crypto();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    for job in jobs.iter() {
        let heading = serde_json::to_vec(&json!({"status": "heading_to"})).unwrap();
        let e = tap_until_201(&http, &api, &job.id, &format!("{}-0", job.id), "application/json", &heading).await;
        acked.lock().unwrap().push(e);
        let event = serde_json::to_vec(&json!({"status": "delivered", "received_by": "Ada"})).unwrap();
        let mut parts = vec![crate::common::pod::file("event", None, &event)];
        parts.extend(job.photos.iter().map(|p| crate::common::pod::file("photo", Some("image/jpeg"), p)));
        parts.push(crate::common::pod::file("signature", Some("image/png"), &job.signature));
        let (ct, body) = curbside::api::multipart::encode(&parts);
        let e = tap_until_201(&http, &api, &job.id, &format!("{}-1", job.id), &ct, &body).await;
        acked.lock().unwrap().push(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_of_delivery_survives_sigkill_and_arrives_before_its_webhook() {
    curbside::tls::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (api_addr, rx_addr) = (free_addr(), free_addr());
    let state = dir.path().join("state");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\nsource = \"sim\"\n[api]\nlisten = \"{api_addr}\"\n\
             [pod]\nupload_url = \"http://{rx_addr}/pod/{{vehicle_id}}/{{event_id}}/{{kind}}-{{index}}.{{ext}}\"\n\
             retry_schedule = [\"100ms\"]\n\
             [[webhook]]\nname = \"bo\"\nurl = \"http://{rx_addr}/hook\"\nretry_schedule = [\"100ms\"]\n",
            state.display().to_string(),
        ),
    )
    .unwrap();
    let jobs = Arc::new(jobs());
    let sent_bytes: usize = jobs.iter().map(|j| j.photos.iter().map(Vec::len).sum::<usize>() + j.signature.len()).sum();
    let api = format!("http://{api_addr}");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut agent = spawn_agent(&config);
    let tapping = tokio::spawn(driver(api.clone(), jobs.clone(), acked.clone()));

    // The receiver is down: kill the agent at random moments while the driver taps.
    let mut kills = 0;
    while kills < KILLS_TAPPING || !tapping.is_finished() {
        // Each run gets to answer, and to acknowledge a tap, before its random moment comes:
        // a slow start or a slow tap (under emulation, say) would otherwise be killed before
        // it ever took one, and the driver would never get through.
        ready(&api).await;
        let before = acked.lock().unwrap().len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while acked.lock().unwrap().len() == before && !tapping.is_finished() {
            assert!(tokio::time::Instant::now() < deadline, "no tap acknowledged within 120 s of a start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(100..700))).await;
        drop(agent); // SIGKILL
        kills += 1;
        agent = spawn_agent(&config);
    }
    tokio::time::timeout(Duration::from_secs(120), tapping).await.expect("the driver's taps finish").unwrap();
    let tapping_kills = kills;

    // The receiver comes up; the agent is killed again while it uploads.
    let rx_dir = dir.path().join("rx");
    let _receiver = spawn_receiver(rx_addr, &rx_dir);
    while kills < tapping_kills + KILLS_UPLOADING {
        ready(&api).await;
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(300..1500))).await;
        drop(agent);
        kills += 1;
        agent = spawn_agent(&config);
    }

    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 2 * job_count());
    let want: HashSet<String> = acked.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    let read_log = || -> Vec<Value> {
        std::fs::read_to_string(rx_dir.join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let log = loop {
        let log = read_log();
        let hooks: HashSet<&str> = log.iter().filter_map(|l| l["hook"].as_str()).collect();
        if want.iter().all(|id| hooks.contains(id.as_str())) {
            break log;
        }
        if tokio::time::Instant::now() > deadline {
            let agent_log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
            let tail: Vec<&str> = agent_log.lines().rev().take(30).collect();
            panic!(
                "{} of {} acknowledged events delivered ({} files uploaded); agent log tail:\n{}",
                want.iter().filter(|i| hooks.contains(i.as_str())).count(),
                want.len(),
                log.iter().filter(|l| l.get("put").is_some()).count(),
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Each file arrived (its digest checked by the receiver), before the first webhook of its
    // event, with the digest of the bytes the driver sent; its URL resolves.
    let first = |pred: &dyn Fn(&Value) -> bool| log.iter().position(pred);
    let http = reqwest::Client::new();
    let by_job: HashMap<&str, &Job> = jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let mut files = 0;
    for e in acked.iter().filter(|e| e["status"] == "delivered") {
        let job = by_job[e["job_id"].as_str().unwrap()];
        let hook_at = first(&|l| l["hook"] == e["id"]).unwrap();
        let a = e["attachments"].as_array().unwrap();
        assert_eq!(a.len(), job.photos.len() + 1);
        let sent: Vec<&Vec<u8>> = job.photos.iter().chain([&job.signature]).collect();
        for (att, bytes) in a.iter().zip(sent) {
            assert_eq!(att["sha256"], sha256(bytes), "the digest of the bytes sent");
            let url = att["url"].as_str().unwrap();
            let path = url.split_once(&rx_addr.to_string()).unwrap().1;
            let put_at = first(&|l| l["put"] == path).unwrap_or_else(|| panic!("{url} was never uploaded"));
            assert_eq!(log[put_at]["sha256"], att["sha256"]);
            assert!(put_at < hook_at, "{url} arrived after the webhook that links it");
            let got = http.get(url).send().await.unwrap().bytes().await.unwrap();
            assert_eq!(sha256(&got), sha256(bytes), "{url} resolves to the file");
            files += 1;
        }
        let hook = &log[hook_at]["body"]["data"];
        assert_eq!(hook["attachments"], e["attachments"], "the webhook links what the 201 said");
    }
    // Order per job: heading_to's first arrival before delivered's.
    for job in jobs.iter() {
        let ids: Vec<&Value> = acked.iter().filter(|e| e["job_id"] == job.id.as_str()).map(|e| &e["id"]).collect();
        let at: Vec<usize> = ids.iter().map(|id| first(&|l| &l["hook"] == *id).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "order of {}", job.id);
    }
    let media = state.join("media");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while crate::common::pod::media_files(&state) != (0, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "state_dir/media still holds {:?}",
            crate::common::pod::media_files(&state)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(media.exists());
    let puts = log.iter().filter(|l| l.get("put").is_some()).count();
    let hooks = log.iter().filter(|l| l.get("hook").is_some()).count();
    eprintln!(
        "pod crash safety: jobs={} files={files} bytes={sent_bytes} kills={kills} (tapping {tapping_kills}) \
         puts={puts} hooks={hooks} (duplicates: {} puts, {} hooks)",
        job_count(),
        puts - files,
        hooks - 2 * job_count()
    );
    drop(agent);
}
