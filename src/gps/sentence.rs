//! Decoding of the NMEA 0183 sentences that make a fix: GGA, RMC, GNS, GLL, VTG, GSA and ZDA,
//! from any talker (GP, GN, GL, GA, GB, BD, GQ, GI, ...), into plain values.
//!
//! These are decoded here rather than by the `nmea` crate because the crate rejects what real
//! receivers send and gpsd accepts (GGA quality 9 and 6 as invalid or unparseable, sentences over
//! 102 bytes, ZDA outside its stateful parser), and because this zero-allocation split is several
//! times faster on the hot path. The crate still decodes GSV (see [`super::sky`]) and serves as a
//! differential oracle over the real-receiver corpus in the tests.

use chrono::NaiveDate;

/// Time of day in milliseconds since UTC midnight, as the receiver stamped its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(pub u32);

impl TimeOfDay {
    /// Milliseconds since midnight.
    pub fn millis(self) -> u32 {
        self.0
    }
}

/// A receiver's own verdict on its fix, as the sentence states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// The sentence says the position is valid.
    Valid,
    /// The sentence says there is no fix (RMC/GLL status V, GGA quality 0, FAA mode N, ...).
    Invalid,
    /// The sentence does not say.
    Unknown,
}

/// Position in decimal degrees, WGS84.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    /// Latitude, positive north.
    pub lat: f64,
    /// Longitude, positive east.
    pub lon: f64,
}

/// One decoded sentence, reduced to what fix assembly needs. Fields are named after the NMEA
/// fields they come from, in the units of [`super::Fix`].
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum Sentence {
    /// GGA: time, position, quality, satellites used, HDOP, altitude.
    Gga {
        time: Option<TimeOfDay>,
        pos: Option<LatLon>,
        quality: Option<u8>,
        sats: Option<u8>,
        hdop: Option<f64>,
        alt_m: Option<f64>,
    },
    /// RMC: time, status, position, speed, course, date.
    Rmc {
        time: Option<TimeOfDay>,
        validity: Validity,
        pos: Option<LatLon>,
        speed_mps: Option<f64>,
        course_deg: Option<f64>,
        date: Option<NaiveDate>,
    },
    /// GNS: time, position, per-constellation mode, satellites, HDOP, altitude.
    Gns {
        time: Option<TimeOfDay>,
        pos: Option<LatLon>,
        validity: Validity,
        sats: Option<u8>,
        hdop: Option<f64>,
        alt_m: Option<f64>,
    },
    /// GLL: position, time, status.
    Gll { pos: Option<LatLon>, time: Option<TimeOfDay>, validity: Validity },
    /// VTG: course over ground and speed.
    Vtg { course_deg: Option<f64>, speed_mps: Option<f64>, validity: Validity },
    /// GSA: fix dimension (1 none, 2, 3), satellites used, HDOP.
    Gsa { dimension: Option<u8>, used: u8, hdop: Option<f64> },
    /// ZDA: time and full date.
    Zda { time: Option<TimeOfDay>, date: Option<NaiveDate> },
    /// A well-formed sentence that carries nothing for the fix (GSV, TXT, proprietary, ...).
    Other,
}

/// A sentence that passed its checksum but whose fields make no sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} sentence has a bad {field} field")]
pub struct DecodeError {
    /// Sentence type, e.g. `GGA`.
    pub kind: &'static str,
    /// The field that could not be read.
    pub field: &'static str,
}

const KNOTS_TO_MPS: f64 = 1852.0 / 3600.0;
const KMH_TO_MPS: f64 = 1.0 / 3.6;

