//! Status webhooks: one delivery loop per configured endpoint over the outbox, at least once,
//! in order per job, with bounded concurrency, retries with backoff and jitter, and no attempts
//! spent while the endpoint cannot be reached at all.
//!
//! Each loop keeps a window of the endpoint's oldest pending deliveries in memory, grouped by
//! job: only the oldest event of a job is ever in flight, so events of one job arrive in the
//! order they happened, while different jobs proceed independently (up to `concurrency` at
//! once). A job whose event is parked (retry budget spent) holds its later events back until an
//! operator retries it, so order is never broken.

mod endpoint;
pub mod format;
pub mod schedule;
pub(crate) mod send;
pub mod settings;
pub mod sign;
mod status;
mod window;

pub use endpoint::Endpoint;
pub use send::{attempt, authorize, classify_error, client, redacted_url, request};
pub use status::{EndpointStatus, RECENT, WebhookStatus};
use window::Window;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::event::StatusEvent;
use crate::gps::clock::Clock;
use crate::history::History;
use crate::outbox::{Attempt, DeliveryState, Outbox, OutboxError, Outgoing, Queue, Record, Settle};
use crate::reconnect::{Failure, Reconnect};
use schedule::Outcome;

/// Deliveries kept in memory per endpoint; the rest wait on disk.
const WINDOW: usize = 1024;

/// Everything a delivery loop needs.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The store.
    pub outbox: Outbox,
    /// What each job went through, for formats that send it.
    pub history: History,
    /// The HTTP client.
    pub client: reqwest::Client,
    /// For `webhook-timestamp` (GPS time when the system clock is wrong).
    pub clock: Clock,
    /// Where the loop reports.
    pub status: WebhookStatus,
    /// The van's time zone, for formats with local times.
    pub tz: crate::zone::Zone,
    /// Runs jq programs (`antsroute`, `jq`), bounded.
    pub runner: format::jq::Runner,
    /// The client for plain `http://` endpoints, on the agent's own counted sockets.
    pub direct: crate::link::direct::Direct,
    /// The links' usage: why a connection through the metering proxy failed.
    pub meter: crate::link::Meter,
}

/// What a delivery loop does with each event: the loop (window, order per job, concurrency,
/// retries, parking, offline probing) is the same for every target.
#[derive(Debug, Clone)]
pub enum Target {
    /// POST the event in the endpoint's format: a status webhook.
    Post {
        /// When the event's files are uploaded by another outbox endpoint: the webhook waits
        /// for them, and gives their public URLs.
        files: Option<Files>,
    },
    /// Anything else an outbox endpoint stands for (the files' uploads, which `app` wires).
    Other(Arc<dyn Deliver>),
}

/// How a webhook's body refers to its event's files, uploaded by another outbox endpoint.
#[derive(Clone)]
pub struct Files {
    /// The outbox endpoint that uploads them: a webhook goes only once it has, so that every
    /// URL in it resolves.
    pub uploaded_by: String,
    /// The event as receivers are given it, each file with its public URL.
    pub public: Arc<dyn Fn(&StatusEvent) -> StatusEvent + Send + Sync>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").field("uploaded_by", &self.uploaded_by).finish_non_exhaustive()
    }
}

/// One attempt at delivering an event to a target other than a webhook's POST.
pub trait Deliver: std::fmt::Debug + Send + Sync + 'static {
    /// Tries once; progress that a retry may resume from goes in `state`.
    fn attempt<'a>(
        &'a self,
        client: &'a reqwest::Client,
        ep: &'a Endpoint,
        event: &'a StatusEvent,
        state: &'a mut DeliveryState,
        at: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>>;
}

