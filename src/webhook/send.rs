//! One HTTP request to an endpoint: the client (rustls), the request with its headers and
//! signature, and what the answer (or its absence) means as an [`Outcome`].

use std::time::Duration;

use chrono::{DateTime, Utc};

use http_body_util::Full;

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

/// Builds one request: body, Standard Webhooks headers (and TrackingMore's signature for that
/// format), auth.
pub fn request(client: &reqwest::Client, ep: &Endpoint, out: &format::Out, timestamp: i64) -> reqwest::RequestBuilder {
    let mut req = client
        .post(ep.url.clone())
        .timeout(ep.delivery.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &out.id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = &ep.secret {
        req = req.header("webhook-signature", secret.sign(&out.id, timestamp, &out.body));
    }
    if let format::Format::TrackingMore(s) = &ep.format {
        if let Some(key) = &s.secret {
            req = req
                .header(s.signature_header.as_str(), format::trackingmore::sign(key, timestamp))
                .header(s.timestamp_header.as_str(), timestamp.to_string());
        }
    }
    authorize(req, ep).body(out.body.clone())
}

/// Adds the endpoint's credentials and custom headers (`shared_token`, basic, bearer,
/// `headers`) to a request.
pub fn authorize(mut req: reqwest::RequestBuilder, ep: &Endpoint) -> reqwest::RequestBuilder {
    if let Some(t) = &ep.shared_token {
        req = req.header("x-webhook-shared-token", t);
    }
    if let Some((u, p)) = &ep.delivery.basic {
        req = req.basic_auth(u, Some(p));
    }
    if let Some(b) = &ep.delivery.bearer {
        req = req.bearer_auth(b);
    }
    for (k, v) in &ep.delivery.headers {
        req = req.header(k, v);
    }
    req
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
    let req = request(client, ep, out, now.timestamp());
    if ep.url.scheme() == "http" {
        return match req.build() {
            Ok(req) => send_direct(direct, req, ep.delivery.timeout, now).await,
            Err(e) => classify_error(&e.without_url(), ep.delivery.timeout),
        };
    }
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

/// Sends a request built for reqwest on the direct client, within `timeout` for the answer's
/// head.
async fn send_direct(direct: &Direct, req: reqwest::Request, timeout: Duration, now: DateTime<Utc>) -> Outcome {
    let body = req.body().and_then(|b| b.as_bytes()).map(hyper::body::Bytes::copy_from_slice).unwrap_or_default();
    let built = http::Request::builder().method(req.method().clone()).uri(req.url().as_str()).body(Full::new(body));
    let mut request = match built {
        Ok(r) => r,
        Err(e) => return Outcome::Failed { status: None, error: error_chain(&e), retry_after: None },
    };
    *request.headers_mut() = req.headers().clone();
    client_defaults(request.headers_mut());
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
}
