//! When to publish a position: the acquisition rules of vehicle trackers (Traccar, Teltonika),
//! as a pure function of the rules, the last position sent, the new fix and the time. No I/O,
//! so every rule is tested directly, with tokio's paused clock where time matters.
//!
//! Defaults suit a delivery van in town: at most one point every 5 s while moving, one at least
//! every 30 s while moving, one per 50 m or per 30° of turn (so corners are drawn), a point when
//! it stops, and a heartbeat every 5 min while parked, so the van never looks dead on the map.

use std::time::Duration;

use tokio::time::Instant;

use crate::gps::Fix;
use crate::gps::geo::distance_m;

/// The rules, with the defaults above.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Never publish more often than this while moving.
    pub min_interval_moving: Duration,
    /// Publish at least this often while moving.
    pub max_interval_moving: Duration,
    /// Publish after moving this far (metres) since the last point.
    pub min_distance_m: f64,
    /// Publish after turning this much (degrees) since the last point, while moving.
    pub min_heading_change_deg: f64,
    /// At or above this speed (m/s) the van is moving.
    pub moving_speed_mps: f64,
    /// While parked, publish at least this often.
    pub heartbeat: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            min_interval_moving: Duration::from_secs(5),
            max_interval_moving: Duration::from_secs(30),
            min_distance_m: 50.0,
            min_heading_change_deg: 30.0,
            moving_speed_mps: 1.5,
            heartbeat: Duration::from_secs(300),
        }
    }
}

/// Why a point is published (OwnTracks reports it as the trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The first fix since start.
    First,
    /// Moved at least `min_distance_m`.
    Distance,
    /// Turned at least `min_heading_change_deg`.
    Heading,
    /// `max_interval_moving` passed while moving.
    Interval,
    /// The van stopped (first point at rest).
    Stopped,
    /// `heartbeat` passed while parked.
    Heartbeat,
    /// Asked for by the back office (an OwnTracks `reportLocation` command), not by the rules.
    Requested,
}

/// The last point published.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// When (monotonic).
    pub at: Instant,
    /// Where.
    pub lat: f64,
    /// Where.
    pub lon: f64,
    /// Course then, if known.
    pub course_deg: Option<f64>,
    /// Whether the van was moving then.
    pub moving: bool,
}

