//! How many events the store holds, and each endpoint's pending and parked deliveries, kept in
//! memory: status, `/metrics` and the systemd `STATUS=` line (every 10 s) ask for them, and
//! counting them in the store read every record. With 100,000 events queued that was 0.2 s of
//! CPU per ask on x86 and a resident set that grew from 23 to 91 MB, because sled keeps the pages
//! a scan reads (issue 29).
//!
//! # Exactness
//! The counts are taken by one scan, the first time they are asked for; from then on every
//! change to `events`, `pending` or `failed` adds what it did, from what sled returned (an
//! insert that replaced a record, or a remove that found none, adds nothing). A change holds
//! [`Counts::change`] (the read side of a lock) from its write until it has counted it; the scan
//! holds the write side. So the scan sees each change either in the store or in the counts,
//! never in both. Until the first ask nothing is counted, and a store that is never asked
//! (a drain with no one looking) is never scanned.
//!
//! A change must not take [`Counts::change`] while it already holds it: a scan waiting for the
//! write side would block the second read, and the first would never be released.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use super::record::split_endpoint_key;

/// The counts once taken. Endpoints are the store's, by their position in its configuration;
/// deliveries to an endpoint no longer configured are not counted.
pub(super) struct Tally {
    events: AtomicI64,
    pending: Vec<AtomicI64>,
    failed: Vec<AtomicI64>,
}

/// Which of an endpoint's deliveries a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Pending,
    Failed,
}

pub(super) struct Counts {
    names: Vec<String>,
    tally: RwLock<Option<Tally>>,
}

/// Held by a change from its write until it has counted it (see the module's docs).
pub(super) struct Change<'a> {
    counts: &'a Counts,
    tally: RwLockReadGuard<'a, Option<Tally>>,
}

impl Change<'_> {
    /// `n` events stored (negative: removed).
    pub(super) fn events(&self, n: i64) {
        if let Some(t) = self.tally.as_ref() {
            t.events.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// `n` deliveries of `endpoint` added to `kind` (negative: removed from it).
    pub(super) fn deliveries(&self, endpoint: &str, kind: Kind, n: i64) {
        let (Some(t), Some(i)) = (self.tally.as_ref(), self.counts.index(endpoint)) else { return };
        let c = match kind {
            Kind::Pending => &t.pending[i],
            Kind::Failed => &t.failed[i],
        };
        c.fetch_add(n, Ordering::Relaxed);
    }
}

impl Counts {
    pub(super) fn new(endpoints: impl IntoIterator<Item = String>) -> Counts {
        Counts { names: endpoints.into_iter().collect(), tally: RwLock::new(None) }
    }

    fn index(&self, endpoint: &str) -> Option<usize> {
        self.names.iter().position(|n| n == endpoint)
    }

    /// Taken by every change to the counted trees, from its write until it has counted it.
    pub(super) fn change(&self) -> Change<'_> {
        Change { counts: self, tally: self.tally.read().unwrap_or_else(|e| e.into_inner()) }
    }

    /// Events stored; the first ask scans the trees (see the module's docs).
    pub(super) fn events(&self, trees: &Trees<'_>) -> Result<u64, sled::Error> {
        self.read(trees, |t| clamp(&t.events))
    }

    /// `endpoint`'s pending and parked deliveries.
    pub(super) fn deliveries(&self, trees: &Trees<'_>, endpoint: &str) -> Result<(u64, u64), sled::Error> {
        let Some(i) = self.index(endpoint) else { return Ok((0, 0)) };
        self.read(trees, |t| (clamp(&t.pending[i]), clamp(&t.failed[i])))
    }

    fn read<T: Default>(&self, trees: &Trees<'_>, f: impl Fn(&Tally) -> T) -> Result<T, sled::Error> {
        if let Some(t) = self.tally.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(f(t));
        }
        let mut slot = self.tally.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(self.scan(trees)?);
        }
        Ok(slot.as_ref().map(f).unwrap_or_default())
    }

    /// Counts every record once (keys only are decoded).
    fn scan(&self, trees: &Trees<'_>) -> Result<Tally, sled::Error> {
        let zeros = || self.names.iter().map(|_| AtomicI64::new(0)).collect::<Vec<_>>();
        let tally = Tally { events: AtomicI64::new(0), pending: zeros(), failed: zeros() };
        for k in trees.events.iter().keys() {
            k?;
            tally.events.fetch_add(1, Ordering::Relaxed);
        }
        for (tree, into) in [(trees.pending, &tally.pending), (trees.failed, &tally.failed)] {
            for k in tree.iter().keys() {
                let k = k?;
                if let Some(i) = split_endpoint_key(&k).and_then(|(name, _)| self.index(name)) {
                    into[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(tally)
    }
}

/// A count, never below zero (a change counted twice would be a bug, not a negative store).
fn clamp(c: &AtomicI64) -> u64 {
    c.load(Ordering::Relaxed).max(0) as u64
}

/// The trees a first ask scans.
pub(super) struct Trees<'a> {
    pub(super) events: &'a sled::Tree,
    pub(super) pending: &'a sled::Tree,
    pub(super) failed: &'a sled::Tree,
}
