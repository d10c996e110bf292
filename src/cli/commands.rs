//! Each subcommand, one function: what it asks of the library (or of the running agent, through
//! [`ApiClient`]) and what it prints. `main.rs` parses the arguments and calls one of these.

use std::path::PathBuf;

use serde_json::{Value, json};

#[cfg(feature = "demo")]
use super::DemoArgs;
use super::client::ApiClient;
use super::{ConfigArg, TapArgs};
use crate::config::{Config, ConfigError};
use crate::event::AttachmentKind;

/// Prints to stdout; a closed pipe (`curbside ... | head`) ends the output quietly.
pub fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Prints `value` as pretty JSON with `--json`, else `text()` for a human.
fn out_json_or(json: bool, value: &impl serde::Serialize, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json { out(&format!("{}\n", serde_json::to_string_pretty(value)?)) } else { out(&text()) }
}

/// The config `--config` names, or the embedded defaults.
pub fn load(arg: &ConfigArg) -> Result<Config, ConfigError> {
    match &arg.config {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded()),
    }
}

/// The running agent's API, at the address (and with the token) of `--config`.
fn client(arg: &ConfigArg) -> Result<ApiClient, ConfigError> {
    Ok(ApiClient::new(&load(arg)?))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Two worker threads: a Pi-class gateway has four small cores, and curbside is I/O bound.
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// The agent (`curbside run`).
pub fn run(arg: ConfigArg) -> anyhow::Result<()> {
    let config = load(&arg)?;
    runtime()?.block_on(crate::app::run(config, arg.config.clone()))
}

/// `curbside demo`.
#[cfg(feature = "demo")]
pub fn demo(a: DemoArgs) -> anyhow::Result<()> {
    if !(a.speed.is_finite() && (0.1..=100.0).contains(&a.speed)) {
        anyhow::bail!("--speed must be from 0.1 to 100, got {}", a.speed);
    }
    runtime()?.block_on(crate::demo::run(crate::demo::Options { listen: a.listen, speed: a.speed }))
}

/// `curbside config check`.
pub fn config_check(file: PathBuf) -> anyhow::Result<()> {
    let c = Config::load(&file)?;
    out(&format!("{}: ok (vehicle_id {}, gps source {})\n", file.display(), c.vehicle_id, c.gps.source.kind()))?;
    Ok(())
}

/// `curbside config example`.
pub fn config_example(laptop: bool) -> anyhow::Result<()> {
    out(&crate::config::example(laptop))?;
    Ok(())
}

/// `curbside gps replay`.
pub fn gps_replay(file: PathBuf) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let stats = crate::cli::gps::gps_replay(&file, &mut out)?;
    tracing::debug!(?stats, "replay done");
    Ok(())
}

/// `curbside gps watch`.
pub fn gps_watch(config: ConfigArg, source: bool, json: bool, seconds: Option<u64>) -> anyhow::Result<()> {
    let config = load(&config)?;
    if source {
        runtime()?.block_on(crate::cli::gps::gps_watch(config, json, seconds))
    } else {
        let client = ApiClient::new(&config);
        runtime()?.block_on(crate::cli::gps::gps_watch_agent(&client, json, seconds))
    }
}

/// `curbside tap`.
pub fn tap(t: TapArgs) -> anyhow::Result<()> {
    let client = client(&t.config)?;
    let mut body = json!({ "status": t.status });
    for (k, v) in
        [("reason_code", t.reason_code), ("reason", t.reason), ("received_by", t.received_by), ("note", t.note)]
    {
        if let Some(v) = v {
            body[k] = Value::String(v);
        }
    }
    let rt = runtime()?;
    let files: Vec<_> = t
        .photo
        .into_iter()
        .map(|p| (AttachmentKind::Photo, p))
        .chain(t.signature.map(|s| (AttachmentKind::Signature, s)))
        .collect();
    let event = rt.block_on(client.tap_with(&t.job, &body, &files, t.idempotency_key.as_deref()))?;
    out(&format!("{}\n", serde_json::to_string_pretty(&event)?))?;
    if rt.block_on(client.status()).is_ok_and(|s| s.webhooks.is_empty() && s.mqtt.is_none()) {
        eprintln!("curbside: recorded; the agent has no [[webhook]] and no [mqtt], so it stays on this van");
    }
    Ok(())
}

/// `curbside status`.
pub fn status(config: ConfigArg, json: bool) -> anyhow::Result<()> {
    let client = client(&config)?;
    let status = runtime()?.block_on(client.status())?;
    out_json_or(json, &status, || status.text())
}

/// `curbside outbox list`.
pub fn outbox_list(failed: bool, config: ConfigArg) -> anyhow::Result<()> {
    let client = client(&config)?;
    let list = runtime()?.block_on(client.deliveries(failed))?;
    out(&crate::cli::text::outbox_text(&list))?;
    Ok(())
}

/// `curbside outbox retry`.
pub fn outbox_retry(id: Option<String>, all_failed: bool, config: ConfigArg) -> anyhow::Result<()> {
    let client = client(&config)?;
    let id = match (id, all_failed) {
        (Some(id), _) => Some(id.parse::<uuid::Uuid>().map_err(|e| anyhow::anyhow!("{id:?} is not an event id: {e}"))?),
        (None, _) => None,
    };
    let n = runtime()?.block_on(client.retry(id))?;
    out(&format!("retried {n} deliveries\n"))?;
    Ok(())
}

