//! What each endpoint's loop is doing, shared with status and metrics.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::outbox::Attempt;

/// What an endpoint's loop is doing, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct EndpointStatus {
    /// False while the endpoint cannot be reached (no attempts are being spent).
    pub reachable: bool,
    /// Set when the endpoint answered 410; an operator must enable it.
    pub disabled: Option<String>,
    /// Deliveries in flight.
    pub in_flight: usize,
    /// Last 2xx.
    pub last_delivery_at: Option<DateTime<Utc>>,
    /// Last failure, with when.
    pub last_error: Option<String>,
    /// When the last failure was.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Deliveries made since start.
    pub delivered: u64,
    /// Failed attempts since start.
    pub failed_attempts: u64,
    /// The newest attempts, successes included, newest last (bounded; see [`RECENT`]).
    pub recent: VecDeque<Attempt>,
}

/// Attempts kept in memory per endpoint for status. Failed attempts are also written to the
/// outbox's persistent log; successes only here, because writing each one to sled cost a fifth
/// of the drain rate (measured) and a delivered event leaves nothing to diagnose.
pub const RECENT: usize = 50;

impl EndpointStatus {
    pub(super) fn remember(&mut self, a: Attempt) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(a);
    }
}

/// Live status of every endpoint loop; a cheaply cloned handle. The mutex is never held across
/// an `.await`.
#[derive(Debug, Clone, Default)]
pub struct WebhookStatus(Arc<Mutex<HashMap<String, EndpointStatus>>>);

impl WebhookStatus {
    /// A copy of one endpoint's status.
    pub fn get(&self, name: &str) -> EndpointStatus {
        self.0.lock().map(|m| m.get(name).cloned().unwrap_or_default()).unwrap_or_default()
    }

    /// Whether the endpoint was reachable at its last attempt (false for an unknown one). Asked
    /// once per delivery, so it reads in place: [`WebhookStatus::get`] copies the recent attempts.
    pub fn reachable(&self, name: &str) -> bool {
        self.0.lock().map(|m| m.get(name).is_some_and(|s| s.reachable)).unwrap_or(false)
    }

    pub(super) fn update(&self, name: &str, f: impl FnOnce(&mut EndpointStatus)) {
        if let Ok(mut m) = self.0.lock() {
            match m.get_mut(name) {
                Some(s) => f(s),
                None => f(m.entry(name.to_string()).or_default()),
            }
        }
    }
}
