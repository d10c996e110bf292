//! Record version 2: the outbox's records in a compact binary form, field by field in a fixed
//! order, written by [`Record::put`] and read back by [`Record::take`]. Pure (no sled), so it is
//! tested on its own; [`super::record`] puts the version byte in front and keeps reading
//! version 1 (JSON) records.
//!
//! Why: the store held about 2.2 KB per queued event, 405 bytes of it the event's JSON, 109 its
//! delivery state, 192 the job's history step, and sled's log took twice that again. The same
//! event here is about a third of its JSON, and a delivery state a tenth.
//!
//! # Encoding
//! - Unsigned integers: LEB128 varints. Signed ones (seconds, days): zigzag, then varint.
//! - Strings: a varint length, then UTF-8 bytes. `Option<T>`: a byte 0 (`None`) or 1, then `T`.
//!   Lists: a varint count, then each element.
//! - `f64`: a byte `d` in `0..=9` then the zigzag varint `n` when `n / 10^d` is exactly the value
//!   (coordinates to 7 decimals take 5 bytes instead of 8); else `0xFF` and the 8 bytes
//!   (little-endian): every value, NaN and -0.0 included, reads back bit for bit.
//! - Instants: seconds since the Unix epoch (zigzag) and nanoseconds (varint). Dates: days
//!   from the common era (zigzag). Ids: their 16 bytes.
//! - Enums: one byte each, the codes listed in this module's `code` functions. **Codes are never
//!   reused or renumbered**: a new variant takes a new code, and an older release refuses a
//!   record with a code it does not know (as it refuses a newer record version).
//!
//! A field added to a record is a new record version (see [`super::record`]): version 2's
//! fields and their order are fixed.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::types::{Attempt, DeliveryState};
use crate::event::{
    Attachment, AttachmentKind, Eta, EtaMethod, Item, Location, Milestone, ReasonCode, RouteMark, Source, Status,
    StatusEvent, StopCounts, StopProximity, Summary,
};
use crate::gps::clock::ClockSource;
use crate::gps::fix::Mode;

/// A version 2 record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// It ends in the middle of a field.
    #[error("record ends early")]
    Short,
    /// A field holds what no release writes (an enum code, a length, an instant out of range).
    #[error("record has a bad {0}")]
    Bad(&'static str),
    /// Bytes left after the last field.
    #[error("record has {0} bytes after its last field")]
    Trailing(usize),
}

/// A type the store keeps as a version 2 record.
pub trait Record: Sized {
    /// Appends the fields, in their fixed order.
    fn put(&self, w: &mut Writer);
    /// Reads the fields [`Record::put`] wrote.
    fn take(r: &mut Reader<'_>) -> Result<Self, BinaryError>;
}

/// Where a record is written.
#[derive(Debug, Default)]
pub struct Writer(pub(super) Vec<u8>);

/// A record being read.
#[derive(Debug)]
pub struct Reader<'a>(&'a [u8]);

/// Reads a whole record: every byte must be used.
pub fn read<T: Record>(bytes: &[u8]) -> Result<T, BinaryError> {
    let mut r = Reader(bytes);
    let v = T::take(&mut r)?;
    match r.0.len() {
        0 => Ok(v),
        n => Err(BinaryError::Trailing(n)),
    }
}

const POW10: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
const RAW_F64: u8 = 0xFF;

impl Writer {
    fn u8(&mut self, b: u8) {
        self.0.push(b);
    }

