//! Status webhooks: one delivery loop per configured endpoint over the outbox, at least once,
//! in order per job, with bounded concurrency, retries with backoff and jitter, and no attempts
//! spent while the endpoint cannot be reached at all.
//!
//! Each loop keeps a window of the endpoint's oldest pending deliveries in memory, grouped by
//! job: only the oldest event of a job is ever in flight, so events of one job arrive in the
//! order they happened, while different jobs proceed independently (up to `concurrency` at
//! once). A job whose event is parked (retry budget spent) holds its later events back until an
//! operator retries it, so order is never broken.

pub mod format;
pub mod schedule;
pub mod sign;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::event::{Status, StatusEvent};
use crate::gps::clock::Clock;
use crate::outbox::{Attempt, DeliveryState, Outbox, OutboxError};
use format::Format;
use schedule::Outcome;
use sign::Secret;

/// Deliveries kept in memory per endpoint; the rest wait on disk.
const WINDOW: usize = 1024;
/// Longest wait between probes of an unreachable endpoint.
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// A validated `[[webhook]]` endpoint.
#[derive(Clone)]
pub struct Endpoint {
    /// Unique name (for logs, status, `webhook test NAME`).
    pub name: String,
    /// Where to POST.
    pub url: reqwest::Url,
    /// Statuses delivered; `None`: all.
    pub events: Option<HashSet<Status>>,
    /// Payload format.
    pub format: Format,
    /// Standard Webhooks signing secret.
    pub secret: Option<Secret>,
    /// Sent as `x-webhook-shared-token`.
    pub shared_token: Option<String>,
    /// HTTP basic auth (username, password).
    pub basic: Option<(String, String)>,
    /// Bearer token.
    pub bearer: Option<String>,
    /// Extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Deliveries in flight at once (different jobs).
    pub concurrency: usize,
    /// Backoff to spend on one event before parking it.
    pub retry_budget: Duration,
    /// Delays between failed attempts; the last repeats.
    pub retry_schedule: Vec<Duration>,
}

impl std::fmt::Debug for Endpoint {
    // Credentials never reach logs: only their presence is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &redacted_url(&self.url))
            .field("format", &self.format)
            .field("signed", &self.secret.is_some())
            .field("auth", &(self.basic.is_some() || self.bearer.is_some() || self.shared_token.is_some()))
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint with defaults for everything but name and URL (tests, examples).
    pub fn new(name: &str, url: reqwest::Url) -> Self {
        Self {
            name: name.into(),
            url,
            events: None,
            format: Format::Standard,
            secret: None,
            shared_token: None,
            basic: None,
            bearer: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(15),
            concurrency: 4,
            retry_budget: Duration::from_secs(24 * 3600),
            retry_schedule: schedule::SCHEDULE.to_vec(),
        }
    }
}

/// The HTTP client for webhooks: rustls with ring and the system's trust store, no redirects
/// (3xx is a failure), curbside's User-Agent.
///
/// A system without a trust store (no `ca-certificates`) is an error only when one of
/// `endpoints` is `https://`, naming it; plain `http://` endpoints work without one.
pub fn client<'a>(endpoints: impl IntoIterator<Item = &'a Endpoint>) -> anyhow::Result<reqwest::Client> {
    let tls = match crate::tls::system_roots() {
        Ok(builder) => builder.with_no_client_auth(),
        Err(e) => {
            if let Some(ep) = endpoints.into_iter().find(|ep| ep.url.scheme() == "https") {
                anyhow::bail!(
                    "webhook {:?} is https:// but the system's CA certificates cannot be loaded \
                     (install the ca-certificates package): {e}",
                    ep.name
                );
            }
            crate::tls::trusting_nobody()
        }
    };
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("curbside/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?)
}

/// Builds the request for one attempt: body, Standard Webhooks headers, auth.
pub fn request(
    client: &reqwest::Client,
    ep: &Endpoint,
    event: &StatusEvent,
    timestamp: i64,
) -> reqwest::RequestBuilder {
    let body = format::body(ep.format, event);
    let id = event.id.to_string();
    let mut req = client
        .post(ep.url.clone())
        .timeout(ep.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = &ep.secret {
        req = req.header("webhook-signature", secret.sign(&id, timestamp, &body));
    }
    if let Some(t) = &ep.shared_token {
        req = req.header("x-webhook-shared-token", t);
    }
    if let Some((u, p)) = &ep.basic {
        req = req.basic_auth(u, Some(p));
    }
    if let Some(b) = &ep.bearer {
        req = req.bearer_auth(b);
    }
    for (k, v) in &ep.headers {
        req = req.header(k, v);
    }
    req.body(body)
}

/// Sends one attempt and classifies what happened. The response body is not read: a 2xx status
/// line is delivery, however slowly the body follows.
pub async fn attempt(client: &reqwest::Client, ep: &Endpoint, event: &StatusEvent, now: DateTime<Utc>) -> Outcome {
    match request(client, ep, event, now.timestamp()).send().await {
        Ok(resp) => {
            let retry_after = resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok());
            schedule::classify(resp.status().as_u16(), retry_after, now)
        }
        Err(e) => classify_error(&e.without_url(), ep.timeout),
    }
}

/// The endpoint URL without credentials or query (which may carry tokens), for logs and status.
pub fn redacted_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    u.to_string()
}

