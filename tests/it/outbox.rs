//! The outbox on real sled: a corrupt store is moved aside and a fresh one started, a store in
//! use is refused, a full disk refuses taps instead of acknowledging them, and events survive a
//! restart.

use std::path::Path;

use curbside::event::StatusEvent;
use curbside::outbox::{EndpointFilter, Outbox, OutboxError};

fn endpoints() -> Vec<EndpointFilter> {
    vec![EndpointFilter { name: "bo".into(), events: None, files_only: false }]
}

fn event(seq: u64, job: &str) -> StatusEvent {
    StatusEvent {
        sequence: seq,
        job_id: job.into(),
        received_by: Some("x".repeat(200)),
        location: None,
        ..curbside::webhook::format::sample("van-17")
    }
}

async fn append(o: &Outbox, job: &str) -> Result<StatusEvent, OutboxError> {
    o.append(job, None, |s| event(s, job)).await.map(|a| a.event)
}

#[tokio::test]
async fn events_and_their_deliveries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let e = {
        let o = Outbox::open(dir.path(), endpoints()).unwrap();
        let e = append(&o, "J1").await.unwrap();
        assert!(o.is_flushed(e.sequence), "acknowledged means flushed, and only then deliverable");
        e
    };
    let o = reopen(dir.path()).await.unwrap();
    assert_eq!(o.event(e.sequence).unwrap(), Some(e.clone()));
    let pending = o.pending_after("bo", None, 10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1.job_id, "J1");
    o.delivered("bo", e.sequence).unwrap();
    assert!(o.is_empty(), "delivered to every endpoint: removed");
}

/// Found by the crash test: a tap retried after its event was already delivered (and removed)
/// must still get the first event back, not an error and not a second event.
#[tokio::test]
async fn an_idempotent_retry_after_delivery_returns_the_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let o = Outbox::open(dir.path(), endpoints()).unwrap();
    let first = o.append("J1", Some("k-1"), |s| event(s, "J1")).await.unwrap();
    assert!(first.created);
    o.delivered("bo", first.event.sequence).unwrap();
    assert!(o.is_empty());
    let again = o.append("J1", Some("k-1"), |s| event(s, "J1")).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.event, first.event);
    assert!(o.is_empty(), "nothing new stored");
}

fn corrupt(dir: &Path) {
    let db = dir.join("outbox");
    for entry in std::fs::read_dir(&db).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let len = std::fs::metadata(&p).unwrap().len().max(64) as usize;
            std::fs::write(&p, vec![0xA5u8; len]).unwrap();
        }
    }
}

#[tokio::test]
async fn a_corrupt_store_is_moved_aside_and_a_fresh_one_started() {
    let dir = tempfile::tempdir().unwrap();
    {
        let o = Outbox::open(dir.path(), endpoints()).unwrap();
        o.append("J1", Some("k-J1"), |s| event(s, "J1")).await.unwrap();
    }
    // Wait until the first handle has let go of the files, then damage them.
    drop(reopen(dir.path()).await.unwrap());
    corrupt(dir.path());
    let o = reopen(dir.path()).await.unwrap();
    let loss = o.loss().expect("the loss is reported").clone();
    assert!(loss.moved_to.exists(), "the old store is kept for recovery");
    assert!(loss.moved_to.file_name().unwrap().to_string_lossy().starts_with("outbox.corrupt-"));
    // The event itself is in the spool, which the damage to sled's files did not reach: it is
    // still queued, and its idempotency record is back (applied again from the spool).
    assert_eq!(o.len(), 1, "the queued event outlives sled's files");
    let again = o.append("J1", Some("k-J1"), |s| event(s, "J1")).await.unwrap();
    assert!(!again.created, "its idempotency key answers with it");
    append(&o, "J2").await.expect("the fresh store works");
    drop(o);
    // The loss stays visible after a restart.
    let o = reopen(dir.path()).await.unwrap();
    assert_eq!(o.loss().map(|l| l.moved_to.clone()), Some(loss.moved_to));
    assert_eq!(o.len(), 2);
}

#[tokio::test]
async fn a_store_in_use_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let first = Outbox::open(dir.path(), endpoints()).unwrap();
    append(&first, "J1").await.unwrap();
    let second = Outbox::open(dir.path(), endpoints());
    assert!(matches!(second, Err(OutboxError::Locked(_))), "{second:?}");
    assert_eq!(first.len(), 1);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("corrupt"))
    );
}

