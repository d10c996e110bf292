//! The agent: builds every part from a validated [`Config`] before running anything, runs them
//! under one shutdown signal, and drains them under a grace timeout on SIGINT/SIGTERM or on the
//! first part that fails.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::api::{self, Api};
use crate::config::Config;
use crate::gps::clock::{Clock, Wall};
use crate::gps::latest::LatestFix;
use crate::gps::source;
use crate::health::{self, Health, Notifier, watched};
use crate::media::Media;
use crate::media::settings::UPLOAD_ENDPOINT;
use crate::outbox::{EndpointFilter, Outbox};
use crate::status::Sources;
use crate::taps::Taps;
use crate::telemetry;
use crate::webhook::{self, WebhookStatus};

/// How long parts get to finish after shutdown is signalled.
const GRACE: Duration = Duration::from_secs(5);
/// How often `clock.set_system_time` checks the system clock against GPS time.
const CLOCK_EVERY: Duration = Duration::from_secs(10);
/// How often the week-old idempotency keys' prune looks for GPS time until it has some.
const PRUNE_WAIT: Duration = Duration::from_secs(5);
/// How often the agent logs a one-line summary of the GPS.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// How often the agent looks at whether its store is worth compacting (see `outbox::compact`).
const UPKEEP_EVERY: Duration = Duration::from_secs(60);

/// A running agent, as [`start`] returns it.
#[derive(Debug)]
pub struct Running {
    /// Where the local API listens (the actual port when configured with port 0).
    pub api_addr: std::net::SocketAddr,
    /// Cancels every part.
    pub shutdown: CancellationToken,
    /// The store.
    pub outbox: Outbox,
    /// The live fix.
    pub latest: LatestFix,
    supervisor: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Notified when the store is worth compacting: [`run`] then restarts the parts, and the
    /// store is rewritten as it opens.
    compaction: Arc<tokio::sync::Notify>,
}

impl Running {
    /// Resolves when a part fails (or all stop); the agent is then shutting down.
    pub async fn finished(&mut self) -> anyhow::Result<()> {
        (&mut self.supervisor).await.map_err(|e| anyhow::anyhow!("supervisor panicked: {e}"))?
    }

    /// Signals shutdown and waits for every part to drain (under a grace timeout).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.supervisor.await.map_err(|e| anyhow::anyhow!("supervisor panicked: {e}"))?
    }
}

/// How the agent reports to its service manager.
#[derive(Debug, Clone, Default)]
pub struct Supervision {
    /// systemd's notify socket.
    pub notifier: Notifier,
    /// systemd's watchdog interval, if enabled.
    pub watchdog: Option<Duration>,
}

impl Supervision {
    /// From systemd's environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`).
    pub fn from_env() -> Supervision {
        Supervision { notifier: Notifier::from_env(), watchdog: health::watchdog_from_env() }
    }
}

/// Builds every part from `config` (store opened, socket bound, client built: any failure here
/// happens before anything runs), then spawns them under one shutdown.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_supervised(config, Supervision::default()).await
}

/// As [`start`], reading the system clock through `wall` (a test makes it jump days ahead or
/// behind, as a Pi's clock does after a `fake-hwclock` restore).
pub async fn start_with_wall(config: Config, wall: Wall) -> anyhow::Result<Running> {
    build(config, Supervision::default(), wall).await
}

/// As [`start`], telling systemd `READY=1` once every part runs, a `STATUS=` line every 10 s,
/// and `WATCHDOG=1` only while every main loop is alive (see [`health`]).
pub async fn start_supervised(config: Config, supervision: Supervision) -> anyhow::Result<Running> {
    build(config, supervision, Wall::system()).await
}

