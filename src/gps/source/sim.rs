//! A deterministic simulated delivery route, for the demo and for tests: a van driving between
//! stops and waiting at each, emitted as the NMEA a receiver would send (RMC, GGA, GSA once per
//! second), so the simulated fix goes through the same decoder as a real one.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use tokio_util::sync::CancellationToken;

use super::Feed;
use crate::gps::frame::with_checksum;
use crate::gps::geo::{bearing_deg, distance_m};
use crate::gps::latest::LatestFix;

/// A closed loop of stops driven at a cruise speed, with a dwell at each stop.
#[derive(Debug, Clone)]
pub struct Route {
    stops: Vec<(f64, f64)>,
    cruise_mps: f64,
    dwell_s: f64,
}

/// Where the van is at one instant of the route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct State {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Speed, m/s (0 while dwelling).
    pub speed_mps: f64,
    /// Course, degrees true.
    pub course_deg: f64,
}

impl Route {
    /// A route through `stops` (at least two), driven at `cruise_mps`, waiting `dwell_s` at each.
    pub fn new(stops: Vec<(f64, f64)>, cruise_mps: f64, dwell_s: f64) -> Self {
        assert!(stops.len() >= 2 && cruise_mps > 0.0, "a route needs two stops and a speed");
        Self { stops, cruise_mps, dwell_s }
    }

    /// The demo route: six drops around a few blocks of central Hamburg, 40 km/h, 20 s per stop.
    pub fn demo() -> Self {
        Self::new(
            vec![
                (53.55073, 9.99302),
                (53.55311, 10.00069),
                (53.55686, 10.00412),
                (53.55922, 9.99655),
                (53.55641, 9.98720),
                (53.55230, 9.98543),
            ],
            11.1,
            20.0,
        )
    }

    /// The stops, in driving order.
    pub fn stops(&self) -> &[(f64, f64)] {
        &self.stops
    }

    fn legs(&self) -> impl Iterator<Item = ((f64, f64), (f64, f64))> + '_ {
        self.stops.iter().copied().zip(self.stops.iter().copied().cycle().skip(1))
    }

    /// Seconds for one lap.
    pub fn lap_s(&self) -> f64 {
        self.legs().map(|(a, b)| self.dwell_s + distance_m(a, b) / self.cruise_mps).sum()
    }

    /// Where the van is `t` seconds after starting at the first stop (the route repeats).
    pub fn at(&self, t: f64) -> State {
        let mut t = t.rem_euclid(self.lap_s());
        for (a, b) in self.legs() {
            let course_deg = bearing_deg(a, b);
            if t < self.dwell_s {
                return State { lat: a.0, lon: a.1, speed_mps: 0.0, course_deg };
            }
            t -= self.dwell_s;
            let drive = distance_m(a, b) / self.cruise_mps;
            if t < drive {
                let k = t / drive;
                let lat = a.0 + (b.0 - a.0) * k;
                let lon = a.1 + (b.1 - a.1) * k;
                return State { lat, lon, speed_mps: self.cruise_mps, course_deg };
            }
            t -= drive;
        }
        let (lat, lon) = self.stops[0];
        State { lat, lon, speed_mps: 0.0, course_deg: 0.0 }
    }

    /// The NMEA burst a receiver would send for second `t` of the route, stamped `start + t`.
    pub fn nmea(&self, start: DateTime<Utc>, t: u64) -> String {
        self.nmea_at(t as f64, start + chrono::Duration::seconds(t as i64))
    }

    /// The NMEA burst for route time `t` (seconds), stamped `when`.
    pub fn nmea_at(&self, t: f64, when: DateTime<Utc>) -> String {
        let s = self.at(t);
        let hms = format!(
            "{:02}{:02}{:02}.{:02}",
            when.hour(),
            when.minute(),
            when.second(),
            when.timestamp_subsec_millis() / 10
        );
        let date = when.format("%d%m%y");
        let (lat, ns) = ddmm(s.lat, 2, 'N', 'S');
        let (lon, ew) = ddmm(s.lon, 3, 'E', 'W');
        let knots = s.speed_mps * 3600.0 / 1852.0;
        let mut out = String::with_capacity(256);
        out.push_str(&with_checksum(&format!(
            "$GPRMC,{hms},A,{lat},{ns},{lon},{ew},{knots:.2},{:.1},{date},,,A",
            s.course_deg
        )));
        out.push_str(&with_checksum(&format!("$GPGGA,{hms},{lat},{ns},{lon},{ew},1,09,0.9,12.0,M,40.0,M,,")));
        out.push_str(&with_checksum("$GPGSA,A,3,02,05,07,09,13,15,18,20,30,,,,1.6,0.9,1.3"));
        out
    }
}

/// Degrees to NMEA `d..dmm.mmmmm` with a hemisphere letter.
fn ddmm(v: f64, deg_digits: usize, pos: char, neg: char) -> (String, char) {
    let a = v.abs();
    let deg = a.trunc();
    let min = (a - deg) * 60.0;
    let mut s = String::new();
    let _ = write!(s, "{:0w$}{:08.5}", deg as u32, min, w = deg_digits);
    (s, if v >= 0.0 { pos } else { neg })
}

/// Drives `route` into `latest`, one epoch per second of route time (`speed` 2.0 runs it twice as
/// fast), starting now, until shutdown. Epochs are stamped with real time, so that a fast
/// simulation does not make the system clock look wrong.
pub async fn run(route: Route, speed: f64, latest: LatestFix, shutdown: CancellationToken) {
    let mut feed = Feed::new("sim", latest);
    feed.connected(true);
    let start = Utc::now().with_nanosecond(0).unwrap_or_else(Utc::now);
    let period = Duration::from_secs(1).div_f64(if speed > 0.0 { speed } else { 1.0 });
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for t in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        let when = start + chrono::Duration::from_std(period * t as u32).unwrap_or_default();
        feed.bytes(route.nmea_at(t as f64, when).as_bytes());
        feed.flush();
    }
    feed.connected(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gps::fix::Mode;
    use crate::gps::source::replay::decode_all;

    #[test]
    fn the_route_dwells_then_drives_toward_the_next_stop() {
        let r = Route::demo();
        let s0 = r.at(0.0);
        assert_eq!(s0.speed_mps, 0.0);
        let s = r.at(30.0);
        assert!(s.speed_mps > 0.0);
        assert!((s.course_deg - bearing_deg(r.stops[0], r.stops[1])).abs() < 1e-9);
        let moved = distance_m((s0.lat, s0.lon), (s.lat, s.lon));
        assert!((moved - 10.0 * 11.1).abs() < 1.0, "{moved}");
        assert_eq!(r.at(r.lap_s() + 30.0), s, "the route repeats");
    }

    #[test]
    fn simulated_nmea_decodes_to_the_simulated_state() {
        let r = Route::demo();
        let start = "2026-11-22T10:00:00Z".parse().unwrap();
        let mut fixes = Vec::new();
        for t in 0..60 {
            decode_all(r.nmea(start, t).as_bytes(), |f| fixes.push(f));
        }
        assert_eq!(fixes.len(), 60);
        let f = &fixes[45];
        let s = r.at(45.0);
        assert_eq!(f.mode, Mode::ThreeD);
        assert!(distance_m(f.position().unwrap(), (s.lat, s.lon)) < 0.05);
        assert!((f.speed_mps.unwrap() - s.speed_mps).abs() < 0.01);
        assert_eq!(f.time.unwrap().to_rfc3339(), "2026-11-22T10:00:45+00:00");
    }
}