/// Decodes a checksum-verified sentence (start character included; a trailing `*HH` checksum,
/// if present, is ignored).
pub fn decode(sentence: &str) -> Result<Sentence, DecodeError> {
    let sentence = strip_checksum(sentence);
    let bytes = sentence.as_bytes();
    // `$` + two-letter talker + three-letter type. Proprietary (`$P...`) and encapsulated (`!`)
    // sentences are not fix data.
    if bytes.len() < 6 || bytes[0] != b'$' || bytes[1] == b'P' {
        return Ok(Sentence::Other);
    }
    let (Some(kind), Some(rest)) = (sentence.get(3..6), sentence.get(6..)) else {
        return Ok(Sentence::Other);
    };
    let rest = rest.strip_prefix(',').unwrap_or(rest);
    let mut f = Fields::new(rest);
    match kind {
        "GGA" => gga(&mut f),
        "RMC" => rmc(&mut f),
        "GNS" => gns(&mut f),
        "GLL" => gll(&mut f),
        "VTG" => vtg(&mut f),
        "GSA" => gsa(&mut f),
        "ZDA" => zda(&mut f),
        _ => Ok(Sentence::Other),
    }
}

/// The sentence without its `*HH` checksum.
pub fn strip_checksum(sentence: &str) -> &str {
    match sentence.len().checked_sub(3) {
        Some(star) if sentence.as_bytes()[star] == b'*' => &sentence[..star],
        _ => sentence,
    }
}

/// Comma-separated fields; a field past the end reads as empty, as receivers omit trailing ones.
struct Fields<'a> {
    inner: std::str::Split<'a, char>,
}

impl<'a> Fields<'a> {
    fn new(s: &'a str) -> Self {
        Self { inner: s.split(',') }
    }
    fn next(&mut self) -> &'a str {
        self.inner.next().unwrap_or("")
    }
    fn skip(&mut self, n: usize) {
        for _ in 0..n {
            self.next();
        }
    }
}

fn err(kind: &'static str, field: &'static str) -> DecodeError {
    DecodeError { kind, field }
}

/// An optional number: empty is `None`, garbage is an error.
fn num(s: &str) -> Result<Option<f64>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(()),
    }
}

/// An optional number where garbage is treated as absent: for fields that qualify a fix
/// (HDOP, altitude, speed) rather than define it.
fn lenient(s: &str) -> Option<f64> {
    num(s).ok().flatten()
}

fn small(s: &str) -> Option<u8> {
    s.trim().parse::<u8>().ok()
}

/// `hhmmss[.sss]`.
fn parse_time(s: &str) -> Result<Option<TimeOfDay>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    let b = s.as_bytes();
    if b.len() < 6 || !b[..6].iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    let two = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    let (h, m, sec) = (two(0), two(2), two(4));
    // Second 60 is a leap second.
    if h > 23 || m > 59 || sec > 60 {
        return Err(());
    }
    let mut millis = 0u32;
    if b.len() > 6 {
        if b[6] != b'.' {
            return Err(());
        }
        let frac = &b[7..];
        if !frac.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        for (i, d) in frac.iter().take(3).enumerate() {
            millis += u32::from(d - b'0') * [100, 10, 1][i];
        }
    }
    Ok(Some(TimeOfDay(((h * 60 + m) * 60 + sec) * 1000 + millis)))
}

/// `ddmmyy`; two-digit years are 1980–2079, as GPS itself started in 1980.
fn parse_date(s: &str) -> Result<Option<NaiveDate>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    let b = s.as_bytes();
    if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    let two = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    let yy = two(4) as i32;
    let year = if yy >= 80 { 1900 + yy } else { 2000 + yy };
    NaiveDate::from_ymd_opt(year, two(2), two(0)).map(Some).ok_or(())
}

/// `ddmm.mmmm` or `dddmm.mmmm` with its hemisphere letter.
fn coord(value: &str, hemi: &str, max_deg: f64, neg: &str, pos: &str) -> Result<Option<f64>, ()> {
    if value.is_empty() && hemi.is_empty() {
        return Ok(None);
    }
    let v = num(value)?.ok_or(())?;
    if v < 0.0 {
        return Err(());
    }
    let deg = (v / 100.0).trunc();
    let min = v - deg * 100.0;
    // Exactly 60 minutes occurs in receivers' placeholders (`8960.0000,N` for the pole).
    if min > 60.0 {
        return Err(());
    }
    let abs = deg + min / 60.0;
    if abs > max_deg {
        return Err(());
    }
    if hemi == pos {
        Ok(Some(abs))
    } else if hemi == neg {
        Ok(Some(-abs))
    } else {
        Err(())
    }
}

