//! Retry timing, pure: the backoff schedule with jitter, `Retry-After`, and what a response means.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Delays after the 1st, 2nd, ... failed attempt; hourly after the last.
pub const SCHEDULE: [Duration; 6] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
];

/// Jitter: ± this fraction of the delay, so that many vans do not retry in step.
pub const JITTER: f64 = 0.2;

/// The delay after `failures` failed attempts (1-based) on `schedule` (its last delay repeats),
/// with `jitter` in [-1, 1].
pub fn backoff(schedule: &[Duration], failures: u32, jitter: f64) -> Duration {
    let i = (failures.max(1) - 1) as usize;
    let base = schedule.get(i).or(schedule.last()).copied().unwrap_or(SCHEDULE[0]);
    base.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0))
}

/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

/// Parses `Retry-After`: delay-seconds or an HTTP-date, relative to `now`; capped.
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx.
    Delivered(u16),
    /// 410: the endpoint is gone; disable it until an operator enables it.
    Gone,
    /// A failure that spends an attempt: 3xx (not followed), 4xx, 5xx, a timeout after the
    /// connection was made, a broken response. `retry_after` from 429/503.
    Failed {
        /// HTTP status, if there was a response.
        status: Option<u16>,
        /// What went wrong.
        error: String,
        /// The receiver's `Retry-After`, honoured for 429 and 503.
        retry_after: Option<Duration>,
    },
    /// The endpoint could not be reached at all (DNS, no route, refused, connect timeout, a
    /// TLS handshake that failed): offline, which spends no attempt. How soon it is tried
    /// again is [`crate::reconnect`]'s decision, from the kind of failure.
    Offline(String, crate::reconnect::Failure),
    /// The format made no request of this event (a jq program that selects nothing): done,
    /// with nothing sent.
    Filtered,
    /// The body cannot be made (a program failed or passed a bound): parked at once, since a
    /// retry would make the same.
    Park(String),
}

impl std::fmt::Display for Outcome {
    /// In words, for operators (`curbside webhook test`, logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Delivered(status) => write!(f, "delivered (HTTP {status})"),
            Outcome::Gone => f.write_str(
                "the endpoint answered 410 Gone: real deliveries would disable it until `curbside webhook enable`",
            ),
            Outcome::Failed { error, retry_after: Some(after), .. } => {
                write!(f, "failed ({error}); the receiver asks to retry after {} s", after.as_secs())
            }
            Outcome::Failed { error, .. } => write!(f, "failed ({error}); real deliveries would retry on schedule"),
            Outcome::Offline(why, _) => write!(f, "cannot reach the endpoint ({why}); real deliveries wait for it"),
            Outcome::Filtered => f.write_str("the transform made no request: nothing sent"),
            Outcome::Park(why) => write!(f, "the body cannot be made ({why}); real deliveries would park the event"),
        }
    }
}

/// Classifies an HTTP response status.
pub fn classify(status: u16, retry_after_header: Option<&str>, now: DateTime<Utc>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered(status),
        410 => Outcome::Gone,
        429 | 503 => Outcome::Failed {
            status: Some(status),
            error: format!("HTTP {status}"),
            retry_after: retry_after_header.and_then(|v| retry_after(v, now)),
        },
        300..=399 => Outcome::Failed {
            status: Some(status),
            error: format!("HTTP {status}: redirects are not followed"),
            retry_after: None,
        },
        _ => Outcome::Failed { status: Some(status), error: format!("HTTP {status}"), retry_after: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_schedule_then_hourly_within_jitter() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(&SCHEDULE, n, 0.0).as_secs()).collect();
        assert_eq!(secs, [5, 30, 120, 600, 1800, 3600, 3600, 3600]);
        assert_eq!(backoff(&SCHEDULE, 1, 1.0), Duration::from_secs(6));
        assert_eq!(backoff(&SCHEDULE, 1, -1.0), Duration::from_secs(4));
        assert_eq!(backoff(&SCHEDULE, 1, 9.0), Duration::from_secs(6), "jitter is clamped");
        assert_eq!(backoff(&[], 3, 0.0), SCHEDULE[0], "an empty schedule falls back");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Sun, 22 Nov 2026 10:01:30 GMT", now), Some(Duration::from_secs(90)));
        assert_eq!(retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn responses_are_classified_by_the_delivery_rules() {
        let now = Utc::now();
        assert_eq!(classify(204, None, now), Outcome::Delivered(204));
        assert_eq!(classify(410, None, now), Outcome::Gone);
        assert!(matches!(classify(301, None, now), Outcome::Failed { status: Some(301), .. }));
        assert!(matches!(classify(500, None, now), Outcome::Failed { status: Some(500), retry_after: None, .. }));
        assert!(matches!(
            classify(429, Some("7"), now),
            Outcome::Failed { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        assert!(matches!(classify(503, Some("3"), now), Outcome::Failed { retry_after: Some(_), .. }));
        assert!(matches!(classify(500, Some("3"), now), Outcome::Failed { retry_after: None, .. }));
    }
}
