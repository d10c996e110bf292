//! The spool: an append-only log of records in segment files, each record a sequence number and
//! bytes, checked by a CRC. It knows nothing of what a record means.
//!
//! It is the first part of taking the event queue out of sled (issue 29): sled grows the heap
//! by more than the 24 MB budget while a backlog drains, when only a few records are live at a
//! time (see docs/benchmarks.md). A drain that reads a spool reads files front to back with one
//! buffer, and a drained segment is one `unlink`. The outbox keeps its events in it (see `outbox::spooled`).
//!
//! # On disk
//! A directory of segments named by their first sequence (`{first:020}.seg`). A segment is the
//! 16-byte [`MAGIC`] (its version is its last byte), then records:
//!
//! | bytes | what |
//! |---|---|
//! | 4 | payload length, u32 little-endian (at most [`MAX_RECORD`]) |
//! | 4 | CRC-32 (IEEE) of the next 8 bytes and the payload, u32 little-endian |
//! | 8 | sequence, u64 little-endian; strictly increasing across the spool |
//! | n | payload |
//!
//! # Crashes
//! A record is durable once [`Spool::sync`] returned after it was appended. A power cut can
//! leave the last segment with a torn record at its end: [`Spool::open`] cuts the segment back to
//! its last whole record (those bytes were never acknowledged). A bad record anywhere else is
//! damage, not a torn write: open keeps the records before it, skips the rest of that segment and
//! says how many bytes it skipped ([`Recovery::damaged_bytes`]), and the spool goes on.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// The first bytes of every segment; the last one is the format's version.
pub const MAGIC: &[u8; 16] = b"curbside-spool\0\x01";
/// A record's header: length, CRC, sequence.
const HEADER: usize = 16;
/// The largest payload a record may have.
pub const MAX_RECORD: usize = 1 << 20;
/// A segment is closed and a new one begun once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 1 << 20;
/// One record in this many is in a segment's in-memory index; a read scans from the nearest.
const INDEX_EVERY: u64 = 16;
/// Bytes read at a time while a segment is checked on open.
const OPEN_BLOCK: usize = 256 << 10;

/// What [`Spool::open`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segments opened.
    pub segments: usize,
    /// Whole records found.
    pub records: u64,
    /// Bytes cut from the end of the last segment: a record torn by a crash, never acknowledged.
    pub torn_bytes: u64,
    /// Bytes skipped after a bad record that was not at the end of the spool.
    pub damaged_bytes: u64,
}

/// A segment's place and what it holds.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: File,
    /// Bytes of whole records (and the magic).
    len: u64,
    /// Sequences of the first and last records, `None` while empty.
    first: Option<u64>,
    last: Option<u64>,
    /// (sequence, offset) of every [`INDEX_EVERY`]-th record, in order.
    index: Vec<(u64, u64)>,
    records: u64,
}

impl Segment {
    /// A segment of nothing but its magic.
    fn empty(path: PathBuf, file: File) -> Segment {
        Segment { path, file, len: MAGIC.len() as u64, first: None, last: None, index: Vec::new(), records: 0 }
    }

    fn note(&mut self, seq: u64, offset: u64, size: u64) {
        if self.records.is_multiple_of(INDEX_EVERY) {
            self.index.push((seq, offset));
        }
        self.first.get_or_insert(seq);
        self.last = Some(seq);
        self.records += 1;
        self.len = offset + size;
    }

    /// The offset to start scanning from for `seq`: the nearest indexed record at or before it.
    fn start_for(&self, seq: u64) -> u64 {
        match self.index.partition_point(|(s, _)| *s <= seq) {
            0 => MAGIC.len() as u64,
            i => self.index[i - 1].1,
        }
    }
}

/// The log. Reads take `&self`; appends, syncs and removals `&mut self`.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    /// By first sequence (the empty active segment by the sequence it will start at).
    segments: BTreeMap<u64, Segment>,
    /// The sequence the next record must exceed.
    last: Option<u64>,
    /// Whether the directory changed (a segment made or removed) since the last sync.
    dir_dirty: bool,
    segment_bytes: u64,
}

/// Makes what was appended before [`Spool::syncer`] durable (see there).
#[derive(Debug)]
pub struct Syncer {
    file: File,
    dir: Option<PathBuf>,
}

