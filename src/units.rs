//! Quantities as written in config files, parsed once (shared by every part's settings).

use std::time::Duration;

/// `x` to `decimals` decimals, for what leaves the van: no float noise on the wire
/// (`53.55073000000001`, `11.101711111111111`), and no precision a receiver cannot use.
/// Coordinates take 7 (about 1 cm), speeds 2 (0.01 m/s), courses, altitudes and accuracies 1.
pub fn round(x: f64, decimals: i32) -> f64 {
    let k = 10f64.powi(decimals);
    let r = (x * k).round() / k;
    if r.is_finite() { r } else { x }
}

/// Why a duration was refused (the caller names the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDuration {
    /// No number where one was expected.
    #[error("must be a duration such as \"10s\" or \"500ms\", got {0:?}")]
    NotANumber(String),
    /// A number without a known unit.
    #[error("needs a unit (ms, s, m, h, d), got {0:?}")]
    NoUnit(String),
    /// Negative, or too large for a `Duration`.
    #[error("is out of range: {0:?}")]
    OutOfRange(String),
}

/// A duration such as `500ms`, `10s`, `2m`, `1h` (or `default` when absent).
pub fn duration(text: Option<&str>, default: &str) -> Result<Duration, BadDuration> {
    let s = text.unwrap_or(default).trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| BadDuration::NotANumber(s.into()))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(BadDuration::NoUnit(s.into())),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| BadDuration::OutOfRange(s.into()))
}