fn lat_lon(f: &mut Fields<'_>, kind: &'static str) -> Result<Option<LatLon>, DecodeError> {
    let (lat, ns, lon, ew) = (f.next(), f.next(), f.next(), f.next());
    let lat = coord(lat, ns, 90.0, "S", "N").map_err(|()| err(kind, "latitude"))?;
    let lon = coord(lon, ew, 180.0, "W", "E").map_err(|()| err(kind, "longitude"))?;
    Ok(match (lat, lon) {
        (Some(lat), Some(lon)) => Some(LatLon { lat, lon }),
        _ => None,
    })
}

fn time(f: &mut Fields<'_>, kind: &'static str) -> Result<Option<TimeOfDay>, DecodeError> {
    parse_time(f.next()).map_err(|()| err(kind, "time"))
}

/// The FAA mode indicator of NMEA 2.3+: `N` (and `V` in NMEA 4.1) mean no fix; absent says
/// nothing.
fn faa(mode: &str) -> Validity {
    match mode.as_bytes().first() {
        None => Validity::Unknown,
        Some(b'N' | b'V') => Validity::Invalid,
        Some(_) => Validity::Valid,
    }
}

/// RMC/GLL status: `A` is a fix; anything else present (`V`, and the odd `N` some receivers
/// send) is not, as gpsd reads it.
fn status(s: &str) -> Validity {
    match s {
        "A" => Validity::Valid,
        "" => Validity::Unknown,
        _ => Validity::Invalid,
    }
}

/// Combines a status field with an FAA mode: either saying "no fix" wins.
fn both(a: Validity, b: Validity) -> Validity {
    match (a, b) {
        (Validity::Invalid, _) | (_, Validity::Invalid) => Validity::Invalid,
        (Validity::Valid, _) | (_, Validity::Valid) => Validity::Valid,
        _ => Validity::Unknown,
    }
}

fn gga(f: &mut Fields<'_>) -> Result<Sentence, DecodeError> {
    let time = time(f, "GGA")?;
    let pos = lat_lon(f, "GGA")?;
    // Quality 0–9; 9 (SBAS) is valid even though some decoders reject it.
    let quality = small(f.next());
    let sats = small(f.next());
    let hdop = lenient(f.next());
    let alt_m = lenient(f.next());
    Ok(Sentence::Gga { time, pos, quality, sats, hdop, alt_m })
}

fn rmc(f: &mut Fields<'_>) -> Result<Sentence, DecodeError> {
    let time = time(f, "RMC")?;
    let st = status(f.next());
    let pos = lat_lon(f, "RMC")?;
    let speed_mps = lenient(f.next()).map(|kn| kn * KNOTS_TO_MPS);
    let course_deg = lenient(f.next());
    let date = parse_date(f.next()).map_err(|()| err("RMC", "date"))?;
    f.skip(2); // magnetic variation and its direction
    let validity = both(st, faa(f.next()));
    Ok(Sentence::Rmc { time, validity, pos, speed_mps, course_deg, date })
}

fn gns(f: &mut Fields<'_>) -> Result<Sentence, DecodeError> {
    let time = time(f, "GNS")?;
    let pos = lat_lon(f, "GNS")?;
    // One mode character per constellation; the fix is valid if any constellation has one.
    let modes = f.next();
    let validity = if modes.is_empty() {
        Validity::Unknown
    } else if modes.bytes().all(|m| m == b'N') {
        Validity::Invalid
    } else {
        Validity::Valid
    };
    let sats = small(f.next());
    let hdop = lenient(f.next());
    let alt_m = lenient(f.next());
    Ok(Sentence::Gns { time, pos, validity, sats, hdop, alt_m })
}

