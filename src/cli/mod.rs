//! The command line: the arguments ([`args`]), the client of the running agent's API
//! ([`client`]), and the commands that work without an agent ([`gps`]) or print for a human
//! ([`text`]). `main.rs` dispatches; nothing here runs the agent.

pub mod args;
pub mod client;
pub mod gps;
pub mod text;

pub use args::*;
