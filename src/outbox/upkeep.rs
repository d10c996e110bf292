//! The store's upkeep loop: whether the store is worth compacting, looked at off the async
//! workers; the compaction itself happens as the store reopens (see [`super::compact`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Outbox;

/// Looks at the store every `every` (see [`super::compact::Schedule`]) and notifies
/// `due` once, when reopening it would give disk space back.
pub async fn run(outbox: Outbox, due: Arc<tokio::sync::Notify>, every: Duration, shutdown: CancellationToken) {
    let mut schedule = super::compact::Schedule::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (removals, size) = (outbox.removals(), outbox.size_on_disk());
        if !schedule.scan_now(outbox.appends(), removals, size, outbox.budget()) {
            continue;
        }
        let o = outbox.clone();
        // The scan and, when it is due, the request's fsync: both off the async workers.
        let checked = tokio::task::spawn_blocking(move || {
            let (due, live) = o.compaction_due()?;
            if due {
                o.request_compaction()?;
            }
            Ok::<_, super::OutboxError>((due, live))
        });
        match checked.await {
            Ok(Ok((true, _))) => {
                tracing::info!(
                    size_on_disk = size,
                    "the outbox holds far more disk than records: restarting to compact it"
                );
                due.notify_one();
                return;
            }
            Ok(Ok((false, live))) => schedule.not_worth_it(removals, live.records, size),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not look at the outbox's size"),
            Err(e) => tracing::warn!(error = %e, "the outbox size check panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::EndpointFilter;
    use tokio::task::JoinSet;

    /// As the agent runs it.
    const EVERY: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn the_upkeep_asks_for_a_compaction_once_a_drained_store_is_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let endpoints = vec![EndpointFilter { name: "bo".into(), events: None, files_only: false }];
        let outbox = Outbox::open_with(dir.path(), endpoints, 16 << 20).unwrap();
        // The events go to the spool, which gives a segment's disk back as soon as its events are
        // delivered (here, as they are appended); what fills sled is their idempotency records,
        // a copy of each event kept a week.
        while outbox.size_on_disk() < 14 << 20 {
            let mut batch = JoinSet::new();
            for k in 0..32 {
                let o = outbox.clone();
                batch.spawn(async move {
                    let job = format!("J{k}");
                    let key = format!("k{}", o.appends());
                    o.append(&job, Some(&key), |seq| crate::event::StatusEvent {
                        sequence: seq,
                        job_id: job.clone(),
                        received_by: Some("r".repeat(20_000)),
                        ..crate::webhook::format::sample("van-17")
                    })
                    .await
                });
            }
            for a in batch.join_all().await {
                outbox.delivered("bo", a.unwrap().event.sequence).unwrap();
            }
        }
        let (due, shutdown) = (Arc::new(tokio::sync::Notify::new()), CancellationToken::new());
        let upkeep = tokio::spawn(run(outbox.clone(), due.clone(), EVERY, shutdown.clone()));
        let quiet = tokio::time::timeout(Duration::from_secs(600), due.notified()).await;
        assert!(quiet.is_err(), "full of live records (a week of keys): never worth compacting, however quiet");
        outbox.prune_idempotency(chrono::Utc::now() + chrono::Duration::days(8)).unwrap();
        tokio::time::timeout(3 * EVERY, due.notified())
            .await
            .expect("keys forgotten and quiet: compaction is asked for");
        tokio::time::timeout(Duration::from_secs(1), upkeep).await.expect("it asks once, then ends").unwrap();
    }
}
