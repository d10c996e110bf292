//! What other parts keep in the store beside the queue, in trees of their own: the day's stop
//! list (versioned), media references, and each job's history (with
//! the week-old idempotency keys). They share the store so that what must be atomic with an
//! event is written in the event's transaction.

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

    /// The day's stops (version 0 and none before any list was loaded; an unreadable list
    /// reads as none, logged).
    pub fn stops(&self) -> Arc<StopList> {
        let mut cache = self.inner.stops_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = &*cache {
            return list.clone();
        }
        let list = Arc::new(match self.inner.stops.get("list") {
            Ok(Some(v)) => serde_json::from_slice(&v).unwrap_or_else(|e| {
                tracing::error!(error = %e, "the stored stop list is unreadable; treating it as empty");
                StopList::default()
            }),
            Ok(None) => StopList::default(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stop list");
                return Arc::new(StopList::default());
            }
        });
        *cache = Some(list.clone());
        list
    }

    /// Replaces the stop list, if `if_match` (when given) is the stored version; returns the new
    /// version once it is on disk.
    pub async fn replace_stops(
        &self,
        stops: Vec<crate::stops::Stop>,
        if_match: Option<u64>,
    ) -> Result<u64, OutboxError> {
        let current = self.inner.stops.get("list")?;
        let now: StopList = current.as_ref().and_then(|v| serde_json::from_slice(v).ok()).unwrap_or_default();
        if let Some(expected) = if_match {
            if expected != now.version {
                return Err(OutboxError::VersionMismatch { expected, current: now.version });
            }
        }
        let next = StopList { version: now.version + 1, stops, updated_at: chrono::Utc::now().timestamp() };
        let bytes = serde_json::to_vec(&next).map_err(|e| OutboxError::Storage(e.to_string()))?;
        let swapped = self.inner.stops.compare_and_swap("list", current, Some(bytes))?;
        *self.inner.stops_cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
        match swapped {
            Ok(()) => {}
            Err(_) => {
                let current = self.stops().version;
                return Err(OutboxError::VersionMismatch { expected: if_match.unwrap_or(now.version), current });
            }
        }
        self.commit_or_break().await?;
        Ok(next.version)
    }

    /// Replaces the stop list with one that came as the MQTT message whose payload has SHA-256
    /// `digest`, unless that very message was applied already (the broker sends a retained
    /// message again on every connect, and a list changed through the API since must stay).
    /// Returns the new version, or `None` when it was the message already applied.
    pub async fn replace_stops_from_message(
        &self,
        stops: Vec<crate::stops::Stop>,
        digest: [u8; 32],
    ) -> Result<Option<u64>, OutboxError> {
        if self.inner.stops.get("mqtt")?.is_some_and(|d| d.as_ref() == digest) {
            return Ok(None);
        }
        let version = self.replace_stops(stops, None).await?;
        self.inner.stops.insert("mqtt", &digest[..])?;
        self.commit_or_break().await?;
        Ok(Some(version))
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
