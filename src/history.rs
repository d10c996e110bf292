//! What each job went through: one [`Milestone`] per event, kept in the store's `history` tree
//! (a [`PartTree`]) for a week after the event, delivered or not. Written with the event
//! ([`History::of`] through [`Outbox::append_with`]); read by the formats that send a job's
//! history (Detrack V2's `milestones[]`), the stop list's states and the geofence.
//!
//! Key: the day of the step (days since 1970-01-01 UTC, u32 BE), then the event's sequence
//! (BE). Value: the job id (a length byte, its bytes), then the step as an outbox record
//! ([`crate::outbox::record`]). Steps are appended at the end of the tree, not inserted all over
//! it, and a week-old day is one range at the front, so the prune reads only what it removes.
//! Measured with 100,000 queued events over 5,000 jobs (issue 29): keyed by job, the tree cost
//! 55 MB of the store's 98 MB on disk (sled rewrites the pages a random insert lands in), and
//! the prune, reading every step, 16 MB of RSS.
//!
//! A job's steps are found through an index in memory (job → its steps' keys), built from the
//! tree the first time a job is asked for: a week of a van's steps is a few thousand, read in a
//! few milliseconds; a process that never asks (a drain) never reads them.
//!
//! Stores written before that keyed steps by job id, NUL, sequence, with JSON values. A job id
//! starts with a byte of `[A-Za-z0-9._~-]`, a day with 0 (until the year 47,000), so those keys
//! sort after every day; they are indexed, read and pruned as they are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::event::{Milestone, StatusEvent};
use crate::outbox::record::{decode, encode};
use crate::outbox::{Alongside, IDEM_KEEP_DAYS, Outbox, OutboxError, PartTree};

/// The tree's name in the store.
const TREE: &str = "history";
/// Where the keys of older stores begin: after every day.
const LEGACY: &[u8] = &[1];

/// Job → the sequences and keys of its steps, in sequence order.
type Index = HashMap<String, Vec<(u64, Vec<u8>)>>;

/// The jobs' history in the store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct History {
    tree: PartTree,
    /// Job → the keys of its steps, in sequence order; `None` until a job is first asked for.
    index: Arc<Mutex<Option<Index>>>,
}

fn day_of(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp().div_euclid(86_400)).unwrap_or(0)
}

