//! Fix assembly: merges the sentences of one receiver epoch (RMC, GGA, GNS, GLL, VTG, GSA, ZDA,
//! from any talker) into one [`Fix`], the way gpsd does, without I/O so it is tested directly.
//!
//! An epoch ends when a sentence carries a different time of day, or when a sentence type that
//! appears once per epoch repeats (receivers that stamp no time, or the same time twice). A fix
//! the receiver marks invalid (RMC/GLL status V, GGA quality 0, GSA mode 1, FAA mode N, GNS all
//! N) carries no position.

use chrono::{Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};

use super::fix::{Fix, Mode};
use super::sentence::{LatLon, Sentence, TimeOfDay, Validity};

const DAY_MS: u32 = 24 * 3600 * 1000;

/// Sentence types of which a receiver sends one per epoch; a repeat starts a new epoch.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Once {
    Gga = 1,
    Rmc = 2,
    Gns = 4,
    Gll = 8,
    Vtg = 16,
    Zda = 32,
    Gsa = 64,
}

/// An epoch without one of these has no fix to report.
const POSITION_SENTENCES: u8 = Once::Gga as u8 | Once::Rmc as u8 | Once::Gns as u8 | Once::Gll as u8;

#[derive(Debug, Default, Clone)]
struct Epoch {
    any: bool,
    seen: u8,
    time: Option<TimeOfDay>,
    date: Option<NaiveDate>,
    pos: Option<LatLon>,
    valid: bool,
    invalid: bool,
    doubtful: bool,
    /// The last timestamped sentence type merged, to learn which types end the receiver's epochs.
    last: u8,
    dimension: Option<u8>,
    quality: Option<u8>,
    sats: Option<u8>,
    gsa_used: u8,
    hdop: Option<f64>,
    gsa_hdop: Option<f64>,
    alt_m: Option<f64>,
    speed_mps: Option<f64>,
    course_deg: Option<f64>,
}

/// Merges decoded sentences into one fix per epoch.
#[derive(Debug, Default)]
pub struct Assembler {
    epoch: Epoch,
    /// The last date the receiver told, with the time of day it came with, so that epochs
    /// without a date of their own (GGA only) are dated, across midnight too.
    date: Option<(NaiveDate, TimeOfDay)>,
    /// Every sentence type that has ended an epoch so far.
    enders: u8,
}

