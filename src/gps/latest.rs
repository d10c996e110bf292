//! The live fix: a cheaply cloned handle that the GPS source publishes into and everyone else
//! reads (taps stamp events with it, telemetry samples it, status shows it). Ages use tokio's
//! clock, so tests drive them with paused time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::Instant;

use super::decoder::DecodeStats;
use super::fix::Fix;
use super::moving::MovingSpeed;
use super::sky::Sky;
use super::wall::Wall;

/// A fix with when it arrived, by the monotonic clock and by the system clock (to compare the
/// system clock against GPS time).
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The fix.
    pub fix: Fix,
    /// Monotonic arrival instant, for its age.
    pub at: Instant,
    /// System clock at arrival, which may be wrong (a Pi has no RTC).
    pub system_at: DateTime<Utc>,
}

impl Received {
    /// How old the fix is now.
    pub fn age(&self) -> Duration {
        self.at.elapsed()
    }
}

/// Everything the GPS side publishes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpsState {
    /// The latest epoch, with or without a position.
    pub last: Option<Received>,
    /// The latest epoch that had a position.
    pub last_valid: Option<Received>,
    /// Decoder counters of the current source.
    pub stats: DecodeStats,
    /// Satellites in view, when the source reports them.
    pub sky: Option<Sky>,
    /// Whether the source is connected (port open, gpsd answering, file read).
    pub connected: bool,
    /// The recent moving speed, from the fixes with a position.
    pub moving: MovingSpeed,
}

/// Shared handle to the live fix. Clones share one state.
#[derive(Debug, Clone)]
pub struct LatestFix {
    tx: Arc<watch::Sender<GpsState>>,
    stale_after: Duration,
    wall: Wall,
}

impl LatestFix {
    /// A handle with no fix yet; a fix older than `stale_after` is not live.
    pub fn new(stale_after: Duration) -> Self {
        Self::with_wall(stale_after, Wall::system())
    }

    /// As [`LatestFix::new`], reading the system clock through `wall` (which a test can make
    /// jump); [`super::clock::Clock`] reads it from here too.
    pub fn with_wall(stale_after: Duration, wall: Wall) -> Self {
        Self { tx: Arc::new(watch::Sender::new(GpsState::default())), stale_after, wall }
    }

    /// The system clock as this handle reads it.
    pub fn wall(&self) -> &Wall {
        &self.wall
    }

    /// Publishes a new epoch.
    pub fn publish(&self, fix: Fix) {
        let received = Received { fix, at: Instant::now(), system_at: self.wall.now() };
        self.tx.send_modify(|s| {
            if received.fix.position().is_some() {
                s.moving.feed(received.at, received.fix.speed_mps);
                s.last_valid = Some(received.clone());
            }
            s.last = Some(received);
        });
    }

    /// Updates counters, sky and connection state without a new fix.
    pub fn update(&self, f: impl FnOnce(&mut GpsState)) {
        self.tx.send_modify(f);
    }

    /// The live fix: the latest epoch, if it has a position and is younger than the staleness
    /// limit. `None` while the receiver says it has no fix, or has gone quiet.
    pub fn live(&self) -> Option<Received> {
        let s = self.tx.borrow();
        s.last.as_ref().filter(|r| r.fix.position().is_some() && r.age() <= self.stale_after).cloned()
    }

    /// The last fix that had a position, however old (its age says how old).
    pub fn last_known(&self) -> Option<Received> {
        self.tx.borrow().last_valid.clone()
    }

    /// The latest epoch, with or without a position.
    pub fn last(&self) -> Option<Received> {
        self.tx.borrow().last.clone()
    }

    /// The van's recent moving speed, m/s (see [`MovingSpeed`]).
    pub fn moving_speed(&self) -> Option<f64> {
        self.tx.borrow().moving.speed_mps(Instant::now())
    }

    /// A copy of the whole state.
    pub fn snapshot(&self) -> GpsState {
        self.tx.borrow().clone()
    }

    /// The staleness limit.
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// A receiver that wakes on every change (for telemetry and `gps watch`).
    pub fn subscribe(&self) -> watch::Receiver<GpsState> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gps::fix::Mode;

    fn fix(mode: Mode) -> Fix {
        Fix { lat: Some(51.0), lon: Some(6.0), mode, ..Fix::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fix_is_live_until_it_is_stale_and_then_only_last_known() {
        let latest = LatestFix::new(Duration::from_secs(10));
        assert!(latest.live().is_none());
        latest.publish(fix(Mode::TwoD));
        assert!(latest.live().is_some());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(latest.live().is_some(), "exactly at the limit it is still live");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(latest.live().is_none());
        let known = latest.last_known().unwrap();
        assert_eq!(known.age(), Duration::from_millis(10_001));
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalid_epoch_ends_the_live_fix_at_once_but_keeps_the_last_known() {
        let latest = LatestFix::new(Duration::from_secs(10));
        latest.publish(fix(Mode::ThreeD));
        latest.publish(Fix::default());
        assert!(latest.live().is_none());
        assert!(latest.last_known().is_some());
    }
}
