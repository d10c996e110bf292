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

/// How long a benchmark waits for progress before it gives up.
#[allow(dead_code)] // used by the telemetry benches only
pub const STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// A benchmark's wait for a figure that should keep moving (points left, points received): it
/// gives up with a message saying what stalled, where, and for how long, once the figure has not
/// changed for [`STALL`], instead of hanging.
#[allow(dead_code)] // used by the telemetry benches only
pub struct Stall {
    what: &'static str,
    last: Option<u64>,
    since: std::time::Instant,
}

#[allow(dead_code)] // used by the telemetry benches only
impl Stall {
    /// Waiting for `what` (a phrase: "the agent's backlog to drain").
    pub fn new(what: &'static str) -> Stall {
        Stall { what, last: None, since: std::time::Instant::now() }
    }

    /// The figure now; an error naming what stalled once it has not moved for [`STALL`].
    pub fn check(&mut self, figure: Option<u64>) -> Result<(), String> {
        if figure != self.last {
            self.last = figure;
            self.since = std::time::Instant::now();
            return Ok(());
        }
        if self.since.elapsed() < STALL {
            return Ok(());
        }
        Err(format!(
            "gave up waiting for {}: stuck at {} for {} s (a backlog older than the agent's age limit, \
             or a peer that stopped answering)",
            self.what,
            figure.map_or("no answer".into(), |f| f.to_string()),
            STALL.as_secs()
        ))
    }
}

/// Starts the real binary on `config`, quiet.
#[allow(dead_code)] // not every bench spawns the agent; each compiles this module on its own
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

/// mosquitto (a process of its own) with `conf` as its configuration, once `port` answers.
#[allow(dead_code)] // used by the MQTT benches only; each bench compiles this module on its own
pub fn mosquitto(dir: &Path, conf: &str, port: u16) -> Child {
    let path = dir.join("mosquitto.conf");
    std::fs::write(&path, conf).unwrap();
    let bin = if Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run mosquitto ({e}); Debian: apt-get install mosquitto"));
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("mosquitto did not start");
}

/// Peak resident memory (VmHWM) of a process, in kB.
#[allow(dead_code)] // not every bench reports memory; each compiles this module on its own
pub fn peak_rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:")
}

/// Resident memory now (VmRSS) of a process, in kB.
#[allow(dead_code)] // used by api_flood and outbox only; each bench compiles this module on its own
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

/// CPU time (user and system) a process has used so far, in seconds; 0 when it is gone.
#[allow(dead_code)] // used by outbox only; each bench compiles this module on its own
pub fn cpu_s(pid: u32) -> f64 {
    // /proc/PID/stat: fields 14 and 15 (utime, stime), in clock ticks, after the `(comm)`
    // that may hold spaces.
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| {
        let rest = s.get(s.rfind(')')? + 2..)?.to_string();
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    });
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks.unwrap_or(0) as f64 / hz
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Buffered position number `i` of a van on its round, five seconds apart from six days before
/// the run (100,000 of them end five hours before it): inside the backlog's 7-day age limit on
/// whatever day the benchmark runs.
#[allow(dead_code)] // used by the telemetry benches only
pub fn point(i: i64) -> curbside::telemetry::Point {
    static START: std::sync::OnceLock<chrono::DateTime<chrono::Utc>> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        let t = chrono::Utc::now() - chrono::Duration::days(6);
        t - chrono::Duration::nanoseconds(t.timestamp_subsec_nanos().into())
    });
    let t = start + chrono::Duration::seconds(5 * i);
    curbside::telemetry::Point {
        id: Some(uuid::Uuid::now_v7()),
        tst: t.timestamp(),
        trigger: curbside::telemetry::rules::Trigger::Distance,
        fix: curbside::gps::Fix {
            time: Some(t),
            lat: Some(53.55 + (i % 1000) as f64 * 1e-4),
            lon: Some(9.99 + (i % 777) as f64 * 1e-4),
            alt_m: Some(12.3),
            speed_mps: Some(8.4),
            course_deg: Some(271.5),
            mode: curbside::gps::Mode::ThreeD,
            quality: Some(1),
            sats: Some(11),
            hdop: Some(0.8),
        },
    }
}

/// Buffers positions 0..n in the telemetry ring of the store at `state` (with these endpoints),
/// as a van out of coverage would, and waits for sled to let go of the store. Returns them.
#[allow(dead_code)] // used by the telemetry benches only
pub async fn buffer(
    state: &Path,
    n: i64,
    endpoints: Vec<curbside::outbox::EndpointFilter>,
) -> Vec<curbside::telemetry::Point> {
    let points: Vec<_> = (0..n).map(point).collect();
    {
        let outbox = curbside::outbox::Outbox::open(state, endpoints).unwrap();
        let limits = curbside::outbox::RingLimits {
            max_points: n as u64,
            max_bytes: u64::MAX,
            max_age: std::time::Duration::from_secs(1 << 40),
        };
        for p in &points {
            outbox.ring().push(p.tst, &serde_json::to_vec(p).unwrap(), limits, Some(p.tst)).unwrap();
        }
        outbox.flush().await.unwrap();
        assert_eq!(outbox.ring().stats().points, n as u64);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await; // sled's threads let go of the lock
    points
}
