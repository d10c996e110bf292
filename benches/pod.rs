//! Proof of delivery against the release binary over loopback (issue 12):
//!
//! 1. latency: a tap with one 3 MB photo (multipart) → 201, against the baseline measured in
//!    the same run on the same disk: writing and fsyncing the same 3 MB file (temp file,
//!    fsync, rename, fsync of the directory, as the agent does) plus a bare JSON tap.
//!    Target: photo tap p50 ≤ 1.5 × (write+fsync p50 + bare tap p50).
//! 2. memory: 100 photos of 3 MB tapped while the file receiver is down, then uploaded to a
//!    loopback receiver that streams each body to nowhere; the agent's peak RSS (VmHWM) before
//!    and after the uploads. Target: ≤ 32 MB (files are streamed, never held whole).
//!
//! Run: `cargo bench --bench pod` (`-- --rounds N` for another number of latency rounds, 30).

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod common;
use common::{free_port, peak_rss_kb, spawn_agent};

const PHOTO: usize = 3_000_000;

fn photo(seed: u64) -> Vec<u8> {
    // A real baseline JPEG of 512×N pixels of noise, about 3 MB.
    let (w, h) = (512u16, (PHOTO as f64 / (512.0 * 1.9)) as u16);
    let mut s = seed.wrapping_mul(6364136223846793005) | 1;
    let px: Vec<u8> = (0..w as usize * h as usize * 3)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90).encode(&px, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
    out
}

/// The same photo with different bytes (so that the agent stores each one): a few bytes of
/// the entropy-coded data changed; still a JPEG by its magic number.
fn variant(base: &[u8], n: u64) -> Vec<u8> {
    let mut v = base.to_vec();
    let at = v.len() / 2;
    v[at..at + 8].copy_from_slice(&n.to_le_bytes().map(|b| b & 0x7f));
    v
}

fn multipart(photo: &[u8]) -> (String, Vec<u8>) {
    use curbside::api::multipart::{Part, encode};
    let event = br#"{"status":"delivered","received_by":"Ada"}"#;
    encode(&[
        Part { name: "event", filename: None, content_type: Some("application/json"), bytes: event },
        Part { name: "photo", filename: Some("door.jpg"), content_type: Some("image/jpeg"), bytes: photo },
    ])
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn write_fsync(dir: &Path, bytes: &[u8], n: u64) -> Duration {
    let t = Instant::now();
    let tmp = dir.join(format!("tmp-{n}"));
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, dir.join(format!("file-{n}"))).unwrap();
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
    t.elapsed()
}

async fn wait_ready(http: &reqwest::Client, api: &str) {
    for _ in 0..200 {
        if http.get(format!("{api}/api/v1/status")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the agent did not start");
}

async fn tap(http: &reqwest::Client, api: &str, job: &str, ct: &str, body: Vec<u8>) -> Duration {
    let t = Instant::now();
    let r = http
        .post(format!("{api}/api/v1/jobs/{job}/status"))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    t.elapsed()
}

/// A receiver that counts bodies and their bytes, reading them as they stream.
async fn receiver(port: u16, files: Arc<AtomicU64>, bytes: Arc<AtomicU64>) {
    use futures_util::StreamExt as _;
    let app = axum::Router::new().fallback(move |body: axum::body::Body| {
        let (files, bytes) = (files.clone(), bytes.clone());
        async move {
            let mut s = body.into_data_stream();
            while let Some(Ok(chunk)) = s.next().await {
                bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            files.fetch_add(1, Ordering::Relaxed);
            axum::http::StatusCode::CREATED
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}

#[tokio::main]
async fn main() {
    curbside::tls::install_crypto();
    let args: Vec<String> = std::env::args().collect();
    let rounds: u64 =
        args.iter().position(|a| a == "--rounds").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(30);
    let base = photo(1);
    let http = reqwest::Client::new();

    // 1. Latency, on the disk of the build directory (not a tmpfs /tmp).
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (state, plain) = (root.path().join("state"), root.path().join("plain"));
    std::fs::create_dir_all(&plain).unwrap();
    let port = free_port();
    let config = root.path().join("pod.toml");
    std::fs::write(
        &config,
        format!(
            "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\nsource = \"sim\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[pod]\nmedia_max_mb = 4096\n",
            state.display().to_string()
        ),
    )
    .unwrap();
    let mut agent = spawn_agent(&config);
    let api = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &api).await;
    let (mut fsyncs, mut bare, mut photos) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..rounds + 3 {
        let bytes = variant(&base, n);
        let f = write_fsync(&plain, &bytes, n);
        let b = tap(&http, &api, &format!("B{n}"), "application/json", br#"{"status":"arrived"}"#.to_vec()).await;
        let (ct, body) = multipart(&variant(&base, 1_000_000 + n));
        let p = tap(&http, &api, &format!("P{n}"), &ct, body).await;
        if n >= 3 {
            // The first rounds warm the page cache and the connection.
            fsyncs.push(f);
            bare.push(b);
            photos.push(p);
        }
    }
    let _ = agent.kill();
    let _ = agent.wait();
    let (f, b, p) = (median(fsyncs), median(bare), median(photos));
    let ratio = p.as_secs_f64() / (f + b).as_secs_f64();
    println!(
        "latency ({rounds} rounds, {} byte photo): write+fsync p50 {:.1} ms, bare tap p50 {:.1} ms, photo tap p50 {:.1} ms; ratio {ratio:.2} (target <= 1.5)",
        base.len(),
        f.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        p.as_secs_f64() * 1e3,
    );

    // 2. Memory while uploading 100 photos of 3 MB.
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (port, rx_port) = (free_port(), free_port());
    let config = root.path().join("pod.toml");
    std::fs::write(
        &config,
        format!(
            "vehicle_id = \"van-17\"\nstate_dir = {:?}\n[gps]\nsource = \"sim\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
             [pod]\nmedia_max_mb = 4096\nupload_url = \"http://127.0.0.1:{rx_port}/{{event_id}}/{{kind}}-{{index}}.{{ext}}\"\nretry_schedule = [\"200ms\"]\n",
            root.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let mut agent = spawn_agent(&config);
    let pid = agent.id();
    let api = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &api).await;
    for n in 0..100u64 {
        let (ct, body) = multipart(&variant(&base, 2_000_000 + n));
        tap(&http, &api, &format!("U{n}"), &ct, body).await;
    }
    let tapped = peak_rss_kb(pid);
    let (files, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    tokio::spawn(receiver(rx_port, files.clone(), bytes.clone()));
    let t = Instant::now();
    while files.load(Ordering::Relaxed) < 100 {
        assert!(t.elapsed() < Duration::from_secs(300), "uploaded {} of 100", files.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = t.elapsed();
    let peak = peak_rss_kb(pid);
    let _ = agent.kill();
    let _ = agent.wait();
    println!(
        "memory: 100 photos ({} MB) uploaded in {:.1} s (including the first probe of the receiver); peak RSS {:.1} MB after the taps, {:.1} MB after the uploads (target <= 32 MB)",
        bytes.load(Ordering::Relaxed) / 1_000_000,
        took.as_secs_f64(),
        tapped as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
}
