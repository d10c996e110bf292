//! The local API under a flood of hostile clients (issue 11), against the release binary over
//! loopback, with the unit's file limit (`prlimit --nofile=4096`) and the default
//! `[api]` limits:
//!
//! 1. baseline: a well-behaved client taps for a while on a quiet agent: tap → 201 latency
//!    (p50, p99), and the agent's RSS;
//! 2. 10,000 half-open connections: each sends a request line, then a header every 5 s, and
//!    reconnects when the agent has closed it (a hostile client persists). Meanwhile the same
//!    client taps: every tap must get 201; p50/p99 against the baseline; the agent's RSS each
//!    second (the curve); then the flood stops and the RSS is read again;
//! 3. the same with 2,000 clients that announce a 1 GB body and send nothing (reconnecting 5 s
//!    after each answer).
//!
//! Targets: every tap 201, p99 ≤ 250 ms during a flood, RSS after a flood within 2 MB of before.
//!
//! Run: `cargo bench --bench api_flood` (`-- --hold SECONDS` to hold each flood longer than 30 s,
//! `-- --clients N` for another number of half-open connections).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[allow(dead_code)]
mod common;
use common::{free_port, peak_rss_kb, rss_kb};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn spawn(dir: &Path, port: u16) -> Child {
    let config = dir.join("flood.toml");
    std::fs::write(
        &config,
        format!(
            "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\nsource = \"sim\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    Command::new("prlimit")
        .arg("--nofile=4096:4096")
        .arg(env!("CARGO_BIN_EXE_curbside"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .env("MALLOC_ARENA_MAX", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit and the agent start")
}

/// Taps from a well-behaved client until `stop`: a fresh connection each (the harder case: it
/// must be admitted among the flood). Returns latencies and how many taps were not a 201.
async fn good_client(base: String, stop: Arc<AtomicBool>) -> (Vec<Duration>, u64) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(10)).build().unwrap();
    let (mut lat, mut bad, mut n) = (Vec::new(), 0, 0u64);
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let t = Instant::now();
        let r = http
            .post(format!("{base}/api/v1/jobs/G{}/status", n % 50))
            .json(&serde_json::json!({"status": "arrived"}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 201 => lat.push(t.elapsed()),
            Ok(r) => {
                bad += 1;
                eprintln!("tap {n}: {}", r.status());
            }
            Err(e) => {
                bad += 1;
                eprintln!("tap {n} after {:?}: {e:?}", t.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lat.sort();
    (lat, bad)
}

/// One hostile client: a request line, then a header every 5 s; reconnects when closed.
async fn slowloris(addr: String, stop: Arc<AtomicBool>, reconnects: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut c) = TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        if c.write_all(b"POST /api/v1/jobs/J/status HTTP/1.1\r\nhost: van\r\n").await.is_err() {
            continue;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if stop.load(Ordering::Relaxed) || c.write_all(b"x-slow: 1\r\n").await.is_err() {
                break;
            }
            // A closed connection shows on the read side at once.
            let mut b = [0u8; 64];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), c.read(&mut b)).await {
                break;
            }
        }
        reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// One hostile client: announces a 1 GB body, sends none, waits for the answer; again 5 s later.
async fn big_body(addr: String, stop: Arc<AtomicBool>, answers: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut c) = TcpStream::connect(&addr).await {
            let head = b"POST /api/v1/jobs/J/status HTTP/1.1\r\nhost: van\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n";
            if c.write_all(head).await.is_ok() {
                let mut got = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut got)).await;
                if got.starts_with(b"HTTP/1.1 413") {
                    answers.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

struct Phase {
    name: String,
    lat: Vec<Duration>,
    bad: u64,
    before_kb: u64,
    after_kb: u64,
}

/// The agent under test and how long each flood is held.
struct Target {
    pid: u32,
    base: String,
    addr: String,
    hold: Duration,
}

async fn flood<F, Fut>(name: &str, t: &Target, clients: usize, attacker: F) -> Phase
where
    F: Fn(String, Arc<AtomicBool>, Arc<AtomicU64>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (pid, base, addr, hold) = (t.pid, &t.base, &t.addr, t.hold);
    let before_kb = rss_kb(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..clients {
        attackers.spawn(attacker(addr.to_string(), stop.clone(), count.clone()));
    }
    let good_stop = Arc::new(AtomicBool::new(false));
    let good = tokio::spawn(good_client(base.to_string(), good_stop.clone()));
    let started = Instant::now();
    let mut curve = Vec::new();
    while started.elapsed() < hold {
        tokio::time::sleep(Duration::from_secs(1)).await;
        curve.push(rss_kb(pid) / 1024);
    }
    good_stop.store(true, Ordering::Relaxed);
    let (lat, bad) = good.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    attackers.abort_all();
    while attackers.join_next().await.is_some() {}
    // Closed by the clients now; the agent notices at once and gives memory back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_kb = rss_kb(pid);
    println!("{name}: RSS MB each second: {curve:?}");
    println!("{name}: {} (reconnects or 413 answers) by the attackers", count.load(Ordering::Relaxed));
    Phase { name: name.to_string(), lat, bad, before_kb, after_kb }
}

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse().ok())
}

#[tokio::main]
async fn main() {
    curbside::tls::install_crypto();
    let hold = Duration::from_secs(arg("--hold").unwrap_or(30));
    let clients = arg("--clients").unwrap_or(10_000) as usize;
    // This process holds the attackers' sockets.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(hard > clients as u64 + 1000, "need {} open files, the hard limit is {hard}", clients + 1000);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (base, addr) = (format!("http://127.0.0.1:{port}"), format!("127.0.0.1:{port}"));
    let mut agent = spawn(dir.path(), port);
    let pid = agent.id();
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if http.get(format!("{base}/api/v1/status")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "agent did not come up");

    // Baseline: the same client on a quiet agent.
    let stop = Arc::new(AtomicBool::new(false));
    let good = tokio::spawn(good_client(base.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let (base_lat, base_bad) = good.await.unwrap();
    let idle_kb = rss_kb(pid);
    println!(
        "baseline: {} taps, {} not 201, p50 {:.2} ms, p99 {:.2} ms; RSS {:.1} MB",
        base_lat.len(),
        base_bad,
        percentile(&base_lat, 0.5).as_secs_f64() * 1e3,
        percentile(&base_lat, 0.99).as_secs_f64() * 1e3,
        idle_kb as f64 / 1024.0
    );

    let target = Target { pid, base: base.clone(), addr, hold };
    let phases = vec![
        flood(&format!("{clients} half-open"), &target, clients, slowloris).await,
        flood("2000 x 1 GB body", &target, 2000, big_body).await,
    ];
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for line in metrics.lines().filter(|l| l.starts_with("curbside_api_connections")) {
        println!("  {line}");
    }
    let b50 = percentile(&base_lat, 0.5).as_secs_f64();
    for p in &phases {
        let (p50, p99) = (percentile(&p.lat, 0.5).as_secs_f64(), percentile(&p.lat, 0.99).as_secs_f64());
        println!(
            "{}: {} taps, {} not 201 (target 0); p50 {:.2} ms ({:.2}x baseline), p99 {:.1} ms (target <= 250); \
             RSS {:.1} MB before, {:.1} MB after ({:+.2} MB, target within 2)",
            p.name,
            p.lat.len(),
            p.bad,
            p50 * 1e3,
            p50 / b50,
            p99 * 1e3,
            p.before_kb as f64 / 1024.0,
            p.after_kb as f64 / 1024.0,
            (p.after_kb as f64 - p.before_kb as f64) / 1024.0
        );
    }
    println!(
        "idle RSS {:.1} MB at the start, {:.1} MB at the end; peak {:.1} MB",
        idle_kb as f64 / 1024.0,
        rss_kb(pid) as f64 / 1024.0,
        peak_rss_kb(pid) as f64 / 1024.0
    );
    let _ = agent.kill();
    let _ = agent.wait();
}
