//! The outbox: the only durable queue in curbside. Every status event is written here, and
//! flushed to disk, before the driver is told it was recorded; webhook deliveries are driven from
//! here and survive restarts and power cuts.
//!
//! # Constraints
//! - Power can be cut at any instant (the ignition). An acknowledged event must survive it.
//! - Delivery is at least once: a record is removed only after a 2xx, so a crash between the
//!   receiver's 2xx and our bookkeeping means the event is sent again, with the same id.
//! - The store lives on an SD card: writes are batched where durability is not at stake.
//!
//! # On-disk layout (sled 0.34, one database in `state_dir/outbox`)
//! | tree      | key                                   | value                                     |
//! |-----------|---------------------------------------|-------------------------------------------|
//! | `events`  | sequence, u64 big-endian              | [`record`]: version byte + JSON [`StatusEvent`] |
//! | `idem`    | job id, NUL, Idempotency-Key          | version byte + JSON [`StatusEvent`] (the first one; kept 7 days, after its delivery too) |
//! | `pending` | endpoint, NUL, sequence (BE)          | version byte + JSON [`DeliveryState`]     |
//! | `failed`  | endpoint, NUL, sequence (BE)          | the same, for events parked after their retry budget |
//! | `log`     | log id, u64 BE (monotonic)            | version byte + JSON [`Attempt`] of failed attempts; the newest 10,000 kept |
//! | `meta`    | `disabled/ENDPOINT`, `loss`, `telemetry_dropped` | JSON (the drop count: u64 BE)  |
//! | `telemetry` | ring sequence, u64 BE               | positions waiting for the MQTT broker, see [`ring`] |
//! | `media`   | file SHA-256 (32 bytes), sequence (BE) | empty: the event refers to the file in `state_dir/media/` (see [`crate::media`]) |
//! | `stops`   | `list`                                | JSON [`crate::stops::StopList`]: the day's stops and their version |
//! | `stops`   | `mqtt`                                | SHA-256 of the last `{prefix}/stops` message applied (a retained message comes again on every connect) |
//! | `sessions` | SHA-256 of a session token (32 bytes) | expiry, unix seconds (i64 BE): a paired phone (see [`crate::api::pairing`]) |
//! | `history` | job id, NUL, sequence (BE)            | JSON [`Milestone`]: what the job went through, for formats that send it (kept 7 days, like `idem`) |
//!
//! Big-endian sequences make sled's key order the outbox order, so a range scan over an
//! endpoint's prefix yields its deliveries oldest first, which is what per-job ordering needs.
//! Do not change this layout or a record's meaning without a migration (see [`record`]).
//!
//! # Durability
//! [`Outbox::append`] writes the event, its idempotency key and one `pending` record per matching
//! endpoint in one sled transaction, then waits for an fsync that covers it before returning:
//! only then does the API answer 201. Concurrent appends share fsyncs (group commit in `commit`;
//! sled's own `flush_async` deadlocks when awaited concurrently, sled #1308). Delivery bookkeeping (attempt counts, removals) is not flushed
//! per write; sled flushes it within 500 ms, and losing it only means a retry.
//!
//! # When a record may be removed
//! A `pending` record is removed after its endpoint answered 2xx; an event is removed in the same
//! transaction as its last `pending`/`failed` record. Events are never dropped otherwise, except
//! by an operator. A store that cannot be opened is moved aside (kept for recovery), never
//! deleted; see [`Outbox::open`].

mod commit;
pub mod compact;
mod durable;
mod error;
mod queue;
pub mod record;
pub mod ring;
mod types;
pub mod upkeep;

pub use error::OutboxError;
pub use queue::{Queue, Settle};
pub use ring::{Ring, RingLimits, RingPoint, RingStats};
pub use types::{Appended, Attempt, DeliveryState, Depth, EndpointFilter, ListState, Listed, StoreLoss};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tokio::sync::Notify;

use crate::event::{Milestone, StatusEvent};
use crate::stops::StopList;
use record::{decode, encode, endpoint_key, endpoint_prefix, seq_key, split_endpoint_key};