fn key(day: u32, seq: u64) -> [u8; 12] {
    let mut k = [0; 12];
    k[..4].copy_from_slice(&day.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// A key of a store written before the days (see the module docs).
#[cfg(test)]
fn legacy_key(job: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(job.len() + 9);
    k.extend_from_slice(job.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The job and sequence of a stored step, from its key and value (either layout).
fn job_and_seq<'a>(k: &'a [u8], v: &'a [u8]) -> Option<(&'a str, u64, &'a [u8])> {
    if k < LEGACY {
        let seq = u64::from_be_bytes(k.get(4..12)?.try_into().ok()?);
        let (&n, rest) = v.split_first()?;
        let job = std::str::from_utf8(rest.get(..usize::from(n))?).ok()?;
        Some((job, seq, &rest[usize::from(n)..]))
    } else {
        let nul = k.iter().position(|b| *b == 0)?;
        let seq = u64::from_be_bytes(k.get(nul + 1..nul + 9)?.try_into().ok()?);
        Some((std::str::from_utf8(&k[..nul]).ok()?, seq, v))
    }
}

impl History {
    /// The history kept in `outbox` (reads nothing yet). Every handle of a store shares one
    /// index ([`PartTree::memo`]).
    pub fn open(outbox: &Outbox) -> Result<History, OutboxError> {
        let tree = outbox.part_tree(TREE)?;
        let index = tree.memo(|| Mutex::new(None::<Index>));
        Ok(History { tree, index })
    }

    /// Event `seq`'s step, to write with it. Once the event is on disk, [`History::note`] it.
    pub fn of(&self, event: &StatusEvent, seq: u64) -> Alongside {
        let job = event.job_id.as_bytes();
        // Job ids are at most 64 bytes (route events: `~route`); longer ones are cut, not lost.
        let job = &job[..job.len().min(255)];
        let mut value = Vec::with_capacity(job.len() + 40);
        value.push(job.len() as u8);
        value.extend_from_slice(job);
        value.extend_from_slice(&encode(&Milestone::of(event)));
        self.tree.alongside(key(day_of(event.occurred_at), seq).to_vec(), value)
    }

    /// Adds a stored event's step to the index, if built (after the append, not in [`History::of`]:
    /// an index built in between from the tree would miss a step noted before it was written).
    pub fn note(&self, event: &StatusEvent) {
        if let Some(index) = self.index.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let steps = index.entry(event.job_id.clone()).or_default();
            if !steps.iter().any(|(s, _)| *s == event.sequence) {
                steps.push((event.sequence, key(day_of(event.occurred_at), event.sequence).to_vec()));
                steps.sort_by_key(|(s, _)| *s);
            }
        }
    }

    /// What job `job` went through up to event `seq` (included), oldest first.
    pub fn job(&self, job: &str, seq: u64) -> Vec<Milestone> {
        let keys: Vec<Vec<u8>> = {
            let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            if index.is_none() {
                *index = Some(self.build_index());
            }
            let Some(steps) = index.as_ref().and_then(|i| i.get(job)) else { return Vec::new() };
            steps.iter().filter(|(s, _)| *s <= seq).map(|(_, k)| k.clone()).collect()
        };
        keys.iter()
            .filter_map(|k| {
                let v = self.tree.get(k).ok()??;
                let (_, _, step) = job_and_seq(k, &v)?;
                decode(step).ok()
            })
            .collect()
    }

    fn build_index(&self) -> Index {
        let mut index = Index::new();
        for (k, v) in self.tree.iter().flatten() {
            if let Some((job, seq, _)) = job_and_seq(&k, &v) {
                index.entry(job.to_string()).or_default().push((seq, k.to_vec()));
            }
        }
        for steps in index.values_mut() {
            // A clock set back can put a later step on an earlier day.
            steps.sort_by_key(|(s, _)| *s);
        }
        index
    }

    /// Forgets steps older than a week before `now`, as the idempotency keys are
    /// ([`Outbox::prune_idempotency`]): whole days before the cutoff's day, and the steps of
    /// that day (and of an older store) one by one. Run in the background, once GPS time has
    /// confirmed `now`.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<(), OutboxError> {
        let cutoff = now - chrono::Duration::days(IDEM_KEEP_DAYS);
        let last = day_of(cutoff);
        let old = |k: &[u8], v: &[u8]| {
            job_and_seq(k, v)
                .and_then(|(_, _, step)| decode::<Milestone>(step).ok())
                .is_none_or(|m| m.occurred_at < cutoff)
        };
        let mut gone = Vec::new();
        for kv in self.tree.range(&[0; 4], &last.to_be_bytes()) {
            gone.push(kv?.0);
        }
        let next = last.checked_add(1).map_or(LEGACY.to_vec(), |d| d.to_be_bytes().to_vec());
        for kv in self.tree.range(&last.to_be_bytes(), &next).chain(self.tree.range(LEGACY, &[0xFF; 80])) {
            let (k, v) = kv?;
            if old(&k, &v) {
                gone.push(k);
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        for k in gone {
            self.tree.remove(k)?;
        }
        // Built again when next asked for.
        *self.index.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::EndpointFilter;

    fn event(seq: u64, job: &str, at: DateTime<Utc>) -> StatusEvent {
        StatusEvent { sequence: seq, job_id: job.into(), occurred_at: at, ..crate::webhook::format::sample("van-17") }
    }

    #[tokio::test]
    async fn a_step_goes_in_with_its_event_once_and_leaves_after_a_week() {
        let dir = tempfile::tempdir().unwrap();
        let endpoints = vec![EndpointFilter { name: "bo".into(), events: None, files_only: false }];
        let outbox = Outbox::open(dir.path(), endpoints).unwrap();
        let history = History::open(&outbox).unwrap();
        let t0 = "2026-11-02T08:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let tap = |job: &'static str, key: &'static str, at| {
            let (o, h) = (outbox.clone(), history.clone());
            async move {
                let a = o.append_with(job, Some(key), |s| event(s, job, at), |e, s| vec![h.of(e, s)]).await.unwrap();
                h.note(&a.event);
                a
            }
        };
        let first = tap("J1", "a", t0).await;
        let again = tap("J1", "a", t0 + chrono::Duration::minutes(1)).await;
        assert!(first.created && !again.created);
        let later = tap("J1", "c", t0 + chrono::Duration::minutes(2)).await;
        tap("J2", "b", t0 + chrono::Duration::days(8)).await;
        let (m1, m2) = (Milestone::of(&first.event), Milestone::of(&later.event));
        assert_eq!(history.job("J1", u64::MAX), vec![m1.clone(), m2], "one step per stored event, none for a retry");
        assert_eq!(history.job("J1", first.event.sequence), vec![m1], "up to a sequence");

        // A step written by an older release (keyed by job, JSON, no version byte) still reads.
        let old = Milestone { sequence: 99, ..Milestone::of(&later.event) };
        history.tree.insert(legacy_key("J1", 99), serde_json::to_vec(&old).unwrap()).unwrap();
        let reopened = History::open(&outbox).unwrap();
        assert!(Arc::ptr_eq(&reopened.index, &history.index), "one index per store");
        *history.index.lock().unwrap() = None;
        assert_eq!(reopened.job("J1", u64::MAX).last(), Some(&old));
        assert_eq!(reopened.job("J1", u64::MAX).len(), 3, "two of today's layout and one of the older store");
        assert_eq!(reopened.job("J1", first.event.sequence).len(), 1);

        tap("J3", "d", t0 - chrono::Duration::days(1)).await;
        assert_eq!(history.job("J3", u64::MAX).len(), 1, "noted in the index built before it");

        history.prune(t0 + chrono::Duration::days(IDEM_KEEP_DAYS) + chrono::Duration::hours(1)).unwrap();
        assert!(history.job("J1", u64::MAX).is_empty(), "older than a week: gone");
        assert!(history.job("J3", u64::MAX).is_empty(), "a whole day older than a week: gone");
        assert_eq!(history.tree.iter().count(), 1);
        assert_eq!(history.job("J2", u64::MAX).len(), 1, "younger: kept");
    }
}
