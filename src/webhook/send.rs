//! One HTTP request to an endpoint: the client (rustls), the request with its headers and
//! signature, and what the answer (or its absence) means as an [`Outcome`].

use std::time::Duration;

use chrono::{DateTime, Utc};

use http_body_util::Full;
use hyper::body::Bytes;

use crate::link::direct::Direct;
use crate::reconnect::Failure;

use super::Endpoint;
use super::format;
use super::schedule::{self, Outcome};

/// The HTTP client for webhooks and uploads ([`crate::tls::http_client`]). A system without a
/// trust store is an error only when one of `endpoints` is `https://`, naming it.
pub fn client<'a>(
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
    proxy: Option<std::net::SocketAddr>,
) -> anyhow::Result<reqwest::Client> {
    let https = endpoints.into_iter().find(|ep| ep.url.scheme() == "https").map(|ep| format!("webhook {:?}", ep.name));
    crate::tls::http_client(https, proxy)
}

/// Builds one request on `client`: body, headers ([`headers`]), timeout. An error is a header
/// the endpoint's settings cannot make (a token that is no header value).
pub fn request(
    client: &reqwest::Client,
    ep: &Endpoint,
    out: &format::Out,
    timestamp: i64,
) -> Result<reqwest::RequestBuilder, String> {
    let headers = headers(ep, out, timestamp)?;
    Ok(client.post(ep.url.clone()).timeout(ep.delivery.timeout).headers(headers).body(out.body.clone()))
}

/// The headers of one request, whichever client sends it: the body's type, Standard Webhooks
/// (`webhook-id`, `webhook-timestamp`, `webhook-signature` with a secret), TrackingMore's
/// signature for that format, and the endpoint's credentials and own headers ([`credentials`]).
pub fn headers(ep: &Endpoint, out: &format::Out, timestamp: i64) -> Result<http::HeaderMap, String> {
    let mut h = http::HeaderMap::with_capacity(8);
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    h.insert("webhook-id", value("webhook-id", &out.id)?);
    h.insert("webhook-timestamp", http::HeaderValue::from(timestamp));
    if let Some(secret) = &ep.secret {
        h.insert("webhook-signature", value("webhook-signature", &secret.sign(&out.id, timestamp, &out.body))?);
    }
    if let format::Format::TrackingMore(s) = &ep.format {
        if let Some(key) = &s.secret {
            let name =
                |n: &str| http::HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("{n:?} is not a header name"));
            h.append(name(&s.signature_header)?, value("signature", &format::trackingmore::sign(key, timestamp))?);
            h.append(name(&s.timestamp_header)?, http::HeaderValue::from(timestamp));
        }
    }
    credentials(ep, &mut h)?;
    Ok(h)
}

/// A header value, or an error naming the header.
fn value(name: &str, v: &str) -> Result<http::HeaderValue, String> {
    http::HeaderValue::from_str(v).map_err(|_| format!("the {name} header cannot hold the value given"))
}

/// Adds the endpoint's credentials and custom headers (`shared_token`, basic, bearer,
/// `headers`) to `h`; the credentials are marked sensitive.
pub fn credentials(ep: &Endpoint, h: &mut http::HeaderMap) -> Result<(), String> {
    use base64::Engine as _;
    if let Some(t) = &ep.shared_token {
        h.append("x-webhook-shared-token", value("x-webhook-shared-token (shared_token)", t)?);
    }
    let auth = match (&ep.delivery.basic, &ep.delivery.bearer) {
        (Some((u, p)), _) => {
            Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))))
        }
        (None, Some(b)) => Some(format!("Bearer {b}")),
        (None, None) => None,
    };
    if let Some(auth) = auth {
        let mut v = value("authorization (basic or bearer)", &auth)?;
        v.set_sensitive(true);
        h.append(http::header::AUTHORIZATION, v);
    }
    for (k, v) in &ep.delivery.headers {
        h.append(k.clone(), v.clone());
    }
    Ok(())
}

