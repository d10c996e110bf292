//! Configuration, in two phases: [`RawConfig`] is the TOML as written (every key optional), and
//! [`Config`] is what it means, validated once, with `Duration`s, paths and addresses, so nothing
//! downstream parses a string again. Errors name the file, the key and what is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::gps::source::SourceConfig;

/// Where the example config lives in the repository; documents every key with its default.
pub const EXAMPLE: &str = include_str!("../config/curbside.example.toml");

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
    /// `[gps]`.
    #[serde(default)]
    pub gps: RawGps,
    /// `[api]`.
    #[serde(default)]
    pub api: RawApi,
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
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it came from, for messages.
    pub origin: String,
    /// Vehicle identifier.
    pub vehicle_id: String,
    /// Driver identifier.
    pub driver_id: Option<String>,
    /// State directory.
    pub state_dir: PathBuf,
    /// GPS settings.
    pub gps: GpsConfig,
    /// Local API settings.
    pub api: ApiConfig,
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
}

impl std::fmt::Debug for ApiConfig {
    // The token is a secret: never in logs, even at debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

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
                key: if key == "." { "(file)".into() } else { key },
                message: inner.message().trim().to_string(),
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
            Some(v) => identifier(&v).map(|()| v).map_err(|m| err("vehicle_id", m))?,
            None if from_file => {
                return Err(err("vehicle_id", "is required (it names this vehicle in every event)".into()));
            }
            None => "demo-van".into(),
        };
        let driver_id = match raw.driver_id {
            Some(d) => Some(identifier(&d).map(|()| d).map_err(|m| err("driver_id", m))?),
            None => None,
        };
        let state_dir = raw.state_dir.unwrap_or_else(|| PathBuf::from("/var/lib/curbside"));
        if state_dir.as_os_str().is_empty() {
            return Err(err("state_dir", "must not be empty".into()));
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
        let stale_after = duration(g.stale_after.as_deref(), "10s").map_err(|m| err("gps.stale_after", m))?;
        let max_clock_skew = duration(g.max_clock_skew.as_deref(), "2s").map_err(|m| err("gps.max_clock_skew", m))?;
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

        Ok(Config {
            origin: origin.into(),
            vehicle_id,
            driver_id,
            state_dir,
            gps: GpsConfig { source, stale_after, max_clock_skew },
            api: ApiConfig { listen, token },
        })
    }
}

fn syntax_error(origin: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let at = e.span().map(|s| format!(" (at byte {})", s.start)).unwrap_or_default();
    ConfigError { file: origin.into(), key: "(syntax)".into(), message: format!("{message}{at}") }
}

/// 1–64 characters of `[A-Za-z0-9._-]`.
pub fn identifier(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!("must be 1 to 64 characters, got {}", s.len()));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(format!("may contain only letters, digits, '.', '_' and '-', got {s:?}"));
    }
    Ok(())
}

/// A duration such as `500ms`, `10s`, `2m`, `1h` (or `default` when absent).
pub fn duration(text: Option<&str>, default: &str) -> Result<Duration, String> {
    let s = text.unwrap_or(default).trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("must be a duration such as \"10s\" or \"500ms\", got {s:?}"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("needs a unit (ms, s, m, h), got {s:?}")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("is out of range: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid_and_every_default_matches_it() {
        let c = Config::parse(EXAMPLE, "example").unwrap();
        assert_eq!(c.gps.source, SourceConfig::Serial { device: "/dev/ttyACM0".into(), baud: 9600 });
        assert_eq!(c.gps.stale_after, Duration::from_secs(10));
        assert_eq!(c.api.listen, "127.0.0.1:8080".parse().unwrap());
        let minimal = Config::parse("vehicle_id = \"van-17\"", "minimal").unwrap();
        assert_eq!(Config { origin: "example".into(), ..minimal }, c, "the example documents the defaults");
    }

    #[test]
    fn embedded_defaults_run_the_simulator() {
        let c = Config::embedded();
        assert_eq!(c.gps.source.kind(), "sim");
        assert_eq!(c.state_dir, PathBuf::from("curbside-state"));
    }

    fn error_of(text: &str) -> ConfigError {
        Config::parse(text, "test.toml").unwrap_err()
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let cases = [
            ("", "vehicle_id"),
            ("vehicle_id = \"van 17\"", "vehicle_id"),
            ("vehicle_id = \"v\"\n[gps]\nbaud = 12", "gps.baud"),
            ("vehicle_id = \"v\"\n[gps]\nbaud = \"fast\"", "gps.baud"),
            ("vehicle_id = \"v\"\n[gps]\nsource = \"usb\"", "gps.source"),
            ("vehicle_id = \"v\"\n[gps]\nsource = \"replay\"", "gps.file"),
            ("vehicle_id = \"v\"\n[gps]\nstale_after = \"10\"", "gps.stale_after"),
            ("vehicle_id = \"v\"\n[gps]\nsource = \"gpsd\"\ngpsd = \"localhost\"", "gps.gpsd"),
            ("vehicle_id = \"v\"\n[gps]\ncolour = 1", "gps.colour"),
            ("vehicle_id = \"v\"\n[api]\nlisten = \"0.0.0.0:8080\"", "api.token"),
            ("vehicle_id = \"v\"\n[api]\nlisten = \"nowhere\"", "api.listen"),
            ("vehicle_id = ", "(syntax)"),
        ];
        for (text, key) in cases {
            let e = error_of(text);
            assert_eq!(e.key, key, "{text:?} gave {e}");
            assert_eq!(e.file, "test.toml");
            assert!(e.to_string().starts_with("test.toml: "), "{e}");
        }
        assert!(error_of("vehicle_id = \"v\"\n[gps]\ncolour = 1").message.contains("colour"));
    }

    #[test]
    fn a_token_allows_a_non_loopback_listen_and_is_never_printed() {
        let c = Config::parse(
            "vehicle_id = \"v\"\n[api]\nlisten = \"0.0.0.0:8080\"\ntoken = \"s3cret-s3cret-s3cret\"",
            "t",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(duration(Some("500ms"), "1s"), Ok(Duration::from_millis(500)));
        assert_eq!(duration(None, "2m"), Ok(Duration::from_secs(120)));
        assert!(duration(Some("-1s"), "1s").is_err());
        assert!(duration(Some("1e400s"), "1s").is_err());
    }
}
