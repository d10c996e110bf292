//! MQTT telemetry (issue 4, in progress): positions by time, distance and heading rules,
//! mirrored status events, and a retained online/offline state. So far: the acquisition rules.

pub mod rules;
