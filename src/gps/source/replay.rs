//! A receiver log played back, in real time (paced by the receiver's own timestamps) or as fast
//! as possible. Lines starting with `#` are comments, as in gpsd's regression logs.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Feed, SourceError, sleep_or_shutdown};
use crate::gps::decoder::NmeaDecoder;
use crate::gps::fix::Fix;
use crate::gps::latest::LatestFix;

/// Calls `f` with each line of `log` that is not a comment, line ending included.
pub fn data_lines<'a>(log: &'a [u8], mut f: impl FnMut(&'a [u8])) {
    for line in log.split_inclusive(|b| *b == b'\n') {
        if line.first() != Some(&b'#') {
            f(line);
        }
    }
}

/// Decodes a whole log as fast as possible, calling `on_fix` for each epoch in order.
pub fn decode_all(log: &[u8], mut on_fix: impl FnMut(Fix)) -> NmeaDecoder {
    let mut decoder = NmeaDecoder::new();
    data_lines(log, |line| decoder.feed(line, &mut on_fix, |_| {}));
    // A log that ends without a line ending still ends its sentence.
    decoder.feed(b"\n", &mut on_fix, |_| {});
    if let Some(fix) = decoder.finish_input() {
        on_fix(fix);
    }
    decoder
}

/// Plays `file` into `latest` at `speed` (0 = as fast as possible), then keeps the last fix (which
/// goes stale) until shutdown.
pub async fn run(file: &Path, speed: f64, latest: LatestFix, shutdown: CancellationToken) -> Result<(), SourceError> {
    let log = tokio::fs::read(file).await.map_err(|source| SourceError::Replay { path: file.to_path_buf(), source })?;
    let mut feed = Feed::new("replay", latest.clone());
    feed.connected(true);
    let mut previous: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut lines = Vec::new();
    data_lines(&log, |l| lines.push(l));
    for line in lines {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        if feed.bytes(line) == 0 || speed <= 0.0 {
            continue;
        }
        // Pace by the receiver's clock: the gap between this epoch and the previous one.
        let now = latest.snapshot().last.and_then(|r| r.fix.time);
        let gap = match (previous, now) {
            (Some(a), Some(b)) if b > a => (b - a).to_std().unwrap_or(Duration::from_secs(1)),
            _ => Duration::from_secs(1),
        };
        previous = now.or(previous);
        if !sleep_or_shutdown(gap.min(Duration::from_secs(10)).div_f64(speed), &shutdown).await {
            return Ok(());
        }
    }
    feed.bytes(b"\n");
    feed.flush();
    tracing::info!(file = %file.display(), "replay finished; the last fix will go stale");
    shutdown.cancelled().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_lines_are_skipped_even_if_they_look_like_nmea() {
        let log = b"# $GPGLL,5129.0623,N,00632.2910,E,102128,A*27\n$GPGLL,5129.0623,N,00632.2910,E,102128,A*27";
        let mut fixes = Vec::new();
        decode_all(log, |f| fixes.push(f));
        assert_eq!(fixes.len(), 1, "the comment is not a fix, the last line without newline is");
    }
}
