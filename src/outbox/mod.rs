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
//! # On disk
//! The events are in `state_dir/queue`: `events/`, the [`spool`] (append-only segment files,
//! each record a `spooled` event with the endpoints it is for and the sled writes of its tap),
//! and `acks/`, one [`acks`] ledger per endpoint (the events it has taken). A delivery is an
//! (event, endpoint) pair: pending until acknowledged, parked while `failed` holds it. The rest is
//! sled 0.34, one database in `state_dir/outbox`:
//!
//! | tree      | key                                   | value                                     |
//! |-----------|---------------------------------------|-------------------------------------------|
//! | `idem`    | job id, NUL, Idempotency-Key          | [`record`] of the [`StatusEvent`] (the first one; kept 7 days, after its delivery too) |
//! | `pending` | endpoint, NUL, sequence (BE)          | [`record`] of the [`DeliveryState`] of a delivery attempted and not yet made (one never attempted has none) |
//! | `failed`  | endpoint, NUL, sequence (BE)          | the same, for deliveries parked after their retry budget |
//! | `log`     | log id, u64 BE (monotonic)            | [`record`] of an [`Attempt`] that failed; the newest 10,000 kept |
//! | `meta`    | `disabled/ENDPOINT`, `loss`, `telemetry_dropped`, `applied`, `issued`, `id_base` | JSON (the drop count and sequences: u64 BE) |
//! | `telemetry` | ring sequence, u64 BE               | positions waiting for the MQTT broker, see [`ring`] |
//! | `media`   | file SHA-256 (32 bytes), sequence (BE) | empty: the event refers to the file in `state_dir/media/`; a [`PartTree`] that [`crate::media::refs`] owns, written with the event |
//! | `stops`   | `list`, `mqtt`                        | JSON [`crate::stops::StopList`], the last MQTT list's digest: a [`PartTree`] that `stops::store` owns |
//! | `sessions` | SHA-256 of a session token (32 bytes) | expiry, unix seconds (i64 BE): a paired phone; a [`PartTree`] that [`crate::api::pairing`] owns |
//! | `odometer` | `total_m`                            | f64 BE: metres driven; a [`PartTree`] that [`crate::odometer`] owns |
//! | `route`   | `day`                                 | JSON [`crate::route::Day`]: the day's route; a [`PartTree`] that [`crate::route`] owns, written with each route event |
//! | `history` | day (u32 BE), sequence (BE)           | job id, then the [`record`] of its [`crate::event::Milestone`]: what the job went through (kept 7 days, like `idem`); a [`PartTree`] that [`crate::history`] owns, written with the event |
//!
//! Stores written before issue 29's spool kept the events in sled (`events`: sequence → event
//! record, and a `pending` record for every delivery); opening one moves them into the spool
//! (`upgrade`). Sizes (issue 29, 100,000 queued events over 5,000 jobs): a spool record is about
//! 180 bytes (the event's [`binary`] record, its endpoints, its job's step for `history`), and
//! the whole store about 380 bytes per queued event. `Outbox::footprint` breaks a store down;
//! `tools/store/check` holds the bytes per event and the drain's RSS to a budget in CI. Status
//! never counts records in the store: the counts are in memory (`book`), taken by the scan of
//! the spool that opening does anyway.
//!
//! # Durability
//! [`Outbox::append`] appends the event's record to the spool, with everything its tap writes in
//! sled (its idempotency key, what parts keep with it: [`Outbox::append_with`]), then waits for
//! the spool's sync that covers it and for those sled writes, applied after it (`journal`):
//! only then does the API answer 201. One device flush per group of concurrent taps (group
//! commit in `commit`); sled flushes what was applied within 500 ms, and a crash before that is
//! undone by applying the spool's records again when the store opens. Delivery bookkeeping
//! (acknowledgements, attempt counts) is not flushed per write: losing it only means a
//! redelivery.
//!
//! # When a record may be removed
//! A delivery is done when its endpoint answered 2xx (or the endpoint was forgotten by an
//! operator's config change, for the MQTT mirror and uploads); the spool drops a segment once
//! every delivery of every event in it is done, with one unlink. Events are never dropped
//! otherwise. A sled store that cannot be opened is moved aside (kept for recovery), never
//! deleted, and the spool's events are still delivered; see [`Outbox::open`].