/// A transport error: offline if the connection was never made, otherwise a failed attempt.
pub fn classify_error(e: &reqwest::Error, timeout: Duration) -> Outcome {
    if e.is_connect() {
        Outcome::Offline(error_chain(e))
    } else if e.is_timeout() {
        Outcome::Failed { status: None, error: format!("no answer within {timeout:?}"), retry_after: None }
    } else {
        Outcome::Failed { status: None, error: error_chain(e), retry_after: None }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// What an endpoint's loop is doing, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct EndpointStatus {
    /// False while the endpoint cannot be reached (no attempts are being spent).
    pub reachable: bool,
    /// Set when the endpoint answered 410; an operator must enable it.
    pub disabled: Option<String>,
    /// Deliveries in flight.
    pub in_flight: usize,
    /// Last 2xx.
    pub last_delivery_at: Option<DateTime<Utc>>,
    /// Last failure, with when.
    pub last_error: Option<String>,
    /// When the last failure was.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Deliveries made since start.
    pub delivered: u64,
    /// Failed attempts since start.
    pub failed_attempts: u64,
    /// The newest attempts, successes included, newest last (bounded; see [`RECENT`]).
    pub recent: VecDeque<Attempt>,
}

/// Attempts kept in memory per endpoint for status. Failed attempts are also written to the
/// outbox's persistent log; successes only here, because writing each one to sled cost a fifth
/// of the drain rate (measured) and a delivered event leaves nothing to diagnose.
pub const RECENT: usize = 50;

impl EndpointStatus {
    fn remember(&mut self, a: Attempt) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(a);
    }
}

/// Live status of every endpoint loop; a cheaply cloned handle. The mutex is never held across
/// an `.await`.
#[derive(Debug, Clone, Default)]
pub struct WebhookStatus(Arc<Mutex<HashMap<String, EndpointStatus>>>);

impl WebhookStatus {
    /// A copy of one endpoint's status.
    pub fn get(&self, name: &str) -> EndpointStatus {
        self.0.lock().map(|m| m.get(name).cloned().unwrap_or_default()).unwrap_or_default()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut EndpointStatus)) {
        if let Ok(mut m) = self.0.lock() {
            match m.get_mut(name) {
                Some(s) => f(s),
                None => f(m.entry(name.to_string()).or_default()),
            }
        }
    }
}

/// Per-job queue inside the window.
#[derive(Debug, Default)]
struct JobQueue {
    seqs: VecDeque<(u64, DeliveryState)>,
    /// In flight, or waiting for its backoff.
    busy: bool,
}

/// The in-memory window of one endpoint's pending deliveries. Pure bookkeeping: no I/O.
#[derive(Debug, Default)]
struct Window {
    jobs: HashMap<String, JobQueue>,
    /// Jobs whose head can be sent now, by head sequence: oldest first.
    ready: BTreeSet<(u64, String)>,
    /// Jobs waiting for their backoff.
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    loaded: HashSet<u64>,
    blocked: HashSet<String>,
}

