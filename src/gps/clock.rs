//! Time for event stamps: GPS time from the receiver, and whether the system clock can be
//! trusted. A Raspberry Pi has no RTC: it boots on the time it last saved, and keeps it until NTP
//! answers, which in a van with no signal may be never.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use super::latest::{LatestFix, Received};
pub use super::wall::Wall;

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
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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
        judge(self.latest.wall().now(), self.latest.last().as_ref(), self.max_skew)
    }

    /// Now as GPS time has confirmed it in this run, for what is thrown away by age (the
    /// telemetry backlog's `backlog_max_age`, idempotency keys and job history after a week): the
    /// GPS time of the last epoch received, carried forward by the monotonic clock. `None` until
    /// this run has had plausible GPS time. The system clock alone never ages anything: a Pi
    /// boots on the time it last saved (`fake-hwclock`) or on whatever NTP last said, and one
    /// reading days ahead would drop a whole backlog as old, while nothing is lost by waiting
    /// for the receiver (the backlog stays bounded by its point and byte limits meanwhile).
    pub fn confirmed_now(&self) -> Option<DateTime<Utc>> {
        let last = self.latest.last()?;
        let t = last.fix.time.filter(|t| *t >= floor())?;
        Some(t + chrono::Duration::from_std(last.age()).ok()?)
    }

    /// Now, and where it came from: the system clock when trusted, otherwise GPS time carried
    /// forward by the monotonic clock; the untrusted system clock only when there is no GPS time.
    pub fn now(&self) -> (DateTime<Utc>, ClockSource) {
        let last = self.latest.last();
        let system = self.latest.wall().now();
        if judge(system, last.as_ref(), self.max_skew).trusted {
            return (system, ClockSource::System);
        }
        match last.and_then(|r| r.fix.time.filter(|t| *t >= floor()).map(|t| (t, r.age()))) {
            Some((t, age)) => (t + chrono::Duration::from_std(age).unwrap_or_default(), ClockSource::Gps),
            None => (system, ClockSource::System),
        }
    }
}

/// When the system clock is untrusted and the live fix carries plausible GPS time: the time to
/// set the system clock to (GPS time carried forward by the fix's age). `None` otherwise.
pub fn correction(system_now: DateTime<Utc>, live: Option<&Received>, max_skew: Duration) -> Option<DateTime<Utc>> {
    let r = live?;
    if judge(system_now, Some(r), max_skew).trusted {
        return None;
    }
    let t = r.fix.time.filter(|t| *t >= floor())?;
    Some(t + chrono::Duration::from_std(r.age()).ok()?)
}

/// Sets the system clock (`clock_settime(CLOCK_REALTIME)`; needs CAP_SYS_TIME).
pub fn set_system_clock(to: DateTime<Utc>) -> std::io::Result<()> {
    use nix::sys::time::TimeSpec;
    // time_t and the nanoseconds field are 32-bit on armv7: `as _` takes the platform types.
    let ts = TimeSpec::new(to.timestamp() as _, to.timestamp_subsec_nanos() as _);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts).map_err(std::io::Error::from)
}

/// `clock.set_system_time`: every `every`, sets the system clock from GPS time when it is
/// untrusted, through `set` (the real one is [`set_system_clock`]). Without the permission it
/// says so once and keeps stamping events with GPS time, as it does anyway.
pub async fn keep_system_time(
    latest: LatestFix,
    max_skew: Duration,
    every: Duration,
    set: impl Fn(DateTime<Utc>) -> std::io::Result<()>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    let mut refused = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let system = latest.wall().now();
        let Some(to) = correction(system, latest.live().as_ref(), max_skew) else { continue };
        match set(to) {
            Ok(()) => tracing::warn!(was = %system, now = %to, "system clock set from GPS time"),
            Err(e) if !refused => {
                refused = true;
                tracing::warn!(
                    error = %e,
                    "clock.set_system_time: cannot set the system clock (the service needs CAP_SYS_TIME; see docs/gateway.md, \"The system clock\"); events keep GPS time"
                );
            }
            Err(_) => {}
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

    #[tokio::test(start_paused = true)]
    async fn the_clock_is_corrected_only_when_untrusted_and_gps_time_is_plausible() {
        let skew = Duration::from_secs(2);
        // A Pi that booted in 1970 with a live fix: set it to GPS time.
        let gps = received(t(2026, 0), t(1970, 0));
        assert_eq!(correction(t(1970, 5), Some(&gps), skew), Some(t(2026, 0)));
        // A trusted clock is left alone; no fix, no GPS time, or week-rollover time: nothing.
        assert_eq!(correction(t(2026, 1), Some(&received(t(2026, 0), t(2026, 1))), skew), None);
        assert_eq!(correction(t(1970, 5), None, skew), None);
        assert_eq!(correction(t(1970, 5), Some(&received(t(2006, 0), t(1970, 0))), skew), None);
    }

    #[tokio::test(start_paused = true)]
    async fn keep_system_time_sets_the_clock_through_the_setter_it_is_given() {
        let latest = LatestFix::new(Duration::from_secs(60));
        // GPS says 2026; the system clock (real, now) is after the floor, so it is off by the
        // difference: a day ahead of GPS here.
        let gps_time = Utc::now() - chrono::Duration::days(1);
        latest.publish(Fix {
            time: Some(gps_time),
            mode: Mode::ThreeD,
            lat: Some(1.0),
            lon: Some(1.0),
            ..Fix::default()
        });
        let set = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = set.clone();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(keep_system_time(
            latest,
            Duration::from_secs(2),
            Duration::from_secs(10),
            move |to| {
                seen.lock().unwrap().push(to);
                Err(std::io::Error::from_raw_os_error(1))
            },
            shutdown.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(25)).await;
        shutdown.cancel();
        task.await.unwrap();
        let calls = set.lock().unwrap().clone();
        assert_eq!(calls.len(), 3, "at 0, 10 and 20 s: {calls:?}");
        assert!((calls[0] - gps_time).num_seconds().abs() <= 1, "set to GPS time: {calls:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn only_gps_time_confirms_now_never_a_system_clock_that_jumped() {
        let wall = Wall::system();
        let latest = LatestFix::with_wall(Duration::from_secs(10), wall.clone());
        let clock = Clock::new(latest.clone(), Duration::from_secs(2));
        assert_eq!(clock.confirmed_now(), None, "no GPS time yet: nothing to age against");
        let gps_time = Utc::now();
        let fix = Fix { time: Some(gps_time), mode: Mode::ThreeD, lat: Some(1.0), lon: Some(1.0), ..Fix::default() };
        latest.publish(fix.clone());
        // The receiver goes quiet, then the system clock jumps ten days ahead: the clock still
        // trusts it (the last fix agreed), but GPS time carried forward is what confirms now.
        wall.jump(chrono::Duration::days(10));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(clock.now().1, ClockSource::System);
        assert!(clock.now().0 - gps_time > chrono::Duration::days(9), "stamps follow the trusted system clock");
        assert_eq!(clock.confirmed_now(), Some(gps_time + chrono::Duration::seconds(30)));
        // Week-rollover time (before the floor) confirms nothing.
        let rolled = Utc.with_ymd_and_hms(2007, 3, 1, 0, 0, 0).unwrap();
        latest.publish(Fix { time: Some(rolled), ..fix });
        assert_eq!(clock.confirmed_now(), None);
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