pub mod acks;
pub mod backward;
pub mod binary;
mod book;
mod commit;
pub mod compact;
mod deliveries;
mod durable;
mod error;
mod idem;
mod issued;
mod journal;
mod part;
mod queue;
pub mod record;
pub mod ring;
pub mod spool;
mod spooled;
mod types;
mod upgrade;
pub mod upkeep;

pub use error::OutboxError;
pub use part::{Alongside, PartTree};
pub use queue::{Queue, Settle};
pub use ring::{Ring, RingLimits, RingPoint, RingStats};
pub use types::{Appended, Attempt, DeliveryState, Depth, EndpointFilter, ListState, Listed, StoreLoss};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::Utc;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use tokio::sync::Notify;

use crate::event::StatusEvent;
use record::{decode, encode, endpoint_key, endpoint_prefix, seq_key, split_endpoint_key};

/// Days an Idempotency-Key keeps answering with its first event (and a job's history is kept,
/// see [`crate::history`]).
pub const IDEM_KEEP_DAYS: i64 = 7;
/// Newest delivery-log entries kept.
const LOG_KEEP: u64 = 10_000;
/// sled page cache: small on a gateway (sled's default is 1 GB).
const CACHE_BYTES: u64 = 2 * 1024 * 1024;
/// The store's disk budget when none is configured (`outbox_max_mb`).
pub const DEFAULT_BUDGET: u64 = 1024 << 20;

/// A spool record's endpoints and its event's bytes.
pub(super) type Stored = (Vec<String>, Vec<u8>);

/// Handle to the outbox; clones share one store.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

/// An event read for its delivery ([`Outbox::outgoing`]).
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The event.
    pub event: StatusEvent,
    /// The endpoints it is queued for.
    targets: Vec<String>,
}

/// An event's record as a scan of pending deliveries read it ([`Outbox::pending_records`]), so
/// that its delivery does not read it again ([`Outbox::outgoing_in`]).
#[derive(Debug)]
pub struct Record(Vec<u8>);

