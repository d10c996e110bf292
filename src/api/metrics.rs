//! `GET /metrics`: the status as Prometheus text (exposition format 0.0.4). Counters end in
//! `_total` and count since the agent started, except the telemetry drop count, which the store
//! keeps across restarts.

use std::fmt::Write as _;

use super::Api;
use crate::telemetry::EVENT_ENDPOINT;

/// A metrics page being written.
struct Page(String);

impl Page {
    /// `# HELP` and `# TYPE` for a metric family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family with one unlabelled sample.
    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The whole page.
pub fn render(api: &Api) -> String {
    let mut p = Page(String::with_capacity(4096));
    let gps = api.latest.snapshot();
    let live = api.latest.live();
    p.family("curbside_info", "gauge", "Version and vehicle of this agent.");
    p.sample("curbside_info", &[("version", env!("CARGO_PKG_VERSION")), ("vehicle_id", &api.vehicle_id)], 1.0);

    p.family("curbside_gps_connected", "gauge", "1 while the GPS source is connected.");
    p.sample("curbside_gps_connected", &[("source", api.gps_source)], flag(gps.connected));
    p.one("curbside_gps_fix", "gauge", "1 while there is a live fix with a position.", flag(live.is_some()));
    if let Some(r) = &gps.last_valid {
        p.one("curbside_gps_fix_age_seconds", "gauge", "Age of the last fix with a position.", r.age().as_secs_f64());
    }
    if let Some(n) = live.as_ref().and_then(|r| r.fix.sats) {
        p.one("curbside_gps_satellites_used", "gauge", "Satellites used in the live fix.", f64::from(n));
    }
    p.one("curbside_gps_sentences_total", "counter", "NMEA sentences decoded.", gps.stats.sentences as f64);
    p.one(
        "curbside_gps_bad_sentences_total",
        "counter",
        "Sentences dropped (bad checksum, garbage, too long).",
        gps.stats.bad_sentences as f64,
    );

    let clock = api.clock.status();
    p.one("curbside_clock_trusted", "gauge", "1 while the system clock is trusted for stamps.", flag(clock.trusted));
    if let Some(off) = clock.offset_s {
        p.one("curbside_clock_offset_seconds", "gauge", "System clock minus GPS time.", off);
    }

    p.one(
        "curbside_outbox_events",
        "gauge",
        "Status events stored and not yet delivered everywhere.",
        api.outbox.len() as f64,
    );
    p.one("curbside_store_bytes", "gauge", "Size of the store on disk.", api.outbox.size_on_disk() as f64);
    p.one(
        "curbside_store_budget_bytes",
        "gauge",
        "Disk budget of the store (outbox_max_mb); taps are refused beyond it.",
        api.outbox.budget() as f64,
    );

    type Get = fn(&crate::outbox::Depth, &crate::webhook::EndpointStatus, Option<i64>) -> Option<f64>;
    let families: [(&str, &str, &str, Get); 7] = [
        ("curbside_webhook_pending", "gauge", "Deliveries waiting or retrying.", |d, _, _| Some(d.pending as f64)),
        ("curbside_webhook_failed", "gauge", "Deliveries parked after their retry budget.", |d, _, _| {
            Some(d.failed as f64)
        }),
        ("curbside_webhook_oldest_age_seconds", "gauge", "Age of the oldest waiting event.", |_, _, a| {
            a.map(|a| a as f64)
        }),
        ("curbside_webhook_reachable", "gauge", "0 while the endpoint cannot be reached.", |_, s, _| {
            Some(flag(s.reachable))
        }),
        ("curbside_webhook_disabled", "gauge", "1 after a 410, until enabled.", |_, s, _| {
            Some(flag(s.disabled.is_some()))
        }),
        ("curbside_webhook_delivered_total", "counter", "Deliveries answered 2xx.", |_, s, _| Some(s.delivered as f64)),
        ("curbside_webhook_failed_attempts_total", "counter", "Attempts that failed.", |_, s, _| {
            Some(s.failed_attempts as f64)
        }),
    ];
    let rows: Vec<_> = api
        .endpoints
        .iter()
        .map(|ep| {
            let (depth, age) = super::depth_and_oldest_age(api, &ep.name);
            (ep.name.as_str(), depth, api.webhooks.get(&ep.name), age)
        })
        .collect();
    for (name, kind, help, get) in families {
        p.family(name, kind, help);
        for (endpoint, depth, status, age) in &rows {
            if let Some(v) = get(depth, status, *age) {
                p.sample(name, &[("endpoint", endpoint)], v);
            }
        }
    }

    if let Some((t, _)) = &api.telemetry {
        let c = t.counters();
        let ring = api.outbox.ring_stats();
        p.one("curbside_mqtt_connected", "gauge", "1 while connected to the broker.", flag(c.connected));
        p.one("curbside_mqtt_connects_total", "counter", "Connections made.", c.connects as f64);
        p.one(
            "curbside_mqtt_positions_made_total",
            "counter",
            "Positions chosen by the rules.",
            c.positions_made as f64,
        );
        p.one(
            "curbside_mqtt_positions_published_total",
            "counter",
            "Positions the broker acknowledged.",
            c.positions_published as f64,
        );
        p.one(
            "curbside_mqtt_events_published_total",
            "counter",
            "Events the broker acknowledged.",
            c.events_published as f64,
        );
        p.one(
            "curbside_mqtt_events_pending",
            "gauge",
            "Events waiting for the broker.",
            api.outbox.depth(EVENT_ENDPOINT).pending as f64,
        );
        p.one("curbside_mqtt_backlog_points", "gauge", "Positions waiting for the broker.", ring.points as f64);
        p.one("curbside_mqtt_backlog_bytes", "gauge", "Bytes those positions take.", ring.bytes as f64);
        p.one(
            "curbside_mqtt_backlog_dropped_total",
            "counter",
            "Positions dropped by the backlog limits (kept across restarts).",
            ring.dropped as f64,
        );
    }
    p.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let mut p = Page(String::new());
        p.sample("m", &[("a", "x\"y\\z\nw")], 1.5);
        assert_eq!(p.0, "m{a=\"x\\\"y\\\\z\\nw\"} 1.5\n");
    }
}
