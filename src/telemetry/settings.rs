//! The telemetry part's settings, as written (`Raw…`) and as validated: `[positions]` (when a
//! fix becomes a position, and how many wait for the link; shared by both transports),
//! `[mqtt]` and `[owntracks_http]` (the two transports; positions take one of them). The
//! telemetry part owns its settings; `config` only calls the `validate` functions.
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::units::duration;

/// `[mqtt]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// `mqtt://host[:1883]` or `mqtts://host[:8883]`.
    pub url: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// CA certificates (PEM) for `mqtts://`, instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM), with `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Client id; default `curbside-{vehicle_id}`.
    pub client_id: Option<String>,
    /// MQTT keepalive.
    pub keepalive: Option<String>,
    /// Topic prefix; default `curbside/{vehicle_id}`.
    pub topic_prefix: Option<String>,
    /// QoS of positions (0, 1 or 2).
    pub qos_position: Option<u8>,
    /// `curbside`, `compact` or `owntracks`.
    pub mode: Option<String>,
    /// Compact mode: the points of this period in one message.
    pub batch: Option<String>,
    /// `time` or `live_first`: how the backlog and live points mix after a dead zone.
    pub order: Option<String>,
    /// OwnTracks user (topic `owntracks/{user}/{device}`); default `curbside`.
    pub owntracks_user: Option<String>,
    /// OwnTracks device; default the vehicle id.
    pub owntracks_device: Option<String>,
}

/// Which topics and payloads telemetry uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttMode {
    /// `{topic_prefix}/position`, `/event`, `/state`.
    Curbside,
    /// The same topics, each position a compact array (`payload::compact`, opt-in): a third of
    /// the bytes on the link.
    Compact,
    /// `owntracks/{user}/{device}` with OwnTracks `_type: location` payloads.
    OwnTracks {
        /// User part of the topic.
        user: String,
        /// Device part of the topic.
        device: String,
    },
}

/// Validated `[mqtt]`.
#[derive(Clone, PartialEq)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS (`mqtts://`, rustls).
    pub tls: bool,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// CA file for TLS.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for TLS.
    pub client_auth: Option<(PathBuf, PathBuf)>,
    /// Client id.
    pub client_id: String,
    /// Keepalive.
    pub keepalive: Duration,
    /// Topic prefix (curbside mode).
    pub topic_prefix: String,
    /// QoS of positions.
    pub qos_position: u8,
    /// Topics and payloads.
    pub mode: MqttMode,
    /// Compact mode: the points of this period go in one message (`None`: one each).
    pub batch: Option<Duration>,
    /// How the backlog and live points mix.
    pub order: Order,
}

