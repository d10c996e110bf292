//! The van's odometer and trips, from the live fix: distance summed while moving, with the
//! noise a parked receiver makes and the jumps a bad fix makes filtered out, kept in the store
//! across restarts and power cuts (a cut loses at most [`SAVE_EVERY_M`] of travel plus what moved
//! since), shown in status and metrics and carried on every event (`odometer_m`).
//!
//! The decisions ([`Odometer::feed`]) are pure over the samples' times; [`run`] is the loop that
//! feeds them from [`LatestFix`] and saves the total.
//!
//! - A step counts only while the van moves (the fix's speed ≥ [`MOVING_MPS`]); a parked
//!   receiver's wander is never summed. The anchor stays where the van stopped, so the first
//!   step after a stop counts from there (and is judged over its own time, not the stop's).
//! - Steps are at least [`MIN_STEP_M`] long: consecutive fixes' noise is not summed as travel.
//! - A step whose implied speed is above [`MAX_MPS`], or whose fix is less accurate than
//!   [`MAX_ACCURACY_M`], is a jump or a bad fix: skipped, and the anchor moves past it.
//! - Trips (Teltonika's default rule): moving at ≥ 5 km/h for 60 s starts one; stopped for 60 s
//!   ends it.

mod run;

use std::time::Duration;

use tokio::time::Instant;

pub use run::{OdometerHandle, run};

/// Below this speed the van is parked, m/s (about 3.6 km/h).
pub const MOVING_MPS: f64 = 1.0;
/// A step implying more than this is a jump, m/s (252 km/h).
pub const MAX_MPS: f64 = 70.0;
/// A fix less accurate than this is not summed, metres.
pub const MAX_ACCURACY_M: f64 = 50.0;
/// Distance is summed in steps of at least this, metres (the noise of consecutive fixes, summed
/// second by second, lengthens a straight road by several per cent).
pub const MIN_STEP_M: f64 = 25.0;
/// The total is saved (durably) every this many metres.
pub const SAVE_EVERY_M: f64 = 100.0;
/// Trips: at least this speed, m/s (5 km/h)…
pub const TRIP_MPS: f64 = 5.0 / 3.6;
/// …for this long starts a trip; stopped this long ends it.
pub const TRIP_HOLD: Duration = Duration::from_secs(60);

/// One fix as the odometer sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// When (the geofence's clock: receipt, scaled for a sped-up source by the caller).
    pub at: Instant,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lng: f64,
    /// Horizontal accuracy, metres (0: unknown).
    pub accuracy_m: f64,
    /// Speed over ground, m/s (`None`: unknown, not moving).
    pub speed_mps: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Trip {
    /// Stopped; moving fast enough since when.
    Parked { moving_since: Option<Instant> },
    /// On a trip; stopped since when.
    Driving { stopped_since: Option<Instant> },
}

/// The odometer and the trip counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Odometer {
    total_m: f64,
    anchor: Option<Step>,
    trip: Trip,
    trips: u64,
}

impl Odometer {
    /// Starting from `total_m` (what the store kept).
    pub fn new(total_m: f64) -> Odometer {
        Odometer { total_m, anchor: None, trip: Trip::Parked { moving_since: None }, trips: 0 }
    }

    /// Metres driven.
    pub fn total_m(&self) -> f64 {
        self.total_m
    }

    /// Trips started since this process began.
    pub fn trips(&self) -> u64 {
        self.trips
    }

    /// Whether a trip is under way.
    pub fn driving(&self) -> bool {
        matches!(self.trip, Trip::Driving { .. })
    }

    /// Feeds one live fix; returns the metres it added.
    pub fn feed(&mut self, s: Step) -> f64 {
        self.trip(s);
        let moving = s.speed_mps.is_some_and(|v| v >= MOVING_MPS);
        if s.accuracy_m > MAX_ACCURACY_M {
            return 0.0;
        }
        let Some(a) = self.anchor else {
            self.anchor = Some(s);
            return 0.0;
        };
        if !moving {
            // Parked: the receiver's wander is not travel. The anchor stays where the van
            // stopped, at the time of this fix (so that the first step after the stop is judged
            // over its own second, not the whole stop).
            self.anchor = Some(Step { at: s.at, ..a });
            return 0.0;
        }
        let d = crate::stops::geofence::distance_m((a.lat, a.lng), (s.lat, s.lng));
        let dt = s.at.saturating_duration_since(a.at).as_secs_f64();
        if d < MIN_STEP_M && dt > 0.0 && d / dt <= MAX_MPS {
            // Summed in steps of at least this: a fix's noise, summed every second, would add
            // several per cent to a straight road.
            return 0.0;
        }
        self.anchor = Some(s);
        if dt <= 0.0 || d / dt > MAX_MPS {
            return 0.0; // a jump: skipped, and counted from here on
        }
        self.total_m += d;
        d
    }