/// Days an Idempotency-Key keeps answering with its first event.
const IDEM_KEEP_DAYS: i64 = 7;
/// Newest delivery-log entries kept.
const LOG_KEEP: u64 = 10_000;
/// sled page cache: small on a gateway (sled's default is 1 GB).
const CACHE_BYTES: u64 = 2 * 1024 * 1024;
/// The store's disk budget when none is configured (`outbox_max_mb`).
pub const DEFAULT_BUDGET: u64 = 1024 << 20;

/// Handle to the outbox; clones share one store.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    events: sled::Tree,
    idem: sled::Tree,
    pending: sled::Tree,
    failed: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
    telemetry: sled::Tree,
    media: sled::Tree,
    history: sled::Tree,
    stops: sled::Tree,
    sessions: sled::Tree,
    /// The stop list as last read or written (taps and the geofence read it often).
    stops_cache: std::sync::Mutex<Option<Arc<StopList>>>,
    /// Notified when events leave the store (their files may be released).
    released: Arc<Notify>,
    /// The telemetry ring's ends and counters (see [`ring`]).
    ring: std::sync::Mutex<ring::RingState>,
    endpoints: Vec<EndpointFilter>,
    wake: Vec<Arc<Notify>>,
    log_len: AtomicU64,
    loss: Option<StoreLoss>,
    broken: tokio::sync::watch::Sender<Option<String>>,
    /// sled's flush plus the syncs it leaves out: every durable write goes through it.
    durable: Arc<durable::Durable>,
    /// Added to every id sled generates (see [`compact`]).
    id_base: u64,
    /// Bytes the store may take on disk before taps are refused.
    budget: u64,
    /// Bytes it took once opened (and compacted, if it was worth it).
    opened_size: u64,
    /// Events appended since the store was opened (the agent compacts only after a quiet spell).
    appends: AtomicU64,
    /// Deliveries completed and telemetry points sent since the store was opened.
    removals: AtomicU64,
    committer: commit::Committer,
    /// Sequences written but not yet covered by an fsync: not acknowledged, so not delivered
    /// either (a crash could still take them back). The lock is never held across an `.await`.
    unflushed: std::sync::Mutex<HashSet<u64>>,
    /// Disabled endpoints (mirrors `meta`), read on every turn of a delivery loop. The lock is
    /// never held across an `.await`.
    disabled: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

/// The `history` key of job `job`'s event `seq`.
fn history_key(job: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(job.len() + 9);
    k.extend_from_slice(job.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The `media` key of event `seq`'s reference to file `sha`.
fn media_ref(sha: &crate::digest::Sha, seq: u64) -> Vec<u8> {
    let mut k = sha.to_vec();
    k.extend_from_slice(&seq_key(seq));
    k
}

fn open_db(path: &Path) -> sled::Result<sled::Db> {
    sled::Config::new().path(path).cache_capacity(CACHE_BYTES).flush_every_ms(Some(500)).open()
}

/// Rewrites a store that holds far more disk than records (see [`compact`]); returns it open.
/// A compaction that fails leaves the store as it was, and the agent carries on with it.
fn maybe_compact(db: sled::Db, path: &Path, budget: u64) -> Result<sled::Db, OutboxError> {
    // Only when the last run asked for it: deciding means reading every record, which costs a
    // store full of undelivered events tens of megabytes of RSS (measured: 77 MB peak in the
    // drain benchmark against 25 MB without the scan), and a start must not pay that.
    if db.open_tree("meta")?.get(compact::REQUESTED)?.is_none() {
        return Ok(db);
    }
    let on_disk = db.size_on_disk().unwrap_or(0);
    let live = compact::live(&db)?;
    if !compact::worth_it(on_disk, live.bytes, budget) {
        db.open_tree("meta")?.remove(compact::REQUESTED)?;
        db.flush()?;
        return Ok(db);
    }
    let started = std::time::Instant::now();
    match compact::rewrite(db, path, open_db) {
        Ok(c) => tracing::info!(
            before = c.before,
            after = c.after,
            records = live.records,
            ms = started.elapsed().as_millis() as u64,
            "outbox compacted"
        ),
        Err(e) => tracing::warn!(error = %e, "could not compact the outbox; carrying on with it as it is"),
    }
    // The old handle's flusher may hold the lock for a moment after a failed rewrite.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match open_db(path) {
            Err(e) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            other => return Ok(other?),
        }
    }
}

