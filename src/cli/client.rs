//! The CLI's side of the local API: `curbside tap`, `status`, `outbox`, `webhook` talk to the
//! running agent over HTTP (the agent owns the store; nothing else opens it).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::api::multipart;
use crate::config::Config;
use crate::event::{AttachmentKind, StatusEvent, identifier};
use crate::status::Status;

/// A client for the running agent's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// The agent configured by `config` (an unspecified listen address means loopback).
    pub fn new(config: &Config) -> Self {
        let mut addr = config.api.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        // The local API is plain HTTP: no trust store needed (a minimal system has none).
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(crate::tls::trusting_nobody())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client with a preconfigured TLS config builds");
        Self { base: format!("http://{addr}"), token: config.api.token.clone(), http }
    }

    /// Sends a request; returns the HTTP status and the JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body<'_>>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match body {
            Some(Body::Json(b)) => req = req.json(b),
            Some(Body::Multipart(content_type, bytes)) => {
                req = req.header(reqwest::header::CONTENT_TYPE, content_type).body(bytes)
            }
            None => {}
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the agent at {} (is `curbside run` running?)", self.base))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.context("reading the agent's answer")?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// GET, failing on a non-2xx answer with the agent's error.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        ok(self.send(reqwest::Method::GET, path, None, &[]).await?)
    }

    /// `GET /api/v1/status`, typed.
    pub async fn status(&self) -> anyhow::Result<Status> {
        serde_json::from_value(self.get("/api/v1/status").await?)
            .context("the agent's status does not read as this version's (is it another version?)")
    }

    /// `POST /api/v1/jobs/{job}/status`: records a tap; returns the stored event. The job id is
    /// checked here as the agent checks it, so that it can never name another path.
    pub async fn tap(&self, job: &str, body: &Value, idempotency_key: Option<&str>) -> anyhow::Result<StatusEvent> {
        self.tap_with(job, body, &[], idempotency_key).await
    }

    /// As [`ApiClient::tap`], with photos and a signature (`multipart/form-data`): each file is
    /// checked against its limit before anything is sent, and named by its flag on error.
    pub async fn tap_with(
        &self,
        job: &str,
        body: &Value,
        files: &[(AttachmentKind, PathBuf)],
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<StatusEvent> {
        identifier(job).map_err(|m| anyhow::anyhow!("--job: {m}"))?;
        let headers: Vec<(&str, &str)> = idempotency_key.map(|k| ("idempotency-key", k)).into_iter().collect();
        let path = format!("/api/v1/jobs/{}/status", segment(job));
        let v = if files.is_empty() {
            self.post(&path, Some(body), &headers).await?
        } else {
            let mut read = Vec::with_capacity(files.len());
            for (kind, file) in files {
                let (flag, limit) = match kind {
                    AttachmentKind::Photo => ("--photo", multipart::MAX_PHOTO),
                    AttachmentKind::Signature => ("--signature", multipart::MAX_SIGNATURE),
                };
                let size = std::fs::metadata(file).with_context(|| format!("{flag} {}", file.display()))?.len();
                if size > limit {
                    anyhow::bail!("{flag} {}: {size} bytes, larger than the {limit} the agent accepts", file.display());
                }
                let bytes = std::fs::read(file).with_context(|| format!("{flag} {}", file.display()))?;
                read.push((
                    kind.as_str(),
                    file.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_string(),
                    bytes,
                ));
            }
            let event = serde_json::to_vec(body)?;
            let mut parts = vec![multipart::Part {
                name: "event",
                filename: None,
                content_type: Some("application/json"),
                bytes: &event,
            }];
            parts.extend(read.iter().map(|(name, filename, bytes)| multipart::Part {
                name,
                filename: Some(filename),
                content_type: None,
                bytes,
            }));
            let (content_type, bytes) = multipart::encode(&parts);
            ok(self.send(reqwest::Method::POST, &path, Some(Body::Multipart(content_type, bytes)), &headers).await?)?
        };
        serde_json::from_value(v).context("the agent's event does not read as this version's")
    }

    /// `PUT /api/v1/stops`: replaces the day's stops (only `if_version`, when given); returns
    /// the new version.
    pub async fn stops_load(&self, list: &Value, if_version: Option<u64>) -> anyhow::Result<u64> {
        let tag = if_version.map(|v| format!("\"{v}\""));
        let headers: Vec<(&str, &str)> = tag.as_deref().map(|t| ("if-match", t)).into_iter().collect();
        let v = ok(self.send(reqwest::Method::PUT, "/api/v1/stops", Some(Body::Json(list)), &headers).await?)?;
        Ok(v["version"].as_u64().unwrap_or(0))
    }

    /// `GET /api/v1/stops`: the list, each stop with its state.
    pub async fn stops(&self) -> anyhow::Result<Value> {
        self.get("/api/v1/stops").await
    }

    /// `GET /api/v1/events`: deliveries waiting (and parked), or only the parked ones.
    pub async fn deliveries(&self, failed_only: bool) -> anyhow::Result<Value> {
        self.get(if failed_only { "/api/v1/events?state=failed" } else { "/api/v1/events" }).await
    }

    /// `POST /api/v1/events/{id}/retry`, or `/api/v1/events/retry-failed` for every parked one;
    /// returns how many deliveries were released.
    pub async fn retry(&self, id: Option<uuid::Uuid>) -> anyhow::Result<u64> {
        let path = match id {
            Some(id) => format!("/api/v1/events/{id}/retry"),
            None => "/api/v1/events/retry-failed".to_string(),
        };
        let v = self.post(&path, None, &[]).await?;
        Ok(v["retried"].as_u64().unwrap_or(0))
    }

    /// `POST /api/v1/webhooks/{name}/test`: the HTTP status and the agent's answer.
    pub async fn webhook_test(&self, name: &str) -> anyhow::Result<(u16, Value)> {
        identifier(name).map_err(|m| anyhow::anyhow!("webhook name: {m}"))?;
        self.send(reqwest::Method::POST, &format!("/api/v1/webhooks/{}/test", segment(name)), None, &[]).await
    }

    /// `POST /api/v1/webhooks/{name}/enable`: whether it was disabled.
    pub async fn webhook_enable(&self, name: &str) -> anyhow::Result<bool> {
        identifier(name).map_err(|m| anyhow::anyhow!("webhook name: {m}"))?;
        let v = self.post(&format!("/api/v1/webhooks/{}/enable", segment(name)), None, &[]).await?;
        Ok(v["was_disabled"].as_bool().unwrap_or(false))
    }

    /// `POST /api/v1/pair/codes`: a one-time pairing code and how long it is good for.
    pub async fn pair_code(&self) -> anyhow::Result<(String, u64)> {
        let v = self.post("/api/v1/pair/codes", None, &[]).await?;
        let code = v["code"].as_str().ok_or_else(|| anyhow::anyhow!("the agent gave no code: {v}"))?;
        Ok((code.to_string(), v["expires_in_s"].as_u64().unwrap_or(600)))
    }

    /// POST, failing on a non-2xx answer with the agent's error.
    pub async fn post(&self, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> anyhow::Result<Value> {
        ok(self.send(reqwest::Method::POST, path, body.map(Body::Json), headers).await?)
    }
}

/// A request body.
#[derive(Debug)]
pub enum Body<'a> {
    /// JSON.
    Json(&'a Value),
    /// `multipart/form-data`: its content type (with the boundary) and bytes.
    Multipart(String, Vec<u8>),
}

/// `s` as one path segment: every byte but RFC 3986's unreserved ones percent-encoded. The ids
/// passed here are already checked (`identifier`), so this changes nothing today; it keeps a
/// rule change there from ever letting an id name another path.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn ok((status, value): (u16, Value)) -> anyhow::Result<Value> {
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        let msg = value.get("error").and_then(Value::as_str).map(String::from).unwrap_or_else(|| value.to_string());
        anyhow::bail!("the agent answered {status}: {msg}")
    }
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn a_segment_cannot_name_another_path() {
        assert_eq!(segment("JOB-1.a_b~"), "JOB-1.a_b~");
        assert_eq!(segment("E/../F"), "E%2F..%2FF");
        assert_eq!(segment("x/status?y="), "x%2Fstatus%3Fy%3D");
        assert_eq!(segment("A#1 ü"), "A%231%20%C3%BC");
    }
}
