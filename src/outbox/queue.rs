//! One endpoint's deliveries: the handle a delivery loop holds. Its one [`Queue::settle`] call
//! records what an attempt came to (delivered, retry, parked, endpoint disabled) together with
//! the attempt's log entry, so that the loop decides and the store records in one place.

use super::{Attempt, DeliveryState, Outbox, OutboxError, Outgoing};

/// What an attempt means for the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// 2xx: the delivery goes, and the event with it when no other endpoint needs it.
    Delivered,
    /// A failure within the retry budget: the delivery stays with its new state.
    Retry(DeliveryState),
    /// The retry budget is spent: the delivery is parked until an operator retries it.
    Park(DeliveryState),
    /// 410 Gone: the endpoint is disabled (for this reason) until an operator enables it; the
    /// delivery stays as it was.
    Disable(String),
}

/// One endpoint's deliveries in the store. Clones share the store.
#[derive(Debug, Clone)]
pub struct Queue {
    outbox: Outbox,
    endpoint: String,
}

impl Outbox {
    /// The deliveries of `endpoint`.
    pub fn queue(&self, endpoint: &str) -> Queue {
        Queue { outbox: self.clone(), endpoint: endpoint.to_string() }
    }
}

impl Queue {
    /// The endpoint's name.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Records that delivery `seq` of `event` (read with [`Outbox::outgoing`]) was answered
    /// 2xx: [`Settle::Delivered`] without reading the event's record again.
    pub fn delivered(&self, seq: u64, event: &Outgoing) -> Result<(), OutboxError> {
        self.outbox.settle_delivered(&self.endpoint, seq, Some(&event.targets))
    }

    /// Records what the attempt on delivery `seq` came to, and `attempt` in the delivery log
    /// (failed attempts only: a success leaves nothing to diagnose). Not synced: losing it to a
    /// crash costs a retry, never an event.
    pub fn settle(&self, seq: u64, outcome: &Settle, attempt: Option<&Attempt>) -> Result<(), OutboxError> {
        let (o, name) = (&self.outbox, self.endpoint.as_str());
        match outcome {
            Settle::Delivered => o.delivered(name, seq)?,
            Settle::Retry(state) => o.update(name, seq, state)?,
            Settle::Park(state) => o.park(name, seq, state)?,
            Settle::Disable(reason) => o.disable(name, reason)?,
        }
        if let Some(a) = attempt.filter(|_| *outcome != Settle::Delivered) {
            o.log_attempt(a)?;
        }
        Ok(())
    }
}
