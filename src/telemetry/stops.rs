//! The day's stops from the back office over MQTT: a message on `{prefix}/stops` (retained on the
//! broker, so a van that connects later still gets it) with the same JSON as `PUT /api/v1/stops`.
//! A message is applied once: the broker sends a retained message again on every connect, and a
//! list changed through the API since then must stay (see
//! [`crate::stops::store::replace_from_message`]). A bad list replaces nothing and is counted and
//! logged with the field at fault; an empty payload (the retained message cleared) is ignored.
//! Counters are updated once a message is dealt with, so `stops_received` says it is done.
//! An OwnTracks `setWaypoints` (over MQTT's `…/cmd`, or in an OwnTracks HTTP answer) comes this
//! way too, as the list it describes.

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::outbox::Outbox;

use super::TelemetryStatus;

/// Applies the messages in the order they came, until the channel closes.
pub async fn apply(mut messages: mpsc::Receiver<Vec<u8>>, outbox: Outbox, status: TelemetryStatus) {
    while let Some(payload) = messages.recv().await {
        if payload.is_empty() {
            continue;
        }
        let day = crate::input::parse_json(&payload).and_then(|v| crate::stops::parse_day(&v));
        let (route, stops) = match day {
            Ok(day) => day,
            Err(e) => {
                tracing::warn!(field = %e.field, error = %e.message, "mqtt stops: a bad list; the stops stay as they were");
                status.update(|c| {
                    c.stops_received += 1;
                    c.stops_rejected += 1;
                    c.stops_last_error = Some(format!("{}: {}", e.field, e.message));
                });
                continue;
            }
        };
        let count = stops.len();
        let digest: [u8; 32] = Sha256::digest(&payload).into();
        match crate::stops::store::replace_from_message(&outbox, route, stops, digest).await {
            Ok(Some(version)) => {
                tracing::info!(version, stops = count, "mqtt stops: the day's stops replaced");
                status.update(|c| {
                    c.stops_received += 1;
                    c.stops_applied += 1;
                });
            }
            Ok(None) => {
                tracing::debug!("mqtt stops: the message applied already (retained, sent again)");
                status.update(|c| c.stops_received += 1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "mqtt stops: cannot store the list; it is applied when it comes again (the next connect)");
                status.update(|c| c.stops_received += 1);
            }
        }
    }
}