    fn var(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn int(&mut self, n: i64) {
        self.var(((n << 1) ^ (n >> 63)) as u64);
    }

    fn str(&mut self, s: &str) {
        self.var(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt<T>(&mut self, v: &Option<T>, put: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                put(self, v);
            }
        }
    }

    fn list<T>(&mut self, v: &[T], mut put: impl FnMut(&mut Self, &T)) {
        self.var(v.len() as u64);
        for x in v {
            put(self, x);
        }
    }

    fn f64(&mut self, x: f64) {
        // 2^53: every integer below it is an exact f64, so `n as f64` is `n`.
        const EXACT: f64 = 9_007_199_254_740_992.0;
        for (d, p) in POW10.iter().enumerate() {
            let n = (x * p).round();
            // Compared as the reader computes it (an integer has no sign of zero).
            if n.abs() < EXACT && ((n as i64) as f64 / p).to_bits() == x.to_bits() {
                self.u8(d as u8);
                self.int(n as i64);
                return;
            }
        }
        self.u8(RAW_F64);
        self.0.extend_from_slice(&x.to_le_bytes());
    }

    fn time(&mut self, t: &DateTime<Utc>) {
        self.int(t.timestamp());
        self.var(u64::from(t.timestamp_subsec_nanos()));
    }

    fn text(&mut self, s: &Option<String>) {
        self.opt(s, |w, s| w.str(s));
    }
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, BinaryError> {
        let (&b, rest) = self.0.split_first().ok_or(BinaryError::Short)?;
        self.0 = rest;
        Ok(b)
    }

    fn var(&mut self) -> Result<u64, BinaryError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            n |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(BinaryError::Bad("varint"))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, BinaryError> {
        u32::try_from(self.var()?).map_err(|_| BinaryError::Bad(what))
    }

    fn int(&mut self) -> Result<i64, BinaryError> {
        let z = self.var()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], BinaryError> {
        if n > self.0.len() {
            return Err(BinaryError::Short);
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }

    fn str(&mut self) -> Result<String, BinaryError> {
        let n = usize::try_from(self.var()?).map_err(|_| BinaryError::Short)?;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| BinaryError::Bad("string"))
    }

    fn opt<T>(&mut self, take: impl FnOnce(&mut Self) -> Result<T, BinaryError>) -> Result<Option<T>, BinaryError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(take(self)?)),
            _ => Err(BinaryError::Bad("option")),
        }
    }

    fn list<T>(&mut self, mut take: impl FnMut(&mut Self) -> Result<T, BinaryError>) -> Result<Vec<T>, BinaryError> {
        let n = self.var()?;
        // Every element takes at least a byte: a count beyond what is left is garbage, not an
        // allocation to attempt.
        if n > self.0.len() as u64 {
            return Err(BinaryError::Short);
        }
        (0..n).map(|_| take(self)).collect()
    }

    fn f64(&mut self) -> Result<f64, BinaryError> {
        match self.u8()? {
            RAW_F64 => {
                let b: [u8; 8] = self.bytes(8)?.try_into().map_err(|_| BinaryError::Short)?;
                Ok(f64::from_le_bytes(b))
            }
            d => {
                let p = POW10.get(usize::from(d)).ok_or(BinaryError::Bad("number"))?;
                Ok(self.int()? as f64 / p)
            }
        }
    }

    fn time(&mut self) -> Result<DateTime<Utc>, BinaryError> {
        let secs = self.int()?;
        let nanos = self.u32("instant")?;
        DateTime::from_timestamp(secs, nanos).ok_or(BinaryError::Bad("instant"))
    }

    fn text(&mut self) -> Result<Option<String>, BinaryError> {
        self.opt(Self::str)
    }

    fn bool(&mut self) -> Result<bool, BinaryError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(BinaryError::Bad("flag")),
        }
    }
}

/// One-byte codes of an enum, both ways. Never renumber (see the module docs).
macro_rules! codes {
    ($ty:ty, $what:literal, { $($variant:path => $code:literal),+ $(,)? }) => {
        impl Code for $ty {
            fn code(self) -> u8 {
                match self { $($variant => $code),+ }
            }
            fn from_code(c: u8) -> Result<Self, BinaryError> {
                match c { $($code => Ok($variant),)+ _ => Err(BinaryError::Bad($what)) }
            }
        }
    };
}

trait Code: Sized + Copy {
    fn code(self) -> u8;
    fn from_code(c: u8) -> Result<Self, BinaryError>;
}

