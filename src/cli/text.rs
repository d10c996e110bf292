//! What the CLI prints for a human: the status, the stop list.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::status::Status;

impl Status {
    /// `curbside status` for a human.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let g = &self.gps;
        let _ = writeln!(out, "curbside {} on {}", self.version, self.vehicle_id);
        let _ = match &g.fix {
            None => writeln!(
                out,
                "gps      {} ({}), no live fix; {}; bad sentences {}",
                g.source,
                if g.connected { "connected" } else { "not connected" },
                match &g.last_known {
                    Some(k) => format!("last known {:.0} s ago", k.age_s),
                    None => "no fix yet".into(),
                },
                g.bad_sentences
            ),
            Some(f) => writeln!(
                out,
                "gps      {} {} {:.6},{:.6} {} sats, fix age {:.1} s; bad sentences {}",
                g.source,
                f.mode,
                f.lat.unwrap_or_default(),
                f.lon.unwrap_or_default(),
                f.sats.map_or("?".into(), |n| n.to_string()),
                g.fix_age_s.unwrap_or_default(),
                g.bad_sentences
            ),
        };
        if let Some(n) = &self.next_stop {
            let far = n.distance_m.map(|d| format!(", {:.1} km away", d / 1000.0)).unwrap_or_default();
            let eta = match &n.eta {
                Some(e) => {
                    format!(", ETA {} (straight line, {} min)", e.at.format("%H:%M UTC"), e.seconds.div_ceil(60))
                }
                None => String::new(),
            };
            let _ = writeln!(out, "next     #{} {} {} ({}){far}{eta}", n.sequence, n.job_id, n.name, n.state.as_str());
        }
        let c = &self.clock.verdict;
        let _ = writeln!(out, "clock    {} ({})", if c.trusted { "trusted" } else { "UNTRUSTED" }, c.reason);
        let o = &self.outbox;
        let _ = writeln!(out, "outbox   {} events, {} bytes on disk of {} budget", o.events, o.size_on_disk, o.budget);
        if o.over_budget {
            let _ =
                writeln!(out, "         OVER ITS DISK BUDGET (outbox_max_mb): taps are refused until it is drained");
        }
        if let Some(loss) = &o.store_loss {
            let _ = writeln!(out, "         STORE LOST at {}: old store kept at {}", loss.at, loss.moved_to.display());
        }
        if self.webhooks.is_empty() && self.mqtt.is_none() {
            let _ = writeln!(out, "         no [[webhook]] and no [mqtt]: events stay on this van");
        }
        for w in &self.webhooks {
            let st = &w.state;
            let state = match (&st.disabled, st.reachable) {
                (Some(why), _) => format!("DISABLED ({why})"),
                (None, false) => "unreachable".into(),
                (None, true) => "ok".into(),
            };
            let oldest = w.oldest_age_s.map(|a| format!(" (oldest {a} s)")).unwrap_or_default();
            let _ = writeln!(
                out,
                "webhook  {} {state}: {} pending{oldest}, {} failed; last delivery {}",
                w.name,
                w.pending,
                w.failed,
                ago(st.last_delivery_at)
            );
            if let Some(e) = &st.last_error {
                let when = st.last_error_at.map(|t| format!(" {}", ago(Some(t)))).unwrap_or_default();
                let _ = writeln!(out, "         last error{when}: {e}");
            }
        }
        if let Some(m) = &self.mqtt {
            let b = &m.backlog;
            let oldest =
                b.oldest_tst.map(|t| format!(", oldest {} s old", Utc::now().timestamp() - t)).unwrap_or_default();
            let _ = writeln!(
                out,
                "mqtt     {} {}; {} positions published, backlog {} ({} bytes{oldest}), {} dropped; {} events waiting",
                m.broker,
                if m.counters.connected { "connected" } else { "NOT CONNECTED" },
                m.counters.positions_published,
                b.points,
                b.bytes,
                b.dropped,
                m.events_pending,
            );
            if let Some(e) = &m.counters.last_error {
                let _ = writeln!(out, "         last error: {e}");
            }
            if let Some(e) = &m.counters.stops_last_error {
                let _ = writeln!(out, "         {} stop lists refused, the last: {e}", m.counters.stops_rejected);
            }
        }
        if let Some(t) = &self.traccar {
            let _ = writeln!(
                out,
                "traccar  {} {}; {} positions and {} events delivered, backlog {} ({} events waiting)",
                t.url,
                if t.counters.connected { "delivering" } else { "NOT DELIVERING" },
                t.counters.positions_published,
                t.counters.events_published,
                t.backlog.points,
                t.events_pending,
            );
            if let Some(e) = &t.counters.last_error {
                let _ = writeln!(out, "         last error: {e}");
            }
        }
        let l = &self.links;
        if !l.to.is_empty() {
            let mb = |b: u64| b as f64 / 1e6;
            let budget = match l.daily_budget_bytes {
                Some(b) if l.over_budget => format!(" of {:.3} MB: over the daily budget, positions thinned", mb(b)),
                Some(b) => format!(" of {:.3} MB", mb(b)),
                None => String::new(),
            };
            let _ = writeln!(out, "links    {:.3} MB today{budget}", mb(l.today_bytes));
            for u in &l.to {
                let _ = writeln!(
                    out,
                    "         {} ({}): today {} B sent, {} B received; since start {} / {} B, {} connections",
                    u.to,
                    if u.used_by.is_empty() { "-".to_string() } else { u.used_by.join(", ") },
                    u.today_sent_bytes,
                    u.today_received_bytes,
                    u.sent_bytes,
                    u.received_bytes,
                    u.connections,
                );
                if let Some(e) = &u.last_error {
                    let _ = writeln!(out, "         last error: {e}");
                }
            }
        }
        if let Some(h) = &self.owntracks_http {
            let b = &h.backlog;
            let _ = writeln!(
                out,
                "owntracks_http {} {}; {} positions delivered, backlog {} ({} bytes), {} dropped",
                h.url,
                if h.counters.connected { "delivering" } else { "NOT DELIVERING" },
                h.counters.positions_published,
                b.points,
                b.bytes,
                b.dropped,
            );
            if let Some(e) = &h.counters.last_error {
                let _ = writeln!(out, "         last error: {e}");
            }
            if let Some(e) = &h.counters.last_command_error {
                let _ =
                    writeln!(out, "         {} commands not carried out, the last: {e}", h.counters.commands_rejected);
            }
        }
        let p = &self.pod;
        if p.media_bytes > 0 || p.upload.is_some() {
            let _ = writeln!(
                out,
                "pod      {} bytes of photos and signatures on the van of {} budget",
                p.media_bytes, p.media_budget
            );
        }
        if let Some(u) = &p.upload {
            let state = match (&u.state.disabled, u.state.reachable) {
                (Some(why), _) => format!("DISABLED ({why})"),
                (None, false) => "unreachable".into(),
                (None, true) => "ok".into(),
            };
            let _ = writeln!(
                out,
                "upload   {} {state}: {} events pending ({} bytes), {} failed; last upload {}",
                u.url,
                u.pending,
                p.upload_pending_bytes,
                u.failed,
                ago(u.state.last_delivery_at)
            );
            if let Some(e) = &u.state.last_error {
                let _ = writeln!(out, "         last error: {e}");
            }
        }
        if let Some(w) = &p.warning {
            let _ = writeln!(out, "         {w}");
        }
        out
    }
}

