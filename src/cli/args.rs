//! The arguments (clap definitions only). Each command calls into the library.

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
    /// Record a driver's tap through the running agent.
    Tap(TapArgs),
    /// Show the running agent's status.
    Status {
        /// Config file (for the API address and token).
        #[command(flatten)]
        config: ConfigArg,
        /// Print the JSON as the API returns it.
        #[arg(long)]
        json: bool,
    },
    /// Inspect and retry the outbox of the running agent.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// The day's stops on the running agent.
    #[command(subcommand)]
    Stops(StopsCommand),
    /// The day's route on the running agent: record a route event, or show the day so far.
    Route(RouteArgs),
    /// Webhook endpoints of the running agent.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// A one-time code that pairs a phone's driver page with the van (for an API beyond
    /// loopback); valid 10 minutes, once.
    Pair(ConfigArg),
    /// The whole product on a laptop: the agent on a simulated route with demo stops, an MQTT
    /// broker and a webhook receiver in the same process. Nothing else needed; Ctrl-C stops.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
}

/// `curbside demo`
#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the driver page and API listen (another free port if this one is taken).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Simulation speed: 1 is real time, 5 drives the round five times as fast.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
}

/// `curbside tap STATUS --job ID ...`
#[derive(Debug, Args)]
pub struct TapArgs {
    /// heading_to, arrived, delivered, partially_delivered, failed or picked_up.
    pub status: String,
    /// The job id.
    #[arg(long)]
    pub job: String,
    /// Required for failed: customer_not_present, address_not_found, refused, damaged, access_denied, other.
    #[arg(long)]
    pub reason_code: Option<String>,
    /// Free text reason.
    #[arg(long)]
    pub reason: Option<String>,
    /// Who received the delivery.
    #[arg(long)]
    pub received_by: Option<String>,
    /// A note.
    #[arg(long)]
    pub note: Option<String>,
    /// A photo (JPEG, PNG or WebP, up to 8 MiB); repeat for up to 10.
    #[arg(long, value_name = "FILE")]
    pub photo: Vec<std::path::PathBuf>,
    /// The recipient's signature (PNG or SVG, up to 1 MiB).
    #[arg(long, value_name = "FILE")]
    pub signature: Option<std::path::PathBuf>,
    /// Makes a repeated command record the tap once.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Config file (for the API address and token).
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `curbside route ACTION`
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// What happened (or `show`: the day so far).
    #[arg(value_enum)]
    pub action: RouteAction,
    /// Makes a repeated command record the event once.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// `show`: print the JSON as the API returns it.
    #[arg(long)]
    pub json: bool,
    /// Config file (for the API address and token).
    #[command(flatten)]
    pub config: ConfigArg,
}

/// A route event, as the CLI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouteAction {
    /// The route started.
    Start,
    /// Loading done.
    LoadingDone,
    /// Unloading done.
    UnloadingDone,
    /// A break starts.
    BreakStart,
    /// The break is over.
    BreakEnd,
    /// The route ended (the event carries the day's summary).
    End,
    /// The day so far (nothing is recorded).
    Show,
}

impl RouteAction {
    /// The status `POST /api/v1/route/status` takes; `None` for `show`.
    pub fn status(self) -> Option<crate::event::Status> {
        use crate::event::Status;
        Some(match self {
            RouteAction::Start => Status::RouteStarted,
            RouteAction::LoadingDone => Status::LoadingDone,
            RouteAction::UnloadingDone => Status::UnloadingDone,
            RouteAction::BreakStart => Status::BreakStarted,
            RouteAction::BreakEnd => Status::BreakEnded,
            RouteAction::End => Status::RouteEnded,
            RouteAction::Show => return None,
        })
    }
}

/// `curbside stops ...`
#[derive(Debug, Subcommand)]
pub enum StopsCommand {
    /// Replace the day's stops with the list in FILE (`{"stops": [...]}`, see docs/driver.md).
    Load {
        /// The list, JSON.
        file: PathBuf,
        /// Replace only this version of the list (as `stops list` shows it).
        #[arg(long)]
        if_version: Option<u64>,
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The day's stops, each with its state.
    List {
        /// Print the JSON as the API returns it.
        #[arg(long)]
        json: bool,
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// `curbside outbox ...`
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List pending (and failed) deliveries.
    List {
        /// Only those parked as failed.
        #[arg(long)]
        failed: bool,
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Retry a parked event (by id) or all of them.
    Retry {
        /// The event id.
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        id: Option<String>,
        /// Retry every parked event.
        #[arg(long)]
        all_failed: bool,
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// `curbside webhook ...`
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Send a sample event to an endpoint and print its answer.
    Test {
        /// The endpoint's name.
        name: String,
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Enable an endpoint disabled by a 410 answer.
    Enable {
        /// The endpoint's name.
        name: String,
        /// Config file.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run a jq transform on a body read from stdin, under the agent's bounds: each output on
    /// a line (what `format = "jq"` would send, one request each).
    Transform {
        /// The program.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        program: Option<String>,
        /// The program, from a file.
        #[arg(long)]
        file: Option<PathBuf>,
    },
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
    /// Print the example config, every key with its default: the gateway template (serial GPS,
    /// state in /var/lib/curbside), or with --laptop one that runs as is anywhere.
    Example {
        /// A simulated route and state under /tmp: `curbside run --config` it on a laptop.
        #[arg(long)]
        laptop: bool,
    },
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
        /// Config file: the running agent's API address (with --source: the GPS to open).
        #[command(flatten)]
        config: ConfigArg,
        /// Open the configured GPS source directly instead of asking the running agent (bench
        /// work with no agent running: the agent holds the serial port).
        #[arg(long)]
        source: bool,
        /// Print NDJSON instead of a line for humans.
        #[arg(long)]
        json: bool,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
    },
}
