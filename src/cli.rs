//! Command-line interface: argument definitions only. Each command calls into the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// curbside: the delivery-van agent. GPS fixes, driver status taps, durable webhooks, MQTT.
#[derive(Debug, Parser)]
#[command(name = "curbside", version, about, propagate_version = true)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (embedded defaults, a simulated route, when no config is given).
    Run(ConfigArg),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// GPS tools.
    #[command(subcommand)]
    Gps(GpsCommand),
}

/// `--config FILE`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Config file (TOML). Without it, embedded defaults are used.
    #[arg(long, short, env = "CURBSIDE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `curbside config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file without starting anything.
    Check {
        /// The file to check.
        #[arg(default_value = crate::config::DEFAULT_PATH)]
        file: PathBuf,
    },
    /// Print the example config, every key with its default.
    Example,
}

/// `curbside gps ...`
#[derive(Debug, Subcommand)]
pub enum GpsCommand {
    /// Decode a receiver log and print one JSON object per fix (NDJSON).
    Replay {
        /// The log (raw NMEA as captured; lines starting with '#' are comments).
        file: PathBuf,
    },
    /// Print the live fix from the configured source, once a second.
    Watch {
        /// Config file; without it, the simulated route.
        #[command(flatten)]
        config: ConfigArg,
        /// Print NDJSON instead of a line for humans.
        #[arg(long)]
        json: bool,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
    },
}
