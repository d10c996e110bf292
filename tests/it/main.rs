//! curbside's integration tests: one binary, one module per concern, shared helpers in `common`.

mod after_outages;
mod api_abuse;
mod api_input;
mod browser;
mod cli;
mod common;
mod crash;
mod demo;
mod geofence;
mod gps_corpus;
mod gps_fuzz;
mod gpsd_source;
mod metrics;
mod mqtt;
mod notify;
mod outbox;
mod outbox_model;
mod pairing;
mod pod;
mod pod_crash;
mod reload;
mod serial;
mod stops;
mod systemd;
mod tls;
mod webhooks;