impl Window {
    fn len(&self) -> usize {
        self.loaded.len()
    }

    fn add(&mut self, seq: u64, state: DeliveryState) {
        if self.blocked.contains(&state.job_id) || !self.loaded.insert(seq) {
            return;
        }
        let job = state.job_id.clone();
        let q = self.jobs.entry(job.clone()).or_default();
        let pos = q.seqs.iter().position(|(s, _)| *s > seq).unwrap_or(q.seqs.len());
        let old_head = q.seqs.front().map(|(s, _)| *s);
        q.seqs.insert(pos, (seq, state));
        if !q.busy {
            if let Some(h) = old_head {
                self.ready.remove(&(h, job.clone()));
            }
            self.ready.insert((q.seqs[0].0, job));
        }
    }

    /// Takes the oldest ready job's head for sending.
    fn take(&mut self) -> Option<(u64, DeliveryState)> {
        let (seq, job) = self.ready.pop_first()?;
        let q = self.jobs.get_mut(&job)?;
        q.busy = true;
        q.seqs.front().filter(|(s, _)| *s == seq).cloned()
    }

    /// The job's head was delivered (or vanished): the next event of the job becomes ready.
    fn done(&mut self, job: &str) {
        let Some(q) = self.jobs.get_mut(job) else { return };
        if let Some((s, _)) = q.seqs.pop_front() {
            self.loaded.remove(&s);
        }
        q.busy = false;
        match q.seqs.front() {
            Some((s, _)) => {
                self.ready.insert((*s, job.to_string()));
            }
            None => {
                self.jobs.remove(job);
            }
        }
    }

    /// The job's head goes back to ready now (offline, disabled).
    fn requeue(&mut self, job: &str, state: DeliveryState) {
        if let Some(q) = self.jobs.get_mut(job) {
            if let Some(head) = q.seqs.front_mut() {
                head.1 = state;
                self.ready.insert((head.0, job.to_string()));
            }
            q.busy = false;
        }
    }

    /// The job's head waits until `at`.
    fn delay(&mut self, job: &str, state: DeliveryState, at: Instant) {
        if let Some(q) = self.jobs.get_mut(job) {
            if let Some(head) = q.seqs.front_mut() {
                head.1 = state;
            }
            self.timers.push(Reverse((at, job.to_string())));
        }
    }

    /// Moves jobs whose backoff has passed to ready; returns the next wake-up.
    fn due(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                return Some(*at);
            }
            let Reverse((_, job)) = self.timers.pop().expect("peeked");
            if let Some(q) = self.jobs.get_mut(&job) {
                q.busy = false;
                if let Some((s, _)) = q.seqs.front() {
                    self.ready.insert((*s, job));
                }
            }
        }
        None
    }

    /// The job's head was parked: the job leaves the window, its later events wait on disk.
    fn block(&mut self, job: &str) {
        if let Some(q) = self.jobs.remove(job) {
            for (s, _) in q.seqs {
                self.loaded.remove(&s);
            }
        }
        self.ready.retain(|(_, j)| j != job);
        self.blocked.insert(job.to_string());
    }
}

/// Everything a delivery loop needs.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The store.
    pub outbox: Outbox,
    /// The HTTP client.
    pub client: reqwest::Client,
    /// For `webhook-timestamp` (GPS time when the system clock is wrong).
    pub clock: Clock,
    /// Where the loop reports.
    pub status: WebhookStatus,
}

