//! Helpers shared by the benchmarks: the real binary, its peak memory, free ports, sizes.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Bytes under `p`, recursively.
#[allow(dead_code)] // not every bench reports sizes; each compiles this module on its own
pub fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() { dir_size(&e.path()) } else { m.len() }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Starts the real binary on `config`, quiet.
pub fn spawn_agent(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_curbside"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("agent starts")
}

/// Peak resident memory (VmHWM) of a process, in kB.
pub fn peak_rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:")
}

/// Resident memory now (VmRSS) of a process, in kB.
#[allow(dead_code)] // used by api_flood only; each bench compiles this module on its own
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// A `kB` field of `/proc/PID/status`; 0 when the process is gone.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
