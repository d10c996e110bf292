//! The `curbside` binary: arguments → config → the library. Prints an error chain once and exits
//! with 64 (EX_USAGE) for a bad config, 1 for any other failure.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use curbside::cli::{Cli, Command, ConfigArg, ConfigCommand, GpsCommand};
use curbside::config::{Config, ConfigError};

/// sysexits' EX_USAGE: the command (here, its config) was used incorrectly.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
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

fn load(arg: &ConfigArg) -> Result<Config, ConfigError> {
    match &arg.config {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Two worker threads: a Pi-class gateway has four small cores, and curbside is I/O bound.
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(arg) => {
            let config = load(&arg)?;
            runtime()?.block_on(curbside::app::run(config))
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let c = Config::load(&file)?;
            println!("{}: ok (vehicle_id {}, gps source {})", file.display(), c.vehicle_id, c.gps.source.kind());
            Ok(())
        }
        Command::Config(ConfigCommand::Example) => {
            print!("{}", curbside::config::EXAMPLE);
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
    }
}