/// `curbside webhook test`.
pub fn webhook_test(name: String, config: ConfigArg) -> anyhow::Result<()> {
    let client = client(&config)?;
    let (status, r) = runtime()?.block_on(client.webhook_test(&name))?;
    if !(200..300).contains(&status) {
        let msg = r.get("error").and_then(Value::as_str).map(String::from).unwrap_or_else(|| r.to_string());
        anyhow::bail!("the agent answered {status}: {msg}");
    }
    let answer = match (r["status"].as_u64(), r["body"].as_str()) {
        (Some(code), Some(body)) if !body.is_empty() => format!("; it answered {code}: {body}"),
        (Some(code), _) => format!("; it answered {code}"),
        _ => String::new(),
    };
    out(&format!(
        "{name}: {} in {} ms (sample event {}){answer}\n",
        r["outcome"].as_str().unwrap_or("?"),
        r["duration_ms"],
        r["event_id"].as_str().unwrap_or("?")
    ))?;
    if let Some(made) = r["sent"].as_array().filter(|m| m.len() != 1 || !matches!(r["status"], Value::Number(_))) {
        // A transform's outputs (or none): what it made, one request each.
        out(&format!("the format made {} request(s):\n", made.len()))?;
        for m in made {
            out(&format!("{m}\n"))?;
        }
    }
    if r["delivered"].as_bool() != Some(true) {
        anyhow::bail!("webhook {name}: the test event was not delivered");
    }
    Ok(())
}

/// `curbside webhook transform`: the child the agent runs for a jq format, and a way to try a
/// program by hand. Sets its own CPU and memory limits first.
pub fn webhook_transform(program: Option<String>, file: Option<PathBuf>) -> anyhow::Result<()> {
    use std::io::Read as _;
    let code = match (program, file) {
        (Some(p), _) => p,
        (None, Some(f)) => {
            std::fs::read_to_string(&f).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?
        }
        (None, None) => anyhow::bail!("give --program or --file"),
    };
    let program = crate::webhook::format::jq::Program::compile(&code)?;
    crate::webhook::format::jq::limit_this_process()?;
    let mut input = Vec::new();
    std::io::stdin().take(crate::webhook::format::jq::MAX_STDOUT as u64).read_to_end(&mut input)?;
    for line in program.run_here(&input)? {
        out(&format!("{line}\n"))?;
    }
    Ok(())
}

/// `curbside webhook enable`.
pub fn webhook_enable(name: String, config: ConfigArg) -> anyhow::Result<()> {
    let client = client(&config)?;
    let was = runtime()?.block_on(client.webhook_enable(&name))?;
    out(&format!("{name}: {}\n", if was { "enabled again" } else { "was not disabled" }))?;
    Ok(())
}

/// `curbside stops load`.
pub fn stops_load(file: PathBuf, if_version: Option<u64>, config: ConfigArg) -> anyhow::Result<()> {
    let client = client(&config)?;
    let text = std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let list: Value = serde_json::from_slice(&text)
        .map_err(|e| anyhow::anyhow!("{}: not JSON ({e}); expected {{\"stops\": [...]}}", file.display()))?;
    let version = runtime()?.block_on(client.stops_load(&list, if_version))?;
    let n = list["stops"].as_array().map_or(0, Vec::len);
    out(&format!("loaded {n} stops from {}: version {version}\n", file.display()))?;
    Ok(())
}

/// `curbside stops list`.
pub fn stops_list(json: bool, config: ConfigArg) -> anyhow::Result<()> {
    let client = client(&config)?;
    let list = runtime()?.block_on(client.stops())?;
    out_json_or(json, &list, || crate::cli::text::stops_text(&list))
}

/// `curbside route ACTION`.
pub fn route(r: crate::cli::RouteArgs) -> anyhow::Result<()> {
    let client = client(&r.config)?;
    let rt = runtime()?;
    let Some(status) = r.action.status() else {
        let day = rt.block_on(client.get("/api/v1/route"))?;
        return out_json_or(r.json, &day, || crate::cli::text::route_text(&day));
    };
    let body = json!({ "status": status.route_name() });
    let key: Vec<(&str, &str)> = r.idempotency_key.as_deref().map(|k| ("Idempotency-Key", k)).into_iter().collect();
    let event = rt.block_on(client.post("/api/v1/route/status", Some(&body), &key))?;
    out(&format!("{}\n", serde_json::to_string_pretty(&event)?))
}

/// `curbside pair`.
pub fn pair(config: ConfigArg) -> anyhow::Result<()> {
    let conf = load(&config)?;
    let client = ApiClient::new(&conf);
    let (code, ttl) = runtime()?.block_on(client.pair_code())?;
    let page = if conf.api.listen.ip().is_unspecified() {
        format!("http://<the van's address>:{}/", conf.api.listen.port())
    } else {
        format!("http://{}/", conf.api.listen)
    };
    out(&format!(
        "pairing code: {code}\nopen {page} on the phone and type it in; it works once, for {} minutes\n",
        ttl / 60
    ))?;
    Ok(())
}
