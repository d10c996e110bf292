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
    /// One of [`Format::NAMES`].
    pub format: Option<String>,
    /// `whsec_...` Standard Webhooks secret (with `trackingmore`: TrackingMore's key, as written).
    pub secret: Option<String>,
    /// `track-pod`: `Metadata.Event` per status (default `OrderUpdated`).
    pub event_names: Option<BTreeMap<String, String>>,
    /// `trackingmore`: `courier_code` (default `curbside`).
    pub courier_code: Option<String>,
    /// `trackingmore`: the signature's header (default `signature`).
    pub signature_header: Option<String>,
    /// `trackingmore`: the timestamp's header (default `timestamp`).
    pub timestamp_header: Option<String>,
    /// `jq` (or `antsroute`, replacing the shipped program): the program.
    pub transform: Option<String>,
    /// As `transform`, from a file.
    pub transform_file: Option<String>,
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

/// The format, with the keys only it takes (each refused with another format, naming it).
fn format(w: &mut RawWebhook, key: &dyn Fn(&str) -> String) -> Result<Format, (String, String)> {
    let name = w.format.clone().unwrap_or_else(|| "standard".into());
    let only = |set: bool, k: &str, with: &str| {
        if set && !with.split(' ').any(|f| f == name) {
            Err((key(k), format!("only applies with format = {}", with.replace(' ', " or "))))
        } else {
            Ok(())
        }
    };
    only(w.event_names.is_some(), "event_names", "track-pod")?;
    only(w.courier_code.is_some(), "courier_code", "trackingmore")?;
    only(w.signature_header.is_some(), "signature_header", "trackingmore")?;
    only(w.timestamp_header.is_some(), "timestamp_header", "trackingmore")?;
    only(w.transform.is_some(), "transform", "jq antsroute")?;
    only(w.transform_file.is_some(), "transform_file", "jq antsroute")?;
    let program = || -> Result<Option<super::format::jq::Program>, (String, String)> {
        let (k, code) = match (&w.transform, &w.transform_file) {
            (Some(_), Some(_)) => {
                return Err((key("transform_file"), "cannot be used with transform: give the program once".into()));
            }
            (Some(t), None) => ("transform", t.clone()),
            (None, Some(path)) => {
                let code = std::fs::read_to_string(path)
                    .map_err(|e| (key("transform_file"), format!("cannot read {path}: {e}")))?;
                ("transform_file", code)
            }
            (None, None) => return Ok(None),
        };
        let program = super::format::jq::Program::compile(&code).map_err(|e| {
            let file = w.transform_file.as_deref().map(|p| format!("{p}: ")).unwrap_or_default();
            (key(k), format!("{file}{e}"))
        })?;
        Ok(Some(program))
    };
    let header = |v: &Option<String>, k: &str, default: &str| -> Result<String, (String, String)> {
        let h = v.clone().unwrap_or_else(|| default.into());
        let name = reqwest::header::HeaderName::from_bytes(h.as_bytes())
            .map_err(|_| (key(k), format!("{h:?} is not a valid header name")))?;
        if let Some(why) = reserved(name.as_str(), false, false) {
            return Err((key(k), why.to_string()));
        }
        Ok(h)
    };
    Ok(match name.as_str() {
        "track-pod" => {
            let mut event_names = BTreeMap::new();
            for (status, event) in w.event_names.take().unwrap_or_default() {
                let st = Status::parse(&status).ok_or_else(|| {
                    (
                        key(&format!("event_names.{status}")),
                        format!(
                            "is not a status; expected any of {:?} or {:?}",
                            Status::ALL.map(Status::as_str),
                            Status::ROUTE.map(Status::as_str)
                        ),
                    )
                })?;
                if event.is_empty() {
                    return Err((key(&format!("event_names.{status}")), "must not be empty".into()));
                }
                event_names.insert(st, event);
            }
            Format::TrackPod(std::sync::Arc::new(super::format::track_pod::Settings { event_names }))
        }
        "trackingmore" => {
            let courier_code = w.courier_code.take().unwrap_or_else(|| "curbside".into());
            if courier_code.is_empty() {
                return Err((key("courier_code"), "must not be empty".into()));
            }
            let secret = non_empty(w.secret.take(), "secret", key)?;
            Format::TrackingMore(std::sync::Arc::new(super::format::trackingmore::Settings {
                courier_code,
                secret,
                signature_header: header(&w.signature_header, "signature_header", "signature")?,
                timestamp_header: header(&w.timestamp_header, "timestamp_header", "timestamp")?,
            }))
        }
        "antsroute" => {
            Format::AntsRoute(std::sync::Arc::new(program()?.unwrap_or_else(super::format::antsroute::program)))
        }
        "jq" => match program()? {
            Some(p) => Format::Jq(std::sync::Arc::new(p)),
            None => return Err((key("transform"), "is required with format = \"jq\" (or transform_file)".into())),
        },
        other => Format::parse(other)
            .ok_or_else(|| (key("format"), format!("must be one of {:?}, got {other:?}", Format::NAMES)))?,
    })
}

/// A credential that is set must not be empty.
fn non_empty(v: Option<String>, k: &str, key: &dyn Fn(&str) -> String) -> Result<Option<String>, (String, String)> {
    match v {
        Some(s) if s.is_empty() => Err((key(k), "must not be empty (leave it out instead)".to_string())),
        other => Ok(other),
    }
}

/// Validates the `i`-th `[[webhook]]`; an error is the key (`webhook[i].…`) and what is wrong.
pub fn validate(mut w: RawWebhook, i: usize) -> Result<Endpoint, (String, String)> {
    let key = |k: &str| format!("webhook[{i}].{k}");
    let name = w.name.take().ok_or_else(|| (key("name"), "is required".to_string()))?;
    identifier(&name).map_err(|m| (key("name"), m.to_string()))?;
    let url_text = w.url.take().ok_or_else(|| (key("url"), "is required".to_string()))?;
    let url = reqwest::Url::parse(&url_text).map_err(|e| (key("url"), format!("is not a URL ({e}): {url_text:?}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err((key("url"), format!("must be an http:// or https:// URL with a host, got {url_text:?}")));
    }
    let format = format(&mut w, &key)?;
    let events = match w.events {
        // A format named after a document sends the statuses that document names.
        None => format.documented().map(|d| d.iter().copied().collect()),
        Some(list) => {
            let mut set = HashSet::new();
            for s in list {
                let st = Status::parse(&s).ok_or_else(|| {
                    (
                        key("events"),
                        format!(
                            "unknown status {s:?}; expected any of {:?} or a route status {:?}",
                            Status::ALL.map(Status::as_str),
                            Status::ROUTE.map(Status::as_str)
                        ),
                    )
                })?;
                if !format.expresses(st) {
                    return Err((
                        key("events"),
                        format!(
                            "format {:?} cannot say {s:?} (route events go to standard, jq, track-pod and antsroute)",
                            format.name()
                        ),
                    ));
                }
                set.insert(st);
            }
            if set.is_empty() {
                return Err((key("events"), "must name at least one status (leave it out for all)".into()));
            }
            Some(set)
        }
    };
    let secret = match format {
        // TrackingMore's key is a plain string, used by its own signature (see `format`).
        Format::TrackingMore(_) => None,
        _ => w.secret.map(|s| Secret::parse(&s).map_err(|m| (key("secret"), m.to_string()))).transpose()?,
    };
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
