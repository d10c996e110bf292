//! Outbox benchmarks, each against a baseline measured in the same run on the same machine:
//!
//! 1. tap → 201 latency over 2,000 sequential taps (the real binary, over loopback) against a
//!    bare append + fsync of 300 bytes in the same directory. Target: p50 ≤ 2.5× the bare fsync.
//!    Also the store alone (an append in process), and `outbox::spool` alone (the same event
//!    appended and synced), to show where the time goes.
//! 2. drain of 100,000 queued events to a loopback receiver answering 200 at once (a process of
//!    its own), events/s, against a bare reqwest loop posting the same bodies at the same
//!    concurrency to the same kind of receiver. Target ≥ 0.6×. Also the agent's peak RSS while
//!    draining (target ≤ 24 MB), the store's size before and after (target ≤ 1 KB per event),
//!    and where its bytes are, tree by tree.
//! 3. the store alone draining the same events, in a process of its own: four tasks read each
//!    event and settle it delivered through the outbox's API, no HTTP; and, in another, only
//!    reading each event. Their time, and their RSS after opening the store and at the end, with
//!    the allocator's bytes in use and its heap (in use and free) at their peaks: the part of the
//!    drain's time and memory that is the store's. No baseline: it is the agent's drain taken
//!    apart.
//! 4. status with the same events still queued (their endpoint unreachable): the first call's
//!    latency (it counts the store once), the later calls' p50, and the agent's RSS before the
//!    first call and after the tenth. No baseline: these are costs the operator pays per call.
//!
//! Run: `cargo bench --bench outbox` (add `-- --events N` to drain fewer events, `-- --only taps`
//! or `-- --only drain` to run one part, `-- --json` for a last line of figures that
//! `tools/bench/outbox-figures` writes into docs/benchmarks.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use curbside::event::StatusEvent;
use curbside::history::History;
use curbside::outbox::{EndpointFilter, Outbox};