/// Runs the delivery loop of `ep` until shutdown.
///
/// The loop itself only keeps the window (which event of which job goes next); each delivery
/// runs as its own task that reads the event, sends it and records the outcome in the store, so
/// that store work of different deliveries overlaps like their HTTP requests do.
pub async fn run(ep: Arc<Endpoint>, deps: Deps, shutdown: CancellationToken) -> Result<(), OutboxError> {
    let name = ep.name.clone();
    let outbox = deps.outbox.clone();
    let status = deps.status.clone();
    let waker = outbox
        .waker(&ep.name)
        .ok_or_else(|| OutboxError::NotFound(format!("endpoint {} is not one of the store's", ep.name)))?;
    let mut window = Window { blocked: outbox.blocked_jobs(&name)?, ..Window::default() };
    let mut inflight: JoinSet<Result<Settled, OutboxError>> = JoinSet::new();
    let mut offline_until: Option<Instant> = None;
    let mut probe = Duration::from_secs(1);
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
            for (seq, state) in outbox.pending_scan(&name, None, room, skip)? {
                window.add(seq, state);
            }
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
            ep.concurrency
        } else {
            1
        };
        while disabled.is_none() && inflight.len() < limit {
            let Some((seq, state)) = window.take() else { break };
            inflight.spawn(deliver(ep.clone(), deps.clone(), seq, state));
        }
        status.update(&name, |s| {
            s.in_flight = inflight.len();
            if s.disabled != disabled {
                s.disabled = disabled.clone();
            }
        });
        let wake_at = [next_timer, offline_until].into_iter().flatten().min();
        tokio::select! {
            Some(joined) = inflight.join_next() => {
                let Ok(settled) = joined else { continue };
                let Settled { job, effect } = settled?;
                match effect {
                    Effect::Done => window.done(&job),
                    Effect::Retry { state, delay } => window.delay(&job, state, Instant::now() + delay),
                    Effect::Parked => window.block(&job),
                    Effect::Requeue { state } => window.requeue(&job, state),
                    Effect::Offline { state } => {
                        window.requeue(&job, state);
                        offline_until = Some(Instant::now() + probe);
                        probe = (probe * 2).min(MAX_PROBE_INTERVAL);
                        reachable = false;
                        continue;
                    }
                }
                probe = Duration::from_secs(1);
                reachable = true;
                if window.len() < WINDOW / 2 {
                    refill = true;
                }
            }
            _ = async { match wake_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {}
            _ = waker.notified() => { refill = true; }
            _ = shutdown.cancelled() => break,
        }
    }
    // In-flight requests are dropped: at least once means they are sent again after restart.
    inflight.abort_all();
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
    Offline { state: DeliveryState },
}

struct Settled {
    job: String,
    effect: Effect,
}

/// One delivery: read the event, send it, record the outcome in the store.
async fn deliver(ep: Arc<Endpoint>, deps: Deps, seq: u64, state: DeliveryState) -> Result<Settled, OutboxError> {
    let Deps { outbox, client, clock, status } = deps;
    let job = state.job_id.clone();
    let Some(event) = outbox.event(seq)? else {
        // Unreadable or gone: nothing to deliver; drop the delivery.
        outbox.delivered(&ep.name, seq)?;
        return Ok(Settled { job, effect: Effect::Done });
    };
    let (at, _) = clock.now();
    let started = Instant::now();
    let outcome = attempt(&client, &ep, &event, at).await;
    let effect = settle(&ep, &outbox, &status, seq, state, &event, outcome, started.elapsed(), at)?;
    Ok(Settled { job, effect })
}

