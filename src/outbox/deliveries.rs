//! The delivery queue's reads and settlements for the loops, the operator's actions (list,
//! retry, enable) and the delivery log.

use std::collections::HashSet;

use super::counts::Kind;
use super::*;

impl Outbox {
    /// Up to `limit` pending deliveries of `endpoint` with sequence > `after`, oldest first.
    pub fn pending_after(
        &self,
        endpoint: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, DeliveryState)>, OutboxError> {
        self.pending_scan(endpoint, after, limit, |_| false)
    }

    /// As [`Outbox::pending_after`], not counting (nor decoding) sequences for which `skip` is true.
    pub fn pending_scan(
        &self,
        endpoint: &str,
        after: Option<u64>,
        limit: usize,
        skip: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, DeliveryState)>, OutboxError> {
        let start = match after {
            Some(s) => endpoint_key(endpoint, s.saturating_add(1)),
            None => endpoint_prefix(endpoint),
        };
        let prefix = endpoint_prefix(endpoint);
        let mut out = Vec::new();
        for kv in self.inner.pending.range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let Some((_, seq)) = split_endpoint_key(&k) else { continue };
            if skip(seq) {
                continue;
            }
            match decode::<DeliveryState>(&v) {
                Ok(state) => out.push((seq, state)),
                Err(e) => tracing::error!(endpoint, sequence = seq, error = %e, "unreadable delivery record; skipped"),
            }
        }
        Ok(out)
    }

    /// Saves a delivery's state after a failed attempt.
    pub fn update(&self, endpoint: &str, seq: u64, state: &DeliveryState) -> Result<(), OutboxError> {
        let change = self.inner.counts.change();
        if self.inner.pending.insert(endpoint_key(endpoint, seq), encode(state))?.is_none() {
            // Delivered meanwhile (a record written back is still a delivery to count).
            change.deliveries(endpoint, Kind::Pending, 1);
        }
        Ok(())
    }

    /// Records a 2xx: the delivery is removed, and the event with it if no other endpoint still
    /// needs it.
    pub fn delivered(&self, endpoint: &str, seq: u64) -> Result<(), OutboxError> {
        let i = &self.inner;
        i.removals.fetch_add(1, Ordering::Relaxed);
        let others: Vec<Vec<u8>> =
            i.endpoints.iter().filter(|e| e.name != endpoint).map(|e| endpoint_key(&e.name, seq)).collect();
        self.before_removing(seq)?;
        if others.is_empty() {
            // One endpoint: nobody else can need the event. The event goes first: a crash in
            // between leaves a delivery without its event, which the delivery loop drops as
            // delivered (it was), rather than an orphan event nothing would ever remove.
            let change = i.counts.change();
            if i.events.remove(seq_key(seq))?.is_some() {
                change.events(-1);
            }
            if i.pending.remove(endpoint_key(endpoint, seq))?.is_some() {
                change.deliveries(endpoint, Kind::Pending, -1);
            }
            drop(change);
            i.released.notify_one();
            return Ok(());
        }
        let change = i.counts.change();
        let (was_pending, removed) = (&i.pending, &i.failed, &i.events).transaction(|(pending, failed, events)| {
            let was_pending = pending.remove(endpoint_key(endpoint, seq))?.is_some();
            let mut needed = false;
            for k in &others {
                if pending.get(k)?.is_some() || failed.get(k)?.is_some() {
                    needed = true;
                    break;
                }
            }
            let removed = !needed && events.remove(&seq_key(seq))?.is_some();
            Ok::<_, ConflictableTransactionError<OutboxError>>((was_pending, removed))
        })?;
        if was_pending {
            change.deliveries(endpoint, Kind::Pending, -1);
        }
        if removed {
            change.events(-1);
        }
        drop(change);
        i.released.notify_one();
        Ok(())
    }

    /// Bytes of files still to upload: the attachments of `endpoint`'s pending and parked
    /// deliveries that their state does not count as uploaded (reads those events).
    pub fn upload_pending_bytes(&self, endpoint: &str) -> u64 {
        let prefix = endpoint_prefix(endpoint);
        let mut total = 0;
        for tree in [&self.inner.pending, &self.inner.failed] {
            for (k, v) in tree.scan_prefix(&prefix).flatten() {
                let (Some((_, seq)), Ok(state)) = (split_endpoint_key(&k), decode::<DeliveryState>(&v)) else {
                    continue;
                };
                if let Ok(Some(e)) = self.event(seq) {
                    total += e.attachments.iter().skip(state.uploaded as usize).map(|a| a.bytes).sum::<u64>();
                }
            }
        }
        total
    }

    /// The endpoints event `seq` has not reached yet: still to be delivered, or parked as failed
    /// (each name once, in the order the endpoints were configured). Empty once every endpoint
    /// that wanted it has it (and for a sequence that was never given out: a delivered event
    /// leaves the store, so the two look alike).
    pub fn waiting_for(&self, seq: u64) -> Result<Vec<String>, OutboxError> {
        let i = &self.inner;
        let mut waiting = Vec::new();
        for ep in &i.endpoints {
            let key = endpoint_key(&ep.name, seq);
            if i.pending.contains_key(&key)? || i.failed.contains_key(&key)? {
                waiting.push(ep.name.clone());
            }
        }
        Ok(waiting)
    }

    /// Drops every delivery to `endpoint` (and events nothing else needs), returning how many:
    /// for the MQTT event mirror once `[mqtt]` is removed from the config. Webhook endpoints
    /// are never forgotten this way: their events wait for an operator.
    pub fn forget_endpoint(&self, endpoint: &str) -> Result<usize, OutboxError> {
        let prefix = endpoint_prefix(endpoint);
        let mut n = 0;
        for (tree, kind) in [(&self.inner.pending, Kind::Pending), (&self.inner.failed, Kind::Failed)] {
            let keys: Vec<sled::IVec> = tree.scan_prefix(&prefix).keys().collect::<Result<_, _>>()?;
            for k in keys {
                let Some((_, seq)) = split_endpoint_key(&k) else { continue };
                let change = self.inner.counts.change();
                if tree.remove(&k)?.is_some() {
                    change.deliveries(endpoint, kind, -1);
                }
                drop(change);
                self.delivered(endpoint, seq)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Parks a delivery as failed after its retry budget; an operator's retry releases it.
    pub fn park(&self, endpoint: &str, seq: u64, state: &DeliveryState) -> Result<(), OutboxError> {
        self.move_delivery(endpoint, &endpoint_key(endpoint, seq), &encode(state), Kind::Failed)?;
        self.inner.durable.sync()?;
        Ok(())
    }

    /// Moves one delivery of `endpoint` between `pending` and `failed`, into `to`, with `value`
    /// as its state, in one transaction, and counts what it moved (see [`super::counts`]).
    fn move_delivery(&self, endpoint: &str, key: &[u8], value: &[u8], to: Kind) -> Result<(), OutboxError> {
        let i = &self.inner;
        let (from_tree, to_tree, from) = match to {
            Kind::Failed => (&i.pending, &i.failed, Kind::Pending),
            Kind::Pending => (&i.failed, &i.pending, Kind::Failed),
        };
        let change = i.counts.change();
        let (was_there, was_here) = (from_tree, to_tree).transaction(|(from_tree, to_tree)| {
            let was_there = from_tree.remove(key)?.is_some();
            let was_here = to_tree.insert(key, value)?.is_some();
            Ok::<_, ConflictableTransactionError<OutboxError>>((was_there, was_here))
        })?;
        if was_there {
            change.deliveries(endpoint, from, -1);
        }
        if !was_here {
            change.deliveries(endpoint, to, 1);
        }
        Ok(())
    }

    /// Jobs of `endpoint` that have a parked event: their later events wait, so order holds.
    pub fn blocked_jobs(&self, endpoint: &str) -> Result<HashSet<String>, OutboxError> {
        let mut jobs = HashSet::new();
        for kv in self.inner.failed.scan_prefix(endpoint_prefix(endpoint)) {
            let (_, v) = kv?;
            if let Ok(s) = decode::<DeliveryState>(&v) {
                jobs.insert(s.job_id);
            }
        }
        Ok(jobs)
    }

    /// Moves parked deliveries back to pending, with a fresh retry budget: those of event `id`
    /// (every endpoint), or all of them. Returns how many.
    pub fn retry(&self, id: Option<uuid::Uuid>) -> Result<usize, OutboxError> {
        let seq = match id {
            Some(id) => Some(self.find(id)?.map(|e| e.sequence).ok_or(OutboxError::NotFound(format!("event {id}")))?),
            None => None,
        };
        let mut moved = 0;
        let mut endpoints = HashSet::new();
        for kv in self.inner.failed.iter() {
            let (k, v) = kv?;
            let Some((endpoint, s)) = split_endpoint_key(&k) else { continue };
            if seq.is_some_and(|want| want != s) {
                continue;
            }
            let mut state: DeliveryState = match decode(&v) {
                Ok(s) => s,
                Err(_) => continue,
            };
            state.waited_ms = 0;
            self.move_delivery(endpoint, &k, &encode(&state), Kind::Pending)?;
            endpoints.insert(endpoint.to_string());
            moved += 1;
        }
        self.inner.durable.sync()?;
        for e in endpoints {
            self.wake(&e);
        }
        Ok(moved)
    }

    /// Appends to the bounded delivery log.
    pub fn log_attempt(&self, attempt: &Attempt) -> Result<(), OutboxError> {
        let i = &self.inner;
        let id = self.next_id()?;
        i.log.insert(seq_key(id), encode(attempt))?;
        if i.log_len.fetch_add(1, Ordering::Relaxed) + 1 > LOG_KEEP + LOG_KEEP / 10 {
            for _ in 0..LOG_KEEP / 10 {
                if i.log.pop_min()?.is_none() {
                    break;
                }
            }
            i.log_len.store(i.log.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The newest `n` attempts, newest first, optionally for one endpoint.
    pub fn recent_attempts(&self, endpoint: Option<&str>, n: usize) -> Vec<Attempt> {
        super::backward::newest_first(&self.inner.log, 64)
            .filter_map(|kv| kv.ok().and_then(|(_, v)| decode::<Attempt>(&v).ok()))
            .filter(|a| endpoint.is_none_or(|e| a.endpoint == e))
            .take(n)
            .collect()
    }

    /// Disables an endpoint (it answered 410 Gone) until an operator enables it.
    pub fn disable(&self, endpoint: &str, reason: &str) -> Result<(), OutboxError> {
        self.inner.meta.insert(format!("disabled/{endpoint}"), reason.as_bytes())?;
        self.inner.durable.sync()?;
        if let Ok(mut d) = self.inner.disabled.lock() {
            d.insert(endpoint.to_string(), reason.to_string());
        }
        Ok(())
    }

    /// Why an endpoint is disabled, if it is.
    pub fn disabled(&self, endpoint: &str) -> Option<String> {
        self.inner.disabled.lock().ok()?.get(endpoint).cloned()
    }

    /// Enables an endpoint again; returns whether it was disabled.
    pub fn enable(&self, endpoint: &str) -> Result<bool, OutboxError> {
        self.inner.meta.remove(format!("disabled/{endpoint}"))?;
        self.inner.durable.sync()?;
        let was = self.inner.disabled.lock().map(|mut d| d.remove(endpoint).is_some()).unwrap_or(false);
        self.wake(endpoint);
        Ok(was)
    }

    /// Pending and failed deliveries, oldest first.
    pub fn list(&self, state: Option<ListState>, limit: usize) -> Result<Vec<Listed>, OutboxError> {
        let mut out = Vec::new();
        for (tree, st) in [(&self.inner.pending, ListState::Pending), (&self.inner.failed, ListState::Failed)] {
            if state.is_some_and(|s| s != st) {
                continue;
            }
            for kv in tree.iter() {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = kv?;
                let Some((endpoint, seq)) = split_endpoint_key(&k) else { continue };
                let Ok(delivery) = decode::<DeliveryState>(&v) else { continue };
                out.push(Listed { endpoint: endpoint.into(), state: st, delivery, event: self.event(seq)? });
            }
        }
        Ok(out)
    }

    /// Pending and failed counts of one endpoint: kept in memory once first asked (see
    /// [`super::counts`]), and the oldest pending sequence, the first key of its range.
    pub fn depth(&self, endpoint: &str) -> Depth {
        let (pending, failed) = self.inner.counts.deliveries(&self.counted(), endpoint).unwrap_or_else(|e| {
            tracing::warn!(endpoint, error = %e, "cannot count the outbox's deliveries");
            (0, 0)
        });
        let oldest_sequence = self
            .inner
            .pending
            .scan_prefix(endpoint_prefix(endpoint))
            .keys()
            .next()
            .and_then(|k| k.ok())
            .and_then(|k| split_endpoint_key(&k).map(|(_, s)| s));
        Depth { pending, failed, oldest_sequence }
    }
}