fn gll(f: &mut Fields<'_>) -> Result<Sentence, DecodeError> {
    let pos = lat_lon(f, "GLL")?;
    let time = time(f, "GLL")?;
    let st = status(f.next());
    let validity = both(st, faa(f.next()));
    Ok(Sentence::Gll { pos, time, validity })
}

fn vtg(f: &mut Fields<'_>) -> Result<Sentence, DecodeError> {
    let course = f.next();
    let t = f.next();
    if t != "T" && !t.is_empty() {
        // NMEA 2.0 and older: course true, course magnetic, knots, km/h, without unit letters.
        let speed_kn = f.next();
        return Ok(Sentence::Vtg {
            course_deg: lenient(course),
            speed_mps: lenient(speed_kn).map(|kn| kn * KNOTS_TO_MPS),
            validity: Validity::Unknown,
        });
    }
    f.skip(2); // magnetic course and its M
    let knots = lenient(f.next());
    f.skip(1);
    let kmh = lenient(f.next());
    f.skip(1);
    let validity = faa(f.next());
    let speed_mps = kmh.map(|v| v * KMH_TO_MPS).or(knots.map(|v| v * KNOTS_TO_MPS));
    Ok(Sentence::Vtg { course_deg: lenient(course), speed_mps, validity })
}

fn gsa(f: &mut Fields<'_>) -> Result<Sentence, DecodeError> {
    f.skip(1); // selection mode, A or M
    let dimension = small(f.next()).filter(|d| (1..=3).contains(d));
    let mut used = 0u8;
    for _ in 0..12 {
        if !f.next().is_empty() {
            used += 1;
        }
    }
    f.skip(1); // PDOP
    let hdop = lenient(f.next());
    Ok(Sentence::Gsa { dimension, used, hdop })
}