/// Adds the endpoint's credentials and custom headers ([`credentials`]) to a request.
pub fn authorize(req: reqwest::RequestBuilder, ep: &Endpoint) -> Result<reqwest::RequestBuilder, String> {
    let mut h = http::HeaderMap::new();
    credentials(ep, &mut h)?;
    Ok(req.headers(h))
}

/// Sends an event's requests in order, from the first not yet delivered (`sent`, which counts
/// up as they are), and classifies what happened: delivered once the last is. The response
/// body is not read: a 2xx status line is delivery, however slowly the body follows.
pub async fn attempt(
    client: &reqwest::Client,
    direct: &Direct,
    ep: &Endpoint,
    outs: &[format::Out],
    sent: &mut u32,
    now: DateTime<Utc>,
) -> Outcome {
    let mut last = Outcome::Filtered;
    for out in outs.iter().skip(*sent as usize) {
        last = attempt_one(client, direct, ep, out, now).await;
        if !matches!(last, Outcome::Delivered(_)) {
            return last;
        }
        *sent += 1;
    }
    *sent = 0;
    last
}

/// Sends one request and classifies what happened. A plain `http://` endpoint's request goes
/// on a socket of the agent's own ([`crate::link::direct`]); any other through `client` (and the
/// metering proxy).
pub async fn attempt_one(
    client: &reqwest::Client,
    direct: &Direct,
    ep: &Endpoint,
    out: &format::Out,
    now: DateTime<Utc>,
) -> Outcome {
    let unmade = |error| Outcome::Failed { status: None, error, retry_after: None };
    if ep.url.scheme() == "http" {
        return match direct_request(ep, out, now.timestamp()) {
            Ok(req) => send_direct(direct, req, ep.delivery.timeout, now).await,
            Err(e) => unmade(e),
        };
    }
    let req = match request(client, ep, out, now.timestamp()) {
        Ok(req) => req,
        Err(e) => return unmade(e),
    };
    match req.send().await {
        Ok(resp) => classify_answer(&resp, now),
        Err(e) => classify_error(&e.without_url(), ep.delivery.timeout),
    }
}

/// The headers the reqwest client adds to every request ([`crate::tls::http_client`]), so that
/// a receiver sees the same request whichever way it came.
fn client_defaults(headers: &mut http::HeaderMap) {
    headers
        .entry(http::header::USER_AGENT)
        .or_insert(http::HeaderValue::from_static(concat!("curbside/", env!("CARGO_PKG_VERSION"))));
    headers.entry(http::header::ACCEPT).or_insert(http::HeaderValue::from_static("*/*"));
}

/// One request for the direct client: what [`request`] makes for reqwest, and the headers the
/// reqwest client adds.
fn direct_request(ep: &Endpoint, out: &format::Out, timestamp: i64) -> Result<http::Request<Full<Bytes>>, String> {
    let mut headers = headers(ep, out, timestamp)?;
    client_defaults(&mut headers);
    let mut req = http::Request::post(ep.url.as_str())
        .body(Full::new(Bytes::from(out.body.clone())))
        .map_err(|e| error_chain(&e))?;
    *req.headers_mut() = headers;
    Ok(req)
}

/// Sends a request on the direct client, within `timeout` for the answer's head.
async fn send_direct(
    direct: &Direct,
    request: http::Request<Full<Bytes>>,
    timeout: Duration,
    now: DateTime<Utc>,
) -> Outcome {
    match tokio::time::timeout(timeout, direct.send(request)).await {
        Ok(Ok(resp)) => classify_head(resp.status().as_u16(), resp.headers(), now),
        Ok(Err(e)) if e.is_connect() => Outcome::Offline(error_chain(&e), Failure::Unreachable),
        Ok(Err(e)) => Outcome::Failed { status: None, error: error_chain(&e), retry_after: None },
        Err(_) => Outcome::Failed { status: None, error: format!("no answer within {timeout:?}"), retry_after: None },
    }
}

