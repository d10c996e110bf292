//! SIGHUP with the real binary: a new webhook endpoint takes effect without losing the events
//! queued for the old one; an invalid config changes nothing.

use std::process::{Child, Command};
use std::time::Duration;

use serde_json::json;

use crate::common::agent::{config_text, free_addr};
use crate::common::receiver::Receiver;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hup(agent: &Agent) {
    Command::new("kill").args(["-HUP", &agent.0.id().to_string()]).status().unwrap();
}

async fn tap(http: &reqwest::Client, api: &str, job: &str) -> String {
    let r =
        http.post(format!("http://{api}/api/v1/jobs/{job}/status")).json(&json!({"status": "arrived"})).send().await;
    let body: serde_json::Value = r.unwrap().json().await.unwrap();
    body["id"].as_str().unwrap_or_else(|| panic!("{body}")).to_string()
}

async fn status(http: &reqwest::Client, api: &str) -> Option<serde_json::Value> {
    http.get(format!("http://{api}/api/v1/status")).send().await.ok()?.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_endpoint_and_keeps_the_queued_events() {
    curbside::tls::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let api = free_addr().to_string();
    let config = dir.path().join("curbside.toml");
    let write = |hook: &str| {
        let extra = format!("[[webhook]]\nname = \"bo\"\nurl = \"{hook}\"\n");
        let text = config_text(&dir.path().join("state"), "source = \"sim\"", &format!("listen = \"{api}\""), &extra);
        std::fs::write(&config, text).unwrap();
    };
    // First the back office is somewhere nothing answers: events queue.
    write(&format!("http://{}/hook", free_addr()));
    let agent = Agent(crate::common::run_agent(&config).spawn().unwrap());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for _ in 0..200 {
        if status(&http, &api).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut ids = Vec::new();
    for j in 0..3 {
        ids.push(tap(&http, &api, &format!("job-{j}")).await);
    }

    // An invalid config: logged, nothing changes, the agent keeps answering.
    std::fs::write(&config, "vehicle_id = \"van 17\"").unwrap();
    hup(&agent);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = status(&http, &api).await.expect("still running on the old config");
    assert_eq!(s["webhooks"][0]["pending"], 3);

    // The endpoint moves: the queued events go to the new one, with their ids.
    let receiver = Receiver::start(None, vec![]).await;
    write(&receiver.url());
    hup(&agent);
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    let mut delivered: Vec<String> = got.iter().map(|g| g.header("webhook-id").to_string()).collect();
    delivered.sort();
    ids.sort();
    assert_eq!(delivered, ids);
    // And taps work again after the restart of the parts.
    let mut after = None;
    for _ in 0..100 {
        if let Some(s) = status(&http, &api).await {
            after = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(after.unwrap()["webhooks"][0]["url"], receiver.url());
    tap(&http, &api, "job-after").await;
    receiver.wait_for(4, Duration::from_secs(20)).await;
}