impl std::fmt::Debug for MqttConfig {
    // The password never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.credentials.as_ref().map(|c| &c.0))
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("qos_position", &self.qos_position)
            .field("mode", &self.mode)
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

/// Validates `[mqtt]`; an error is the key (`mqtt.…`) and what is wrong.
pub fn validate(m: RawMqtt, vehicle_id: &str) -> Result<MqttConfig, (String, String)> {
    let key = |k: &str| format!("mqtt.{k}");
    let url_text = m
        .url
        .ok_or_else(|| (key("url"), "is required in [mqtt] (e.g. \"mqtts://broker.example.com:8883\")".to_string()))?;
    let url = reqwest::Url::parse(&url_text).map_err(|e| (key("url"), format!("is not a URL ({e}): {url_text:?}")))?;
    let tls = match url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        other => return Err((key("url"), format!("must start with mqtt:// or mqtts://, got {other}://"))),
    };
    let host =
        url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| (key("url"), "needs a host".to_string()))?.to_string();
    let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
    let credentials = match (m.username, m.password) {
        (Some(u), p) => Some((u, p.unwrap_or_default())),
        (None, Some(_)) => return Err((key("password"), "needs mqtt.username".into())),
        (None, None) => None,
    };
    let client_auth = match (m.client_cert, m.client_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => return Err((key("client_key"), "is required with mqtt.client_cert".into())),
        (None, Some(_)) => return Err((key("client_cert"), "is required with mqtt.client_key".into())),
    };
    if !tls && (m.ca_file.is_some() || client_auth.is_some()) {
        return Err((key("url"), "ca_file and client certificates need an mqtts:// URL".into()));
    }
    let client_id = m.client_id.unwrap_or_else(|| format!("curbside-{vehicle_id}"));
    if client_id.is_empty() || client_id.len() > 64 {
        return Err((key("client_id"), "must be 1 to 64 characters".into()));
    }
    let topic_prefix = m.topic_prefix.unwrap_or_else(|| format!("curbside/{vehicle_id}"));
    if topic_prefix.is_empty() || topic_prefix.contains(['+', '#']) || topic_prefix.ends_with('/') {
        return Err((
            key("topic_prefix"),
            format!("must be a topic without wildcards or a trailing '/', got {topic_prefix:?}"),
        ));
    }
    let qos_position = m.qos_position.unwrap_or(1);
    if qos_position > 2 {
        return Err((key("qos_position"), format!("must be 0, 1 or 2, got {qos_position}")));
    }
    let mode = match m.mode.as_deref().unwrap_or("curbside") {
        "curbside" => MqttMode::Curbside,
        "compact" => MqttMode::Compact,
        "owntracks" => {
            let user = m.owntracks_user.unwrap_or_else(|| "curbside".into());
            let device = m.owntracks_device.unwrap_or_else(|| vehicle_id.to_string());
            for (k, v) in [("owntracks_user", &user), ("owntracks_device", &device)] {
                if v.is_empty() || v.contains(['/', '+', '#']) {
                    return Err((key(k), format!("must be a single topic level, got {v:?}")));
                }
            }
            MqttMode::OwnTracks { user, device }
        }
        other => {
            return Err((key("mode"), format!("must be \"curbside\", \"compact\" or \"owntracks\", got {other:?}")));
        }
    };
    let batch = match m.batch.as_deref() {
        None => None,
        Some(_) if mode != MqttMode::Compact => {
            return Err((key("batch"), "needs mode = \"compact\" (a batch is an array of compact positions)".into()));
        }
        Some(text) => {
            let d = duration(Some(text), "0s").map_err(|e| (key("batch"), e.to_string()))?;
            if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
                return Err((key("batch"), "must be 1s to 1h".into()));
            }
            Some(d)
        }
    };
    // rumqttc pings every keepalive whatever else is sent; a batch already crosses the link
    // every period (and keeps a carrier's NAT open), so batching pings half as often as it sends.
    let keepalive = match m.keepalive.as_deref() {
        Some(text) => duration(Some(text), "30s").map_err(|e| (key("keepalive"), e.to_string()))?,
        None => batch.map_or(KEEPALIVE, |b| (2 * b).clamp(KEEPALIVE, Duration::from_secs(1200))),
    };
    if keepalive < Duration::from_secs(5) || keepalive > Duration::from_secs(65535) {
        return Err((key("keepalive"), "must be between 5s and 65535s".into()));
    }
    let order = match m.order.as_deref() {
        None if matches!(mode, MqttMode::OwnTracks { .. }) => Order::Time,
        None => Order::LiveFirst,
        Some("time") => Order::Time,
        Some("live_first") => Order::LiveFirst,
        Some(other) => return Err((key("order"), format!("must be \"time\" or \"live_first\", got {other:?}"))),
    };
    Ok(MqttConfig {
        host,
        port,
        tls,
        credentials,
        ca_file: m.ca_file,
        client_auth,
        client_id,
        keepalive,
        topic_prefix,
        qos_position,
        mode,
        batch,
        order,
    })
}

/// The MQTT keepalive without `batch`.
pub const KEEPALIVE: Duration = Duration::from_secs(30);

