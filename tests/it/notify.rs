//! systemd's notify protocol, for real: the test owns the notify socket, runs the binary with
//! `NOTIFY_SOCKET` and `WATCHDOG_USEC` as systemd would set them, and reads what arrives.

use std::os::unix::net::UnixDatagram;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::common::agent::{config_text, free_addr};

struct Agent {
    child: Child,
    sock: UnixDatagram,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(stall: Option<&str>) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let sock_path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let config = dir.path().join("curbside.toml");
        let api = format!("listen = \"{}\"", free_addr());
        std::fs::write(&config, config_text(&dir.path().join("state"), "source = \"sim\"", &api, "")).unwrap();
        let mut cmd = crate::common::run_agent(&config);
        cmd.env("NOTIFY_SOCKET", &sock_path).env("WATCHDOG_USEC", "1000000");
        if let Some(part) = stall {
            cmd.env("CURBSIDE_DEBUG_STALL", part);
        }
        Agent { child: cmd.spawn().unwrap(), sock, _dir: dir }
    }

    /// Reads until `line` arrives (panics after `limit`); returns when it did.
    fn read_until(&self, limit: Duration, line: &str) -> Instant {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == line) {
                    return Instant::now();
                }
            }
        }
        panic!("no {line} within {limit:?}");
    }

    /// Every message received for `d`, with when it arrived.
    fn read_for(&self, d: Duration) -> Vec<(Instant, String)> {
        let end = Instant::now() + d;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    out.push((Instant::now(), line.to_string()));
                }
            }
        }
        out
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(msgs: &[(Instant, String)], what: &str) -> usize {
    msgs.iter().filter(|(_, m)| m == what).count()
}

#[test]
fn ready_status_and_a_watchdog_that_beats_while_every_loop_is_alive() {
    let agent = Agent::start(None);
    let msgs = agent.read_for(Duration::from_secs(4));
    let ready = msgs.iter().position(|(_, m)| m == "READY=1").expect("READY=1");
    assert!(msgs[..ready].iter().all(|(_, m)| m != "WATCHDOG=1"), "no watchdog before ready: {msgs:?}");
    let status: Vec<&String> = msgs.iter().map(|(_, m)| m).filter(|m| m.starts_with("STATUS=")).collect();
    assert!(status.iter().any(|m| m.contains("outbox 0 events")), "a status summary: {status:?}");
    // WATCHDOG_USEC=1 s: a ping every half second, never a second without one.
    let pings: Vec<Instant> = msgs.iter().filter(|(_, m)| m == "WATCHDOG=1").map(|(t, _)| *t).collect();
    assert!(pings.len() >= 3, "{} pings in 4 s: {msgs:?}", pings.len());
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g < Duration::from_secs(1)), "gaps between pings: {gaps:?}");
}

#[test]
fn the_watchdog_stops_when_a_main_loop_is_stuck() {
    // The GPS loop's thread blocks 2 s after start (debug builds only, CURBSIDE_DEBUG_STALL).
    let mut agent = Agent::start(Some("gps"));
    let ready = agent.read_until(Duration::from_secs(20), "READY=1");
    let early = agent.read_for(Duration::from_millis(1500));
    assert!(count(&early, "WATCHDOG=1") >= 1, "beats before the stall: {early:?}");
    // Stalled about 2 s after READY; stuck once its beat is half a watchdog interval old, so
    // from 3.5 s after READY on nothing may arrive, while the process lives on.
    let _ = agent.read_for((ready + Duration::from_millis(3500)).saturating_duration_since(Instant::now()));
    let late = agent.read_for(Duration::from_secs(3));
    assert_eq!(count(&late, "WATCHDOG=1"), 0, "the watchdog kept beating: {late:?}");
    assert!(agent.child.try_wait().unwrap().is_none(), "alive as a process, stuck as an agent");
}

/// A reload is `RELOADING=1` with `MONOTONIC_USEC`, then `READY=1`; never `STOPPING=1`, which
/// systemd takes for a stop (it then kills the service and reports the reload as failed). A
/// stop for SIGTERM is `STOPPING=1`.
#[test]
fn sighup_is_reloading_then_ready_and_sigterm_is_stopping() {
    let agent = Agent::start(None);
    agent.read_until(Duration::from_secs(30), "READY=1");
    let pid = agent.child.id().to_string();
    std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let msgs = agent.read_for(Duration::from_secs(4));
    let reloading = msgs.iter().position(|(_, m)| m == "RELOADING=1").unwrap_or_else(|| panic!("{msgs:?}"));
    let usec: u64 = msgs
        .iter()
        .find_map(|(_, m)| m.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("MONOTONIC_USEC with RELOADING=1: {msgs:?}"));
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    let now_usec = now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000;
    assert!(usec <= now_usec && now_usec - usec < 10_000_000, "MONOTONIC_USEC {usec} is CLOCK_MONOTONIC ({now_usec})");
    assert!(msgs[reloading..].iter().any(|(_, m)| m == "READY=1"), "READY=1 after the reload: {msgs:?}");
    assert_eq!(count(&msgs, "STOPPING=1"), 0, "a reload is not a stop: {msgs:?}");
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    agent.read_until(Duration::from_secs(10), "STOPPING=1");
}
