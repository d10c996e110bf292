//! The telemetry ring: positions waiting for the MQTT broker, in the `telemetry` tree, bounded by
//! count, bytes and age. Unlike status events, positions may be dropped (oldest first, counted);
//! they are also not flushed on their own (sled's periodic flush and the taps' fsyncs carry
//! them), because a lost position costs a dot on the map, not a delivery.
//!
//! # Record
//! Key: ring sequence, u64 big-endian. Value: [`RING_VERSION`], then the cumulative byte count
//! of the ring up to and including this record (u64 BE), the point's unix time (i64 BE), then the
//! caller's payload. The cumulative count makes the ring's size in bytes two lookups (first and
//! last record) instead of a scan, at start-up too.
//!
//! # Shape
//! Records are appended at the back and removed only from the front (published in order, or
//! dropped by the limits), so the keys are contiguous: the count is `back - front + 1`.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::{Outbox, OutboxError};

/// Version byte of ring records.
pub const RING_VERSION: u8 = 1;
const HEADER: usize = 1 + 8 + 8;

/// Bounds of the ring; whichever is reached first drops the oldest points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLimits {
    /// Most points kept.
    pub max_points: u64,
    /// Most bytes kept (records as stored).
    pub max_bytes: u64,
    /// Oldest point kept, by its own time.
    pub max_age: Duration,
}

impl Default for RingLimits {
    fn default() -> Self {
        Self { max_points: 100_000, max_bytes: 32 * 1024 * 1024, max_age: Duration::from_secs(7 * 86_400) }
    }
}

/// A point read back from the ring.
#[derive(Debug, Clone, PartialEq)]
pub struct RingPoint {
    /// Ring sequence (for [`Ring::remove_through`]).
    pub seq: u64,
    /// Unix seconds of the point.
    pub tst: i64,
    /// What the caller stored.
    pub payload: Vec<u8>,
}

/// Counts for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RingStats {
    /// Points waiting.
    pub points: u64,
    /// Bytes they take (as stored).
    pub bytes: u64,
    /// Unix seconds of the oldest point waiting.
    pub oldest_tst: Option<i64>,
    /// Points dropped by the limits (or a full disk) since the store was created.
    pub dropped: u64,
}

/// In-memory mirror of the ring's ends.
#[derive(Debug, Default)]
pub(super) struct RingState {
    /// First and last key, when not empty.
    ends: Option<(u64, u64)>,
    /// Cumulative bytes before the front record, and up to the back one.
    before_front: u64,
    cum_back: u64,
    oldest_tst: Option<i64>,
    dropped: u64,
    /// Next key when the ring is empty.
    next: u64,
}

struct Header {
    cum: u64,
    tst: i64,
}

fn header(v: &[u8]) -> Option<Header> {
    if v.len() < HEADER || v[0] != RING_VERSION {
        return None;
    }
    let cum = u64::from_be_bytes(v[1..9].try_into().ok()?);
    let tst = i64::from_be_bytes(v[9..17].try_into().ok()?);
    Some(Header { cum, tst })
}

fn key_seq(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}

impl RingState {
    pub(super) fn load(tree: &sled::Tree, meta: &sled::Tree) -> Result<Mutex<RingState>, OutboxError> {
        let mut s = RingState {
            dropped: meta
                .get("telemetry_dropped")?
                .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(0),
            ..RingState::default()
        };
        s.refresh_front(tree)?;
        if let Some((k, v)) = super::backward::last(tree)? {
            let (Some(back), Some(h)) = (key_seq(&k), header(&v)) else {
                return Err(OutboxError::Storage("unreadable telemetry record at the back of the ring".into()));
            };
            s.cum_back = h.cum;
            s.next = back + 1;
            if let Some((front, _)) = s.ends {
                s.ends = Some((front, back));
            }
        }
        Ok(Mutex::new(s))
    }

