//! Giving disk space back: sled 0.34 reuses the space of removed records but never shrinks its
//! log file, and after a long outage (50,000 queued events, then a drain) the file stays at the
//! high-water mark of every backlog it ever held, drifting upwards from one backlog to the next
//! (measured by `tools/soak`: 51 MB after the first drain, 76 MB after the twentieth, with a few
//! kilobytes of live records).
//!
//! Compaction rewrites the live records into a new store and swaps the directories, when the
//! store is opened. Whether it is worth it takes reading every record, so the running agent
//! decides, while nothing is being tapped ([`Schedule`]); it then records the request in `meta`
//! ([`REQUESTED`]) and starts again (see `app::run`). An open without the request reads nothing.
//!
//! # The swap, and what a cut at any instant leaves
//! 1. The live records are copied into `outbox.compacting`, which is then made durable (every
//!    file and the directory) and renamed to `outbox.compacted`: that name means "complete".
//! 2. The old store is closed, `outbox` is renamed to `outbox.old`, and `outbox.compacted` to
//!    `outbox`; `state_dir` is fsynced after each rename. Then `outbox.old` is removed.
//!
//! [`recover`] runs before every open and finishes or undoes an interrupted swap:
//! `outbox.compacting` is incomplete and removed; `outbox.compacted` next to `outbox` means step
//! 2 had not started (the old store is whole: the copy is removed); `outbox.compacted` without
//! `outbox` means the cut fell between the two renames (the copy is complete: it becomes
//! `outbox`); `outbox.old` next to `outbox` is removed.
//!
//! # Sequences
//! Event sequences and delivery-log ids come from sled's `generate_id`, which a new store would
//! start again at 0. The copy therefore records, in `meta` under [`ID_BASE`], a base above every
//! id the old store handed out; the outbox adds it to every id it generates.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::durable::Durable;

/// `meta` key: u64 BE added to every id `generate_id` returns (see the module docs).
pub const ID_BASE: &[u8] = b"id_base";
/// `meta` key, present when the running agent found the store worth compacting: the next open
/// compacts it (and only then does an open read every record).
pub const REQUESTED: &[u8] = b"compact_requested";
/// A store smaller than this is never compacted: there is little to give back.
pub const MIN_BYTES: u64 = 32 << 20;
/// Live records above this are not compacted at start-up: the copy would delay the start (and
/// systemd's start timeout) on a slow SD card. The disk budget still holds.
pub const MAX_LIVE_BYTES: u64 = 64 << 20;

/// True when a store of `on_disk` bytes holding `live` bytes of records is worth rewriting: the
/// rewrite would give back at least half of it. sled's files take about twice their records
/// (plus a few MiB of fixed segments), which is what a rewrite keeps. Stores below [`MIN_BYTES`]
/// (or half the `budget`, when that is smaller) are left alone.
pub fn worth_it(on_disk: u64, live: u64, budget: u64) -> bool {
    let kept = live.saturating_mul(2).saturating_add(4 << 20);
    live <= MAX_LIVE_BYTES && on_disk >= MIN_BYTES.min(budget / 2) && on_disk.saturating_sub(kept) >= on_disk / 2
}

/// When the running agent looks at its store: the scan behind [`worth_it`] reads every record,
/// so it runs only while no event is being appended (or the store is at its budget), and again
/// only once the store has changed enough to give a different answer. Pure: the agent feeds it
/// its counters once a minute.
#[derive(Debug, Default)]
pub struct Schedule {
    appends: Option<u64>,
    /// Removals, records and size at the last scan that found nothing worth doing.
    last_scan: Option<(u64, u64, u64)>,
}

impl Schedule {
    /// Whether to scan now, given the counters of [`super::Outbox`] at this tick.
    pub fn scan_now(&mut self, appends: u64, removals: u64, on_disk: u64, budget: u64) -> bool {
        let quiet = self.appends.replace(appends) == Some(appends);
        let over = on_disk > budget;
        if !(quiet || over) || on_disk < MIN_BYTES.min(budget / 2) {
            return false;
        }
        // Again once a quarter of the records seen have gone, or the store has grown.
        match self.last_scan {
            None => true,
            Some((r, records, size)) => removals > r + records / 4 || on_disk > size + size / 8,
        }
    }

    /// The scan found the store, with `records` in it, not worth compacting.
    pub fn not_worth_it(&mut self, removals: u64, records: u64, on_disk: u64) {
        self.last_scan = Some((removals, records, on_disk));
    }
}

/// What a rewrite would keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// Bytes of keys and values in every tree.
    pub bytes: u64,
    /// Records in every tree.
    pub records: u64,
    /// The same, tree by tree (sled's default tree is `__sled__default`), in name order.
    pub trees: Vec<TreeBytes>,
}

/// One tree's records and the bytes of their keys and values.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TreeBytes {
    /// The tree's name.
    pub name: String,
    /// Records in it.
    pub records: u64,
    /// Bytes of their keys.
    pub key_bytes: u64,
    /// Bytes of their values.
    pub value_bytes: u64,
}

