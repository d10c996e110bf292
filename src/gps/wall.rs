//! The system clock (`CLOCK_REALTIME`), read in one place so that a test can make it jump.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// The system clock (`CLOCK_REALTIME`) as the agent reads it. Every reading the GPS side and
/// [`Clock`](super::clock::Clock) take goes through one of these, so that a test can make it jump days ahead or
/// behind, as a Pi's clock does after a `fake-hwclock` restore or a bad NTP answer. Clones share
/// one offset; the default is the system clock as it is.
#[derive(Debug, Clone, Default)]
pub struct Wall {
    /// Milliseconds added to every reading (only ever set by [`Wall::jump`]).
    offset_ms: Arc<AtomicI64>,
}

impl Wall {
    /// The system clock, read as it is.
    pub fn system() -> Self {
        Self::default()
    }

    /// Now by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves every later reading by `by` (ahead when positive): a clock that jumped.
    pub fn jump(&self, by: chrono::Duration) {
        self.offset_ms.fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }
}
