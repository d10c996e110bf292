//! gpsd as a source: its JSON stream after `?WATCH={"enable":true,"json":true}` on TCP (port 2947
//! by default). TPV reports become fixes; SKY reports supply satellites used and HDOP.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{Backoff, sleep_or_shutdown};
use crate::gps::fix::{Fix, Mode};
use crate::gps::latest::LatestFix;

/// gpsd's reports are a few kB at most; a longer line is not gpsd and is skipped.
const MAX_LINE: usize = 64 * 1024;

/// The fields of gpsd's reports that make a fix (`class` TPV or SKY).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Report {
    class: String,
    mode: Option<u8>,
    time: Option<DateTime<Utc>>,
    lat: Option<f64>,
    lon: Option<f64>,
    #[serde(rename = "altMSL")]
    alt_msl: Option<f64>,
    alt: Option<f64>,
    speed: Option<f64>,
    track: Option<f64>,
    status: Option<u8>,
    hdop: Option<f64>,
    #[serde(rename = "uSat")]
    used: Option<u8>,
}

/// Turns gpsd reports into fixes, remembering the last SKY for satellites used and HDOP.
#[derive(Debug, Default)]
pub struct ReportDecoder {
    sats: Option<u8>,
    hdop: Option<f64>,
}

impl ReportDecoder {
    /// One line of gpsd JSON; returns a fix for a TPV report. Anything else, or anything
    /// malformed, gives `None`.
    pub fn line(&mut self, line: &str) -> Option<Fix> {
        let r: Report = serde_json::from_str(line).ok()?;
        match r.class.as_str() {
            "SKY" => {
                self.sats = r.used.or(self.sats);
                self.hdop = r.hdop.or(self.hdop);
                None
            }
            "TPV" => {
                let mode = match r.mode {
                    Some(3) => Mode::ThreeD,
                    Some(2) => Mode::TwoD,
                    _ => Mode::NoFix,
                };
                let mode = if r.lat.is_some() && r.lon.is_some() { mode } else { Mode::NoFix };
                let has = mode.has_position();
                Some(Fix {
                    time: r.time,
                    lat: r.lat.filter(|_| has),
                    lon: r.lon.filter(|_| has),
                    alt_m: r.alt_msl.or(r.alt).filter(|_| mode == Mode::ThreeD),
                    speed_mps: r.speed.filter(|_| has),
                    course_deg: r.track.filter(|_| has),
                    mode,
                    quality: r.status,
                    sats: self.sats,
                    hdop: self.hdop,
                })
            }
            _ => None,
        }
    }
}

/// Watches gpsd at `addr` until shutdown, reconnecting with backoff (capped at 5 s).
pub async fn run(addr: &str, latest: LatestFix, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let mut failures = 0u64;
    while !shutdown.is_cancelled() {
        match watch(addr, &latest, &shutdown, &mut backoff).await {
            Ok(()) => {}
            Err(e) => {
                if failures == 0 || failures.is_power_of_two() {
                    tracing::warn!(addr, error = %e, "gpsd unavailable; retrying");
                }
                failures += 1;
            }
        }
        latest.update(|s| s.connected = false);
        if !sleep_or_shutdown(backoff.next_delay(), &shutdown).await {
            break;
        }
    }
}

async fn watch(
    addr: &str,
    latest: &LatestFix,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(b"?WATCH={\"enable\":true,\"json\":true};\n").await?;
    tracing::info!(addr, "watching gpsd");
    backoff.reset();
    latest.update(|s| s.connected = true);
    let mut reader = BufReader::new(stream);
    let mut decoder = ReportDecoder::default();
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = tokio::select! {
            n = async { (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line).await } => n?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "gpsd closed the connection"));
        }
        if line.last() != Some(&b'\n') && n == MAX_LINE {
            // Over-long: skip the rest of that line.
            let mut sink = Vec::new();
            reader.read_until(b'\n', &mut sink).await?;
            continue;
        }
        if let Some(fix) = std::str::from_utf8(&line).ok().and_then(|l| decoder.line(l)) {
            latest.publish(fix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpv_becomes_a_fix_with_sky_data() {
        let mut d = ReportDecoder::default();
        assert!(d.line(r#"{"class":"SKY","hdop":1.31,"uSat":4}"#).is_none());
        let f = d
            .line(r#"{"class":"TPV","mode":3,"time":"2011-02-21T10:21:28.000Z","lat":51.48,"lon":6.53,"altMSL":29.7,"speed":0.1,"track":30.7}"#)
            .unwrap();
        assert_eq!(f.mode, Mode::ThreeD);
        assert_eq!((f.sats, f.hdop, f.alt_m), (Some(4), Some(1.31), Some(29.7)));
    }

    #[test]
    fn garbage_and_mode_1_give_no_position() {
        let mut d = ReportDecoder::default();
        assert!(d.line("not json").is_none());
        assert!(d.line(r#"{"class":"TPV","mode":"x"}"#).is_none());
        let f = d.line(r#"{"class":"TPV","mode":1,"lat":1.0,"lon":2.0}"#).unwrap();
        assert_eq!(f.position(), None);
    }
}
