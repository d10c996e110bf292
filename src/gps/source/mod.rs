//! Where fixes come from. Every source ends in the same place: fixes published to a
//! [`LatestFix`]. Byte sources (serial, replay, sim) share one [`Feed`]: the NMEA decoder plus
//! counting and rate-limited logging of bad sentences.

pub mod gpsd;
pub mod replay;
pub mod serial;
pub mod sim;

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::decoder::{BadSentence, NmeaDecoder};
use super::fix::Fix;
use super::latest::LatestFix;

/// A validated GPS source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    /// NMEA on a serial device.
    Serial {
        /// Device path, e.g. `/dev/ttyACM0`; it may not exist yet.
        device: PathBuf,
        /// Baud rate.
        baud: u32,
    },
    /// A gpsd daemon's JSON watch stream.
    Gpsd {
        /// `host:port`.
        addr: String,
    },
    /// A receiver log played back.
    Replay {
        /// The log file.
        file: PathBuf,
        /// 1.0 is real time, 2.0 twice as fast, 0 as fast as possible.
        speed: f64,
    },
    /// A deterministic simulated delivery route.
    Sim {
        /// 1.0 is real time.
        speed: f64,
    },
}

impl SourceConfig {
    /// How many seconds of the source's route pass per second of real time: a replay's or
    /// simulation's `speed` (an as-fast-as-possible replay counts as 1), 1 for a receiver.
    pub fn time_scale(&self) -> f64 {
        match self {
            SourceConfig::Replay { speed, .. } | SourceConfig::Sim { speed } if *speed > 0.0 => *speed,
            _ => 1.0,
        }
    }

    /// Short name for logs and status.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Serial { .. } => "serial",
            SourceConfig::Gpsd { .. } => "gpsd",
            SourceConfig::Replay { .. } => "replay",
            SourceConfig::Sim { .. } => "sim",
        }
    }
}

/// Errors that end a source for good (transient ones are retried inside the source).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A replay file could not be read.
    #[error("cannot read replay file {path}: {source}")]
    Replay {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the configured source until `shutdown`, publishing into `latest`.
pub async fn run(config: SourceConfig, latest: LatestFix, shutdown: CancellationToken) -> Result<(), SourceError> {
    match config {
        SourceConfig::Serial { device, baud } => {
            serial::run(device, baud, serial::Timing::default(), latest, shutdown).await;
            Ok(())
        }
        SourceConfig::Gpsd { addr } => {
            gpsd::run(&addr, latest, shutdown).await;
            Ok(())
        }
        SourceConfig::Replay { file, speed } => replay::run(&file, speed, latest, shutdown).await,
        SourceConfig::Sim { speed } => {
            sim::run(sim::Route::demo(), speed, latest, shutdown).await;
            Ok(())
        }
    }
}

/// How often a burst of bad sentences is summarised at `warn` (each one is logged at `debug`).
const BAD_LOG_EVERY: Duration = Duration::from_secs(60);

/// Bytes → fixes → `latest`, with counters and logging shared by the byte sources.
#[derive(Debug)]
pub struct Feed {
    decoder: NmeaDecoder,
    latest: LatestFix,
    last_warn: Option<Instant>,
    source: &'static str,
}

impl Feed {
    /// A feed for the named source, publishing to `latest`.
    pub fn new(source: &'static str, latest: LatestFix) -> Self {
        Self { decoder: NmeaDecoder::with_sky(), latest, last_warn: None, source }
    }

    /// Feeds bytes; publishes each completed fix and returns how many there were.
    pub fn bytes(&mut self, bytes: &[u8]) -> usize {
        let mut fixes: Vec<Fix> = Vec::new();
        let mut bad: Option<BadSentence> = None;
        self.decoder.feed(bytes, |f| fixes.push(f), |b| bad = Some(b));
        if let Some(b) = bad {
            self.log_bad(b);
        }
        let n = fixes.len();
        for fix in fixes {
            self.latest.publish(fix);
        }
        self.sync_stats();
        n
    }

    /// Ends the epoch in progress (the receiver went quiet) and publishes it.
    pub fn flush(&mut self) -> Option<Fix> {
        let fix = self.decoder.flush()?;
        self.latest.publish(fix.clone());
        self.sync_stats();
        Some(fix)
    }

    /// Marks the source connected or not.
    pub fn connected(&self, connected: bool) {
        self.latest.update(|s| s.connected = connected);
    }

    fn sync_stats(&self) {
        let stats = self.decoder.stats();
        let sky = self.decoder.sky().cloned();
        self.latest.update(|s| {
            s.stats = stats;
            if sky.as_ref().is_some_and(|k| k.in_view() > 0) {
                s.sky = sky;
            }
        });
    }

    fn log_bad(&mut self, bad: BadSentence) {
        let total = self.decoder.stats().bad_sentences;
        tracing::debug!(source = self.source, ?bad, total, "bad sentence dropped");
        let due = self.last_warn.is_none_or(|t| t.elapsed() >= BAD_LOG_EVERY);
        if due {
            self.last_warn = Some(Instant::now());
            tracing::warn!(source = self.source, ?bad, total, "dropping bad NMEA sentences (counted in status)");
        }
    }
}

/// Capped exponential backoff for reconnecting.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    first: Duration,
    cap: Duration,
}

impl Backoff {
    /// Starts at `first`, doubles, never exceeds `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self { next: first, first, cap }
    }

    /// The delay to wait now; the one after is longer, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Sleeps for `d` unless shutdown comes first; returns false on shutdown.
pub async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let got: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