    /// Re-reads the front record after removals. Keys are contiguous, so the new front is
    /// looked up by key: sled's `first()` walks the emptied leaves at the front of the tree,
    /// which made draining a large backlog quadratic.
    fn refresh_front(&mut self, tree: &sled::Tree) -> Result<(), OutboxError> {
        if let Some((front, back)) = self.ends {
            if front > back {
                self.ends = None;
                self.oldest_tst = None;
                self.before_front = self.cum_back;
                return Ok(());
            }
            if let Some(v) = tree.get(front.to_be_bytes())? {
                if let Some(h) = header(&v) {
                    self.before_front = h.cum.saturating_sub(v.len() as u64);
                    self.oldest_tst = Some(h.tst);
                    return Ok(());
                }
            }
        }
        loop {
            match tree.first()? {
                None => {
                    self.ends = None;
                    self.oldest_tst = None;
                    self.before_front = self.cum_back;
                    return Ok(());
                }
                Some((k, v)) => match (key_seq(&k), header(&v)) {
                    (Some(front), Some(h)) => {
                        let back = self.ends.map_or(front, |(_, b)| b.max(front));
                        self.ends = Some((front, back));
                        self.before_front = h.cum.saturating_sub(v.len() as u64);
                        self.oldest_tst = Some(h.tst);
                        return Ok(());
                    }
                    _ => {
                        // Not ours to read (a newer release, or damage): it cannot be published,
                        // and it must not wedge the ring.
                        tracing::error!("unreadable telemetry record dropped");
                        tree.remove(k)?;
                        self.dropped += 1;
                    }
                },
            }
        }
    }

    fn stats(&self) -> RingStats {
        RingStats {
            points: self.ends.map_or(0, |(f, b)| b - f + 1),
            bytes: self.cum_back.saturating_sub(self.before_front),
            oldest_tst: self.oldest_tst,
            dropped: self.dropped,
        }
    }
}

/// The telemetry ring of an [`Outbox`]: positions waiting for the MQTT broker. Clones share
/// the store.
#[derive(Debug, Clone)]
pub struct Ring(Outbox);

impl Outbox {
    /// The telemetry ring in this store.
    pub fn ring(&self) -> Ring {
        Ring(self.clone())
    }
}

impl Ring {
    fn state(&self) -> std::sync::MutexGuard<'_, RingState> {
        // The lock is never held across an `.await`, and nothing in it panics while held.
        self.0.inner.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a point at the back, then drops the oldest points while any limit is exceeded
    /// (`now` in unix seconds, for the age limit; `None` when no clock can be trusted to age
    /// anything: the age limit then waits, the others hold). Returns how many were dropped. A full disk
    /// drops the new point (counted) rather than failing: telemetry is shed first.
    pub fn push(&self, tst: i64, payload: &[u8], limits: RingLimits, now: Option<i64>) -> Result<u64, OutboxError> {
        let tree = &self.0.inner.telemetry;
        let mut s = self.state();
        let seq = s.ends.map_or(s.next, |(_, b)| b + 1);
        let len = (HEADER + payload.len()) as u64;
        let cum = s.cum_back + len;
        let mut v = Vec::with_capacity(HEADER + payload.len());
        v.push(RING_VERSION);
        v.extend_from_slice(&cum.to_be_bytes());
        v.extend_from_slice(&tst.to_be_bytes());
        v.extend_from_slice(payload);
        let stored = if self.0.over_budget() {
            Err(OutboxError::OverBudget { used: self.0.inner.durable.size(), budget: self.0.inner.budget })
        } else {
            tree.insert(seq.to_be_bytes(), v).map_err(OutboxError::from)
        };
        match stored {
            Ok(_) => {}
            Err(e) => {
                if e.is_disk_full() {
                    s.dropped += 1;
                    let _ = self.0.inner.meta.insert("telemetry_dropped", &s.dropped.to_be_bytes());
                    return Ok(1);
                }
                return Err(e);
            }
        }
        s.cum_back = cum;
        s.next = seq + 1;
        s.ends = Some(match s.ends {
            Some((f, _)) => (f, seq),
            None => {
                s.before_front = cum - len;
                s.oldest_tst = Some(tst);
                (seq, seq)
            }
        });
        let min_tst = now.map_or(i64::MIN, |n| n.saturating_sub(limits.max_age.as_secs() as i64));
        let mut dropped = 0;
        loop {
            let st = s.stats();
            let over = st.points > limits.max_points
                || st.bytes > limits.max_bytes
                || st.oldest_tst.is_some_and(|t| t < min_tst);
            let Some((front, _)) = s.ends else { break };
            if !over {
                break;
            }
            tree.remove(front.to_be_bytes())?;
            dropped += 1;
            s.dropped += 1;
            s.ends = s.ends.map(|(f, b)| (f + 1, b));
            s.refresh_front(tree)?;
        }
        if dropped > 0 {
            self.0.inner.meta.insert("telemetry_dropped", &s.dropped.to_be_bytes())?;
        }
        Ok(dropped)
    }

