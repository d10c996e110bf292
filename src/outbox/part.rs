//! A tree of its own that a part keeps in the store: the part decides the keys, the values and
//! what they mean; the outbox gives it the same database (compaction, budget and recovery
//! included) and the same durability (a write is on disk once [`PartTree::commit`] returns).
//! What must be atomic with an event (its media references, the job's history) is written in
//! the event's transaction instead, by the outbox.

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
    /// The tree `name`, kept for a part: `sessions` (paired phones, `api::pairing`).
    pub fn part_tree(&self, name: &str) -> Result<PartTree, OutboxError> {
        Ok(PartTree { tree: self.inner.db.open_tree(name)?, outbox: self.clone() })
    }
}

impl PartTree {
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

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(IVec, IVec), OutboxError>> + '_ {
        self.tree.iter().map(|kv| kv.map_err(OutboxError::from))
    }

    /// Waits until every write so far is on disk (a failure marks the store broken, as any
    /// other write's does).
    pub async fn commit(&self) -> Result<(), OutboxError> {
        self.outbox.commit_or_break().await
    }
}