async fn build(config: Config, supervision: Supervision, wall: Wall) -> anyhow::Result<Running> {
    let mut filters: Vec<EndpointFilter> = config
        .webhooks
        .iter()
        .map(|w| EndpointFilter { name: w.name.clone(), events: w.events.clone(), files_only: false })
        .collect();
    if config.mqtt.is_some() {
        // Status events wait for the broker in the outbox, like webhook deliveries.
        filters.push(EndpointFilter { name: telemetry::EVENT_ENDPOINT.into(), events: None, files_only: false });
    }
    if config.pod.upload.is_some() {
        // An event's files wait for their upload like a webhook delivery; its webhooks wait for
        // that (see `webhook::deliver`).
        filters.push(EndpointFilter { name: UPLOAD_ENDPOINT.into(), events: None, files_only: true });
    }
    let outbox = Outbox::open_with(&config.state_dir, filters, config.outbox_budget)
        .with_context(|| format!("cannot open the outbox in {}", config.state_dir.display()))?;
    let media = Media::open(&config.state_dir, config.pod.media_budget)
        .with_context(|| format!("cannot open the media directory in {}", config.state_dir.display()))?;
    let pod = Arc::new(config.pod.clone());
    {
        // Files of events that left the store while the agent was down, and files that no
        // acknowledged event references (a tap killed between its files and its event).
        let (o, m, uploads) = (outbox.clone(), media.clone(), pod.upload.is_some());
        let swept = tokio::task::spawn_blocking(move || {
            if uploads {
                // Without an upload target files stay on the van (status says so).
                let released = o.drop_released_media_refs()?;
                m.release(released, |s| o.media_referenced(s));
            }
            Ok::<_, anyhow::Error>(m.sweep(|s| o.media_referenced(s))?)
        })
        .await??;
        if swept.unreferenced + swept.partial > 0 {
            tracing::info!(
                unreferenced = swept.unreferenced,
                partial = swept.partial,
                "media: removed files no event references"
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {} (api.listen)", config.api.listen))?;
    let api_addr = listener.local_addr()?;
    let latest = LatestFix::with_wall(config.gps.stale_after, wall);
    let clock = Clock::new(latest.clone(), config.gps.max_clock_skew);
    let client =
        webhook::client(config.webhooks.iter().map(|e| &**e).chain(config.pod.upload.as_ref().map(|u| &*u.endpoint)))?;
    let webhooks = WebhookStatus::default();
    // Built before anything runs, so that unreadable TLS files fail the start.
    let mqtt = match &config.mqtt {
        Some(m) => Some((Arc::new(m.clone()), telemetry::options(m)?, telemetry::TelemetryStatus::default())),
        None => None,
    };
    let owntracks_http = match &config.owntracks_http {
        Some(h) => Some((Arc::new(h.clone()), telemetry::http::client(h)?, telemetry::TelemetryStatus::default())),
        None => None,
    };
    let endpoints = Arc::new(config.webhooks.clone());
    let taps =
        Taps::new(outbox.clone(), latest.clone(), clock.clone(), config.vehicle_id.clone(), config.driver_id.clone())
            .with_default_radius(config.stops.radius_m);
    let sources = Sources {
        vehicle_id: config.vehicle_id.clone(),
        gps_source: config.gps.source.kind(),
        latest: latest.clone(),
        clock: clock.clone(),
        outbox: outbox.clone(),
        endpoints: endpoints.clone(),
        webhooks: webhooks.clone(),
        telemetry: mqtt.as_ref().map(|(m, _, status)| (status.clone(), format!("{}:{}", m.host, m.port))),
        owntracks_http: owntracks_http.as_ref().map(|(h, _, status)| (status.clone(), h.url.to_string())),
        api: Arc::default(),
        media: media.clone(),
        pod: pod.clone(),
        tz: config.timezone,
    };
    let geofence = config.stops.auto_arrived.then(|| taps.clone());
    let api = Api {
        taps,
        parts: sources.clone(),
        client: client.clone(),
        token: config.api.token.as_deref().map(Arc::from),
        body_timeout: config.api.limits.request_timeout,
        pairing: Arc::default(),
    };
    let shutdown = CancellationToken::new();
    let health = Health::for_watchdog(supervision.watchdog);
    let every = health.every();

    tracing::info!(
        config = %config.origin,
        vehicle_id = %config.vehicle_id,
        gps = config.gps.source.kind(),
        state_dir = %config.state_dir.display(),
        api = %api_addr,
        webhooks = endpoints.len(),
        "curbside starting"
    );
    if let Some(loss) = outbox.loss() {
        tracing::error!(moved_to = %loss.moved_to.display(), at = %loss.at, "running on a fresh outbox after a store loss");
    }
    let mut parts = Parts { set: JoinSet::new(), health: health.clone(), every };
    {
        let (latest, shutdown) = (latest.clone(), shutdown.clone());
        let source = config.gps.source.clone();
        parts.spawn_watched(
            "gps",
            async move { source::run(source, latest, shutdown).await.context("gps source failed") },
        );
    }
    {
        let shutdown = shutdown.clone();
        let (counters, limits) = (api.parts.api.clone(), config.api.limits);
        let router = api::router(api);
        parts.spawn_watched("api", async move {
            crate::server::serve(listener, router, limits, counters, shutdown).await.context("local API failed")
        });
    }
    // One delivery loop per webhook, and one for the files' uploads: the same loop, two targets.
    let files = pod.upload.as_ref().map(|u| {
        let public = u.public.clone();
        webhook::Files {
            uploaded_by: UPLOAD_ENDPOINT.into(),
            public: Arc::new(move |e| crate::media::upload::with_urls(e, Some(&public))),
        }
    });
    let post = webhook::Target::Post { files };
    let uploads = pod.upload.as_ref().map(|u| {
        let uploader = crate::media::upload::Uploader { template: u.template.clone(), media: media.clone() };
        (u.endpoint.clone(), webhook::Target::Other(Arc::new(uploader)))
    });
    let loops = endpoints.iter().map(|ep| (ep.clone(), post.clone())).chain(uploads);
    for (ep, target) in loops {
        let deps = webhook::Deps {
            outbox: outbox.clone(),
            client: client.clone(),
            clock: clock.clone(),
            status: webhooks.clone(),
            tz: config.timezone,
        };
        let shutdown = shutdown.clone();
        parts.spawn_watched(&format!("webhook {}", ep.name), async move {
            let name = ep.name.clone();
            webhook::run(ep, target, deps, shutdown).await.with_context(|| format!("webhook {name} failed"))
        });
    }
    // What either telemetry transport gets; MQTT adds its event stream and the files' URLs.
    let telemetry_deps = |status| telemetry::Deps {
        outbox: outbox.clone(),
        latest: latest.clone(),
        clock: clock.clone(),
        status,
        events: Arc::default(),
        public: None,
        default_radius_m: config.stops.radius_m,
        positions: config.positions.clone(),
    };
    if let Some((m, options, status)) = mqtt {
        let deps = telemetry::Deps {
            events: outbox.waker(telemetry::EVENT_ENDPOINT).context("the outbox has no MQTT event endpoint")?,
            public: pod.upload.as_ref().map(|u| u.public.clone()),
            ..telemetry_deps(status)
        };
        let (shutdown, vehicle_id) = (shutdown.clone(), config.vehicle_id.clone());
        parts.spawn_watched("mqtt", async move {
            telemetry::run(m, options, vehicle_id, deps, shutdown).await.context("mqtt telemetry failed")
        });
    }
    if let Some((h, client, status)) = owntracks_http {
        let deps = telemetry_deps(status);
        let (shutdown, vehicle_id) = (shutdown.clone(), config.vehicle_id.clone());
        parts.spawn_watched("owntracks_http", async move {
            telemetry::http::run(h, client, vehicle_id, deps, shutdown).await.context("owntracks http failed")
        });
    }
    {
        // Idempotency keys and job history are kept a week as GPS time counts it: the prune
        // waits for the receiver's first time (see `Clock::confirmed_now`).
        let (outbox, clock, shutdown) = (outbox.clone(), clock.clone(), shutdown.clone());
        parts.set.spawn(async move {
            let now = loop {
                if let Some(t) = clock.confirmed_now() {
                    break t;
                }
                tokio::select! {
                    _ = tokio::time::sleep(PRUNE_WAIT) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            };
            tokio::task::spawn_blocking(move || {
                if let Err(e) = outbox.prune_idempotency(now) {
                    tracing::warn!(error = %e, "could not prune old idempotency keys");
                }
            })
            .await?;
            Ok(())
        });
    }
    {
        let (latest, shutdown) = (latest.clone(), shutdown.clone());
        parts.spawn_watched("summary", async move {
            summarise(latest, clock, shutdown).await;
            Ok(())
        });
    }
    if let Some(taps) = geofence {
        let (outbox, latest, shutdown) = (outbox.clone(), latest.clone(), shutdown.clone());
        let (rules, radius) = (config.stops.rules, config.stops.radius_m);
        parts.spawn_watched("geofence", async move {
            crate::taps::watch::run(taps, outbox, latest, rules, radius, shutdown).await;
            Ok(())
        });
    }
    if config.set_system_time {
        let (latest, shutdown, skew) = (latest.clone(), shutdown.clone(), config.gps.max_clock_skew);
        parts.spawn_watched("clock", async move {
            crate::gps::clock::keep_system_time(
                latest,
                skew,
                CLOCK_EVERY,
                crate::gps::clock::set_system_clock,
                shutdown,
            )
            .await;
            Ok(())
        });
    }
    {
        let line = sources.clone();
        let (outbox, shutdown, health) = (outbox.clone(), shutdown.clone(), health.clone());
        let notifier = supervision.notifier.clone();
        let watchdog = supervision.watchdog;
        parts.set.spawn(async move {
            watchdog_loop(health, outbox, notifier, watchdog, line, shutdown).await;
            Ok(())
        });
    }
    {
        let outbox = outbox.clone();
        let mqtt_removed = config.mqtt.is_none();
        let uploads_removed = config.pod.upload.is_none();
        parts.set.spawn(async move {
            tokio::task::spawn_blocking(move || {
                if uploads_removed {
                    // Files of a removed upload target stay on the van; their webhooks no longer wait.
                    match outbox.forget_endpoint(UPLOAD_ENDPOINT) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(events = n, "[pod] upload_url removed: files stay on the van"),
                        Err(e) => tracing::warn!(error = %e, "could not drop uploads for a removed upload target"),
                    }
                }
                if mqtt_removed {
                    // Events mirrored for a broker that is no longer configured.
                    match outbox.forget_endpoint(telemetry::EVENT_ENDPOINT) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(events = n, "[mqtt] removed: dropped events waiting for the broker"),
                        Err(e) => tracing::warn!(error = %e, "could not drop events waiting for a removed broker"),
                    }
                }
            })
            .await?;
            Ok(())
        });
    }
    if pod.upload.is_some() {
        let (outbox, media, shutdown) = (outbox.clone(), media.clone(), shutdown.clone());
        parts.spawn_watched("media", async move {
            media_janitor(outbox, media, shutdown).await;
            Ok(())
        });
    }
    let compaction = Arc::new(tokio::sync::Notify::new());
    {
        let (outbox, due, shutdown) = (outbox.clone(), compaction.clone(), shutdown.clone());
        parts.spawn_watched("upkeep", async move {
            store_upkeep(outbox, due, UPKEEP_EVERY, shutdown).await;
            Ok(())
        });
    }
    {
        // A store that failed a write is unusable until reopened: stop, so that systemd starts
        // the agent again on a fresh handle (taps meanwhile get a clear error, never a 201).
        let (outbox, shutdown) = (outbox.clone(), shutdown.clone());
        parts.set.spawn(async move {
            tokio::select! {
                e = outbox.broken() => Err(anyhow::anyhow!("outbox storage failed ({e}); exiting so that the service restarts")),
                _ = shutdown.cancelled() => Ok(()),
            }
        });
    }
    let supervisor = {
        let (shutdown, outbox) = (shutdown.clone(), outbox.clone());
        let notifier = supervision.notifier.clone();
        tokio::spawn(async move {
            // Parts that finish normally (the start-up pruning) just end; the first failure, or
            // shutdown, stops them all.
            let outcome = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    done = parts.set.join_next() => match done {
                        None => break Ok(()),
                        Some(Ok(Ok(()))) => continue,
                        Some(Ok(Err(e))) => {
                            tracing::error!(error = format!("{e:#}"), "a part of the agent failed; stopping");
                            break Err(e);
                        }
                        Some(Err(e)) => break Err(anyhow::anyhow!("a part of the agent panicked: {e}")),
                    },
                }
            };
            shutdown.cancel();
            if outcome.is_err() {
                // The process is about to exit. A stop for a signal or a reload is announced by
                // `run` (STOPPING=1, or RELOADING=1 followed by READY=1 from the new parts).
                notifier.send("STOPPING=1");
            }
            if tokio::time::timeout(GRACE, async { while parts.set.join_next().await.is_some() {} }).await.is_err() {
                tracing::warn!(grace = ?GRACE, "parts still running after the grace period; stopping anyway");
            }
            if let Err(e) = outbox.flush().await {
                tracing::error!(error = %e, "final flush of the outbox failed");
            }
            tracing::info!("curbside stopped");
            outcome
        })
    };
    supervision.notifier.send("READY=1\nSTATUS=curbside running");
    Ok(Running { api_addr, shutdown, outbox, latest, supervisor, compaction })
}

