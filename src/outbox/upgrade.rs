//! Opening the queue: a store written before the spool (its events in sled's `events` tree, a
//! `pending` record for every delivery) is moved into the spool, and the spool's deliveries are
//! counted into the book.

use std::collections::BTreeMap;

use super::book::Book;
use super::journal::{APPLIED, Applier};
use super::record::{decode, endpoint_key, split_endpoint_key};
use super::spool::Spool;
use super::{DeliveryState, OutboxError, spooled};
use crate::event::StatusEvent;

fn storage(what: &str, e: impl std::fmt::Display) -> OutboxError {
    OutboxError::Storage(format!("{what}: {e}"))
}

/// Moves the events of a store from before the spool into it, each with the endpoints that had
/// a delivery of it pending or parked. A delivery never attempted leaves `pending` (the spool and
/// the book say it all); one with attempts keeps its state there, and a parked one stays in
/// `failed`. The spool is synced before sled forgets anything, and a move cut short by a crash
/// is finished by the next open (events the spool already holds are not appended again).
pub(super) fn events_into_spool(db: &sled::Db, spool: &mut Spool, applier: &Applier) -> Result<(), OutboxError> {
    let events = db.open_tree("events")?;
    if events.is_empty() {
        return Ok(());
    }
    let (pending, failed, meta) = (db.open_tree("pending")?, db.open_tree("failed")?, db.open_tree("meta")?);
    let mut targets: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for tree in [&pending, &failed] {
        for k in tree.iter().keys() {
            let k = k?;
            if let Some((endpoint, seq)) = split_endpoint_key(&k) {
                targets.entry(seq).or_default().push(endpoint.to_string());
            }
        }
    }
    let mut moved = 0u64;
    for kv in events.iter() {
        let (k, v) = kv?;
        let Ok(key) = <[u8; 8]>::try_from(&k[..]) else { continue };
        let seq = u64::from_be_bytes(key);
        if spool.last().is_some_and(|l| seq <= l) {
            continue;
        }
        let job_id = match decode::<StatusEvent>(&v) {
            Ok(e) => e.job_id,
            Err(e) => {
                // As before the spool: an unreadable event cannot be delivered.
                tracing::error!(sequence = seq, error = %e, "unreadable event record; dropped");
                continue;
            }
        };
        let names = targets.remove(&seq).unwrap_or_default();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let payload = spooled::encode(&names, &job_id, None, &[], &v).map_err(|e| storage("event", e))?;
        spool.append(seq, &payload).map_err(|e| storage("spool", e))?;
        moved += 1;
    }
    if let Some(s) = spool.syncer().map_err(|e| storage("spool", e))? {
        s.sync().map_err(|e| storage("spool", e))?;
    }
    // Their writes are in sled already: nothing to apply again.
    let applied = applier.applied()?.max(spool.last()).unwrap_or(0);
    meta.insert(APPLIED, &applied.to_be_bytes())?;
    for kv in pending.iter() {
        let (k, v) = kv?;
        let fresh = decode::<DeliveryState>(&v)
            .map(|s| s.attempts == 0 && s.sent == 0 && s.uploaded == 0 && s.last_attempt_at.is_none())
            .unwrap_or(true);
        if fresh {
            pending.remove(k)?;
        }
    }
    for k in events.iter().keys() {
        events.remove(k?)?;
    }
    // What the events took in sled's files comes back at the next start (see `compact`).
    meta.insert(super::compact::REQUESTED, b"1".as_slice())?;
    db.flush()?;
    tracing::info!(events = moved, "outbox: events moved from sled into the spool");
    Ok(())
}

/// Counts the spool's deliveries into `book` (see [`Book`]), and forgets delivery states that
/// no outstanding delivery has any more (a crash between an acknowledgement and their removal).
pub(super) fn tally(
    spool: &Spool,
    book: &mut Book,
    pending: &sled::Tree,
    failed: &sled::Tree,
) -> Result<(), OutboxError> {
    // Parked deliveries are few: asked of a set, not of sled once per delivery.
    let parked: std::collections::HashSet<sled::IVec> = failed.iter().keys().collect::<Result<_, _>>()?;
    let mut from = spool.first().unwrap_or(0);
    loop {
        let chunk = spool.scan(from, 256).map_err(|e| storage("spool", e))?;
        let Some(last) = chunk.last().map(|(s, _)| *s) else { break };
        for (seq, bytes) in chunk {
            let segment = spool.segment_of(seq);
            let Ok((targets, _)) = spooled::head(&bytes) else {
                tracing::error!(sequence = seq, "unreadable event record; it will not be delivered");
                if let Some(s) = segment {
                    book.outstanding(s, 0);
                }
                continue;
            };
            let mut outstanding = 0;
            for t in &targets {
                let parked = !parked.is_empty() && parked.contains(endpoint_key(t, seq).as_slice());
                let page = book.page(t).map_err(|e| storage("delivery ledger", e))?;
                if page.acks.contains(seq) {
                    continue;
                }
                outstanding += 1;
                if parked {
                    page.failed += 1;
                } else {
                    page.pending += 1;
                }
            }
            if let Some(s) = segment {
                book.outstanding(s, outstanding);
            }
            if outstanding > 0 {
                book.events += 1;
            }
        }
        from = last + 1;
    }
    let first = spool.first().unwrap_or(u64::MAX);
    for tree in [pending, failed] {
        let mut stale = Vec::new();
        for k in tree.iter().keys() {
            let k = k?;
            if let Some((endpoint, seq)) = split_endpoint_key(&k) {
                if seq < first || book.acked(endpoint, seq) {
                    stale.push(k);
                }
            }
        }
        for k in stale {
            tree.remove(k)?;
        }
    }
    Ok(())
}
