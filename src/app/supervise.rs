//! The agent under its service manager: the parts run as watched loops (a stuck one withholds
//! systemd's watchdog), `STATUS=` lines, and [`run`]: signals, reload on SIGHUP, the restart
//! that compacts the store.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::health::{Health, Notifier, watched};
use crate::outbox::Outbox;
use crate::status::Sources;

/// Sends `WATCHDOG=1` every half watchdog interval while every main loop and the commit thread
/// are alive, and a `STATUS=` line every [`SUMMARY_EVERY`]. A stuck loop is logged once.
pub(super) async fn watchdog_loop(
    health: Health,
    outbox: Outbox,
    notifier: Notifier,
    watchdog: Option<Duration>,
    line: Sources,
    shutdown: CancellationToken,
) {
    let period = watchdog.map_or(health.every(), |w| w / 2);
    let budget = watchdog.map_or(health.every() * 3, |w| w / 2);
    // The first beat comes a period after start, after READY=1.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut last_status: Option<tokio::time::Instant> = None;
    let mut was_stuck = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let mut stuck = health.stuck(budget);
        let silence = outbox.commit_thread_silence();
        if silence > budget {
            stuck.push(("outbox commit thread".into(), silence));
        }
        if stuck.is_empty() {
            if watchdog.is_some() {
                notifier.send("WATCHDOG=1");
            }
            if was_stuck {
                tracing::warn!("every main loop is alive again");
            }
            was_stuck = false;
        } else if !was_stuck {
            was_stuck = true;
            let names: Vec<String> = stuck.iter().map(|(n, ago)| format!("{n} ({:.1} s)", ago.as_secs_f64())).collect();
            tracing::error!(stuck = %names.join(", "), "a main loop is stuck: withholding the systemd watchdog");
        }
        if notifier.enabled() && last_status.is_none_or(|t| t.elapsed() >= SUMMARY_EVERY) {
            last_status = Some(tokio::time::Instant::now());
            notifier.send(&format!("STATUS={}", line.snapshot().line()));
        }
    }
}

/// The agent's running parts, under one shutdown.
pub(super) struct Parts {
    pub(super) set: JoinSet<anyhow::Result<()>>,
    pub(super) health: Health,
    pub(super) every: Duration,
}

impl Parts {
    /// Spawns a main loop as a watched part: it beats while its task is being polled (see
    /// [`health`]), so a stuck loop stops the systemd watchdog.
    pub(super) fn spawn_watched(&mut self, name: &str, fut: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        let beat = self.health.register(name);
        self.set.spawn(watched(beat, self.every, stall_for_tests(name.to_string(), fut)));
    }
}

/// Debug builds only: `CURBSIDE_DEBUG_STALL=PART` blocks that part's thread 2 s after start,
/// inside its loop, so that the notify test can see the watchdog stop. Release builds (and debug
/// builds without the variable) run `fut` as it is.
async fn stall_for_tests<T>(part: String, fut: impl std::future::Future<Output = T>) -> T {
    #[cfg(debug_assertions)]
    if std::env::var("CURBSIDE_DEBUG_STALL").is_ok_and(|p| p == part) {
        tokio::select! {
            r = fut => return r,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                tracing::warn!(part, "CURBSIDE_DEBUG_STALL: blocking this part's thread");
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        unreachable!("the stalled part never resumes");
    }
    let _ = part;
    fut.await
}

/// Runs the agent until SIGINT/SIGTERM or until a part fails.
///
/// On SIGHUP the config is read again from `config_file` (when there is one) and, if it is
/// valid, every part is stopped (each finishes within the grace period; the outbox is flushed)
/// and started again on the new config: webhook endpoints, telemetry rules, everything. Queued
/// events and positions are on disk and carry on; taps in the fraction of a second between
/// stop and start are refused (connection refused) and are retried by their client. An invalid
/// config is logged and changes nothing.
///
/// A store that holds far more disk than records (see [`crate::outbox::compact`]) is compacted
/// by executing the agent again (same PID, same arguments) once the outbox has been quiet for a
/// minute: the store is rewritten as it opens.
pub async fn run(config: Config, config_file: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let supervision = Supervision::from_env();
    // Every signal is watched before anything starts: a SIGTERM during start-up (systemd stopping
    // a unit that is still starting) is then a graceful stop once the parts run, not the
    // default action's abrupt exit.
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut config = config;
    loop {
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
        let mut running = start_again(&config, &supervision).await?;
        let compaction = running.compaction.clone();
        let next = loop {
            tokio::select! {
                s = async {
                    tokio::select! {
                        _ = terminate.recv() => "SIGTERM",
                        _ = interrupt.recv() => "SIGINT",
                    }
                } => {
                    tracing::info!(signal = s, "shutting down");
                    supervision.notifier.send("STOPPING=1");
                    return running.stop().await;
                }
                r = running.finished() => return r,
                _ = compaction.notified() => break None,
                _ = hangup.recv() => {
                    let Some(file) = &config_file else {
                        tracing::warn!("SIGHUP: running on embedded defaults, no config file to reload");
                        continue;
                    };
                    match Config::load(file) {
                        Ok(c) => break Some(c),
                        Err(e) => {
                            tracing::error!(error = %e, "SIGHUP: the new config is invalid; still running on the old one");
                            supervision.notifier.send(&format!("STATUS=reload refused: {e}"));
                        }
                    }
                }
            }
        };
        let Some(next) = next else {
            // A fresh process, not a restart in this one: sled 0.34 does not give back all the
            // memory of a closed store (sled#1466; measured here: RSS rose by about 3 MB with
            // each in-process reopen), so the agent executes itself again, keeping its PID,
            // and the store is compacted as it opens. systemd sees a reload: RELOADING=1 now,
            // READY=1 from the new process.
            tracing::info!("restarting as a fresh process to compact the outbox");
            supervision.notifier.send(&health::reloading_message());
            running.stop().await?;
            return Err(reexecute());
        };
        tracing::info!(config = %next.origin, "SIGHUP: reloading: restarting every part on the new config");
        // systemd (253+) matches the reload to this message by its timestamp; the new parts
        // send READY=1 once they run. STOPPING=1 here would make systemd take it for a stop.
        supervision.notifier.send(&health::reloading_message());
        running.stop().await?;
        config = next;
    }
}

/// Replaces this process with a fresh run of the same binary and arguments (same PID, same
/// environment). Returns only if that failed.
fn reexecute() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        // Replaced since it started (a package upgrade): Linux names the old file
        // "PATH (deleted)"; the new one at PATH is what should run. (Found by the fill/drain
        // run, whose binary a rebuild replaced: the re-execution failed and the agent exited.)
        Ok(exe) => match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(path) => std::path::PathBuf::from(path),
            None => exe,
        },
        Err(e) => return anyhow::anyhow!("cannot find this binary to execute it again: {e}"),
    };
    let err = std::process::Command::new(&exe).args(std::env::args_os().skip(1)).exec();
    anyhow::anyhow!("cannot execute {} again: {err}", exe.display())
}

/// Starts the agent; after a reload, waits (up to 5 s) for the previous store handle to let go
/// of its lock (sled's flusher thread ends within its flush interval after the last handle).
async fn start_again(config: &Config, supervision: &Supervision) -> anyhow::Result<Running> {
    let locked = |e: &anyhow::Error| {
        e.chain().any(|c| {
            matches!(c.downcast_ref::<crate::outbox::OutboxError>(), Some(crate::outbox::OutboxError::Locked(_)))
        })
    };
    let mut tries = 0;
    loop {
        match start_supervised(config.clone(), supervision.clone()).await {
            Err(e) if locked(&e) && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}
