//! The agent's state in one typed snapshot: built once from the parts' handles
//! ([`Sources::snapshot`]) and rendered four ways: as JSON by `GET /api/v1/status` (serde), as
//! Prometheus text by `GET /metrics` (`api::metrics`), as systemd's one-line `STATUS=`
//! ([`Status::line`]) and as the CLI's text ([`Status::text`]), which deserialises the same type
//! from the API. A field is added here once and every view can show it.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::gps::clock::{Clock, ClockSource, ClockStatus};
use crate::gps::fix::Fix;
use crate::gps::latest::LatestFix;
use crate::history::History;
use crate::media::Media;
use crate::media::refs::Refs;
use crate::media::settings::{Pod, UPLOAD_ENDPOINT};
use crate::outbox::{Attempt, Outbox, RingStats, StoreLoss};
use crate::server::{ConnCounters, ConnReport};
use crate::telemetry::{self, Counters, TelemetryStatus};
use crate::webhook::{self, Endpoint, EndpointStatus, WebhookStatus};

/// Everything `curbside status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// This vehicle.
    pub vehicle_id: String,
    /// The agent's version.
    pub version: String,
    /// The GPS source and fix.
    pub gps: GpsReport,
    /// The verdict on the system clock, and where stamps take their time from now.
    pub clock: ClockReport,
    /// The store.
    pub outbox: OutboxReport,
    /// One per `[[webhook]]`, in config order.
    pub webhooks: Vec<EndpointReport>,
    /// MQTT telemetry, when configured.
    pub mqtt: Option<MqttReport>,
    /// Positions over OwnTracks HTTP, when configured.
    #[serde(default)]
    pub owntracks_http: Option<OwnTracksHttpReport>,
    /// The Traccar server, when `[traccar]` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traccar: Option<TraccarReport>,
    /// The local API's connections.
    #[serde(default)]
    pub api: ConnReport,
    /// Proof-of-delivery files on the van and their uploads.
    #[serde(default)]
    pub pod: PodReport,
    /// The stop the van is going to (see [`crate::stops::eta::next`]), when stops are loaded.
    #[serde(default)]
    pub next_stop: Option<NextStop>,
    /// Distance driven and trips (see [`crate::odometer`]).
    #[serde(default)]
    pub odometer: OdometerReport,
    /// Bytes on each link to the outside (see [`crate::link`]).
    #[serde(default)]
    pub links: LinksReport,
}

/// The links' usage in [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinksReport {
    /// Today, as the meter counts it (the van's time zone; GPS time when the clock is wrong).
    pub day: Option<chrono::NaiveDate>,
    /// Bytes sent and received today on every link together.
    pub today_bytes: u64,
    /// `[positions] daily_budget_mb` in bytes, when set.
    pub daily_budget_bytes: Option<u64>,
    /// Whether positions are thinned because today's bytes reached the budget (events never are).
    pub over_budget: bool,
    /// One per destination, in name order.
    pub to: Vec<crate::link::Usage>,
}

/// The odometer in [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OdometerReport {
    /// Metres driven (kept across restarts and power cuts).
    pub total_m: f64,
    /// Trips started since the agent started (moving ≥ 5 km/h for 60 s; stopped 60 s ends one).
    pub trips: u64,
    /// Whether a trip is under way.
    pub driving: bool,
}

/// The next stop in [`Status`]: where, how far, and when (straight line, recent moving speed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextStop {
    /// Its job.
    pub job_id: String,
    /// Its place in the day's order.
    pub sequence: u32,
    /// Who or what is there.
    pub name: String,
    /// Where, as a person reads it.
    pub address: String,
    /// `pending`, `heading` or `arrived`.
    pub state: crate::stops::StopState,
    /// Straight-line distance from the last known fix, metres; `null` without a fix or
    /// coordinates.
    pub distance_m: Option<f64>,
    /// The estimated arrival; `null` once arrived, or without a recent moving speed.
    pub eta: Option<crate::stops::eta::Eta>,
}

/// Proof-of-delivery files in [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodReport {
    /// Bytes of photos and signatures on the van (`state_dir/media`).
    pub media_bytes: u64,
    /// Their budget (`[pod] media_max_mb`), bytes.
    pub media_budget: u64,
    /// Bytes still to upload (of the events waiting for their upload).
    pub upload_pending_bytes: u64,
    /// The uploads, as an endpoint (`pod:upload`), when `[pod] upload_url` is set.
    pub upload: Option<EndpointReport>,
    /// Why files stay on the van, if they do.
    pub warning: Option<String>,
}