/// `[positions]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPositions {
    /// Acquisition: never more often than this while moving.
    pub interval_moving_min: Option<String>,
    /// Acquisition: at least this often while moving.
    pub interval_moving_max: Option<String>,
    /// Acquisition: heartbeat while stopped.
    pub interval_stopped: Option<String>,
    /// Acquisition: a point per this many metres.
    pub distance_m: Option<f64>,
    /// Acquisition: a point per this much turn, degrees.
    pub heading_change_deg: Option<f64>,
    /// Acquisition: moving at or above this speed, m/s.
    pub moving_speed_mps: Option<f64>,
    /// Offline ring: most positions kept.
    pub backlog_max_points: Option<u64>,
    /// Offline ring: most megabytes kept.
    pub backlog_max_mb: Option<u64>,
    /// Offline ring: oldest position kept.
    pub backlog_max_age: Option<String>,
    /// The day's budget of bytes on every link, megabytes (10^6 bytes).
    pub daily_budget_mb: Option<f64>,
    /// Over the budget, at most one position per this.
    pub over_budget_interval: Option<String>,
}

/// Validated `[positions]`: one set of rules and one ring, whichever transport carries them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Positions {
    /// When a fix becomes a position.
    pub rules: super::rules::Rules,
    /// Bounds of the offline backlog.
    pub backlog: crate::outbox::RingLimits,
    /// `daily_budget_mb`, when set.
    pub budget: Option<Budget>,
}

/// The day's budget: once every link together has moved `bytes` today, positions are thinned to
/// one per `every` (events never are).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Bytes a day (sent and received, every link).
    pub bytes: u64,
    /// At most one position per this once they are spent.
    pub every: Duration,
}

impl Positions {
    /// The rules to apply when today's bytes are `today`: thinned once the budget is spent.
    pub fn rules_at(&self, today: u64) -> std::borrow::Cow<'_, super::rules::Rules> {
        match self.budget {
            Some(b) if today >= b.bytes => std::borrow::Cow::Owned(self.rules.thinned(b.every)),
            _ => std::borrow::Cow::Borrowed(&self.rules),
        }
    }
}

/// Validates `[positions]`; an error is the key (`positions.…`) and what is wrong.
pub fn validate_positions(m: RawPositions) -> Result<Positions, (String, String)> {
    let key = |k: &str| format!("positions.{k}");
    let d = super::rules::Rules::default();
    let dur = |k: &str, v: Option<&str>, default: Duration| -> Result<Duration, (String, String)> {
        match v {
            None => Ok(default),
            Some(t) => duration(Some(t), "0s").map_err(|e| (key(k), e.to_string())),
        }
    };
    let positive = |k: &str, v: Option<f64>, default: f64| -> Result<f64, (String, String)> {
        match v {
            None => Ok(default),
            Some(x) if x.is_finite() && x > 0.0 => Ok(x),
            Some(x) => Err((key(k), format!("must be a positive number, got {x}"))),
        }
    };
    let rules = super::rules::Rules {
        min_interval_moving: dur("interval_moving_min", m.interval_moving_min.as_deref(), d.min_interval_moving)?,
        max_interval_moving: dur("interval_moving_max", m.interval_moving_max.as_deref(), d.max_interval_moving)?,
        heartbeat: dur("interval_stopped", m.interval_stopped.as_deref(), d.heartbeat)?,
        min_distance_m: positive("distance_m", m.distance_m, d.min_distance_m)?,
        min_heading_change_deg: positive("heading_change_deg", m.heading_change_deg, d.min_heading_change_deg)?,
        moving_speed_mps: positive("moving_speed_mps", m.moving_speed_mps, d.moving_speed_mps)?,
    };
    if rules.max_interval_moving < rules.min_interval_moving {
        return Err((key("interval_moving_max"), "must not be shorter than positions.interval_moving_min".into()));
    }
    if rules.heartbeat < Duration::from_secs(1) {
        return Err((key("interval_stopped"), "must be at least 1s".into()));
    }
    if rules.min_heading_change_deg > 180.0 {
        return Err((key("heading_change_deg"), "must be at most 180".into()));
    }
    let b = crate::outbox::RingLimits::default();
    let backlog = crate::outbox::RingLimits {
        max_points: match m.backlog_max_points {
            Some(0) => return Err((key("backlog_max_points"), "must be at least 1".into())),
            Some(n) => n,
            None => b.max_points,
        },
        max_bytes: match m.backlog_max_mb {
            Some(0) => return Err((key("backlog_max_mb"), "must be at least 1".into())),
            Some(n) if n > 1 << 20 => return Err((key("backlog_max_mb"), "is unreasonably large".into())),
            Some(n) => n * 1024 * 1024,
            None => b.max_bytes,
        },
        max_age: dur("backlog_max_age", m.backlog_max_age.as_deref(), b.max_age)?,
    };
    if backlog.max_age < Duration::from_secs(60) {
        return Err((key("backlog_max_age"), "must be at least 1m".into()));
    }
    let every = dur("over_budget_interval", m.over_budget_interval.as_deref(), Duration::from_secs(300))?;
    if every < Duration::from_secs(1) {
        return Err((key("over_budget_interval"), "must be at least 1s".into()));
    }
    let budget = match m.daily_budget_mb {
        None => None,
        Some(mb) if mb.is_finite() && mb > 0.0 && mb <= 1e6 => Some(Budget { bytes: (mb * 1e6) as u64, every }),
        Some(mb) => return Err((key("daily_budget_mb"), format!("must be a positive number of megabytes, got {mb}"))),
    };
    Ok(Positions { rules, backlog, budget })
}

