//! `[[webhook]]`: an endpoint's settings as written ([`RawWebhook`]) and validated into an
//! [`Endpoint`]. The webhook part owns its settings; `config` only calls [`validate`].

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

use super::Endpoint;
use super::endpoint::Delivery;
use super::format::Format;
use super::sign::Secret;
use crate::event::{Status, identifier};
use crate::units::duration;

/// `[[webhook]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Unique name.
    pub name: Option<String>,
    /// `https://...` (or `http://`).
    pub url: Option<String>,
    /// Statuses to deliver; default all.
    pub events: Option<Vec<String>>,
    /// `standard`, `detrack-v1` or `carrier`.
    pub format: Option<String>,
    /// `whsec_...` Standard Webhooks secret.
    pub secret: Option<String>,
    /// Sent as `x-webhook-shared-token`.
    pub shared_token: Option<String>,
    /// Basic auth.
    pub basic: Option<RawBasic>,
    /// Bearer token.
    pub bearer: Option<String>,
    /// Extra headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// Request timeout.
    pub timeout: Option<String>,
    /// Deliveries in flight at once.
    pub concurrency: Option<u32>,
    /// How long to keep retrying one event before parking it.
    pub retry_budget: Option<String>,
    /// Delays between failed attempts, the last repeating.
    pub retry_schedule: Option<Vec<String>>,
}

/// `basic = { username, password }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasic {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Why a custom header may not be set, if it may not: curbside writes it itself (the signature,
/// de-duplication, the body's framing and type), or it would contradict an auth option.
fn reserved(name: &str, auth_set: bool, shared_token_set: bool) -> Option<&'static str> {
    // `HeaderName` is lower case.
    match name {
        n if n.starts_with("webhook-") => Some("is reserved: curbside sets the Standard Webhooks headers itself"),
        "content-type" | "content-length" | "content-digest" | "content-encoding" | "transfer-encoding" => {
            Some("is reserved: curbside sets the body's headers itself")
        }
        "host" | "connection" | "te" | "upgrade" | "keep-alive" | "proxy-connection" => {
            Some("is reserved: the HTTP client sets it")
        }
        "user-agent" => Some("is reserved: curbside sends User-Agent: curbside/VERSION"),
        "authorization" if auth_set => Some("contradicts basic or bearer: set the credential in one place"),
        "x-webhook-shared-token" if shared_token_set => Some("contradicts shared_token: set it in one place"),
        _ => None,
    }
}

/// What every delivery target shares, as written (`[[webhook]]` and `[pod]` each take these
/// keys; [`delivery`] validates them once for both).
#[derive(Debug, Default)]
pub struct RawDelivery {
    /// Basic auth.
    pub basic: Option<RawBasic>,
    /// Bearer token.
    pub bearer: Option<String>,
    /// Extra headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// Request timeout.
    pub timeout: Option<String>,
    /// Deliveries in flight at once.
    pub concurrency: Option<u32>,
    /// How long to keep retrying one event before parking it.
    pub retry_budget: Option<String>,
    /// Delays between failed attempts, the last repeating.
    pub retry_schedule: Option<Vec<String>>,
}

/// A target's defaults where [`RawDelivery`] leaves a key out.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// `timeout`, as written.
    pub timeout: &'static str,
    /// `concurrency`.
    pub concurrency: u32,
}

/// A webhook's defaults.
pub const WEBHOOK: Defaults = Defaults { timeout: "15s", concurrency: 4 };

/// A credential that is set must not be empty.
fn non_empty(v: Option<String>, k: &str, key: &dyn Fn(&str) -> String) -> Result<Option<String>, (String, String)> {
    match v {
        Some(s) if s.is_empty() => Err((key(k), "must not be empty (leave it out instead)".to_string())),
        other => Ok(other),
    }
}

