//! The back of a tree keyed by big-endian u64 sequences, found with forward seeks only.
//!
//! sled 0.34 searches for the back of an unbounded range with a constant key of 1 MiB of `0xFF`
//! (`Iter::high_key`), and any use of its reverse iteration (`last`, `rev`, `next_back`,
//! `get_lt`, `pop_max`) links that constant into the binary: a seventh of the gateway build
//! (issue 28). curbside never iterates a sled tree backwards; where it needs the newest records,
//! these helpers seek forward: `range(k..).next()` goes straight to the first key at or after
//! `k`, so the back of a tree is 64 seeks at most, and the newest records come a window at a
//! time. (`tools/size/check` guards it: CI fails on a binary with that key in it.)

use sled::{IVec, Tree};

fn seq(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}

/// The record with the greatest key, for a tree whose keys are all 8-byte big-endian integers
/// (any other key is reported as the back if it sorts last, as sled's `last` would).
pub fn last(tree: &Tree) -> sled::Result<Option<(IVec, IVec)>> {
    at_or_below(tree, u64::MAX)
}

/// The record with the greatest key not above `bound`: a binary search by forward seeks.
fn at_or_below(tree: &Tree, bound: u64) -> sled::Result<Option<(IVec, IVec)>> {
    let Some(mut best) = tree.first()? else { return Ok(None) };
    let Some(mut lo) = seq(&best.0) else { return Ok(Some(best)) };
    if lo > bound {
        return Ok(None);
    }
    // Invariant: `best` has key `lo`, and no key in (`hi`, `bound`] (none after `u64::MAX`:
    // those would be longer than 8 bytes).
    let mut hi = bound;
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match tree.range(mid.to_be_bytes()..).next().transpose()? {
            Some(kv) => match seq(&kv.0) {
                Some(k) if k <= hi => {
                    lo = k;
                    best = kv;
                }
                Some(_) => hi = mid - 1,
                None if bound == u64::MAX => return Ok(Some(kv)),
                None => hi = mid - 1,
            },
            None => hi = mid - 1,
        }
    }
    Ok(Some(best))
}

/// The records newest first: forward scans over windows of keys that grow from `window` as
/// they go back, each ending at the newest key before the last (sequences may be sparse).
pub fn newest_first(tree: &Tree, window: u64) -> NewestFirst<'_> {
    NewestFirst { tree, window: window.max(1), next_hi: None, started: false, buffer: Vec::new() }
}

/// See [`newest_first`].
pub struct NewestFirst<'a> {
    tree: &'a Tree,
    window: u64,
    /// The inclusive upper end of the next window; `None` once the front has been passed.
    next_hi: Option<u64>,
    started: bool,
    /// The current window, oldest first (popped from the back).
    buffer: Vec<sled::Result<(IVec, IVec)>>,
}

impl Iterator for NewestFirst<'_> {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.started {
            self.started = true;
            match last(self.tree) {
                Err(e) => return Some(Err(e)),
                Ok(back) => self.next_hi = back.and_then(|(k, _)| seq(&k)),
            }
        }
        loop {
            if let Some(item) = self.buffer.pop() {
                return Some(item);
            }
            let hi = self.next_hi?;
            let lo = hi.saturating_sub(self.window - 1);
            self.buffer = self.tree.range(lo.to_be_bytes()..=hi.to_be_bytes()).collect();
            self.window = self.window.saturating_mul(2);
            // The next window ends at the newest key before this one (a gap is one search).
            self.next_hi = match lo.checked_sub(1).map(|below| at_or_below(self.tree, below)) {
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(Some((k, _)))) => seq(&k),
                Some(Ok(None)) | None => None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(keys: &[u64]) -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
        let t = db.open_tree("t").unwrap();
        for k in keys {
            t.insert(k.to_be_bytes(), &k.to_le_bytes()[..]).unwrap();
        }
        (dir, t)
    }

    fn key(kv: &(IVec, IVec)) -> u64 {
        seq(&kv.0).unwrap()
    }

    #[test]
    fn the_back_is_found_by_forward_seeks() {
        for keys in [vec![], vec![0], vec![u64::MAX], vec![0, u64::MAX], vec![5, 6, 7], vec![1, 1 << 40, (1 << 40) + 3]]
        {
            let (_d, t) = tree(&keys);
            assert_eq!(last(&t).unwrap().as_ref().map(key), keys.iter().max().copied(), "{keys:?}");
        }
        let sparse: Vec<u64> = (0..2_000).map(|i| i * i * 7 + 3).collect();
        let (_d, t) = tree(&sparse);
        assert_eq!(last(&t).unwrap().as_ref().map(key), sparse.last().copied());
        for bound in [0, 2, 3, 4, 10, 11, 1_000, 27_999_999, 28_000_000] {
            let want = sparse.iter().copied().filter(|k| *k <= bound).max();
            assert_eq!(at_or_below(&t, bound).unwrap().as_ref().map(key), want, "bound {bound}");
        }
    }

    #[test]
    fn newest_first_yields_every_record_once_in_reverse_order() {
        for keys in [vec![], vec![0], vec![u64::MAX - 1, u64::MAX], (0..1000).collect::<Vec<u64>>()] {
            let (_d, t) = tree(&keys);
            let got: Vec<u64> = newest_first(&t, 16).map(|kv| key(&kv.unwrap())).collect();
            let mut want = keys.clone();
            want.reverse();
            assert_eq!(got, want);
        }
        // Sparse keys with large gaps: the windows grow until they reach the front.
        let sparse = [3, 1 << 20, (1 << 20) + 1, 1 << 50, u64::MAX / 2];
        let (_d, t) = tree(&sparse);
        let got: Vec<u64> = newest_first(&t, 4).map(|kv| key(&kv.unwrap())).collect();
        assert_eq!(got, sparse.iter().rev().copied().collect::<Vec<_>>());
        // Taking a few reads only the newest windows.
        let (_d, t) = tree(&(0..3_000).collect::<Vec<u64>>());
        let got: Vec<u64> = newest_first(&t, 8).take(3).map(|kv| key(&kv.unwrap())).collect();
        assert_eq!(got, [2_999, 2_998, 2_997]);
    }
}