/// The GPS part of [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpsReport {
    /// `serial`, `gpsd`, `replay` or `sim`.
    pub source: String,
    /// True while the source is connected.
    pub connected: bool,
    /// The live fix (recent, with a position), if any.
    pub fix: Option<Fix>,
    /// Age of the last epoch the receiver sent, with or without a position, seconds.
    pub fix_age_s: Option<f64>,
    /// The last fix with a position, however old.
    pub last_known: Option<LastKnown>,
    /// NMEA sentences decoded.
    pub sentences: u64,
    /// Sentences dropped (bad checksum, garbage, too long).
    pub bad_sentences: u64,
}

/// The last fix with a position and its age.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastKnown {
    /// The fix.
    pub fix: Fix,
    /// Its age, seconds.
    pub age_s: f64,
}

/// The clock part of [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockReport {
    /// Trusted or not, and why.
    #[serde(flatten)]
    pub verdict: ClockStatus,
    /// Where event stamps take their time from now.
    pub source: ClockSource,
}

/// The store part of [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxReport {
    /// Events stored and not yet delivered everywhere.
    pub events: u64,
    /// Bytes on disk.
    pub size_on_disk: u64,
    /// The disk budget, bytes (`outbox_max_mb`).
    pub budget: u64,
    /// True when taps are refused for the budget.
    pub over_budget: bool,
    /// A store moved aside at start-up, if any.
    pub store_loss: Option<StoreLoss>,
}

/// One webhook endpoint in [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// Its name.
    pub name: String,
    /// Its URL, credentials redacted.
    pub url: String,
    /// Deliveries waiting or retrying.
    pub pending: u64,
    /// Deliveries parked after their retry budget.
    pub failed: u64,
    /// Age of the oldest waiting event, seconds.
    pub oldest_age_s: Option<i64>,
    /// What its loop is doing.
    pub state: EndpointStatus,
    /// The newest failed attempts from the store's log, newest first.
    pub recent_failures: Vec<Attempt>,
}

/// MQTT telemetry in [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MqttReport {
    /// `host:port`.
    pub broker: String,
    /// The publisher's counters.
    #[serde(flatten)]
    pub counters: Counters,
    /// Positions waiting for the broker.
    pub backlog: RingStats,
    /// Status events waiting for the broker.
    pub events_pending: u64,
}

/// Positions over OwnTracks HTTP in [`Status`]. `connected` is whether the last POST was
/// delivered; `connects` how many times deliveries started again after none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnTracksHttpReport {
    /// The endpoint, without credentials.
    pub url: String,
    /// The sender's counters.
    #[serde(flatten)]
    pub counters: Counters,
    /// Positions waiting for the endpoint.
    pub backlog: RingStats,
}

/// The Traccar server's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraccarReport {
    /// The server's OsmAnd port.
    pub url: String,
    /// The sender's counters (`last_error` says when the server does not know the device).
    #[serde(flatten)]
    pub counters: Counters,
    /// Positions waiting for the server.
    pub backlog: RingStats,
    /// Events waiting for the server.
    pub events_pending: u64,
}

/// The parts' handles a snapshot is read from. Clones share the parts.
#[derive(Debug, Clone)]
pub struct Sources {
    /// This vehicle.
    pub vehicle_id: String,
    /// The GPS source kind.
    pub gps_source: &'static str,
    /// The live fix.
    pub latest: LatestFix,
    /// The clock verdict.
    pub clock: Clock,
    /// The store.
    pub outbox: Outbox,
    /// What each job went through (for the next stop).
    pub history: History,
    /// Distance driven and trips.
    pub odometer: crate::odometer::OdometerHandle,
    /// Which events refer to which proof-of-delivery file.
    pub media_refs: Refs,
    /// The configured endpoints.
    pub endpoints: Arc<Vec<Arc<Endpoint>>>,
    /// Their loops' status.
    pub webhooks: WebhookStatus,
    /// Telemetry's counters and its broker (`host:port`), when configured.
    pub telemetry: Option<(TelemetryStatus, String)>,
    /// The OwnTracks HTTP sender's counters and its URL, when configured.
    pub owntracks_http: Option<(TelemetryStatus, String)>,
    /// The Traccar sender's counters and server, when `[traccar]` is set.
    pub traccar: Option<(TelemetryStatus, String)>,
    /// The local API's connection counters.
    pub api: Arc<ConnCounters>,
    /// Proof-of-delivery files.
    pub media: Media,
    /// `[pod]`.
    pub pod: Arc<Pod>,
    /// The van's time zone (`timezone`).
    pub tz: crate::zone::Zone,
    /// The links' usage.
    pub meter: crate::link::Meter,
    /// `[positions] daily_budget_mb` in bytes, when set.
    pub daily_budget: Option<u64>,
}

