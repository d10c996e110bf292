//! The odometer's loop: feeds [`Odometer`] the live fix and saves the total in the store's
//! `odometer` tree (key `total_m`, f64 big-endian), durably, every [`SAVE_EVERY_M`] and at
//! shutdown. [`OdometerHandle`] is what status, metrics and taps read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Odometer, SAVE_EVERY_M, Step};
use crate::gps::LatestFix;
use crate::outbox::{Outbox, OutboxError, PartTree};

/// The tree and its key.
const TREE: &str = "odometer";
const KEY: &str = "total_m";

/// How many recent readings are kept for [`OdometerHandle::at`] (a step is at least 25 m: the
/// last 12 km or more of driving).
const RECENT: usize = 512;

/// What the odometer says now. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct OdometerHandle {
    state: Arc<Mutex<Odometer>>,
    /// The total after each step, with the receipt time of the fix that made it.
    recent: Arc<Mutex<VecDeque<(Instant, f64)>>>,
    tree: PartTree,
}

impl OdometerHandle {
    /// The odometer kept in `outbox` (0 m in a fresh store).
    pub fn open(outbox: &Outbox) -> Result<OdometerHandle, OutboxError> {
        let tree = outbox.part_tree(TREE)?;
        let total = tree.get(KEY)?.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok()).map_or(0.0, f64::from_be_bytes);
        let total = if total.is_finite() && total >= 0.0 { total } else { 0.0 };
        Ok(OdometerHandle { state: Arc::new(Mutex::new(Odometer::new(total))), recent: Arc::default(), tree })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Odometer) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Metres driven, to 0.1 m.
    pub fn total_m(&self) -> f64 {
        (self.with(|o| o.total_m()) * 10.0).round() / 10.0
    }

    /// What it read when the fix received at `at` was counted (an event recorded later than it
    /// happened, like a departure, carries the odometer of its moment), to 0.1 m.
    pub fn at(&self, at: Instant) -> f64 {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let then = match recent.iter().rev().find(|(t, _)| *t <= at) {
            Some((_, total)) => *total,
            // Older than what is kept: the oldest kept (or, with nothing kept, nothing moved since).
            None => recent.front().map_or_else(|| self.with(|o| o.total_m()), |(_, total)| *total),
        };
        (then * 10.0).round() / 10.0
    }

    fn note(&self, at: Instant, total: f64) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back((at, total));
    }

    /// Trips started since the agent started.
    pub fn trips(&self) -> u64 {
        self.with(|o| o.trips())
    }

    /// Whether a trip is under way.
    pub fn driving(&self) -> bool {
        self.with(|o| o.driving())
    }

    async fn save(&self, total: f64) -> Result<(), OutboxError> {
        self.tree.insert(KEY, total.to_be_bytes())?;
        self.tree.commit().await
    }
}

/// Runs until shutdown. `time_scale`: route seconds per real second (a sped-up replay or
/// simulation), so that speeds and the trip rule are in the route's time.
pub async fn run(latest: LatestFix, handle: OdometerHandle, time_scale: f64, shutdown: CancellationToken) {
    let mut changes = latest.subscribe();
    let origin = Instant::now();
    let scale = if time_scale.is_finite() && time_scale > 0.0 { time_scale } else { 1.0 };
    let mut saved = handle.with(|o| o.total_m());
    let mut first = true;
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            _ = shutdown.cancelled() => break,
        }
        let Some(r) = latest.live() else { continue };
        let Some((lat, lng)) = r.fix.position() else { continue };
        let at = origin + r.at.saturating_duration_since(origin).mul_f64(scale);
        let step = Step { at, lat, lng, accuracy_m: r.fix.accuracy_m().unwrap_or(0.0), speed_mps: r.fix.speed_mps };
        let (added, total) = handle.with(|o| (o.feed(step), o.total_m()));
        if added > 0.0 || first {
            handle.note(r.at, total);
            first = false;
        }
        if total - saved >= SAVE_EVERY_M {
            match handle.save(total).await {
                Ok(()) => saved = total,
                Err(e) => tracing::warn!(error = %e, "odometer: could not save the total"),
            }
        }
    }
    let total = handle.with(|o| o.total_m());
    if total > saved {
        if let Err(e) = handle.save(total).await {
            tracing::warn!(error = %e, "odometer: could not save the total at shutdown");
        }
    }
}
