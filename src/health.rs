//! Liveness of the agent's main loops, and systemd's notify protocol built on it.
//!
//! Each main loop runs [`watched`]: its task records a beat every time it is polled, and is woken
//! at least every [`Health::every`] so that an idle loop (waiting for a fix, a tap, a broker) keeps
//! beating. A loop whose thread is stuck inside it (a blocking call that never returns, a
//! deadlock on a lock, a spin) stops beating. The watchdog sends `WATCHDOG=1` only while every
//! loop, and the outbox's commit thread, beat within the budget (half the watchdog interval); so
//! systemd restarts an agent that is alive as a process but no longer working.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Without a systemd watchdog, loops still beat this often (for status).
const DEFAULT_EVERY: Duration = Duration::from_secs(5);

/// The registry of main loops.
#[derive(Debug, Clone)]
pub struct Health {
    parts: Arc<Mutex<Vec<Arc<Part>>>>,
    origin: Instant,
    every: Duration,
}

#[derive(Debug)]
struct Part {
    name: String,
    last_ms: AtomicU64,
}

/// A loop's handle for recording that it is alive.
#[derive(Debug, Clone)]
pub struct Beat {
    part: Arc<Part>,
    origin: Instant,
}

impl Beat {
    /// The loop is alive now.
    pub fn tick(&self) {
        self.part.last_ms.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl Health {
    /// Loops beat at least every `every`.
    pub fn new(every: Duration) -> Health {
        Health { parts: Arc::default(), origin: Instant::now(), every }
    }

    /// The beat interval for a systemd watchdog of `watchdog` (a quarter of it, at most 5 s).
    pub fn for_watchdog(watchdog: Option<Duration>) -> Health {
        Health::new(watchdog.map_or(DEFAULT_EVERY, |w| (w / 4).clamp(Duration::from_millis(50), DEFAULT_EVERY)))
    }

    /// How often idle loops are woken to beat.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// Registers a loop; it counts as alive from now.
    pub fn register(&self, name: impl Into<String>) -> Beat {
        let part = Arc::new(Part { name: name.into(), last_ms: AtomicU64::new(0) });
        let beat = Beat { part: part.clone(), origin: self.origin };
        beat.tick();
        if let Ok(mut p) = self.parts.lock() {
            p.push(part);
        }
        beat
    }

    /// Loops that have not beaten within `budget`, with how long ago they last did.
    pub fn stuck(&self, budget: Duration) -> Vec<(String, Duration)> {
        let now = self.origin.elapsed().as_millis() as u64;
        let parts = self.parts.lock().map(|p| p.clone()).unwrap_or_default();
        parts
            .iter()
            .filter_map(|p| {
                let ago = Duration::from_millis(now.saturating_sub(p.last_ms.load(Ordering::Relaxed)));
                (ago > budget).then(|| (p.name.clone(), ago))
            })
            .collect()
    }
}

/// Runs `fut` as a watched loop: a beat on every poll, and a wake-up every `health.every()`.
pub async fn watched<F: Future>(beat: Beat, every: Duration, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    std::future::poll_fn(|cx| {
        beat.tick();
        while tick.poll_tick(cx).is_ready() {}
        fut.as_mut().poll(cx)
    })
    .await
}

/// systemd's notify socket (`NOTIFY_SOCKET`), if the agent runs under systemd `Type=notify`.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<PathBuf>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; a path, or `@name` for an abstract socket.
    pub fn from_env() -> Notifier {
        Notifier { socket: std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from) }
    }

    /// True when there is somewhere to send to.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends one datagram of `KEY=VALUE` lines. Failures are logged, never fatal.
    pub fn send(&self, msg: &str) {
        let Some(path) = &self.socket else { return };
        if let Err(e) = send_to(path, msg) {
            tracing::debug!(error = %e, "cannot notify systemd");
        }
    }
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (CLOCK_MONOTONIC now), as sd_notify(3) documents for a
/// service that reloads in process.
pub fn reloading_message() -> String {
    let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0);
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

fn send_to(path: &std::path::Path, msg: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_os_str().as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        return Err(std::io::Error::other("abstract sockets need Linux"));
    }
    sock.send_to(msg.as_bytes(), path)?;
    Ok(())
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this PID), if any.
pub fn watchdog_from_env() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok()) {
        if pid != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_watched_loop_keeps_beating_and_a_stuck_one_does_not() {
        let health = Health::new(Duration::from_millis(100));
        let idle = health.register("idle");
        let task = tokio::spawn(watched(idle, health.every(), std::future::pending::<()>()));
        // A loop that registered and is never polled again stands for one stuck inside a call.
        let _stuck = health.register("stuck");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let stuck: Vec<String> = health.stuck(Duration::from_millis(250)).into_iter().map(|(n, _)| n).collect();
        assert_eq!(stuck, ["stuck"]);
        task.abort();
    }
}
