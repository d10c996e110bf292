//! The agent: builds every part from a validated [`Config`] before running anything, runs them
//! under one shutdown signal, and drains them under a grace timeout on SIGINT/SIGTERM or on the
//! first part that fails.

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
use crate::health::{self, Health, Notifier};
use crate::history::History;
use crate::media::Media;
use crate::media::refs::Refs;
use crate::media::settings::UPLOAD_ENDPOINT;
use crate::outbox::{EndpointFilter, Outbox};
use crate::status::Sources;
use crate::taps::Taps;
use crate::telemetry;
use crate::webhook::{self, WebhookStatus};

mod supervise;
pub use supervise::run;
use supervise::{Parts, watchdog_loop};

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
    if config.traccar.is_some() {
        // Events wait for the Traccar server in the outbox too.
        filters.push(EndpointFilter {
            name: telemetry::traccar::EVENT_ENDPOINT.into(),
            events: None,
            files_only: false,
        });
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
    let history = History::open(&outbox)?;
    let odometer = crate::odometer::OdometerHandle::open(&outbox)?;
    let media_refs = Refs::open(&outbox)?;
    {
        // Files of events that left the store while the agent was down, and files that no
        // acknowledged event references (a tap killed between its files and its event).
        let (r, m, uploads) = (media_refs.clone(), media.clone(), pod.upload.is_some());
        let swept = tokio::task::spawn_blocking(move || {
            if uploads {
                // Without an upload target files stay on the van (status says so).
                let released = r.drop_released()?;
                m.release(released, |s| r.referenced(s));
            }
            Ok::<_, anyhow::Error>(m.sweep(|s| r.referenced(s))?)
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
    // Every link to the outside goes through the metering proxy (see `link`).
    let meter = {
        let (clock, tz) = (clock.clone(), config.timezone);
        crate::link::Meter::open(&outbox, Arc::new(move || tz.local(clock.now().0).date_naive()))?
    };
    let (proxy_listener, proxy) =
        crate::link::proxy::bind().await.context("cannot listen on loopback for the metering proxy")?;
    let allowed = Arc::new(links(&config, &meter));
    let proxy = Some(proxy);
    let client = webhook::client(
        config.webhooks.iter().map(|e| &**e).chain(config.pod.upload.as_ref().map(|u| &*u.endpoint)),
        proxy,
    )?;
    // Plain http:// webhooks go on sockets of the agent's own, counted there (`link::direct`).
    let direct = crate::link::direct::Direct::new(meter.clone());
    let webhooks = WebhookStatus::default();
    // Built before anything runs, so that unreadable TLS files fail the start.
    let mqtt = match &config.mqtt {
        Some(m) => Some((Arc::new(m.clone()), telemetry::options(m, proxy)?, telemetry::TelemetryStatus::default())),
        None => None,
    };
    let owntracks_http = match &config.owntracks_http {
        Some(h) => {
            Some((Arc::new(h.clone()), telemetry::http::client(h, proxy)?, telemetry::TelemetryStatus::default()))
        }
        None => None,
    };
    let traccar = match &config.traccar {
        Some(t) => Some((
            Arc::new(t.clone()),
            telemetry::http::traccar_client(t, proxy)?,
            telemetry::TelemetryStatus::default(),
        )),
        None => None,
    };
    let endpoints = Arc::new(config.webhooks.clone());
    let taps =
        Taps::new(outbox.clone(), latest.clone(), clock.clone(), config.vehicle_id.clone(), config.driver_id.clone())?
            .with_default_radius(config.stops.radius_m)
            .with_odometer(odometer.clone());
    let sources = Sources {
        vehicle_id: config.vehicle_id.clone(),
        gps_source: config.gps.source.kind(),
        latest: latest.clone(),
        clock: clock.clone(),
        outbox: outbox.clone(),
        history: history.clone(),
        odometer: odometer.clone(),
        media_refs: media_refs.clone(),
        endpoints: endpoints.clone(),
        webhooks: webhooks.clone(),
        telemetry: mqtt.as_ref().map(|(m, _, status)| (status.clone(), format!("{}:{}", m.host, m.port))),
        owntracks_http: owntracks_http.as_ref().map(|(h, _, status)| (status.clone(), h.url.to_string())),
        traccar: traccar.as_ref().map(|(t, _, status)| (status.clone(), t.url.to_string())),
        api: Arc::default(),
        media: media.clone(),
        pod: pod.clone(),
        tz: config.timezone,
        meter: meter.clone(),
        daily_budget: config.positions.budget.map(|b| b.bytes),
    };
    let geofence = config.stops.auto_arrived.then(|| taps.clone());
    let route_taps = taps.clone();
    let api = Api {
        taps,
        sources: sources.clone(),
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
        let (proxied, stop) = (meter.clone(), shutdown.clone());
        parts.set.spawn(async move {
            crate::link::proxy::serve(proxy_listener, proxied, allowed, stop).await;
            Ok(())
        });
        parts.set.spawn(meter.clone().run(shutdown.clone()));
    }
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
        let (counters, limits) = (api.sources.api.clone(), config.api.limits);
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
            history: history.clone(),
            client: client.clone(),
            direct: direct.clone(),
            clock: clock.clone(),
            status: webhooks.clone(),
            tz: config.timezone,
            runner: webhook::format::jq::Runner::current(),
            meter: meter.clone(),
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
        meter: meter.clone(),
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
    if let Some((t, client, status)) = traccar {
        let deps = telemetry::Deps {
            events: outbox
                .waker(telemetry::traccar::EVENT_ENDPOINT)
                .context("the outbox has no Traccar event endpoint")?,
            ..telemetry_deps(status)
        };
        let (shutdown, driver_id) = (shutdown.clone(), config.driver_id.clone());
        parts.spawn_watched("traccar", async move {
            telemetry::http::run_traccar(t, client, driver_id, deps, shutdown).await.context("traccar failed")
        });
    }
    {
        // Idempotency keys and job history are kept a week as GPS time counts it: the prune
        // waits for the receiver's first time (see `Clock::confirmed_now`).
        let (outbox, history, clock, shutdown) = (outbox.clone(), history.clone(), clock.clone(), shutdown.clone());
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
                if let Err(e) = history.prune(now) {
                    tracing::warn!(error = %e, "could not prune old job history");
                }
            })
            .await?;
            Ok(())
        });
    }
    {
        let (latest, shutdown) = (latest.clone(), shutdown.clone());
        parts.spawn_watched("summary", async move {
            crate::gps::summary::run(latest, clock, SUMMARY_EVERY, shutdown).await;
            Ok(())
        });
    }
    {
        let (latest, odometer, shutdown) = (latest.clone(), odometer.clone(), shutdown.clone());
        let scale = config.gps.source.time_scale();
        parts.set.spawn(async move {
            crate::odometer::run(latest, odometer, scale, shutdown).await;
            Ok(())
        });
    }
    {
        let (taps, outbox, latest, shutdown) = (route_taps, outbox.clone(), latest.clone(), shutdown.clone());
        let settings = crate::taps::day::Settings {
            rules: config.stops.rules.at_time_scale(config.gps.source.time_scale()),
            default_radius_m: config.stops.radius_m,
            time_scale: config.gps.source.time_scale(),
            depot: config.stops.auto_arrived,
        };
        parts.spawn_watched("route", async move {
            crate::taps::day::run(taps, outbox, latest, settings, shutdown).await;
            Ok(())
        });
    }
    if let Some(taps) = geofence {
        let (outbox, latest, shutdown) = (outbox.clone(), latest.clone(), shutdown.clone());
        // A sped-up source (the demo, a replay) keeps the rules in its own seconds.
        let rules = config.stops.rules.at_time_scale(config.gps.source.time_scale());
        let radius = config.stops.radius_m;
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
        let traccar_removed = config.traccar.is_none();
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
                if traccar_removed {
                    // Events waiting for a Traccar server that is no longer configured.
                    match outbox.forget_endpoint(telemetry::traccar::EVENT_ENDPOINT) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(events = n, "[traccar] removed: dropped events waiting for the server"),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not drop events waiting for a removed Traccar server")
                        }
                    }
                }
            })
            .await?;
            Ok(())
        });
    }
    if pod.upload.is_some() {
        let (outbox, refs, media, shutdown) = (outbox.clone(), media_refs.clone(), media.clone(), shutdown.clone());
        parts.spawn_watched("media", async move {
            crate::media::janitor::run(outbox, refs, media, shutdown).await;
            Ok(())
        });
    }
    let compaction = Arc::new(tokio::sync::Notify::new());
    {
        let (outbox, due, shutdown) = (outbox.clone(), compaction.clone(), shutdown.clone());
        parts.spawn_watched("upkeep", async move {
            crate::outbox::upkeep::run(outbox, due, UPKEEP_EVERY, shutdown).await;
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

/// Tells the meter which part uses which destination, and gives the proxy the destinations the
/// config names (any, when an upload URL template has a placeholder in its host).
fn links(config: &Config, meter: &crate::link::Meter) -> crate::link::proxy::Allowed {
    let mut allowed = crate::link::proxy::Allowed::default();
    let mut to = |url: &reqwest::Url, part: &str| {
        meter.used_by(url, part);
        allowed.to.extend(crate::link::destination(url));
    };
    for ep in &config.webhooks {
        to(&ep.url, &format!("webhook {}", ep.name));
    }
    if let Some(u) = &config.owntracks_http {
        to(&u.url, "owntracks_http");
    }
    if let Some(t) = &config.traccar {
        to(&t.url, "traccar");
    }
    if let Some(u) = &config.pod.upload {
        to(&u.endpoint.url, "uploads");
    }
    if let Some(m) = &config.mqtt {
        let dest = format!("{}:{}", m.host, m.port);
        meter.used_by_destination(&dest, "mqtt");
        allowed.to.insert(dest);
    }
    allowed.any = config.pod.upload.as_ref().is_some_and(|u| !u.template.fixed_destination());
    allowed
}
