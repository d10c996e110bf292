//! The day's stop list in the store: its own tree (`stops`, an [`outbox::PartTree`]), replaced
//! whole, versioned so that a replacement can name the version it replaces, decoded once and
//! kept in memory until the next replacement.

use std::sync::Arc;

use super::{Route, Stop, StopList};
use crate::outbox::{self, Outbox, OutboxError};

/// The tree, and its keys: `list` (JSON [`StopList`]) and `mqtt` (SHA-256 of the last list
/// applied from the broker).
const TREE: &str = "stops";

/// Why a list was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// A replacement named a version that is no longer the stored one (HTTP 412).
    #[error("the stored version is {current}, not {expected}")]
    VersionMismatch {
        /// What the request said it replaces.
        expected: u64,
        /// What is stored.
        current: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] OutboxError),
}

fn tree(outbox: &Outbox) -> Result<outbox::PartTree, OutboxError> {
    outbox.part_tree(TREE)
}

/// The day's stops (version 0 and none before any list was loaded; an unreadable list reads as
/// none, logged).
pub fn current(outbox: &Outbox) -> Arc<StopList> {
    let t = match tree(outbox) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the stop list");
            return Arc::new(StopList::default());
        }
    };
    t.memo(|| match t.get("list") {
        Ok(Some(v)) => serde_json::from_slice(&v).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the stored stop list is unreadable; treating it as empty");
            StopList::default()
        }),
        Ok(None) => StopList::default(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the stop list");
            StopList::default()
        }
    })
}

/// Replaces the stop list, if `if_match` (when given) is the stored version; returns the new
/// version once it is on disk.
pub async fn replace(
    outbox: &Outbox,
    route: Option<Route>,
    stops: Vec<Stop>,
    if_match: Option<u64>,
) -> Result<u64, ReplaceError> {
    let t = tree(outbox)?;
    let stored = t.get("list")?;
    let now: StopList = stored.as_ref().and_then(|v| serde_json::from_slice(v).ok()).unwrap_or_default();
    if let Some(expected) = if_match {
        if expected != now.version {
            return Err(ReplaceError::VersionMismatch { expected, current: now.version });
        }
    }
    let next = StopList { version: now.version + 1, stops, updated_at: chrono::Utc::now().timestamp(), route };
    let bytes = serde_json::to_vec(&next).map_err(|e| OutboxError::Storage(e.to_string()))?;
    let swapped = t.compare_and_swap("list", stored, Some(bytes))?;
    t.forget();
    if !swapped {
        let current = current(outbox).version;
        return Err(ReplaceError::VersionMismatch { expected: if_match.unwrap_or(now.version), current });
    }
    t.commit().await?;
    Ok(next.version)
}

/// Replaces the stop list with one that came as the MQTT message whose payload has SHA-256
/// `digest`, unless that very message was applied already (the broker sends a retained message
/// again on every connect, and a list changed through the API since must stay). Returns the new
/// version, or `None` when it was the message already applied.
pub async fn replace_from_message(
    outbox: &Outbox,
    route: Option<Route>,
    stops: Vec<Stop>,
    digest: [u8; 32],
) -> Result<Option<u64>, ReplaceError> {
    let t = tree(outbox)?;
    if t.get("mqtt")?.is_some_and(|d| d.as_ref() == digest) {
        return Ok(None);
    }
    let version = replace(outbox, route, stops, None).await?;
    t.insert("mqtt", digest)?;
    t.commit().await?;
    Ok(Some(version))
}