/// Errors that mean the store's files cannot be read as a store: moving it aside and starting
/// fresh is the way on. Others (disk full, permissions) are not the store's fault: moving it
/// aside would hide undelivered events, so they fail the start instead (systemd retries).
fn is_unreadable(e: &sled::Error) -> bool {
    match e {
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) | sled::Error::ReportableBug(_) => true,
        sled::Error::Io(io) => matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof),
        _ => false,
    }
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock"))
}

impl Outbox {
    /// Opens (or creates) the outbox under `state_dir`. A store that cannot be opened (corrupt,
    /// unreadable) is moved aside to `outbox.corrupt-TIMESTAMP`, a fresh one is started and the
    /// loss is logged at `error` and shown in status: the agent keeps running. A store held by
    /// another process is an error: nothing is moved.
    pub fn open(state_dir: &Path, endpoints: Vec<EndpointFilter>) -> Result<Outbox, OutboxError> {
        Self::open_with(state_dir, endpoints, DEFAULT_BUDGET)
    }

    /// As [`Outbox::open`], with a disk budget in bytes: beyond it, appends are refused with
    /// [`OutboxError::OverBudget`] and telemetry points are dropped (counted). A store worth
    /// compacting (see [`compact`]) is rewritten first.
    pub fn open_with(state_dir: &Path, endpoints: Vec<EndpointFilter>, budget: u64) -> Result<Outbox, OutboxError> {
        std::fs::create_dir_all(state_dir).map_err(|source| OutboxError::Dir { path: state_dir.into(), source })?;
        let path = state_dir.join("outbox");
        compact::recover(&path).map_err(|source| OutboxError::Dir { path: path.clone(), source })?;
        let (db, loss) = match open_db(&path) {
            Ok(db) => (maybe_compact(db, &path, budget)?, None),
            Err(e) if is_lock_error(&e) => return Err(OutboxError::Locked(path)),
            Err(e) if !is_unreadable(&e) => return Err(e.into()),
            Err(e) => {
                let at = Utc::now();
                let moved_to = state_dir.join(format!("outbox.corrupt-{}", at.format("%Y%m%dT%H%M%SZ")));
                std::fs::rename(&path, &moved_to).map_err(|source| OutboxError::Dir { path: path.clone(), source })?;
                tracing::error!(
                    error = %e, moved_to = %moved_to.display(),
                    "OUTBOX COULD NOT BE OPENED: moved aside for recovery and started empty; undelivered events in it are not being sent"
                );
                let loss = StoreLoss { moved_to, error: e.to_string(), at };
                (open_db(&path)?, Some(loss))
            }
        };
        let durable = Arc::new(
            durable::Durable::open(db.clone(), &path)
                .map_err(|source| OutboxError::Dir { path: path.clone(), source })?,
        );
        let tree = |name: &str| db.open_tree(name);
        let meta = tree("meta")?;
        let loss = match loss {
            Some(l) => {
                meta.insert("loss", serde_json::to_vec(&l).unwrap_or_default())?;
                durable.sync()?;
                Some(l)
            }
            None => meta.get("loss")?.and_then(|v| serde_json::from_slice(&v).ok()),
        };
        let id_base = compact::id_base(&meta)?;
        let log = tree("log")?;
        let mut disabled = std::collections::HashMap::new();
        for kv in meta.scan_prefix("disabled/") {
            let (k, v) = kv?;
            let name = String::from_utf8_lossy(&k["disabled/".len()..]).into_owned();
            disabled.insert(name, String::from_utf8_lossy(&v).into_owned());
        }
        let telemetry = tree("telemetry")?;
        let ring = ring::RingState::load(&telemetry, &meta)?;
        let inner = Inner {
            telemetry,
            ring,
            unflushed: std::sync::Mutex::new(HashSet::new()),
            disabled: std::sync::Mutex::new(disabled),
            path,
            events: tree("events")?,
            idem: tree("idem")?,
            media: tree("media")?,
            history: tree("history")?,
            stops: tree("stops")?,
            sessions: tree("sessions")?,
            stops_cache: std::sync::Mutex::new(None),
            released: Arc::new(Notify::new()),
            pending: tree("pending")?,
            failed: tree("failed")?,
            log_len: AtomicU64::new(log.len() as u64),
            log,
            meta,
            wake: endpoints.iter().map(|_| Arc::new(Notify::new())).collect(),
            endpoints,
            loss,
            broken: tokio::sync::watch::Sender::new(None),
            durable: durable.clone(),
            id_base,
            budget,
            opened_size: db.size_on_disk().unwrap_or(0),
            appends: AtomicU64::new(0),
            removals: AtomicU64::new(0),
            committer: commit::Committer::start(durable.clone())
                .map_err(|source| OutboxError::Dir { path: state_dir.into(), source })?,
            db,
        };
        Ok(Outbox { inner: Arc::new(inner) })
    }

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