mod common;
use common::{Stall, cpu_s, dir_size, free_port, peak_rss_kb, rss_kb, spawn_agent};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn write_config(dir: &Path, api: &str, hook: Option<&str>) -> PathBuf {
    let path = dir.join("bench.toml");
    let mut text = format!(
        "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\nsource = \"sim\"\n[api]\nlisten = \"{api}\"\n",
        dir.join("state").display().to_string()
    );
    if let Some(url) = hook {
        text.push_str(&format!("[[webhook]]\nname = \"bo\"\nurl = \"{url}\"\nconcurrency = 4\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

async fn wait_up(http: &reqwest::Client, api: &str) {
    for _ in 0..200 {
        if http.get(format!("{api}/api/v1/status")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("agent did not come up");
}

async fn tap_latency(base: &Path) -> serde_json::Value {
    const N: usize = 2000;
    // Baseline: append 300 bytes and fsync, in the directory the store lives in.
    let dir = tempfile::tempdir_in(base).unwrap();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.path().join("bare.log")).unwrap();
    let record = [b'x'; 300];
    let mut bare = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        f.write_all(&record).unwrap();
        f.sync_all().unwrap();
        bare.push(t.elapsed());
    }
    bare.sort();

    // The store alone, in process (no HTTP): where the time of a tap goes.
    let mut appends = Vec::with_capacity(N);
    {
        let o = Outbox::open(
            &dir.path().join("inproc"),
            vec![EndpointFilter { name: "bo".into(), events: None, files_only: false }],
        )
        .unwrap();
        let h = History::open(&o).unwrap();
        for i in 0..N {
            let t = Instant::now();
            // As a tap writes it: the event with its job's step.
            o.append_with("JOB-1", None, |s| event(s, i), |e, s| vec![h.of(e, s)]).await.unwrap();
            appends.push(t.elapsed());
        }
    }
    appends.sort();

    // The spool alone (`outbox::spool`, not yet the store): the same event appended and synced,
    // the tap path's cost if the queue were a log.
    let mut spooled = Vec::with_capacity(N);
    {
        let (mut spool, _) = curbside::outbox::spool::Spool::open(&dir.path().join("spool")).unwrap();
        for i in 0..N {
            let bytes = curbside::outbox::record::encode(&event(i as u64, i));
            let t = Instant::now();
            spool.append(i as u64, &bytes).unwrap();
            spool.sync().unwrap();
            spooled.push(t.elapsed());
        }
    }
    spooled.sort();

    let api_addr = format!("127.0.0.1:{}", free_port());
    // An endpoint that is down: events stay queued, as in a dead zone.
    let config = write_config(dir.path(), &api_addr, Some("http://127.0.0.1:9/hook"));
    let mut agent = spawn_agent(&config);
    let api = format!("http://{api_addr}");
    let http = reqwest::Client::new();
    wait_up(&http, &api).await;
    // A minimal HTTP/1.1 client on one kept-alive connection, so that the figure is the agent's
    // time and not a client library's.
    let mut conn = std::net::TcpStream::connect(&api_addr).unwrap();
    conn.set_nodelay(true).unwrap();
    let mut taps = Vec::with_capacity(N);
    let body = br#"{"status":"delivered","received_by":"A. Customer","note":"left at the door"}"#;
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..N {
        let req = format!(
            "POST /api/v1/jobs/JOB-{}/status HTTP/1.1\r\nhost: agent\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            i % 50,
            body.len()
        );
        let mut msg = req.into_bytes();
        msg.extend_from_slice(body);
        let t = Instant::now();
        conn.write_all(&msg).unwrap();
        let status = read_response(&mut conn, &mut buf);
        taps.push(t.elapsed());
        assert_eq!(status, 201);
    }
    taps.sort();
    agent.kill().unwrap();
    agent.wait().unwrap();
    let (bp50, bp99) = (percentile(&bare, 0.5), percentile(&bare, 0.99));
    let (tp50, tp99) = (percentile(&taps, 0.5), percentile(&taps, 0.99));
    println!("tap -> 201, {N} sequential taps over one loopback connection (store on {})", base.display());
    println!("  bare append+fsync 300 B: p50 {:>8.3} ms  p99 {:>8.3} ms", ms(bp50), ms(bp99));
    println!(
        "  outbox append (no HTTP): p50 {:>8.3} ms  p99 {:>8.3} ms",
        ms(percentile(&appends, 0.5)),
        ms(percentile(&appends, 0.99))
    );
    let sp50 = percentile(&spooled, 0.5);
    println!(
        "  spool append+sync:       p50 {:>8.3} ms  p99 {:>8.3} ms ({:.2}x the bare fsync)",
        ms(sp50),
        ms(percentile(&spooled, 0.99)),
        ratio(sp50, bp50)
    );
    println!("  tap -> 201:              p50 {:>8.3} ms  p99 {:>8.3} ms", ms(tp50), ms(tp99));
    println!("  ratio p50 tap/fsync = {:.2}x (target <= 2.5x); p99 {:.2}x", ratio(tp50, bp50), ratio(tp99, bp99));
    let ap50 = percentile(&appends, 0.5);
    serde_json::json!({
        "bare_p50_ms": ms(bp50), "bare_p99_ms": ms(bp99), "append_p50_ms": ms(ap50), "spool_p50_ms": ms(sp50),
        "tap_p50_ms": ms(tp50), "tap_p99_ms": ms(tp99),
        "ratio_p50": ratio(tp50, bp50), "ratio_p99": ratio(tp99, bp99),
    })
}

/// Reads one HTTP/1.1 response with a content-length; returns its status.
fn read_response(conn: &mut std::net::TcpStream, buf: &mut [u8]) -> u16 {
    use std::io::Read;
    let mut have = 0;
    loop {
        let n = conn.read(&mut buf[have..]).unwrap();
        assert!(n > 0, "connection closed");
        have += n;
        let text = &buf[..have];
        if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&text[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if have >= end + 4 + len {
                return head[9..12].parse().unwrap();
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn event(seq: u64, i: usize) -> StatusEvent {
    StatusEvent {
        sequence: seq,
        job_id: format!("JOB-{}", i % 5000),
        received_by: Some("A. Customer".into()),
        note: Some("left at the door".into()),
        items: vec![],
        location: None,
        ..curbside::webhook::format::sample("van-17")
    }
}

/// A receiver answering 200 at once, counting requests (`GET /count` answers the count). It runs
/// in a process of its own, so that the bare loop and the agent both talk to another process,
/// as a real receiver is.
async fn serve_receiver(port_file: PathBuf) {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = Router::new()
        .route(
            "/count",
            axum::routing::get(move || {
                let c = count.clone();
                async move { c.load(Ordering::Relaxed).to_string() }
            }),
        )
        .fallback(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                StatusCode::OK
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    std::fs::write(&port_file, listener.local_addr().unwrap().port().to_string()).unwrap();
    axum::serve(listener, app).await.unwrap();
}

/// Starts a receiver process; returns it, its hook URL and a counter reader. (The caller kills
/// and waits for it; if the bench panics first, the process ends with the bench.)
#[allow(clippy::zombie_processes)]
async fn receiver(dir: &Path) -> (Child, String, String) {
    let port_file = dir.join(format!("port-{}", free_port()));
    let child = Command::new(std::env::current_exe().unwrap())
        .arg("--receive")
        .arg(&port_file)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            if !p.is_empty() {
                let base = format!("http://127.0.0.1:{p}");
                return (child, format!("{base}/hook"), format!("{base}/count"));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("receiver did not start");
}

async fn count(http: &reqwest::Client, url: &str) -> usize {
    http.get(url).send().await.unwrap().text().await.unwrap().parse().unwrap()
}

async fn drain(base: &Path, n: usize) -> serde_json::Value {
    let dir = tempfile::tempdir_in(base).unwrap();
    let footprint;
    // Queue n events directly in the store (as taps made offline would).
    let bodies: Vec<Vec<u8>> = {
        let outbox = Outbox::open(
            &dir.path().join("state"),
            vec![EndpointFilter { name: "bo".into(), events: None, files_only: false }],
        )
        .unwrap();
        let mut set = tokio::task::JoinSet::new();
        let next = Arc::new(AtomicU64::new(0));
        let history = History::open(&outbox).unwrap();
        for _ in 0..64 {
            let (o, h, next) = (outbox.clone(), history.clone(), next.clone());
            set.spawn(async move {
                let mut bodies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= n {
                        return bodies;
                    }
                    // As a tap writes it: the event with its job's step.
                    let job = format!("JOB-{}", i % 5000);
                    let e = o.append_with(&job, None, |s| event(s, i), |e, s| vec![h.of(e, s)]).await.unwrap().event;
                    bodies.push(standard_body(&e));
                }
            });
        }
        let bodies = set.join_all().await.into_iter().flatten().collect();
        outbox.flush().await.unwrap();
        let trees = outbox.footprint().unwrap();
        println!(
            "store after queueing {n} events: {} bytes on disk, sled's files and the spool ({:.0} per event)",
            outbox.size_on_disk(),
            outbox.size_on_disk() as f64 / n as f64
        );
        println!("  {:<10} {:>8} {:>10} {:>12} {:>12}", "tree", "records", "key bytes", "value bytes", "per event");
        for t in trees.trees.iter().filter(|t| t.records > 0) {
            let b = t.key_bytes + t.value_bytes;
            println!(
                "  {:<10} {:>8} {:>10} {:>12} {:>12.1}",
                t.name,
                t.records,
                t.key_bytes,
                t.value_bytes,
                b as f64 / n as f64
            );
        }
        let sled_own = outbox.size_on_disk().saturating_sub(trees.bytes);
        println!(
            "  sled's own (headers, page versions not yet reclaimed) and the spool's record headers: {sled_own} bytes ({:.0} per event)",
            sled_own as f64 / n as f64
        );
        footprint = serde_json::json!({
            "trees": trees.trees, "live_bytes": trees.bytes, "sled_bytes": outbox.size_on_disk(),
        });
        bodies
    };
    // Let sled's flusher let go of the lock.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let size_before = dir_size(&dir.path().join("state"));
    // Copies for the status phase and the store alone, which need the backlog still queued.
    let backlog = dir.path().join("backlog");
    let (alone, reads) = (dir.path().join("alone"), dir.path().join("reads"));
    for copy in [&backlog, &alone, &reads] {
        std::fs::create_dir_all(copy).unwrap();
        assert!(Command::new("cp").arg("-a").arg(dir.path().join("state")).arg(copy).status().unwrap().success());
    }

    // Baseline: a bare reqwest loop, same bodies, same concurrency (4).
    let http = reqwest::Client::new();
    let (mut rx1, url, count_url) = receiver(dir.path()).await;
    let client = curbside::webhook::client(std::iter::empty(), None).unwrap();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicU64::new(0));
    let (me, rx1_pid) = (std::process::id(), rx1.id());
    let cpu0 = (cpu_s(me), cpu_s(rx1_pid));
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, url, bodies, next) = (client.clone(), url.clone(), bodies.clone(), next.clone());
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(b) = bodies.get(i) else { return };
                let r =
                    client.post(&url).header("content-type", "application/json").body(b.clone()).send().await.unwrap();
                assert!(r.status().is_success());
            }
        });
    }
    set.join_all().await;
    let bare = t.elapsed();
    // CPU per event: the loop's (this process, which does nothing else meanwhile) and the
    // receiver's, a steadier measure than the rate on a noisy machine.
    let bare_cpu = (cpu_s(me) - cpu0.0, cpu_s(rx1_pid) - cpu0.1);
    assert_eq!(count(&http, &count_url).await, n);
    rx1.kill().unwrap();
    rx1.wait().unwrap();

    // The agent draining its store to a fresh receiver.
    let (mut rx2, url, count_url) = receiver(dir.path()).await;
    let api_addr = format!("127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), &api_addr, Some(&url));
    let t = Instant::now();
    let mut agent = spawn_agent(&config);
    let pid = agent.id();
    let mut peak = 0;
    let mut stall = Stall::new("the agent to drain its outbox");
    let mut first = None;
    loop {
        let got = count(&http, &count_url).await;
        if got > 0 && first.is_none() {
            first = Some(t.elapsed());
        }
        peak = peak.max(peak_rss_kb(pid));
        if got >= n {
            break;
        }
        if let Err(e) = stall.check(Some(got as u64)) {
            let _ = agent.kill();
            panic!("{e} ({n} to receive)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t.elapsed();
    peak = peak.max(peak_rss_kb(pid));
    let agent_cpu = (cpu_s(pid), cpu_s(rx2.id()));
    // Let the removals reach disk before stopping.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    agent.wait().unwrap();
    rx2.kill().unwrap();
    rx2.wait().unwrap();
    let size_after = dir_size(&dir.path().join("state"));
    let (ours, theirs) = (n as f64 / took.as_secs_f64(), n as f64 / bare.as_secs_f64());
    println!("drain of {n} queued events to a loopback receiver answering 200, concurrency 4");
    println!("  bare reqwest loop:  {:>9.0} events/s ({:.2} s)", theirs, bare.as_secs_f64());
    let first = first.unwrap_or(took);
    println!(
        "  curbside agent:     {:>9.0} events/s ({:.2} s, from process start; the first delivery after {:.0} ms)",
        ours,
        took.as_secs_f64(),
        first.as_secs_f64() * 1e3
    );
    println!("  ratio agent/bare = {:.2}x (target >= 0.6x)", ours / theirs);
    let us = |s: f64| s * 1e6 / n as f64;
    println!(
        "  CPU per event: bare loop {:.1} us (receiver {:.1} us), agent {:.1} us from its start (receiver {:.1} us); {:.2}x",
        us(bare_cpu.0),
        us(bare_cpu.1),
        us(agent_cpu.0),
        us(agent_cpu.1),
        agent_cpu.0 / bare_cpu.0
    );
    println!("  agent peak RSS while draining: {:.1} MB (target <= 24 MB)", peak as f64 / 1024.0);
    println!(
        "  store on disk: {:.1} MB before ({:.0} bytes per event, target <= 1000), {:.1} MB after",
        size_before as f64 / 1e6,
        size_before as f64 / n as f64,
        size_after as f64 / 1e6
    );
    let alone_figures = store_alone(&alone.join("state"), n, "settle");
    let store_reads = store_alone(&reads.join("state"), n, "read");
    let status = status_with_backlog(&backlog, n).await;
    serde_json::json!({
        "events": n, "bare_per_s": theirs, "agent_per_s": ours, "ratio": ours / theirs,
        "bare_cpu_us": us(bare_cpu.0), "agent_cpu_us": us(agent_cpu.0), "first_delivery_ms": first.as_secs_f64() * 1e3,
        "peak_rss_kb": peak, "store_before": size_before, "store_after": size_after, "footprint": footprint,
        "store_alone": alone_figures, "store_reads": store_reads, "status": status,
    })
}

/// The store alone draining (`"settle"`) or only reading (`"read"`) the `n` events queued in
/// `state` (see the module's part 3), in a child process (this binary with `--store-drain`) so
/// that its memory is the store's only.
fn store_alone(state: &Path, n: usize, mode: &str) -> serde_json::Value {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--store-drain")
        .arg(state)
        .arg(n.to_string())
        .arg(mode)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the store-alone drain failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let figures: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let mb = |k: &str| figures[k].as_f64().unwrap_or_default() / 1024.0;
    match mode {
        "read" => println!("the store alone reading each of them (four tasks, no HTTP)"),
        _ => println!("the store alone draining them (four tasks, read and settle, no HTTP)"),
    }
    println!(
        "  {:.0} events/s ({:.2} s); RSS {:.1} MB after opening, peak {:.1} MB",
        n as f64 / figures["secs"].as_f64().unwrap(),
        figures["secs"].as_f64().unwrap(),
        mb("rss_open_kb"),
        mb("peak_rss_kb")
    );
    println!(
        "  allocator: {:.1} MB in use after opening, {:.1} MB at most; its heap (in use and free) {:.1} MB at most",
        mb("in_use_open_kb"),
        mb("in_use_peak_kb"),
        mb("heap_peak_kb")
    );
    figures
}

/// The child of [`store_alone`]: drains (or, with `settle` false, reads) `n` events of the store
/// in `state`, then prints its figures as one JSON line.
async fn store_drain(state: &Path, n: usize, settle: bool) {
    use curbside::outbox::Settle;
    let outbox =
        Outbox::open(state, vec![EndpointFilter { name: "bo".into(), events: None, files_only: false }]).unwrap();
    let pid = std::process::id();
    let (rss_open, in_use_open) = (rss_kb(pid), heap().0);
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let (mut in_use, mut total) = (0, 0);
            while sampling.load(Ordering::Relaxed) {
                let (u, t) = heap();
                (in_use, total) = (in_use.max(u), total.max(t));
                std::thread::sleep(Duration::from_micros(500));
            }
            (in_use, total)
        })
    };
    let t = Instant::now();
    let mut done = 0;
    let mut after = None;
    while done < n {
        let batch = outbox.pending_after("bo", if settle { None } else { after }, 64).unwrap();
        after = batch.last().map(|(s, _)| *s);
        assert!(!batch.is_empty(), "{done} of {n} drained and nothing left");
        let mut set = tokio::task::JoinSet::new();
        for chunk in batch.chunks(16) {
            let (o, seqs) = (outbox.clone(), chunk.iter().map(|(s, _)| *s).collect::<Vec<_>>());
            set.spawn(async move {
                let queue = o.queue("bo");
                for seq in seqs {
                    assert!(o.event(seq).unwrap().is_some());
                    if settle {
                        queue.settle(seq, &Settle::Delivered, None).unwrap();
                    }
                }
            });
        }
        set.join_all().await;
        done += batch.len();
    }
    let secs = t.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let (in_use_peak, heap_peak) = sampler.join().unwrap();
    let figures = serde_json::json!({
        "secs": secs, "rss_open_kb": rss_open, "peak_rss_kb": peak_rss_kb(pid),
        "in_use_open_kb": in_use_open, "in_use_peak_kb": in_use_peak, "heap_peak_kb": heap_peak,
    });
    println!("{figures}");
}

/// glibc's heap, in kB: the bytes in use, and those plus the free bytes it keeps.
fn heap() -> (u64, u64) {
    // SAFETY: mallinfo2 takes no arguments, only reads the allocator's counters (under its
    // locks), and returns them by value.
    let m = unsafe { libc::mallinfo2() };
    ((m.uordblks / 1024) as u64, ((m.uordblks + m.fordblks) / 1024) as u64)
}

/// Status while `n` events wait (their endpoint unreachable): what the operator's status calls,
/// `/metrics` scrapes and the systemd `STATUS=` line cost the agent. Ten calls; the first counts
/// the store once (`outbox::counts`), the rest read the counts. No baseline: the figures are the
/// latency of each call and the agent's resident set before the first and after the last.
async fn status_with_backlog(dir: &Path, n: usize) -> serde_json::Value {
    let http = reqwest::Client::new();
    let api_addr = format!("127.0.0.1:{}", free_port());
    // Nothing listens on the webhook's port: every delivery waits.
    let config = write_config(dir, &api_addr, Some(&format!("http://127.0.0.1:{}/hook", free_port())));
    let mut agent = spawn_agent(&config);
    let pid = agent.id();
    let api = format!("http://{api_addr}");
    // Up once it answers; not asked on status, which would count the store before the first call.
    let mut up = false;
    for _ in 0..200 {
        if http.get(format!("{api}/api/v1/stops")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "agent did not come up");
    let rss_before = rss_kb(pid);
    let mut took = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let body: serde_json::Value =
            http.get(format!("{api}/api/v1/status")).send().await.unwrap().json().await.unwrap();
        took.push(t.elapsed());
        assert_eq!(body["outbox"]["events"].as_u64(), Some(n as u64), "status counts every queued event");
    }
    let rss_after = rss_kb(pid);
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    agent.wait().unwrap();
    let first = took[0];
    let mut rest = took[1..].to_vec();
    rest.sort();
    let later = percentile(&rest, 0.5);
    println!("status with {n} events queued (endpoint unreachable), ten calls");
    println!("  first call {:.1} ms (counts the store once), later calls p50 {:.2} ms", ms(first), ms(later));
    println!(
        "  agent RSS {:.1} MB before the first call, {:.1} MB after the last",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    serde_json::json!({
        "first_ms": ms(first), "later_p50_ms": ms(later), "rss_before_kb": rss_before, "rss_after_kb": rss_after,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--receive") {
        serve_receiver(PathBuf::from(&args[i + 1])).await;
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--store-drain") {
        store_drain(Path::new(&args[i + 1]), args[i + 2].parse().unwrap(), args[i + 3] == "settle").await;
        return;
    }
    let events =
        args.iter().position(|a| a == "--events").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(100_000);
    let base = std::env::var_os("CURBSIDE_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    curbside::tls::install_crypto();
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).map(String::as_str);
    let mut figures = serde_json::Map::new();
    if only != Some("drain") {
        figures.insert("taps".into(), tap_latency(&base).await);
    }
    if only != Some("taps") {
        figures.insert("drain".into(), drain(&base, events).await);
    }
    if args.iter().any(|a| a == "--json") {
        println!("FIGURES {}", serde_json::Value::Object(figures));
    }
}

/// The standard body of `e`, as the agent sends it.
fn standard_body(e: &StatusEvent) -> Vec<u8> {
    curbside::event::envelope(e)
}