impl Assembler {
    /// An assembler that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sentence; returns the previous epoch's fix if this sentence began a new one.
    pub fn push(&mut self, s: &Sentence) -> Option<Fix> {
        let (time, once) = match s {
            Sentence::Gga { time, .. } => (*time, Some(Once::Gga)),
            Sentence::Rmc { time, .. } => (*time, Some(Once::Rmc)),
            Sentence::Gns { time, .. } => (*time, Some(Once::Gns)),
            Sentence::Gll { time, .. } => (*time, Some(Once::Gll)),
            Sentence::Vtg { .. } => (None, Some(Once::Vtg)),
            Sentence::Zda { time, .. } => (*time, Some(Once::Zda)),
            // Several GSA per epoch are normal (one per constellation): never a new epoch.
            Sentence::Gsa { .. } => (None, None),
            Sentence::Other => return None,
        };
        let new_time = matches!((self.epoch.time, time), (Some(a), Some(b)) if a != b);
        let repeat = once.is_some_and(|o| self.epoch.seen & o as u8 != 0);
        let once = once.or(matches!(s, Sentence::Gsa { .. }).then_some(Once::Gsa));
        let out = if self.epoch.any && (new_time || repeat) { self.finish() } else { None };
        let e = &mut self.epoch;
        e.any = true;
        if let Some(o) = once {
            e.seen |= o as u8;
            if time.is_some() {
                e.last = o as u8;
            }
        }
        if e.time.is_none() {
            e.time = time;
        }
        match *s {
            Sentence::Gga { pos, quality, sats, hdop, alt_m, .. } => {
                e.set_pos(pos);
                match (quality, sats) {
                    (Some(0), _) => e.invalid = true,
                    // A fix from no satellites is doubtful: it stands only if another sentence
                    // of the epoch says the fix is valid (gpsd reads it so). Dead reckoning
                    // needs no satellites.
                    (Some(q), Some(0)) if q != 6 => e.doubtful = true,
                    (Some(_), _) => e.valid = true,
                    (None, _) => {}
                }
                e.quality = quality.or(e.quality);
                e.sats = sats.or(e.sats);
                e.hdop = hdop.or(e.hdop);
                e.alt_m = alt_m.or(e.alt_m);
            }
            Sentence::Rmc { validity, pos, speed_mps, course_deg, date, .. } => {
                e.set_pos(pos);
                e.judge(validity);
                e.speed_mps = speed_mps.or(e.speed_mps);
                e.course_deg = course_deg.or(e.course_deg);
                e.date = date.or(e.date);
            }
            Sentence::Gns { pos, validity, sats, hdop, alt_m, .. } => {
                e.set_pos(pos);
                e.judge(validity);
                e.sats = e.sats.or(sats);
                e.hdop = e.hdop.or(hdop);
                e.alt_m = e.alt_m.or(alt_m);
            }
            Sentence::Gll { pos, validity, .. } => {
                e.set_pos(pos);
                e.judge(validity);
            }
            Sentence::Vtg { course_deg, speed_mps, .. } => {
                e.course_deg = e.course_deg.or(course_deg);
                e.speed_mps = e.speed_mps.or(speed_mps);
            }
            Sentence::Gsa { dimension, used, hdop } => {
                // Multi-constellation receivers send one GSA per system: the best dimension
                // counts, and the satellites add up.
                e.dimension = e.dimension.max(dimension);
                e.gsa_used = e.gsa_used.saturating_add(used);
                e.gsa_hdop = e.gsa_hdop.or(hdop);
            }
            Sentence::Zda { date, .. } => e.date = date.or(e.date),
            Sentence::Other => {}
        }
        out
    }

    /// Ends the current epoch (when the stream pauses, or a new epoch begins) and returns its
    /// fix, if the epoch had a position sentence at all.
    pub fn finish(&mut self) -> Option<Fix> {
        let e = std::mem::take(&mut self.epoch);
        if e.seen & POSITION_SENTENCES == 0 {
            return None;
        }
        self.enders |= e.last;
        let time = self.stamp(&e);
        let position = e.pos.filter(|_| !e.invalid && e.dimension != Some(1) && (e.valid || !e.doubtful));
        let mode = match (position, e.dimension) {
            (None, _) => Mode::NoFix,
            (Some(_), Some(3)) => Mode::ThreeD,
            (Some(_), Some(_)) => Mode::TwoD,
            (Some(_), None) if e.alt_m.is_some() && e.valid => Mode::ThreeD,
            (Some(_), None) => Mode::TwoD,
        };
        let has = mode.has_position();
        Some(Fix {
            time,
            lat: position.map(|p| p.lat),
            lon: position.map(|p| p.lon),
            alt_m: e.alt_m.filter(|_| mode == Mode::ThreeD),
            speed_mps: e.speed_mps.filter(|_| has),
            course_deg: e.course_deg.filter(|_| has),
            mode,
            quality: e.quality,
            sats: e.sats.or((e.gsa_used > 0).then_some(e.gsa_used)),
            hdop: e.hdop.or(e.gsa_hdop),
        })
    }

    /// Ends the input: the last epoch is returned only if it is complete, that is, it has a
    /// sentence type that has ended an epoch before (a cycle ender, as gpsd learns them). A log
    /// cut mid-epoch then gives no half-merged last fix, just as gpsd reports none.
    pub fn finish_input(&mut self) -> Option<Fix> {
        let complete = self.enders == 0 || self.epoch.seen & self.enders != 0;
        if complete {
            self.finish()
        } else {
            self.epoch = Epoch::default();
            None
        }
    }

