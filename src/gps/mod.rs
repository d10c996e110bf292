//! GPS: reads a receiver (serial NMEA, gpsd, a replay file or a simulated route), assembles one
//! [`Fix`] per receiver epoch and publishes the latest one through a [`LatestFix`] handle.
//!
//! Layers, each usable alone: [`frame`] (bytes → verified sentences), [`sentence`] (sentence →
//! values), [`assemble`] (sentences → one fix per epoch), [`decoder`] (all three), [`source`]
//! (where the bytes come from, and surviving what real ports do), [`latest`] (the live fix and its
//! age), [`moving`] (the recent moving speed, for ETAs) and [`clock`] (GPS time, and whether the
//! system clock can be trusted).

pub mod assemble;
pub mod clock;
pub mod decoder;
pub mod fix;
pub mod frame;
pub mod geo;
pub mod latest;
pub mod moving;
pub mod sentence;
pub mod sky;
pub mod source;
pub mod summary;
pub mod wall;

pub use decoder::{DecodeStats, NmeaDecoder};
pub use fix::{Fix, Mode};
pub use latest::LatestFix;
