//! Configuration, in two phases: [`RawConfig`] is the TOML as written (every key optional), and
//! [`Config`] is what it means, validated once, with `Duration`s, paths and addresses, so nothing
//! downstream parses a string again. Errors name the file, the key and what is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use std::sync::Arc;

use crate::event::identifier;
use crate::gps::source::SourceConfig;
use crate::units::duration;
use crate::webhook::Endpoint;

/// Where the example config lives in the repository; documents every key with its default.
pub const EXAMPLE: &str = include_str!("../../config/curbside.example.toml");

/// The example config: the gateway template as shipped, or (`laptop`) the same file with a
/// simulated route and its state under the system's temporary directory, which runs as is.
pub fn example(laptop: bool) -> String {
    if !laptop {
        return format!(
            "# The gateway template (a serial GPS, state in /var/lib/curbside). For a laptop:\n\
             #   curbside config example --laptop > curbside.toml && curbside run --config curbside.toml\n{EXAMPLE}"
        );
    }
    let state = std::env::temp_dir().join("curbside-state");
    EXAMPLE
        .replacen("state_dir = \"/var/lib/curbside\"", &format!("state_dir = {:?}", state.display().to_string()), 1)
        .replacen("source = \"serial\"", "source = \"sim\"", 1)
}

/// A configuration error: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    /// The file, or `<embedded defaults>`.
    pub file: String,
    /// Dotted key path, e.g. `gps.baud`; `(file)` when the file as a whole is the problem.
    pub key: String,
    /// What is wrong, and what is expected.
    pub message: String,
}

/// Keys `[mqtt]` had before `[positions]` took them.
const MOVED_TO_POSITIONS: [&str; 9] = [
    "interval_moving_min",
    "interval_moving_max",
    "interval_stopped",
    "distance_m",
    "heading_change_deg",
    "moving_speed_mps",
    "backlog_max_points",
    "backlog_max_mb",
    "backlog_max_age",
];

/// The config file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Identifies the vehicle in every event and topic.
    pub vehicle_id: Option<String>,
    /// Identifies the driver, if known.
    pub driver_id: Option<String>,
    /// Where curbside keeps its state.
    pub state_dir: Option<PathBuf>,
    /// Disk budget of the outbox (`state_dir/outbox`), MiB.
    pub outbox_max_mb: Option<u64>,
    /// The van's time zone, an IANA name (default: the system's).
    pub timezone: Option<String>,
    /// `[gps]`.
    #[serde(default)]
    pub gps: RawGps,
    /// `[clock]`.
    #[serde(default)]
    pub clock: RawClock,
    /// `[api]`.
    #[serde(default)]
    pub api: RawApi,
    /// `[[webhook]]` endpoints.
    #[serde(default)]
    pub webhook: Vec<crate::webhook::settings::RawWebhook>,
    /// `[positions]`: when a fix becomes a position, and the offline backlog's bounds.
    #[serde(default)]
    pub positions: crate::telemetry::settings::RawPositions,
    /// `[mqtt]` telemetry; absent means no telemetry over MQTT.
    pub mqtt: Option<crate::telemetry::settings::RawMqtt>,
    /// `[owntracks_http]`: positions POSTed to an OwnTracks HTTP endpoint instead of MQTT.
    pub owntracks_http: Option<crate::telemetry::settings::RawOwnTracksHttp>,
    /// `[traccar]`: positions and events to a Traccar server (OsmAnd protocol) instead of MQTT.
    pub traccar: Option<crate::telemetry::settings::RawTraccar>,
    /// `[pod]`: proof-of-delivery files.
    #[serde(default)]
    pub pod: crate::media::settings::RawPod,
    /// `[stops]`.
    #[serde(default)]
    pub stops: crate::stops::RawStopsConfig,
}

/// `[clock]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClock {
    /// Set the system clock from GPS time when it is untrusted (needs CAP_SYS_TIME).
    pub set_system_time: Option<bool>,
}

/// `[gps]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGps {
    /// `serial`, `gpsd`, `replay` or `sim`.
    pub source: Option<String>,
    /// Serial device.
    pub device: Option<PathBuf>,
    /// Serial baud rate.
    pub baud: Option<u32>,
    /// gpsd `host:port`.
    pub gpsd: Option<String>,
    /// Replay file.
    pub file: Option<PathBuf>,
    /// Replay or simulation speed.
    pub speed: Option<f64>,
    /// Age after which the live fix is `none`.
    pub stale_after: Option<String>,
    /// Largest disagreement between system clock and GPS time before the system clock is
    /// distrusted.
    pub max_clock_skew: Option<String>,
}