/// Looks at the store every `every` (see [`crate::outbox::compact::Schedule`]) and notifies
/// `due` once, when reopening it would give disk space back.
async fn store_upkeep(outbox: Outbox, due: Arc<tokio::sync::Notify>, every: Duration, shutdown: CancellationToken) {
    let mut schedule = crate::outbox::compact::Schedule::default();
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
            Ok::<_, crate::outbox::OutboxError>((due, live))
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

/// Removes a file once no stored event references it: woken whenever events leave the store
/// (delivered everywhere: with an upload target, that includes the upload), it drops their
/// media references and deletes the files left without one (a file shared by two taps stays
/// until both are gone). Without an upload target it does not run: files stay on the van.
async fn media_janitor(outbox: Outbox, media: Media, shutdown: CancellationToken) {
    let released = outbox.released();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = released.notified() => {}
        }
        let (o, m) = (outbox.clone(), media.clone());
        let done = tokio::task::spawn_blocking(move || {
            let shas = o.drop_released_media_refs()?;
            Ok::<_, crate::outbox::OutboxError>(m.release(shas, |s| o.media_referenced(s)))
        })
        .await;
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(files = n, "media: removed files of delivered events"),
            Ok(Err(e)) => tracing::warn!(error = %e, "media: could not drop references of delivered events"),
            Err(e) => tracing::warn!(error = %e, "media: the janitor panicked"),
        }
    }
}

