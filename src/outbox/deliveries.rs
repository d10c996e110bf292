//! The delivery queue's reads and settlements for the loops, the operator's actions (list,
//! retry, enable) and the delivery log.
//!
//! A delivery is pending while its endpoint has not acknowledged its event (see the outbox's `book`)
//! and `failed` does not hold it; its state is `pending`'s record once it was attempted, a fresh
//! one before.

use std::collections::HashSet;

use super::*;

fn poisoned() -> OutboxError {
    OutboxError::Storage("outbox lock poisoned".into())
}

fn ledger(e: std::io::Error) -> OutboxError {
    OutboxError::Storage(format!("delivery ledger: {e}"))
}

impl Outbox {
    fn book(&self) -> std::sync::MutexGuard<'_, book::Book> {
        self.inner.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the delivery under `key` is parked. sled is asked only when something was ever
    /// parked since the store opened (the flag is set before every insert into `failed`).
    fn is_parked(&self, key: &[u8]) -> Result<bool, OutboxError> {
        Ok(self.inner.any_parked.load(Ordering::Acquire) && self.inner.failed.contains_key(key)?)
    }

    /// The saved state of the delivery under `key` (after a failed attempt), asking sled only
    /// when any state was ever saved since the store opened.
    fn saved_state(&self, key: &[u8]) -> Result<Option<sled::IVec>, OutboxError> {
        if !self.inner.any_states.load(Ordering::Acquire) {
            return Ok(None);
        }
        Ok(self.inner.pending.get(key)?)
    }

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
        Ok(self
            .pending_records(endpoint, after, limit, skip)?
            .into_iter()
            .map(|(seq, state, _)| (seq, state))
            .collect())
    }

    /// As [`Outbox::pending_scan`], with each event's record as read, for a delivery loop to
    /// deliver without reading it again ([`Outbox::outgoing_in`]).
    pub fn pending_records(
        &self,
        endpoint: &str,
        after: Option<u64>,
        limit: usize,
        skip: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, DeliveryState, Record)>, OutboxError> {
        let (cursor, epoch) = match self.book().get(endpoint) {
            Some(p) => (p.cursor, p.epoch),
            None => return Ok(Vec::new()),
        };
        let start = after.map_or(0, |a| a.saturating_add(1)).max(cursor);
        let from_cursor = start == cursor;
        let mut out = Vec::new();
        let mut from = start;
        // The first pending delivery seen (skipped or not): the cursor may move up to it.
        let mut first_pending = None;
        let mut end = None;
        'scan: loop {
            let chunk = {
                let st = self.inner.journal.read().map_err(|_| poisoned())?;
                st.spool.scan(from, 128).map_err(|e| OutboxError::Storage(format!("spool: {e}")))?
            };
            let Some(last) = chunk.last().map(|(s, _)| *s) else {
                end = Some(from);
                break;
            };
            let heads: Vec<(u64, Option<String>)> = {
                let book = self.book();
                chunk
                    .iter()
                    .map(|(seq, bytes)| {
                        let job = match spooled::head(bytes) {
                            Ok((targets, job)) => {
                                (targets.iter().any(|t| t == endpoint) && !book.acked(endpoint, *seq)).then_some(job)
                            }
                            Err(e) => {
                                tracing::error!(endpoint, sequence = seq, error = %e, "unreadable event record; skipped");
                                None
                            }
                        };
                        (*seq, job)
                    })
                    .collect()
            };
            for ((seq, job), (_, bytes)) in heads.into_iter().zip(chunk) {
                let Some(job) = job else { continue };
                let key = endpoint_key(endpoint, seq);
                if self.is_parked(&key)? {
                    continue;
                }
                first_pending.get_or_insert(seq);
                if out.len() >= limit {
                    break 'scan;
                }
                if skip(seq) {
                    continue;
                }
                let state = match self.saved_state(&key)? {
                    None => DeliveryState::new(&job),
                    Some(v) => match decode::<DeliveryState>(&v) {
                        Ok(state) => state,
                        Err(e) => {
                            tracing::error!(endpoint, sequence = seq, error = %e, "unreadable delivery record; skipped");
                            continue;
                        }
                    },
                };
                out.push((seq, state, Record(bytes)));
            }
            from = last + 1;
        }
        if from_cursor {
            if let Some(to) = first_pending.or(end) {
                let mut book = self.book();
                if let Ok(p) = book.page(endpoint) {
                    // Not when a retry moved the cursor back meanwhile.
                    if p.epoch == epoch && to > p.cursor {
                        p.cursor = to;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Saves a delivery's state after a failed attempt.
    pub fn update(&self, endpoint: &str, seq: u64, state: &DeliveryState) -> Result<(), OutboxError> {
        if !self.book().acked(endpoint, seq) {
            self.inner.any_states.store(true, Ordering::Release);
            self.inner.pending.insert(endpoint_key(endpoint, seq), encode(state))?;
        }
        Ok(())
    }

    /// Records a 2xx: the delivery is done (the endpoint's acknowledgement, not synced: losing
    /// it to a crash costs a redelivery), and the event's spool segment goes once every delivery
    /// in it is done.
    pub fn delivered(&self, endpoint: &str, seq: u64) -> Result<(), OutboxError> {
        self.settle_delivered(endpoint, seq, None)
    }

    /// As [`Outbox::delivered`], for a caller that has read the event's endpoints with it
    /// ([`Outbox::outgoing`]): the record is not read again.
    pub(super) fn settle_delivered(
        &self,
        endpoint: &str,
        seq: u64,
        known: Option<&[String]>,
    ) -> Result<(), OutboxError> {
        let i = &self.inner;
        i.removals.fetch_add(1, Ordering::Relaxed);
        self.before_removing(seq)?;
        let (segment, read) = {
            let st = i.journal.read().map_err(|_| poisoned())?;
            let segment = st.spool.segment_of(seq);
            let read = match known {
                Some(_) => None,
                None => match st.spool.get(seq) {
                    Ok(Some(bytes)) => spooled::head(&bytes).map(|(t, _)| t).ok(),
                    _ => None,
                },
            };
            (segment, read)
        };
        let targets = known.or(read.as_deref());
        let key = endpoint_key(endpoint, seq);
        let was_parked = i.any_parked.load(Ordering::Acquire) && i.failed.remove(&key)?.is_some();
        if i.any_states.load(Ordering::Acquire) {
            i.pending.remove(&key)?;
        }
        let Some(targets) = targets.filter(|t| t.iter().any(|t| t == endpoint)) else {
            // Not an event of the spool for this endpoint: nothing to acknowledge.
            return Ok(());
        };
        let removable = {
            let mut book = self.book();
            let page = book.page(endpoint).map_err(ledger)?;
            if !page.acks.take(seq).map_err(ledger)? {
                return Ok(());
            }
            if was_parked {
                page.failed = page.failed.saturating_sub(1);
            } else {
                page.pending = page.pending.saturating_sub(1);
            }
            book.done(segment);
            if targets.iter().all(|t| book.acked(t, seq)) {
                book.events = book.events.saturating_sub(1);
            }
            book.removable_below()
        };
        if let Some(bound) = removable {
            self.remove_segments(bound)?;
        }
        i.released.notify_one();
        Ok(())
    }

    /// Writes the acknowledgements taken and not written yet (they are written in batches):
    /// for a delivery loop whose deliveries have paused, so that a kill does not make it
    /// deliver them again.
    pub fn write_acks(&self) -> Result<(), OutboxError> {
        self.book().write_out().map_err(ledger)
    }

    /// Removes the spool's segments below `bound` (every delivery in them done), and rewrites
    /// the ledgers that have grown long with acknowledgements of what is gone.
    fn remove_segments(&self, bound: u64) -> Result<(), OutboxError> {
        let first = {
            let mut st = self.inner.journal.write().map_err(|_| poisoned())?;
            st.spool.remove_through(bound - 1).map_err(|e| OutboxError::Storage(format!("spool: {e}")))?;
            st.spool.first().unwrap_or(bound)
        };
        let mut book = self.book();
        for (_, page) in book.pages_mut() {
            if page.acks.entries() > 4096 {
                page.acks.compact(first).map_err(ledger)?;
            }
        }
        Ok(())
    }

    /// Bytes of files still to upload: the attachments of `endpoint`'s pending and parked
    /// deliveries that their state does not count as uploaded (reads those events: the parked
    /// ones, and the spool from the oldest pending one on).
    pub fn upload_pending_bytes(&self, endpoint: &str) -> u64 {
        let unsent = |bytes: &[u8], uploaded: u32| {
            decode::<StatusEvent>(bytes)
                .map_or(0, |e| e.attachments.iter().skip(uploaded as usize).map(|a| a.bytes).sum::<u64>())
        };
        let mut total = 0;
        for (k, v) in self.inner.failed.scan_prefix(endpoint_prefix(endpoint)).flatten() {
            let (Some((_, seq)), Ok(state)) = (split_endpoint_key(&k), decode::<DeliveryState>(&v)) else { continue };
            if let Ok(Some((_, bytes))) = self.record(seq) {
                total += unsent(&bytes, state.uploaded);
            }
        }
        let cursor = self.book().get(endpoint).map_or(0, |p| p.cursor);
        let _ = self.each_record(cursor, |seq, targets, bytes| {
            if !targets.iter().any(|t| t == endpoint) || self.book().acked(endpoint, seq) {
                return Ok(true);
            }
            let key = endpoint_key(endpoint, seq);
            if self.inner.failed.contains_key(&key).unwrap_or(true) {
                return Ok(true);
            }
            let uploaded = self
                .inner
                .pending
                .get(&key)
                .ok()
                .flatten()
                .and_then(|v| decode::<DeliveryState>(&v).ok())
                .map_or(0, |s| s.uploaded);
            total += unsent(bytes, uploaded);
            Ok(true)
        });
        total
    }

    /// The endpoints event `seq` has not reached yet: still to be delivered, or parked as failed
    /// (each name once, in the order the endpoints were configured). Empty once every endpoint
    /// that wanted it has it (and for a sequence that was never given out: a delivered event
    /// leaves the store, so the two look alike).
    pub fn waiting_for(&self, seq: u64) -> Result<Vec<String>, OutboxError> {
        let Some((targets, _)) = self.record(seq)? else { return Ok(Vec::new()) };
        let book = self.book();
        Ok(targets.into_iter().filter(|t| !book.acked(t, seq)).collect())
    }

    /// Drops every delivery to `endpoint` (and events nothing else needs), returning how many:
    /// for the MQTT event mirror once `[mqtt]` is removed from the config. Webhook endpoints
    /// are never forgotten this way: their events wait for an operator.
    pub fn forget_endpoint(&self, endpoint: &str) -> Result<usize, OutboxError> {
        // The agent asks at every start for each endpoint it no longer has: most have nothing.
        if self.book().get(endpoint).is_none_or(|p| p.pending + p.failed == 0) {
            return Ok(0);
        }
        let mut seqs = Vec::new();
        self.each_record(0, |seq, targets, _| {
            if targets.iter().any(|t| t == endpoint) && !self.book().acked(endpoint, seq) {
                seqs.push(seq);
            }
            Ok(true)
        })?;
        for &seq in &seqs {
            self.delivered(endpoint, seq)?;
        }
        Ok(seqs.len())
    }

    /// Parks a delivery as failed after its retry budget; an operator's retry releases it.
    pub fn park(&self, endpoint: &str, seq: u64, state: &DeliveryState) -> Result<(), OutboxError> {
        let key = endpoint_key(endpoint, seq);
        if self.book().acked(endpoint, seq) {
            return Ok(());
        }
        self.inner.any_parked.store(true, Ordering::Release);
        let was = (&self.inner.pending, &self.inner.failed).transaction(|(pending, failed)| {
            pending.remove(key.as_slice())?;
            Ok::<_, ConflictableTransactionError<OutboxError>>(failed.insert(key.as_slice(), encode(state))?.is_some())
        })?;
        if !was {
            let mut book = self.book();
            let page = book.page(endpoint).map_err(ledger)?;
            page.pending = page.pending.saturating_sub(1);
            page.failed += 1;
        }
        self.inner.durable.sync()?;
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
            self.inner.any_states.store(true, Ordering::Release);
            let was = (&self.inner.pending, &self.inner.failed).transaction(|(pending, failed)| {
                pending.insert(k.as_ref(), encode(&state))?;
                Ok::<_, ConflictableTransactionError<OutboxError>>(failed.remove(k.as_ref())?.is_some())
            })?;
            if was {
                let mut book = self.book();
                let page = book.page(endpoint).map_err(ledger)?;
                page.failed = page.failed.saturating_sub(1);
                page.pending += 1;
                // Below the cursor again: a scan must find it.
                page.cursor = page.cursor.min(s);
                page.epoch += 1;
            }
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

    /// Pending and failed deliveries, oldest first (by endpoint, in name order).
    pub fn list(&self, state: Option<ListState>, limit: usize) -> Result<Vec<Listed>, OutboxError> {
        let mut out = Vec::new();
        let mut names: Vec<String> = self.book().pages_mut().map(|(n, _)| n.clone()).collect();
        names.sort();
        if state.is_none_or(|s| s == ListState::Pending) {
            for name in &names {
                let room = limit.saturating_sub(out.len());
                if room == 0 {
                    break;
                }
                for (seq, delivery) in self.pending_after(name, None, room)? {
                    out.push(Listed {
                        endpoint: name.clone(),
                        state: ListState::Pending,
                        delivery,
                        event: self.event(seq)?,
                    });
                }
            }
        }
        if state.is_none_or(|s| s == ListState::Failed) {
            for kv in self.inner.failed.iter() {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = kv?;
                let Some((endpoint, seq)) = split_endpoint_key(&k) else { continue };
                let Ok(delivery) = decode::<DeliveryState>(&v) else { continue };
                out.push(Listed {
                    endpoint: endpoint.into(),
                    state: ListState::Failed,
                    delivery,
                    event: self.event(seq)?,
                });
            }
        }
        Ok(out)
    }

    /// Pending and failed counts of one endpoint, kept in memory (see the outbox's `book`), and the
    /// oldest pending sequence.
    pub fn depth(&self, endpoint: &str) -> Depth {
        let (pending, failed) = self.book().get(endpoint).map_or((0, 0), |p| (p.pending, p.failed));
        let oldest_sequence = match self.pending_after(endpoint, None, 1) {
            Ok(first) => first.first().map(|(s, _)| *s),
            Err(e) => {
                tracing::warn!(endpoint, error = %e, "cannot read the outbox's oldest delivery");
                None
            }
        };
        Depth { pending, failed, oldest_sequence }
    }
}