codes!(Status, "status", {
    Status::HeadingTo => 0, Status::Arrived => 1, Status::Delivered => 2, Status::PartiallyDelivered => 3,
    Status::Failed => 4, Status::PickedUp => 5, Status::Departed => 6, Status::RouteStarted => 7,
    Status::LoadingDone => 8, Status::UnloadingDone => 9, Status::BreakStarted => 10, Status::BreakEnded => 11,
    Status::RouteEnded => 12,
});
codes!(ReasonCode, "reason code", {
    ReasonCode::CustomerNotPresent => 0, ReasonCode::AddressNotFound => 1, ReasonCode::Refused => 2,
    ReasonCode::Damaged => 3, ReasonCode::AccessDenied => 4, ReasonCode::Other => 5,
});
codes!(ClockSource, "clock source", { ClockSource::Gps => 0, ClockSource::System => 1 });
codes!(Mode, "fix mode", { Mode::NoFix => 0, Mode::TwoD => 1, Mode::ThreeD => 2 });
codes!(AttachmentKind, "attachment kind", { AttachmentKind::Photo => 0, AttachmentKind::Signature => 1 });
codes!(Source, "source", { Source::Driver => 0, Source::Geofence => 1 });
codes!(EtaMethod, "eta method", { EtaMethod::StraightLine => 0 });

impl Writer {
    fn code(&mut self, c: impl Code) {
        self.u8(c.code());
    }
}

impl Reader<'_> {
    fn code<C: Code>(&mut self) -> Result<C, BinaryError> {
        C::from_code(self.u8()?)
    }
}

impl Record for StatusEvent {
    fn put(&self, w: &mut Writer) {
        w.0.extend_from_slice(self.id.as_bytes());
        w.var(self.sequence);
        w.str(&self.job_id);
        w.code(self.status);
        w.opt(&self.reason_code, |w, c| w.code(*c));
        w.text(&self.reason);
        w.text(&self.received_by);
        w.text(&self.note);
        w.list(&self.items, |w, i| {
            w.str(&i.sku);
            w.var(u64::from(i.qty));
            w.var(u64::from(i.rejected));
        });
        w.time(&self.occurred_at);
        w.code(self.clock_source);
        w.opt(&self.location, |w, l| {
            w.f64(l.lat);
            w.f64(l.lng);
            w.opt(&l.accuracy_m, |w, x| w.f64(*x));
            w.f64(l.fix_age_s);
            w.opt(&l.speed_mps, |w, x| w.f64(*x));
            w.opt(&l.course_deg, |w, x| w.f64(*x));
            w.code(l.mode);
        });
        w.str(&self.vehicle_id);
        w.text(&self.driver_id);
        w.list(&self.attachments, |w, a| {
            w.code(a.kind);
            w.var(u64::from(a.index));
            w.str(&a.sha256);
            w.var(a.bytes);
            w.str(&a.content_type);
            w.time(&a.captured_at);
            w.text(&a.url);
        });
        w.code(self.source);
        w.opt(&self.stop, |w, s| {
            w.f64(s.distance_m);
            w.u8(u8::from(s.inside));
        });
        w.opt(&self.eta, |w, e| {
            w.time(&e.at);
            w.var(e.seconds);
            w.f64(e.distance_m);
            w.f64(e.speed_mps);
            w.code(e.method);
        });
        w.opt(&self.odometer_m, |w, x| w.f64(*x));
        w.opt(&self.route, |w, r| {
            w.text(&r.id);
            w.opt(&r.date, |w, d| w.int(i64::from(d.num_days_from_ce())));
            w.opt(&r.summary, |w, s| {
                w.time(&s.started_at);
                w.time(&s.ended_at);
                w.f64(s.distance_m);
                for n in [s.driving_s, s.stopped_s, s.idle_s, s.break_s] {
                    w.var(n);
                }
                let c = &s.stops;
                for n in [c.delivered, c.partially_delivered, c.failed, c.picked_up, c.pending] {
                    w.var(u64::from(n));
                }
            });
        });
    }