/// `[owntracks_http]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwnTracksHttp {
    /// `http[s]://[user[:password]@]host[:port]/path`, e.g. a Recorder's `…/pub`.
    pub url: Option<String>,
    /// HTTP Basic user name (instead of the URL's).
    pub username: Option<String>,
    /// HTTP Basic password (instead of the URL's).
    pub password: Option<String>,
    /// OwnTracks user (`X-Limit-U`); default `curbside`.
    pub user: Option<String>,
    /// OwnTracks device (`X-Limit-D`); default the vehicle id.
    pub device: Option<String>,
    /// How long one POST may take.
    pub timeout: Option<String>,
}

/// Validated `[owntracks_http]`.
#[derive(Clone, PartialEq)]
pub struct OwnTracksHttpConfig {
    /// Where positions are POSTed; no credentials in it.
    pub url: reqwest::Url,
    /// HTTP Basic user name and password.
    pub credentials: Option<(String, String)>,
    /// OwnTracks user, sent as `X-Limit-U`.
    pub user: String,
    /// OwnTracks device, sent as `X-Limit-D`.
    pub device: String,
    /// How long one POST may take, answer included.
    pub timeout: Duration,
}

impl std::fmt::Debug for OwnTracksHttpConfig {
    // The password never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnTracksHttpConfig")
            .field("url", &self.url.as_str())
            .field("username", &self.credentials.as_ref().map(|c| &c.0))
            .field("user", &self.user)
            .field("device", &self.device)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Validates `[owntracks_http]`; an error is the key (`owntracks_http.…`) and what is wrong.
/// Credentials in the URL (as the OwnTracks apps take them) are moved out of it, so the URL can
/// be shown in status and logs.
pub fn validate_owntracks_http(h: RawOwnTracksHttp, vehicle_id: &str) -> Result<OwnTracksHttpConfig, (String, String)> {
    let key = |k: &str| format!("owntracks_http.{k}");
    let text = h.url.ok_or_else(|| {
        (key("url"), "is required in [owntracks_http] (e.g. \"https://recorder.example.com/pub\")".to_string())
    })?;
    // Never echo the URL: it may hold a password.
    let mut url = reqwest::Url::parse(&text).map_err(|e| (key("url"), format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err((key("url"), format!("must start with http:// or https://, got {}://", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err((key("url"), "needs a host".into()));
    }
    let in_url = (!url.username().is_empty()).then(|| {
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        (decode(url.username()), decode(url.password().unwrap_or("")))
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let credentials = match (h.username, h.password, in_url) {
        (Some(u), p, _) => Some((u, p.unwrap_or_default())),
        (None, Some(_), _) => return Err((key("password"), "needs owntracks_http.username".into())),
        (None, None, from_url) => from_url,
    };
    let user = h.user.unwrap_or_else(|| "curbside".into());
    let device = h.device.unwrap_or_else(|| vehicle_id.to_string());
    for (k, v) in [("user", &user), ("device", &device)] {
        if v.is_empty() || v.contains(['/', '+', '#']) || v.chars().any(char::is_control) {
            return Err((key(k), format!("must be a name without '/', '+', '#', got {v:?}")));
        }
    }
    let timeout = duration(h.timeout.as_deref(), "20s").map_err(|e| (key("timeout"), e.to_string()))?;
    if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(300) {
        return Err((key("timeout"), "must be 1s to 5m".into()));
    }
    Ok(OwnTracksHttpConfig { url, credentials, user, device, timeout })
}

/// `[traccar]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraccar {
    /// The server's OsmAnd port, `http[s]://host:5055`.
    pub url: Option<String>,
    /// The device's identifier in Traccar; default the vehicle id.
    pub device_id: Option<String>,
    /// How long one request may take.
    pub timeout: Option<String>,
}

/// Validated `[traccar]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TraccarConfig {
    /// Where positions go (Traccar's OsmAnd protocol).
    pub url: reqwest::Url,
    /// The device's identifier in Traccar (`id`).
    pub device_id: String,
    /// How long one request may take, answer included.
    pub timeout: Duration,
}

/// Validates `[traccar]`; an error is the key (`traccar.…`) and what is wrong.
pub fn validate_traccar(t: RawTraccar, vehicle_id: &str) -> Result<TraccarConfig, (String, String)> {
    let key = |k: &str| format!("traccar.{k}");
    let text = t.url.ok_or_else(|| {
        (
            key("url"),
            "is required in [traccar] (the server's OsmAnd port, e.g. \"http://traccar.example.com:5055\")".to_string(),
        )
    })?;
    let url = reqwest::Url::parse(&text).map_err(|e| (key("url"), format!("is not a URL ({e}): {text:?}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err((key("url"), format!("must be an http:// or https:// URL with a host, got {text:?}")));
    }
    if !url.username().is_empty() || url.query().is_some() {
        return Err((key("url"), "takes no credentials and no query (the OsmAnd protocol has neither)".into()));
    }
    let device_id = t.device_id.unwrap_or_else(|| vehicle_id.to_string());
    if device_id.is_empty() || device_id.len() > 128 || device_id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err((key("device_id"), format!("must be 1 to 128 characters without spaces, got {device_id:?}")));
    }
    let timeout = duration(t.timeout.as_deref(), "20s").map_err(|e| (key("timeout"), e.to_string()))?;
    if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(300) {
        return Err((key("timeout"), "must be 1s to 5m".into()));
    }
    Ok(TraccarConfig { url, device_id, timeout })
}

/// How backlog points (made while the broker was away) and live points mix on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Every point in the order it was made: no live point is published before every older
    /// backlog point has been acknowledged (live points made meanwhile join the backlog). What
    /// consumers that keep arrival order need (OwnTracks Recorder); the default in `owntracks`
    /// mode.
    Time,
    /// Live points as they happen, ahead of the rest of the backlog (a live point waits behind
    /// at most [`super::WINDOW`] backlog messages): the freshest position first, for a live map
    /// whose consumer sorts by `tst`. The default in `curbside` mode.
    LiveFirst,
}