/// Sends `WATCHDOG=1` every half watchdog interval while every main loop and the commit thread
/// are alive, and a `STATUS=` line every [`SUMMARY_EVERY`]. A stuck loop is logged once.
async fn watchdog_loop(
    health: Health,
    outbox: Outbox,
    notifier: Notifier,
    watchdog: Option<Duration>,
    line: Sources,
    shutdown: CancellationToken,
) {
    let period = watchdog.map_or(health.every(), |w| w / 2);
    let budget = watchdog.map_or(health.every() * 3, |w| w / 2);
    // The first beat comes a period after start, after READY=1.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut last_status: Option<tokio::time::Instant> = None;
    let mut was_stuck = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let mut stuck = health.stuck(budget);
        let silence = outbox.commit_thread_silence();
        if silence > budget {
            stuck.push(("outbox commit thread".into(), silence));
        }
        if stuck.is_empty() {
            if watchdog.is_some() {
                notifier.send("WATCHDOG=1");
            }
            if was_stuck {
                tracing::warn!("every main loop is alive again");
            }
            was_stuck = false;
        } else if !was_stuck {
            was_stuck = true;
            let names: Vec<String> = stuck.iter().map(|(n, ago)| format!("{n} ({:.1} s)", ago.as_secs_f64())).collect();
            tracing::error!(stuck = %names.join(", "), "a main loop is stuck: withholding the systemd watchdog");
        }
        if notifier.enabled() && last_status.is_none_or(|t| t.elapsed() >= SUMMARY_EVERY) {
            last_status = Some(tokio::time::Instant::now());
            notifier.send(&format!("STATUS={}", line.snapshot().line()));
        }
    }
}