/// The smaller angle between two courses, in [0, 180]: 350° and 10° are 20° apart.
pub fn heading_change(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

impl Rules {
    /// Whether `fix` (arriving at `now`) should be published, and why. Fixes without a position
    /// are never published.
    pub fn decide(&self, last: Option<&Sent>, fix: &Fix, now: Instant) -> Option<Trigger> {
        let (lat, lon) = fix.position()?;
        let Some(last) = last else { return Some(Trigger::First) };
        let elapsed = now.saturating_duration_since(last.at);
        let moving = fix.speed_mps.is_some_and(|v| v >= self.moving_speed_mps);
        if moving {
            if elapsed < self.min_interval_moving {
                return None;
            }
            if distance_m((last.lat, last.lon), (lat, lon)) >= self.min_distance_m {
                return Some(Trigger::Distance);
            }
            let turned = match (last.course_deg, fix.course_deg) {
                (Some(a), Some(b)) => heading_change(a, b) >= self.min_heading_change_deg,
                _ => false,
            };
            if turned {
                return Some(Trigger::Heading);
            }
            (elapsed >= self.max_interval_moving).then_some(Trigger::Interval)
        } else if last.moving {
            // The stop itself is worth a point (a delivery stop on the map), once.
            (elapsed >= self.min_interval_moving).then_some(Trigger::Stopped)
        } else {
            (elapsed >= self.heartbeat).then_some(Trigger::Heartbeat)
        }
    }

    /// These rules, at most one point per `every` (a daily budget spent): every interval is at
    /// least `every`; distance and turns still choose which fix goes.
    pub fn thinned(&self, every: Duration) -> Rules {
        Rules {
            min_interval_moving: self.min_interval_moving.max(every),
            max_interval_moving: self.max_interval_moving.max(every),
            heartbeat: self.heartbeat.max(every),
            ..self.clone()
        }
    }

    /// What to remember after publishing `fix` at `now`.
    pub fn sent(&self, fix: &Fix, now: Instant) -> Option<Sent> {
        let (lat, lon) = fix.position()?;
        Some(Sent {
            at: now,
            lat,
            lon,
            course_deg: fix.course_deg,
            moving: fix.speed_mps.is_some_and(|v| v >= self.moving_speed_mps),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gps::Mode;

    fn fix(lat: f64, lon: f64, speed: f64, course: f64) -> Fix {
        Fix {
            lat: Some(lat),
            lon: Some(lon),
            speed_mps: Some(speed),
            course_deg: Some(course),
            mode: Mode::ThreeD,
            ..Fix::default()
        }
    }

    /// About 0.00045° of latitude is 50 m.
    const FIFTY_M: f64 = 0.00046;

    #[test]
    fn heading_change_wraps_around_north() {
        assert_eq!(heading_change(350.0, 10.0), 20.0);
        assert_eq!(heading_change(10.0, 350.0), 20.0);
        assert_eq!(heading_change(0.0, 180.0), 180.0);
        assert_eq!(heading_change(359.0, 359.0), 0.0);
        assert_eq!(heading_change(-10.0, 10.0), 20.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_fix_is_published_and_a_fix_without_position_never_is() {
        let r = Rules::default();
        assert_eq!(r.decide(None, &Fix::default(), Instant::now()), None);
        assert_eq!(r.decide(None, &fix(53.5, 10.0, 0.0, 0.0), Instant::now()), Some(Trigger::First));
    }

    #[tokio::test(start_paused = true)]
    async fn while_moving_distance_and_turns_publish_but_never_faster_than_the_minimum_interval() {
        let r = Rules::default();
        let start = fix(53.5, 10.0, 10.0, 0.0);
        let last = r.sent(&start, Instant::now()).unwrap();
        let far = fix(53.5 + FIFTY_M, 10.0, 10.0, 0.0);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(r.decide(Some(&last), &far, Instant::now()), None, "rate cap");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(r.decide(Some(&last), &far, Instant::now()), Some(Trigger::Distance));
        // A turn across north: 350° → 25° is 35°.
        let north = Sent { course_deg: Some(350.0), ..last.clone() };
        let turned = fix(53.5, 10.0, 10.0, 25.0);
        assert_eq!(r.decide(Some(&north), &turned, Instant::now()), Some(Trigger::Heading));
        let slight = fix(53.5, 10.0, 10.0, 5.0);
        assert_eq!(r.decide(Some(&north), &slight, Instant::now()), None, "15° is not a turn");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_straight_drive_still_publishes_every_max_interval() {
        let r = Rules::default();
        let last = r.sent(&fix(53.5, 10.0, 2.0, 90.0), Instant::now()).unwrap();
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(r.decide(Some(&last), &fix(53.5, 10.0001, 2.0, 90.0), Instant::now()), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(r.decide(Some(&last), &fix(53.5, 10.0001, 2.0, 90.0), Instant::now()), Some(Trigger::Interval));
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_publishes_once_then_only_a_heartbeat_while_parked() {
        let r = Rules::default();
        let moving = r.sent(&fix(53.5, 10.0, 8.0, 90.0), Instant::now()).unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        let parked = fix(53.5, 10.0, 0.0, 90.0);
        assert_eq!(r.decide(Some(&moving), &parked, Instant::now()), Some(Trigger::Stopped));
        let at_rest = r.sent(&parked, Instant::now()).unwrap();
        // GPS drift while parked is not movement, and a parked van is quiet until the heartbeat.
        let drift = fix(53.5 + FIFTY_M, 10.0, 0.2, 200.0);
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(r.decide(Some(&at_rest), &drift, Instant::now()), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(r.decide(Some(&at_rest), &parked, Instant::now()), Some(Trigger::Heartbeat));
    }

    #[test]
    fn thinned_rules_send_at_most_one_point_per_period_and_never_widen_a_longer_rule() {
        let r = Rules::default().thinned(Duration::from_secs(120));
        assert_eq!(
            (r.min_interval_moving, r.max_interval_moving, r.heartbeat),
            (Duration::from_secs(120), Duration::from_secs(120), Duration::from_secs(300))
        );
        assert_eq!(r.min_distance_m, Rules::default().min_distance_m);
    }
}