fn ago(at: Option<DateTime<Utc>>) -> String {
    match at {
        Some(t) => format!("{} s ago", (Utc::now() - t).num_seconds().max(0)),
        None => "never".into(),
    }
}

/// `curbside stops list` for a human.
pub fn stops_text(list: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut out = format!("stop list version {}\n", list["version"]);
    let stops = list["stops"].as_array().map(Vec::as_slice).unwrap_or_default();
    if stops.is_empty() {
        out.push_str("no stops loaded (curbside stops load FILE.json)\n");
    }
    for s in stops {
        let state = match (s["state"].as_str(), s["status"].as_str()) {
            (Some("done"), Some(st)) => format!("done ({st})"),
            (Some(state), _) => state.to_string(),
            _ => "?".into(),
        };
        let place = match (s["lat"].as_f64(), s["lng"].as_f64()) {
            (Some(lat), Some(lng)) => format!("{lat:.5},{lng:.5}"),
            _ => "no coordinates".into(),
        };
        let _ = writeln!(
            out,
            "{:>3}  {:<16} {:<20} {:<14} {} ({place})",
            s["sequence"],
            s["job_id"].as_str().unwrap_or(""),
            state,
            s["name"].as_str().unwrap_or(""),
            s["address"].as_str().unwrap_or(""),
        );
    }
    out
}