/// The agent's running parts, under one shutdown.
struct Parts {
    set: JoinSet<anyhow::Result<()>>,
    health: Health,
    every: Duration,
}

impl Parts {
    /// Spawns a main loop as a watched part: it beats while its task is being polled (see
    /// [`health`]), so a stuck loop stops the systemd watchdog.
    fn spawn_watched(&mut self, name: &str, fut: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        let beat = self.health.register(name);
        self.set.spawn(watched(beat, self.every, stall_for_tests(name.to_string(), fut)));
    }
}

/// Debug builds only: `CURBSIDE_DEBUG_STALL=PART` blocks that part's thread 2 s after start,
/// inside its loop, so that the notify test can see the watchdog stop. Release builds (and debug
/// builds without the variable) run `fut` as it is.
async fn stall_for_tests<T>(part: String, fut: impl std::future::Future<Output = T>) -> T {
    #[cfg(debug_assertions)]
    if std::env::var("CURBSIDE_DEBUG_STALL").is_ok_and(|p| p == part) {
        tokio::select! {
            r = fut => return r,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                tracing::warn!(part, "CURBSIDE_DEBUG_STALL: blocking this part's thread");
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        unreachable!("the stalled part never resumes");
    }
    let _ = part;
    fut.await
}

/// Runs the agent until SIGINT/SIGTERM or until a part fails.
///
/// On SIGHUP the config is read again from `config_file` (when there is one) and, if it is
/// valid, every part is stopped (each finishes within the grace period; the outbox is flushed)
/// and started again on the new config: webhook endpoints, telemetry rules, everything. Queued
/// events and positions are on disk and carry on; taps in the fraction of a second between
/// stop and start are refused (connection refused) and are retried by their client. An invalid
/// config is logged and changes nothing.
///
/// A store that holds far more disk than records (see [`crate::outbox::compact`]) is compacted
/// by executing the agent again (same PID, same arguments) once the outbox has been quiet for a
/// minute: the store is rewritten as it opens.
pub async fn run(config: Config, config_file: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let supervision = Supervision::from_env();
    // Every signal is watched before anything starts: a SIGTERM during start-up (systemd stopping
    // a unit that is still starting) is then a graceful stop once the parts run, not the
    // default action's abrupt exit.
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut config = config;
    loop {
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
        let mut running = start_again(&config, &supervision).await?;
        let compaction = running.compaction.clone();
        let next = loop {
            tokio::select! {
                s = async {
                    tokio::select! {
                        _ = terminate.recv() => "SIGTERM",
                        _ = interrupt.recv() => "SIGINT",
                    }
                } => {
                    tracing::info!(signal = s, "shutting down");
                    supervision.notifier.send("STOPPING=1");
                    return running.stop().await;
                }
                r = running.finished() => return r,
                _ = compaction.notified() => break None,
                _ = hangup.recv() => {
                    let Some(file) = &config_file else {
                        tracing::warn!("SIGHUP: running on embedded defaults, no config file to reload");
                        continue;
                    };
                    match Config::load(file) {
                        Ok(c) => break Some(c),
                        Err(e) => {
                            tracing::error!(error = %e, "SIGHUP: the new config is invalid; still running on the old one");
                            supervision.notifier.send(&format!("STATUS=reload refused: {e}"));
                        }
                    }
                }
            }
        };
        let Some(next) = next else {
            // A fresh process, not a restart in this one: sled 0.34 does not give back all the
            // memory of a closed store (sled#1466; measured here: RSS rose by about 3 MB with
            // each in-process reopen), so the agent executes itself again, keeping its PID,
            // and the store is compacted as it opens. systemd sees a reload: RELOADING=1 now,
            // READY=1 from the new process.
            tracing::info!("restarting as a fresh process to compact the outbox");
            supervision.notifier.send(&health::reloading_message());
            running.stop().await?;
            return Err(reexecute());
        };
        tracing::info!(config = %next.origin, "SIGHUP: reloading: restarting every part on the new config");
        // systemd (253+) matches the reload to this message by its timestamp; the new parts
        // send READY=1 once they run. STOPPING=1 here would make systemd take it for a stop.
        supervision.notifier.send(&health::reloading_message());
        running.stop().await?;
        config = next;
    }
}

/// Replaces this process with a fresh run of the same binary and arguments (same PID, same
/// environment). Returns only if that failed.
fn reexecute() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        // Replaced since it started (a package upgrade): Linux names the old file
        // "PATH (deleted)"; the new one at PATH is what should run. (Found by the fill/drain
        // run, whose binary a rebuild replaced: the re-execution failed and the agent exited.)
        Ok(exe) => match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(path) => std::path::PathBuf::from(path),
            None => exe,
        },
        Err(e) => return anyhow::anyhow!("cannot find this binary to execute it again: {e}"),
    };
    let err = std::process::Command::new(&exe).args(std::env::args_os().skip(1)).exec();
    anyhow::anyhow!("cannot execute {} again: {err}", exe.display())
}

