//! OwnTracks HTTP backlog benchmark, against a baseline measured in the same run on the same
//! machine: POSTing N buffered positions (default 10,000) to a loopback endpoint that answers
//! `[]` as the Recorder does, positions/s, against a bare reqwest loop POSTing the same bodies to
//! the same endpoint one at a time over a kept-alive connection, on a runtime of its own (the order the Recorder needs
//! allows no more in flight). Both count a position once its 2xx arrived; the agent is timed from
//! its process start. Target ≥ 0.5×. Also what that means over a link with a round trip, and the
//! agent's peak RSS.
//!
//! Run: `cargo bench --bench owntracks_http` (add `-- --points N` for another N).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use curbside::telemetry::payload;

mod common;
use common::{STALL, Stall, buffer, free_port, peak_rss_kb, spawn_agent};

/// The endpoint: counts POSTs and answers `[]`.
async fn endpoint(count: Arc<AtomicU64>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/pub",
        axum::routing::post(move |_body: axum::body::Bytes| {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::Relaxed);
                ([(axum::http::header::CONTENT_TYPE, "application/json")], "[]")
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: i64 =
        args.iter().position(|a| a == "--points").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(10_000);
    let base = std::env::var_os("CURBSIDE_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    curbside::tls::install_crypto();
    let dir = tempfile::tempdir_in(base).unwrap();
    let state = dir.path().join("state");

    let points = buffer(&state, n, vec![]).await;

    let count = Arc::new(AtomicU64::new(0));
    let addr = endpoint(count.clone()).await;
    let url = format!("http://{addr}/pub");

    // Baseline: the same bodies, one POST at a time, keep-alive.
    let bodies: Vec<Vec<u8>> =
        points.iter().map(|p| serde_json::to_vec(&payload::owntracks(p, p.tst, "17").unwrap()).unwrap()).collect();
    // On a runtime of its own, as the agent is a process of its own: the endpoint's runtime
    // serves both the same way.
    let bare_url = url.clone();
    let bare_took = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            // A peer that stops answering fails the request, and the benchmark with it.
            let http = reqwest::Client::builder().timeout(STALL).build().unwrap();
            let t = Instant::now();
            for b in bodies {
                let r = http
                    .post(&bare_url)
                    .header("content-type", "application/json")
                    .header("X-Limit-U", "curbside")
                    .header("X-Limit-D", "van-17")
                    .basic_auth("van17", Some("pw"))
                    .body(b)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap();
            }
            t.elapsed()
        })
    })
    .join()
    .unwrap();
    count.store(0, Ordering::Relaxed);

    let api = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\nsource = \"serial\"\ndevice = \"/nonexistent/bench-tty\"\n\
             [api]\nlisten = \"{api}\"\n[positions]\nbacklog_max_points = {n}\n\
             [owntracks_http]\nurl = \"http://van17:pw@{addr}/pub\"\n",
            state.display().to_string()
        ),
    )
    .unwrap();
    let t = Instant::now();
    let mut agent = spawn_agent(&config);
    let pid = agent.id();
    let mut peak = 0;
    let mut stall = Stall::new("the agent to POST its backlog");
    while count.load(Ordering::Relaxed) < n as u64 {
        peak = peak.max(peak_rss_kb(pid));
        if let Err(e) = stall.check(Some(count.load(Ordering::Relaxed))) {
            let _ = agent.kill();
            panic!("{e} ({n} to receive)");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = t.elapsed();
    peak = peak.max(peak_rss_kb(pid));
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    agent.wait().unwrap();

    let (ours, theirs) = (n as f64 / took.as_secs_f64(), n as f64 / bare_took.as_secs_f64());
    let per_point = took.as_secs_f64() / n as f64;
    println!("POSTing a backlog of {n} positions to a loopback OwnTracks endpoint, one at a time");
    println!("  bare reqwest loop:  {:>9.0} positions/s ({:.2} s)", theirs, bare_took.as_secs_f64());
    println!("  curbside agent:     {:>9.0} positions/s ({:.2} s, from process start)", ours, took.as_secs_f64());
    println!("  ratio agent/bare = {:.2}x (target >= 0.5x)", ours / theirs);
    println!("  agent peak RSS while sending: {:.1} MB", peak as f64 / 1024.0);
    for rtt_ms in [0.0, 100.0, 500.0] {
        let each = per_point + rtt_ms / 1000.0;
        println!(
            "  with a {rtt_ms:>3} ms round trip: 1,000 points ~{:.1} s, 100,000 points ~{:.0} s",
            each * 1e3,
            each * 1e5
        );
    }
}
