//! The van's recent moving speed: the mean speed over the fixes of the last few minutes in which
//! it was moving. Stops at lights and at doors do not drag it down, and it is forgotten once the
//! van has not moved for the window (an old speed says nothing about the next leg). Pure: fed
//! instants and speeds, tested with tokio's paused clock.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How far back the speed looks.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Below this a fix counts as standing still (GPS speed jitters around 0.5 m/s when parked).
pub const MOVING_MPS: f64 = 1.5;
/// Fewer moving fixes than this in the window give no speed.
pub const MIN_SAMPLES: usize = 5;
/// At most this many samples are kept (the window at 2 Hz, and then some).
const CAP: usize = 1200;

/// The moving fixes of the last [`WINDOW`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MovingSpeed {
    samples: VecDeque<(Instant, f64)>,
}

impl MovingSpeed {
    /// Takes one fix's speed (`None` when the receiver gave none).
    pub fn feed(&mut self, at: Instant, speed_mps: Option<f64>) {
        self.forget(at);
        let Some(v) = speed_mps.filter(|v| v.is_finite() && *v >= MOVING_MPS) else { return };
        if self.samples.len() == CAP {
            self.samples.pop_front();
        }
        self.samples.push_back((at, v));
    }

    /// The mean moving speed as of `now`, m/s, if the van moved enough in the window.
    pub fn speed_mps(&self, now: Instant) -> Option<f64> {
        let recent = self.samples.iter().filter(|(t, _)| now.saturating_duration_since(*t) <= WINDOW);
        let (n, sum) = recent.fold((0usize, 0.0), |(n, s), (_, v)| (n + 1, s + v));
        (n >= MIN_SAMPLES).then(|| sum / n as f64)
    }

    fn forget(&mut self, now: Instant) {
        while self.samples.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > WINDOW) {
            self.samples.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_mean_of_moving_fixes_ignores_standing_still_and_expires() {
        let mut m = MovingSpeed::default();
        for _ in 0..4 {
            m.feed(Instant::now(), Some(10.0));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(m.speed_mps(Instant::now()), None, "four fixes are not enough");
        m.feed(Instant::now(), Some(20.0));
        assert_eq!(m.speed_mps(Instant::now()), Some(12.0));
        // A minute at a door: speed stays what the driving was.
        for _ in 0..60 {
            tokio::time::advance(Duration::from_secs(1)).await;
            m.feed(Instant::now(), Some(0.4));
            m.feed(Instant::now(), None);
        }
        assert_eq!(m.speed_mps(Instant::now()), Some(12.0));
        tokio::time::advance(WINDOW).await;
        assert_eq!(m.speed_mps(Instant::now()), None, "an old speed says nothing about the next leg");
        m.feed(Instant::now(), Some(f64::NAN));
        assert_eq!(m.samples.len(), 0, "expired and junk samples are not kept");
    }
}