/// Runs the delivery loop of `ep` until shutdown.
///
/// The loop keeps the window (which event of which job goes next) and polls the deliveries in
/// flight itself: each reads its event, sends it and records the outcome in the store. They are
/// futures of this task, not tasks of their own: a delivery is short and its store work is
/// synchronous, so a task each only cost a spawn, clones of everything it uses and a wake-up
/// across threads per event (issue 29's drain profile).
pub async fn run(
    ep: Arc<Endpoint>,
    target: Target,
    deps: Deps,
    shutdown: CancellationToken,
) -> Result<(), OutboxError> {
    let name = ep.name.clone();
    let outbox = deps.outbox.clone();
    let status = deps.status.clone();
    let waker = outbox
        .waker(&ep.name)
        .ok_or_else(|| OutboxError::NotFound(format!("endpoint {} is not one of the store's", ep.name)))?;
    let mut window = Window::blocking(outbox.blocked_jobs(&name)?);
    let queue = outbox.queue(&name);
    // The records the window's refill read, taken by the delivery of each: a retry reads its
    // event again.
    let mut records: HashMap<u64, Record> = HashMap::new();
    let mut inflight = FuturesUnordered::new();
    let mut offline_until: Option<Instant> = None;
    let mut reconnect = Reconnect::default();
    let mut refill = true;
    let mut reachable = true;
    status.update(&name, |s| {
        s.reachable = true;
        s.disabled = outbox.disabled(&name);
    });
    loop {
        let disabled = outbox.disabled(&name);
        if refill && window.len() < WINDOW {
            window.blocked = outbox.blocked_jobs(&name)?;
            let room = WINDOW - window.len();
            // Only events on disk: one still waiting for its fsync is not acknowledged yet, and
            // a crash could take it back after the receiver had it (a delivery nobody made).
            let skip = |s| window.loaded.contains(&s) || !outbox.is_flushed(s);
            for (seq, state, record) in outbox.pending_records(&name, None, room, skip)? {
                window.add(seq, state);
                if window.loaded.contains(&seq) {
                    records.insert(seq, record);
                }
            }
            // Those the window let go of (blocked jobs) are read again if they come back.
            records.retain(|s, _| window.loaded.contains(s));
            refill = false;
        }
        let now = Instant::now();
        let next_timer = window.due(now);
        if offline_until.is_some_and(|t| t <= now) {
            offline_until = None;
        }
        // While offline, one probe at a time; otherwise up to the endpoint's concurrency.
        let limit = if offline_until.is_some() {
            0
        } else if reachable {
            ep.delivery.concurrency
        } else {
            1
        };
        while disabled.is_none() && inflight.len() < limit {
            let Some((seq, state)) = window.take() else { break };
            let record = records.remove(&seq);
            inflight.push(deliver(&ep, &target, &deps, &queue, (seq, record), state));
        }
        status.update(&name, |s| {
            s.in_flight = inflight.len();
            if s.disabled != disabled {
                s.disabled = disabled.clone();
            }
        });
        let wake_at = [next_timer, offline_until].into_iter().flatten().min();
        tokio::select! {
            Some(settled) = inflight.next() => {
                let Settled { job, effect } = settled?;
                match effect {
                    Effect::Done => window.done(&job),
                    Effect::Retry { state, delay } => window.delay(&job, state, Instant::now() + delay),
                    Effect::Parked => window.block(&job),
                    Effect::Requeue { state } => window.requeue(&job, state),
                    Effect::Hold { state } => {
                        window.delay(&job, state, Instant::now() + HOLD);
                        continue;
                    }
                    Effect::Offline { state, failure } => {
                        window.requeue(&job, state);
                        offline_until = Some(Instant::now() + reconnect.after(failure, crate::reconnect::jitter()));
                        reachable = false;
                        continue;
                    }
                }
                reconnect.connected();
                reachable = true;
                if window.len() < WINDOW / 2 {
                    refill = true;
                }
                if inflight.is_empty() {
                    // A pause: what was delivered is written down (see `Outbox::write_acks`).
                    outbox.write_acks()?;
                }
            }
            _ = async { match wake_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {}
            _ = waker.notified() => { refill = true; }
            _ = shutdown.cancelled() => break,
        }
    }
    // In-flight requests are dropped: at least once means they are sent again after restart.
    drop(inflight);
    Ok(())
}

/// What a finished delivery means for its job in the window.
enum Effect {
    /// Delivered (or nothing left to deliver): the job's next event may go.
    Done,
    /// Failed: try again after `delay`.
    Retry { state: DeliveryState, delay: Duration },
    /// Retry budget spent: parked; the job waits for an operator.
    Parked,
    /// Not attempted (endpoint disabled): back to ready.
    Requeue { state: DeliveryState },
    /// The endpoint could not be reached: back to ready, and probe.
    Offline { state: DeliveryState, failure: Failure },
    /// Not attempted: the event's files are not all uploaded yet; look again after [`HOLD`].
    Hold { state: DeliveryState },
}

/// How often a webhook held back for its event's uploads looks again.
const HOLD: Duration = Duration::from_secs(1);

struct Settled {
    job: String,
    effect: Effect,
}

/// One delivery: read the event, send it, record the outcome in the store.
async fn deliver(
    ep: &Endpoint,
    target: &Target,
    deps: &Deps,
    queue: &Queue,
    (seq, record): (u64, Option<Record>),
    mut state: DeliveryState,
) -> Result<Settled, OutboxError> {
    let Deps { outbox, history, client, direct, clock, status, tz, runner, meter } = deps;
    let job = state.job_id.clone();
    let outgoing = match record {
        Some(r) => outbox.outgoing_in(seq, r)?,
        None => outbox.outgoing(seq)?,
    };
    let Some(outgoing) = outgoing else {
        // Unreadable or gone: nothing to deliver; drop the delivery.
        outbox.delivered(&ep.name, seq)?;
        return Ok(Settled { job, effect: Effect::Done });
    };
    let event = &outgoing.event;
    let (at, _) = clock.now();
    let started = Instant::now();
    let outcome = match &target {
        Target::Other(t) => t.attempt(client, ep, event, &mut state, at).await,
        Target::Post { files } => {
            let history = if ep.format.needs_history() { history.job(&state.job_id, seq) } else { Vec::new() };
            let list = ep.format.needs_stop().then(|| crate::stops::store::current(outbox));
            let stop = list.as_ref().and_then(|l| l.stops.iter().find(|s| s.job_id == job));
            let ctx = format::Context { tz: *tz, history: &history, stop };
            let sent = match files {
                Some(f) => {
                    if !event.attachments.is_empty() && outbox.awaits(&f.uploaded_by, seq) {
                        // Every URL in a webhook must resolve: its files go first.
                        return Ok(Settled { job, effect: Effect::Hold { state } });
                    }
                    std::borrow::Cow::Owned((f.public)(event))
                }
                None => std::borrow::Cow::Borrowed(event),
            };
            match format::render(&ep.format, &sent, &ctx, runner).await {
                Ok(outs) => attempt(client, direct, ep, &outs, &mut state.sent, at).await,
                Err(e) => Outcome::Park(e.to_string()),
            }
        }
    };
    let outcome = match outcome {
        // A refused tunnel says no more than that; the metering proxy knows why.
        Outcome::Offline(e, f @ crate::reconnect::Failure::Unreachable) => {
            Outcome::Offline(meter.dial_error(&ep.url).unwrap_or(e), f)
        }
        other => other,
    };
    let effect = settle(ep, queue, status, seq, state, &outgoing, outcome, started.elapsed(), at)?;
    Ok(Settled { job, effect })
}

/// Records an attempt's outcome in the store and in status; says what the window must do.
#[allow(clippy::too_many_arguments)]
fn settle(
    ep: &Endpoint,
    queue: &Queue,
    status: &WebhookStatus,
    seq: u64,
    mut state: DeliveryState,
    outgoing: &Outgoing,
    outcome: Outcome,
    took: Duration,
    at: DateTime<Utc>,
) -> Result<Effect, OutboxError> {
    let name = &ep.name;
    let job = &outgoing.event.job_id;
    let mut log = Attempt {
        endpoint: name.clone(),
        sequence: seq,
        at,
        status: None,
        error: None,
        duration_ms: took.as_millis() as u64,
    };
    if !matches!(outcome, Outcome::Offline(..)) && !status.reachable(name) {
        tracing::info!(endpoint = %name, "endpoint reachable again");
    }
    let effect = match outcome {
        Outcome::Delivered(_) | Outcome::Filtered => {
            queue.delivered(seq, outgoing)?;
            let code = match outcome {
                Outcome::Delivered(code) => code,
                _ => {
                    tracing::info!(endpoint = %name, sequence = seq, job_id = %job, "the transform made no request: nothing sent");
                    return Ok(Effect::Done);
                }
            };
            log.status = Some(code);
            tracing::info!(endpoint = %name, sequence = seq, job_id = %job, status = code, "delivered");
            status.update(name, |s| {
                s.reachable = true;
                s.last_delivery_at = Some(at);
                s.delivered += 1;
                s.remember(log);
            });
            return Ok(Effect::Done);
        }
        Outcome::Offline(error, failure) => {
            if status.reachable(name) {
                tracing::warn!(endpoint = %name, %error, "endpoint unreachable; holding deliveries and probing (no attempts spent)");
            }
            status.update(name, |s| {
                s.reachable = false;
                s.last_error = Some(format!("unreachable: {error}"));
                s.last_error_at = Some(at);
            });
            return Ok(Effect::Offline { state, failure });
        }
        Outcome::Park(error) => {
            tracing::error!(endpoint = %name, sequence = seq, job_id = %job, %error,
                "the body cannot be made: event parked (later events of this job wait); fix the format, then `curbside outbox retry`");
            state.last_error = Some(error.clone());
            state.last_attempt_at = Some(at);
            log.error = Some(error.clone());
            status.update(name, |s| {
                s.last_error = Some(error.clone());
                s.last_error_at = Some(at);
            });
            queue.settle(seq, &Settle::Park(state), Some(&log))?;
            Effect::Parked
        }
        Outcome::Gone => {
            let reason = format!("answered 410 Gone at {at}; re-enable with `curbside webhook enable {name}`");
            tracing::error!(endpoint = %name, "endpoint answered 410 Gone: disabled until an operator enables it");
            log.status = Some(410);
            log.error = Some("410 Gone: endpoint disabled".into());
            queue.settle(seq, &Settle::Disable(reason.clone()), Some(&log))?;
            status.update(name, |s| {
                s.reachable = true;
                s.disabled = Some(reason);
            });
            Effect::Requeue { state }
        }
        Outcome::Failed { status: code, error, retry_after } => {
            state.attempts += 1;
            state.last_status = code;
            state.last_error = Some(error.clone());
            state.last_attempt_at = Some(at);
            let jitter = rand::random::<f64>() * 2.0 - 1.0;
            let delay =
                retry_after.unwrap_or_else(|| schedule::backoff(&ep.delivery.retry_schedule, state.attempts, jitter));
            state.waited_ms = state.waited_ms.saturating_add(delay.as_millis() as u64);
            log.status = code;
            log.error = Some(error.clone());
            status.update(name, |s| {
                s.reachable = true;
                s.last_error = Some(error.clone());
                s.last_error_at = Some(at);
                s.failed_attempts += 1;
            });
            if Duration::from_millis(state.waited_ms) > ep.delivery.retry_budget {
                tracing::error!(endpoint = %name, sequence = seq, job_id = %job, attempts = state.attempts, %error,
                    "retry budget spent: event parked as failed (later events of this job wait); `curbside outbox retry` releases it");
                queue.settle(seq, &Settle::Park(state), Some(&log))?;
                Effect::Parked
            } else {
                tracing::warn!(endpoint = %name, sequence = seq, job_id = %job, attempts = state.attempts, %error,
                    retry_in_s = delay.as_secs_f64(), "delivery failed; will retry");
                queue.settle(seq, &Settle::Retry(state.clone()), Some(&log))?;
                Effect::Retry { state, delay }
            }
        }
    };
    status.update(name, |s| s.remember(log));
    Ok(effect)
}