    /// Waits for an fsync covering everything written so far. On failure the store is marked
    /// broken: sled 0.34 refuses every operation after an I/O error, so the agent restarts on a
    /// fresh handle (see [`Outbox::broken`]).
    async fn commit_or_break(&self) -> Result<(), OutboxError> {
        self.inner.committer.commit().await.map_err(|e| {
            self.mark_broken(&e);
            e.into()
        })
    }

    fn mark_broken(&self, e: &sled::Error) {
        tracing::error!(error = %e, "the outbox cannot write: refusing taps; the agent restarts to recover");
        self.inner.broken.send_replace(Some(e.to_string()));
    }

    /// Resolves when a write has failed: sled 0.34 then refuses every later operation on this
    /// handle, so the agent must stop and be restarted (systemd does) to recover from disk.
    /// Returns the error.
    pub async fn broken(&self) -> String {
        let mut rx = self.inner.broken.subscribe();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                return "outbox closed".into();
            }
        }
    }

    /// The store lost at start-up, if any (shown in status until the state dir is cleaned).
    pub fn loss(&self) -> Option<&StoreLoss> {
        self.inner.loss.as_ref()
    }

    /// The configured endpoints.
    pub fn endpoints(&self) -> &[EndpointFilter] {
        &self.inner.endpoints
    }

    /// Wakes when new deliveries for `endpoint` appear; `None` for a name that is not one of
    /// this store's endpoints.
    pub fn waker(&self, endpoint: &str) -> Option<Arc<Notify>> {
        let i = self.inner.endpoints.iter().position(|e| e.name == endpoint)?;
        Some(self.inner.wake[i].clone())
    }

    fn wake(&self, endpoint: &str) {
        if let Some(w) = self.waker(endpoint) {
            w.notify_one();
        }
    }

    /// Stores a new event durably. `make` receives the sequence and builds the event; calls to it
    /// are serialised in sequence order (it must be quick: no I/O). With an idempotency key already used for this job, nothing is stored and the first event is
    /// returned. Returns only after the event is flushed to disk.
    pub async fn append(
        &self,
        job_id: &str,
        idempotency_key: Option<&str>,
        make: impl FnOnce(u64) -> StatusEvent,
    ) -> Result<Appended, OutboxError> {
        let i = &self.inner;
        let idem_key = idempotency_key.map(|k| {
            let mut key = job_id.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(k.as_bytes());
            key
        });
        if let Some(k) = &idem_key {
            if let Some(existing) = self.by_idem(k)? {
                // The first request may still be waiting for its fsync (or may be about to lose
                // it to a crash): answer the retry only once what it saw is on disk.
                self.commit_or_break().await?;
                return Ok(Appended { event: existing, created: false });
            }
        }
        let used = i.durable.size();
        if used > i.budget {
            return Err(OutboxError::OverBudget { used, budget: i.budget });
        }
        i.appends.fetch_add(1, Ordering::Relaxed);
        let (seq, event) = {
            let mut unflushed = i.unflushed.lock().unwrap_or_else(|e| e.into_inner());
            let seq = self.next_id()?;
            // Marked before it is written, so that no delivery loop can see it before its fsync.
            unflushed.insert(seq);
            // Made under the lock that hands out sequences, so that what `make` stamps (the
            // event's `occurred_at`) follows sequence order.
            (seq, make(seq))
        };
        let bytes = encode(&event);
        let targets: Vec<&EndpointFilter> = i.endpoints.iter().filter(|e| e.wants(&event)).collect();
        let state = encode(&DeliveryState::new(&event.job_id));
        let refs: Vec<Vec<u8>> = event
            .attachments
            .iter()
            .filter_map(|a| crate::digest::parse_hex(&a.sha256))
            .map(|sha| media_ref(&sha, seq))
            .collect();
        let step = serde_json::to_vec(&Milestone::of(&event)).unwrap_or_default();
        let step_key = history_key(&event.job_id, seq);
        let outcome = (&i.events, &i.idem, &i.pending, &i.media, &i.history).transaction(
            |(events, idem, pending, media, history)| {
                if let Some(k) = &idem_key {
                    if let Some(first) = idem.get(k)? {
                        return Ok(Some(first));
                    }
                    // The event itself, not its sequence: a retry must get it back even after it
                    // was delivered and removed from `events`.
                    idem.insert(k.as_slice(), bytes.as_slice())?;
                }
                events.insert(&seq_key(seq), bytes.as_slice())?;
                for r in &refs {
                    media.insert(r.as_slice(), &[])?;
                }
                history.insert(step_key.as_slice(), step.as_slice())?;
                for t in &targets {
                    pending.insert(endpoint_key(&t.name, seq), state.as_slice())?;
                }
                Ok::<_, ConflictableTransactionError<OutboxError>>(None)
            },
        );
        if let Err(TransactionError::Storage(e)) = &outcome {
            self.mark_broken(e);
        }
        match outcome.map_err(OutboxError::from)? {
            Some(first) => {
                // A concurrent tap with the same key won the race; as above, answer only once
                // its event is on disk.
                let event = decode(&first).map_err(|e| OutboxError::Storage(format!("idempotency record: {e}")))?;
                self.commit_or_break().await?;
                Ok(Appended { event, created: false })
            }
            None => {
                // Not on disk, so not acknowledged on failure (and it stays unflushed: never
                // delivered by this process, whose store is now broken).
                self.commit_or_break().await?;
                if let Ok(mut u) = i.unflushed.lock() {
                    u.remove(&seq);
                }
                if targets.is_empty() {
                    // Acknowledged, and no endpoint wants it: nothing to keep but its
                    // idempotency record.
                    i.events.remove(seq_key(seq))?;
                    i.released.notify_one();
                }
                for t in &targets {
                    self.wake(&t.name);
                }
                Ok(Appended { event, created: true })
            }
        }
    }

    fn by_idem(&self, key: &[u8]) -> Result<Option<StatusEvent>, OutboxError> {
        match self.inner.idem.get(key)? {
            Some(v) => Ok(Some(decode(&v).map_err(|e| OutboxError::Storage(format!("idempotency record: {e}")))?)),
            None => Ok(None),
        }
    }

    /// The event with this sequence, if stored and readable. An unreadable record is logged
    /// and reported as absent: it cannot be delivered, but it does not stop the others.
    pub fn event(&self, seq: u64) -> Result<Option<StatusEvent>, OutboxError> {
        match self.inner.events.get(seq_key(seq))? {
            None => Ok(None),
            Some(v) => match decode(&v) {
                Ok(e) => Ok(Some(e)),
                Err(err) => {
                    tracing::error!(sequence = seq, error = %err, "unreadable event record");
                    Ok(None)
                }
            },
        }
    }

    /// The event with this id (linear scan; for operators).
    pub fn find(&self, id: uuid::Uuid) -> Result<Option<StatusEvent>, OutboxError> {
        for kv in self.inner.events.iter() {
            let (_, v) = kv?;
            if let Ok(e) = decode::<StatusEvent>(&v) {
                if e.id == id {
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    }

    /// True once the event's write is covered by an fsync (always, for events from disk).
    pub fn is_flushed(&self, seq: u64) -> bool {
        self.inner.unflushed.lock().map(|u| !u.contains(&seq)).unwrap_or(false)
    }

    /// Whether `endpoint` still has to deliver event `seq` (pending or parked).
    pub fn awaits(&self, endpoint: &str, seq: u64) -> bool {
        let k = endpoint_key(endpoint, seq);
        matches!(self.inner.pending.contains_key(&k), Ok(true))
            || matches!(self.inner.failed.contains_key(&k), Ok(true))
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
        self.inner.pending.insert(endpoint_key(endpoint, seq), encode(state))?;
        Ok(())
    }

    /// Records a 2xx: the delivery is removed, and the event with it if no other endpoint still
    /// needs it.
    pub fn delivered(&self, endpoint: &str, seq: u64) -> Result<(), OutboxError> {
        let i = &self.inner;
        i.removals.fetch_add(1, Ordering::Relaxed);
        let others: Vec<Vec<u8>> =
            i.endpoints.iter().filter(|e| e.name != endpoint).map(|e| endpoint_key(&e.name, seq)).collect();
        if others.is_empty() {
            // One endpoint: nobody else can need the event. The event goes first: a crash in
            // between leaves a delivery without its event, which the delivery loop drops as
            // delivered (it was), rather than an orphan event nothing would ever remove.
            i.events.remove(seq_key(seq))?;
            i.pending.remove(endpoint_key(endpoint, seq))?;
            i.released.notify_one();
            return Ok(());
        }
        (&i.pending, &i.failed, &i.events).transaction(|(pending, failed, events)| {
            pending.remove(endpoint_key(endpoint, seq))?;
            let mut needed = false;
            for k in &others {
                if pending.get(k)?.is_some() || failed.get(k)?.is_some() {
                    needed = true;
                    break;
                }
            }
            if !needed {
                events.remove(&seq_key(seq))?;
            }
            Ok::<_, ConflictableTransactionError<OutboxError>>(())
        })?;
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

    /// Keeps a paired phone's session (its token's digest) until `expires` (unix seconds); on
    /// disk when this returns. Expired sessions are dropped on the way.
    pub async fn add_session(&self, digest: [u8; 32], expires: i64) -> Result<(), OutboxError> {
        let now = chrono::Utc::now().timestamp();
        for kv in self.inner.sessions.iter() {
            let (k, v) = kv?;
            if <[u8; 8]>::try_from(v.as_ref()).map(i64::from_be_bytes).is_ok_and(|e| e <= now) {
                self.inner.sessions.remove(k)?;
            }
        }
        self.inner.sessions.insert(digest, &expires.to_be_bytes())?;
        self.commit_or_break().await
    }

    /// When the session with token digest `digest` expires (unix seconds), if it is known.
    pub fn session_expires(&self, digest: &[u8; 32]) -> Option<i64> {
        let v = self.inner.sessions.get(digest).ok()??;
        <[u8; 8]>::try_from(v.as_ref()).ok().map(i64::from_be_bytes)
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

    /// Drops every delivery to `endpoint` (and events nothing else needs), returning how many:
    /// for the MQTT event mirror once `[mqtt]` is removed from the config. Webhook endpoints
    /// are never forgotten this way: their events wait for an operator.
    pub fn forget_endpoint(&self, endpoint: &str) -> Result<usize, OutboxError> {
        let prefix = endpoint_prefix(endpoint);
        let mut n = 0;
        for tree in [&self.inner.pending, &self.inner.failed] {
            let keys: Vec<sled::IVec> = tree.scan_prefix(&prefix).keys().collect::<Result<_, _>>()?;
            for k in keys {
                let Some((_, seq)) = split_endpoint_key(&k) else { continue };
                tree.remove(&k)?;
                self.delivered(endpoint, seq)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Parks a delivery as failed after its retry budget; an operator's retry releases it.
    pub fn park(&self, endpoint: &str, seq: u64, state: &DeliveryState) -> Result<(), OutboxError> {
        let key = endpoint_key(endpoint, seq);
        let value = encode(state);
        (&self.inner.pending, &self.inner.failed).transaction(|(pending, failed)| {
            pending.remove(key.as_slice())?;
            failed.insert(key.as_slice(), value.as_slice())?;
            Ok::<_, ConflictableTransactionError<OutboxError>>(())
        })?;
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
            let value = encode(&state);
            (&self.inner.pending, &self.inner.failed).transaction(|(pending, failed)| {
                failed.remove(k.as_ref())?;
                pending.insert(k.as_ref(), value.as_slice())?;
                Ok::<_, ConflictableTransactionError<OutboxError>>(())
            })?;
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
        self.inner
            .log
            .iter()
            .rev()
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

    /// Pending and failed counts of one endpoint.
    pub fn depth(&self, endpoint: &str) -> Depth {
        let prefix = endpoint_prefix(endpoint);
        let mut d = Depth::default();
        for kv in self.inner.pending.scan_prefix(&prefix).keys().flatten() {
            if d.oldest_sequence.is_none() {
                d.oldest_sequence = split_endpoint_key(&kv).map(|(_, s)| s);
            }
            d.pending += 1;
        }
        d.failed = self.inner.failed.scan_prefix(&prefix).count() as u64;
        d
    }

    /// Events stored.
    pub fn len(&self) -> usize {
        self.inner.events.len()
    }

    /// True when no event is stored.
    pub fn is_empty(&self) -> bool {
        self.inner.events.is_empty()
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }

    /// The disk budget, bytes.
    pub fn budget(&self) -> u64 {
        self.inner.budget
    }

    /// True when the store has reached its disk budget (as of the last sync).
    pub fn over_budget(&self) -> bool {
        self.inner.durable.size() > self.inner.budget
    }

    /// Events appended since the store was opened.
    pub fn appends(&self) -> u64 {
        self.inner.appends.load(Ordering::Relaxed)
    }

    /// Deliveries completed and telemetry points sent since the store was opened.
    pub fn removals(&self) -> u64 {
        self.inner.removals.load(Ordering::Relaxed)
    }

    /// True when reopening the store would compact it (see [`compact`]) and it has grown by a
    /// quarter since it was opened (so that a store that reopening cannot shrink is never
    /// reopened again and again). Reads every record when the store is big enough to be worth
    /// it: call it from a blocking thread.
    pub fn compaction_due(&self) -> Result<(bool, compact::Live), OutboxError> {
        let on_disk = self.size_on_disk();
        let opened = self.inner.opened_size;
        if on_disk < compact::MIN_BYTES.min(self.inner.budget / 2) || on_disk < opened + opened / 4 {
            return Ok((false, compact::Live::default()));
        }
        let live = compact::live(&self.inner.db)?;
        Ok((compact::worth_it(on_disk, live.bytes, self.inner.budget), live))
    }

    /// Makes the next open of this store compact it (see [`compact`]); durable, so that a power
    /// cut before the restart does not lose the request.
    pub fn request_compaction(&self) -> Result<(), OutboxError> {
        self.inner.meta.insert(compact::REQUESTED, b"1".as_slice())?;
        self.inner.durable.sync()?;
        Ok(())
    }

    fn next_id(&self) -> Result<u64, OutboxError> {
        Ok(self.inner.id_base + self.inner.db.generate_id()?)
    }

    /// How long the commit thread has not been seen alive (for the watchdog): at most about a
    /// quarter of a second while idle; a stuck fsync makes it grow.
    pub fn commit_thread_silence(&self) -> std::time::Duration {
        self.inner.committer.idle_for()
    }

    /// Flushes everything to disk (on shutdown).
    pub async fn flush(&self) -> Result<(), OutboxError> {
        self.inner.committer.commit().await?;
        Ok(())
    }
}
