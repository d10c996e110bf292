//! Time for event stamps: GPS time from the receiver, and whether the system clock can be
//! trusted. A Raspberry Pi has no RTC: it boots on the time it last saved, and keeps it until NTP
//! answers, which in a van with no signal may be never.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use super::latest::{LatestFix, Received};

/// Where a timestamp came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockSource {
    /// The receiver's UTC, advanced by the monotonic time since the fix arrived.
    Gps,
    /// The system clock.
    System,
}

/// The verdict on the system clock, with the reason, for status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClockStatus {
    /// True when the system clock may be used for stamps.
    pub trusted: bool,
    /// Why (one short phrase).
    pub reason: String,
    /// System clock minus GPS time, seconds, when GPS time is known.
    pub offset_s: Option<f64>,
}

/// No real clock reads earlier than this (this release's date); a Pi that has not been told the
/// time yet does, and so do receivers with the GPS week-rollover bug.
pub fn floor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap_or_default()
}

/// Decides whether the system clock can be trusted: it must not be before [`floor`], and when
/// the receiver has given a plausible UTC, it must agree with it within `max_skew`.
pub fn judge(system_now: DateTime<Utc>, gps: Option<&Received>, max_skew: Duration) -> ClockStatus {
    let gps = gps.and_then(|r| r.fix.time.filter(|t| *t >= floor()).map(|t| (t, r.system_at)));
    let offset_s = gps.map(|(t, sys)| (sys - t).num_milliseconds() as f64 / 1000.0);
    let (trusted, reason) = if system_now < floor() {
        (false, format!("system clock reads {system_now}, before {}: not set since boot", floor().date_naive()))
    } else if let Some(off) = offset_s.filter(|o| o.abs() > max_skew.as_secs_f64()) {
        (false, format!("system clock is {off:+.1} s off GPS time"))
    } else if offset_s.is_some() {
        (true, "agrees with GPS time".to_string())
    } else {
        (true, "no GPS time to check against".to_string())
    };
    ClockStatus { trusted, reason, offset_s }
}

/// Stamps events with the best time available.
#[derive(Debug, Clone)]
pub struct Clock {
    latest: LatestFix,
    max_skew: Duration,
}

impl Clock {
    /// A clock that checks the system time against the fixes in `latest`.
    pub fn new(latest: LatestFix, max_skew: Duration) -> Self {
        Self { latest, max_skew }
    }

    /// The system clock's verdict now.
    pub fn status(&self) -> ClockStatus {
        judge(Utc::now(), self.latest.last().as_ref(), self.max_skew)
    }

    /// Now, and where it came from: the system clock when trusted, otherwise GPS time carried
    /// forward by the monotonic clock; the untrusted system clock only when there is no GPS time.
    pub fn now(&self) -> (DateTime<Utc>, ClockSource) {
        let last = self.latest.last();
        let system = Utc::now();
        if judge(system, last.as_ref(), self.max_skew).trusted {
            return (system, ClockSource::System);
        }
        match last.and_then(|r| r.fix.time.filter(|t| *t >= floor()).map(|t| (t, r.age()))) {
            Some((t, age)) => (t + chrono::Duration::from_std(age).unwrap_or_default(), ClockSource::Gps),
            None => (system, ClockSource::System),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gps::fix::{Fix, Mode};

    fn received(gps: DateTime<Utc>, system: DateTime<Utc>) -> Received {
        Received {
            fix: Fix { time: Some(gps), mode: Mode::ThreeD, ..Fix::default() },
            at: tokio::time::Instant::now(),
            system_at: system,
        }
    }

    fn t(y: i32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, 12, 1, 10, 0, s).unwrap()
    }

    #[test]
    fn a_clock_before_the_floor_is_untrusted() {
        let s = judge(t(1970, 0), None, Duration::from_secs(2));
        assert!(!s.trusted, "{s:?}");
    }

    #[test]
    fn a_clock_that_disagrees_with_gps_is_untrusted_and_one_that_agrees_is_trusted() {
        let skew = Duration::from_secs(2);
        assert!(!judge(t(2026, 30), Some(&received(t(2026, 0), t(2026, 30))), skew).trusted);
        assert!(judge(t(2026, 1), Some(&received(t(2026, 0), t(2026, 1))), skew).trusted);
    }

    #[test]
    fn gps_time_before_the_floor_is_ignored_as_week_rollover() {
        let s = judge(t(2026, 0), Some(&received(t(2007, 0), t(2026, 0))), Duration::from_secs(2));
        assert!(s.trusted);
        assert_eq!(s.offset_s, None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_untrusted_clock_stamps_with_gps_time_advanced_by_the_fix_age() {
        let latest = LatestFix::new(Duration::from_secs(10));
        // A receiver two years ahead of the system clock: the system clock is wrong.
        let gps_time = Utc::now() + chrono::Duration::days(730);
        latest.publish(Fix {
            time: Some(gps_time),
            mode: Mode::ThreeD,
            lat: Some(1.0),
            lon: Some(1.0),
            ..Fix::default()
        });
        tokio::time::advance(Duration::from_secs(3)).await;
        let clock = Clock::new(latest, Duration::from_secs(2));
        assert!(!clock.status().trusted);
        let (at, source) = clock.now();
        assert_eq!(source, ClockSource::Gps);
        assert_eq!(at, gps_time + chrono::Duration::seconds(3));
    }
}
