//! The CLI's side of the local API: `curbside tap`, `status`, `outbox`, `webhook` talk to the
//! running agent over HTTP (the agent owns the store; nothing else opens it).

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::config::Config;

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
        body: Option<&Value>,
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
        if let Some(b) = body {
            req = req.json(b);
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
    pub async fn status(&self) -> anyhow::Result<crate::status::Status> {
        serde_json::from_value(self.get("/api/v1/status").await?)
            .context("the agent's status does not read as this version's (is it another version?)")
    }

    /// POST, failing on a non-2xx answer with the agent's error.
    pub async fn post(&self, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> anyhow::Result<Value> {
        ok(self.send(reqwest::Method::POST, path, body, headers).await?)
    }
}

fn ok((status, value): (u16, Value)) -> anyhow::Result<Value> {
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        let msg = value.get("error").and_then(Value::as_str).map(String::from).unwrap_or_else(|| value.to_string());
        anyhow::bail!("the agent answered {status}: {msg}")
    }
}
