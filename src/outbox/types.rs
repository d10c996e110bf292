//! What the outbox stores and answers with: a delivery's state, a logged attempt, a store loss,
//! an endpoint's filter, and the shapes of its answers.

use std::collections::HashSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Status, StatusEvent};

/// Delivery state of one event for one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// The event's job, so that per-job order is kept without reading the event.
    pub job_id: String,
    /// Attempts that reached the endpoint and failed (being offline does not count).
    pub attempts: u32,
    /// Sum of the backoff delays scheduled so far, ms: the retry budget is spent on this.
    pub waited_ms: u64,
    /// HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    /// What went wrong last.
    pub last_error: Option<String>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Uploads only: the event's files already uploaded (a retry resumes after them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uploaded: u32,
    /// A format that makes several requests of one event: those already delivered (a retry
    /// resumes after them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sent: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl DeliveryState {
    /// A delivery not yet attempted.
    pub fn new(job_id: &str) -> Self {
        Self {
            job_id: job_id.to_string(),
            attempts: 0,
            waited_ms: 0,
            last_status: None,
            last_error: None,
            last_attempt_at: None,
            uploaded: 0,
            sent: 0,
        }
    }
}

/// One delivery attempt, for the bounded log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// Endpoint name.
    pub endpoint: String,
    /// Event sequence.
    pub sequence: u64,
    /// When it started.
    pub at: DateTime<Utc>,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The error, when there was no 2xx.
    pub error: Option<String>,
    /// How long it took, ms.
    pub duration_ms: u64,
}

/// A store that could not be opened and was moved aside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreLoss {
    /// Where the old store now is.
    pub moved_to: PathBuf,
    /// Why it could not be opened.
    pub error: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// An endpoint's name and the statuses it wants (`None`: all).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointFilter {
    /// Endpoint name.
    pub name: String,
    /// Statuses delivered to it; `None` means every status.
    pub events: Option<HashSet<Status>>,
    /// Only events with attachments (the upload of their files).
    pub files_only: bool,
}

impl EndpointFilter {
    pub(super) fn wants(&self, event: &StatusEvent) -> bool {
        self.events.as_ref().is_none_or(|set| set.contains(&event.status))
            && (!self.files_only || !event.attachments.is_empty())
    }
}

/// The result of an append.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The stored event.
    pub event: StatusEvent,
    /// False when the Idempotency-Key matched an earlier event, which is returned instead.
    pub created: bool,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListState {
    /// Waiting or retrying.
    Pending,
    /// Parked after the retry budget.
    Failed,
}

/// One event's delivery to one endpoint, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The endpoint.
    pub endpoint: String,
    /// Pending or failed.
    pub state: ListState,
    /// Delivery state.
    pub delivery: DeliveryState,
    /// The event, if readable.
    pub event: Option<StatusEvent>,
}

/// Counts for status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Depth {
    /// Events waiting or retrying.
    pub pending: u64,
    /// Events parked as failed.
    pub failed: u64,
    /// Sequence of the oldest pending event.
    pub oldest_sequence: Option<u64>,
}
