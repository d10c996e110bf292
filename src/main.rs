//! The `curbside` binary: arguments → config → the library. Prints an error chain once and exits
//! with 64 (EX_USAGE) for a bad config, 1 for any other failure.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use curbside::cli::client::ApiClient;
use curbside::cli::{Cli, Command, ConfigArg, ConfigCommand, GpsCommand, OutboxCommand, StopsCommand, WebhookCommand};
use curbside::config::{Config, ConfigError};
use curbside::event::AttachmentKind;
use serde_json::{Value, json};

/// sysexits' EX_USAGE: the command (here, its config) was used incorrectly.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run(_)) {
        cap_malloc_arenas();
    }
    // The demo's broker talks a lot, and reports every disconnect as an error.
    let default_filter = if is_demo(&cli.command) { "info,rumqttd=off" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: the journal and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(c) = e.downcast_ref::<ConfigError>() {
                eprintln!("curbside: config error: {c}");
                return ExitCode::from(EXIT_USAGE);
            }
            eprintln!("curbside: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "demo")]
fn is_demo(c: &Command) -> bool {
    matches!(c, Command::Demo(_))
}

#[cfg(not(feature = "demo"))]
fn is_demo(_: &Command) -> bool {
    false
}

/// Prints to stdout; a closed pipe (`curbside ... | head`) ends the output quietly.
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn load(arg: &ConfigArg) -> Result<Config, ConfigError> {
    match &arg.config {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded()),
    }
}

/// glibc gives each thread that allocates an arena of its own; the agent's threads (tokio
/// workers, sled's I/O pool, the commit thread) then hold about a third of its memory while it
/// drains a backlog (measured 36 MB peak against 29 MB with two arenas; docs/benchmarks.md). The
/// cap has to be in the environment before the process starts, so `curbside run` re-executes
/// itself once with `MALLOC_ARENA_MAX=2` unless the variable is already set (systemd may set it).
/// `exec` keeps the PID, which systemd's notify protocol relies on.
fn cap_malloc_arenas() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else { return };
    let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("MALLOC_ARENA_MAX", "2").exec();
    // `exec` returns only on failure: carry on with glibc's defaults.
    eprintln!("curbside: could not re-execute with MALLOC_ARENA_MAX=2 ({err}); continuing");
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Two worker threads: a Pi-class gateway has four small cores, and curbside is I/O bound.
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(arg) => {
            let config = load(&arg)?;
            runtime()?.block_on(curbside::app::run(config, arg.config.clone()))
        }
        #[cfg(feature = "demo")]
        Command::Demo(a) => {
            if !(a.speed.is_finite() && (0.1..=100.0).contains(&a.speed)) {
                anyhow::bail!("--speed must be from 0.1 to 100, got {}", a.speed);
            }
            runtime()?.block_on(curbside::demo::run(curbside::demo::Options { listen: a.listen, speed: a.speed }))
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let c = Config::load(&file)?;
            out(&format!(
                "{}: ok (vehicle_id {}, gps source {})\n",
                file.display(),
                c.vehicle_id,
                c.gps.source.kind()
            ))?;
            Ok(())
        }
        Command::Config(ConfigCommand::Example { laptop }) => {
            out(&curbside::config::example(laptop))?;
            Ok(())
        }
        Command::Gps(GpsCommand::Replay { file }) => {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            let stats = curbside::cli::gps::gps_replay(&file, &mut out)?;
            tracing::debug!(?stats, "replay done");
            Ok(())
        }
        Command::Gps(GpsCommand::Watch { config, source, json, seconds }) => {
            let config = load(&config)?;
            if source {
                runtime()?.block_on(curbside::cli::gps::gps_watch(config, json, seconds))
            } else {
                let client = ApiClient::new(&config);
                runtime()?.block_on(curbside::cli::gps::gps_watch_agent(&client, json, seconds))
            }
        }
        Command::Tap(t) => {
            let client = ApiClient::new(&load(&t.config)?);
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
        Command::Status { config, json } => {
            let client = ApiClient::new(&load(&config)?);
            let status = runtime()?.block_on(client.status())?;
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&status)?))?;
            } else {
                out(&status.text())?;
            }
            Ok(())
        }
        Command::Outbox(OutboxCommand::List { failed, config }) => {
            let client = ApiClient::new(&load(&config)?);
            let list = runtime()?.block_on(client.deliveries(failed))?;
            out(&curbside::cli::text::outbox_text(&list))?;
            Ok(())
        }
        Command::Outbox(OutboxCommand::Retry { id, all_failed, config }) => {
            let client = ApiClient::new(&load(&config)?);
            let id = match (id, all_failed) {
                (Some(id), _) => {
                    Some(id.parse::<uuid::Uuid>().map_err(|e| anyhow::anyhow!("{id:?} is not an event id: {e}"))?)
                }
                (None, _) => None,
            };
            let n = runtime()?.block_on(client.retry(id))?;
            out(&format!("retried {n} deliveries\n"))?;
            Ok(())
        }
        Command::Webhook(WebhookCommand::Test { name, config }) => {
            let client = ApiClient::new(&load(&config)?);
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
            if r["delivered"].as_bool() != Some(true) {
                anyhow::bail!("webhook {name}: the test event was not delivered");
            }
            Ok(())
        }
        Command::Stops(StopsCommand::Load { file, if_version, config }) => {
            let client = ApiClient::new(&load(&config)?);
            let text = std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let list: Value = serde_json::from_slice(&text)
                .map_err(|e| anyhow::anyhow!("{}: not JSON ({e}); expected {{\"stops\": [...]}}", file.display()))?;
            let version = runtime()?.block_on(client.stops_load(&list, if_version))?;
            let n = list["stops"].as_array().map_or(0, Vec::len);
            out(&format!("loaded {n} stops from {}: version {version}\n", file.display()))?;
            Ok(())
        }
        Command::Stops(StopsCommand::List { json, config }) => {
            let client = ApiClient::new(&load(&config)?);
            let list = runtime()?.block_on(client.stops())?;
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&list)?))?;
            } else {
                out(&curbside::cli::text::stops_text(&list))?;
            }
            Ok(())
        }
        Command::Pair(config) => {
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
        Command::Webhook(WebhookCommand::Enable { name, config }) => {
            let client = ApiClient::new(&load(&config)?);
            let was = runtime()?.block_on(client.webhook_enable(&name))?;
            out(&format!("{name}: {}\n", if was { "enabled again" } else { "was not disabled" }))?;
            Ok(())
        }
    }
}