    /// UTC time of an epoch: its time of day on its own date, or on the last date told, moved
    /// on a day when the time of day has wrapped past midnight since.
    fn stamp(&mut self, e: &Epoch) -> Option<chrono::DateTime<Utc>> {
        let tod = e.time?;
        let date = match e.date {
            Some(d) => {
                self.date = Some((d, tod));
                d
            }
            None => {
                let (d, at) = self.date?;
                if tod.millis() + DAY_MS / 2 < at.millis() {
                    let next = d.succ_opt()?;
                    self.date = Some((next, tod));
                    next
                } else {
                    d
                }
            }
        };
        let midnight: NaiveDateTime = date.and_hms_opt(0, 0, 0)?;
        let at = midnight + Duration::milliseconds(i64::from(tod.millis()));
        Some(Utc.from_utc_datetime(&at))
    }
}

impl Epoch {
    fn set_pos(&mut self, pos: Option<LatLon>) {
        if pos.is_some() {
            self.pos = pos;
        }
    }

    fn judge(&mut self, v: Validity) {
        match v {
            Validity::Valid => self.valid = true,
            Validity::Invalid => self.invalid = true,
            Validity::Unknown => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sentence::decode;
    use super::*;

    fn run(lines: &[&str]) -> Vec<Fix> {
        let mut a = Assembler::new();
        let mut out: Vec<Fix> = lines.iter().filter_map(|l| a.push(&decode(l).unwrap())).collect();
        out.extend(a.finish_input());
        out
    }

    #[test]
    fn rmc_gga_gsa_of_one_epoch_make_one_3d_fix() {
        let fixes = run(&[
            "$GPRMC,102128.000,A,5129.0623,N,00632.2910,E,0.23,30.68,210211,,,A",
            "$GPGGA,102128.000,5129.0623,N,00632.2910,E,1,4,1.31,29.7,M,47.4,M,,",
            "$GPGSA,A,3,20,17,23,14,,,,,,,,,1.62,1.31,0.95",
        ]);
        assert_eq!(fixes.len(), 1);
        let f = &fixes[0];
        assert_eq!(f.mode, Mode::ThreeD);
        assert_eq!(f.time.unwrap().to_rfc3339(), "2011-02-21T10:21:28+00:00");
        assert_eq!((f.sats, f.quality, f.alt_m), (Some(4), Some(1), Some(29.7)));
        assert!(f.speed_mps.is_some() && f.course_deg.is_some());
    }

    #[test]
    fn a_new_time_of_day_starts_a_new_epoch() {
        let fixes = run(&[
            "$GPGGA,102128.000,5129.0623,N,00632.2910,E,1,4,1.31,29.7,M,47.4,M,,",
            "$GPGGA,102129.000,5129.0620,N,00632.2906,E,1,4,1.31,29.7,M,47.4,M,,",
        ]);
        assert_eq!(fixes.len(), 2);
    }

    #[test]
    fn a_repeated_sentence_without_time_starts_a_new_epoch() {
        let fixes = run(&["$GPGLL,5129.0623,N,00632.2910,E", "$GPGLL,5129.0624,N,00632.2910,E"]);
        assert_eq!(fixes.len(), 2);
        assert!(fixes.iter().all(|f| f.mode == Mode::TwoD));
    }

    #[test]
    fn each_invalid_marker_removes_the_position() {
        for invalid in [
            "$GPRMC,102128.000,V,5129.0623,N,00632.2910,E,0.23,30.68,210211,,,A",
            "$GPGGA,102128.000,5129.0623,N,00632.2910,E,0,4,1.31,29.7,M,47.4,M,,",
            "$GPGLL,5129.0623,N,00632.2910,E,102128.000,A,N",
            "$GNGNS,102128.000,5129.0623,N,00632.2910,E,NN,4,1.3,29.7,47.4,,",
        ] {
            let fixes = run(&[invalid]);
            assert_eq!(fixes[0].mode, Mode::NoFix, "{invalid}");
            assert_eq!(fixes[0].position(), None);
        }
        let with_gsa_1 =
            run(&["$GPGGA,102128.000,5129.0623,N,00632.2910,E,1,4,1.31,29.7,M,47.4,M,,", "$GPGSA,A,1,,,,,,,,,,,,,,,"]);
        assert_eq!(with_gsa_1[0].mode, Mode::NoFix);
    }

    #[test]
    fn zda_dates_a_gga_only_receiver() {
        let fixes = run(&[
            "$GPZDA,235959.00,31,12,2023,00,00",
            "$GPGGA,235959.00,5129.0623,N,00632.2910,E,1,4,1.31,29.7,M,47.4,M,,",
            "$GPGGA,000000.00,5129.0623,N,00632.2910,E,1,4,1.31,29.7,M,47.4,M,,",
        ]);
        assert_eq!(fixes[0].time.unwrap().to_rfc3339(), "2023-12-31T23:59:59+00:00");
        assert_eq!(fixes[1].time.unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00", "midnight rolls the date");
    }

    #[test]
    fn a_truncated_last_epoch_is_not_reported_but_a_complete_one_is() {
        let epoch = |t: &str| {
            [
                format!("$GPRMC,{t},A,5129.0623,N,00632.2910,E,0.23,30.68,210211,,,A"),
                format!("$GPGGA,{t},5129.0623,N,00632.2910,E,1,4,1.31,29.7,M,47.4,M,,"),
            ]
        };
        let mut lines: Vec<String> = [epoch("102128.000"), epoch("102129.000")].concat();
        let complete: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(run(&complete).len(), 2);
        lines.pop();
        let cut: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(run(&cut).len(), 1);
    }

    #[test]
    fn gga_with_no_satellites_used_is_no_fix_unless_dead_reckoning() {
        let none = run(&["$GPGGA,194050.00,4221.8237733,N,07101.9411707,W,1,00,3.3,10.835,M,-33.320,M,,"]);
        assert_eq!(none[0].mode, Mode::NoFix);
        let dr = run(&["$GPGGA,194050.00,4221.8237733,N,07101.9411707,W,6,00,3.3,10.835,M,-33.320,M,,"]);
        assert_eq!(dr[0].mode, Mode::ThreeD);
    }

    /// nmea crate issue #154: GGA quality 9 (SBAS) is a fix, with its position.
    #[test]
    fn gga_quality_9_gives_a_position() {
        let f = run(&["$GNGGA,120000.00,4807.038,N,01131.000,E,9,08,0.9,545.4,M,46.9,M,,"]);
        assert_eq!(f[0].mode, Mode::ThreeD);
        assert_eq!(f[0].quality, Some(9));
        assert!(f[0].position().is_some());
    }

    #[test]
    fn every_gnss_talker_gives_the_same_fix() {
        for talker in ["GP", "GN", "GL", "GA", "GB", "BD", "GQ", "GI"] {
            let f = run(&[
                &format!("${talker}RMC,102128.00,A,5129.0623,N,00632.2910,E,0.23,30.68,210211,,,A"),
                &format!("${talker}GGA,102128.00,5129.0623,N,00632.2910,E,1,4,1.31,29.7,M,47.4,M,,"),
            ]);
            assert_eq!(f.len(), 1, "{talker}");
            assert_eq!(f[0].mode, Mode::ThreeD, "{talker}");
        }
    }

    #[test]
    fn gns_alone_makes_a_fix() {
        let f = run(&["$GNGNS,112257.00,3844.24011,N,00908.43828,W,AN,10,0.8,9.0,52.0,,"]);
        assert_eq!(f[0].mode, Mode::ThreeD);
        assert_eq!(f[0].sats, Some(10));
    }

    #[test]
    fn multi_constellation_gsa_adds_up_satellites() {
        let fixes = run(&[
            "$GNRMC,102128.00,A,5129.0623,N,00632.2910,E,0.23,30.68,210211,,,A",
            "$GNGSA,A,3,20,17,23,14,,,,,,,,,1.62,1.31,0.95,1",
            "$GNGSA,A,3,70,71,,,,,,,,,,,1.62,1.31,0.95,2",
        ]);
        assert_eq!(fixes[0].sats, Some(6));
        assert_eq!(fixes[0].mode, Mode::ThreeD);
    }
}
