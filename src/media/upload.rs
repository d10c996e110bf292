//! Uploading an event's files: each one `PUT` once per attempt to the `[pod] upload_url`
//! template, streamed from disk, with `Content-Type`, `Content-Length` and an RFC 9530
//! `Content-Digest`. The delivery rules (offline, backoff, Retry-After, concurrency, parking)
//! are the delivery loop's ([`crate::webhook::run`]), whose target is an [`Uploader`]: uploads
//! are the outbox endpoint [`super::settings::UPLOAD_ENDPOINT`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};

use crate::event::{Attachment, StatusEvent};
use crate::outbox::DeliveryState;
use crate::webhook::schedule::Outcome;
use crate::webhook::{Endpoint, classify_error};

use super::{ContentType, Media, parse_hex};

/// The placeholders a URL template may use.
pub const PLACEHOLDERS: [&str; 7] = ["vehicle_id", "event_id", "job_id", "kind", "index", "sha256", "ext"];

/// Why a URL template was refused (the caller names the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTemplate {
    /// A `}` with no `{` before it.
    #[error("has a '}}' without its '{{': {0:?}")]
    Unopened(String),
    /// A `{` with no `}` after it.
    #[error("has a '{{' without its '}}': {0:?}")]
    Unclosed(String),
    /// A name curbside does not fill in.
    #[error("unknown placeholder {{{0}}}; expected any of {PLACEHOLDERS:?}")]
    Placeholder(String),
    /// Not a URL once filled in (why, the template).
    #[error("is not a URL once filled in ({0}): {1:?}")]
    NotUrl(String, String),
    /// Not `http(s)://` with a host.
    #[error("must be an http:// or https:// URL with a host, got {0:?}")]
    NotHttp(String),
}

/// A URL with `{placeholder}`s, checked once: only known names, and every rendering is an
/// `http(s)://` URL with a host (the values are all URL-safe: identifiers, hex, digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(String);

impl UrlTemplate {
    /// Parses and checks a template.
    pub fn parse(text: &str) -> Result<UrlTemplate, BadTemplate> {
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(BadTemplate::Unopened(text.into()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| BadTemplate::Unclosed(text.into()))?;
            let name = &after[..close];
            if !PLACEHOLDERS.contains(&name) {
                return Err(BadTemplate::Placeholder(name.into()));
            }
            rest = &after[close + 1..];
        }
        let t = UrlTemplate(text.to_string());
        let url = reqwest::Url::parse(&t.fill(|_| "x0".into()))
            .map_err(|e| BadTemplate::NotUrl(e.to_string(), text.into()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(BadTemplate::NotHttp(text.into()));
        }
        Ok(t)
    }

    fn fill(&self, value: impl Fn(&str) -> String) -> String {
        let mut out = String::with_capacity(self.0.len() + 64);
        let mut rest = self.0.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').unwrap_or(after.len());
            out.push_str(&value(&after[..close]));
            rest = after.get(close + 1..).unwrap_or("");
        }
        out.push_str(rest);
        out
    }

    /// The URL of one of an event's files.
    pub fn render(&self, event: &StatusEvent, a: &Attachment) -> String {
        self.fill(|name| match name {
            "vehicle_id" => event.vehicle_id.clone(),
            "event_id" => event.id.to_string(),
            "job_id" => event.job_id.clone(),
            "kind" => a.kind.as_str().to_string(),
            "index" => a.index.to_string(),
            "sha256" => a.sha256.clone(),
            "ext" => ContentType::from_mime(&a.content_type).map_or("bin", ContentType::ext).to_string(),
            _ => String::new(),
        })
    }

    /// Whether every rendering goes to the same `host:port` (no placeholder before the path).
    pub fn fixed_destination(&self) -> bool {
        let after_scheme = self.0.split_once("://").map_or(self.0.as_str(), |(_, rest)| rest);
        !after_scheme.split('/').next().unwrap_or_default().contains('{')
    }

    /// The template filled with sample values, as a URL (for status and the TLS check).
    pub fn sample(&self) -> reqwest::Url {
        let filled = self.fill(|name| if name == "index" { "1".into() } else { name.to_string() });
        reqwest::Url::parse(&filled).unwrap_or_else(|_| reqwest::Url::parse("http://invalid.invalid/").expect("a URL"))
    }
}

/// The event as receivers are given it: each attachment's `url` from `public` (none without
/// an upload target).
pub fn with_urls(event: &StatusEvent, public: Option<&UrlTemplate>) -> StatusEvent {
    let mut e = event.clone();
    for a in &mut e.attachments {
        a.url = public.map(|t| t.render(event, a));
    }
    e
}

/// The RFC 9530 `Content-Digest` of a SHA-256.
pub fn content_digest(sha: &[u8; 32]) -> String {
    format!("sha-256=:{}:", B64.encode(sha))
}

