//! MQTT, one of the transports of positions (the others, OwnTracks HTTP and Traccar, are
//! [`super::http`]): positions, every status event mirrored, and a retained online/offline state
//! with `offline` as the last will.
//!
//! # Data flow
//! - The sampler (`super::sample`) makes the points.
//! - The publisher owns one broker connection at a time. While connected, a new point is
//!   published at once ("live"). While not, it goes to the outbox's telemetry ring (bounded; the
//!   oldest are dropped and counted), and so does every live point still unacknowledged when a
//!   connection drops. After a reconnect the ring (the "backlog") is published oldest first,
//!   with at most [`WINDOW`] messages unacknowledged at once, so a live point waits behind at
//!   most that many. A point leaves the ring only once the broker acknowledged it (QoS 1/2) or
//!   it was written to the socket (QoS 0).
//! - Status events are not points: they stay in the outbox as deliveries to the pseudo-endpoint
//!   [`EVENT_ENDPOINT`] and are removed only on the broker's PUBACK, so they are never dropped and
//!   survive restarts like webhooks do. They go before backlog points.
//!
//! # What a subscriber sees
//! `online` (retained) on every connect; the backlog oldest first; live positions either behind
//! it (`order = "time"`: no live point before every older one is acknowledged) or as they
//! happen, interleaved with it (`"live_first"`); events in the order they happened. Every
//! position carries `tst` and its `id`. Delivery is at least once: a
//! connection lost between publish and acknowledgement means the message is sent again.
//!
//! Each connection is a fresh rumqttc client with a clean session: curbside, not the broker's
//! session state, is the record of what was acknowledged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rumqttc::{AsyncClient, ConnectionError, Event, Incoming, MqttOptions, Outgoing, QoS};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connect::Topics;
use super::inflight::{Inflight, Item, RingAcks};
use super::settings::{MqttConfig, MqttMode, Order};
use super::{Deps, Point, command, owntracks, owntracks_body, payload, sample, stops, store};
use crate::outbox::{Outbox, OutboxError};
use crate::reconnect::{Failure, Reconnect};

