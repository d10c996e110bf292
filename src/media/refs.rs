//! Which stored events refer to which file: the store's `media` tree (a [`PartTree`]), key
//! `sha256 (32 bytes) ++ sequence (BE)`, empty value. A tap's references go in with its event
//! ([`Refs::of`] through [`Outbox::append_with`]); once the event has left the store they are
//! dropped ([`Refs::drop_released`]) and a file nothing refers to any more may go.

use crate::digest::{Sha, parse_hex};
use crate::event::StatusEvent;
use crate::outbox::{Alongside, Outbox, OutboxError, PartTree};

/// The tree's name in the store.
const TREE: &str = "media";

/// The media references in the store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Refs {
    tree: PartTree,
    outbox: Outbox,
}

fn key(sha: &Sha, seq: u64) -> Vec<u8> {
    let mut k = sha.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Refs {
    /// The references kept in `outbox`.
    pub fn open(outbox: &Outbox) -> Result<Refs, OutboxError> {
        Ok(Refs { tree: outbox.part_tree(TREE)?, outbox: outbox.clone() })
    }

    /// What event `seq` refers to, to write with it.
    pub fn of(&self, event: &StatusEvent, seq: u64) -> Vec<Alongside> {
        event
            .attachments
            .iter()
            .filter_map(|a| parse_hex(&a.sha256))
            .map(|sha| self.tree.alongside(key(&sha, seq), Vec::new()))
            .collect()
    }

    /// Whether any stored event refers to the file `sha`.
    pub fn referenced(&self, sha: &Sha) -> bool {
        self.tree.scan_prefix(sha).next().is_some()
    }

    /// Removes the references of events no longer stored (delivered everywhere) and returns
    /// their files' digests, for [`super::Media::release`].
    pub fn drop_released(&self) -> Result<Vec<Sha>, OutboxError> {
        let mut released = Vec::new();
        for kv in self.tree.iter() {
            let (k, _) = kv?;
            let split = k.len().min(32);
            let (Ok(sha), Ok(seq)) = (<Sha>::try_from(&k[..split]), <[u8; 8]>::try_from(&k[split..])) else {
                self.tree.remove(&k)?;
                continue;
            };
            if !self.outbox.holds(u64::from_be_bytes(seq))? {
                self.tree.remove(&k)?;
                released.push(sha);
            }
        }
        Ok(released)
    }
}
