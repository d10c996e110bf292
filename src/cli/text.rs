//! What the CLI prints for a human (the status's text is [`crate::status::Status::text`]).

/// `curbside outbox list` for a human.
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