impl Sources {
    /// Reads every part once.
    pub fn snapshot(&self) -> Status {
        let gps = self.latest.snapshot();
        let webhooks = self.endpoints.iter().map(|ep| self.endpoint(ep)).collect();
        Status {
            vehicle_id: self.vehicle_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            gps: GpsReport {
                source: self.gps_source.to_string(),
                connected: gps.connected,
                fix: self.latest.live().map(|r| r.fix),
                fix_age_s: gps.last.as_ref().map(|r| r.age().as_secs_f64()),
                last_known: gps
                    .last_valid
                    .as_ref()
                    .map(|r| LastKnown { fix: r.fix.clone(), age_s: r.age().as_secs_f64() }),
                sentences: gps.stats.sentences,
                bad_sentences: gps.stats.bad_sentences,
            },
            clock: ClockReport { verdict: self.clock.status(), source: self.clock.now().1 },
            outbox: OutboxReport {
                events: self.outbox.len() as u64,
                size_on_disk: self.outbox.size_on_disk(),
                budget: self.outbox.budget(),
                over_budget: self.outbox.over_budget(),
                store_loss: self.outbox.loss().cloned(),
            },
            webhooks,
            mqtt: self.telemetry.as_ref().map(|(t, broker)| MqttReport {
                broker: broker.clone(),
                counters: t.counters(),
                backlog: self.outbox.ring().stats(),
                events_pending: self.outbox.depth(telemetry::EVENT_ENDPOINT).pending,
            }),
            owntracks_http: self.owntracks_http.as_ref().map(|(t, url)| OwnTracksHttpReport {
                url: url.clone(),
                counters: t.counters(),
                backlog: self.outbox.ring().stats(),
            }),
            traccar: self.traccar.as_ref().map(|(t, url)| TraccarReport {
                url: url.clone(),
                counters: t.counters(),
                backlog: self.outbox.ring().stats(),
                events_pending: self.outbox.depth(telemetry::traccar::EVENT_ENDPOINT).pending,
            }),
            api: self.api.report(),
            pod: self.pod_report(),
            next_stop: self.next_stop(),
            odometer: OdometerReport {
                total_m: self.odometer.total_m(),
                trips: self.odometer.trips(),
                driving: self.odometer.driving(),
            },
            links: {
                let to = self.meter.usage();
                let today_bytes = to.iter().map(|u| u.today_sent_bytes + u.today_received_bytes).sum();
                LinksReport {
                    day: Some(self.meter.today()),
                    today_bytes,
                    daily_budget_bytes: self.daily_budget,
                    over_budget: self.daily_budget.is_some_and(|b| today_bytes >= b),
                    to,
                }
            },
        }
    }

    fn next_stop(&self) -> Option<NextStop> {
        let list = crate::stops::store::current(&self.outbox);
        if list.stops.is_empty() {
            return None;
        }
        let progress: Vec<_> = list
            .stops
            .iter()
            .map(|s| crate::stops::eta::Progress::of(&self.history.job(&s.job_id, u64::MAX)))
            .collect();
        let (stop, state) = crate::stops::eta::next(&list.stops, &progress)?;
        let here = self.latest.live().or_else(|| self.latest.last_known()).and_then(|r| r.fix.position());
        let distance_m = match (here, stop.lat.zip(stop.lng)) {
            (Some(a), Some(b)) => Some((crate::stops::geofence::distance_m(b, a) * 10.0).round() / 10.0),
            _ => None,
        };
        let eta = match (state, distance_m) {
            (crate::stops::StopState::Arrived, _) | (_, None) => None,
            (_, Some(d)) => crate::stops::eta::estimate(d, self.latest.moving_speed(), self.clock.now().0),
        };
        Some(NextStop {
            job_id: stop.job_id.clone(),
            sequence: stop.sequence,
            name: stop.name.clone(),
            address: stop.address.clone(),
            state,
            distance_m,
            eta,
        })
    }

    fn endpoint(&self, ep: &Endpoint) -> EndpointReport {
        let depth = self.outbox.depth(&ep.name);
        let oldest_age_s = depth
            .oldest_sequence
            .and_then(|s| self.outbox.event(s).ok().flatten())
            .map(|e| (Utc::now() - e.occurred_at).num_seconds());
        EndpointReport {
            name: ep.name.clone(),
            url: webhook::redacted_url(&ep.url),
            pending: depth.pending,
            failed: depth.failed,
            oldest_age_s,
            state: self.webhooks.get(&ep.name),
            recent_failures: self.outbox.recent_attempts(Some(&ep.name), 10),
        }
    }

