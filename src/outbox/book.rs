//! The delivery book: what the outbox knows in memory about the deliveries of the events in its
//! spool. Each endpoint's acknowledgements ([`Acks`]), its pending and parked counts, and how far
//! its oldest pending delivery is; each spool segment's deliveries still outstanding, so that a
//! segment whose every delivery is done is removed whole.
//!
//! A delivery is one (event, endpoint) pair, the endpoint one of the event's targets: pending
//! until its endpoint acknowledged it, parked while `failed` holds it. The counts are taken by
//! one scan of the spool when the store opens, and kept by every change from then on: status
//! never reads the store to count.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use super::acks::Acks;

/// One endpoint's page of the book.
#[derive(Debug)]
pub(super) struct Page {
    pub acks: Acks,
    pub pending: u64,
    pub failed: u64,
    /// No pending delivery of this endpoint has a lower sequence (a scan starts here).
    pub cursor: u64,
    /// Bumped whenever the cursor moves back (a retry), so that a scan that began before does
    /// not move it up past what the retry put back.
    pub epoch: u64,
}

#[derive(Debug)]
pub(super) struct Book {
    dir: PathBuf,
    pages: HashMap<String, Page>,
    /// Spool segments by their first sequence: deliveries outstanding in each (pending or parked).
    segments: BTreeMap<u64, u64>,
    /// Events with a delivery outstanding.
    pub events: u64,
}

/// The acknowledgement ledger's file name for an endpoint (names are the operator's: hex keeps
/// any of them a plain file name).
fn file_name(endpoint: &str) -> String {
    let hex: String = endpoint.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.acks")
}

impl Book {
    /// Opens the ledgers in `dir`, and one for each of `endpoints` that has none yet.
    pub fn open<'a>(dir: &Path, endpoints: impl IntoIterator<Item = &'a str>) -> io::Result<Book> {
        std::fs::create_dir_all(dir)?;
        let mut book = Book { dir: dir.to_path_buf(), pages: HashMap::new(), segments: BTreeMap::new(), events: 0 };
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".acks")) else { continue };
            let bytes: Option<Vec<u8>> = (0..hex.len() / 2)
                .map(|i| hex.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect();
            if let Some(endpoint) = bytes.and_then(|b| String::from_utf8(b).ok()) {
                book.page(&endpoint)?;
            }
        }
        for e in endpoints {
            book.page(e)?;
        }
        Ok(book)
    }

    /// The page of `endpoint`, opened (its ledger made) on first use.
    pub fn page(&mut self, endpoint: &str) -> io::Result<&mut Page> {
        if !self.pages.contains_key(endpoint) {
            let acks = Acks::open(&self.dir.join(file_name(endpoint)))?;
            self.pages.insert(endpoint.to_string(), Page { acks, pending: 0, failed: 0, cursor: 0, epoch: 0 });
        }
        self.pages.get_mut(endpoint).ok_or_else(|| io::Error::other("page just made is missing"))
    }

    /// The page of `endpoint`, if it has one.
    pub fn get(&self, endpoint: &str) -> Option<&Page> {
        self.pages.get(endpoint)
    }

    /// Whether `endpoint` acknowledged `seq` (an endpoint with no page acknowledged nothing).
    pub fn acked(&self, endpoint: &str, seq: u64) -> bool {
        self.pages.get(endpoint).is_some_and(|p| p.acks.contains(seq))
    }

    /// Notes `n` new outstanding deliveries in the segment starting at `segment`.
    pub fn outstanding(&mut self, segment: u64, n: u64) {
        *self.segments.entry(segment).or_insert(0) += n;
    }

    /// One outstanding delivery of the segment starting at `segment` is done.
    pub fn done(&mut self, segment: Option<u64>) {
        if let Some(n) = segment.and_then(|s| self.segments.get_mut(&s)) {
            *n = n.saturating_sub(1);
        }
    }

    /// The sequence below which the spool may drop every segment: the oldest segment with an
    /// outstanding delivery, or the newest the book knows (records may still be going into it).
    /// Forgets the segments below it. `None` when nothing may go.
    pub fn removable_below(&mut self) -> Option<u64> {
        let newest = *self.segments.keys().next_back()?;
        let bound = self.segments.iter().find(|(k, n)| **n > 0 || **k == newest).map(|(k, _)| *k)?;
        let gone: Vec<u64> = self.segments.range(..bound).map(|(k, _)| *k).collect();
        if gone.is_empty() {
            return None;
        }
        for k in gone {
            self.segments.remove(&k);
        }
        Some(bound)
    }

    /// Writes every page's acknowledgements not written yet ([`Acks::write_out`]).
    pub fn write_out(&mut self) -> io::Result<()> {
        for page in self.pages.values_mut() {
            page.acks.write_out()?;
        }
        Ok(())
    }

    /// Every page, by endpoint.
    pub fn pages_mut(&mut self) -> impl Iterator<Item = (&String, &mut Page)> {
        self.pages.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_go_from_the_front_once_done_and_the_newest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Book::open(dir.path(), ["bo", "odd/name é"]).unwrap();
        b.outstanding(0, 2);
        b.outstanding(10, 1);
        b.outstanding(20, 0);
        assert_eq!(b.removable_below(), None);
        b.done(Some(10));
        // 10 is done, but 0 is not: nothing goes out of order.
        assert_eq!(b.removable_below(), None);
        b.done(Some(0));
        b.done(Some(0));
        assert_eq!(b.removable_below(), Some(20));
        assert_eq!(b.removable_below(), None, "20 is the newest: appends may still go into it");
        drop(b);
        let b = Book::open(dir.path(), []).unwrap();
        assert!(b.get("odd/name é").is_some(), "a ledger's file name gives back its endpoint");
        assert!(b.get("bo").is_some() && b.get("other").is_none());
    }
}
