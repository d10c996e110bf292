//! curbside's integration tests: one binary, one module per concern, shared helpers in `common`.

mod cli;
mod common;
mod gps_corpus;
mod gps_fuzz;
mod gpsd_source;
mod serial;
mod webhooks;