    fn pod_report(&self) -> PodReport {
        let upload = self.pod.upload.as_ref().map(|u| self.endpoint(&u.endpoint));
        let upload_pending_bytes = match &self.pod.upload {
            Some(_) => self.outbox.upload_pending_bytes(UPLOAD_ENDPOINT),
            None => 0,
        };
        let media_bytes = self.media.bytes();
        let warning = if self.pod.upload.is_none() && media_bytes > 0 {
            Some("no [pod] upload_url: photos and signatures stay on this van (their sha256 and size are sent)".into())
        } else {
            None
        };
        PodReport { media_bytes, media_budget: self.media.budget(), upload_pending_bytes, upload, warning }
    }
}

impl Status {
    /// systemd's `STATUS=` line: the GPS, the outbox, the endpoints, the broker.
    pub fn line(&self) -> String {
        let gps = match &self.gps.fix {
            Some(f) => format!("gps {} fix, {} sats", f.mode, f.sats.map_or("?".into(), |n| n.to_string())),
            None if self.gps.connected => "gps no fix".to_string(),
            None => "gps not connected".to_string(),
        };
        let ok = self.webhooks.iter().filter(|w| w.state.reachable && w.state.disabled.is_none()).count();
        let mut line = format!("{gps}; outbox {} events; webhooks {ok}/{} ok", self.outbox.events, self.webhooks.len());
        if self.outbox.over_budget {
            line.push_str("; OVER DISK BUDGET");
        }
        if let Some(m) = &self.mqtt {
            let state = if m.counters.connected { "connected" } else { "not connected" };
            let _ = write!(line, "; mqtt {state}, backlog {}", m.backlog.points);
        }
        if let Some(h) = &self.owntracks_http {
            let state = if h.counters.connected { "delivering" } else { "not delivering" };
            let _ = write!(line, "; owntracks http {state}, backlog {}", h.backlog.points);
        }
        if let Some(t) = &self.traccar {
            let state = if t.counters.connected { "delivering" } else { "not delivering" };
            let _ = write!(line, "; traccar {state}, backlog {}", t.backlog.points);
        }
        if self.links.over_budget {
            line.push_str("; OVER DAILY BUDGET (positions thinned)");
        }
        line
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A status as the API gives it, with an MQTT broker away and a webhook unreachable.
    pub(crate) fn sample() -> Status {
        serde_json::from_value(json!({
            "version": "0.1.0", "vehicle_id": "van-17",
            "gps": {"source": "sim", "connected": true, "fix": null, "fix_age_s": null, "last_known": null,
                    "sentences": 10, "bad_sentences": 0},
            "clock": {"trusted": true, "reason": "system clock agrees with GPS", "offset_s": null, "source": "system"},
            "outbox": {"events": 1, "size_on_disk": 4096, "budget": 1073741824, "over_budget": false, "store_loss": null},
            "webhooks": [{"name": "office", "url": "https://bo.example.com/hook", "pending": 3, "failed": 0,
                          "oldest_age_s": null, "recent_failures": [],
                          "state": {"reachable": false, "disabled": null, "in_flight": 0, "last_delivery_at": null,
                                    "last_error": "dns error: no such host", "last_error_at": null,
                                    "delivered": 0, "failed_attempts": 0, "recent": []}}],
            "mqtt": {"broker": "broker.example.com:8883", "connected": false, "since": null, "connects": 0,
                     "positions_made": 12, "positions_published": 12, "events_published": 0,
                     "backlog": {"points": 30, "bytes": 9000, "oldest_tst": null, "dropped": 2},
                     "events_pending": 1, "last_error": "connection refused"},
        }))
        .expect("the status JSON reads as the type")
    }

    #[test]
    fn the_json_round_trips_through_the_type() {
        let s = sample();
        let again: Status = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(again, s);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["clock"]["trusted"], true, "the verdict is flattened into clock");
        assert_eq!(v["mqtt"]["connected"], false, "the counters are flattened into mqtt");
    }

    #[test]
    fn the_systemd_line_is_one_line() {
        let line = sample().line();
        assert_eq!(line, "gps no fix; outbox 1 events; webhooks 0/1 ok; mqtt not connected, backlog 30");
    }
}
