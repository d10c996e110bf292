//! A tree of its own that a part keeps in the store: the part decides the keys, the values and
//! what they mean; the outbox gives it the same database (compaction, budget and recovery
//! included) and the same durability (a write is on disk once [`PartTree::commit`] returns).
//! What must be atomic with an event (its media references, the job's history) goes in the
//! event's own transaction: the part hands [`Alongside`] writes to [`Outbox::append_with`].

use std::sync::Arc;

use sled::IVec;

use super::{Outbox, OutboxError};

/// A part's tree in the store (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct PartTree {
    tree: sled::Tree,
    outbox: Outbox,
}

impl std::fmt::Debug for PartTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartTree").field("name", &String::from_utf8_lossy(&self.tree.name())).finish()
    }
}

impl Outbox {
    /// The tree `name`, kept for a part: `sessions` (paired phones, `api::pairing`), `stops`
    /// (the day's stop list, `stops::store`), `media` (which events refer to which file,
    /// `media::refs`), `history` (what each job went through, `history`).
    pub fn part_tree(&self, name: &str) -> Result<PartTree, OutboxError> {
        Ok(PartTree { tree: self.inner.db.open_tree(name)?, outbox: self.clone() })
    }
}

/// A write in a part's tree that goes in with an event, in the event's transaction: both are
/// on disk, or neither (see [`Outbox::append_with`]).
#[derive(Debug)]
pub struct Alongside {
    pub(super) tree: sled::Tree,
    pub(super) key: Vec<u8>,
    pub(super) value: Vec<u8>,
}

impl PartTree {
    /// A write of `key` that goes in with an event (see [`Alongside`]).
    pub fn alongside(&self, key: Vec<u8>, value: Vec<u8>) -> Alongside {
        Alongside { tree: self.tree.clone(), key, value }
    }

    /// The values whose keys start with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<(IVec, IVec), OutboxError>> + '_ {
        self.tree.scan_prefix(prefix).map(|kv| kv.map_err(OutboxError::from))
    }

    /// The values whose keys are in `from..=to`, in key order.
    pub fn range_inclusive(&self, from: &[u8], to: &[u8]) -> impl Iterator<Item = Result<IVec, OutboxError>> + '_ {
        self.tree.range(from..=to).values().map(|v| v.map_err(OutboxError::from))
    }

    /// The value at `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<IVec>, OutboxError> {
        Ok(self.tree.get(key)?)
    }

    /// Sets `key` (durable at the next [`PartTree::commit`]).
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), OutboxError> {
        self.tree.insert(key.as_ref(), value.as_ref())?;
        Ok(())
    }

    /// Removes `key` (durable at the next [`PartTree::commit`]).
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), OutboxError> {
        self.tree.remove(key)?;
        Ok(())
    }

    /// The keys and values in `from..to`, in key order.
    pub fn range(&self, from: &[u8], to: &[u8]) -> impl Iterator<Item = Result<(IVec, IVec), OutboxError>> + '_ {
        self.tree.range(from..to).map(|kv| kv.map_err(OutboxError::from))
    }

    /// The first key at or after `from`.
    pub fn first_from(&self, from: &[u8]) -> Result<Option<IVec>, OutboxError> {
        Ok(self.tree.range(from..).keys().next().transpose()?)
    }

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(IVec, IVec), OutboxError>> + '_ {
        self.tree.iter().map(|kv| kv.map_err(OutboxError::from))
    }

    /// Replaces `key`'s value only if it is still `old` (`Ok(false)`: it was not).
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<IVec>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, OutboxError> {
        Ok(self.tree.compare_and_swap(key, old, new)?.is_ok())
    }

    /// What the part decoded from this tree, kept in memory for every handle of the store until
    /// [`PartTree::forget`]: `load` runs when nothing is kept.
    pub fn memo<T: std::any::Any + Send + Sync>(&self, load: impl FnOnce() -> T) -> Arc<T> {
        let mut memos = self.outbox.inner.part_memos.lock().unwrap_or_else(|e| e.into_inner());
        let name = self.tree.name().to_vec();
        if let Some(kept) = memos.get(&name).and_then(|m| m.clone().downcast::<T>().ok()) {
            return kept;
        }
        let fresh = Arc::new(load());
        memos.insert(name, fresh.clone());
        fresh
    }

    /// Drops what [`PartTree::memo`] keeps (after a write).
    pub fn forget(&self) {
        self.outbox.inner.part_memos.lock().unwrap_or_else(|e| e.into_inner()).remove(self.tree.name().as_ref());
    }

    /// Waits until every write so far is on disk (a failure marks the store broken, as any
    /// other write's does).
    pub async fn commit(&self) -> Result<(), OutboxError> {
        self.outbox.commit_or_break().await
    }
}
