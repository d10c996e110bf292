//! Taps to webhooks end to end: a real agent in-process (real sled on a temp dir), real HTTP
//! receivers on loopback, and the receiver misbehaving in every way the delivery rules name.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::agent::{TestAgent, free_addr, start};
use crate::common::receiver::{Receiver, Reply};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn hook(name: &str, url: &str, extra: &str) -> String {
    format!("[[webhook]]\nname = \"{name}\"\nurl = \"{url}\"\nretry_schedule = [\"150ms\"]\n{extra}\n")
}

async fn wait_for_fix(agent: &TestAgent) {
    for _ in 0..100 {
        if !agent.get("/api/v1/status").await["gps"]["fix"].is_null() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no fix from the simulator");
}

async fn pending(agent: &TestAgent) -> Vec<Value> {
    agent.get("/api/v1/events?state=pending").await["deliveries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_made_while_the_receiver_is_down_arrives_signed_with_location_once_it_is_up() {
    let addr = free_addr();
    let url = format!("http://{addr}/hook");
    let extra = format!(
        "secret = \"{SECRET}\"\nshared_token = \"shared-123\"\nbasic = {{ username = \"van\", password = \"pw\" }}\nheaders = {{ \"X-Api-Key\" = \"k-1\" }}"
    );
    let agent = start(&hook("backoffice", &url, &extra)).await;
    wait_for_fix(&agent).await;
    let (code, event) = agent.tap("JOB-1", json!({"status": "delivered", "received_by": "Jo", "note": "porch"})).await;
    assert_eq!(code, 201, "{event}");
    assert_eq!(event["location"]["mode"], "3d");

    // Unreachable: no attempts are spent while it is down.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let p = pending(&agent).await;
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["delivery"]["attempts"], 0, "offline must not spend attempts: {p:?}");
    let status = agent.get("/api/v1/status").await;
    assert_eq!(status["webhooks"][0]["state"]["reachable"], false, "{status}");
    let why = status["webhooks"][0]["state"]["last_error"].as_str().unwrap_or_default();
    assert!(why.starts_with("unreachable: ") && why.contains("onnect"), "status says why: {status}");

    let receiver = Receiver::start(Some(addr), vec![]).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let g = &got[0];
    assert_eq!(g.header("content-type"), "application/json");
    assert!(g.header("user-agent").starts_with("curbside/"), "{}", g.header("user-agent"));
    assert_eq!(g.header("webhook-id"), event["id"].as_str().unwrap());
    assert_eq!(g.header("x-webhook-shared-token"), "shared-123");
    assert_eq!(g.header("x-api-key"), "k-1");
    assert_eq!(g.header("authorization"), "Basic dmFuOnB3");
    let ts: i64 = g.header("webhook-timestamp").parse().unwrap();
    assert!((ts - chrono::Utc::now().timestamp()).abs() < 60);

    // The signature verifies with the reference implementation, not ours.
    let wh = standardwebhooks::Webhook::new(SECRET).unwrap();
    let mut headers = http::HeaderMap::new();
    for k in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(k, g.header(k).parse().unwrap());
    }
    wh.verify(&g.body, &headers).expect("signature verifies with standardwebhooks");

    let body = g.json();
    assert_eq!(body["type"], "job.status.delivered");
    assert_eq!(body["data"], event, "the body carries the stored event");
    for f in ["lat", "lng", "accuracy_m", "fix_age_s", "speed_mps", "course_deg", "mode"] {
        assert!(body["data"]["location"].get(f).is_some(), "location.{f} missing");
    }
    // Delivered: nothing pending, the event is gone from the store.
    for _ in 0..50 {
        if pending(&agent).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pending(&agent).await.is_empty());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_the_same_webhook_id_until_success() {
    let r = Receiver::start(None, vec![Reply::Status(500), Reply::Status(502)]).await;
    let agent = start(&hook("h", &r.url(), "")).await;
    let (_, event) = agent.tap("J", json!({"status": "arrived"})).await;
    let got = r.wait_for(3, Duration::from_secs(10)).await;
    let ids: Vec<&str> = got.iter().map(|g| g.header("webhook-id")).collect();
    assert_eq!(ids, vec![event["id"].as_str().unwrap(); 3]);
    assert!(got[1].at - got[0].at >= Duration::from_millis(100), "backoff between attempts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.got().len(), 3, "no more requests after the 2xx");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_and_503_is_honoured() {
    let r = Receiver::start(
        None,
        vec![Reply::With(429, vec![("retry-after", "1".into())]), Reply::With(503, vec![("retry-after", "1".into())])],
    )
    .await;
    let agent = start(&hook("h", &r.url(), "")).await;
    agent.tap("J", json!({"status": "arrived"})).await;
    let got = r.wait_for(3, Duration::from_secs(10)).await;
    for w in got.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap >= Duration::from_millis(950), "Retry-After: 1 honoured, got {gap:?} (schedule alone is 150 ms)");
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_410_disables_the_endpoint_until_an_operator_enables_it() {
    let r = Receiver::start(None, vec![Reply::Status(410)]).await;
    let agent = start(&hook("h", &r.url(), "")).await;
    agent.tap("J", json!({"status": "arrived"})).await;
    r.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(r.got().len(), 1, "a disabled endpoint gets nothing");
    let status = agent.get("/api/v1/status").await;
    assert!(status["webhooks"][0]["state"]["disabled"].as_str().unwrap().contains("410"), "{status}");
    assert_eq!(status["webhooks"][0]["pending"], 1);
    let enabled = agent.post("/api/v1/webhooks/h/enable").await;
    assert_eq!(enabled["was_disabled"], true);
    r.wait_for(2, Duration::from_secs(10)).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let target = Receiver::start(None, vec![]).await;
    let r = Receiver::start(None, vec![Reply::With(301, vec![("location", target.url())])]).await;
    let agent = start(&hook("h", &r.url(), "")).await;
    agent.tap("J", json!({"status": "arrived"})).await;
    let got = r.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert!(target.got().is_empty(), "the redirect was not followed");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_times_out_and_is_retried() {
    let r = Receiver::start(None, vec![Reply::Hang]).await;
    let agent = start(&hook("h", &r.url(), "timeout = \"300ms\"")).await;
    agent.tap("J", json!({"status": "arrived"})).await;
    let got = r.wait_for(2, Duration::from_secs(10)).await;
    assert!(got[1].at - got[0].at >= Duration::from_millis(300));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = agent.get("/api/v1/status").await;
    assert!(log["webhooks"][0]["state"]["last_error"].as_str().unwrap().contains("no answer"), "{log}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_after_a_2xx_status_is_a_delivery() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                tx.send(()).unwrap();
                sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n").await.unwrap();
                for _ in 0..1000 {
                    if sock.write_all(b"x").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
    });
    let agent = start(&hook("h", &format!("http://{addr}/hook"), "timeout = \"2s\"")).await;
    agent.tap("J", json!({"status": "arrived"})).await;
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap();
    // The body takes 20 s to arrive; the delivery counts at the status line.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pending(&agent).await.is_empty(), "delivered without waiting for the body");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(rx.try_recv().is_err(), "not sent again");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_parks_the_event_and_holds_the_job_until_an_operator_retries() {
    // 150 ms ± 20% per retry against a 200 ms budget: parked after exactly two attempts.
    let r = Receiver::start(None, vec![Reply::Status(500); 2]).await;
    let agent = start(&hook("h", &r.url(), "retry_budget = \"200ms\"")).await;
    let (_, first) = agent.tap("J", json!({"status": "arrived"})).await;
    let got = r.wait_for(2, Duration::from_secs(10)).await;
    // Parked: failed, not pending.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let failed = agent.get("/api/v1/events?state=failed").await["deliveries"].as_array().unwrap().clone();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let attempts = failed[0]["delivery"]["attempts"].as_u64().unwrap();
    assert_eq!(attempts as usize, r.got().len(), "every request counted");
    assert_eq!(got.len(), 2);
    // A later event of the same job waits behind the parked one.
    let n = r.got().len();
    let (_, second) = agent.tap("J", json!({"status": "delivered"})).await;
    let (_, other) = agent.tap("K", json!({"status": "delivered"})).await;
    let got = r.wait_for(n + 1, Duration::from_secs(10)).await;
    assert_eq!(got[n].header("webhook-id"), other["id"].as_str().unwrap(), "other jobs proceed");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.got().len(), n + 1, "J's second event is held back");
    let retried = agent.post(&format!("/api/v1/events/{}/retry", first["id"].as_str().unwrap())).await;
    assert_eq!(retried["retried"], 1);
    let got = r.wait_for(n + 3, Duration::from_secs(10)).await;
    let order: Vec<&str> = got[n + 1..].iter().map(|g| g.header("webhook-id")).collect();
    assert_eq!(order, vec![first["id"].as_str().unwrap(), second["id"].as_str().unwrap()], "order kept");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_job_arrive_in_order_while_jobs_proceed_concurrently() {
    let r = Receiver::start(None, vec![]).await;
    let agent = start(&hook("h", &r.url(), "concurrency = 4")).await;
    let statuses = ["heading_to", "arrived", "delivered"];
    let mut ids = std::collections::HashMap::new();
    for s in statuses {
        for job in 0..10 {
            let (code, e) = agent.tap(&format!("JOB-{job}"), json!({"status": s})).await;
            assert_eq!(code, 201);
            ids.entry(e["job_id"].as_str().unwrap().to_string())
                .or_insert_with(Vec::new)
                .push(e["id"].as_str().unwrap().to_string());
        }
    }
    let got = r.wait_for(30, Duration::from_secs(20)).await;
    for (job, want) in ids {
        let seen: Vec<String> = got
            .iter()
            .filter(|g| g.json()["data"]["job_id"] == job.as_str())
            .map(|g| g.header("webhook-id").to_string())
            .collect();
        assert_eq!(seen, want, "order of {job}");
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_format_reaches_its_endpoint_and_filters_apply() {
    let (std_r, det, car, v2) = (
        Receiver::start(None, vec![]).await,
        Receiver::start(None, vec![]).await,
        Receiver::start(None, vec![]).await,
        Receiver::start(None, vec![]).await,
    );
    let cfg = hook("std", &std_r.url(), "events = [\"failed\"]")
        + &hook("det", &det.url(), "format = \"detrack-v1\"")
        + &hook("car", &car.url(), "format = \"carrier\"")
        + &hook("v2", &v2.url(), "format = \"detrack-v2\"");
    let agent = crate::common::agent::start_top("timezone = \"Asia/Singapore\"", &cfg).await;
    wait_for_fix(&agent).await;
    let (_, heading) = agent.tap("J-1", json!({"status": "heading_to"})).await;
    // Not in the Detrack and carrier documents: only the standard webhook would send it.
    agent.tap("J-1", json!({"status": "arrived"})).await;
    let (_, failed) =
        agent.tap("J-1", json!({"status": "failed", "reason_code": "refused", "reason": "wrong item"})).await;
    let s = std_r.wait_for(1, Duration::from_secs(10)).await;
    let d = det.wait_for(2, Duration::from_secs(10)).await;
    let c = car.wait_for(2, Duration::from_secs(10)).await;
    let w = v2.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(std_r.got().len(), 1, "the filter passes only failed");
    assert_eq!((det.got().len(), car.got().len(), v2.got().len()), (2, 2, 2), "arrived is in none of their documents");
    assert_eq!(s[0].json()["data"]["reason_code"], "refused");
    let d1 = d[1].json();
    assert_eq!(
        (d1["do"].as_str(), d1["status"].as_str(), d1["reason"].as_str()),
        (Some("J-1"), Some("Failed"), Some("refused: wrong item"))
    );
    assert!(d1["time"].as_str().unwrap().ends_with("+08:00"), "{d1}");
    assert!(d1["pod_lat"].is_number());
    let (c0, c1) = (c[0].json(), c[1].json());
    assert_eq!((c0["status"].as_str(), c0["code"].as_u64()), (Some("OUT_FOR_DELIVERY"), Some(410)));
    assert!(c0["location"]["lat"].is_number() && c0["location"]["lng"].is_number(), "{c0}");
    assert_eq!(c1["status"], "FAILED_ATTEMPT");
    assert_eq!(c1["failedStatus"], "REFUSED");
    assert_eq!(c1["location"], serde_json::Value::Null);
    assert_eq!((c1["id"].as_str(), &c1["metaData"]), (Some("J-1"), &failed["id"]));
    let w1 = w[1].json();
    assert_eq!((w1["do_number"].as_str(), w1["status"].as_str()), (Some("J-1"), Some("failed")));
    let steps: Vec<_> =
        w1["milestones"].as_array().unwrap().iter().map(|m| m["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(steps, ["out_for_delivery", "arrived", "failed"], "the job's history, from the store");
    assert!(w1["head_to_delivery_at"].as_str().unwrap().ends_with("+08:00"));
    assert!(w1["arrived_at"].is_string(), "{w1}");
    assert_eq!(w[0].json()["id"], heading["id"]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_test_sends_a_signed_sample_and_reports_the_answer() {
    let r = Receiver::start(None, vec![Reply::Status(202)]).await;
    let agent = start(&hook("h", &r.url(), &format!("secret = \"{SECRET}\""))).await;
    let answer = agent.post("/api/v1/webhooks/h/test").await;
    assert_eq!(answer["status"], 202, "{answer}");
    let got = r.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].header("webhook-id"), answer["event_id"].as_str().unwrap());
    assert!(got[0].header("webhook-signature").starts_with("v1,"));
    assert_eq!(got[0].json()["data"]["job_id"], "TEST-0001");
    let missing = agent.http.post(agent.url("/api/v1/webhooks/nope/test")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    agent.stop().await;
}

/// `curbside webhook test` as an operator runs it: the answer in words, a non-zero exit when the
/// test event was not delivered, and a 410 to a test leaves real deliveries alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_webhook_test_reports_in_words_and_a_410_to_it_disables_nothing() {
    let r = Receiver::start(None, vec![Reply::Status(410)]).await;
    let agent = start(&hook("h", &r.url(), "")).await;
    let config = agent.dir.path().join("cli.toml");
    std::fs::write(&config, format!("vehicle_id = \"van-17\"\n[api]\nlisten = \"{}\"\n", agent.addr())).unwrap();
    let cli = |args: &[&str]| {
        let out = crate::common::curbside().args(args).arg("--config").arg(&config).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = tokio::task::block_in_place(|| cli(&["webhook", "test", "h"]));
    assert_eq!(code, Some(1), "not delivered: a failure\n{out}{err}");
    assert!(out.contains("410 Gone") && !out.contains("Failed {") && !out.contains("Gone,"), "{out}");
    let status = agent.get("/api/v1/status").await;
    assert!(status["webhooks"][0]["state"]["disabled"].is_null(), "a test does not disable: {status}");
    let (code, out, err) = tokio::task::block_in_place(|| cli(&["webhook", "test", "h"]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("h: delivered (HTTP 200)"), "{out}");
    // A job id that is a path segment, or would name another path, never reaches the agent.
    let (code, _, err) = tokio::task::block_in_place(|| cli(&["tap", "arrived", "--job", ".."]));
    assert_eq!(code, Some(1));
    assert!(err.contains("--job: must not be only dots"), "{err}");
    for job in ["E/../F", "x/status?y=", "A#1", "...", "."] {
        let (code, _, err) = tokio::task::block_in_place(|| cli(&["tap", "arrived", "--job", job]));
        assert_eq!(code, Some(1), "{job}");
        assert!(err.contains("--job: "), "{job}: {err}");
    }
    assert_eq!(agent.get("/api/v1/status").await["outbox"]["events"], 0);
    agent.stop().await;
}

/// An endpoint unreachable for a long while is still probed every second (it was doubling to
/// 30 s): the delivery arrives within 3 s of its receiver coming back after 40 s away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_resume_within_3_s_of_a_receiver_back_after_40_s() {
    let addr = free_addr();
    let agent = start(&hook("h", &format!("http://{addr}/hook"), "")).await;
    let (code, event) = agent.tap("JOB-1", json!({"status": "arrived"})).await;
    assert_eq!(code, 201, "{event}");
    tokio::time::sleep(Duration::from_secs(40)).await;
    let status = agent.get("/api/v1/status").await;
    assert_eq!(status["webhooks"][0]["state"]["reachable"], false, "{status}");
    let back = tokio::time::Instant::now();
    let receiver = Receiver::start(Some(addr), vec![]).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let took = got[0].at.duration_since(back);
    eprintln!("receiver away 40 s: the delivery came {took:?} after it returned");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(got[0].header("webhook-id"), event["id"].as_str().unwrap());
    agent.stop().await;
}

/// The driver page's "Sent to the office" asks `GET /api/v1/deliveries/{sequence}`: the first
/// event of a fresh store is answered like any other (it once got a 422 for sequence 0 and the
/// page polled forever), a sequence no event ever had is a 404 (it once said `"sent": true`), and
/// an event delivered before a restart is still known after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_state_of_the_first_event_and_of_a_sequence_never_stored() {
    let addr = free_addr();
    let agent = start(&hook("office", &format!("http://{addr}/hook"), "")).await;
    let status = |agent: &TestAgent, path: String| {
        let req = agent.http.get(agent.url(&path));
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (code, first) = agent.tap("JOB-1", json!({"status": "delivered"})).await;
    assert_eq!(code, 201);
    let seq = first["sequence"].as_u64().unwrap();
    let (code, v) = status(&agent, format!("/api/v1/deliveries/{seq}")).await;
    assert_eq!((code, v["sent"].clone(), v["waiting"].clone()), (200, json!(false), json!(["office"])), "{v}");
    let (code, v) = status(&agent, format!("/api/v1/deliveries/{}", seq + 1)).await;
    assert_eq!((code, v["field"].as_str()), (404, Some("sequence")), "{v}");
    let (code, v) = status(&agent, "/api/v1/deliveries/first".into()).await;
    assert_eq!((code, v["field"].as_str()), (422, Some("sequence")), "{v}");

    let receiver = Receiver::start(Some(addr), vec![]).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while status(&agent, format!("/api/v1/deliveries/{seq}")).await.1["sent"] != true {
        assert!(tokio::time::Instant::now() < deadline, "not sent within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = agent.stop().await;
    let agent = crate::common::agent::start_in(dir, &hook("office", &format!("http://{addr}/hook"), "")).await;
    let (code, v) = status(&agent, format!("/api/v1/deliveries/{seq}")).await;
    assert_eq!((code, v["sent"].clone()), (200, json!(true)), "delivered before the restart: {v}");
    let (code, _) = status(&agent, format!("/api/v1/deliveries/{}", seq + 1000)).await;
    assert_eq!(code, 404);
}
