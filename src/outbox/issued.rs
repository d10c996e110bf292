//! Which sequences were ever handed out: the driver page asks about a sequence (`GET
//! /api/v1/deliveries/{sequence}`), and one no event ever had must be told apart from one
//! delivered long ago, across restarts and crashes.

use std::sync::atomic::Ordering;

use super::{Outbox, OutboxError};

impl Outbox {
    /// Whether sequence `seq` was ever handed out to an event (stored now or delivered since);
    /// `false`: no event ever had it. Exact across restarts and crashes: an event is removed
    /// only after `meta`'s `issued` covers its sequence ([`Outbox::before_removing`]), so at
    /// open the last stored event and that mark bound every sequence handed out before.
    pub fn issued(&self, seq: u64) -> bool {
        seq < self.inner.issued_below.load(Ordering::Relaxed)
    }

    /// Called before event `seq` is removed from `events`: `meta`'s `issued` mark covers it
    /// first (written before the removal, so a crash that keeps the removal keeps the mark).
    pub(super) fn before_removing(&self, seq: u64) -> Result<(), OutboxError> {
        let i = &self.inner;
        if seq >= i.issued_noted.load(Ordering::Relaxed) {
            let mark = i.issued_below.load(Ordering::Relaxed).max(seq + 1);
            i.meta.insert("issued", &mark.to_be_bytes())?;
            i.issued_noted.fetch_max(mark, Ordering::Relaxed);
        }
        Ok(())
    }
}
