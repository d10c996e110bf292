//! The GPS in the log: fix acquired and lost as it happens, and one summary line at a steady pace.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::latest::LatestFix;

/// Logs fix acquired/lost as it happens, and a summary line every `every`.
pub async fn run(latest: LatestFix, clock: Clock, every: Duration, shutdown: CancellationToken) {
    let mut had_fix = false;
    let mut tick = tokio::time::interval(every);
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
                Some(r) => tracing::info!(mode = %r.fix.mode, sats = r.fix.sats, "gps fix acquired"),
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
                    mode = %r.fix.mode,
                    sats = r.fix.sats,
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
