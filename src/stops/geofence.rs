//! Arrival and departure at a stop, decided from fixes (pure: the caller feeds fixes with
//! their time and acts on what comes out; tested with tokio's paused clock).
//!
//! - A fix counts only while it is live: a stale one never decides ([`Sample::live`] false
//!   leaves every timer where it was).
//! - Accuracy counts against the van: a fix is *inside* a stop when the whole circle of its
//!   accuracy is (`distance + accuracy ≤ radius`), *outside* when the whole circle is beyond
//!   the radius plus the hysteresis (`distance − accuracy > radius + hysteresis`); in between
//!   decides nothing, which is what stops flapping at the edge.
//! - *Arrived*: inside and stopped (speed below [`Rules::stopped_mps`]) for
//!   [`Rules::stopped_for`], or inside for [`Rules::dwell`] whatever the speed. A drive past
//!   at 40 km/h is inside a 75 m radius for about 13 s, moving: no arrival.
//! - *Departed*: after an arrival, outside for [`Rules::dwell`]; the decision carries the first
//!   sample outside (when and where the van left the fence), not the one that decided. One
//!   arrival and one departure per visit.

use std::time::Duration;

use tokio::time::Instant;

/// The geofence's rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// How long inside (moving or not) makes an arrival; also how long outside makes a departure.
    pub dwell: Duration,
    /// How long inside and stopped makes an arrival.
    pub stopped_for: Duration,
    /// Below this speed the van has stopped, m/s.
    pub stopped_mps: f64,
    /// Beyond the radius by this much before the van has left, metres.
    pub hysteresis_m: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            dwell: Duration::from_secs(20),
            stopped_for: Duration::from_secs(5),
            stopped_mps: 1.0,
            hysteresis_m: 30.0,
        }
    }
}

impl Rules {
    /// The rules for a source that plays `scale` route seconds per real second (`curbside demo
    /// --speed 5`, a replay): the dwell and the stop are in the route's seconds.
    pub fn at_time_scale(self, scale: f64) -> Rules {
        if !(scale.is_finite() && scale > 0.0) {
            return self;
        }
        Rules { dwell: self.dwell.div_f64(scale), stopped_for: self.stopped_for.div_f64(scale), ..self }
    }
}

/// One fix as the geofence sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was received.
    pub at: Instant,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lng: f64,
    /// Horizontal accuracy, metres (0 when the receiver says nothing).
    pub accuracy_m: f64,
    /// Speed over ground, m/s (`None`: unknown, never "stopped").
    pub speed_mps: Option<f64>,
    /// False once the fix is stale: it decides nothing.
    pub live: bool,
}

/// What a sample decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// The van arrived; the sample that decided it.
    Arrived(Sample),
    /// The van left after arriving; the first sample outside (the time and place it left).
    Departed(Sample),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Not arrived; `inside` since when, and stopped inside since when.
    Away { inside: Option<Instant>, stopped: Option<Instant> },
    /// Arrived; outside since which sample.
    There { outside: Option<Sample> },
}

/// One stop's geofence.
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    lat: f64,
    lng: f64,
    radius_m: f64,
    phase: Phase,
}

/// Distance between two points on the Earth, metres (haversine, mean radius).
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    const R: f64 = 6_371_008.8;
    let (la1, la2) = (a.0.to_radians(), b.0.to_radians());
    let (dla, dlo) = ((b.0 - a.0).to_radians(), (b.1 - a.1).to_radians());
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * R * h.sqrt().min(1.0).asin()
}

impl Fence {
    /// A fence of `radius_m` around a stop, not arrived.
    pub fn new(lat: f64, lng: f64, radius_m: f64) -> Fence {
        Fence { lat, lng, radius_m, phase: Phase::Away { inside: None, stopped: None } }
    }

    /// Whether the van is there (arrived, not departed).
    pub fn arrived(&self) -> bool {
        matches!(self.phase, Phase::There { .. })
    }

    /// Marks the stop arrived without a decision (the driver tapped `arrived`), so that the
    /// geofence does not arrive again and departs in its time.
    pub fn mark_arrived(&mut self) {
        if !self.arrived() {
            self.phase = Phase::There { outside: None };
        }
    }

