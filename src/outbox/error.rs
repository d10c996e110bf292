//! What can go wrong with the store, sorted by what the caller must do.

use std::path::PathBuf;

use sled::transaction::TransactionError;

/// What went wrong, sorted by what the caller must do.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The disk is full: nothing was stored. Free space; taps must be refused (HTTP 507).
    #[error("disk full: the event was not stored")]
    DiskFull,
    /// The store has reached its disk budget (`outbox_max_mb`): nothing was stored (HTTP 507).
    #[error("the outbox has reached its disk budget ({used} of {budget} bytes): the event was not stored")]
    OverBudget {
        /// Bytes on disk.
        used: u64,
        /// The budget.
        budget: u64,
    },
    /// The store could not write or flush: nothing acknowledged (HTTP 503).
    #[error("storage error: {0}")]
    Storage(String),
    /// Another process holds the store (a second curbside on the same state_dir).
    #[error("the outbox at {0} is in use by another process")]
    Locked(PathBuf),
    /// No such event or delivery.
    #[error("not found: {0}")]
    NotFound(String),
    /// The state directory cannot be used at all.
    #[error("cannot use {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl OutboxError {
    /// True when the disk is full or the store at its budget (telemetry is shed; taps must be
    /// refused).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, OutboxError::DiskFull | OutboxError::OverBudget { .. })
    }
}

impl From<sled::Error> for OutboxError {
    fn from(e: sled::Error) -> Self {
        match e {
            // ENOSPC, however sled wrapped it.
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) => {
                OutboxError::DiskFull
            }
            other => OutboxError::Storage(other.to_string()),
        }
    }
}

impl From<TransactionError<OutboxError>> for OutboxError {
    fn from(e: TransactionError<OutboxError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => e.into(),
        }
    }
}
