//! Route events: the day's route started, loading and unloading done, breaks, ended (see
//! [`crate::route`]). Made here like a tap, stored under [`ROUTE_KEY`] with the day they leave
//! behind (in the event's transaction), and acknowledged only once on disk.

use super::watch::Then;
use super::{RecordError, Taps};
use crate::event::{ROUTE_KEY, RouteMark, Source, Status};
use crate::input::invalid;
use crate::outbox::Appended;

impl Taps {
    /// Records route event `status` (one of [`Status::ROUTE`]) if the day allows it now (see
    /// [`crate::route::Day::check`]); `route_ended` carries the day's summary. A repeated
    /// Idempotency-Key answers with the first event. `when`: as [`Taps::record_with`].
    pub async fn record_route(
        &self,
        status: Status,
        idempotency_key: Option<&str>,
        source: Source,
        when: Option<Then>,
    ) -> Result<Appended, RecordError> {
        let _one_at_a_time = self.route.lock().await;
        let repeated = match idempotency_key {
            Some(k) => self.outbox.first_with_key(ROUTE_KEY, k)?.is_some(),
            None => false,
        };
        let list = crate::stops::store::current(&self.outbox);
        let id = list.route.as_ref().map(|r| r.id.clone());
        let date = list.route.as_ref().map(|r| r.date);
        let day = self.route.day(id.as_deref());
        if !repeated {
            day.check(status)?;
        }
        let counts = if status == Status::RouteEnded {
            let (h, stops) = (self.history.clone(), list.clone());
            tokio::task::spawn_blocking(move || crate::route::count(&stops.stops, |job| h.job(job, u64::MAX)))
                .await
                .unwrap_or_default()
        } else {
            Default::default()
        };
        let (then, location) = match &when {
            Some(w) => (Some(w.at), Some(w.location.clone())),
            None => (None, self.location()),
        };
        let odometer =
            when.and_then(|w| w.odometer_m).or_else(|| self.odometer.as_ref().map(|o| o.total_m())).unwrap_or(0.0);
        let appended = self
            .outbox
            .append_with(
                ROUTE_KEY,
                idempotency_key,
                |sequence| {
                    let mut e = self.event(sequence, ROUTE_KEY, status, then, location);
                    e.odometer_m = e.odometer_m.map(|_| odometer);
                    e.source = source;
                    let summary =
                        (status == Status::RouteEnded).then(|| day.summary(e.occurred_at, odometer, counts)).flatten();
                    e.route = Some(RouteMark { id: id.clone(), date, summary });
                    e
                },
                |event, _| {
                    let mut d = day.clone();
                    d.apply(event.status, event.occurred_at, odometer);
                    vec![self.route.alongside(&d)]
                },
            )
            .await?;
        let e = &appended.event;
        if appended.created {
            // The counters in memory may have moved on since `day` was read: applied to them.
            self.route.update(id.as_deref(), |d| d.apply(e.status, e.occurred_at, odometer));
            tracing::info!(status = e.status.as_str(), sequence = e.sequence, id = %e.id, source = ?source, "route event recorded");
        } else if e.status != status {
            return Err(invalid(
                "Idempotency-Key",
                format!("was used for another route event ({}); a new one needs a new key", e.status.as_str()),
            )
            .into());
        }
        Ok(appended)
    }
}