    /// Up to `limit` points after ring sequence `after` (from the front when `None`), oldest first.
    pub fn after(&self, after: Option<u64>, limit: usize) -> Result<Vec<RingPoint>, OutboxError> {
        // From the front, not from key 0: the removed keys before it are empty leaves to sled.
        let front = self.state().ends.map_or(0, |(f, _)| f);
        let start = after.map_or(front, |a| a.saturating_add(1)).max(front);
        let mut out = Vec::with_capacity(limit.min(1024));
        for kv in self.0.inner.telemetry.range(start.to_be_bytes()..).take(limit) {
            let (k, v) = kv?;
            let (Some(seq), Some(h)) = (key_seq(&k), header(&v)) else { continue };
            out.push(RingPoint { seq, tst: h.tst, payload: v[HEADER..].to_vec() });
        }
        Ok(out)
    }

    /// Removes every point up to and including `seq` (they were published). Points already gone
    /// (dropped meanwhile) are fine.
    pub fn remove_through(&self, seq: u64) -> Result<(), OutboxError> {
        let tree = &self.0.inner.telemetry;
        let mut s = self.state();
        let Some((front, back)) = s.ends else { return Ok(()) };
        if seq < front {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for k in front..=seq.min(back) {
            batch.remove(&k.to_be_bytes());
        }
        tree.apply_batch(batch)?;
        self.0.inner.removals.fetch_add(seq.min(back) + 1 - front, std::sync::atomic::Ordering::Relaxed);
        s.ends = Some((seq.min(back) + 1, back));
        s.refresh_front(tree)?;
        Ok(())
    }

    /// Counts of the ring.
    pub fn stats(&self) -> RingStats {
        self.state().stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    /// Opens, waiting for an earlier handle's sled threads to let go of the lock.
    fn open(dir: &std::path::Path) -> Outbox {
        for _ in 0..50 {
            match Outbox::open(dir, Vec::new()) {
                Err(OutboxError::Locked(_)) => std::thread::sleep(Duration::from_millis(50)),
                other => return other.unwrap(),
            }
        }
        Outbox::open(dir, Vec::new()).unwrap()
    }

    fn unlimited() -> RingLimits {
        RingLimits { max_points: u64::MAX, max_bytes: u64::MAX, max_age: Duration::from_secs(u64::MAX / 4) }
    }

    fn tsts(o: &Outbox) -> Vec<i64> {
        o.ring().after(None, usize::MAX).unwrap().iter().map(|p| p.tst).collect()
    }

    #[test]
    fn points_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let o = open(dir.path());
            for i in 0..5 {
                assert_eq!(o.ring().push(NOW + i, format!("p{i}").as_bytes(), unlimited(), Some(NOW)).unwrap(), 0);
            }
            let all = o.ring().after(None, 10).unwrap();
            assert_eq!(all.iter().map(|p| p.payload.clone()).collect::<Vec<_>>(), [b"p0", b"p1", b"p2", b"p3", b"p4"]);
            assert_eq!(o.ring().after(Some(all[2].seq), 10).unwrap().len(), 2);
            o.ring().remove_through(all[1].seq).unwrap();
            assert_eq!(o.ring().stats().points, 3);
            futures_flush(&o);
        }
        let o = open(dir.path());
        let st = o.ring().stats();
        assert_eq!((st.points, st.oldest_tst, st.bytes), (3, Some(NOW + 2), 3 * (HEADER as u64 + 2)));
        assert_eq!(tsts(&o), [NOW + 2, NOW + 3, NOW + 4]);
        // New points continue after the old ones, and removing past the back empties it.
        o.ring().push(NOW + 5, b"p5", unlimited(), Some(NOW)).unwrap();
        assert_eq!(tsts(&o), [NOW + 2, NOW + 3, NOW + 4, NOW + 5]);
        o.ring().remove_through(u64::MAX).unwrap();
        assert_eq!(o.ring().stats(), RingStats { dropped: 0, ..RingStats::default() });
        o.ring().push(NOW + 6, b"p6", unlimited(), Some(NOW)).unwrap();
        assert_eq!((tsts(&o), o.ring().stats().bytes), (vec![NOW + 6], HEADER as u64 + 2));
    }