/// Starts the agent; after a reload, waits (up to 5 s) for the previous store handle to let go
/// of its lock (sled's flusher thread ends within its flush interval after the last handle).
async fn start_again(config: &Config, supervision: &Supervision) -> anyhow::Result<Running> {
    let locked = |e: &anyhow::Error| {
        e.chain().any(|c| {
            matches!(c.downcast_ref::<crate::outbox::OutboxError>(), Some(crate::outbox::OutboxError::Locked(_)))
        })
    };
    let mut tries = 0;
    loop {
        match start_supervised(config.clone(), supervision.clone()).await {
            Err(e) if locked(&e) && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Logs fix acquired/lost as it happens, and a summary line every [`SUMMARY_EVERY`].
async fn summarise(latest: LatestFix, clock: Clock, shutdown: CancellationToken) {
    let mut had_fix = false;
    let mut tick = tokio::time::interval(SUMMARY_EVERY);
    let mut changes = latest.subscribe();
    loop {
        let periodic = tokio::select! {
            _ = tick.tick() => true,
            r = changes.changed() => { if r.is_err() { return; } false }
            _ = shutdown.cancelled() => return,
        };
        let live = latest.live();
        if live.is_some() != had_fix {
            had_fix = live.is_some();
            match &live {
                Some(r) => tracing::info!(mode = %r.fix.mode, sats = r.fix.sats, "gps fix acquired"),
                None => tracing::warn!("gps fix lost"),
            }
        }
        if periodic {
            let s = latest.snapshot();
            let c = clock.status();
            match live.and_then(|r| r.fix.position().map(|p| (p, r))) {
                Some(((lat, lon), r)) => tracing::info!(
                    lat = format_args!("{lat:.6}"),
                    lon = format_args!("{lon:.6}"),
                    speed_mps = format_args!("{:.1}", r.fix.speed_mps.unwrap_or(0.0)),
                    mode = %r.fix.mode,
                    sats = r.fix.sats,
                    bad_sentences = s.stats.bad_sentences,
                    clock_trusted = c.trusted,
                    "gps"
                ),
                None => tracing::info!(
                    connected = s.connected,
                    last_known_age_s = s.last_valid.map(|r| r.age().as_secs()),
                    bad_sentences = s.stats.bad_sentences,
                    clock_trusted = c.trusted,
                    "gps: no fix"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_upkeep_asks_for_a_compaction_once_a_drained_store_is_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let endpoints = vec![EndpointFilter { name: "bo".into(), events: None, files_only: false }];
        let outbox = Outbox::open_with(dir.path(), endpoints, 16 << 20).unwrap();
        let mut seqs = Vec::new();
        while outbox.size_on_disk() < 14 << 20 {
            let mut batch = JoinSet::new();
            for k in 0..32 {
                let o = outbox.clone();
                batch.spawn(async move {
                    let job = format!("J{k}");
                    o.append(&job, None, |seq| crate::event::StatusEvent {
                        sequence: seq,
                        job_id: job.clone(),
                        received_by: Some("r".repeat(20_000)),
                        ..crate::webhook::format::sample("van-17")
                    })
                    .await
                });
            }
            seqs.extend(batch.join_all().await.into_iter().map(|a| a.unwrap().event.sequence));
        }
        let (due, shutdown) = (Arc::new(tokio::sync::Notify::new()), CancellationToken::new());
        let upkeep = tokio::spawn(store_upkeep(outbox.clone(), due.clone(), UPKEEP_EVERY, shutdown.clone()));
        let quiet = tokio::time::timeout(Duration::from_secs(600), due.notified()).await;
        assert!(quiet.is_err(), "full of undelivered events: never worth compacting, however quiet");
        for seq in seqs {
            outbox.delivered("bo", seq).unwrap();
        }
        tokio::time::timeout(3 * UPKEEP_EVERY, due.notified())
            .await
            .expect("drained and quiet: compaction is asked for");
        tokio::time::timeout(Duration::from_secs(1), upkeep).await.expect("it asks once, then ends").unwrap();
    }
}