/// Why the loop drops its connection (and tries again).
#[derive(Debug, thiserror::Error)]
enum Broken {
    /// rumqttc refused a publish (its request queue is closed).
    #[error("mqtt client: {0}")]
    Client(rumqttc::ClientError),
    /// rumqttc refused a subscription.
    #[error("mqtt subscribe: {0}")]
    Subscribe(rumqttc::ClientError),
    /// The outbox failed to read or settle an event.
    #[error("outbox: {0}")]
    Outbox(OutboxError),
    /// The telemetry ring failed.
    #[error("telemetry ring: {0}")]
    Ring(OutboxError),
    /// rumqttc's outgoing packets no longer match what was handed to it.
    #[error("{0}")]
    Inflight(&'static str),
}

/// The outbox pseudo-endpoint that holds status events until the broker acknowledged them.
/// Not a valid webhook name (`:`), so it cannot collide with one.
pub const EVENT_ENDPOINT: &str = "mqtt:event";
/// Backlog points and events unacknowledged at once.
pub const WINDOW: usize = 64;
/// Backlog points read from disk at a time.
const READ_AHEAD: usize = 256;
/// Batching: the most points in one message.
const BATCH_MAX: usize = 120;
/// How long a clean shutdown waits for `offline` to be sent.
const GOODBYE: Duration = Duration::from_secs(2);

/// Runs sampler and publisher until shutdown. Never fails because the broker is away.
pub async fn run(
    cfg: Arc<MqttConfig>,
    options: MqttOptions,
    vehicle_id: String,
    deps: Deps,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(1024);
    let sampler = sample(deps.clone(), tx, shutdown.clone());
    let (stops_tx, stops_rx) = mpsc::channel(4);
    let applier = stops::apply(stops_rx, deps.outbox.clone(), deps.status.clone());
    let publisher = Publisher::new(&cfg, vehicle_id, options, deps, stops_tx);
    // The applier ends when the publisher (and its sender) is gone.
    tokio::join!(sampler, publisher.run(rx, shutdown), applier);
    Ok(())
}

struct Publisher {
    topics: Topics,
    mode: MqttMode,
    order: Order,
    /// Compact mode's batch period, when set.
    batch: Option<Duration>,
    qos: QoS,
    tid: String,
    options: MqttOptions,
    deps: Deps,
    /// Messages on `{prefix}/stops`, to [`stops::apply`].
    stops: mpsc::Sender<Vec<u8>>,
}

/// One connection's bookkeeping.
struct Conn {
    client: AsyncClient,
    connected: bool,
    /// Handed to rumqttc and not acknowledged yet.
    inflight: Inflight,
    /// Backlog points and events unacknowledged.
    window: usize,
    /// Ring points read ahead, and the last ring sequence read.
    backlog: VecDeque<crate::outbox::RingPoint>,
    backlog_read: Option<u64>,
    backlog_done: bool,
    /// Which backlog points may leave the ring.
    ring: RingAcks,
    /// Last event sequence published.
    events_read: Option<u64>,
    /// The stop list version last published as OwnTracks waypoints.
    waypoints_version: Option<u64>,
    /// Batching: when the waiting points' batch is due.
    batch_due: Option<Instant>,
}

enum Ended {
    Shutdown,
    /// Why, and what kind of failure it was (for [`Reconnect`]).
    Lost(String, Failure),
}

impl Publisher {
    fn new(
        cfg: &MqttConfig,
        vehicle_id: String,
        options: MqttOptions,
        deps: Deps,
        stops: mpsc::Sender<Vec<u8>>,
    ) -> Publisher {
        let qos = match cfg.qos_position {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        Publisher {
            topics: Topics::of(cfg),
            mode: cfg.mode.clone(),
            order: cfg.order,
            batch: cfg.batch,
            qos,
            tid: payload::tracker_id(&vehicle_id),
            options,
            deps,
            stops,
        }
    }

    async fn run(self, mut points: mpsc::Receiver<Point>, shutdown: CancellationToken) {
        let mut reconnect = Reconnect::default();
        // Said once at `warn` per outage, then at `debug` on every retry.
        let mut said_unreachable = false;
        loop {
            let (client, mut eventloop) = AsyncClient::new(self.connection_options(), 4 * WINDOW + 64);
            let (events_tx, mut events_rx) = mpsc::channel(1024);
            let poller = tokio::spawn(async move {
                loop {
                    let r = eventloop.poll().await;
                    let stop = r.is_err();
                    if events_tx.send(r).await.is_err() || stop {
                        return;
                    }
                }
            });
            let mut conn = Conn::new(client);
            let ended = self.connection(&mut conn, &mut points, &mut events_rx, &shutdown).await;
            if matches!(ended, Ended::Shutdown) && conn.connected {
                self.goodbye(&mut conn, &mut events_rx).await;
            }
            poller.abort();
            if let Err(e) = conn.remove_acked(&self.deps.outbox) {
                tracing::warn!(error = %e, "telemetry ring: acknowledged points stay (sent again later)");
            }
            let was_connected = conn.connected;
            // Live points the broker has not acknowledged go to the ring, in the order made.
            let unacked: Vec<Point> = std::mem::take(&mut conn.inflight)
                .unacked()
                .filter_map(|i| if let Item::Live(p) = i { Some(p) } else { None })
                .collect();
            let mut unacked = unacked;
            unacked.sort_by_key(|p| p.tst);
            for p in unacked {
                self.store(&p);
            }
            let failure = match ended {
                Ended::Shutdown => {
                    while let Ok(p) = points.try_recv() {
                        self.store(&p);
                    }
                    return;
                }
                Ended::Lost(e, failure) => {
                    if was_connected {
                        tracing::warn!(error = %e, "mqtt connection lost; positions go to the backlog");
                        said_unreachable = true;
                    } else if !said_unreachable {
                        tracing::warn!(error = %e, "mqtt broker not reachable; positions go to the backlog");
                        said_unreachable = true;
                    } else {
                        tracing::debug!(error = %e, "mqtt broker still not reachable");
                    }
                    self.deps.status.update(|c| {
                        c.connected = false;
                        c.last_error = Some(e);
                        if was_connected {
                            c.since = Some(Utc::now());
                        }
                    });
                    failure
                }
            };
            // Wait before reconnecting (an unreachable broker is probed every second, one that
            // refuses is backed off); points keep going to the ring meanwhile.
            if was_connected {
                reconnect.connected();
            }
            let until = Instant::now() + reconnect.after(failure, crate::reconnect::jitter());
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    p = points.recv() => match p {
                        Some(p) => self.store(&p),
                        None => return,
                    },
                    _ = shutdown.cancelled() => {
                        while let Ok(p) = points.try_recv() {
                            self.store(&p);
                        }
                        return;
                    }
                }
            }
        }
    }