/// Records an attempt's outcome in the store and in status; says what the window must do.
#[allow(clippy::too_many_arguments)]
fn settle(
    ep: &Endpoint,
    outbox: &Outbox,
    status: &WebhookStatus,
    seq: u64,
    mut state: DeliveryState,
    event: &StatusEvent,
    outcome: Outcome,
    took: Duration,
    at: DateTime<Utc>,
) -> Result<Effect, OutboxError> {
    let name = &ep.name;
    let job = &event.job_id;
    let mut log = Attempt {
        endpoint: name.clone(),
        sequence: seq,
        at,
        status: None,
        error: None,
        duration_ms: took.as_millis() as u64,
    };
    if !matches!(outcome, Outcome::Offline(_)) && !status.get(name).reachable {
        tracing::info!(endpoint = %name, "endpoint reachable again");
    }
    let effect = match outcome {
        Outcome::Delivered(code) => {
            outbox.delivered(name, seq)?;
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
        Outcome::Offline(error) => {
            if status.get(name).reachable {
                tracing::warn!(endpoint = %name, %error, "endpoint unreachable; holding deliveries and probing (no attempts spent)");
            }
            status.update(name, |s| {
                s.reachable = false;
                s.last_error = Some(format!("unreachable: {error}"));
                s.last_error_at = Some(at);
            });
            return Ok(Effect::Offline { state });
        }
        Outcome::Gone => {
            let reason = format!("answered 410 Gone at {at}; re-enable with `curbside webhook enable {name}`");
            tracing::error!(endpoint = %name, "endpoint answered 410 Gone: disabled until an operator enables it");
            outbox.disable(name, &reason)?;
            log.status = Some(410);
            log.error = Some("410 Gone: endpoint disabled".into());
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
            let delay = retry_after.unwrap_or_else(|| schedule::backoff(&ep.retry_schedule, state.attempts, jitter));
            state.waited_ms = state.waited_ms.saturating_add(delay.as_millis() as u64);
            log.status = code;
            log.error = Some(error.clone());
            status.update(name, |s| {
                s.reachable = true;
                s.last_error = Some(error.clone());
                s.last_error_at = Some(at);
                s.failed_attempts += 1;
            });
            if Duration::from_millis(state.waited_ms) > ep.retry_budget {
                tracing::error!(endpoint = %name, sequence = seq, job_id = %job, attempts = state.attempts, %error,
                    "retry budget spent: event parked as failed (later events of this job wait); `curbside outbox retry` releases it");
                outbox.park(name, seq, &state)?;
                Effect::Parked
            } else {
                tracing::warn!(endpoint = %name, sequence = seq, job_id = %job, attempts = state.attempts, %error,
                    retry_in_s = delay.as_secs_f64(), "delivery failed; will retry");
                outbox.update(name, seq, &state)?;
                Effect::Retry { state, delay }
            }
        }
    };
    outbox.log_attempt(&log)?;
    status.update(name, |s| s.remember(log));
    Ok(effect)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(job: &str) -> DeliveryState {
        DeliveryState::new(job)
    }

    #[test]
    fn urls_lose_credentials_and_query_before_they_are_shown() {
        let u = reqwest::Url::parse("https://user:pw@example.com:8443/hook?token=s3cret").unwrap();
        let shown = redacted_url(&u);
        assert!(!shown.contains("pw") && !shown.contains("s3cret") && !shown.contains("user"), "{shown}");
        assert!(shown.starts_with("https://example.com:8443/hook"), "{shown}");
        let ep = Endpoint::new("h", u);
        assert!(!format!("{ep:?}").contains("s3cret"));
    }

    #[test]
    fn only_the_oldest_event_of_a_job_is_ready_and_jobs_interleave_in_sequence_order() {
        let mut w = Window::default();
        w.add(1, st("a"));
        w.add(2, st("b"));
        w.add(3, st("a"));
        let (s1, _) = w.take().unwrap();
        let (s2, _) = w.take().unwrap();
        assert_eq!((s1, s2), (1, 2));
        assert!(w.take().is_none(), "a's second event waits for its first");
        w.done("a");
        assert_eq!(w.take().unwrap().0, 3);
    }

    #[test]
    fn an_event_loaded_late_with_a_lower_sequence_goes_first() {
        let mut w = Window::default();
        w.add(5, st("a"));
        w.add(4, st("a"));
        assert_eq!(w.take().unwrap().0, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_job_becomes_ready_when_its_backoff_passes() {
        let mut w = Window::default();
        w.add(1, st("a"));
        let (_, s) = w.take().unwrap();
        let at = Instant::now() + Duration::from_secs(5);
        w.delay("a", s, at);
        assert_eq!(w.due(Instant::now()), Some(at));
        assert!(w.take().is_none());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(w.due(Instant::now()), None);
        assert_eq!(w.take().unwrap().0, 1);
    }

    #[test]
    fn a_blocked_job_leaves_the_window_and_its_later_events_are_not_loaded() {
        let mut w = Window::default();
        w.add(1, st("a"));
        w.add(2, st("a"));
        w.take().unwrap();
        w.block("a");
        assert_eq!(w.len(), 0);
        w.add(3, st("a"));
        assert!(w.take().is_none());
    }
}
