//! The van's time zone (`timezone` in the config): local dates and times for the formats that
//! want them, and the day the link meter counts in.
//!
//! Zones come from the system's time zone database (`/usr/share/zoneinfo`, which Debian's
//! `tzdata` keeps current), and from a copy built into the binary when the system has none or
//! lacks the zone (a gateway image may ship without `tzdata`). Both through `jiff`, which the jq
//! engine links already; the built-in copy is its compact TZif bundle (about 0.2 MB), where a
//! table per zone in the binary cost about 2 MB (issue 28).
//!
//! A `Zone` is `Copy`: zones are interned, one per name for the life of the process (there are
//! a few hundred names, so the table is bounded whatever the config says).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, FixedOffset, Utc};
use jiff::tz::{TimeZone, TimeZoneDatabase};

/// An IANA time zone, or UTC.
#[derive(Clone, Copy)]
pub struct Zone {
    name: &'static str,
    tz: &'static TimeZone,
}

static UTC_TZ: TimeZone = TimeZone::UTC;

impl Zone {
    /// Coordinated Universal Time, the zone when none is configured or known.
    pub const UTC: Zone = Zone { name: "UTC", tz: &UTC_TZ };

    /// The IANA name the zone was given by (`"Europe/Berlin"`), or `"UTC"`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The local time at `t`, with the zone's offset then.
    pub fn local(&self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        t.with_timezone(&self.offset_at(t))
    }

    /// The zone's offset from UTC at `t` (daylight saving included).
    pub fn offset_at(&self, t: DateTime<Utc>) -> FixedOffset {
        let at = jiff::Timestamp::from_second(t.timestamp()).unwrap_or(if t.timestamp() < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        });
        // jiff's offsets are within ±25:59:59, chrono's within ±23:59:59 (real zones: ±14h).
        FixedOffset::east_opt(self.tz.to_offset(at).seconds()).unwrap_or(FixedOffset::east_opt(0).expect("UTC"))
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The name is not a time zone in the system's database nor in the built-in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownZone;

impl FromStr for Zone {
    type Err = UnknownZone;

    fn from_str(name: &str) -> Result<Zone, UnknownZone> {
        lookup(name, jiff::tz::db())
    }
}

fn bundled() -> &'static TimeZoneDatabase {
    static BUNDLED: OnceLock<TimeZoneDatabase> = OnceLock::new();
    BUNDLED.get_or_init(TimeZoneDatabase::bundled)
}

/// `name` in `system`, else in the built-in database; interned.
fn lookup(name: &str, system: &TimeZoneDatabase) -> Result<Zone, UnknownZone> {
    if name == "UTC" {
        return Ok(Zone::UTC);
    }
    // An IANA name: letters, digits and `/_-+`, no `..` (the system database is a directory).
    let plausible = !name.is_empty()
        && name.len() <= 64
        && !name.contains("..")
        && !name.starts_with('/')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c));
    if !plausible {
        return Err(UnknownZone);
    }
    static INTERNED: OnceLock<Mutex<HashMap<String, Zone>>> = OnceLock::new();
    let mut interned = INTERNED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(z) = interned.get(name) {
        return Ok(*z);
    }
    let tz = system.get(name).or_else(|_| bundled().get(name)).map_err(|_| UnknownZone)?;
    let zone = Zone { name: Box::leak(name.to_owned().into_boxed_str()), tz: Box::leak(Box::new(tz)) };
    interned.insert(name.to_owned(), zone);
    Ok(zone)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn local_times_follow_daylight_saving() {
        let berlin: Zone = "Europe/Berlin".parse().unwrap();
        assert_eq!(berlin.local(at("2026-07-01T10:00:00Z")).to_rfc3339(), "2026-07-01T12:00:00+02:00");
        assert_eq!(berlin.local(at("2026-12-01T10:00:00Z")).to_rfc3339(), "2026-12-01T11:00:00+01:00");
        // The spring-forward instant: 01:59:59 UTC+1, then 03:00:00 UTC+2.
        assert_eq!(berlin.local(at("2026-03-29T00:59:59Z")).to_rfc3339(), "2026-03-29T01:59:59+01:00");
        assert_eq!(berlin.local(at("2026-03-29T01:00:00Z")).to_rfc3339(), "2026-03-29T03:00:00+02:00");
        let singapore: Zone = "Asia/Singapore".parse().unwrap();
        assert_eq!(singapore.local(at("2026-07-01T20:00:00Z")).date_naive().to_string(), "2026-07-02");
        assert_eq!(Zone::UTC.local(at("2026-07-01T20:00:00Z")).to_rfc3339(), "2026-07-01T20:00:00+00:00");
        assert_eq!(berlin.name(), "Europe/Berlin");
        assert_eq!(berlin, "Europe/Berlin".parse().unwrap());
        assert_ne!(berlin, singapore);
    }

    #[test]
    fn a_system_without_the_zone_falls_back_to_the_built_in_database() {
        let none = TimeZoneDatabase::none();
        let zone = lookup("America/Chicago", &none).unwrap();
        assert_eq!(zone.local(at("2026-01-15T18:00:00Z")).to_rfc3339(), "2026-01-15T12:00:00-06:00");
        assert_eq!(lookup("Mars/Olympus_Mons", &none), Err(UnknownZone));
    }

    #[test]
    fn names_that_are_not_zones_are_refused() {
        for bad in ["", "Berlin", "../../etc/passwd", "/etc/localtime", "Europe/Berlin\n", "Europe/ Berlin"] {
            assert!(bad.parse::<Zone>().is_err(), "{bad:?}");
        }
        assert_eq!("UTC".parse::<Zone>().unwrap(), Zone::UTC);
        assert!("Etc/UTC".parse::<Zone>().is_ok());
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let berlin: Zone = "Europe/Berlin".parse().unwrap();
        let _ = berlin.local(DateTime::<Utc>::MAX_UTC);
        let _ = berlin.local(DateTime::<Utc>::MIN_UTC);
        let _ = berlin.local(Utc.timestamp_opt(0, 0).unwrap());
    }
}
