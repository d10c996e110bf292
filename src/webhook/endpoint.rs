//! One configured `[[webhook]]`: where, how it authenticates, what it wants and its delivery
//! rules, validated once by `config`.

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
            .field("auth", &(self.basic.is_some() || self.bearer.is_some() || self.shared_token.is_some()))
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
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
