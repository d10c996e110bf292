//! Estimated time of arrival at a stop, and which stop is next.
//!
//! The estimate is the straight-line distance from the van to the stop over the van's recent
//! moving speed ([`crate::gps::moving`]): no road routing, and it says so (`method:
//! "straight_line"`). Roads are longer than the line and vans stop at lights, so it is early by
//! the road's detour; it is good for "about ten minutes", not for a timetable. Without a recent
//! moving speed (the van has stood for minutes) there is no estimate rather than a made-up one.

use chrono::{DateTime, Utc};

use super::{Stop, StopState};

pub use crate::event::{Eta, EtaMethod as Method};

/// The estimate for `distance_m` at `speed_mps`, made at `now`; `None` without a speed.
pub fn estimate(distance_m: f64, speed_mps: Option<f64>, now: DateTime<Utc>) -> Option<Eta> {
    let v = speed_mps.filter(|v| v.is_finite() && *v > 0.0)?;
    if !distance_m.is_finite() || distance_m < 0.0 {
        return None;
    }
    // Capped at a day: a van 1000 km away at walking pace is no estimate either.
    let seconds = (distance_m / v).round().min(86_400.0) as u64;
    Some(Eta {
        at: now + chrono::Duration::seconds(seconds as i64),
        seconds,
        distance_m: (distance_m * 10.0).round() / 10.0,
        speed_mps: (v * 100.0).round() / 100.0,
        method: Method::StraightLine,
    })
}

/// Where a stop stands for [`next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Its state.
    pub state: StopState,
    /// The sequence of its job's last event (0: none).
    pub last_sequence: u64,
    /// The van has left it (its last event is `departed`).
    pub left: bool,
}

impl Progress {
    /// From a job's history.
    pub fn of(history: &[crate::event::Milestone]) -> Progress {
        let last = history.last();
        Progress {
            state: super::state(history).0,
            last_sequence: last.map_or(0, |m| m.sequence),
            left: last.is_some_and(|m| m.status == crate::event::Status::Departed),
        }
    }
}

/// The stop the van is going to: the one most recently headed to or arrived at that is neither
/// finished nor left behind, else the first pending one by sequence. `progress` is in the order
/// of `stops`.
pub fn next<'a>(stops: &'a [Stop], progress: &[Progress]) -> Option<(&'a Stop, StopState)> {
    let open = stops
        .iter()
        .zip(progress)
        .filter(|(_, p)| !p.left && matches!(p.state, StopState::Heading | StopState::Arrived));
    if let Some((stop, p)) = open.max_by_key(|(_, p)| p.last_sequence) {
        return Some((stop, p.state));
    }
    stops.iter().zip(progress).find(|(_, p)| p.state == StopState::Pending).map(|(stop, p)| (stop, p.state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops() -> Vec<Stop> {
        let list = serde_json::json!({"stops": [
            {"job_id": "A", "sequence": 1}, {"job_id": "B", "sequence": 2}, {"job_id": "C", "sequence": 3}]});
        super::super::parse_list(&list).unwrap()
    }

    #[test]
    fn the_estimate_is_distance_over_speed_and_needs_a_speed() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().with_timezone(&Utc);
        let e = estimate(1200.0, Some(8.0), now).unwrap();
        assert_eq!(e.seconds, 150);
        assert_eq!(e.at.to_rfc3339(), "2026-11-23T10:02:30+00:00");
        assert_eq!(e.method, Method::StraightLine);
        assert_eq!(serde_json::to_value(e).unwrap()["method"], "straight_line");
        assert!(estimate(1200.0, None, now).is_none());
        assert!(estimate(1200.0, Some(0.0), now).is_none());
        assert!(estimate(f64::NAN, Some(5.0), now).is_none());
        assert_eq!(estimate(1e9, Some(1.5), now).unwrap().seconds, 86_400);
    }

    #[test]
    fn next_is_the_stop_headed_to_else_the_first_pending() {
        let stops = stops();
        let p = |state, last_sequence| Progress { state, last_sequence, left: false };
        let pending = p(StopState::Pending, 0);
        let done = p(StopState::Done, 5);
        assert_eq!(next(&stops, &[pending, pending, pending]).unwrap().0.job_id, "A");
        assert_eq!(next(&stops, &[done, pending, pending]).unwrap().0.job_id, "B");
        // Out of order: the driver went to C first.
        let (s, state) = next(&stops, &[done, pending, p(StopState::Heading, 7)]).unwrap();
        assert_eq!((s.job_id.as_str(), state), ("C", StopState::Heading));
        // Two open: the one said last.
        let arrived = p(StopState::Arrived, 9);
        assert_eq!(next(&stops, &[arrived, p(StopState::Heading, 6), done]).unwrap().0.job_id, "A");
        // Arrived and then left without finishing: the van has gone on to the next.
        let left = Progress { left: true, ..arrived };
        assert_eq!(next(&stops, &[left, pending, pending]).unwrap().0.job_id, "B");
        assert!(next(&stops, &[done, done, left]).is_none());
    }
}