/// The day so far (`GET /api/v1/route`) as text.
pub fn route_text(day: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut out = match day["route"]["id"].as_str() {
        Some(id) => format!("route {id} ({})\n", day["route"]["date"].as_str().unwrap_or("no date")),
        None => "no route loaded (the day's list came without one)\n".to_string(),
    };
    let when = |k: &str| day[k].as_str().map(String::from);
    match (when("started_at"), when("ended_at")) {
        (None, _) => out.push_str("not started (curbside route start)\n"),
        (Some(s), None) => {
            let _ = writeln!(out, "started {s}{}", if day["on_break"] == true { ", on a break" } else { "" });
        }
        (Some(s), Some(e)) => {
            let _ = writeln!(out, "started {s}, ended {e}");
        }
    }
    let sum = &day["summary"];
    if sum.is_object() {
        let _ = writeln!(
            out,
            "{:.1} km, driving {} min, stopped {} min (idle {} min, breaks {} min)",
            sum["distance_m"].as_f64().unwrap_or(0.0) / 1000.0,
            sum["driving_s"].as_u64().unwrap_or(0) / 60,
            sum["stopped_s"].as_u64().unwrap_or(0) / 60,
            sum["idle_s"].as_u64().unwrap_or(0) / 60,
            sum["break_s"].as_u64().unwrap_or(0) / 60,
        );
    }
    let c = &day["stops"];
    let _ = writeln!(
        out,
        "stops: {} delivered, {} partially delivered, {} failed, {} picked up, {} pending",
        c["delivered"], c["partially_delivered"], c["failed"], c["picked_up"], c["pending"]
    );
    out
}

/// The outbox listing as text.
pub fn outbox_text(list: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let rows = list["deliveries"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        out.push_str("outbox empty: nothing waiting\n");
    }
    for d in rows {
        let e = &d["event"];
        let _ = writeln!(
            out,
            "{:<8} {:<12} {} {} {} at {}  attempts {}  last: {}",
            d["state"].as_str().unwrap_or("?"),
            d["endpoint"].as_str().unwrap_or("?"),
            e["id"].as_str().unwrap_or("?"),
            e["job_id"].as_str().map_or_else(|| "route".to_string(), |j| format!("job {j}")),
            e["status"].as_str().unwrap_or("?"),
            e["occurred_at"].as_str().unwrap_or("?"),
            d["delivery"]["attempts"],
            d["delivery"]["last_error"].as_str().unwrap_or("-"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::outbox::RingStats;
    use crate::status::tests::sample;
    use crate::status::{OwnTracksHttpReport, Status};
    use crate::telemetry::Counters;

    #[test]
    fn the_text_says_what_is_wrong_in_words() {
        let text = sample().text();
        let line = |p: &str| text.lines().find(|l| l.starts_with(p)).unwrap_or_default().to_string();
        assert_eq!(
            line("mqtt"),
            "mqtt     broker.example.com:8883 NOT CONNECTED; 12 positions published, backlog 30 (9000 bytes), 2 dropped; 1 events waiting"
        );
        assert!(text.contains("         last error: connection refused"), "{text}");
        assert_eq!(line("webhook"), "webhook  office unreachable: 3 pending, 0 failed; last delivery never");
        assert!(text.contains("\n         last error: dns error: no such host\n"), "{text}");
        assert!(line("gps").ends_with("no live fix; no fix yet; bad sentences 0"), "{text}");
        assert!(!text.contains(" - s") && !text.contains("never s ago"), "{text}");
    }

    #[test]
    fn owntracks_http_has_its_line_and_its_summary() {
        let mut s = sample();
        s.mqtt = None;
        s.owntracks_http = Some(OwnTracksHttpReport {
            url: "https://rec.example.com/pub".into(),
            counters: Counters {
                positions_published: 7,
                last_error: Some("the endpoint answered 503 Service Unavailable".into()),
                commands_rejected: 1,
                last_command_error: Some("action: \"dance\" is not one curbside carries out".into()),
                ..Counters::default()
            },
            backlog: RingStats { points: 4, bytes: 800, oldest_tst: None, dropped: 0 },
        });
        let text = s.text();
        assert!(
            text.contains(
                "owntracks_http https://rec.example.com/pub NOT DELIVERING; 7 positions delivered, backlog 4 (800 bytes), 0 dropped\n         last error: the endpoint answered 503"
            ),
            "{text}"
        );
        assert!(text.contains("1 commands not carried out, the last: action: \"dance\""), "{text}");
        assert!(s.line().ends_with("; owntracks http not delivering, backlog 4"), "{}", s.line());
        let again: Status = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn the_text_says_when_events_stay_on_the_van() {
        let mut s = sample();
        s.webhooks.clear();
        s.mqtt = None;
        let text = s.text();
        assert!(text.contains("events stay on this van"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("mqtt")), "{text}");
    }
}