struct Inner {
    path: PathBuf,
    db: sled::Db,
    idem: sled::Tree,
    pending: sled::Tree,
    failed: sled::Tree,
    /// Whether `pending` (the states of attempted deliveries) and `failed` (the parked ones)
    /// may hold anything: false while they have been empty since the store was opened, so that
    /// a healthy drain asks sled nothing per delivery. Set before every insert into the tree,
    /// never cleared while the store is open (see [`Outbox::states`]).
    any_states: AtomicBool,
    any_parked: AtomicBool,
    log: sled::Tree,
    meta: sled::Tree,
    telemetry: sled::Tree,
    /// What parts decoded from their trees ([`PartTree::memo`]), by tree name.
    part_memos: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Arc<dyn std::any::Any + Send + Sync>>>,
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
    /// No sequence at or above this was ever handed out (see [`Outbox::issued`]).
    issued_below: AtomicU64,
    /// What `meta`'s `issued` says: every removed event's sequence is below it.
    issued_noted: AtomicU64,
    /// Bytes the store may take on disk before taps are refused.
    budget: u64,
    /// Bytes it took once opened (and compacted, if it was worth it).
    opened_size: u64,
    /// Events appended since the store was opened (the agent compacts only after a quiet spell).
    appends: AtomicU64,
    /// Deliveries completed, telemetry points sent and idempotency keys forgotten since the
    /// store was opened.
    removals: AtomicU64,
    committer: commit::Committer,
    /// The spool of events and what waits to be applied to sled (see [`journal`]). Taken before
    /// `book` by whoever takes both.
    journal: Arc<std::sync::RwLock<journal::State>>,
    /// Deliveries: acknowledgements, counts, segments outstanding (see [`book`]).
    book: std::sync::Mutex<book::Book>,
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

/// The commit thread's work (see [`journal`]): syncs the spool for every record appended so
/// far, then applies their sled writes.
fn commit_journal(
    journal: &std::sync::RwLock<journal::State>,
    applier: &mut journal::Applier,
) -> Result<(), sled::Error> {
    let poisoned = || sled::Error::ReportableBug("outbox journal lock poisoned".into());
    let (batch, syncer) = {
        let mut st = journal.write().map_err(|_| poisoned())?;
        let batch = std::mem::take(&mut st.queued);
        (batch, st.spool.syncer()?)
    };
    if let Some(s) = syncer {
        s.sync()?;
    }
    applier.apply(&batch)?;
    let mut st = journal.write().map_err(|_| poisoned())?;
    for q in &batch {
        if let Some(k) = &q.idem {
            st.held.remove(k);
        }
    }
    Ok(())
}

impl Outbox {
    /// Opens (or creates) the outbox under `state_dir`. A sled store that cannot be opened
    /// (corrupt, unreadable) is moved aside to `outbox.corrupt-TIMESTAMP`, a fresh one is started
    /// (the spool's events are still queued, their idempotency keys applied again) and the loss
    /// is logged at `error` and shown in status: the agent keeps running. A store held by
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
        let mut id_base = compact::id_base(&meta)?;
        // The spool of events and the ledgers of their deliveries (see `journal` and `book`).
        let queue = state_dir.join("queue");
        let dir_err = |source| OutboxError::Dir { path: queue.clone(), source };
        let (mut spool, recovery) = spool::Spool::open(&queue.join("events")).map_err(dir_err)?;
        if recovery.torn_bytes > 0 || recovery.damaged_bytes > 0 {
            tracing::warn!(
                torn_bytes = recovery.torn_bytes,
                damaged_bytes = recovery.damaged_bytes,
                "outbox: the event spool had a torn or damaged end; whole records kept"
            );
        }
        let (pending, failed) = (tree("pending")?, tree("failed")?);
        let mut applier = journal::Applier::new(&db)?;
        upgrade::events_into_spool(&db, &mut spool, &applier)?;
        let replayed = journal::replay(&spool, &mut applier)?;
        if replayed > 0 {
            tracing::info!(records = replayed, "outbox: applied again what the last run had not flushed");
        }
        let mut book =
            book::Book::open(&queue.join("acks"), endpoints.iter().map(|e| e.name.as_str())).map_err(dir_err)?;
        upgrade::tally(&spool, &mut book, &pending, &failed)?;
        if let Some(bound) = book.removable_below() {
            spool.remove_through(bound - 1).map_err(dir_err)?;
        }
        // Sequences rise above the spool's, whatever sled's generator says (a store moved aside
        // as unreadable starts it again at 0, with the spool's events still queued).
        if let Some(last) = spool.last() {
            if id_base.saturating_add(db.generate_id()?) <= last {
                id_base = last + 1;
                meta.insert(compact::ID_BASE, &id_base.to_be_bytes())?;
            }
        }
        // Every sequence handed out before is still in the spool, or was removed after `meta`'s
        // `issued` covered it (see `Outbox::issued`).
        let noted = meta.get("issued")?.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok()).map_or(0, u64::from_be_bytes);
        let issued_below = noted.max(spool.last().map_or(0, |s| s + 1));
        let (issued_below, noted) = (AtomicU64::new(issued_below), AtomicU64::new(noted));
        let log = tree("log")?;
        let mut disabled = std::collections::HashMap::new();
        for kv in meta.scan_prefix("disabled/") {
            let (k, v) = kv?;
            let name = String::from_utf8_lossy(&k["disabled/".len()..]).into_owned();
            disabled.insert(name, String::from_utf8_lossy(&v).into_owned());
        }
        let telemetry = tree("telemetry")?;
        let ring = ring::RingState::load(&telemetry, &meta)?;
        durable.sync()?;
        let journal = Arc::new(std::sync::RwLock::new(journal::State {
            spool,
            queued: Vec::new(),
            held: std::collections::HashMap::new(),
        }));
        let committer = {
            let journal = journal.clone();
            commit::Committer::start(move || commit_journal(&journal, &mut applier))
                .map_err(|source| OutboxError::Dir { path: state_dir.into(), source })?
        };
        let inner = Inner {
            telemetry,
            ring,
            unflushed: std::sync::Mutex::new(HashSet::new()),
            disabled: std::sync::Mutex::new(disabled),
            path,
            idem: tree("idem")?,
            part_memos: std::sync::Mutex::default(),
            released: Arc::new(Notify::new()),
            any_states: AtomicBool::new(!pending.is_empty()),
            any_parked: AtomicBool::new(!failed.is_empty()),
            pending,
            failed,
            log_len: AtomicU64::new(log.len() as u64),
            log,
            meta,
            wake: endpoints.iter().map(|_| Arc::new(Notify::new())).collect(),
            endpoints,
            loss,
            broken: tokio::sync::watch::Sender::new(None),
            durable: durable.clone(),
            id_base,
            issued_below,
            issued_noted: noted,
            budget,
            opened_size: db.size_on_disk().unwrap_or(0),
            appends: AtomicU64::new(0),
            removals: AtomicU64::new(0),
            committer,
            journal,
            book: std::sync::Mutex::new(book),
            db,
        };
        Ok(Outbox { inner: Arc::new(inner) })
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
    /// are serialised in sequence order (it must be quick: no I/O). With an idempotency key
    /// already used for this job, nothing is stored and the first event is returned. Returns
    /// only after the event is flushed to disk.
    pub async fn append(
        &self,
        job_id: &str,
        idempotency_key: Option<&str>,
        make: impl FnOnce(u64) -> StatusEvent,
    ) -> Result<Appended, OutboxError> {
        self.append_with(job_id, idempotency_key, make, |_, _| Vec::new()).await
    }