    fn futures_flush(o: &Outbox) {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(o.flush()).unwrap();
    }

    #[test]
    fn each_limit_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let o = open(dir.path());
        let by_count = RingLimits { max_points: 3, ..unlimited() };
        let mut dropped = 0;
        for i in 0..10 {
            dropped += o.ring().push(NOW + i, b"x", by_count, Some(NOW)).unwrap();
        }
        assert_eq!((dropped, tsts(&o)), (7, vec![NOW + 7, NOW + 8, NOW + 9]));

        // 4 records of 20 bytes fit in 80 bytes; the fifth pushes the oldest out.
        let by_bytes = RingLimits { max_bytes: 4 * (HEADER as u64 + 3), ..unlimited() };
        o.ring().remove_through(u64::MAX).unwrap();
        for i in 0..5 {
            o.ring().push(NOW + i, b"abc", by_bytes, Some(NOW)).unwrap();
        }
        assert_eq!(tsts(&o), [NOW + 1, NOW + 2, NOW + 3, NOW + 4]);
        assert_eq!(o.ring().stats().bytes, 4 * (HEADER as u64 + 3));

        // A week-old point goes when the next one arrives.
        let by_age = RingLimits { max_age: Duration::from_secs(3600), ..unlimited() };
        o.ring().remove_through(u64::MAX).unwrap();
        o.ring().push(NOW - 7200, b"old", by_age, Some(NOW - 7200)).unwrap();
        o.ring().push(NOW - 5000, b"mid", by_age, Some(NOW - 5000)).unwrap();
        assert_eq!(o.ring().push(NOW - 1800, b"half", by_age, Some(NOW - 1800)).unwrap(), 1);
        assert_eq!(o.ring().push(NOW, b"new", by_age, Some(NOW)).unwrap(), 1);
        assert_eq!(tsts(&o), [NOW - 1800, NOW]);
        assert_eq!(o.ring().stats().dropped, 10);
        futures_flush(&o);
        drop(o);
        assert_eq!(open(dir.path()).ring().stats().dropped, 10, "the drop count persists");
    }

    #[test]
    fn without_a_trusted_now_the_age_limit_waits_and_the_others_hold() {
        let dir = tempfile::tempdir().unwrap();
        let o = open(dir.path());
        let limits = RingLimits { max_age: Duration::from_secs(3600), max_points: 3, ..unlimited() };
        let month_ago = NOW - 30 * 86_400;
        for i in 0..4 {
            assert_eq!(o.ring().push(month_ago + i, b"old", limits, None).unwrap(), u64::from(i == 3));
        }
        assert_eq!(tsts(&o), [month_ago + 1, month_ago + 2, month_ago + 3], "the count limit holds");
        // A trusted now arrives with the next point: the month-old ones go.
        assert_eq!(o.ring().push(NOW, b"new", limits, Some(NOW)).unwrap(), 3);
        assert_eq!(tsts(&o), [NOW]);
    }

    #[test]
    fn a_point_bigger_than_the_byte_limit_is_dropped_itself() {
        let dir = tempfile::tempdir().unwrap();
        let o = open(dir.path());
        let tiny = RingLimits { max_bytes: 10, ..unlimited() };
        assert_eq!(o.ring().push(NOW, b"too big for ten bytes", tiny, Some(NOW)).unwrap(), 1);
        assert_eq!(o.ring().stats(), RingStats { dropped: 1, ..RingStats::default() });
    }
}
