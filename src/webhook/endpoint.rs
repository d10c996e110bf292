//! One configured `[[webhook]]`: where, what it wants and in which format, and its [`Delivery`]
//! (what every delivery target shares with `[pod]`'s uploads: auth, headers, timeout,
//! concurrency and retries), validated once by `config`.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

use crate::event::Status;

use super::format::Format;
use super::schedule;
use super::send::redacted_url;
use super::sign::Secret;

/// A validated `[[webhook]]` endpoint.
#[derive(Clone)]
pub struct Endpoint {
    /// Unique name (for logs, status, `webhook test NAME`).
    pub name: String,
    /// Where to POST.
    pub url: reqwest::Url,
    /// Statuses delivered; `None`: all.
    pub events: Option<HashSet<Status>>,
    /// Payload format.
    pub format: Format,
    /// Standard Webhooks signing secret.
    pub secret: Option<Secret>,
    /// Sent as `x-webhook-shared-token`.
    pub shared_token: Option<String>,
    /// Auth, headers, timeout, concurrency and retries.
    pub delivery: Delivery,
}

/// What every delivery target shares (`[[webhook]]` and `[pod]`'s uploads, validated by one
/// function: `settings::delivery`).
#[derive(Clone)]
pub struct Delivery {
    /// HTTP basic auth (username, password).
    pub basic: Option<(String, String)>,
    /// Bearer token.
    pub bearer: Option<String>,
    /// Extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Deliveries in flight at once (different jobs).
    pub concurrency: usize,
    /// Backoff to spend on one event before parking it.
    pub retry_budget: Duration,
    /// Delays between failed attempts; the last repeats.
    pub retry_schedule: Vec<Duration>,
}

impl std::fmt::Debug for Endpoint {
    // Credentials never reach logs: only their presence is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &redacted_url(&self.url))
            .field("format", &self.format)
            .field("signed", &self.secret.is_some())
            .field("shared_token", &self.shared_token.is_some())
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Delivery {
    // Credentials never reach logs: only their presence is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("auth", &(self.basic.is_some() || self.bearer.is_some()))
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Default for Delivery {
    /// A webhook's defaults.
    fn default() -> Self {
        Delivery {
            basic: None,
            bearer: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(15),
            concurrency: 4,
            retry_budget: Duration::from_secs(24 * 3600),
            retry_schedule: schedule::SCHEDULE.to_vec(),
        }
    }
}

impl Endpoint {
    /// An endpoint with defaults for everything but name and URL (tests, examples).
    pub fn new(name: &str, url: reqwest::Url) -> Self {
        Self {
            name: name.into(),
            url,
            events: None,
            format: Format::Standard,
            secret: None,
            shared_token: None,
            delivery: Delivery::default(),
        }
    }
}
