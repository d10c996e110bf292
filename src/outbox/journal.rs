//! A tap's way to disk. The event goes into the spool with everything the tap writes beside it
//! ([`super::spooled`]); one thread syncs the spool for every tap waiting ([`super::commit`]:
//! one device flush per group of taps), then applies their sled writes (idempotency records,
//! what parts keep with the event) in one transaction with `meta`'s `applied` mark, unsynced:
//! sled flushes within 500 ms. Only then is the tap answered.
//!
//! A crash before sled flushed loses those writes but not their record: [`replay`] applies
//! again every record after the mark, in order, when the store opens. sled recovers a prefix of
//! what it was given, and the mark is written with the writes it covers, so nothing after the
//! mark was applied for sure and nothing before it is missing. Every write is an insert of a
//! key the record names: applying one twice leaves what applying it once does.
//!
//! Until its writes are applied, a record's idempotency key is answered from memory
//! ([`State::held`]), so that a retry racing the first tap finds it.

use std::collections::HashMap;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::spool::Spool;
use super::spooled::{self, Write};
use crate::event::StatusEvent;

/// `meta`'s key for the newest sequence whose record's writes are in sled.
pub const APPLIED: &str = "applied";

/// A record appended and not yet applied.
#[derive(Debug)]
pub(super) struct Queued {
    pub seq: u64,
    pub idem: Option<Vec<u8>>,
    pub event: Vec<u8>,
    pub writes: Vec<Write>,
}

/// The spool and what waits to be applied; behind the outbox's lock.
#[derive(Debug)]
pub(super) struct State {
    pub spool: Spool,
    /// Appended, not yet applied, in sequence order.
    pub queued: Vec<Queued>,
    /// The idempotency keys of queued records, with their events.
    pub held: HashMap<Vec<u8>, StatusEvent>,
}

/// The sled side of the journal: the trees writes go to, opened once.
pub(super) struct Applier {
    db: sled::Db,
    idem: sled::Tree,
    meta: sled::Tree,
    parts: HashMap<Vec<u8>, sled::Tree>,
}

impl Applier {
    pub fn new(db: &sled::Db) -> sled::Result<Applier> {
        Ok(Applier { db: db.clone(), idem: db.open_tree("idem")?, meta: db.open_tree("meta")?, parts: HashMap::new() })
    }

    /// The newest sequence applied (`None`: none yet).
    pub fn applied(&self) -> sled::Result<Option<u64>> {
        Ok(self.meta.get(APPLIED)?.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok()).map(u64::from_be_bytes))
    }

    /// Applies `batch` (in sequence order) in one transaction, with the mark at its last.
    pub fn apply(&mut self, batch: &[Queued]) -> sled::Result<()> {
        let Some(last) = batch.last().map(|q| q.seq) else { return Ok(()) };
        for q in batch {
            for w in &q.writes {
                if !self.parts.contains_key(&w.tree) {
                    let t = self.db.open_tree(&w.tree)?;
                    self.parts.insert(w.tree.clone(), t);
                }
            }
        }
        let mut trees: Vec<&sled::Tree> = vec![&self.idem, &self.meta];
        let mut at: HashMap<&[u8], usize> = HashMap::new();
        for q in batch {
            for w in &q.writes {
                if !at.contains_key(w.tree.as_slice()) {
                    let Some(t) = self.parts.get(&w.tree) else { continue };
                    at.insert(w.tree.as_slice(), trees.len());
                    trees.push(t);
                }
            }
        }
        let outcome = trees[..].transaction(|views| {
            for q in batch {
                if let Some(k) = &q.idem {
                    views[0].insert(k.as_slice(), q.event.as_slice())?;
                }
                for w in &q.writes {
                    if let Some(&n) = at.get(w.tree.as_slice()) {
                        views[n].insert(w.key.as_slice(), w.value.as_slice())?;
                    }
                }
            }
            views[1].insert(APPLIED, &last.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<()>>(())
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(e),
            Err(TransactionError::Abort(())) => Err(sled::Error::ReportableBug("journal transaction aborted".into())),
        }
    }
}

/// Applies again, in order, every record of `spool` after `applier`'s mark (see the module's
/// docs); returns how many. Records that cannot be read are skipped (they are counted where the
/// store opens).
pub(super) fn replay(spool: &Spool, applier: &mut Applier) -> Result<u64, super::OutboxError> {
    let mut from = applier.applied()?.map_or(0, |a| a.saturating_add(1));
    let mut n = 0;
    loop {
        let records = spool.scan(from, 256).map_err(|e| super::OutboxError::Storage(format!("spool: {e}")))?;
        let Some(last) = records.last().map(|(s, _)| *s) else { break };
        let batch: Vec<Queued> = records
            .into_iter()
            .filter_map(|(seq, bytes)| {
                let r = spooled::decode(&bytes).ok()?;
                Some(Queued { seq, idem: r.idem, event: r.event, writes: r.writes })
            })
            .collect();
        n += batch.len() as u64;
        applier.apply(&batch)?;
        from = last + 1;
    }
    Ok(n)
}