/// The upload target of the delivery loop: an event's files PUT to `template`, read from `media`.
#[derive(Debug, Clone)]
pub struct Uploader {
    /// Where each file is PUT.
    pub template: UrlTemplate,
    /// Where the files are.
    pub media: Media,
}

impl crate::webhook::Deliver for Uploader {
    fn attempt<'a>(
        &'a self,
        client: &'a reqwest::Client,
        ep: &'a Endpoint,
        event: &'a StatusEvent,
        state: &'a mut DeliveryState,
        at: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>> {
        Box::pin(attempt(client, ep, &self.template, &self.media, event, state, at))
    }
}

/// Uploads the event's files that `state.uploaded` does not count yet, in order, stopping at
/// the first that fails; each success is counted in `state` (a retry resumes after it).
#[allow(clippy::too_many_arguments)]
pub async fn attempt(
    client: &reqwest::Client,
    ep: &Endpoint,
    template: &UrlTemplate,
    media: &Media,
    event: &StatusEvent,
    state: &mut DeliveryState,
    now: DateTime<Utc>,
) -> Outcome {
    let mut last = Outcome::Delivered(200);
    for a in event.attachments.iter().skip(state.uploaded as usize) {
        let opened = match parse_hex(&a.sha256) {
            Some(sha) => tokio::fs::File::open(media.path(&sha)).await.map(|f| (sha, f)).map_err(|e| e.to_string()),
            None => Err("not a SHA-256".into()),
        };
        let (sha, file) = match opened {
            Ok(x) => x,
            Err(error) => {
                // Cannot happen to an acknowledged event (its files are on disk before it is);
                // if the disk lost one anyway, waiting would hold the job's webhooks forever.
                tracing::error!(event_id = %event.id, sha256 = %a.sha256, %error, "an attachment's file is missing: not uploaded");
                state.uploaded += 1;
                continue;
            }
        };
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024));
        let req = client
            .put(template.render(event, a))
            .timeout(ep.delivery.timeout)
            .header(reqwest::header::CONTENT_TYPE, &a.content_type)
            .header(reqwest::header::CONTENT_LENGTH, a.bytes)
            .header("content-digest", content_digest(&sha));
        let outcome = match crate::webhook::authorize(req, ep) {
            Ok(req) => match req.body(body).send().await {
                Ok(resp) => crate::webhook::send::classify_answer(&resp, now),
                Err(e) => classify_error(&e.without_url(), ep.delivery.timeout),
            },
            Err(error) => Outcome::Failed { status: None, error, retry_after: None },
        };
        match outcome {
            Outcome::Delivered(_) => {
                tracing::info!(event_id = %event.id, kind = a.kind.as_str(), index = a.index, bytes = a.bytes, "file uploaded");
                state.uploaded += 1;
                last = outcome;
            }
            other => return other,
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AttachmentKind;

    #[test]
    fn templates_name_only_known_placeholders() {
        assert!(UrlTemplate::parse("https://f.example/{vehicle_id}/{event_id}/{kind}-{index}.{ext}").is_ok());
        assert!(UrlTemplate::parse("https://f.example/{sha256}").is_ok());
        assert!(UrlTemplate::parse("https://f.example/{sha}").unwrap_err().to_string().contains("{sha}"));
        assert!(UrlTemplate::parse("https://f.example/{sha256").is_err());
        assert!(UrlTemplate::parse("https://f.example/sha256}").is_err());
        assert!(UrlTemplate::parse("file:///{sha256}").is_err());
        assert!(UrlTemplate::parse("{sha256}").is_err());
    }

    #[test]
    fn a_url_is_rendered_from_the_event_and_the_file() {
        let t = UrlTemplate::parse(
            "https://f.example/pod/{vehicle_id}/{job_id}/{event_id}/{kind}-{index}.{ext}?d={sha256}",
        )
        .unwrap();
        let mut e = crate::webhook::format::sample("van-17");
        let a = Attachment {
            kind: AttachmentKind::Signature,
            index: 1,
            sha256: "ab".repeat(32),
            bytes: 10,
            content_type: "image/svg+xml".into(),
            captured_at: e.occurred_at,
            url: None,
        };
        e.attachments.push(a.clone());
        assert_eq!(
            t.render(&e, &a),
            format!("https://f.example/pod/van-17/TEST-0001/{}/signature-1.svg?d={}", e.id, "ab".repeat(32))
        );
        assert_eq!(with_urls(&e, Some(&t)).attachments[0].url.as_deref(), Some(t.render(&e, &a).as_str()));
        assert_eq!(with_urls(&e, None).attachments[0].url, None);
    }

    #[test]
    fn the_digest_is_rfc_9530() {
        use sha2::Digest;
        let sha: [u8; 32] = sha2::Sha256::digest(b"hello").into();
        assert_eq!(content_digest(&sha), "sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:");
    }
}
