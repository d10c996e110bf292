//! `GET /metrics` in Prometheus text format, with the same figures as status.

use std::collections::HashMap;

use serde_json::json;

use crate::common::agent::{free_addr, start};
use crate::common::broker::rumqttd;

/// Parses the exposition format strictly enough to catch mistakes: every sample belongs to a
/// family declared with `# TYPE` before it, and its value is a number.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "family declared twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(types.contains_key(name), "sample before its # TYPE: {line}");
        if types[name] == "counter" {
            assert!(name.ends_with("_total"), "a counter named {name}");
        }
        samples.insert(series.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value: {line}")));
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_status() {
    let broker = rumqttd().await;
    let dead = free_addr();
    let agent = start(&format!(
        "[[webhook]]\nname = \"bo\"\nurl = \"http://{dead}/hook\"\n[mqtt]\nurl = \"mqtt://{broker}\"\n"
    ))
    .await;
    let (code, _) = agent.tap("JOB-1", json!({"status": "arrived"})).await;
    assert_eq!(code, 201);
    let resp = agent.http.get(agent.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let m = parse(&resp.text().await.unwrap());
    assert_eq!(m["curbside_info{version=\"0.1.0\",vehicle_id=\"van-17\"}"], 1.0);
    assert_eq!(m["curbside_webhook_pending{endpoint=\"bo\"}"], 1.0);
    assert_eq!(m["curbside_outbox_events"], 1.0);
    assert!(m["curbside_store_bytes"] > 0.0);
    assert!(m.contains_key("curbside_gps_connected{source=\"sim\"}"));
    assert!(m.contains_key("curbside_mqtt_backlog_points"));
    assert!(m.contains_key("curbside_clock_trusted"));
    let status = agent.get("/api/v1/status").await;
    assert!(status["clock"]["source"].is_string(), "{}", status["clock"]);
    agent.stop().await;
}