/// `[api]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// Listen address.
    pub listen: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
    /// Most connections open at once.
    pub max_connections: Option<u32>,
    /// Time for a request's headers, and for a connection's idle spell.
    pub request_timeout: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from, for messages.
    pub origin: String,
    /// Vehicle identifier.
    pub vehicle_id: String,
    /// Driver identifier.
    pub driver_id: Option<String>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Bytes the outbox may take on disk before taps are refused (`outbox_max_mb`).
    pub outbox_budget: u64,
    /// GPS settings.
    pub gps: GpsConfig,
    /// Local API settings.
    pub api: ApiConfig,
    /// Webhook endpoints.
    pub webhooks: Vec<Arc<Endpoint>>,
    /// Acquisition rules and backlog bounds of positions (`[positions]`), for either transport.
    pub positions: crate::telemetry::settings::Positions,
    /// MQTT telemetry, if configured.
    pub mqtt: Option<crate::telemetry::settings::MqttConfig>,
    /// Positions over OwnTracks HTTP, if configured (never with `mqtt`).
    pub owntracks_http: Option<crate::telemetry::settings::OwnTracksHttpConfig>,
    /// `[traccar]`: positions and events to a Traccar server.
    pub traccar: Option<crate::telemetry::settings::TraccarConfig>,
    /// Proof-of-delivery files (`[pod]`).
    pub pod: crate::media::settings::Pod,
    /// Set the system clock from GPS time when it is untrusted (`clock.set_system_time`).
    pub set_system_time: bool,
    /// The van's time zone (`timezone`): local dates and offsets in the formats that carry them.
    pub timezone: crate::zone::Zone,
    /// The day's stops: default radius and the geofence (`[stops]`).
    pub stops: crate::stops::StopsConfig,
}

/// Validated `[gps]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GpsConfig {
    /// The source.
    pub source: SourceConfig,
    /// Age after which the live fix is `none`.
    pub stale_after: Duration,
    /// See [`RawGps::max_clock_skew`].
    pub max_clock_skew: Duration,
}

/// Validated `[api]`.
#[derive(Clone, PartialEq)]
pub struct ApiConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Bearer token; required when `listen` is not loopback.
    pub token: Option<String>,
    /// The connection cap and timeouts.
    pub limits: crate::server::Limits,
}

impl std::fmt::Debug for ApiConfig {
    // The token is a secret: never in logs, even at debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("limits", &self.limits)
            .finish()
    }
}

/// The largest `api.max_connections`: each connection is a file descriptor, and the unit's
/// `LimitNOFILE` (4096) keeps room for the store, the broker and the webhooks.
pub const MAX_API_CONNECTIONS: u32 = 2048;

