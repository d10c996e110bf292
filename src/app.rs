//! The agent: builds every part from a validated [`Config`] before running anything, runs them
//! under one shutdown signal, and drains them under a grace timeout on SIGINT/SIGTERM or on the
//! first part that fails.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gps::clock::Clock;
use crate::gps::latest::LatestFix;
use crate::gps::source::{self, replay};

/// How long parts get to finish after shutdown is signalled.
const GRACE: Duration = Duration::from_secs(5);
/// How often the agent logs a one-line summary of the GPS.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Runs the agent until SIGINT/SIGTERM or until a part fails.
pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
    let latest = LatestFix::new(config.gps.stale_after);
    let clock = Clock::new(latest.clone(), config.gps.max_clock_skew);
    let shutdown = CancellationToken::new();

    tracing::info!(
        config = %config.origin,
        vehicle_id = %config.vehicle_id,
        gps = config.gps.source.kind(),
        state_dir = %config.state_dir.display(),
        "curbside starting"
    );
    let mut parts = JoinSet::new();
    {
        let (latest, shutdown) = (latest.clone(), shutdown.clone());
        let source = config.gps.source.clone();
        parts.spawn(async move { source::run(source, latest, shutdown).await.context("gps source failed") });
    }
    {
        let shutdown = shutdown.clone();
        parts.spawn(async move {
            summarise(latest, clock, shutdown).await;
            Ok(())
        });
    }

    let outcome = tokio::select! {
        s = shutdown_signal() => { tracing::info!(signal = s, "shutting down"); Ok(()) }
        Some(done) = parts.join_next() => match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("a part of the agent panicked: {e}")),
        },
    };
    shutdown.cancel();
    if tokio::time::timeout(GRACE, async { while parts.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(grace = ?GRACE, "parts still running after the grace period; stopping anyway");
    }
    tracing::info!("curbside stopped");
    outcome
}

/// Logs fix acquired/lost as it happens, and a summary line every [`SUMMARY_EVERY`].
async fn summarise(latest: LatestFix, clock: Clock, shutdown: CancellationToken) {
    let mut had_fix = false;
    let mut tick = tokio::time::interval(SUMMARY_EVERY);
    let mut changes = latest.subscribe();
    loop {
        let periodic = tokio::select! {
            _ = tick.tick() => true,
            r = changes.changed() => { if r.is_err() { return; } false }
            _ = shutdown.cancelled() => return,
        };
        let live = latest.live();
        if live.is_some() != had_fix {
            had_fix = live.is_some();
            match &live {
                Some(r) => tracing::info!(mode = ?r.fix.mode, sats = ?r.fix.sats, "gps fix acquired"),
                None => tracing::warn!("gps fix lost"),
            }
        }
        if periodic {
            let s = latest.snapshot();
            let c = clock.status();
            match live.and_then(|r| r.fix.position().map(|p| (p, r))) {
                Some(((lat, lon), r)) => tracing::info!(
                    lat = format_args!("{lat:.6}"),
                    lon = format_args!("{lon:.6}"),
                    speed_mps = format_args!("{:.1}", r.fix.speed_mps.unwrap_or(0.0)),
                    mode = ?r.fix.mode,
                    sats = ?r.fix.sats,
                    bad_sentences = s.stats.bad_sentences,
                    clock_trusted = c.trusted,
                    "gps"
                ),
                None => tracing::info!(
                    connected = s.connected,
                    last_known_age_s = s.last_valid.map(|r| r.age().as_secs()),
                    bad_sentences = s.stats.bad_sentences,
                    clock_trusted = c.trusted,
                    "gps: no fix"
                ),
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM, naming which.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// `curbside gps replay`: decodes `file` as fast as possible and writes one JSON object per fix.
pub fn gps_replay(file: &Path, out: &mut impl Write) -> anyhow::Result<crate::gps::DecodeStats> {
    let log = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut result = Ok(());
    let decoder = replay::decode_all(&log, |fix| {
        if result.is_ok() {
            result = serde_json::to_writer(&mut *out, &fix)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
        }
    });
    result.context("cannot write output")?;
    out.flush().context("cannot write output")?;
    Ok(decoder.stats())
}

/// `curbside gps watch`: runs the configured source and prints the live fix once a second.
pub async fn gps_watch(config: Config, json: bool, seconds: Option<u64>) -> anyhow::Result<()> {
    let latest = LatestFix::new(config.gps.stale_after);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(source::run(config.gps.source.clone(), latest.clone(), shutdown.clone()));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let deadline = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut out = std::io::stdout().lock();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
        let s = latest.snapshot();
        let live = latest.live();
        if json {
            let line = serde_json::json!({
                "live": live.as_ref().map(|r| &r.fix),
                "age_s": s.last.as_ref().map(|r| r.age().as_secs_f64()),
                "connected": s.connected,
                "stats": s.stats,
                "sky": s.sky,
            });
            writeln!(out, "{line}")?;
        } else {
            let sky = s.sky.as_ref().map(|k| format!("{}/{} sats tracked/in view", k.tracked(), k.in_view()));
            let line = match live.as_ref().and_then(|r| r.fix.position().map(|p| (p, r))) {
                Some(((lat, lon), r)) => format!(
                    "{:?} {lat:.6},{lon:.6} alt {} m, {:.1} m/s, hdop {}, {} used",
                    r.fix.mode,
                    r.fix.alt_m.map_or("-".into(), |a| format!("{a:.1}")),
                    r.fix.speed_mps.unwrap_or(0.0),
                    r.fix.hdop.map_or("-".into(), |h| h.to_string()),
                    r.fix.sats.map_or("-".into(), |n| n.to_string()),
                ),
                None if s.connected => "connected, no fix".to_string(),
                None => "not connected".to_string(),
            };
            writeln!(
                out,
                "{line}{}  (bad sentences: {})",
                sky.map(|k| format!(", {k}")).unwrap_or_default(),
                s.stats.bad_sentences
            )?;
        }
        out.flush()?;
        if task.is_finished() {
            break;
        }
    }
    shutdown.cancel();
    match tokio::time::timeout(GRACE, task).await {
        Ok(Ok(r)) => r.map_err(Into::into),
        _ => Ok(()),
    }
}
