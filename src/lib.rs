//! curbside: the agent on a delivery van's gateway.
//!
//! Data flow (see DESIGN.md in the repository for the whole picture):
//!
//! ```text
//! GPS receiver ──serial NMEA / gpsd / replay / sim──▶ gps ──LatestFix──▶ (taps, telemetry, status)
//! ```
//!
//! Modules:
//! - [`gps`]: framing, decoding and assembling NMEA into one [`gps::Fix`] per epoch; the sources;
//!   the live fix and GPS time.
//! - [`config`]: the TOML config, parsed then validated once.
//! - [`app`]: builds every part from a config and runs them under one shutdown.
//! - [`cli`]: command-line arguments.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod gps;
