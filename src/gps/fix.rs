//! The `Fix`: one receiver epoch reduced to where, when and how well, as every other part of
//! curbside sees it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Fix dimension, as gpsd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Mode {
    /// No position: the receiver has no fix, or said its fix is invalid.
    #[default]
    #[serde(rename = "none")]
    NoFix,
    /// Latitude and longitude only.
    #[serde(rename = "2d")]
    TwoD,
    /// Latitude, longitude and altitude.
    #[serde(rename = "3d")]
    ThreeD,
}

impl std::fmt::Display for Mode {
    /// As in JSON: `none`, `2d`, `3d`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::NoFix => "none",
            Mode::TwoD => "2d",
            Mode::ThreeD => "3d",
        })
    }
}

impl Mode {
    /// True for 2D and 3D fixes.
    pub fn has_position(self) -> bool {
        self != Mode::NoFix
    }
}

/// One receiver epoch. Position fields are present only when `mode` is 2D or 3D.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Fix {
    /// UTC time of the epoch from the receiver; `None` until the receiver has told the date.
    pub time: Option<DateTime<Utc>>,
    /// Latitude, degrees WGS84, positive north.
    pub lat: Option<f64>,
    /// Longitude, degrees WGS84, positive east.
    pub lon: Option<f64>,
    /// Altitude above mean sea level, metres.
    pub alt_m: Option<f64>,
    /// Speed over ground, m/s.
    pub speed_mps: Option<f64>,
    /// Course over ground, degrees true.
    pub course_deg: Option<f64>,
    /// Fix dimension.
    pub mode: Mode,
    /// GGA fix quality (0 invalid, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 dead reckoning, 9 SBAS ...).
    pub quality: Option<u8>,
    /// Satellites used in the fix.
    pub sats: Option<u8>,
    /// Horizontal dilution of precision.
    pub hdop: Option<f64>,
}

impl Fix {
    /// Latitude and longitude when the fix has a position.
    pub fn position(&self) -> Option<(f64, f64)> {
        match (self.mode.has_position(), self.lat, self.lon) {
            (true, Some(lat), Some(lon)) => Some((lat, lon)),
            _ => None,
        }
    }

    /// Estimated horizontal accuracy in metres, from HDOP and a typical user-equivalent range
    /// error of 5 m for a consumer receiver (no receiver here reports a better estimate in NMEA).
    pub fn accuracy_m(&self) -> Option<f64> {
        self.hdop.filter(|h| *h > 0.0).map(|h| h * 5.0)
    }
}
