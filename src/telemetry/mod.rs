//! MQTT telemetry (issue 4, in progress): positions by time, distance and heading rules,
//! mirrored status events, and a retained online/offline state. So far: the acquisition rules
//! and the payloads (curbside and OwnTracks), both pure.

pub mod payload;
pub mod rules;