    /// As [`Outbox::append`], with what parts write in their own trees for the new event
    /// (`alongside` gets the event and its sequence): in the event's transaction, so on disk
    /// together with it or not at all. Nothing is written for a repeated idempotency key.
    pub async fn append_with(
        &self,
        job_id: &str,
        idempotency_key: Option<&str>,
        make: impl FnOnce(u64) -> StatusEvent,
        alongside: impl FnOnce(&StatusEvent, u64) -> Vec<Alongside>,
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
        let used = self.used();
        if used > i.budget {
            return Err(OutboxError::OverBudget { used, budget: i.budget });
        }
        i.appends.fetch_add(1, Ordering::Relaxed);
        // A block, so that the locks are gone before the first `.await`: `Err` is the first
        // event of a repeated key.
        let made: Result<(StatusEvent, Vec<String>), StatusEvent> = 'made: {
            let mut st = i.journal.write().map_err(|_| OutboxError::Storage("outbox journal lock poisoned".into()))?;
            if let Some(k) = &idem_key {
                // Asked again under the lock: a tap with the same key may have got in between.
                let first = match st.held.get(k) {
                    Some(e) => Some(e.clone()),
                    None => self.by_idem_stored(k)?,
                };
                if let Some(event) = first {
                    break 'made Err(event);
                }
            }
            let mut unflushed = i.unflushed.lock().unwrap_or_else(|e| e.into_inner());
            let seq = self.next_id()?;
            // Marked before it is written, so that no delivery loop can see it before its fsync.
            unflushed.insert(seq);
            // Made under the lock that hands out sequences, so that what `make` stamps (the
            // event's `occurred_at`) follows sequence order.
            let event = make(seq);
            let bytes = encode(&event);
            let targets: Vec<&str> = i.endpoints.iter().filter(|e| e.wants(&event)).map(|e| e.name.as_str()).collect();
            let writes: Vec<spooled::Write> = alongside(&event, seq)
                .into_iter()
                .map(|a| spooled::Write { tree: a.tree.name().to_vec(), key: a.key, value: a.value })
                .collect();
            let payload = spooled::encode(&targets, &event.job_id, idem_key.as_deref(), &writes, &bytes)
                .map_err(|e| OutboxError::Storage(e.to_string()))?;
            if let Err(e) = st.spool.append(seq, &payload) {
                unflushed.remove(&seq);
                return Err(match e.kind() {
                    std::io::ErrorKind::InvalidInput => OutboxError::Storage(e.to_string()),
                    _ => {
                        let e = sled::Error::Io(e);
                        self.mark_broken(&e);
                        e.into()
                    }
                });
            }
            drop(unflushed);
            {
                let mut book = i.book.lock().unwrap_or_else(|e| e.into_inner());
                for t in &targets {
                    book.page(t).map_err(|e| OutboxError::Storage(format!("delivery ledger: {e}")))?.pending += 1;
                }
                if let Some(segment) = st.spool.segment_of(seq) {
                    book.outstanding(segment, targets.len() as u64);
                }
                if !targets.is_empty() {
                    book.events += 1;
                }
            }
            if let Some(k) = &idem_key {
                st.held.insert(k.clone(), event.clone());
            }
            st.queued.push(journal::Queued { seq, idem: idem_key, event: bytes, writes });
            let targets: Vec<String> = targets.into_iter().map(String::from).collect();
            Ok((event, targets))
        };
        let (event, targets) = match made {
            Ok(made) => made,
            Err(first) => {
                self.commit_or_break().await?;
                return Ok(Appended { event: first, created: false });
            }
        };
        // Not on disk, so not acknowledged on failure (and it stays unflushed: never delivered
        // by this process, whose store is now broken).
        self.commit_or_break().await?;
        if let Ok(mut u) = i.unflushed.lock() {
            u.remove(&event.sequence);
        }
        if targets.is_empty() {
            // Acknowledged, and no endpoint wants it: nothing to keep but its idempotency record
            // (its segment goes once the others in it are delivered).
            self.before_removing(event.sequence)?;
            i.released.notify_one();
        }
        for t in &targets {
            self.wake(t);
        }
        Ok(Appended { event, created: true })
    }

    /// Bytes the store takes: sled's files (as of the last sync) and the spool's.
    fn used(&self) -> u64 {
        let spool = self.inner.journal.read().map(|st| st.spool.size()).unwrap_or(0);
        self.inner.durable.size() + spool
    }

    /// Whether event `seq` is still stored (some endpoint has yet to take it).
    pub fn holds(&self, seq: u64) -> Result<bool, OutboxError> {
        Ok(self.record(seq)?.is_some_and(|(targets, _)| self.outstanding(&targets, seq)))
    }

    /// Notified when events leave the store (what parts keep for them may go: see
    /// [`crate::media::refs`]).
    pub fn released(&self) -> Arc<Notify> {
        self.inner.released.clone()
    }

    /// The spool's record `seq`: its endpoints and its event's bytes. An unreadable record is
    /// logged and reported as absent.
    pub(super) fn record(&self, seq: u64) -> Result<Option<Stored>, OutboxError> {
        let bytes = {
            let st =
                self.inner.journal.read().map_err(|_| OutboxError::Storage("outbox journal lock poisoned".into()))?;
            st.spool.get(seq).map_err(|e| OutboxError::Storage(format!("spool: {e}")))?
        };
        let Some(bytes) = bytes else { return Ok(None) };
        match spooled::decode(&bytes) {
            Ok(r) => Ok(Some((r.targets, r.event))),
            Err(err) => {
                tracing::error!(sequence = seq, error = %err, "unreadable event record");
                Ok(None)
            }
        }
    }

    /// Whether any of `targets` has yet to take event `seq`.
    pub(super) fn outstanding(&self, targets: &[String], seq: u64) -> bool {
        let book = self.inner.book.lock().unwrap_or_else(|e| e.into_inner());
        targets.iter().any(|t| !book.acked(t, seq))
    }

    /// The event with this sequence, if stored and readable. An unreadable record is logged
    /// and reported as absent: it cannot be delivered, but it does not stop the others.
    pub fn event(&self, seq: u64) -> Result<Option<StatusEvent>, OutboxError> {
        Ok(self.outgoing(seq)?.map(|o| o.event))
    }

    /// As [`Outbox::event`], with the endpoints the event is queued for, so that settling its
    /// delivery ([`Queue::delivered`]) does not read the record again.
    pub fn outgoing(&self, seq: u64) -> Result<Option<Outgoing>, OutboxError> {
        let bytes = {
            let st =
                self.inner.journal.read().map_err(|_| OutboxError::Storage("outbox journal lock poisoned".into()))?;
            st.spool.get(seq).map_err(|e| OutboxError::Storage(format!("spool: {e}")))?
        };
        let Some(bytes) = bytes else { return Ok(None) };
        self.outgoing_of(seq, &bytes)
    }

    /// As [`Outbox::outgoing`], from the record a scan read ([`Outbox::pending_records`]).
    pub fn outgoing_in(&self, seq: u64, record: Record) -> Result<Option<Outgoing>, OutboxError> {
        self.outgoing_of(seq, &record.0)
    }

    fn outgoing_of(&self, seq: u64, bytes: &[u8]) -> Result<Option<Outgoing>, OutboxError> {
        let read = spooled::event(bytes).map_err(|e| e.to_string()).and_then(|(targets, event)| {
            if !self.outstanding(&targets, seq) {
                return Ok(None);
            }
            Ok(Some(Outgoing { event: decode(event).map_err(|e| e.to_string())?, targets }))
        });
        read.or_else(|err| {
            tracing::error!(sequence = seq, error = %err, "unreadable event record");
            Ok(None)
        })
    }

    /// Calls `each` with every stored event's sequence, endpoints and bytes, oldest first, from
    /// `from`, until it returns false. Reads the spool a chunk at a time, without its lock held
    /// while `each` runs.
    pub(super) fn each_record(
        &self,
        mut from: u64,
        mut each: impl FnMut(u64, Vec<String>, &[u8]) -> Result<bool, OutboxError>,
    ) -> Result<(), OutboxError> {
        loop {
            let chunk = {
                let st = self
                    .inner
                    .journal
                    .read()
                    .map_err(|_| OutboxError::Storage("outbox journal lock poisoned".into()))?;
                st.spool.scan(from, 128).map_err(|e| OutboxError::Storage(format!("spool: {e}")))?
            };
            let Some(last) = chunk.last().map(|(s, _)| *s) else { return Ok(()) };
            for (seq, bytes) in chunk {
                match spooled::decode(&bytes) {
                    Ok(r) => {
                        if !each(seq, r.targets, &r.event)? {
                            return Ok(());
                        }
                    }
                    Err(err) => tracing::error!(sequence = seq, error = %err, "unreadable event record"),
                }
            }
            from = last + 1;
        }
    }

    /// The event with this id (linear scan; for operators).
    pub fn find(&self, id: uuid::Uuid) -> Result<Option<StatusEvent>, OutboxError> {
        let mut found = None;
        self.each_record(0, |seq, targets, bytes| {
            if let Ok(e) = decode::<StatusEvent>(bytes) {
                if e.id == id && self.outstanding(&targets, seq) {
                    found = Some(e);
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        Ok(found)
    }

    /// True once the event's write is covered by an fsync (always, for events from disk).
    pub fn is_flushed(&self, seq: u64) -> bool {
        self.inner.unflushed.lock().map(|u| !u.contains(&seq)).unwrap_or(false)
    }

    /// Whether `endpoint` still has to deliver event `seq` (pending or parked).
    pub fn awaits(&self, endpoint: &str, seq: u64) -> bool {
        match self.record(seq) {
            Ok(Some((targets, _))) => {
                targets.iter().any(|t| t == endpoint)
                    && !self.inner.book.lock().unwrap_or_else(|e| e.into_inner()).acked(endpoint, seq)
            }
            _ => false,
        }
    }

    /// Events stored (with a delivery still to make). Kept in memory (see `book`).
    pub fn len(&self) -> usize {
        self.inner.book.lock().unwrap_or_else(|e| e.into_inner()).events as usize
    }

    /// True when no event is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the store takes on disk: sled's files and the spool.
    pub fn size_on_disk(&self) -> u64 {
        let spool = self.inner.journal.read().map(|st| st.spool.size()).unwrap_or(0);
        self.inner.db.size_on_disk().unwrap_or(0) + spool
    }

    /// Every tree's records and the bytes of their keys and values, and the spool as one more
    /// (`queue`: its records' bytes); what is left of [`Outbox::size_on_disk`] is sled's own
    /// (page headers, old versions not yet reclaimed) and the spool's record headers. Reads every
    /// record: for operators and benchmarks, from a blocking thread.
    pub fn footprint(&self) -> Result<compact::Live, OutboxError> {
        let mut live = compact::live(&self.inner.db)?;
        let mut t = compact::TreeBytes { name: "queue".into(), ..compact::TreeBytes::default() };
        let st = self.inner.journal.read().map_err(|_| OutboxError::Storage("outbox journal lock poisoned".into()))?;
        let mut from = 0;
        loop {
            let chunk = st.spool.scan(from, 256).map_err(|e| OutboxError::Storage(format!("spool: {e}")))?;
            let Some(last) = chunk.last().map(|(s, _)| *s) else { break };
            for (_, bytes) in &chunk {
                t.records += 1;
                t.key_bytes += 8;
                t.value_bytes += bytes.len() as u64;
            }
            from = last + 1;
        }
        live.bytes += t.key_bytes + t.value_bytes;
        live.records += t.records;
        live.trees.push(t);
        Ok(live)
    }

    /// The disk budget, bytes.
    pub fn budget(&self) -> u64 {
        self.inner.budget
    }

    /// True when the store has reached its disk budget (as of the last sync).
    pub fn over_budget(&self) -> bool {
        self.used() > self.inner.budget
    }

    /// Events appended since the store was opened.
    pub fn appends(&self) -> u64 {
        self.inner.appends.load(Ordering::Relaxed)
    }

    /// Deliveries completed, telemetry points sent and idempotency keys forgotten since the store
    /// was opened.
    pub fn removals(&self) -> u64 {
        self.inner.removals.load(Ordering::Relaxed)
    }

    /// True when reopening the store would compact it (see [`compact`]) and it has grown by a
    /// quarter since it was opened (so that a store that reopening cannot shrink is never
    /// reopened again and again). Reads every record when the store is big enough to be worth
    /// it: call it from a blocking thread.
    pub fn compaction_due(&self) -> Result<(bool, compact::Live), OutboxError> {
        let on_disk = self.inner.db.size_on_disk().unwrap_or(0);
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
        let seq = self.inner.id_base + self.inner.db.generate_id()?;
        self.inner.issued_below.fetch_max(seq + 1, Ordering::Relaxed);
        Ok(seq)
    }

    /// How long the commit thread has not been seen alive (for the watchdog): at most about a
    /// quarter of a second while idle; a stuck fsync makes it grow.
    pub fn commit_thread_silence(&self) -> std::time::Duration {
        self.inner.committer.idle_for()
    }

    /// Flushes everything to disk (on shutdown).
    pub async fn flush(&self) -> Result<(), OutboxError> {
        self.inner.committer.commit().await?;
        self.inner.durable.sync()?;
        self.write_acks()
    }
}