    /// The options of the next connection: in OwnTracks mode the last will is OwnTracks' `lwt`
    /// with the time of this connection.
    fn connection_options(&self) -> MqttOptions {
        let mut options = self.options.clone();
        if matches!(self.mode, MqttMode::OwnTracks { .. }) {
            let lwt = owntracks::lwt(self.deps.clock.now().0.timestamp()).to_string();
            options.set_last_will(rumqttc::LastWill::new(&self.topics.position, lwt, QoS::AtLeastOnce, false));
        }
        options
    }

    /// Serves one connection until it is lost or shutdown is asked.
    async fn connection(
        &self,
        conn: &mut Conn,
        points: &mut mpsc::Receiver<Point>,
        events: &mut mpsc::Receiver<Result<Event, ConnectionError>>,
        shutdown: &CancellationToken,
    ) -> Ended {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ended::Shutdown,
                ev = events.recv() => match ev {
                    None => return Ended::Lost("mqtt event loop ended".into(), Failure::Unreachable),
                    Some(Err(e)) => {
                        // A refused tunnel says no more than that; the metering proxy knows why.
                        let (host, port) = self.options.broker_address();
                        let why = matches!(e, ConnectionError::Proxy(_))
                            .then(|| self.deps.meter.dial_error_to(&format!("{host}:{port}")))
                            .flatten();
                        return Ended::Lost(why.unwrap_or_else(|| describe(&e)), failure(&e));
                    }
                    Some(Ok(ev)) => {
                        if let Err(e) = self.on_event(conn, ev) {
                            return Ended::Lost(e.to_string(), Failure::Refused);
                        }
                    }
                },
                p = points.recv() => match p {
                    None => return Ended::Shutdown,
                    Some(p) => self.offer(conn, p),
                },
                _ = self.deps.events.notified(), if conn.connected => {}
                _ = tokio::time::sleep_until(conn.batch_due.unwrap_or_else(Instant::now)), if conn.batch_due.is_some() => {
                    conn.batch_due = None;
                }
            }
            if conn.connected {
                if let Err(e) = self.fill(conn) {
                    return Ended::Lost(e.to_string(), Failure::Refused);
                }
            }
        }
    }

    fn on_event(&self, conn: &mut Conn, ev: Event) -> Result<(), Broken> {
        match ev {
            Event::Incoming(Incoming::ConnAck(_)) => {
                conn.connected = true;
                tracing::info!(broker = %self.options.broker_address().0, "mqtt connected");
                self.deps.status.update(|c| {
                    c.connected = true;
                    c.since = Some(Utc::now());
                    c.connects += 1;
                });
                conn.publish(&self.topics.state, QoS::AtLeastOnce, true, b"online".to_vec(), Item::Other)?;
                conn.client.try_subscribe(&self.topics.stops, QoS::AtLeastOnce).map_err(Broken::Subscribe)?;
                if let Some(cmd) = &self.topics.cmd {
                    conn.client.try_subscribe(cmd, QoS::AtLeastOnce).map_err(Broken::Subscribe)?;
                }
            }
            Event::Incoming(Incoming::Publish(p)) if p.topic == self.topics.stops => self.on_stops(&p.payload),
            Event::Incoming(Incoming::Publish(p)) if self.topics.cmd.as_deref() == Some(&*p.topic) => {
                self.on_command(conn, &p.payload)
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(item) = conn.inflight.written(pkid).map_err(Broken::Inflight)? {
                    self.done(conn, item)?; // QoS 0: written is all there is
                }
            }
            Event::Outgoing(Outgoing::AwaitAck(pkid)) => conn.inflight.held(pkid).map_err(Broken::Inflight)?,
            Event::Incoming(Incoming::PubAck(a)) => self.acked(conn, a.pkid)?,
            Event::Incoming(Incoming::PubComp(c)) => self.acked(conn, c.pkid)?,
            _ => {}
        }
        Ok(())
    }

    /// Hands a `{prefix}/stops` message to [`stops::apply`]. A full queue means lists are
    /// coming faster than they can be stored: one is skipped (the newest wins when it comes
    /// again); the connection never waits on it.
    fn on_stops(&self, payload: &[u8]) {
        if self.stops.try_send(payload.to_vec()).is_err() {
            tracing::warn!("mqtt stops: lists are coming faster than they are stored; one skipped");
        }
    }

    /// An OwnTracks command: carried out, or counted and said why not.
    fn on_command(&self, conn: &mut Conn, payload: &[u8]) {
        if let Some(p) = command(&self.deps, &self.stops, payload) {
            self.offer(conn, p);
        }
    }

    fn acked(&self, conn: &mut Conn, pkid: u16) -> Result<(), Broken> {
        match conn.inflight.acked(pkid) {
            Some(item) => self.done(conn, item),
            None => Ok(()), // e.g. a PUBREC's PUBCOMP bookkeeping, or an ack after a reset
        }
    }

    fn done(&self, conn: &mut Conn, item: Item) -> Result<(), Broken> {
        let o = &self.deps.outbox;
        match item {
            Item::Live(_) => self.deps.status.update(|c| c.positions_published += 1),
            Item::Backlog(seq) => {
                conn.window -= 1;
                if let Some(through) = conn.ring.acked(seq) {
                    o.ring().remove_through(through).map_err(Broken::Ring)?;
                    conn.ring.removed(through);
                }
                self.deps.status.update(|c| c.positions_published += 1);
            }
            Item::Batch(seqs) => {
                conn.window -= 1;
                for seq in &seqs {
                    if let Some(through) = conn.ring.acked(*seq) {
                        o.ring().remove_through(through).map_err(Broken::Ring)?;
                        conn.ring.removed(through);
                    }
                }
                self.deps.status.update(|c| c.positions_published += seqs.len() as u64);
            }
            Item::Event(seq) => {
                conn.window -= 1;
                o.delivered(EVENT_ENDPOINT, seq).map_err(Broken::Outbox)?;
                self.deps.status.update(|c| c.events_published += 1);
            }
            Item::Other => {}
        }
        Ok(())
    }

    /// Hands events, then backlog points, to rumqttc while the window has room; in OwnTracks
    /// mode first the stops as waypoints when the list is new to this connection.
    fn fill(&self, conn: &mut Conn) -> Result<(), Broken> {
        let o = &self.deps.outbox;
        if let Some(topic) = &self.topics.waypoints {
            let list = crate::stops::store::current(o);
            if list.version > 0 && conn.waypoints_version != Some(list.version) {
                let w = owntracks::waypoints(&list, self.deps.default_radius_m);
                conn.publish(topic, QoS::AtLeastOnce, false, w.to_string().into_bytes(), Item::Other)?;
                conn.waypoints_version = Some(list.version);
            }
        }
        'events: while conn.window < WINDOW {
            let events =
                o.pending_after(EVENT_ENDPOINT, conn.events_read, WINDOW - conn.window).map_err(Broken::Outbox)?;
            if events.is_empty() {
                break;
            }
            for (seq, _) in events {
                if !o.is_flushed(seq) {
                    // Not acknowledged to the driver yet; in order, nothing after it either.
                    // The append wakes this loop once its fsync is done.
                    break 'events;
                }
                conn.events_read = Some(seq);
                let Some(event) = o.event(seq).map_err(Broken::Outbox)? else {
                    // Delivered and removed by an earlier run's crash window: nothing to send.
                    o.delivered(EVENT_ENDPOINT, seq).map_err(Broken::Outbox)?;
                    continue;
                };
                if let (Some(topic), MqttMode::OwnTracks { .. }) = (&self.topics.transition, &self.mode) {
                    // The geofence's arrivals and departures, as OwnTracks region events (at least
                    // once with the event they go before).
                    if let Some(t) =
                        owntracks::transition(&event, &crate::stops::store::current(&self.deps.outbox), &self.tid)
                    {
                        conn.publish(topic, QoS::AtLeastOnce, false, t.to_string().into_bytes(), Item::Other)?;
                    }
                }
                let body = crate::event::envelope(&crate::media::upload::with_urls(&event, self.deps.public.as_ref()));
                conn.window += 1;
                conn.publish(&self.topics.event, QoS::AtLeastOnce, false, body, Item::Event(seq))?;
            }
        }
        if let Some(period) = self.batch {
            return self.fill_batches(conn, period);
        }
        let oldest = super::oldest_kept(&self.deps);
        while conn.window < WINDOW {
            if conn.backlog.is_empty() && !conn.backlog_done {
                let more = o.ring().after(conn.backlog_read, READ_AHEAD).map_err(Broken::Ring)?;
                conn.backlog_done = more.len() < READ_AHEAD;
                conn.backlog.extend(more);
            }
            let Some(p) = conn.backlog.pop_front() else { break };
            conn.backlog_read = Some(p.seq);
            let point: Option<Point> = serde_json::from_slice(&p.payload).ok();
            let body = point.filter(|_| p.tst >= oldest).and_then(|pt| self.body(&pt));
            let Some(body) = body else {
                // Unreadable or past the age limit: it leaves with the next acknowledged prefix.
                continue;
            };
            conn.window += 1;
            conn.ring.sent(p.seq);
            conn.publish(&self.topics.position, self.qos, false, body, Item::Backlog(p.seq))?;
        }
        Ok(())
    }

    /// Batching: the waiting points, oldest first, in messages of up to [`BATCH_MAX`], each
    /// once its oldest point is `period` old (or it is full: a backlog after a dead zone goes at
    /// once); until then `batch_due` wakes the connection when it will be.
    fn fill_batches(&self, conn: &mut Conn, period: Duration) -> Result<(), Broken> {
        let o = &self.deps.outbox;
        let oldest = super::oldest_kept(&self.deps);
        while conn.window < WINDOW {
            while conn.backlog.len() < BATCH_MAX && !conn.backlog_done {
                let from = conn.backlog.back().map(|p| p.seq).or(conn.backlog_read);
                let more = o.ring().after(from, READ_AHEAD).map_err(Broken::Ring)?;
                conn.backlog_done = more.len() < READ_AHEAD;
                conn.backlog.extend(more);
            }
            let Some(first) = conn.backlog.front() else { break };
            let age = self.deps.clock.now().0.timestamp().saturating_sub(first.tst).max(0) as u64;
            if conn.backlog.len() < BATCH_MAX && age < period.as_secs() {
                conn.batch_due = Some(Instant::now() + Duration::from_secs(period.as_secs() - age));
                break;
            }
            let (mut body, mut seqs) = (b"[".to_vec(), Vec::new());
            while seqs.len() < BATCH_MAX {
                let Some(p) = conn.backlog.pop_front() else { break };
                conn.backlog_read = Some(p.seq);
                let point: Option<Point> = serde_json::from_slice(&p.payload).ok();
                // Unreadable or past the age limit: it leaves with the next acknowledged prefix.
                let Some(v) = point.filter(|_| p.tst >= oldest).and_then(|pt| payload::compact(&pt)) else { continue };
                if !seqs.is_empty() {
                    body.push(b',');
                }
                body.extend_from_slice(v.to_string().as_bytes());
                seqs.push(p.seq);
            }
            if seqs.is_empty() {
                continue;
            }
            body.push(b']');
            conn.window += 1;
            for seq in &seqs {
                conn.ring.sent(*seq);
            }
            conn.publish(&self.topics.position, self.qos, false, body, Item::Batch(seqs))?;
        }
        Ok(())
    }

    /// Whether a new point is published at once. In time order only when the backlog is
    /// empty: every older point has been acknowledged (acknowledged points leave the ring, all
    /// of them once nothing is in flight); otherwise it joins the backlog, behind the rest.
    fn goes_live(&self, conn: &Conn) -> bool {
        match self.order {
            Order::LiveFirst => true,
            Order::Time => conn.backlog.is_empty() && self.deps.outbox.ring().stats().points == 0,
        }
    }

    /// A new point (made by the rules, or asked for): published at once when it may go live,
    /// else kept in the backlog behind the older ones.
    fn offer(&self, conn: &mut Conn, p: Point) {
        if conn.connected && self.batch.is_none() && self.goes_live(conn) {
            self.send_live(conn, p);
        } else {
            self.keep(conn, &p);
        }
    }

    fn send_live(&self, conn: &mut Conn, p: Point) {
        let Some(body) = self.body(&p) else { return };
        if let Err(e) = conn.publish(&self.topics.position, self.qos, false, body, Item::Live(p.clone())) {
            tracing::debug!(error = %e, "live position stored instead");
            self.keep(conn, &p);
        }
    }

    /// Keeps a point in the backlog while this connection runs: the next fill reads it.
    fn keep(&self, conn: &mut Conn, p: &Point) {
        self.store(p);
        conn.backlog_done = false;
    }

    /// The message of `p`, made now (`created_at` says when: for a backlog point, how long
    /// after its fix it was sent).
    fn body(&self, p: &Point) -> Option<Vec<u8>> {
        let v = match &self.mode {
            MqttMode::Curbside => payload::position(p, self.deps.clock.now().0.timestamp()),
            MqttMode::Compact => payload::compact(p)?,
            MqttMode::OwnTracks { .. } => owntracks_body(&self.deps, p, &self.tid)?,
        };
        serde_json::to_vec(&v).ok()
    }

    /// Keeps a point for later.
    fn store(&self, p: &Point) {
        store(&self.deps, p)
    }

    /// Clean shutdown: retained `offline`, then DISCONNECT, within [`GOODBYE`].
    async fn goodbye(&self, conn: &mut Conn, events: &mut mpsc::Receiver<Result<Event, ConnectionError>>) {
        let sent = conn.publish(&self.topics.state, QoS::AtLeastOnce, true, b"offline".to_vec(), Item::Other).is_ok()
            && conn.client.try_disconnect().is_ok();
        if !sent {
            return;
        }
        let _ = tokio::time::timeout(GOODBYE, async {
            while let Some(Ok(ev)) = events.recv().await {
                if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                    return;
                }
                // Acknowledgements still arriving count (fewer duplicates next time).
                let _ = self.on_event(conn, ev);
            }
        })
        .await;
        self.deps.status.update(|c| {
            c.connected = false;
            c.since = Some(Utc::now());
        });
        tracing::info!("mqtt disconnected (offline published)");
    }
}