fn zda(f: &mut Fields<'_>) -> Result<Sentence, DecodeError> {
    let time = time(f, "ZDA")?;
    let (d, m, y) = (f.next(), f.next(), f.next());
    let date = if d.is_empty() || m.is_empty() || y.is_empty() {
        None
    } else {
        let parse = |s: &str| s.parse::<u32>().map_err(|_| err("ZDA", "date"));
        let (d, m, y) = (parse(d)?, parse(m)?, parse(y)?);
        Some(NaiveDate::from_ymd_opt(y as i32, m, d).ok_or_else(|| err("ZDA", "date"))?)
    };
    Ok(Sentence::Zda { time, date })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn gga_decodes_position_quality_and_altitude() {
        let s = decode("$GPGGA,102128.000,5129.0623,N,00632.2910,E,1,4,1.31,29.7,M,47.4,M,,").unwrap();
        let Sentence::Gga { time, pos, quality, sats, hdop, alt_m } = s else { panic!("{s:?}") };
        assert_eq!(time, Some(TimeOfDay(((10 * 60 + 21) * 60 + 28) * 1000)));
        let pos = pos.unwrap();
        assert!(close(pos.lat, 51.0 + 29.0623 / 60.0));
        assert!(close(pos.lon, 6.0 + 32.2910 / 60.0));
        assert_eq!((quality, sats, hdop, alt_m), (Some(1), Some(4), Some(1.31), Some(29.7)));
    }

    /// nmea crate issue #154: quality 9 (SBAS) is a valid fix, not a parse error.
    #[test]
    fn gga_quality_9_is_read_as_a_valid_quality() {
        let s = decode("$GNGGA,120000.00,4807.038,N,01131.000,E,9,08,0.9,545.4,M,46.9,M,,").unwrap();
        assert!(matches!(s, Sentence::Gga { quality: Some(9), pos: Some(_), .. }));
    }

    #[test]
    fn southern_and_western_hemispheres_are_negative() {
        let s = decode("$GNRMC,000000.00,A,3351.000,S,15112.000,W,0.0,,010124,,,A").unwrap();
        let Sentence::Rmc { pos: Some(p), date, .. } = s else { panic!() };
        assert!(p.lat < 0.0 && p.lon < 0.0);
        assert_eq!(date, NaiveDate::from_ymd_opt(2024, 1, 1));
    }

    #[test]
    fn rmc_status_v_and_faa_mode_n_are_invalid() {
        let v = decode("$GPRMC,102127.000,V,5129.0623,N,00632.2911,E,0.33,30.68,210211,,,A").unwrap();
        assert!(matches!(v, Sentence::Rmc { validity: Validity::Invalid, .. }));
        let n = decode("$GPRMC,102127.000,A,5129.0623,N,00632.2911,E,0.33,30.68,210211,,,N").unwrap();
        assert!(matches!(n, Sentence::Rmc { validity: Validity::Invalid, .. }));
        // Magellan eXplorist 110 in the corpus: GLL status N with mode V, and no fix.
        let odd = decode("$GPGLL,3728.0549,N,12213.8639,W,014430.076,N,V").unwrap();
        assert!(matches!(odd, Sentence::Gll { validity: Validity::Invalid, .. }));
    }

    #[test]
    fn speed_is_converted_from_knots_to_metres_per_second() {
        let s = decode("$GPRMC,102127.000,A,5129.0623,N,00632.2911,E,10.0,30.68,210211,,").unwrap();
        let Sentence::Rmc { speed_mps: Some(v), .. } = s else { panic!() };
        assert!(close(v, 5.144444444444445));
    }

    #[test]
    fn zda_gives_the_full_date() {
        let s = decode("$GPZDA,201530.00,04,07,2002,00,00").unwrap();
        assert_eq!(
            s,
            Sentence::Zda {
                time: Some(TimeOfDay((20 * 3600 + 15 * 60 + 30) * 1000)),
                date: NaiveDate::from_ymd_opt(2002, 7, 4)
            }
        );
    }

    #[test]
    fn vtg_old_and_new_formats_give_speed_and_course() {
        let new = decode("$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A").unwrap();
        let Sentence::Vtg { course_deg: Some(c), speed_mps: Some(v), .. } = new else { panic!() };
        assert!(close(c, 54.7) && close(v, 10.2 / 3.6));
        let old = decode("$GPVTG,054.7,034.4,005.5,010.2").unwrap();
        let Sentence::Vtg { course_deg: Some(c), speed_mps: Some(v), .. } = old else { panic!() };
        assert!(close(c, 54.7) && close(v, 5.5 * KNOTS_TO_MPS));
    }

    #[test]
    fn gns_with_every_constellation_n_is_invalid() {
        let s = decode("$GNGNS,112257.00,3844.24011,N,00908.43828,W,NN,00,,,,,").unwrap();
        assert!(matches!(s, Sentence::Gns { validity: Validity::Invalid, .. }));
        let s = decode("$GNGNS,112257.00,3844.24011,N,00908.43828,W,AN,10,0.8,9.0,52,,").unwrap();
        assert!(matches!(s, Sentence::Gns { validity: Validity::Valid, sats: Some(10), .. }));
    }

    #[test]
    fn gsa_counts_used_satellites_and_reads_dimension() {
        let s = decode("$GPGSA,A,2,20,17,23,14,,,,,,,,,1.62,1.31,0.95").unwrap();
        assert_eq!(s, Sentence::Gsa { dimension: Some(2), used: 4, hdop: Some(1.31) });
    }

    #[test]
    fn nonsense_coordinates_are_errors_not_positions() {
        assert_eq!(decode("$GPGLL,9999.99,N,00632.29,E,102127,A").unwrap_err().field, "latitude");
        assert_eq!(decode("$GPGLL,5129.06,X,00632.29,E,102127,A").unwrap_err().field, "latitude");
        assert_eq!(decode("$GPGGA,2599,5129.06,N,00632.29,E,1,4,,,,,,").unwrap_err().field, "time");
    }

    #[test]
    fn short_and_proprietary_sentences_are_other() {
        assert_eq!(decode("$").unwrap(), Sentence::Other);
        assert_eq!(decode("$PUBX,00,1").unwrap(), Sentence::Other);
        assert_eq!(decode("$GPGSV,3,1,10").unwrap(), Sentence::Other);
    }
}
