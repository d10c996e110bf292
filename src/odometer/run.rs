//! The odometer's loop: feeds [`Odometer`] the live fix and saves the total in the store's
//! `odometer` tree (key `total_m`, f64 big-endian), durably, every [`SAVE_EVERY_M`] and at
//! shutdown. [`OdometerHandle`] is what status, metrics and taps read.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Odometer, SAVE_EVERY_M, Step};
use crate::gps::LatestFix;
use crate::outbox::{Outbox, OutboxError, PartTree};

/// The tree and its key.
const TREE: &str = "odometer";
const KEY: &str = "total_m";

/// What the odometer says now. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct OdometerHandle {
    state: Arc<Mutex<Odometer>>,
    tree: PartTree,
}

impl OdometerHandle {
    /// The odometer kept in `outbox` (0 m in a fresh store).
    pub fn open(outbox: &Outbox) -> Result<OdometerHandle, OutboxError> {
        let tree = outbox.part_tree(TREE)?;
        let total = tree.get(KEY)?.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok()).map_or(0.0, f64::from_be_bytes);
        let total = if total.is_finite() && total >= 0.0 { total } else { 0.0 };
        Ok(OdometerHandle { state: Arc::new(Mutex::new(Odometer::new(total))), tree })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Odometer) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Metres driven, to 0.1 m.
    pub fn total_m(&self) -> f64 {
        (self.with(|o| o.total_m()) * 10.0).round() / 10.0
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
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            _ = shutdown.cancelled() => break,
        }
        let Some(r) = latest.live() else { continue };
        let Some((lat, lng)) = r.fix.position() else { continue };
        let at = origin + r.at.saturating_duration_since(origin).mul_f64(scale);
        let step = Step { at, lat, lng, accuracy_m: r.fix.accuracy_m().unwrap_or(0.0), speed_mps: r.fix.speed_mps };
        let total = handle.with(|o| {
            o.feed(step);
            o.total_m()
        });
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
