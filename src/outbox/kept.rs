//! What is written with an event and kept beside the queue: media references and each job's
//! history (with the week-old idempotency keys), in the event's transaction.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::*;

impl Outbox {
    /// Forgets idempotency keys and job history older than a week before `now` (a tap retried
    /// later is a new tap). Reads the whole `idem` tree, so the agent runs it in the background,
    /// once GPS time has confirmed `now`.
    pub fn prune_idempotency(&self, now: DateTime<Utc>) -> Result<(), OutboxError> {
        let i = &self.inner;
        // Idempotency keys answer retries for a week; a tap retried later is a new tap.
        let cutoff = now - chrono::Duration::days(IDEM_KEEP_DAYS);
        for kv in i.idem.iter() {
            let (k, v) = kv?;
            let old = decode::<StatusEvent>(&v).map(|e| e.occurred_at < cutoff).unwrap_or(true);
            if old {
                i.idem.remove(k)?;
            }
        }
        for kv in i.history.iter() {
            let (k, v) = kv?;
            let old = serde_json::from_slice::<Milestone>(&v).map(|m| m.occurred_at < cutoff).unwrap_or(true);
            if old {
                i.history.remove(k)?;
            }
        }
        Ok(())
    }

    /// What job `job` went through up to event `seq` (included), oldest first.
    pub fn job_history(&self, job: &str, seq: u64) -> Vec<Milestone> {
        let (from, to) = (history_key(job, 0), history_key(job, seq));
        self.inner.history.range(from..=to).values().flatten().filter_map(|v| serde_json::from_slice(&v).ok()).collect()
    }

    /// Whether any stored event refers to the media file `sha`.
    pub fn media_referenced(&self, sha: &crate::digest::Sha) -> bool {
        self.inner.media.scan_prefix(sha).next().is_some()
    }

    /// Removes the media references of events no longer stored (delivered everywhere) and
    /// returns their files' digests, for [`crate::media::Media::release`].
    pub fn drop_released_media_refs(&self) -> Result<Vec<crate::digest::Sha>, OutboxError> {
        let i = &self.inner;
        let mut released = Vec::new();
        for kv in i.media.iter() {
            let (k, _) = kv?;
            let (Ok(sha), Ok(seq)) =
                (<[u8; 32]>::try_from(&k[..k.len().min(32)]), <[u8; 8]>::try_from(&k[k.len().min(32)..]))
            else {
                i.media.remove(&k)?;
                continue;
            };
            if !i.events.contains_key(seq)? {
                i.media.remove(&k)?;
                released.push(sha);
            }
        }
        Ok(released)
    }

    /// Notified when events leave the store: the media janitor then calls
    /// [`Outbox::drop_released_media_refs`].
    pub fn released(&self) -> Arc<Notify> {
        self.inner.released.clone()
    }
}