impl Syncer {
    /// The segment's data, then the directory if a segment was made or removed.
    pub fn sync(self) -> io::Result<()> {
        self.file.sync_data()?;
        if let Some(dir) = self.dir {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// Reads the record at `offset` of `file` (`len` bytes long): `Ok(None)` when no whole, valid
/// record is there.
fn read_record(file: &File, offset: u64, len: u64) -> io::Result<Option<(u64, Vec<u8>)>> {
    if offset + HEADER as u64 > len {
        return Ok(None);
    }
    let mut head = [0u8; HEADER];
    file.read_exact_at(&mut head, offset)?;
    let size = u32::from_le_bytes(head[0..4].try_into().unwrap_or_default()) as usize;
    let sum = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default());
    let seq = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
    if size > MAX_RECORD || offset + (HEADER + size) as u64 > len {
        return Ok(None);
    }
    let mut payload = vec![0u8; size];
    file.read_exact_at(&mut payload, offset + HEADER as u64)?;
    if crc(seq, &payload) != sum {
        return Ok(None);
    }
    Ok(Some((seq, payload)))
}

/// What the start of a buffer holds.
enum Parsed<'a> {
    /// A whole, valid record: its sequence, payload and size with its header.
    Record(u64, &'a [u8], usize),
    /// A record (of this size with its header) that goes on past the buffer's end, or an
    /// incomplete header (size 0).
    Beyond(usize),
    /// Not a valid record.
    Bad,
}

fn parse(buf: &[u8]) -> Parsed<'_> {
    let Some(head) = buf.get(..HEADER) else { return Parsed::Beyond(0) };
    let size = u32::from_le_bytes(head[0..4].try_into().unwrap_or_default()) as usize;
    let sum = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default());
    let seq = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
    if size > MAX_RECORD {
        return Parsed::Bad;
    }
    let Some(payload) = buf.get(HEADER..HEADER + size) else { return Parsed::Beyond(HEADER + size) };
    if crc(seq, payload) != sum {
        return Parsed::Bad;
    }
    Parsed::Record(seq, payload, HEADER + size)
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, checking every record (see the module's
    /// "Crashes").
    pub fn open(dir: &Path) -> io::Result<(Spool, Recovery)> {
        Spool::open_with(dir, SEGMENT_BYTES)
    }

    /// As [`Spool::open`], closing segments at `segment_bytes` (tests use small ones).
    pub fn open_with(dir: &Path, segment_bytes: u64) -> io::Result<(Spool, Recovery)> {
        std::fs::create_dir_all(dir)?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(first) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            names.push(first);
        }
        names.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
            last: None,
            dir_dirty: false,
            segment_bytes: segment_bytes.max(MAGIC.len() as u64 + 1),
        };
        let mut recovery = Recovery::default();
        let count = names.len();
        for (i, first) in names.into_iter().enumerate() {
            let path = dir.join(segment_name(first));
            let file = OpenOptions::new().read(true).append(true).open(&path)?;
            let on_disk = file.metadata()?.len();
            let mut magic = [0u8; 16];
            if on_disk < MAGIC.len() as u64 {
                // Made, but its magic never reached the disk: nothing was acknowledged in it.
                file.set_len(0)?;
                (&file).write_all(MAGIC)?;
                recovery.torn_bytes += on_disk;
            } else {
                file.read_exact_at(&mut magic, 0)?;
                if &magic != MAGIC {
                    return Err(bad(format!(
                        "{} is not a spool segment of a version this build reads",
                        path.display()
                    )));
                }
            }
            let mut seg = Segment::empty(path, file);
            let file_len = on_disk.max(MAGIC.len() as u64);
            let mut offset = MAGIC.len() as u64;
            // Read a block at a time; stop at the first record that is not whole and valid, or
            // whose sequence does not follow.
            let mut buf = Vec::new();
            let mut stop = false;
            while !stop && offset < file_len {
                buf.resize(OPEN_BLOCK.min((file_len - offset) as usize), 0);
                seg.file.read_exact_at(&mut buf, offset)?;
                let mut at = 0;
                while at < buf.len() {
                    let (seq, size) = match parse(&buf[at..]) {
                        Parsed::Record(seq, _, size) => (seq, size),
                        Parsed::Beyond(_) if at == 0 => match read_record(&seg.file, offset, file_len)? {
                            // Larger than a block, and whole.
                            Some((seq, payload)) => (seq, HEADER + payload.len()),
                            None => {
                                stop = true;
                                break;
                            }
                        },
                        Parsed::Beyond(_) => break,
                        Parsed::Bad => {
                            stop = true;
                            break;
                        }
                    };
                    if spool.last.is_some_and(|l| seq <= l) {
                        stop = true;
                        break;
                    }
                    seg.note(seq, offset + at as u64, size as u64);
                    spool.last = Some(seq);
                    at += size;
                }
                offset += at as u64;
            }
            recovery.records += seg.records;
            if offset < file_len {
                if i + 1 == count {
                    recovery.torn_bytes += file_len - offset;
                    seg.file.set_len(offset)?;
                    seg.file.sync_data()?;
                } else {
                    recovery.damaged_bytes += file_len - offset;
                }
            }
            spool.segments.insert(first, seg);
        }
        recovery.segments = spool.segments.len();
        Ok((spool, recovery))
    }

    /// The sequence of the newest record.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// The sequence of the oldest record.
    pub fn first(&self) -> Option<u64> {
        self.segments.values().find_map(|s| s.first)
    }

    /// Bytes on disk.
    pub fn size(&self) -> u64 {
        self.segments.values().map(|s| s.len).sum()
    }

    /// Appends a record; it is durable after the next [`Spool::sync`]. `seq` must exceed every
    /// sequence in the spool.
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> io::Result<()> {
        if payload.len() > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a spool record holds at most {MAX_RECORD} bytes, not {}", payload.len()),
            ));
        }
        if self.last.is_some_and(|l| seq <= l) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("sequence {seq} does not follow {}", self.last.unwrap_or_default()),
            ));
        }
        let roll = match self.segments.values().next_back() {
            None => true,
            Some(s) => s.len >= self.segment_bytes,
        };
        if roll {
            if let Some(s) = self.segments.values().next_back() {
                // The closed segment is synced whole before the new one is made.
                s.file.sync_data()?;
            }
            let path = self.dir.join(segment_name(seq));
            let mut file = OpenOptions::new().read(true).append(true).create_new(true).open(&path)?;
            file.write_all(MAGIC)?;
            let seg = Segment::empty(path, file);
            self.segments.insert(seq, seg);
            self.dir_dirty = true;
        }
        let Some(seg) = self.segments.values_mut().next_back() else {
            return Err(io::Error::other("no segment to append to"));
        };
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc(seq, payload).to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(payload);
        let offset = seg.len;
        if let Err(e) = seg.file.write_all(&record) {
            // Whatever part was written is cut off again, so that the next append follows a whole
            // record; if even that fails, open will cut it as torn.
            let _ = seg.file.set_len(offset);
            return Err(e);
        }
        seg.note(seq, offset, record.len() as u64);
        self.last = Some(seq);
        Ok(())
    }

    /// Makes every appended record durable: the active segment's data, and the directory when a
    /// segment was made or removed.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(s) = self.segments.values().next_back() {
            s.file.sync_data()?;
        }
        if self.dir_dirty {
            File::open(&self.dir)?.sync_all()?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// What [`Syncer::sync`] needs to make every record appended so far durable, taken here so
    /// that the sync itself runs without the spool (appends go on meanwhile). `None` when
    /// there is nothing to sync.
    pub fn syncer(&mut self) -> io::Result<Option<Syncer>> {
        let Some(s) = self.segments.values().next_back() else { return Ok(None) };
        let dir = std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone());
        Ok(Some(Syncer { file: s.file.try_clone()?, dir }))
    }

    /// The first sequence of the segment that holds (or would hold) `seq`.
    pub fn segment_of(&self, seq: u64) -> Option<u64> {
        self.segments.range(..=seq).next_back().map(|(k, _)| *k)
    }

    /// The record with sequence `seq`, if the spool holds it.
    pub fn get(&self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        Ok(self.scan(seq, 1)?.into_iter().next().filter(|(s, _)| *s == seq).map(|(_, p)| p))
    }

    /// Up to `limit` records with sequences at or after `from`, oldest first.
    pub fn scan(&self, from: u64, limit: usize) -> io::Result<Vec<(u64, Vec<u8>)>> {
        // One read brings many records: about a quarter of a segment at most, less for a few.
        let block = (limit.saturating_mul(256)).clamp(4096, 256 << 10);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        // The segment that may hold `from` is the last one starting at or before it.
        let start = self.segments.range(..=from).next_back().map_or(0, |(k, _)| *k);
        for seg in self.segments.range(start..).map(|(_, s)| s) {
            let mut offset = seg.start_for(from);
            'segment: while out.len() < limit && offset < seg.len {
                let want = block.min((seg.len - offset) as usize);
                buf.resize(want, 0);
                seg.file.read_exact_at(&mut buf, offset)?;
                let mut at = 0;
                loop {
                    if out.len() >= limit {
                        break 'segment;
                    }
                    match parse(&buf[at..]) {
                        Parsed::Record(seq, payload, size) => {
                            if seq >= from {
                                out.push((seq, payload.to_vec()));
                            }
                            at += size;
                        }
                        Parsed::Beyond(size) if at == 0 => {
                            // A record larger than the block: read on its own.
                            let Some((seq, payload)) = read_record(&seg.file, offset, seg.len)? else { break 'segment };
                            if seq >= from {
                                out.push((seq, payload));
                            }
                            at = size;
                            break;
                        }
                        Parsed::Beyond(_) => break,
                        Parsed::Bad => break 'segment,
                    }
                }
                offset += at as u64;
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Removes the segments whose every record has a sequence at or before `seq` (the newest
    /// segment stays, for appends to go on). Returns the bytes freed.
    pub fn remove_through(&mut self, seq: u64) -> io::Result<u64> {
        let newest = self.segments.keys().next_back().copied();
        let gone: Vec<u64> = self
            .segments
            .iter()
            .filter(|(k, s)| Some(**k) != newest && s.last.is_none_or(|l| l <= seq))
            .map(|(k, _)| *k)
            .collect();
        let mut freed = 0;
        for k in gone {
            if let Some(s) = self.segments.remove(&k) {
                std::fs::remove_file(&s.path)?;
                freed += s.len;
                self.dir_dirty = true;
            }
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(seq: u64) -> Vec<u8> {
        format!("event {seq} ").repeat((seq % 7 + 1) as usize).into_bytes()
    }

    fn filled(dir: &Path, n: u64, segment_bytes: u64) -> Spool {
        let (mut s, r) = Spool::open_with(dir, segment_bytes).unwrap();
        assert_eq!(r, Recovery::default());
        for seq in 1..=n {
            s.append(seq * 2, &payload(seq * 2)).unwrap();
        }
        s.sync().unwrap();
        s
    }

    #[test]
    fn records_larger_than_a_read_block_read_back_between_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path()).unwrap();
        let sizes = [10usize, 5000, 300_000, 20, 4090, 4096, 70_000, 1];
        for (i, n) in sizes.iter().enumerate() {
            s.append(i as u64, &vec![i as u8; *n]).unwrap();
        }
        let all = s.scan(0, 100).unwrap();
        assert_eq!(all.iter().map(|(_, p)| p.len()).collect::<Vec<_>>(), sizes);
        for (i, n) in sizes.iter().enumerate() {
            assert_eq!(s.get(i as u64).unwrap(), Some(vec![i as u8; *n]), "record {i}");
            assert_eq!(s.scan(i as u64, 2).unwrap().len(), 2.min(sizes.len() - i));
        }
    }

    #[test]
    fn records_read_back_by_sequence_and_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let s = filled(dir.path(), 500, 2048);
        assert!(s.segments.len() > 10, "{} segments", s.segments.len());
        assert_eq!((s.first(), s.last()), (Some(2), Some(1000)));
        for seq in [2, 4, 64, 66, 500, 998, 1000] {
            assert_eq!(s.get(seq).unwrap(), Some(payload(seq)), "{seq}");
        }
        for missing in [0, 1, 3, 999, 1001, u64::MAX] {
            assert_eq!(s.get(missing).unwrap(), None, "{missing}");
        }
        let all = s.scan(0, usize::MAX).unwrap();
        assert_eq!(all.iter().map(|(q, _)| *q).collect::<Vec<_>>(), (1..=500).map(|i| i * 2).collect::<Vec<_>>());
        let some = s.scan(101, 3).unwrap();
        assert_eq!(some.iter().map(|(q, _)| *q).collect::<Vec<_>>(), vec![102, 104, 106]);
    }

    #[test]
    fn a_reopened_spool_has_every_record_and_appends_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let before = filled(dir.path(), 300, 4096);
        let segments = before.segments.len();
        drop(before);
        let (mut s, r) = Spool::open_with(dir.path(), 4096).unwrap();
        assert_eq!(r, Recovery { segments, records: 300, torn_bytes: 0, damaged_bytes: 0 });
        assert!(s.append(600, b"x").is_err(), "a sequence that does not follow");
        s.append(601, b"after").unwrap();
        s.sync().unwrap();
        assert_eq!(s.get(601).unwrap(), Some(b"after".to_vec()));
        assert_eq!(s.get(600).unwrap(), Some(payload(600)));
    }

    /// A power cut in the middle of an append leaves any prefix of the record: open cuts it off
    /// and keeps every record before it, whichever byte the cut fell on.
    #[test]
    fn a_torn_last_record_is_cut_off_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = filled(dir.path(), 20, SEGMENT_BYTES);
        let whole = s.size();
        s.append(1000, b"the record the power cut tore").unwrap();
        let torn_len = s.size();
        let path = s.segments.values().next_back().unwrap().path.clone();
        drop(s);
        let full = std::fs::read(&path).unwrap();
        for cut in whole..torn_len {
            std::fs::write(&path, &full[..cut as usize]).unwrap();
            let (mut s, r) = Spool::open(dir.path()).unwrap();
            assert_eq!((r.records, r.torn_bytes, r.damaged_bytes), (20, cut - whole, 0), "cut at {cut}");
            assert_eq!(s.last(), Some(40));
            assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
            s.append(41, b"next").unwrap();
            assert_eq!(s.scan(39, 10).unwrap().len(), 2);
        }
    }

    #[test]
    fn a_damaged_record_in_an_older_segment_costs_only_that_segments_rest() {
        let dir = tempfile::tempdir().unwrap();
        let s = filled(dir.path(), 200, 1024);
        let (first_path, first_records) = {
            let seg = s.segments.values().next().unwrap();
            (seg.path.clone(), seg.records)
        };
        drop(s);
        let mut bytes = std::fs::read(&first_path).unwrap();
        // A flipped bit in the third record's payload.
        let mut offset = MAGIC.len();
        for _ in 0..2 {
            offset += HEADER + u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        }
        bytes[offset + HEADER] ^= 0x40;
        std::fs::write(&first_path, &bytes).unwrap();
        let (s, r) = Spool::open_with(dir.path(), 1024).unwrap();
        assert_eq!(r.records, 200 - (first_records - 2));
        assert_eq!(r.damaged_bytes, (bytes.len() - offset) as u64);
        assert_eq!(r.torn_bytes, 0);
        assert_eq!(s.scan(0, 3).unwrap().iter().map(|(q, _)| *q).collect::<Vec<_>>()[..2], [2, 4]);
        assert_eq!(s.last(), Some(400));
    }

    #[test]
    fn garbage_files_and_a_foreign_segment_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a segment").unwrap();
        drop(filled(dir.path(), 5, SEGMENT_BYTES));
        assert_eq!(Spool::open(dir.path()).unwrap().1.records, 5);
        std::fs::write(dir.path().join(segment_name(1 << 40)), b"PK\x03\x04 something else entirely").unwrap();
        let e = Spool::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not a spool segment"), "{e}");
    }

    #[test]
    fn removing_drops_whole_segments_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = filled(dir.path(), 400, 2048);
        let size = s.size();
        let freed = s.remove_through(401).unwrap();
        assert!(freed > 0 && freed < size);
        let first = s.first().unwrap();
        assert!(first <= 402, "no record after 401 is gone: the oldest left is {first}");
        assert_eq!(s.get(402).unwrap(), Some(payload(402)));
        assert_eq!(s.remove_through(u64::MAX).unwrap() + freed + s.size(), size);
        assert_eq!(s.last(), Some(800), "the newest segment stays");
        s.sync().unwrap();
        drop(s);
        let (s, r) = Spool::open_with(dir.path(), 2048).unwrap();
        assert_eq!((r.segments, s.last()), (1, Some(800)));
    }

    #[test]
    fn a_record_too_large_is_refused_and_the_spool_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path()).unwrap();
        assert!(s.append(1, &vec![0; MAX_RECORD + 1]).is_err());
        s.append(1, b"ok").unwrap();
        assert_eq!(s.get(1).unwrap(), Some(b"ok".to_vec()));
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            /// Appends a record this long, at a sequence this far after the last.
            Append(usize, u64),
            Sync,
            /// A power cut: the newest segment keeps its synced bytes and this share (0..=100%)
            /// of the rest; then the spool is opened again.
            Cut(u8),
            RemoveThrough(u64),
            Get(u64),
            Scan(u64, usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0..300usize, 1..4u64).prop_map(|(n, gap)| Op::Append(n, gap)),
                2 => Just(Op::Sync),
                1 => (0..=100u8).prop_map(Op::Cut),
                1 => (0..400u64).prop_map(Op::RemoveThrough),
                2 => (0..400u64).prop_map(Op::Get),
                1 => (0..400u64, 1..50usize).prop_map(|(f, n)| Op::Scan(f, n)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// The spool against a map: every synced record survives any cut, an unsynced one
            /// survives only whole, removals take only records at or before their sequence,
            /// and reads see what the map has.
            #[test]
            fn the_spool_keeps_what_a_map_keeps(ops in proptest::collection::vec(op(), 1..120)) {
                let dir = tempfile::tempdir().unwrap();
                let (mut s, _) = Spool::open_with(dir.path(), 1024).unwrap();
                let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
                // Appended since the last sync, oldest first.
                let mut unsynced: Vec<u64> = Vec::new();
                let mut next = 1;
                for op in ops {
                    match op {
                        Op::Append(n, gap) => {
                            next += gap;
                            let p: Vec<u8> = (0..n).map(|i| (i as u64 ^ next) as u8).collect();
                            s.append(next, &p).unwrap();
                            model.insert(next, p);
                            unsynced.push(next);
                        }
                        Op::Sync => {
                            s.sync().unwrap();
                            unsynced.clear();
                        }
                        Op::Cut(share) => {
                            // Records in closed segments were synced when their segment closed.
                            let newest = *s.segments.keys().next_back().unwrap_or(&0);
                            unsynced.retain(|q| *q >= newest);
                            let seg = s.segments.values().next_back();
                            let path = seg.map(|g| g.path.clone());
                            let len = seg.map_or(0, |g| g.len);
                            let loose: u64 = unsynced.iter().map(|q| (HEADER + model[q].len()) as u64).sum();
                            drop(s);
                            let keep = len - loose + loose * u64::from(share) / 100;
                            if let Some(path) = path {
                                OpenOptions::new().write(true).open(&path).unwrap().set_len(keep).unwrap();
                            }
                            let mut end = len - loose;
                            for q in std::mem::take(&mut unsynced) {
                                end += (HEADER + model[&q].len()) as u64;
                                if end > keep {
                                    model.remove(&q);
                                }
                            }
                            let (reopened, r) = Spool::open_with(dir.path(), 1024).unwrap();
                            prop_assert_eq!(r.damaged_bytes, 0);
                            prop_assert_eq!(r.records, model.len() as u64);
                            s = reopened;
                            next = next.max(s.last().unwrap_or(0));
                        }
                        Op::RemoveThrough(q) => {
                            s.remove_through(q).unwrap();
                            let first = s.first();
                            let gone: Vec<u64> = model.keys().copied().filter(|k| first.is_none_or(|f| *k < f)).collect();
                            for k in gone {
                                prop_assert!(k <= q, "record {} went with remove_through({})", k, q);
                                model.remove(&k);
                            }
                        }
                        Op::Get(q) => prop_assert_eq!(s.get(q).unwrap(), model.get(&q).cloned()),
                        Op::Scan(from, n) => {
                            let want: Vec<(u64, Vec<u8>)> =
                                model.range(from..).take(n).map(|(k, v)| (*k, v.clone())).collect();
                            prop_assert_eq!(s.scan(from, n).unwrap(), want);
                        }
                    }
                }
                let all: Vec<(u64, Vec<u8>)> = model.into_iter().collect();
                prop_assert_eq!(s.scan(0, usize::MAX).unwrap(), all);
            }
        }
    }
}
