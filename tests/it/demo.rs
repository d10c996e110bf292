//! `curbside demo` as a newcomer runs it: no config, nothing else running. It must print the
//! driver page's address and deliver a signed webhook (verified by its own receiver) within
//! 90 s, and a SIGTERM must stop it cleanly, leaving no state behind.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::agent::free_addr;
use crate::common::curbside;

#[test]
fn the_demo_shows_the_page_and_delivers_a_signed_webhook_within_90_s() {
    let listen = free_addr();
    let mut child = curbside()
        .args(["demo", "--listen", &listen.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let delivered = loop {
        let left = Duration::from_secs(90).saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("office ← ") => break line,
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no webhook delivered within 90 s; the demo printed:\n{}", lines.join("\n"));
            }
        }
    };
    let page = format!("driver page      http://{listen}/");
    assert!(lines.iter().any(|l| l.contains(&page)), "{lines:#?}");
    let state = lines.iter().find_map(|l| l.trim().strip_prefix("state")).unwrap().trim().split(' ').next().unwrap();
    assert!(std::path::Path::new(state).is_dir(), "{state}");
    assert!(delivered.ends_with("signature ok"), "{delivered}");
    assert!(delivered.contains("arrived") && delivered.contains("by the geofence"), "{delivered}");

    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!std::path::Path::new(state).exists(), "the demo's state is removed on exit");
}