/// Default path of the config file on a gateway.
pub const DEFAULT_PATH: &str = "/etc/curbside/curbside.toml";
const BAUDS: [u32; 10] = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800];

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        let text = String::from_utf8(text).map_err(|_| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            message: "is not UTF-8 text".into(),
        })?;
        Self::parse(&text, &file)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| syntax_error(origin, &e))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError {
                file: origin.into(),
                message: match key.strip_prefix("mqtt.") {
                    Some(k) if MOVED_TO_POSITIONS.contains(&k) => {
                        "is a [positions] key now (shared by [mqtt] and [owntracks_http]): move it there".to_string()
                    }
                    _ => inner.message().trim().to_string(),
                },
                key: if key == "." { "(file)".into() } else { key },
            }
        })?;
        Self::validate(raw, origin, true)
    }

    /// The embedded defaults used by `curbside run` without a config: a simulated route and
    /// state in `./curbside-state`, so it runs anywhere with no hardware and no servers.
    pub fn embedded() -> Self {
        let raw = RawConfig {
            vehicle_id: Some("demo-van".into()),
            state_dir: Some(PathBuf::from("curbside-state")),
            gps: RawGps { source: Some("sim".into()), ..RawGps::default() },
            ..RawConfig::default()
        };
        // The embedded defaults are a constant; a failure here is a bug caught by the tests.
        Self::validate(raw, "<embedded defaults>", false).expect("embedded defaults are valid")
    }

    fn validate(raw: RawConfig, origin: &str, from_file: bool) -> Result<Self, ConfigError> {
        let err = |key: &str, message: String| ConfigError { file: origin.into(), key: key.into(), message };
        let vehicle_id = match raw.vehicle_id {
            Some(v) => identifier(&v).map(|()| v).map_err(|m| err("vehicle_id", m.to_string()))?,
            None if from_file => {
                return Err(err("vehicle_id", "is required (it names this vehicle in every event)".into()));
            }
            None => "demo-van".into(),
        };
        let driver_id = match raw.driver_id {
            Some(d) => Some(identifier(&d).map(|()| d).map_err(|m| err("driver_id", m.to_string()))?),
            None => None,
        };
        let state_dir = raw.state_dir.unwrap_or_else(|| PathBuf::from("/var/lib/curbside"));
        if state_dir.as_os_str().is_empty() {
            return Err(err("state_dir", "must not be empty".into()));
        }
        let outbox_max_mb = raw.outbox_max_mb.unwrap_or(crate::outbox::DEFAULT_BUDGET >> 20);
        if !(16..=1 << 20).contains(&outbox_max_mb) {
            return Err(err("outbox_max_mb", format!("must be between 16 and 1048576 (MiB), got {outbox_max_mb}")));
        }

        let g = raw.gps;
        let speed = g.speed.unwrap_or(1.0);
        if !(speed.is_finite() && (0.0..=1000.0).contains(&speed)) {
            return Err(err("gps.speed", format!("must be between 0 (as fast as possible) and 1000, got {speed}")));
        }
        let source = match g.source.as_deref().unwrap_or("serial") {
            "serial" => {
                let baud = g.baud.unwrap_or(9600);
                if !BAUDS.contains(&baud) {
                    return Err(err("gps.baud", format!("must be one of {BAUDS:?}, got {baud}")));
                }
                let device = g.device.unwrap_or_else(|| PathBuf::from("/dev/ttyACM0"));
                if device.as_os_str().is_empty() {
                    return Err(err("gps.device", "must not be empty".into()));
                }
                SourceConfig::Serial { device, baud }
            }
            "gpsd" => {
                let addr = g.gpsd.unwrap_or_else(|| "127.0.0.1:2947".into());
                match addr.rsplit_once(':') {
                    Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
                    _ => return Err(err("gps.gpsd", format!("must be host:port, got {addr:?}"))),
                }
                SourceConfig::Gpsd { addr }
            }
            "replay" => {
                let file = g.file.ok_or_else(|| err("gps.file", "is required when gps.source = \"replay\"".into()))?;
                SourceConfig::Replay { file, speed }
            }
            "sim" => SourceConfig::Sim { speed: if speed == 0.0 { 1.0 } else { speed } },
            other => {
                return Err(err(
                    "gps.source",
                    format!("must be one of \"serial\", \"gpsd\", \"replay\", \"sim\"; got {other:?}"),
                ));
            }
        };
        let stale_after =
            duration(g.stale_after.as_deref(), "10s").map_err(|m| err("gps.stale_after", m.to_string()))?;
        let max_clock_skew =
            duration(g.max_clock_skew.as_deref(), "2s").map_err(|m| err("gps.max_clock_skew", m.to_string()))?;
        if stale_after.is_zero() {
            return Err(err("gps.stale_after", "must be more than 0".into()));
        }

        let listen_text = raw.api.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            err("api.listen", format!("must be ip:port such as \"127.0.0.1:8080\", got {listen_text:?}"))
        })?;
        let token = raw.api.token.filter(|t| !t.is_empty());
        if let Some(t) = &token {
            if t.len() < 16 {
                return Err(err("api.token", "must be at least 16 characters".into()));
            }
        }
        if !listen.ip().is_loopback() && token.is_none() {
            return Err(err("api.token", format!("is required when api.listen ({listen}) is not a loopback address")));
        }
        let max_connections = raw.api.max_connections.unwrap_or(256);
        if !(4..=MAX_API_CONNECTIONS).contains(&max_connections) {
            return Err(err(
                "api.max_connections",
                format!("must be 4 to {MAX_API_CONNECTIONS}, got {max_connections}"),
            ));
        }
        let request_timeout = duration(raw.api.request_timeout.as_deref(), "10s")
            .map_err(|m| err("api.request_timeout", m.to_string()))?;
        if request_timeout < Duration::from_secs(1) || request_timeout > Duration::from_secs(300) {
            return Err(err("api.request_timeout", "must be 1s to 5m".into()));
        }
        let limits = crate::server::Limits { max_connections: max_connections as usize, request_timeout };

        let mut webhooks = Vec::new();
        for (i, w) in raw.webhook.into_iter().enumerate() {
            let ep = crate::webhook::settings::validate(w, i).map_err(|(k, m)| err(&k, m))?;
            if webhooks.iter().any(|e: &Arc<Endpoint>| e.name == ep.name) {
                return Err(err(&format!("webhook[{i}].name"), format!("{:?} is used by another webhook", ep.name)));
            }
            webhooks.push(Arc::new(ep));
        }

        let mqtt = raw
            .mqtt
            .map(|m| crate::telemetry::settings::validate(m, &vehicle_id).map_err(|(k, msg)| err(&k, msg)))
            .transpose()?;
        let positions =
            crate::telemetry::settings::validate_positions(raw.positions).map_err(|(k, msg)| err(&k, msg))?;
        let owntracks_http = raw
            .owntracks_http
            .map(|h| {
                crate::telemetry::settings::validate_owntracks_http(h, &vehicle_id).map_err(|(k, msg)| err(&k, msg))
            })
            .transpose()?;
        let traccar = raw
            .traccar
            .map(|t| crate::telemetry::settings::validate_traccar(t, &vehicle_id).map_err(|(k, msg)| err(&k, msg)))
            .transpose()?;
        if owntracks_http.is_some() && mqtt.is_some() {
            return Err(err(
                "owntracks_http",
                "positions have one transport: keep [mqtt] or [owntracks_http], not both".into(),
            ));
        }
        if traccar.is_some() && (mqtt.is_some() || owntracks_http.is_some()) {
            return Err(err(
                "traccar",
                "positions have one transport: keep one of [mqtt], [owntracks_http] and [traccar]".into(),
            ));
        }

        let pod = crate::media::settings::validate(raw.pod).map_err(|(k, m)| err(&k, m))?;

        let stops = crate::stops::validate(raw.stops).map_err(|(k, m)| err(&k, m))?;

        let timezone = match raw.timezone {
            None => system_timezone(),
            Some(name) => name.parse::<crate::zone::Zone>().map_err(|_| {
                err(
                    "timezone",
                    format!("unknown time zone {name:?}; use an IANA name such as \"Europe/Berlin\" or \"UTC\""),
                )
            })?,
        };

        Ok(Config {
            positions,
            mqtt,
            owntracks_http,
            traccar,
            pod,
            set_system_time: raw.clock.set_system_time.unwrap_or(false),
            timezone,
            stops,
            origin: origin.into(),
            vehicle_id,
            driver_id,
            state_dir,
            outbox_budget: outbox_max_mb << 20,
            gps: GpsConfig { source, stale_after, max_clock_skew },
            api: ApiConfig { listen, token, limits },
            webhooks,
        })
    }
}

/// The system's time zone: `TZ`, else `/etc/timezone`, else the name `/etc/localtime` links
/// to; UTC when none names a zone curbside knows (its zone database is built in: the gateway
/// may have none).
pub fn system_timezone() -> crate::zone::Zone {
    let from_env = std::env::var("TZ").ok().map(|t| t.trim_start_matches(':').to_string());
    let from_file = || std::fs::read_to_string("/etc/timezone").ok().map(|t| t.trim().to_string());
    let from_link = || {
        let target = std::fs::read_link("/etc/localtime").ok()?;
        let t = target.to_str()?;
        Some(t.split_once("zoneinfo/")?.1.to_string())
    };
    [from_env, from_file(), from_link()]
        .into_iter()
        .flatten()
        .find_map(|name| name.parse::<crate::zone::Zone>().ok())
        .unwrap_or(crate::zone::Zone::UTC)
}

fn syntax_error(origin: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let at = e.span().map(|s| format!(" (at byte {})", s.start)).unwrap_or_default();
    ConfigError { file: origin.into(), key: "(syntax)".into(), message: format!("{message}{at}") }
}

#[cfg(test)]
mod tests;
