//! The `curbside` binary: arguments → config → the library. Prints an error chain once and exits
//! with 64 (EX_USAGE) for a bad config, 1 for any other failure.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use curbside::cli::{Cli, Command, ConfigCommand, GpsCommand, OutboxCommand, StopsCommand, WebhookCommand, commands};
use curbside::config::ConfigError;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// sysexits' EX_USAGE: the command (here, its config) was used incorrectly.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run(_)) {
        cap_malloc_arenas();
    }
    // The demo's broker talks a lot, and reports every disconnect as an error.
    let default_filter = if is_demo(&cli.command) { "info,rumqttd=off" } else { "info" };
    let (filter, bad_filter) = log_filter(std::env::var("RUST_LOG").ok(), default_filter);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours only on a terminal: the journal and log files get plain text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
    if let Some(e) = bad_filter {
        tracing::warn!("RUST_LOG ignored ({e}); it takes levels and targets, such as \"info,curbside=debug\"");
    }
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

/// `RUST_LOG` as levels and targets (`info`, `curbside=debug,rumqttc=warn`): `Targets`, not
/// `EnvFilter`, whose span and field filters need a regex engine in the binary (issue 28: about
/// 250 KB). A value that does not parse leaves the default, with a warning.
fn log_filter(rust_log: Option<String>, default: &str) -> (Targets, Option<String>) {
    let fallback = || default.parse().expect("the default log filter parses");
    match rust_log.filter(|v| !v.trim().is_empty()) {
        None => (fallback(), None),
        Some(v) => match v.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (fallback(), Some(e.to_string())),
        },
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

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(arg) => commands::run(arg),
        #[cfg(feature = "demo")]
        Command::Demo(a) => commands::demo(a),
        Command::Config(ConfigCommand::Check { file }) => commands::config_check(file),
        Command::Config(ConfigCommand::Example { laptop }) => commands::config_example(laptop),
        Command::Gps(GpsCommand::Replay { file }) => commands::gps_replay(file),
        Command::Gps(GpsCommand::Watch { config, source, json, seconds }) => {
            commands::gps_watch(config, source, json, seconds)
        }
        Command::Tap(t) => commands::tap(t),
        Command::Status { config, json } => commands::status(config, json),
        Command::Outbox(OutboxCommand::List { failed, config }) => commands::outbox_list(failed, config),
        Command::Outbox(OutboxCommand::Retry { id, all_failed, config }) => {
            commands::outbox_retry(id, all_failed, config)
        }
        Command::Webhook(WebhookCommand::Test { name, config }) => commands::webhook_test(name, config),
        Command::Webhook(WebhookCommand::Enable { name, config }) => commands::webhook_enable(name, config),
        Command::Webhook(WebhookCommand::Transform { program, file }) => commands::webhook_transform(program, file),
        Command::Stops(StopsCommand::Load { file, if_version, config }) => {
            commands::stops_load(file, if_version, config)
        }
        Command::Stops(StopsCommand::List { json, config }) => commands::stops_list(json, config),
        Command::Route(r) => commands::route(r),
        Command::Pair(config) => commands::pair(config),
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::log_filter;

    #[test]
    fn rust_log_takes_levels_and_targets_and_a_bad_value_keeps_the_default() {
        let (f, bad) = log_filter(None, "info,rumqttd=off");
        assert!(bad.is_none());
        assert!(f.would_enable("curbside::app", &Level::INFO));
        assert!(!f.would_enable("curbside::app", &Level::DEBUG));
        assert!(!f.would_enable("rumqttd::server", &Level::ERROR));

        let (f, bad) = log_filter(Some("warn,curbside=debug".into()), "info");
        assert!(bad.is_none());
        assert!(f.would_enable("curbside::webhook", &Level::DEBUG));
        assert!(!f.would_enable("rumqttc", &Level::INFO));

        let (f, bad) = log_filter(Some("curbside=loud".into()), "info");
        assert!(bad.is_some(), "an unknown level is reported");
        assert!(f.would_enable("curbside", &Level::INFO) && !f.would_enable("curbside", &Level::DEBUG));
    }
}