/// An answer: what its status and `Retry-After` mean ([`schedule::classify`]), unless it is
/// the metering proxy's own `502`: the endpoint was not reached.
pub fn classify_answer(resp: &reqwest::Response, now: DateTime<Utc>) -> Outcome {
    if let Some(why) = crate::link::proxy::unreachable(resp) {
        return Outcome::Offline(why, Failure::Unreachable);
    }
    classify_head(resp.status().as_u16(), resp.headers(), now)
}

/// What an answer's status and `Retry-After` mean ([`schedule::classify`]).
fn classify_head(status: u16, headers: &http::HeaderMap, now: DateTime<Utc>) -> Outcome {
    let retry_after = headers.get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok());
    schedule::classify(status, retry_after, now)
}

/// The endpoint URL without credentials or query (which may carry tokens), for logs and status.
pub fn redacted_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    u.to_string()
}

/// A transport error: offline if the connection was never made (refused by the endpoint when
/// its TLS handshake failed: a bad certificate does not fix itself), otherwise a failed attempt.
pub fn classify_error(e: &reqwest::Error, timeout: Duration) -> Outcome {
    if e.is_connect() {
        let failure = if tls_failed(e) { Failure::Refused } else { Failure::Unreachable };
        Outcome::Offline(error_chain(e), failure)
    } else if e.is_timeout() {
        Outcome::Failed { status: None, error: format!("no answer within {timeout:?}"), retry_after: None }
    } else {
        Outcome::Failed { status: None, error: error_chain(e), retry_after: None }
    }
}

/// Whether a rustls error is somewhere in `e`'s chain (also inside an `io::Error`, whose
/// `source` skips the error it wraps).
pub(crate) fn tls_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        let inner = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        if err.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>()) {
            return true;
        }
        next = err.source();
    }
    false
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_query_before_they_are_shown() {
        let u = reqwest::Url::parse("https://user:pw@example.com:8443/hook?token=s3cret").unwrap();
        let shown = redacted_url(&u);
        assert!(!shown.contains("pw") && !shown.contains("s3cret") && !shown.contains("user"), "{shown}");
        assert!(shown.starts_with("https://example.com:8443/hook"), "{shown}");
        let ep = Endpoint::new("h", u);
        assert!(!format!("{ep:?}").contains("s3cret"));
    }

    #[test]
    fn both_clients_send_the_same_headers_and_an_impossible_one_is_an_error() {
        let mut ep = Endpoint::new("h", reqwest::Url::parse("http://127.0.0.1:9/hook").unwrap());
        ep.delivery.basic = Some(("user".into(), "pass".into()));
        ep.shared_token = Some("tok".into());
        let out = format::Out { id: "evt_1".into(), body: b"{}".to_vec() };
        let h = headers(&ep, &out, 1_700_000_000).unwrap();
        assert_eq!(h["authorization"], "Basic dXNlcjpwYXNz");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(
            (&h["webhook-id"], &h["webhook-timestamp"]),
            (&"evt_1".parse().unwrap(), &"1700000000".parse().unwrap())
        );
        assert_eq!(h["x-webhook-shared-token"], "tok");
        let client = crate::tls::http_client(None, None).unwrap();
        let via_reqwest = request(&client, &ep, &out, 1_700_000_000).unwrap().build().unwrap();
        let direct = direct_request(&ep, &out, 1_700_000_000).unwrap();
        for (k, v) in via_reqwest.headers() {
            assert_eq!(direct.headers().get(k), Some(v), "{k}");
        }
        assert!(direct.headers().contains_key("user-agent") && direct.headers().contains_key("accept"));
        assert_eq!(direct.uri(), "http://127.0.0.1:9/hook");
        ep.delivery.basic = None;
        ep.delivery.bearer = Some("t0k".into());
        assert_eq!(headers(&ep, &out, 0).unwrap()["authorization"], "Bearer t0k");
        ep.shared_token = Some("line\nbreak".into());
        assert!(headers(&ep, &out, 0).unwrap_err().contains("shared_token"));
    }
}
