//! Quantities as written in config files, parsed once (shared by every part's settings).

use std::time::Duration;

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
        "d" => n * 86_400.0,
        _ => return Err(format!("needs a unit (ms, s, m, h, d), got {s:?}")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("is out of range: {s:?}"))
}
