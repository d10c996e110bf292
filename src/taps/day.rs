//! The day's loop (the route's time, and its depot): follows the live fix, counts the day's time (driving, stopped, idle, on a
//! break: [`super::Day::feed`]) and saves it every [`super::SAVE_EVERY`], and, when the day's
//! list has a depot, records `route_started` when the van leaves it and `route_ended` when it
//! comes back after at least one stop (`source: "geofence"`), unless the driver tapped first.
//! The depot's fence is a stop's [`Fence`] (the decisions are `stops::geofence`, pure).

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Taps;
use crate::event::{Source, Status};
use crate::gps::LatestFix;
use crate::outbox::Outbox;
use crate::route::{SAVE_EVERY, Whereabouts};
use crate::stops::geofence::{Decision, Fence, Rules, distance_m};

/// What the loop was told.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The geofence's rules (already at the source's time scale).
    pub rules: Rules,
    /// A stop's (and the depot's) radius when it gives none, metres.
    pub default_radius_m: f64,
    /// Route seconds per real second (a sped-up replay or simulation).
    pub time_scale: f64,
    /// Record `route_started` and `route_ended` at the depot (`[stops] auto_arrived`).
    pub depot: bool,
}

/// Runs until shutdown.
pub async fn run(taps: Taps, outbox: Outbox, latest: LatestFix, settings: Settings, shutdown: CancellationToken) {
    let scale = if settings.time_scale.is_finite() && settings.time_scale > 0.0 { settings.time_scale } else { 1.0 };
    let route = taps.route().clone();
    let mut changes = latest.subscribe();
    let mut version = None;
    let mut depot: Option<Fence> = None;
    let mut last: Option<Instant> = None;
    let mut unsaved = Duration::ZERO;
    // When the van last stood at the depot, and the odometer then: a route the depot's fence
    // starts is driven from there (its distance and driving time count from then; the event
    // itself is stamped where and when the van left the fence).
    let mut stood: Option<(Instant, Option<f64>)> = None;
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            _ = shutdown.cancelled() => break,
        }
        let list = crate::stops::store::current(&outbox);
        let id = list.route.as_ref().map(|r| r.id.clone());
        let Some(r) = latest.live() else { continue };
        let Some((lat, lng)) = r.fix.position() else { continue };
        let radius = |given: Option<f64>| given.unwrap_or(settings.default_radius_m);
        let at_depot = list.route.as_ref().and_then(|r| r.depot).map(|d| (d, radius(d.radius_m)));
        if version != Some(list.version) {
            version = Some(list.version);
            depot = at_depot.filter(|_| settings.depot).map(|(d, radius_m)| {
                let mut fence = Fence::new(d.lat, d.lng, radius_m);
                // A van that is at the depot when the list comes has not left it yet.
                if distance_m((d.lat, d.lng), (lat, lng)) <= radius_m {
                    fence.mark_arrived();
                }
                fence
            });
        }

        // The time counters, in route seconds.
        let span = last.map_or(Duration::ZERO, |l| r.at.saturating_duration_since(l).mul_f64(scale));
        last = Some(r.at);
        let moving = r.fix.speed_mps.is_some_and(|v| v >= crate::odometer::MOVING_MPS);
        let near = |(slat, slng): (f64, f64), radius_m: f64| distance_m((slat, slng), (lat, lng)) <= radius_m;
        let where_ = if moving {
            Whereabouts::Moving
        } else if at_depot.is_some_and(|(d, radius_m)| near((d.lat, d.lng), radius_m))
            || list.stops.iter().any(|s| s.lat.zip(s.lng).is_some_and(|p| near(p, radius(s.radius_m))))
        {
            Whereabouts::AtAStop
        } else {
            Whereabouts::Elsewhere
        };
        route.update(id.as_deref(), |d| d.feed(span, where_));
        if !moving && at_depot.is_some_and(|(d, radius_m)| near((d.lat, d.lng), radius_m)) {
            stood = Some((r.at, taps.odometer.as_ref().map(|o| o.at(r.at))));
        }
        unsaved += span;
        if unsaved >= SAVE_EVERY {
            unsaved = Duration::ZERO;
            if let Err(e) = route.save().await {
                tracing::warn!(error = %e, "route: could not save the day");
            }
        }

        // The depot.
        let Some(fence) = depot.as_mut() else { continue };
        let Some(sample) = super::watch::sample(&r) else { continue };
        let Some(decision) = fence.feed(sample, &settings.rules) else { continue };
        let day = route.day(id.as_deref());
        // A start is recorded when the van left the fence: the time since, it was driving.
        let mut since_left = Duration::ZERO;
        let (status, when) = match decision {
            Decision::Departed(left) if day.started.is_none() => {
                let mut then = taps.then(&left, r.fix.mode);
                let from = match stood {
                    Some((at, odometer_m)) if at <= left.at => {
                        then.odometer_m = odometer_m.or(then.odometer_m);
                        at
                    }
                    _ => left.at,
                };
                since_left = r.at.saturating_duration_since(from).mul_f64(scale);
                (Status::RouteStarted, Some(then))
            }
            Decision::Arrived(_) if day.under_way() => {
                let (h, l) = (taps.history().clone(), list.clone());
                let visited =
                    tokio::task::spawn_blocking(move || crate::route::visited_any(&l.stops, |j| h.job(j, u64::MAX)))
                        .await
                        .unwrap_or(false);
                if !visited {
                    continue;
                }
                (Status::RouteEnded, None)
            }
            _ => continue,
        };
        match taps.record_route(status, None, Source::Geofence, when).await {
            Ok(a) => {
                route.update(id.as_deref(), |d| d.driving_s += since_left.as_secs_f64());
                tracing::info!(status = status.as_str(), id = %a.event.id, "geofence at the depot: recorded")
            }
            // The driver tapped it in the meantime: nothing to add.
            Err(crate::taps::RecordError::Invalid(e)) => {
                tracing::debug!(status = status.as_str(), error = %e, "geofence at the depot: not recorded")
            }
            Err(e) => tracing::warn!(status = status.as_str(), error = %e, "geofence at the depot: could not record"),
        }
    }
    if let Err(e) = route.save().await {
        tracing::warn!(error = %e, "route: could not save the day at shutdown");
    }
}
