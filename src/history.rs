//! What each job went through: one [`Milestone`] per event, kept in the store's `history` tree
//! (a [`PartTree`]) for a week after the event, delivered or not. Written with the event
//! ([`History::of`] through [`Outbox::append_with`]); read by the formats that send a job's
//! history (Detrack V2's `milestones[]`), the stop list's states and the geofence.
//!
//! Key: job id, NUL, sequence (BE), so a job's steps are one range in sequence order.
//! Value: JSON [`Milestone`].

use chrono::{DateTime, Utc};

use crate::event::{Milestone, StatusEvent};
use crate::outbox::{Alongside, IDEM_KEEP_DAYS, Outbox, OutboxError, PartTree};

/// The tree's name in the store.
const TREE: &str = "history";

/// The jobs' history in the store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct History {
    tree: PartTree,
}

fn key(job: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(job.len() + 9);
    k.extend_from_slice(job.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl History {
    /// The history kept in `outbox`.
    pub fn open(outbox: &Outbox) -> Result<History, OutboxError> {
        Ok(History { tree: outbox.part_tree(TREE)? })
    }

    /// Event `seq`'s step, to write with it.
    pub fn of(&self, event: &StatusEvent, seq: u64) -> Alongside {
        let step = serde_json::to_vec(&Milestone::of(event)).unwrap_or_default();
        self.tree.alongside(key(&event.job_id, seq), step)
    }

    /// What job `job` went through up to event `seq` (included), oldest first.
    pub fn job(&self, job: &str, seq: u64) -> Vec<Milestone> {
        self.tree
            .range_inclusive(&key(job, 0), &key(job, seq))
            .flatten()
            .filter_map(|v| serde_json::from_slice(&v).ok())
            .collect()
    }

    /// Forgets steps older than a week before `now`, as the idempotency keys are
    /// ([`Outbox::prune_idempotency`]). Reads the whole tree: run in the background, once GPS
    /// time has confirmed `now`.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<(), OutboxError> {
        let cutoff = now - chrono::Duration::days(IDEM_KEEP_DAYS);
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            let old = serde_json::from_slice::<Milestone>(&v).map(|m| m.occurred_at < cutoff).unwrap_or(true);
            if old {
                self.tree.remove(k)?;
            }
        }
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
            async move { o.append_with(job, Some(key), |s| event(s, job, at), |e, s| vec![h.of(e, s)]).await.unwrap() }
        };
        let first = tap("J1", "a", t0).await;
        let again = tap("J1", "a", t0 + chrono::Duration::minutes(1)).await;
        assert!(first.created && !again.created);
        let later = tap("J1", "c", t0 + chrono::Duration::minutes(2)).await;
        tap("J2", "b", t0 + chrono::Duration::days(8)).await;
        let (m1, m2) = (Milestone::of(&first.event), Milestone::of(&later.event));
        assert_eq!(history.job("J1", u64::MAX), vec![m1.clone(), m2], "one step per stored event, none for a retry");
        assert_eq!(history.job("J1", first.event.sequence), vec![m1], "up to a sequence");

        history.prune(t0 + chrono::Duration::days(IDEM_KEEP_DAYS) + chrono::Duration::hours(1)).unwrap();
        assert!(history.job("J1", u64::MAX).is_empty(), "older than a week: gone");
        assert_eq!(history.job("J2", u64::MAX).len(), 1, "younger: kept");
    }
}
