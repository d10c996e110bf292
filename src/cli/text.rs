//! What the CLI prints for a human (the status's text is [`crate::status::Status::text`]).

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
            "{:<8} {:<12} {} job {} {} at {}  attempts {}  last: {}",
            d["state"].as_str().unwrap_or("?"),
            d["endpoint"].as_str().unwrap_or("?"),
            e["id"].as_str().unwrap_or("?"),
            e["job_id"].as_str().unwrap_or("?"),
            e["status"].as_str().unwrap_or("?"),
            e["occurred_at"].as_str().unwrap_or("?"),
            d["delivery"]["attempts"],
            d["delivery"]["last_error"].as_str().unwrap_or("-"),
        );
    }
    out
}