    fn trip(&mut self, s: Step) {
        let fast = s.speed_mps.is_some_and(|v| v >= TRIP_MPS);
        match &mut self.trip {
            Trip::Parked { moving_since } => {
                if !fast {
                    *moving_since = None;
                } else if s.at.saturating_duration_since(*moving_since.get_or_insert(s.at)) >= TRIP_HOLD {
                    self.trip = Trip::Driving { stopped_since: None };
                    self.trips += 1;
                }
            }
            Trip::Driving { stopped_since } => {
                if fast {
                    *stopped_since = None;
                } else if s.at.saturating_duration_since(*stopped_since.get_or_insert(s.at)) >= TRIP_HOLD {
                    self.trip = Trip::Parked { moving_since: None };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: (f64, f64) = (53.55, 9.99);

    fn north(m: f64) -> (f64, f64) {
        (START.0 + m / 111_195.0, START.1)
    }

    fn step(at: Instant, p: (f64, f64), speed: f64) -> Step {
        Step { at, lat: p.0, lng: p.1, accuracy_m: 5.0, speed_mps: Some(speed) }
    }

    /// A noise sample in ±`amp` metres, deterministic.
    fn noise(i: usize, amp: f64) -> f64 {
        (((i * 7919) % 101) as f64 / 50.0 - 1.0) * amp
    }

    #[test]
    fn a_known_track_is_within_2_percent_with_parked_noise_and_a_jump() {
        let t0 = Instant::now();
        let mut o = Odometer::new(1_000.0);
        let mut t = 0u64;
        let mut feed = |o: &mut Odometer, m: f64, speed: f64| {
            o.feed(step(t0 + Duration::from_secs(t), north(m), speed));
            t += 1;
        };
        // 2 km at 11 m/s with ±4 m of noise, parked 10 minutes with ±25 m of wander, one bad fix
        // 3 km away, then 1 km more.
        for i in 0..=182 {
            feed(&mut o, i as f64 * 11.0 + noise(i, 4.0), 11.0);
        }
        for i in 0..600 {
            feed(&mut o, 2_002.0 + noise(i, 25.0), 0.3);
        }
        feed(&mut o, 5_000.0, 11.0);
        for i in 0..=91 {
            feed(&mut o, 2_002.0 + i as f64 * 11.0, 11.0);
        }
        let driven = o.total_m() - 1_000.0;
        let truth = 2_002.0 + 1_001.0;
        assert!((driven - truth).abs() / truth < 0.02, "{driven:.0} m for {truth} m");
    }

    #[test]
    fn a_parked_receiver_adds_nothing_and_a_bad_fix_is_not_summed() {
        let t0 = Instant::now();
        let mut o = Odometer::new(0.0);
        for i in 0..3_600 {
            o.feed(step(t0 + Duration::from_secs(i), north(noise(i as usize, 30.0)), 0.2));
        }
        assert_eq!(o.total_m(), 0.0);
        let mut s = step(t0 + Duration::from_secs(3_601), north(500.0), 11.0);
        s.accuracy_m = 200.0;
        assert_eq!(o.feed(s), 0.0);
    }

    #[test]
    fn trips_follow_the_60_s_rule() {
        let t0 = Instant::now();
        let mut o = Odometer::new(0.0);
        let mut at = 0u64;
        let mut run = |o: &mut Odometer, secs: u64, speed: f64| {
            for _ in 0..secs {
                o.feed(step(t0 + Duration::from_secs(at), north(at as f64), speed));
                at += 1;
            }
        };
        run(&mut o, 50, 5.0); // 50 s moving: not yet a trip
        run(&mut o, 30, 0.0);
        assert_eq!(o.trips(), 0);
        run(&mut o, 61, 5.0);
        assert_eq!((o.trips(), o.driving()), (1, true));
        run(&mut o, 30, 0.0); // a traffic light: still the same trip
        run(&mut o, 10, 5.0);
        assert_eq!(o.trips(), 1);
        run(&mut o, 61, 0.0);
        assert!(!o.driving());
        run(&mut o, 61, 5.0);
        assert_eq!(o.trips(), 2);
    }
}