    fn take(r: &mut Reader<'_>) -> Result<Self, BinaryError> {
        let id = uuid::Uuid::from_bytes(r.bytes(16)?.try_into().map_err(|_| BinaryError::Short)?);
        Ok(StatusEvent {
            id,
            sequence: r.var()?,
            job_id: r.str()?,
            status: r.code()?,
            reason_code: r.opt(Reader::code)?,
            reason: r.text()?,
            received_by: r.text()?,
            note: r.text()?,
            items: r.list(|r| Ok(Item { sku: r.str()?, qty: r.u32("quantity")?, rejected: r.u32("quantity")? }))?,
            occurred_at: r.time()?,
            clock_source: r.code()?,
            location: r.opt(|r| {
                Ok(Location {
                    lat: r.f64()?,
                    lng: r.f64()?,
                    accuracy_m: r.opt(Reader::f64)?,
                    fix_age_s: r.f64()?,
                    speed_mps: r.opt(Reader::f64)?,
                    course_deg: r.opt(Reader::f64)?,
                    mode: r.code()?,
                })
            })?,
            vehicle_id: r.str()?,
            driver_id: r.text()?,
            attachments: r.list(|r| {
                Ok(Attachment {
                    kind: r.code()?,
                    index: r.u32("attachment index")?,
                    sha256: r.str()?,
                    bytes: r.var()?,
                    content_type: r.str()?,
                    captured_at: r.time()?,
                    url: r.text()?,
                })
            })?,
            source: r.code()?,
            stop: r.opt(|r| Ok(StopProximity { distance_m: r.f64()?, inside: r.bool()? }))?,
            eta: r.opt(|r| {
                Ok(Eta {
                    at: r.time()?,
                    seconds: r.var()?,
                    distance_m: r.f64()?,
                    speed_mps: r.f64()?,
                    method: r.code()?,
                })
            })?,
            odometer_m: r.opt(Reader::f64)?,
            route: r.opt(|r| {
                Ok(RouteMark {
                    id: r.text()?,
                    date: r.opt(|r| {
                        let days = i32::try_from(r.int()?).map_err(|_| BinaryError::Bad("date"))?;
                        NaiveDate::from_num_days_from_ce_opt(days).ok_or(BinaryError::Bad("date"))
                    })?,
                    summary: r.opt(|r| {
                        Ok(Summary {
                            started_at: r.time()?,
                            ended_at: r.time()?,
                            distance_m: r.f64()?,
                            driving_s: r.var()?,
                            stopped_s: r.var()?,
                            idle_s: r.var()?,
                            break_s: r.var()?,
                            stops: StopCounts {
                                delivered: r.u32("count")?,
                                partially_delivered: r.u32("count")?,
                                failed: r.u32("count")?,
                                picked_up: r.u32("count")?,
                                pending: r.u32("count")?,
                            },
                        })
                    })?,
                })
            })?,
        })
    }
}

impl Record for DeliveryState {
    fn put(&self, w: &mut Writer) {
        w.str(&self.job_id);
        w.var(u64::from(self.attempts));
        w.var(self.waited_ms);
        w.opt(&self.last_status, |w, s| w.var(u64::from(*s)));
        w.text(&self.last_error);
        w.opt(&self.last_attempt_at, Writer::time);
        w.var(u64::from(self.uploaded));
        w.var(u64::from(self.sent));
    }

    fn take(r: &mut Reader<'_>) -> Result<Self, BinaryError> {
        Ok(DeliveryState {
            job_id: r.str()?,
            attempts: r.u32("attempts")?,
            waited_ms: r.var()?,
            last_status: r.opt(|r| u16::try_from(r.var()?).map_err(|_| BinaryError::Bad("HTTP status")))?,
            last_error: r.text()?,
            last_attempt_at: r.opt(Reader::time)?,
            uploaded: r.u32("uploaded")?,
            sent: r.u32("sent")?,
        })
    }
}

impl Record for Attempt {
    fn put(&self, w: &mut Writer) {
        w.str(&self.endpoint);
        w.var(self.sequence);
        w.time(&self.at);
        w.opt(&self.status, |w, s| w.var(u64::from(*s)));
        w.text(&self.error);
        w.var(self.duration_ms);
    }

    fn take(r: &mut Reader<'_>) -> Result<Self, BinaryError> {
        Ok(Attempt {
            endpoint: r.str()?,
            sequence: r.var()?,
            at: r.time()?,
            status: r.opt(|r| u16::try_from(r.var()?).map_err(|_| BinaryError::Bad("HTTP status")))?,
            error: r.text()?,
            duration_ms: r.var()?,
        })
    }
}