/// Validates the `i`-th `[[webhook]]`; an error is the key (`webhook[i].…`) and what is wrong.
pub fn validate(w: RawWebhook, i: usize) -> Result<Endpoint, (String, String)> {
    let key = |k: &str| format!("webhook[{i}].{k}");
    let name = w.name.ok_or_else(|| (key("name"), "is required".to_string()))?;
    identifier(&name).map_err(|m| (key("name"), m.to_string()))?;
    let url_text = w.url.ok_or_else(|| (key("url"), "is required".to_string()))?;
    let url = reqwest::Url::parse(&url_text).map_err(|e| (key("url"), format!("is not a URL ({e}): {url_text:?}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err((key("url"), format!("must be an http:// or https:// URL with a host, got {url_text:?}")));
    }
    let format = match w.format.as_deref() {
        None => Format::Standard,
        Some(f) => {
            Format::parse(f).ok_or_else(|| (key("format"), format!("must be one of {:?}, got {f:?}", Format::NAMES)))?
        }
    };
    let events = match w.events {
        // A format named after a document sends the statuses that document names.
        None => format.documented().map(|d| d.iter().copied().collect()),
        Some(list) => {
            let mut set = HashSet::new();
            for s in list {
                let st = Status::parse(&s).ok_or_else(|| {
                    (
                        key("events"),
                        format!("unknown status {s:?}; expected any of {:?}", Status::ALL.map(Status::as_str)),
                    )
                })?;
                set.insert(st);
            }
            if set.is_empty() {
                return Err((key("events"), "must name at least one status (leave it out for all)".into()));
            }
            Some(set)
        }
    };
    let secret = w.secret.map(|s| Secret::parse(&s).map_err(|m| (key("secret"), m.to_string()))).transpose()?;
    let shared_token = non_empty(w.shared_token, "shared_token", &key)?;
    let raw = RawDelivery {
        basic: w.basic,
        bearer: w.bearer,
        headers: w.headers,
        timeout: w.timeout,
        concurrency: w.concurrency,
        retry_budget: w.retry_budget,
        retry_schedule: w.retry_schedule,
    };
    let delivery = delivery(raw, WEBHOOK, shared_token.is_some(), &key)?;
    Ok(Endpoint { name, url, events, format, secret, shared_token, delivery })
}

/// Validates what a target shares with every other ([`RawDelivery`]), naming keys with `key`;
/// `shared_token_set`: the target sends `x-webhook-shared-token` itself.
pub fn delivery(
    w: RawDelivery,
    defaults: Defaults,
    shared_token_set: bool,
    key: &dyn Fn(&str) -> String,
) -> Result<Delivery, (String, String)> {
    if w.basic.is_some() && w.bearer.is_some() {
        return Err((key("bearer"), "cannot be used with basic: one request carries one Authorization".into()));
    }
    let mut headers = Vec::new();
    for (k, v) in w.headers.unwrap_or_default() {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| (key("headers"), format!("{k:?} is not a valid header name")))?;
        let auth_set = w.basic.is_some() || w.bearer.is_some();
        if let Some(why) = reserved(name.as_str(), auth_set, shared_token_set) {
            return Err((key(&format!("headers.{k}")), why.to_string()));
        }
        let value = reqwest::header::HeaderValue::from_str(&v)
            .map_err(|_| (key("headers"), format!("the value of {k:?} is not a valid header value")))?;
        headers.push((name, value));
    }
    let timeout = duration(w.timeout.as_deref(), defaults.timeout).map_err(|m| (key("timeout"), m.to_string()))?;
    if timeout.is_zero() || timeout > Duration::from_secs(300) {
        return Err((key("timeout"), "must be more than 0 and at most 5m".into()));
    }
    let concurrency = w.concurrency.unwrap_or(defaults.concurrency);
    if !(1..=64).contains(&concurrency) {
        return Err((key("concurrency"), format!("must be 1 to 64, got {concurrency}")));
    }
    let retry_budget = duration(w.retry_budget.as_deref(), "24h").map_err(|m| (key("retry_budget"), m.to_string()))?;
    let retry_schedule = match w.retry_schedule {
        None => crate::webhook::schedule::SCHEDULE.to_vec(),
        Some(list) if list.is_empty() => return Err((key("retry_schedule"), "must name at least one delay".into())),
        Some(list) => list
            .iter()
            .map(|d| duration(Some(d), "5s").map_err(|m| (key("retry_schedule"), m.to_string())))
            .collect::<Result<_, _>>()?,
    };
    Ok(Delivery {
        basic: w.basic.map(|b| (b.username, b.password)),
        bearer: non_empty(w.bearer, "bearer", key)?,
        headers,
        timeout,
        concurrency: concurrency as usize,
        retry_budget,
        retry_schedule,
    })
}
