//! Idempotency keys: a tap retried with its key gets its first event back for a week.

use chrono::{DateTime, Utc};

use super::record::decode;
use super::{IDEM_KEEP_DAYS, Outbox, OutboxError};
use crate::event::StatusEvent;

impl Outbox {
    pub(super) fn by_idem(&self, key: &[u8]) -> Result<Option<StatusEvent>, OutboxError> {
        // A key whose tap is appended but not yet applied to sled (see `journal`).
        if let Some(e) = self.inner.journal.read().ok().and_then(|st| st.held.get(key).cloned()) {
            return Ok(Some(e));
        }
        self.by_idem_stored(key)
    }

    /// The event of an idempotency key in sled.
    pub(super) fn by_idem_stored(&self, key: &[u8]) -> Result<Option<StatusEvent>, OutboxError> {
        match self.inner.idem.get(key)? {
            Some(v) => Ok(Some(decode(&v).map_err(|e| OutboxError::Storage(format!("idempotency record: {e}")))?)),
            None => Ok(None),
        }
    }

    /// The event first stored for `job_id` under Idempotency-Key `key`, if any (kept a week).
    pub fn first_with_key(&self, job_id: &str, key: &str) -> Result<Option<StatusEvent>, OutboxError> {
        let mut k = job_id.as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(key.as_bytes());
        self.by_idem(&k)
    }

    /// Forgets idempotency keys older than a week before `now` (a tap retried later is a new
    /// tap). Reads the whole `idem` tree, so the agent runs it in the background, once GPS time
    /// has confirmed `now`.
    pub fn prune_idempotency(&self, now: DateTime<Utc>) -> Result<(), OutboxError> {
        let cutoff = now - chrono::Duration::days(IDEM_KEEP_DAYS);
        for kv in self.inner.idem.iter() {
            let (k, v) = kv?;
            let old = decode::<StatusEvent>(&v).map(|e| e.occurred_at < cutoff).unwrap_or(true);
            if old {
                self.inner.idem.remove(k)?;
                // Gone from the store like a delivery: the upkeep looks at its size again.
                self.inner.removals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }
}
