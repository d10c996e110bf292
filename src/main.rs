//! The `curbside` binary: arguments → config → the library. Prints an error chain once and exits
//! with 64 (EX_USAGE) for a bad config, 1 for any other failure.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use curbside::cli::{Cli, Command, ConfigArg, ConfigCommand, GpsCommand, OutboxCommand, WebhookCommand};
use curbside::client::ApiClient;
use curbside::config::{Config, ConfigError};
use serde_json::{Value, json};

/// sysexits' EX_USAGE: the command (here, its config) was used incorrectly.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run(_)) {
        cap_malloc_arenas();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
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
/// drains a backlog (measured 36 MB peak against 29 MB with two arenas; README, Benchmarks). The
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
        Command::Config(ConfigCommand::Example) => {
            out(curbside::config::EXAMPLE)?;
            Ok(())
        }
        Command::Gps(GpsCommand::Replay { file }) => {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            let stats = curbside::app::gps_replay(&file, &mut out)?;
            tracing::debug!(?stats, "replay done");
            Ok(())
        }
        Command::Gps(GpsCommand::Watch { config, json, seconds }) => {
            let config = load(&config)?;
            runtime()?.block_on(curbside::app::gps_watch(config, json, seconds))
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
            let headers: Vec<(&str, &str)> =
                t.idempotency_key.as_deref().map(|k| ("idempotency-key", k)).into_iter().collect();
            let path = format!("/api/v1/jobs/{}/status", t.job);
            let event = runtime()?.block_on(client.post(&path, Some(&body), &headers))?;
            out(&format!("{}\n", serde_json::to_string_pretty(&event)?))?;
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
            let path = if failed { "/api/v1/events?state=failed" } else { "/api/v1/events" };
            let list = runtime()?.block_on(client.get(path))?;
            out(&curbside::app::outbox_text(&list))?;
            Ok(())
        }
        Command::Outbox(OutboxCommand::Retry { id, all_failed, config }) => {
            let client = ApiClient::new(&load(&config)?);
            let path = match (id, all_failed) {
                (Some(id), _) => format!("/api/v1/events/{id}/retry"),
                (None, _) => "/api/v1/events/retry-failed".to_string(),
            };
            let r = runtime()?.block_on(client.post(&path, None, &[]))?;
            out(&format!("retried {} deliveries\n", r["retried"]))?;
            Ok(())
        }
        Command::Webhook(WebhookCommand::Test { name, config }) => {
            let client = ApiClient::new(&load(&config)?);
            let r = runtime()?.block_on(client.post(&format!("/api/v1/webhooks/{name}/test"), None, &[]))?;
            out(&format!("{}\n", serde_json::to_string_pretty(&r)?))?;
            Ok(())
        }
        Command::Webhook(WebhookCommand::Enable { name, config }) => {
            let client = ApiClient::new(&load(&config)?);
            let r = runtime()?.block_on(client.post(&format!("/api/v1/webhooks/{name}/enable"), None, &[]))?;
            out(&format!("{name}: enabled (was disabled: {})\n", r["was_disabled"]))?;
            Ok(())
        }
    }
}