impl Record for Milestone {
    fn put(&self, w: &mut Writer) {
        w.var(self.sequence);
        w.code(self.status);
        w.time(&self.occurred_at);
        w.opt(&self.reason_code, |w, c| w.code(*c));
        w.text(&self.reason);
        w.text(&self.driver_id);
        w.str(&self.vehicle_id);
        w.opt(&self.position, |w, (lat, lng)| {
            w.f64(*lat);
            w.f64(*lng);
        });
        w.code(self.source);
    }

    fn take(r: &mut Reader<'_>) -> Result<Self, BinaryError> {
        Ok(Milestone {
            sequence: r.var()?,
            status: r.code()?,
            occurred_at: r.time()?,
            reason_code: r.opt(Reader::code)?,
            reason: r.text()?,
            driver_id: r.text()?,
            vehicle_id: r.str()?,
            position: r.opt(|r| Ok((r.f64()?, r.f64()?)))?,
            source: r.code()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Record + PartialEq + std::fmt::Debug>(v: &T) -> usize {
        let mut w = Writer::default();
        v.put(&mut w);
        assert_eq!(&read::<T>(&w.0).unwrap(), v);
        // Every strict prefix is refused, never misread or a panic.
        for n in 0..w.0.len() {
            assert!(read::<T>(&w.0[..n]).is_err(), "a record cut at {n} of {} bytes", w.0.len());
        }
        w.0.len()
    }

    #[test]
    fn numbers_read_back_bit_for_bit_and_short_where_they_are_decimals() {
        for x in [
            0.0,
            -0.0,
            53.5507300,
            -122.6268991,
            9.99302,
            4.5,
            0.1,
            1234.5,
            f64::NAN,
            f64::INFINITY,
            f64::MIN_POSITIVE,
            1e300,
            -7.0e-12,
            53.557783500000006,
        ] {
            let mut w = Writer::default();
            w.f64(x);
            let back = Reader(&w.0).f64().unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x}");
        }
        let len = |x: f64| {
            let mut w = Writer::default();
            w.f64(x);
            w.0.len()
        };
        assert_eq!(len(53.5507300), 5, "a coordinate to 7 decimals");
        assert_eq!(len(4.5), 2);
        assert_eq!(len(53.557783500000006), 9, "float noise is kept, in full");
    }

    #[test]
    fn integers_and_instants_round_trip_at_their_limits() {
        for n in [0, 1, -1, 63, -64, 64, i64::MAX, i64::MIN] {
            let mut w = Writer::default();
            w.int(n);
            assert_eq!(Reader(&w.0).int().unwrap(), n);
        }
        let mut w = Writer::default();
        w.var(u64::MAX);
        assert_eq!(Reader(&w.0).var().unwrap(), u64::MAX);
        assert_eq!(Reader(&[0xFF; 11]).var(), Err(BinaryError::Bad("varint")));
        for t in ["1970-01-01T00:00:00Z", "2026-12-04T16:05:38.807717143Z", "1969-07-20T20:17:40.5Z"] {
            let t: DateTime<Utc> = t.parse().unwrap();
            let mut w = Writer::default();
            w.time(&t);
            assert_eq!(Reader(&w.0).time().unwrap(), t);
        }
    }

    fn full_event() -> StatusEvent {
        let at: DateTime<Utc> = "2026-12-04T16:05:38.807717143Z".parse().unwrap();
        StatusEvent {
            sequence: 1_234_567,
            job_id: "JOB-Ş-1".into(),
            status: Status::PartiallyDelivered,
            reason_code: Some(ReasonCode::Damaged),
            reason: Some("box crushed".into()),
            items: vec![
                Item { sku: "SKU-1".into(), qty: 3, rejected: 1 },
                Item { sku: String::new(), qty: 0, rejected: 0 },
            ],
            occurred_at: at,
            clock_source: ClockSource::Gps,
            location: Some(Location {
                lat: 38.1104950,
                lng: -122.6268991,
                accuracy_m: None,
                fix_age_s: 0.3,
                speed_mps: Some(11.1),
                course_deg: Some(56.3),
                mode: Mode::TwoD,
            }),
            driver_id: Some("drv-4".into()),
            attachments: vec![Attachment {
                kind: AttachmentKind::Signature,
                index: 1,
                sha256: "6b".repeat(32),
                bytes: 91,
                content_type: "image/svg+xml".into(),
                captured_at: at,
                url: Some("https://pod.example/6b".into()),
            }],
            source: Source::Geofence,
            stop: Some(StopProximity { distance_m: 12.3, inside: true }),
            eta: Some(Eta { at, seconds: 90, distance_m: 1000.0, speed_mps: 11.11, method: EtaMethod::StraightLine }),
            odometer_m: Some(123_456.7),
            route: Some(RouteMark {
                id: Some("R-7".into()),
                date: Some(NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()),
                summary: Some(Summary {
                    started_at: at,
                    ended_at: at,
                    distance_m: 88_000.5,
                    driving_s: 1,
                    stopped_s: 2,
                    idle_s: 3,
                    break_s: 4,
                    stops: StopCounts { delivered: 5, partially_delivered: 6, failed: 7, picked_up: 8, pending: 9 },
                }),
            }),
            ..crate::webhook::format::sample("van-17")
        }
    }

    #[test]
    fn every_field_of_every_record_round_trips_and_a_cut_record_is_refused() {
        let full = full_event();
        round_trip(&full);
        let bare = StatusEvent {
            reason: None,
            received_by: None,
            note: None,
            items: vec![],
            location: None,
            driver_id: None,
            stop: None,
            eta: None,
            odometer_m: None,
            route: None,
            ..full.clone()
        };
        round_trip(&bare);
        for status in Status::ALL.into_iter().chain(Status::ROUTE) {
            round_trip(&StatusEvent { status, ..bare.clone() });
        }
        for reason_code in ReasonCode::ALL {
            round_trip(&StatusEvent { reason_code: Some(reason_code), ..bare.clone() });
        }
        round_trip(&Milestone::of(&full));
        round_trip(&Milestone::of(&bare));
        let mut d = DeliveryState::new("JOB-1");
        round_trip(&d);
        d.attempts = 7;
        d.waited_ms = 86_400_000;
        d.last_status = Some(503);
        d.last_error = Some("HTTP 503".into());
        d.last_attempt_at = Some(full.occurred_at);
        d.uploaded = 2;
        d.sent = 1;
        round_trip(&d);
        round_trip(&Attempt {
            endpoint: "bo".into(),
            sequence: 9,
            at: full.occurred_at,
            status: None,
            error: Some("timed out".into()),
            duration_ms: 30_000,
        });
    }

    #[test]
    fn a_tap_is_about_a_third_of_its_json() {
        let e = StatusEvent {
            sequence: 99_999,
            job_id: "JOB-4999".into(),
            received_by: Some("A. Customer".into()),
            note: Some("left at the door".into()),
            ..crate::webhook::format::sample("van-17")
        };
        let json = serde_json::to_vec(&e).unwrap().len();
        let mut w = Writer::default();
        e.put(&mut w);
        assert!(w.0.len() * 3 < json + json / 10, "{} bytes against {json} of JSON", w.0.len());
        let mut w = Writer::default();
        DeliveryState::new("JOB-4999").put(&mut w);
        assert!(w.0.len() <= 16, "a new delivery state is {} bytes", w.0.len());
    }

    #[test]
    fn unknown_codes_and_trailing_bytes_are_refused() {
        let mut w = Writer::default();
        full_event().put(&mut w);
        let mut bad = w.0.clone();
        // The status code follows the id (16), the sequence (3) and the job id (its length, 1).
        bad[16 + 3 + 1 + "JOB-Ş-1".len()] = 200;
        assert_eq!(read::<StatusEvent>(&bad), Err(BinaryError::Bad("status")));
        let mut long = w.0.clone();
        long.push(0);
        assert_eq!(read::<StatusEvent>(&long), Err(BinaryError::Trailing(1)));
    }
}
