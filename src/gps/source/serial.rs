//! NMEA over a serial port, surviving what real ports do: a device that does not exist yet, a
//! receiver unplugged and plugged back (reads fail with EIO or the port goes silent), line noise
//! and binary protocol bytes (handled by the framer).

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio_serial::SerialPortBuilderExt;
use tokio_util::sync::CancellationToken;

use super::{Backoff, Feed, sleep_or_shutdown};
use crate::gps::latest::LatestFix;

/// Timings of the serial reader; the defaults suit a 1–10 Hz receiver.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Silence after which the epoch in progress is complete: receivers send an epoch as one
    /// burst, so a pause this long means it has ended. Publishing then, rather than when the next
    /// epoch starts, keeps the live fix about one epoch fresher.
    pub epoch_gap: Duration,
    /// Silence after which the port is closed and reopened: some USB receivers vanish without an
    /// error on the open file.
    pub reopen_after_silence: Duration,
    /// First and longest wait between attempts to open. The longest is under a second, so a
    /// receiver plugged back in is read again within two seconds of its device reappearing.
    pub first_retry: Duration,
    /// See `first_retry`.
    pub max_retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            epoch_gap: Duration::from_millis(200),
            reopen_after_silence: Duration::from_secs(10),
            first_retry: Duration::from_millis(100),
            max_retry: Duration::from_millis(800),
        }
    }
}

/// Reads `device` until shutdown, reopening it whenever it fails or goes silent.
pub async fn run(device: PathBuf, baud: u32, timing: Timing, latest: LatestFix, shutdown: CancellationToken) {
    let mut feed = Feed::new("serial", latest);
    let mut backoff = Backoff::new(timing.first_retry, timing.max_retry);
    let mut open_failures = 0u64;
    let name = device.to_string_lossy().into_owned();
    while !shutdown.is_cancelled() {
        match tokio_serial::new(name.as_str(), baud).open_native_async() {
            Ok(port) => {
                tracing::info!(device = %name, baud, "serial port open");
                open_failures = 0;
                backoff.reset();
                feed.connected(true);
                let why = read_until_lost(port, &mut feed, timing, &shutdown).await;
                feed.connected(false);
                if let Some(why) = why {
                    tracing::warn!(device = %name, %why, "serial port lost; reopening");
                }
            }
            Err(e) => {
                // Log the first failure and then rarely: a receiver that is not plugged in is an
                // ordinary state, not an error to repeat ten times a second.
                if open_failures == 0 || open_failures.is_power_of_two() {
                    tracing::warn!(device = %name, error = %e, attempts = open_failures + 1, "cannot open serial port; retrying");
                }
                open_failures += 1;
            }
        }
        if !sleep_or_shutdown(backoff.next_delay(), &shutdown).await {
            break;
        }
    }
    feed.flush();
}

/// Reads until the port fails or goes silent (returns why) or shutdown (returns `None`).
async fn read_until_lost(
    mut port: tokio_serial::SerialStream,
    feed: &mut Feed,
    timing: Timing,
    shutdown: &CancellationToken,
) -> Option<String> {
    let mut buf = [0u8; 1024];
    let mut silent = Duration::ZERO;
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(timing.epoch_gap, port.read(&mut buf)) => r,
            _ = shutdown.cancelled() => return None,
        };
        match read {
            Ok(Ok(0)) => return Some("end of file".into()),
            Ok(Ok(n)) => {
                silent = Duration::ZERO;
                feed.bytes(&buf[..n]);
            }
            // EIO when the other end of a tty goes away; ENXIO/ENODEV when a USB device is pulled.
            Ok(Err(e)) => return Some(e.to_string()),
            Err(_elapsed) => {
                feed.flush();
                silent += timing.epoch_gap;
                if silent >= timing.reopen_after_silence {
                    return Some(format!("silent for {:?}", timing.reopen_after_silence));
                }
            }
        }
    }
}