    /// Feeds one sample; says what it decided, if anything.
    pub fn feed(&mut self, s: Sample, rules: &Rules) -> Option<Decision> {
        if !s.live {
            return None;
        }
        let d = distance_m((self.lat, self.lng), (s.lat, s.lng));
        let acc = s.accuracy_m.max(0.0);
        let inside = d + acc <= self.radius_m;
        let outside = d - acc > self.radius_m + rules.hysteresis_m;
        let stopped = s.speed_mps.is_some_and(|v| v < rules.stopped_mps);
        match &mut self.phase {
            Phase::Away { inside: since, stopped: still } => {
                if !inside {
                    // Not certainly inside: the dwell starts again.
                    *since = None;
                    *still = None;
                    return None;
                }
                let since = *since.get_or_insert(s.at);
                *still = if stopped { Some(still.unwrap_or(s.at)) } else { None };
                let by_stop = still.is_some_and(|t| s.at.duration_since(t) >= rules.stopped_for);
                let by_dwell = s.at.duration_since(since) >= rules.dwell;
                if by_stop || by_dwell {
                    self.phase = Phase::There { outside: None };
                    return Some(Decision::Arrived(s));
                }
                None
            }
            Phase::There { outside: since } => {
                if !outside {
                    *since = None;
                    return None;
                }
                let first = *since.get_or_insert(s);
                if s.at.duration_since(first.at) >= rules.dwell {
                    self.phase = Phase::Away { inside: None, stopped: None };
                    return Some(Decision::Departed(first));
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOP: (f64, f64) = (53.55, 9.99);

    /// A point `m` metres north of the stop (1° of latitude ≈ 111,195 m).
    fn north(m: f64) -> (f64, f64) {
        (STOP.0 + m / 111_195.0, STOP.1)
    }

    fn sample(at: Instant, p: (f64, f64), speed: f64) -> Sample {
        Sample { at, lat: p.0, lng: p.1, accuracy_m: 5.0, speed_mps: Some(speed), live: true }
    }

    /// Drives the fence one sample a second along `path` (metres north, speed); returns the
    /// decisions with the second they came at.
    async fn drive(fence: &mut Fence, path: impl IntoIterator<Item = (f64, f64)>) -> Vec<(u64, Decision)> {
        let start = Instant::now();
        let mut out = Vec::new();
        for (m, v) in path {
            if let Some(d) = fence.feed(sample(Instant::now(), north(m), v), &Rules::default()) {
                out.push((start.elapsed().as_secs(), d));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        out
    }

    #[test]
    fn distance_is_haversine() {
        assert!((distance_m(STOP, north(100.0)) - 100.0).abs() < 0.5);
        assert!((distance_m((0.0, 0.0), (0.0, 1.0)) - 111_195.0).abs() < 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_inside_arrives_within_seconds_and_leaving_departs_once() {
        let mut f = Fence::new(STOP.0, STOP.1, 75.0);
        // Approach at 11 m/s from 300 m, stop 20 m from the stop for 60 s with ±25 m jitter,
        // then drive away.
        let approach = (0..25).map(|i| (300.0 - i as f64 * 11.0, 11.0));
        let jitter = [0.0, 25.0, -25.0, 10.0, -20.0, 25.0];
        let parked = (0..60).map(|i| (20.0 + jitter[i % jitter.len()], 0.2));
        let away = (0..40).map(|i| (20.0 + i as f64 * 11.0, 11.0));
        let got = drive(&mut f, approach.chain(parked).chain(away)).await;
        assert_eq!(got.len(), 2, "one arrival, one departure: {got:?}");
        let (arrived_at, Decision::Arrived(_)) = got[0] else { panic!("{got:?}") };
        assert!((25..25 + 25).contains(&arrived_at), "arrived {arrived_at} s in, within 25 s of stopping at 25 s");
        let (_, Decision::Departed(left)) = got[1] else { panic!("{got:?}") };
        // Away from 85 s at 11 m/s from 20 m: beyond 75 + 30 m (with 5 m accuracy) at about
        // 93 s, decided 20 s later; the departure is where and when the fence was left.
        let left_m = distance_m(STOP, (left.lat, left.lng));
        assert!((110.0..125.0).contains(&left_m), "left the fence at {left_m:.0} m");
        assert!(got[1].0 >= 110, "decided after the dwell: {got:?}");
        assert!(!f.arrived());
    }

    #[tokio::test(start_paused = true)]
    async fn a_drive_past_at_40_kmh_is_no_arrival() {
        let mut f = Fence::new(STOP.0, STOP.1, 75.0);
        let past = (0..60).map(|i| (-300.0 + i as f64 * 11.1, 11.1));
        assert!(drive(&mut f, past).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_fix_never_decides_and_poor_accuracy_waits() {
        let mut f = Fence::new(STOP.0, STOP.1, 75.0);
        let rules = Rules::default();
        for _ in 0..60 {
            let mut s = sample(Instant::now(), north(0.0), 0.0);
            s.live = false;
            assert_eq!(f.feed(s, &rules), None);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for _ in 0..60 {
            // 30 m from the stop, accuracy 60 m: not certainly inside a 75 m radius.
            let mut s = sample(Instant::now(), north(30.0), 0.0);
            s.accuracy_m = 60.0;
            assert_eq!(f.feed(s, &rules), None);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(!f.arrived());
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_at_the_edge_does_not_flap() {
        let mut f = Fence::new(STOP.0, STOP.1, 75.0);
        f.mark_arrived();
        // Wandering between 60 and 110 m: never beyond radius + hysteresis (105 m) with its
        // accuracy, so no departure.
        let edge = (0..120).map(|i| (if i % 2 == 0 { 60.0 } else { 110.0 }, 0.5));
        assert!(drive(&mut f, edge).await.is_empty());
        assert!(f.arrived());
    }
}
