//! `curbside gps replay` and `curbside gps watch`: the GPS decoder at the bench.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gps::LatestFix;
use crate::gps::source::{self, replay};

/// How long the source gets to stop after Ctrl-C.
const GRACE: Duration = Duration::from_secs(5);

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

/// `curbside gps watch`: what the running agent sees, from its status, once a second.
pub async fn gps_watch_agent(
    client: &super::client::ApiClient,
    json: bool,
    seconds: Option<u64>,
) -> anyhow::Result<()> {
    let deadline = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut out = std::io::stdout().lock();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok(());
        }
        let status = match client.status().await {
            Ok(s) => s,
            Err(e) => {
                anyhow::bail!("{e:#}\n(to open the receiver directly, with no agent running: gps watch --source)")
            }
        };
        let g = &status.gps;
        if json {
            writeln!(out, "{}", serde_json::to_string(g)?)?;
        } else {
            let line = match g.fix.as_ref().and_then(|f| f.position().map(|p| (p, f))) {
                Some(((lat, lon), f)) => fix_line(f, lat, lon),
                None if g.connected => "connected, no fix".to_string(),
                None => "not connected".to_string(),
            };
            writeln!(out, "{line}  ({} source; bad sentences: {})", g.source, g.bad_sentences)?;
        }
        out.flush()?;
    }
}

/// `curbside gps watch --source`: runs the configured source and prints the live fix once a second.
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
                Some(((lat, lon), r)) => fix_line(&r.fix, lat, lon),
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

/// One fix with a position, for a human: `3d 53.550730,9.993020 alt 12.0 m, 11.1 m/s, hdop 0.9, 9 used`.
fn fix_line(f: &crate::gps::Fix, lat: f64, lon: f64) -> String {
    format!(
        "{} {lat:.6},{lon:.6} alt {} m, {:.1} m/s, hdop {}, {} used",
        f.mode,
        f.alt_m.map_or("-".into(), |a| format!("{a:.1}")),
        f.speed_mps.unwrap_or(0.0),
        f.hdop.map_or("-".into(), |h| h.to_string()),
        f.sats.map_or("-".into(), |n| n.to_string()),
    )
}
