//! Taps the geofence makes: follows the live fix, feeds each stop's [`Fence`] (the decision is
//! `stops::geofence`, pure), and records what it decides as events (`source: "geofence"`): `arrived` unless the driver already tapped it (or
//! finished the job), and `departed` once the van has left a stop it was at.

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;

use super::{Tap, Taps};
use crate::event::{Source, Status};
use crate::gps::LatestFix;
use crate::outbox::Outbox;

use crate::stops::geofence::{Decision, Fence, Rules, Sample};
use crate::stops::{StopState, state};

fn tap(status: Status) -> Tap {
    Tap { status, reason_code: None, reason: None, received_by: None, note: None, items: Vec::new(), proof: Vec::new() }
}

/// Runs until shutdown: one [`Fence`] per stop with coordinates, rebuilt when the list changes.
pub async fn run(
    taps: Taps,
    outbox: Outbox,
    latest: LatestFix,
    rules: Rules,
    default_radius_m: f64,
    shutdown: CancellationToken,
) {
    let mut changes = latest.subscribe();
    let mut fences: HashMap<String, Fence> = HashMap::new();
    let mut version = None;
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let list = crate::stops::store::current(&outbox);
        if version != Some(list.version) {
            version = Some(list.version);
            fences = list
                .stops
                .iter()
                .filter_map(|s| {
                    Some((s.job_id.clone(), Fence::new(s.lat?, s.lng?, s.radius_m.unwrap_or(default_radius_m))))
                })
                .collect();
        }
        // A stale fix decides nothing: only the live one is fed.
        let Some(r) = latest.live() else { continue };
        let Some(sample) = sample(&r) else { continue };
        for (job, fence) in fences.iter_mut() {
            let Some(decision) = fence.feed(sample, &rules) else { continue };
            let h = taps.history().clone();
            let j = job.clone();
            let history = tokio::task::spawn_blocking(move || h.job(&j, u64::MAX)).await.unwrap_or_default();
            let (now, _) = state(&history);
            let status = match decision {
                // The driver tapped it already, or finished the job: nothing to add.
                Decision::Arrived(_) if matches!(now, StopState::Pending | StopState::Heading) => Status::Arrived,
                Decision::Departed(_) if matches!(now, StopState::Arrived | StopState::Done) => Status::Departed,
                _ => continue,
            };
            // A departure happened where and when the van left the fence (the dwell outside only
            // confirmed it): stamped with that time and place.
            let when = match decision {
                Decision::Departed(left) => Some(taps.then(&left, r.fix.mode)),
                Decision::Arrived(_) => None,
            };
            match taps.record_with(job, tap(status), None, Source::Geofence, when).await {
                Ok(a) => {
                    tracing::info!(job_id = %job, status = status.as_str(), id = %a.event.id, "geofence: recorded")
                }
                Err(e) => {
                    tracing::warn!(job_id = %job, status = status.as_str(), error = %e, "geofence: could not record")
                }
            }
        }
    }
}

/// A live fix as a geofence sees it; `None` without a position.
pub(crate) fn sample(r: &crate::gps::latest::Received) -> Option<Sample> {
    let (lat, lng) = r.fix.position()?;
    Some(Sample {
        at: r.at,
        lat,
        lng,
        accuracy_m: r.fix.accuracy_m().unwrap_or(0.0),
        speed_mps: r.fix.speed_mps,
        live: true,
    })
}

/// An event recorded later than it happened (a departure: when the van left the fence, which
/// the dwell outside only confirmed): its time, place and odometer.
#[derive(Debug, Clone, PartialEq)]
pub struct Then {
    /// When it happened (the stamp still never goes back past an earlier event's).
    pub at: chrono::DateTime<chrono::Utc>,
    /// Where.
    pub location: crate::event::Location,
    /// The odometer then, when the agent runs one.
    pub odometer_m: Option<f64>,
}

impl Taps {
    /// When and where sample `s` was taken (`mode`: the fix's), and the odometer then.
    pub fn then(&self, s: &Sample, mode: crate::gps::Mode) -> Then {
        let age = tokio::time::Instant::now().saturating_duration_since(s.at);
        let at = self.clock().now().0 - chrono::Duration::from_std(age).unwrap_or_default();
        let location = crate::event::Location::tidy(crate::event::Location {
            lat: s.lat,
            lng: s.lng,
            accuracy_m: (s.accuracy_m > 0.0).then_some(s.accuracy_m),
            fix_age_s: 0.0,
            speed_mps: s.speed_mps,
            course_deg: None,
            mode,
        });
        Then { at, location, odometer_m: self.odometer.as_ref().map(|o| o.at(s.at)) }
    }
}
