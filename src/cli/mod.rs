//! The command line: the arguments ([`args`]), each subcommand as one function ([`commands`]),
//! the client of the running agent's API ([`client`]), the commands that work without an agent
//! ([`gps`]) and what is printed for a human ([`text`]). `main.rs` dispatches.

pub mod args;
pub mod client;
pub mod commands;
pub mod gps;
pub mod text;

pub use args::*;
