//! `GET /metrics`: the status as Prometheus text (exposition format 0.0.4). Counters end in
//! `_total` and count since the agent started, except the telemetry drop count, which the store
//! keeps across restarts.

use std::fmt::Write as _;

use crate::status::{EndpointReport, Status};

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

/// The whole page, from one status snapshot.
pub fn render(s: &Status) -> String {
    let mut p = Page(String::with_capacity(4096));
    p.family("curbside_info", "gauge", "Version and vehicle of this agent.");
    p.sample("curbside_info", &[("version", &s.version), ("vehicle_id", &s.vehicle_id)], 1.0);

    let gps = &s.gps;
    p.family("curbside_gps_connected", "gauge", "1 while the GPS source is connected.");
    p.sample("curbside_gps_connected", &[("source", &gps.source)], flag(gps.connected));
    p.one("curbside_gps_fix", "gauge", "1 while there is a live fix with a position.", flag(gps.fix.is_some()));
    if let Some(k) = &gps.last_known {
        p.one("curbside_gps_fix_age_seconds", "gauge", "Age of the last fix with a position.", k.age_s);
    }
    if let Some(n) = gps.fix.as_ref().and_then(|f| f.sats) {
        p.one("curbside_gps_satellites_used", "gauge", "Satellites used in the live fix.", f64::from(n));
    }
    p.one("curbside_gps_sentences_total", "counter", "NMEA sentences decoded.", gps.sentences as f64);
    p.one(
        "curbside_gps_bad_sentences_total",
        "counter",
        "Sentences dropped (bad checksum, garbage, too long).",
        gps.bad_sentences as f64,
    );

    let clock = &s.clock.verdict;
    p.one("curbside_clock_trusted", "gauge", "1 while the system clock is trusted for stamps.", flag(clock.trusted));
    if let Some(off) = clock.offset_s {
        p.one("curbside_clock_offset_seconds", "gauge", "System clock minus GPS time.", off);
    }

    p.one("curbside_odometer_meters_total", "counter", "Distance driven, kept across restarts.", s.odometer.total_m);
    p.one("curbside_trips_total", "counter", "Trips started since the agent started.", s.odometer.trips as f64);

    let links = &s.links;
    let each = |p: &mut Page, name: &str, kind: &str, help: &str, value: fn(&crate::link::Usage) -> u64| {
        p.family(name, kind, help);
        for u in &links.to {
            p.sample(name, &[("to", &u.to)], value(u) as f64);
        }
    };
    each(
        &mut p,
        "curbside_link_sent_bytes_total",
        "counter",
        "Bytes sent to a destination since the agent started (TLS and keepalives included).",
        |u| u.sent_bytes,
    );
    each(
        &mut p,
        "curbside_link_received_bytes_total",
        "counter",
        "Bytes received from a destination since the agent started.",
        |u| u.received_bytes,
    );
    each(
        &mut p,
        "curbside_link_today_sent_bytes",
        "gauge",
        "Bytes sent to a destination today (kept across restarts).",
        |u| u.today_sent_bytes,
    );
    each(
        &mut p,
        "curbside_link_today_received_bytes",
        "gauge",
        "Bytes received from a destination today (kept across restarts).",
        |u| u.today_received_bytes,
    );
    each(
        &mut p,
        "curbside_link_connections_total",
        "counter",
        "Connections made to a destination since the agent started.",
        |u| u.connections,
    );
    p.one("curbside_links_today_bytes", "gauge", "Bytes on every link together today.", links.today_bytes as f64);
    if let Some(b) = links.daily_budget_bytes {
        p.one("curbside_links_daily_budget_bytes", "gauge", "[positions] daily_budget_mb, in bytes.", b as f64);
        p.one(
            "curbside_links_over_budget",
            "gauge",
            "1 while positions are thinned because the day's budget is spent.",
            flag(links.over_budget),
        );
    }
    p.one(
        "curbside_outbox_events",
        "gauge",
        "Status events stored and not yet delivered everywhere.",
        s.outbox.events as f64,
    );
    p.one("curbside_store_bytes", "gauge", "Size of the store on disk.", s.outbox.size_on_disk as f64);
    p.one(
        "curbside_store_budget_bytes",
        "gauge",
        "Disk budget of the store (outbox_max_mb); taps are refused beyond it.",
        s.outbox.budget as f64,
    );
    p.one(
        "curbside_media_bytes",
        "gauge",
        "Proof-of-delivery files on the van (state_dir/media).",
        s.pod.media_bytes as f64,
    );
    p.one(
        "curbside_media_budget_bytes",
        "gauge",
        "Disk budget of the media ([pod] media_max_mb); taps with files are refused beyond it.",
        s.pod.media_budget as f64,
    );
    p.one(
        "curbside_upload_pending_bytes",
        "gauge",
        "Bytes of proof-of-delivery files still to upload.",
        s.pod.upload_pending_bytes as f64,
    );

    let api = &s.api;
    p.one("curbside_api_connections_open", "gauge", "Connections to the local API open now.", api.open as f64);
    p.one("curbside_api_connections_accepted_total", "counter", "Connections accepted.", api.accepted as f64);
    p.one(
        "curbside_api_connections_refused_total",
        "counter",
        "Connections closed at once: every open one was inside a request (api.max_connections).",
        api.refused as f64,
    );
    p.one(
        "curbside_api_connections_evicted_total",
        "counter",
        "Connections without a request, or idle, closed to make room for a new one.",
        api.evicted as f64,
    );
    p.one(
        "curbside_api_connections_timed_out_total",
        "counter",
        "Connections closed for sending no complete request within api.request_timeout.",
        api.timed_out as f64,
    );

    type Get = fn(&EndpointReport) -> Option<f64>;
    let families: [(&str, &str, &str, Get); 7] = [
        ("curbside_webhook_pending", "gauge", "Deliveries waiting or retrying.", |w| Some(w.pending as f64)),
        ("curbside_webhook_failed", "gauge", "Deliveries parked after their retry budget.", |w| Some(w.failed as f64)),
        ("curbside_webhook_oldest_age_seconds", "gauge", "Age of the oldest waiting event.", |w| {
            w.oldest_age_s.map(|a| a as f64)
        }),
        ("curbside_webhook_reachable", "gauge", "0 while the endpoint cannot be reached.", |w| {
            Some(flag(w.state.reachable))
        }),
        ("curbside_webhook_disabled", "gauge", "1 after a 410, until enabled.", |w| {
            Some(flag(w.state.disabled.is_some()))
        }),
        ("curbside_webhook_delivered_total", "counter", "Deliveries answered 2xx.", |w| Some(w.state.delivered as f64)),
        ("curbside_webhook_failed_attempts_total", "counter", "Attempts that failed.", |w| {
            Some(w.state.failed_attempts as f64)
        }),
    ];
    for (name, kind, help, get) in families {
        p.family(name, kind, help);
        for w in &s.webhooks {
            if let Some(v) = get(w) {
                p.sample(name, &[("endpoint", &w.name)], v);
            }
        }
    }

    if let Some(m) = &s.mqtt {
        let (c, ring) = (&m.counters, &m.backlog);
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
        p.one("curbside_mqtt_events_pending", "gauge", "Events waiting for the broker.", m.events_pending as f64);
        p.one("curbside_mqtt_backlog_points", "gauge", "Positions waiting for the broker.", ring.points as f64);
        p.one("curbside_mqtt_backlog_bytes", "gauge", "Bytes those positions take.", ring.bytes as f64);
        p.one(
            "curbside_mqtt_backlog_dropped_total",
            "counter",
            "Positions dropped by the backlog limits (kept across restarts).",
            ring.dropped as f64,
        );
    }
    if let Some(h) = &s.owntracks_http {
        let (c, ring) = (&h.counters, &h.backlog);
        p.one("curbside_owntracks_http_delivering", "gauge", "1 while the last POST was delivered.", flag(c.connected));
        p.one(
            "curbside_owntracks_http_positions_made_total",
            "counter",
            "Positions chosen by the rules.",
            c.positions_made as f64,
        );
        p.one(
            "curbside_owntracks_http_positions_delivered_total",
            "counter",
            "Positions the endpoint answered with a 2xx.",
            c.positions_published as f64,
        );
        p.one(
            "curbside_owntracks_http_commands_rejected_total",
            "counter",
            "Commands in answers not carried out.",
            c.commands_rejected as f64,
        );
        p.one(
            "curbside_owntracks_http_backlog_points",
            "gauge",
            "Positions waiting for the endpoint.",
            ring.points as f64,
        );
        p.one(
            "curbside_owntracks_http_backlog_dropped_total",
            "counter",
            "Positions dropped by the backlog limits (kept across restarts).",
            ring.dropped as f64,
        );
    }
    if let Some(t) = &s.traccar {
        let c = &t.counters;
        p.one("curbside_traccar_delivering", "gauge", "1 while the last request was delivered.", flag(c.connected));
        p.one(
            "curbside_traccar_positions_delivered_total",
            "counter",
            "Positions the Traccar server answered with a 2xx.",
            c.positions_published as f64,
        );
        p.one(
            "curbside_traccar_events_delivered_total",
            "counter",
            "Events the Traccar server answered with a 2xx.",
            c.events_published as f64,
        );
        p.one("curbside_traccar_backlog_points", "gauge", "Positions waiting for the server.", t.backlog.points as f64);
        p.one("curbside_traccar_events_pending", "gauge", "Events waiting for the server.", t.events_pending as f64);
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
