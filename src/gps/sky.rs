//! Satellites in view, from GSV, for installers checking an antenna (`curbside gps watch`).
//!
//! GSV is decoded by the `nmea` crate one sentence at a time. Its stateful `Nmea` parser is never
//! used: it panics past 58 satellites (nmea issue #158) and on more GSV sentences than it expects;
//! this view is bounded per constellation instead and never panics.

use std::collections::BTreeMap;

use nmea::ParseResult;
use serde::Serialize;

/// Most satellites kept per constellation; no GNSS has more in view from one place.
const MAX_PER_SYSTEM: usize = 64;

/// Satellites in view per constellation, with their signal strength.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sky {
    /// Constellation name (`GPS`, `GLONASS`, `Galileo`, `BeiDou`, `QZSS`, `NavIC`) to its satellites.
    pub systems: BTreeMap<&'static str, Vec<SatelliteView>>,
}

/// One satellite as GSV reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SatelliteView {
    /// PRN or slot number as the receiver numbers it.
    pub prn: u32,
    /// Carrier-to-noise density, dB-Hz; `None` when not tracked.
    pub snr_dbhz: Option<f32>,
}

impl Sky {
    /// Satellites in view over all constellations.
    pub fn in_view(&self) -> usize {
        self.systems.values().map(Vec::len).sum()
    }

    /// Satellites with a signal (tracked) over all constellations.
    pub fn tracked(&self) -> usize {
        self.systems.values().flatten().filter(|s| s.snr_dbhz.is_some()).count()
    }

    /// Merges one GSV sentence (full text with checksum). Returns false if it was not a GSV the
    /// crate could decode.
    pub fn merge(&mut self, sentence: &str) -> bool {
        let Ok(ParseResult::GSV(gsv)) = nmea::parse_str(sentence) else {
            return false;
        };
        let name = system_name(gsv.gnss_type);
        let sats = self.systems.entry(name).or_default();
        if gsv.sentence_num <= 1 {
            sats.clear();
        }
        for sat in gsv.sats_info.iter().flatten() {
            if sats.len() < MAX_PER_SYSTEM && !sats.iter().any(|s| s.prn == sat.prn()) {
                sats.push(SatelliteView { prn: sat.prn(), snr_dbhz: sat.snr() });
            }
        }
        true
    }
}

fn system_name(t: nmea::sentences::GnssType) -> &'static str {
    use nmea::sentences::GnssType as G;
    match t {
        G::Gps => "GPS",
        G::Glonass => "GLONASS",
        G::Galileo => "Galileo",
        G::Beidou => "BeiDou",
        G::Qzss => "QZSS",
        G::NavIC => "NavIC",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gps::frame::with_checksum;

    /// nmea issue #158: its stateful parser panics past 58 satellites. Sixteen GSV sentences of
    /// four satellites each (64 in view) must merge without a panic and be counted.
    #[test]
    fn more_than_58_satellites_in_view_do_not_panic() {
        let mut sky = Sky::default();
        let n = 16;
        for i in 0..n {
            let sats: Vec<String> = (0..4).map(|k| format!("{},45,180,40", i * 4 + k + 1)).collect();
            let body = format!("$GPGSV,{n},{},64,{}", i + 1, sats.join(","));
            assert!(sky.merge(with_checksum(&body).trim_end()), "{body}");
        }
        assert_eq!(sky.in_view(), 64);
        assert_eq!(sky.tracked(), 64);
        // The stateful parser of the crate is the one that panics; feeding it the same input
        // proves the guard is needed (and that this test would catch a regression to it).
        let panicked = std::panic::catch_unwind(|| {
            let mut stateful = nmea::Nmea::default();
            for i in 0..n {
                let sats: Vec<String> = (0..4).map(|k| format!("{},45,180,40", i * 4 + k + 1)).collect();
                let body = format!("$GPGSV,{n},{},64,{}", i + 1, sats.join(","));
                let _ = stateful.parse(with_checksum(&body).trim_end());
            }
            let _ = stateful.satellites();
        });
        assert!(panicked.is_err(), "nmea's stateful parser no longer panics: the guard can go");
    }

    #[test]
    fn a_new_gsv_cycle_replaces_the_old_one() {
        let mut sky = Sky::default();
        sky.merge(with_checksum("$GPGSV,1,1,02,01,45,180,40,02,10,90,").trim_end());
        sky.merge(with_checksum("$GPGSV,1,1,01,03,45,180,33").trim_end());
        assert_eq!(sky.in_view(), 1);
    }
}
