//! curbside: the agent on a delivery van's gateway.
//!
//! Data flow (`docs/ARCHITECTURE.md` in the repository has the whole picture: what each module
//! owns and the durability rules):
//!
//! ```text
//! GPS receiver ──serial NMEA / gpsd / replay / sim──▶ gps ──LatestFix──┬─────────────▶ telemetry ──MQTT──▶ broker (or OwnTracks HTTP)
//!                                                                      ▼                 ▲
//! driver taps ──HTTP API / CLI──▶ api ──▶ taps ──StatusEvent──▶ outbox (sled) ──────────┘ events; ring of
//!                                                   flushed before 201 │                   positions while offline
//!                                             webhook (one loop per endpoint) ──HTTPS──▶ back office
//! ```
//!
//! Modules:
//! - [`api`]: the local HTTP API (taps, status, operator actions).
//! - [`taps`]: validating a tap and stamping it with place and time.
//! - [`event`]: the `StatusEvent` domain.
//! - [`media`]: proof-of-delivery files: stored content-addressed before their event, uploaded,
//!   released; `[pod]` settings.
//! - [`outbox`]: the durable queue (design doc in its module), and the trees parts keep in it.
//! - [`history`]: what each job went through, written with each tap, kept a week.
//! - [`odometer`]: distance driven and trips, from the live fix, kept across power cuts.
//! - [`stops`]: the day's stops on the van: what a list must be, each stop's state.
//! - [`webhook`]: delivery loops, payload formats, signing, retry rules.
//! - [`telemetry`]: positions (acquisition rules, the offline backlog) and their transports: the
//!   MQTT publisher (with status events) or OwnTracks HTTP.
//! - [`gps`]: framing, decoding and assembling NMEA into one [`gps::Fix`] per epoch; the sources;
//!   the live fix and GPS time.
//! - [`link`]: every byte on the links to the outside, counted per destination (a metering
//!   proxy on loopback that every outbound client goes through); the daily budget reads it.
//! - [`tls`]: rustls with ring and the system's trust store, for every outbound connection.
//! - [`config`]: the TOML config, parsed then validated once; each part validates its own
//!   section (`telemetry::settings`).
//! - [`units`]: durations as written in config files.
//! - [`health`]: liveness of the main loops; systemd's notify protocol and watchdog.
//! - [`app`]: builds every part from a config and runs them under one shutdown.
//! - [`cli`]: the command line: arguments, the API client, what it prints.
//! - [`status`]: one typed snapshot of the agent, rendered as JSON, metrics, STATUS= and text.
//! - [`server`]: the local API's sockets: the connection cap and the timeouts (no routes).
//! - [`memory`]: gives the allocator's free memory back after a burst (the one `unsafe` call).
#![deny(unsafe_code)]
// serde_json::json! of a whole receiver object (trackingmore) nests deeper than the default.
#![recursion_limit = "256"]
#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod digest;
pub mod event;
pub mod gps;
pub mod health;
pub mod history;
pub mod input;
pub mod link;
pub mod media;
pub mod memory;
pub mod odometer;
pub mod outbox;
pub mod reconnect;
pub mod route;
pub mod server;
pub mod status;
pub mod stops;
pub mod taps;
pub mod telemetry;
pub mod tls;
pub mod units;
pub mod webhook;
pub mod zone;