impl Conn {
    /// Hands a message to rumqttc and remembers what it was, to match the packet id it gets.
    fn publish(&mut self, topic: &str, qos: QoS, retain: bool, body: Vec<u8>, item: Item) -> Result<(), Broken> {
        self.client.try_publish(topic, qos, retain, body).map_err(Broken::Client)?;
        self.inflight.requested(item);
        Ok(())
    }

    /// Removes the acknowledged prefix of the backlog from the ring.
    fn remove_acked(&mut self, outbox: &Outbox) -> Result<(), crate::outbox::OutboxError> {
        if let Some(t) = self.ring.removable() {
            outbox.ring().remove_through(t)?;
            self.ring.removed(t);
        }
        Ok(())
    }

    fn new(client: AsyncClient) -> Conn {
        Conn {
            client,
            connected: false,
            inflight: Inflight::default(),
            window: 0,
            backlog: VecDeque::new(),
            backlog_read: None,
            backlog_done: false,
            ring: RingAcks::default(),
            events_read: None,
            waypoints_version: None,
            batch_due: None,
        }
    }
}

/// What kind of failure `e` is: the broker (or its TLS) saying no is a refusal, backed off;
/// anything else (refused or reset connections, timeouts, a connection lost) is a broker not
/// reachable, probed every second.
fn failure(e: &ConnectionError) -> Failure {
    use rumqttc::StateError;
    match e {
        ConnectionError::ConnectionRefused(_) | ConnectionError::NotConnAck(_) | ConnectionError::Tls(_) => {
            Failure::Refused
        }
        ConnectionError::MqttState(StateError::Io(_)) => Failure::Unreachable,
        ConnectionError::MqttState(_) => Failure::Refused,
        _ => Failure::Unreachable,
    }
}

/// A connection error for logs and status, with the reason a broker refused us.
fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => format!("broker refused the connection: {code:?}"),
        other => other.to_string(),
    }
}