/// A real full filesystem: a small tmpfs (mounting needs root, which CI has).
#[tokio::test]
async fn a_full_disk_refuses_the_tap_instead_of_acknowledging_it() {
    assert!(
        nix_is_root(),
        "mounting a tmpfs needs root, or a user namespace: run the suite with tools/test, which provides one"
    );
    let mnt = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    let outcome = fill_and_tap(mnt.path()).await;
    let _ = std::process::Command::new("umount").arg(mnt.path()).status();
    outcome.unwrap();
}

async fn fill_and_tap(dir: &Path) -> Result<(), String> {
    let o = Outbox::open(dir, endpoints()).map_err(|e| e.to_string())?;
    append(&o, "J0").await.map_err(|e| e.to_string())?;
    let before = o.len();
    // Fill the disk.
    let filler = dir.join("filler");
    let chunk = vec![0u8; 64 * 1024];
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let mut refused = None;
    let mut acknowledged = 0;
    for i in 0..200 {
        match append(&o, &format!("J{}", i + 1)).await {
            Ok(_) => acknowledged += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.ok_or("every tap was acknowledged on a full disk")?;
    if !e.is_disk_full() {
        return Err(format!("expected disk full, got {e}"));
    }
    // The store says it is broken, so that the agent restarts on a fresh handle.
    tokio::time::timeout(std::time::Duration::from_secs(1), o.broken()).await.map_err(|_| "not marked broken")?;
    drop(o);
    std::fs::remove_file(&filler).unwrap();
    // Whatever was acknowledged is there after a restart; nothing else.
    let o = reopen(dir).await.map_err(|e| e.to_string())?;
    if o.len() != before + acknowledged {
        return Err(format!("{} events after restart, {} acknowledged", o.len(), before + acknowledged));
    }
    append(&o, "after").await.map_err(|e| format!("with space again: {e}"))?;
    Ok(())
}

/// Opens again after a drop in this process: sled's flusher thread lets go of the lock shortly
/// after the last handle is dropped (a restarted process never waits).
async fn reopen(dir: &Path) -> Result<Outbox, OutboxError> {
    reopen_with(dir, curbside::outbox::DEFAULT_BUDGET).await
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// The disk budget (`outbox_max_mb`): a store at its budget refuses taps with a clear error and
/// is not broken by it; once drained it is worth compacting, and reopening rewrites it small,
/// with every record kept and sequences still rising.
#[tokio::test]
async fn a_store_at_its_budget_refuses_taps_until_drained() {
    const BUDGET: u64 = 16 << 20;
    let dir = tempfile::tempdir().unwrap();
    let o = Outbox::open_with(dir.path(), endpoints(), BUDGET).unwrap();
    fn big(seq: u64, job: &str) -> StatusEvent {
        StatusEvent { received_by: Some("r".repeat(20_000)), ..event(seq, job) }
    }
    let mut acked = Vec::new();
    let refused = 'fill: loop {
        // Concurrent appends share their fsyncs.
        let mut batch = tokio::task::JoinSet::new();
        for k in 0..32 {
            let o = o.clone();
            batch.spawn(async move {
                let job = format!("J{k}");
                o.append(&job, None, |s| big(s, &job)).await
            });
        }
        let mut refused = None;
        for r in batch.join_all().await {
            match r {
                Ok(a) => acked.push(a.event.sequence),
                Err(e) => refused = Some(e),
            }
        }
        if let Some(e) = refused {
            break 'fill e;
        }
        assert!(acked.len() < 5000, "{} events acknowledged over a 16 MiB budget", acked.len());
    };
    assert!(matches!(refused, OutboxError::OverBudget { budget: BUDGET, .. }), "{refused}");
    assert!(refused.is_disk_full(), "telemetry is shed like on a full disk");
    // (Not `o.over_budget()` here: sled may trim its log's tail in the syncs of the appends that
    // finished after the refused one, taking the size back under the budget.)
    let broken = tokio::time::timeout(std::time::Duration::from_millis(200), o.broken()).await;
    assert!(broken.is_err(), "a store at its budget is not a broken store");
    // Still usable: deliveries go on.
    let last = *acked.iter().max().unwrap();
    let keep = o.event(last).unwrap().expect("the newest acknowledged event is stored");
    for &seq in &acked {
        if seq != last {
            o.delivered("bo", seq).unwrap();
        }
    }
    // The spool gives a drained segment's disk back as it goes: no compaction needed.
    let drained = o.size_on_disk();
    assert!(!o.over_budget(), "drained: {drained} bytes");
    let before = drained;
    drop(o);
    let o = reopen_with(dir.path(), BUDGET).await.unwrap();
    assert!(o.size_on_disk() <= before + (1 << 20), "{} bytes, {before} before reopening", o.size_on_disk());
    assert!(!o.over_budget());
    assert_eq!(o.event(last).unwrap(), Some(keep), "the undelivered event survives");
    assert_eq!(o.pending_after("bo", None, 10).unwrap().len(), 1);
    let next = append(&o, "after").await.expect("taps are accepted again");
    assert!(next.sequence > last, "sequences keep rising: {} after {last}", next.sequence);
    for leftover in ["outbox.compacting", "outbox.compacted", "outbox.old"] {
        assert!(!dir.path().join(leftover).exists(), "{leftover} left behind");
    }
}

async fn reopen_with(dir: &Path, budget: u64) -> Result<Outbox, OutboxError> {
    for _ in 0..50 {
        match Outbox::open_with(dir, endpoints(), budget) {
            Err(OutboxError::Locked(_)) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            other => return other,
        }
    }
    Outbox::open_with(dir, endpoints(), budget)
}

/// The counts status reads are kept in memory once first asked (`outbox::counts`): asked while
/// appends and deliveries run on other threads, they end exact, equal to what a fresh handle
/// counts from the store. Without the lock between a change and the first scan, a change made
/// during that scan would be counted twice (or not at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_counts_asked_during_changes_end_exact() {
    let dir = tempfile::tempdir().unwrap();
    let o = Outbox::open(dir.path(), endpoints()).unwrap();
    for i in 0..300 {
        append(&o, &format!("J{}", i % 7)).await.unwrap();
    }
    let mut set = tokio::task::JoinSet::new();
    for w in 0..4 {
        let o = o.clone();
        set.spawn(async move {
            for i in 0..150 {
                append(&o, &format!("W{w}-{}", i % 5)).await.unwrap();
            }
        });
    }
    {
        // Delivers the first 200 while the appends run.
        let o = o.clone();
        set.spawn(async move {
            let mut done = 0;
            while done < 200 {
                for (seq, _) in o.pending_after("bo", None, 20).unwrap() {
                    if done < 200 {
                        o.delivered("bo", seq).unwrap();
                        done += 1;
                    }
                }
                tokio::task::yield_now().await;
            }
        });
    }
    {
        let o = o.clone();
        set.spawn_blocking(move || {
            for _ in 0..50 {
                let _ = (o.len(), o.depth("bo"));
            }
        });
    }
    set.join_all().await;
    let want = 300 + 4 * 150 - 200;
    assert_eq!((o.len(), o.depth("bo").pending), (want, want as u64));
    o.flush().await.unwrap();
    drop(o);
    let fresh = reopen(dir.path()).await.unwrap();
    assert_eq!((fresh.len(), fresh.depth("bo").pending), (want, want as u64), "counted from the store");
}

/// A tap's sled writes (its idempotency record, its job's step) are applied after the spool's
/// sync and flushed by sled later (`outbox::journal`): a crash in between loses them from sled,
/// never from the spool, and opening the store applies them again. The crash is made by taking
/// them out of sled's files, with `meta`'s mark, as a power cut before sled's flush would.
#[tokio::test]
async fn what_sled_lost_to_a_crash_is_applied_again_from_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (first, later) = {
        let o = Outbox::open(dir.path(), endpoints()).unwrap();
        let h = curbside::history::History::open(&o).unwrap();
        let first = o.append_with("J1", Some("k1"), |s| event(s, "J1"), |e, s| vec![h.of(e, s)]).await.unwrap();
        let later = o.append_with("J1", Some("k2"), |s| event(s, "J1"), |e, s| vec![h.of(e, s)]).await.unwrap();
        o.flush().await.unwrap();
        (first.event, later.event)
    };
    drop(reopen(dir.path()).await.unwrap());
    {
        // The last handle's flusher may hold the lock for a moment.
        let mut db = sled::open(dir.path().join("outbox"));
        for _ in 0..100 {
            if db.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            db = sled::open(dir.path().join("outbox"));
        }
        let db = db.unwrap();
        let (idem, history, meta) =
            (db.open_tree("idem").unwrap(), db.open_tree("history").unwrap(), db.open_tree("meta").unwrap());
        assert_eq!((idem.len(), history.len()), (2, 2));
        // The second tap's writes never reached sled's files; the mark stands at the first.
        idem.remove(b"J1\0k2").unwrap();
        history.pop_max().unwrap();
        meta.insert("applied", &first.sequence.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let o = reopen(dir.path()).await.unwrap();
    let again = o.append("J1", Some("k2"), |s| event(s, "J1")).await.unwrap();
    assert!(!again.created, "the key of a tap acknowledged before the crash still answers");
    assert_eq!(again.event, later);
    let h = curbside::history::History::open(&o).unwrap();
    assert_eq!(h.job("J1", u64::MAX).len(), 2, "the job's step is back");
    assert_eq!(o.len(), 2);
}