/// Reads every record of `db`.
pub fn live(db: &sled::Db) -> sled::Result<Live> {
    let mut live = Live::default();
    let mut names = db.tree_names();
    names.sort();
    for name in names {
        let mut t = TreeBytes { name: String::from_utf8_lossy(&name).into_owned(), ..TreeBytes::default() };
        for kv in db.open_tree(&name)?.iter() {
            let (k, v) = kv?;
            t.records += 1;
            t.key_bytes += k.len() as u64;
            t.value_bytes += v.len() as u64;
        }
        live.bytes = live.bytes.saturating_add(t.key_bytes + t.value_bytes);
        live.records += t.records;
        live.trees.push(t);
    }
    Ok(live)
}

/// The id base recorded in `meta` (0 for a store never compacted).
pub fn id_base(meta: &sled::Tree) -> sled::Result<u64> {
    Ok(meta.get(ID_BASE)?.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok()).map(u64::from_be_bytes).unwrap_or(0))
}

fn sibling(store: &Path, suffix: &str) -> PathBuf {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    store.with_file_name(name)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(store: &Path) -> &Path {
    store.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Finishes or undoes a swap interrupted by a crash (see the module docs). Runs before the store
/// at `store` is opened.
pub fn recover(store: &Path) -> io::Result<()> {
    let (compacting, compacted, old) =
        (sibling(store, ".compacting"), sibling(store, ".compacted"), sibling(store, ".old"));
    if compacting.exists() {
        std::fs::remove_dir_all(&compacting)?;
    }
    if compacted.exists() {
        if store.exists() {
            std::fs::remove_dir_all(&compacted)?;
        } else {
            tracing::warn!(store = %store.display(), "finishing a compaction cut short: the compacted store takes over");
            std::fs::rename(&compacted, store)?;
            sync_dir(parent(store))?;
        }
    }
    if old.exists() {
        if store.exists() {
            std::fs::remove_dir_all(&old)?;
        } else {
            // Not a state the swap leaves; never lose a store over it.
            std::fs::rename(&old, store)?;
            sync_dir(parent(store))?;
        }
    }
    Ok(())
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Bytes on disk before.
    pub before: u64,
    /// Bytes on disk after.
    pub after: u64,
}

/// Rewrites the store `db`, open at `store`, into a new one and swaps them (see the module docs).
/// Consumes the handle: the caller opens `store` again. On an error before the swap (disk full
/// while copying, say), the copy is removed and the old store is left as it was.
pub fn rewrite(db: sled::Db, store: &Path, open: impl Fn(&Path) -> sled::Result<sled::Db>) -> io::Result<Compacted> {
    let before = db.size_on_disk().unwrap_or(0);
    let (compacting, compacted, old) =
        (sibling(store, ".compacting"), sibling(store, ".compacted"), sibling(store, ".old"));
    let copied = copy(&db, &compacting, &open);
    if let Err(e) = copied.and_then(|()| wait_closed(&compacting)) {
        let _ = std::fs::remove_dir_all(&compacting);
        return Err(e);
    }
    std::fs::rename(&compacting, &compacted)?;
    sync_dir(parent(store))?;
    drop(db);
    // sled's flusher thread keeps the old store open a little after the last handle; nothing may
    // still write into `store` once the copy takes its name.
    if let Err(e) = wait_closed(store) {
        let _ = std::fs::remove_dir_all(&compacted);
        return Err(e);
    }
    std::fs::rename(store, &old)?;
    sync_dir(parent(store))?;
    std::fs::rename(&compacted, store)?;
    sync_dir(parent(store))?;
    std::fs::remove_dir_all(&old)?;
    let after = dir_bytes(store);
    Ok(Compacted { before, after })
}

fn copy(db: &sled::Db, to: &Path, open: &impl Fn(&Path) -> sled::Result<sled::Db>) -> io::Result<()> {
    let new = open(to)?;
    for name in db.tree_names() {
        let (from, into) = (db.open_tree(&name)?, new.open_tree(&name)?);
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for kv in from.iter() {
            let (k, v) = kv?;
            batch.insert(k, v);
            n += 1;
            if n % 1024 == 0 {
                into.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        into.apply_batch(batch)?;
    }
    // Every id the old store handed out is below its next one.
    let base = id_base(&db.open_tree("meta")?)?.saturating_add(db.generate_id()?).saturating_add(1);
    let meta = new.open_tree("meta")?;
    meta.insert(ID_BASE, &base.to_be_bytes())?;
    meta.remove(REQUESTED)?;
    drop(meta);
    // The open syncs the files sled created, the sync what was written.
    let durable = Durable::open(new.clone(), to)?;
    durable.sync()?;
    Ok(())
}

/// Waits (up to 5 s) until no process holds sled's lock (an `flock`) on the store's log file.
fn wait_closed(store: &Path) -> io::Result<()> {
    use nix::fcntl::{Flock, FlockArg};
    let mut file = File::open(store.join("db"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            // Dropping the guard unlocks.
            Ok(_locked) => return Ok(()),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(io::Error::other("the old store is still open after 5 s"));
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    walk(dir).unwrap_or(0)
}

fn walk(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() { walk(&e.path())? } else { m.len() };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(p: &Path) -> sled::Result<sled::Db> {
        sled::Config::new().path(p).open()
    }

    #[test]
    fn worth_it_when_a_rewrite_gives_back_half() {
        const GB: u64 = 1 << 30;
        const MB: u64 = 1 << 20;
        assert!(!worth_it(20 * MB, 0, GB), "small stores are left alone");
        assert!(worth_it(60 * MB, MB, GB));
        assert!(!worth_it(60 * MB, 20 * MB, GB), "60 MB for 20 MB of records is about sled's overhead");
        assert!(!worth_it(GB, 100 * MB, GB), "too much to copy at start-up");
        assert!(worth_it(13 * MB, MB / 2, 16 * MB), "a small budget: half of it is enough");
        assert!(!worth_it(17 * MB, 6 * MB, 16 * MB), "a rewrite would not give half back");
        assert!(!worth_it(7 * MB, 0, 16 * MB), "under half a small budget");
    }

    #[test]
    fn the_schedule_scans_when_quiet_and_again_only_after_a_change() {
        const GB: u64 = 1 << 30;
        let mut s = Schedule::default();
        assert!(!s.scan_now(0, 0, 100 << 20, GB), "the first tick has nothing to compare");
        assert!(!s.scan_now(5, 0, 100 << 20, GB), "taps since the last tick");
        assert!(s.scan_now(5, 0, 100 << 20, GB), "quiet for a tick");
        s.not_worth_it(0, 4000, 100 << 20);
        assert!(!s.scan_now(5, 1000, 100 << 20, GB), "a quarter of the records are still there");
        assert!(s.scan_now(5, 1001, 100 << 20, GB), "more than a quarter delivered");
        s.not_worth_it(1001, 3000, 100 << 20);
        assert!(s.scan_now(5, 1000, 120 << 20, GB), "grew by an eighth");
        let mut s = Schedule::default();
        assert!(s.scan_now(1, 0, 17 << 20, 16 << 20), "over budget: taps are refused, no need to wait");
        assert!(!Schedule::default().scan_now(1, 0, 10 << 20, GB), "small stores are never scanned");
    }

    #[test]
    fn a_rewrite_keeps_every_tree_and_ids_keep_rising() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("outbox");
        let db = open(&store).unwrap();
        let events = db.open_tree("events").unwrap();
        for i in 0..5000u32 {
            events.insert(i.to_be_bytes(), vec![7u8; 400]).unwrap();
        }
        let last = db.generate_id().unwrap();
        for i in 0..4990u32 {
            events.remove(i.to_be_bytes()).unwrap();
        }
        db.insert(b"default-tree", b"kept").unwrap();
        db.flush().unwrap();
        drop(events);
        let c = rewrite(db, &store, open).unwrap();
        eprintln!("{c:?}");
        assert!(c.after < c.before / 2, "{c:?}");
        let db = open(&store).unwrap();
        let events = db.open_tree("events").unwrap();
        assert_eq!(events.len(), 10);
        assert_eq!(events.get(4995u32.to_be_bytes()).unwrap().unwrap().as_ref(), &[7u8; 400][..]);
        assert_eq!(db.get(b"default-tree").unwrap().unwrap().as_ref(), b"kept");
        let base = id_base(&db.open_tree("meta").unwrap()).unwrap();
        assert!(base + db.generate_id().unwrap() > last);
        for leftover in [".compacting", ".compacted", ".old"] {
            assert!(!sibling(&store, leftover).exists(), "{leftover} left behind");
        }
    }

    #[test]
    fn recover_finishes_or_undoes_every_interrupted_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("outbox");
        let mark = |p: &Path, what: &str| {
            std::fs::create_dir_all(p).unwrap();
            std::fs::write(p.join("which"), what).unwrap();
        };
        let which = || std::fs::read_to_string(store.join("which")).unwrap();
        // Cut while copying: the partial copy goes.
        mark(&store, "old");
        mark(&sibling(&store, ".compacting"), "partial");
        recover(&store).unwrap();
        assert_eq!(which(), "old");
        assert!(!sibling(&store, ".compacting").exists());
        // Cut after the copy, before the swap: the old store is whole and stays.
        mark(&sibling(&store, ".compacted"), "new");
        recover(&store).unwrap();
        assert_eq!(which(), "old");
        // Cut between the renames: the complete copy takes over.
        std::fs::rename(&store, sibling(&store, ".old")).unwrap();
        mark(&sibling(&store, ".compacted"), "new");
        recover(&store).unwrap();
        assert_eq!(which(), "new");
        assert!(!sibling(&store, ".old").exists() && !sibling(&store, ".compacted").exists());
    }
}
