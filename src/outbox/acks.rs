//! Acknowledgements: which sequences one endpoint has taken (answered 2xx), as merged ranges in
//! memory and an append-only ledger on disk. The second part of taking the event queue out of
//! sled (issue 29, see [`super::spool`]); not wired into the outbox yet.
//!
//! A drained backlog of 100,000 events is one range, so memory follows the gaps (events still
//! owed), not the events taken.
//!
//! # On disk
//! One file per endpoint. Each entry is 20 bytes:
//! - the first and last sequence of a range, u64 little-endian each;
//! - a CRC-32 of those 16 bytes.
//!
//! [`Acks::take`] adds one entry per sequence, without a sync, written in batches of up to
//! [`BATCH`] (one `write` each, not one per delivery: issue 29's drain profile), and whenever the
//! caller says its deliveries have paused ([`Acks::write_out`]), when the ledger is compacted
//! and when it is dropped. A crash may lose the newest entries (a kill those not written yet, a
//! power cut those the kernel had not flushed): those events are delivered again, at least once
//! as the outbox promises. It never
//! makes an event look taken that was not: an entry is whole and checked, or ignored.
//! [`Acks::compact`] rewrites the file as its merged ranges, dropping those below a floor, and
//! renames the new file over the old one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

/// Bytes of one ledger entry.
const ENTRY: usize = 20;

/// Entries written together.
pub const BATCH: usize = 32;

/// One endpoint's acknowledgements.
#[derive(Debug)]
pub struct Acks {
    path: PathBuf,
    file: File,
    /// Ranges by first sequence; inclusive, disjoint, and never adjacent (they are merged).
    ranges: BTreeMap<u64, u64>,
    /// Entries in the file and in `unwritten` (to tell when a compaction is worth it).
    entries: u64,
    /// Entries taken and not written yet (fewer than [`BATCH`]).
    unwritten: Vec<u8>,
}

fn entry(first: u64, last: u64) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[..8].copy_from_slice(&first.to_le_bytes());
    e[8..16].copy_from_slice(&last.to_le_bytes());
    let sum = crc32fast::hash(&e[..16]);
    e[16..].copy_from_slice(&sum.to_le_bytes());
    e
}

/// The range an entry holds, if it is whole and checks.
fn parse(e: &[u8]) -> Option<(u64, u64)> {
    let first = u64::from_le_bytes(e.get(..8)?.try_into().ok()?);
    let last = u64::from_le_bytes(e.get(8..16)?.try_into().ok()?);
    let sum = u32::from_le_bytes(e.get(16..20)?.try_into().ok()?);
    (crc32fast::hash(&e[..16]) == sum && first <= last).then_some((first, last))
}

impl Acks {
    /// Opens (or creates) the ledger at `path` and reads it. Entries that do not check (a torn
    /// last entry) are ignored.
    pub fn open(path: &Path) -> io::Result<Acks> {
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut acks =
            Acks { path: path.to_path_buf(), file, ranges: BTreeMap::new(), entries: 0, unwritten: Vec::new() };
        for e in bytes.chunks(ENTRY) {
            if let Some((first, last)) = parse(e) {
                acks.insert(first, last);
            }
        }
        acks.entries = (bytes.len() / ENTRY) as u64;
        let whole = acks.entries * ENTRY as u64;
        if whole < bytes.len() as u64 {
            // A torn last entry: cut it off, so that the next one starts on an entry boundary.
            acks.file.set_len(whole)?;
        }
        Ok(acks)
    }

    /// Whether `seq` was taken.
    pub fn contains(&self, seq: u64) -> bool {
        self.ranges.range(..=seq).next_back().is_some_and(|(_, last)| *last >= seq)
    }

    /// Records that `seq` was taken (appended to the ledger with the batch it completes, not
    /// synced). Returns whether it is new.
    pub fn take(&mut self, seq: u64) -> io::Result<bool> {
        if self.contains(seq) {
            return Ok(false);
        }
        self.insert(seq, seq);
        self.entries += 1;
        self.unwritten.extend_from_slice(&entry(seq, seq));
        if self.unwritten.len() >= BATCH * ENTRY {
            self.write_out()?;
        }
        Ok(true)
    }

    /// Writes the entries taken since the last batch (not synced).
    pub fn write_out(&mut self) -> io::Result<()> {
        if !self.unwritten.is_empty() {
            self.file.write_all(&self.unwritten)?;
            self.unwritten.clear();
        }
        Ok(())
    }

    /// The ranges taken, oldest first.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(f, l)| (*f, *l))
    }

    /// Entries in the ledger file.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Rewrites the ledger as its merged ranges, forgetting sequences below `floor` (those whose
    /// events are gone from the spool). A crash at any point leaves the old or the new file
    /// whole.
    pub fn compact(&mut self, floor: u64) -> io::Result<()> {
        let kept: BTreeMap<u64, u64> = self
            .ranges
            .iter()
            .filter(|(_, last)| **last >= floor)
            .map(|(first, last)| ((*first).max(floor), *last))
            .collect();
        let tmp = self.path.with_extension("compacting");
        let mut out = File::create(&tmp)?;
        for (first, last) in &kept {
            out.write_all(&entry(*first, *last))?;
        }
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().read(true).append(true).open(&self.path)?;
        // The new file holds them.
        self.unwritten.clear();
        self.entries = kept.len() as u64;
        self.ranges = kept;
        Ok(())
    }

    /// Adds `[first, last]`, merging it with the ranges it touches.
    fn insert(&mut self, mut first: u64, mut last: u64) {
        // A range starting at or before `first` that reaches it (or ends right before it).
        if let Some((&f, &l)) = self.ranges.range(..=first).next_back() {
            if l.saturating_add(1) >= first {
                first = f;
                last = last.max(l);
                self.ranges.remove(&f);
            }
        }
        // Ranges starting inside `[first, last + 1]` are swallowed.
        let inside: Vec<(u64, u64)> =
            self.ranges.range(first..=last.saturating_add(1)).map(|(f, l)| (*f, *l)).collect();
        for (f, l) in inside {
            last = last.max(l);
            self.ranges.remove(&f);
        }
        self.ranges.insert(first, last);
    }
}

impl Drop for Acks {
    fn drop(&mut self) {
        if let Err(e) = self.write_out() {
            tracing::warn!(path = %self.path.display(), error = %e, "could not write the last acknowledgements: those deliveries will be made again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_drained_backlog_is_one_range_whatever_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Acks::open(&dir.path().join("hook.acks")).unwrap();
        for seq in (0..1000).rev().step_by(2).chain((0..1000).step_by(2)) {
            a.take(seq).unwrap();
        }
        assert_eq!(a.ranges().collect::<Vec<_>>(), vec![(0, 999)]);
        assert!(!a.take(500).unwrap(), "taken twice");
        assert!(a.contains(0) && a.contains(999) && !a.contains(1000));
    }

    #[test]
    fn entries_are_written_a_batch_at_a_time_and_all_of_them_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.acks");
        let mut a = Acks::open(&path).unwrap();
        let on_disk = || std::fs::metadata(&path).unwrap().len() as usize / ENTRY;
        for seq in 0..BATCH as u64 - 1 {
            a.take(seq).unwrap();
        }
        assert_eq!(on_disk(), 0);
        a.take(1000).unwrap();
        assert_eq!(on_disk(), BATCH);
        a.take(2000).unwrap();
        assert_eq!(on_disk(), BATCH);
        a.write_out().unwrap();
        assert_eq!(on_disk(), BATCH + 1);
        a.write_out().unwrap();
        assert_eq!(on_disk(), BATCH + 1, "nothing written twice");
        a.take(3000).unwrap();
        drop(a);
        let a = Acks::open(&path).unwrap();
        assert!(a.contains(3000) && a.contains(2000) && a.contains(0));
    }

    #[test]
    fn a_torn_last_entry_is_ignored_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.acks");
        let mut a = Acks::open(&path).unwrap();
        for seq in [3, 4, 9] {
            a.take(seq).unwrap();
        }
        drop(a);
        let whole = std::fs::read(&path).unwrap();
        for cut in 2 * ENTRY..3 * ENTRY {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let mut a = Acks::open(&path).unwrap();
            assert_eq!(a.ranges().collect::<Vec<_>>(), vec![(3, 4)], "cut at {cut}");
            a.take(10).unwrap();
            drop(a);
            assert_eq!(Acks::open(&path).unwrap().ranges().collect::<Vec<_>>(), vec![(3, 4), (10, 10)]);
        }
    }

    #[test]
    fn an_entry_that_does_not_check_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.acks");
        let mut bytes = entry(7, 7).to_vec();
        bytes.extend_from_slice(&entry(1, 5));
        bytes[8] ^= 1; // the first entry's last sequence, now 6 with a CRC made for 7
        std::fs::write(&path, &bytes).unwrap();
        let a = Acks::open(&path).unwrap();
        assert_eq!(a.ranges().collect::<Vec<_>>(), vec![(1, 5)]);
        assert!(!a.contains(7) && !a.contains(6));
    }

    #[test]
    fn compacting_keeps_the_ranges_above_the_floor_in_a_few_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.acks");
        let mut a = Acks::open(&path).unwrap();
        for seq in (0..100).chain(200..300) {
            a.take(seq).unwrap();
        }
        assert_eq!(a.entries(), 200);
        a.compact(50).unwrap();
        assert_eq!(a.entries(), 2);
        assert_eq!(a.ranges().collect::<Vec<_>>(), vec![(50, 99), (200, 299)]);
        a.take(300).unwrap();
        drop(a);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * ENTRY as u64);
        let a = Acks::open(&path).unwrap();
        assert_eq!(a.ranges().collect::<Vec<_>>(), vec![(50, 99), (200, 300)]);
    }

    proptest! {
        /// Against a set: what was taken is contained, in as few ranges as the set needs, and
        /// the same after reopening and after compacting.
        #[test]
        fn the_ranges_are_the_set(seqs in proptest::collection::vec(0..300u64, 0..200), floor in 0..300u64) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("hook.acks");
            let mut a = Acks::open(&path).unwrap();
            let mut set = BTreeSet::new();
            for s in seqs {
                prop_assert_eq!(a.take(s).unwrap(), set.insert(s));
            }
            let runs = |set: &BTreeSet<u64>| set.iter().filter(|s| **s == 0 || !set.contains(&(**s - 1))).count();
            let check = |a: &Acks, set: &BTreeSet<u64>| -> Result<(), TestCaseError> {
                for s in 0..301 {
                    prop_assert_eq!(a.contains(s), set.contains(&s), "sequence {}", s);
                }
                prop_assert_eq!(a.ranges().count(), runs(set));
                Ok(())
            };
            check(&a, &set)?;
            drop(a);
            let mut a = Acks::open(&path).unwrap();
            check(&a, &set)?;
            a.compact(floor).unwrap();
            set.retain(|s| *s >= floor);
            check(&a, &set)?;
            drop(a);
            check(&Acks::open(&path).unwrap(), &set)?;
        }
    }
}
