//! The receiver formats end to end: a real agent, real taps, real receivers on loopback that
//! check what they get the way each back office would (Track-POD's `Order` schema,
//! TrackingMore's signature, AntsRoute's three events with Basic auth, a jq program's outputs),
//! and a runaway program that must not stall anything.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::agent::{self, TestAgent};
use crate::common::pod::{file, jpeg, png, tap_with};
use crate::common::receiver::Receiver;

fn hook(name: &str, url: &str, extra: &str) -> String {
    format!("[[webhook]]\nname = \"{name}\"\nurl = \"{url}\"\nretry_schedule = [\"150ms\"]\n{extra}\n")
}

async fn posts(rx: &Receiver, path: &str, n: usize) -> Vec<crate::common::receiver::Got> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<_> = rx.got().into_iter().filter(|g| g.path == path).collect();
        if got.len() >= n {
            return got;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} requests on {path} not within 20 s: got {}", got.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status_of(agent: &TestAgent, name: &str) -> Value {
    let s = agent.get("/api/v1/status").await;
    s["webhooks"].as_array().unwrap().iter().find(|w| w["name"] == name).cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_pod_body_is_a_valid_order_with_the_stop_and_the_tap() {
    let rx = Receiver::start(None, vec![]).await;
    let extra = "format = \"track-pod\"\nevent_names = { partially_delivered = \"StatusChanged\" }";
    let agent =
        agent::start_top("timezone = \"Europe/Berlin\"", &hook("tp", &format!("http://{}/tp", rx.addr), extra)).await;
    let stops = json!({"stops": [{"job_id": "J-7", "sequence": 1, "name": "Kiosk", "address": "Marktstr. 1",
        "lat": 53.55, "lng": 9.99, "items": [{"sku": "W1", "desc": "Water", "qty": 4}]}]});
    let resp = agent.http.put(agent.url("/api/v1/stops")).json(&stops).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let (code, event) = agent
        .tap("J-7", json!({"status": "partially_delivered", "received_by": "Ada", "items": [{"sku": "W1", "qty": 4, "rejected": 1}], "note": "one broken"}))
        .await;
    assert_eq!(code, 201, "{event}");
    let got = posts(&rx, "/tp", 1).await;
    let body = got[0].json();
    assert_eq!(body["Metadata"]["Event"], "StatusChanged");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/formats/track-pod-order.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(&body["Data"]).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "the Order does not match the schema: {errors:#?}");
    let d = &body["Data"];
    assert_eq!(
        (d["Number"].as_str(), d["StatusId"].as_u64(), d["Address"].as_str()),
        (Some("J-7"), Some(4), Some("Marktstr. 1"))
    );
    assert_eq!(
        (d["GoodsList"][0]["Quantity"].as_f64(), d["GoodsList"][0]["QuantityFact"].as_f64()),
        (Some(4.0), Some(3.0))
    );
    assert_eq!(d["DriverComment"], "one broken");
    // The schema, checked to be able to fail: a field of the wrong type is caught.
    let mut wrong = d.clone();
    wrong["StatusId"] = json!("4");
    assert!(!validator.is_valid(&wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trackingmore_body_is_signed_as_the_documentation_computes_it() {
    use hmac::{Hmac, Mac};
    let rx = Receiver::start(None, vec![]).await;
    let extra = "format = \"trackingmore\"\nsecret = \"2e55b9a3-4dd1-4416-9897-c4bd1e3d738f\"\ncourier_code = \"acme\"";
    let agent = agent::start(&hook("tm", &format!("http://{}/tm", rx.addr), extra)).await;
    let (code, event) = agent.tap("J-8", json!({"status": "failed", "reason_code": "refused"})).await;
    assert_eq!(code, 201, "{event}");
    let got = posts(&rx, "/tm", 1).await;
    let g = &got[0];
    let timestamp = g.header("timestamp");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"2e55b9a3-4dd1-4416-9897-c4bd1e3d738f").unwrap();
    mac.update(timestamp.as_bytes());
    let expect: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(g.header("signature"), expect);
    assert!(g.header("webhook-signature").is_empty(), "not Standard Webhooks: the secret is TrackingMore's");
    let body = g.json();
    assert_eq!((body["code"].as_u64(), body["message"].as_str()), (Some(200), Some("Success")));
    let d = &body["data"];
    assert_eq!((d["tracking_number"].as_str(), d["courier_code"].as_str()), (Some("J-8"), Some("acme")));
    assert_eq!((d["delivery_status"].as_str(), d["substatus"].as_str()), (Some("exception"), Some("exception009")));
    assert_eq!(d["origin_info"]["trackinfo"][0]["checkpoint_delivery_substatus"], "exception009");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_antsroute_delivery_with_a_photo_and_a_signature_is_three_events_with_basic_auth() {
    let rx = Receiver::start(None, vec![]).await;
    let upload = format!(
        "[pod]\nupload_url = \"http://{}/pod/{{event_id}}/{{kind}}-{{index}}.{{ext}}\"\nretry_schedule = [\"150ms\"]\n",
        rx.addr
    );
    let extra = "format = \"antsroute\"\nbasic = { username = \"ants\", password = \"route\" }";
    let agent = agent::start(&(upload + &hook("ar", &format!("http://{}/ar", rx.addr), extra))).await;
    let (photo, sig) = (jpeg(1, 20_000), png(2));
    let (code, event) = tap_with(
        &agent,
        "J-9",
        &json!({"status": "delivered", "received_by": "Ada"}),
        &[file("photo", Some("image/jpeg"), &photo), file("signature", Some("image/png"), &sig)],
    )
    .await;
    assert_eq!(code, 201, "{event}");
    let got = posts(&rx, "/ar", 3).await;
    let names: Vec<String> = got.iter().map(|g| g.json()["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["delivery_done", "proof_of_delivery_photo_added", "customer_signature_added"]);
    let id = event["id"].as_str().unwrap();
    for (g, name) in got.iter().zip(&names) {
        assert_eq!(g.header("authorization"), "Basic YW50czpyb3V0ZQ==");
        assert_eq!(g.header("webhook-id"), format!("{id}.{name}"), "each its own stable id");
    }
    let photo_url = got[1].json()["photos"][0].as_str().unwrap().to_string();
    assert!(photo_url.contains("/pod/") && photo_url.ends_with(".jpg"), "{photo_url}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().iter().filter(|g| g.path == "/ar").count(), 3, "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jq_webhook_gets_exactly_what_its_program_makes_and_a_filter_sends_only_what_it_selects() {
    let rx = Receiver::start(None, vec![]).await;
    let program = r#"select(.data.status == "delivered") | {order: .data.job_id, who: .data.received_by}, [.type]"#;
    let extra = format!("format = \"jq\"\ntransform = '{program}'");
    let agent = agent::start(&hook("erp", &format!("http://{}/erp", rx.addr), &extra)).await;
    let (code, _) = agent.tap("J-1", json!({"status": "heading_to"})).await;
    assert_eq!(code, 201);
    let (code, event) = agent.tap("J-1", json!({"status": "delivered", "received_by": "Ada"})).await;
    assert_eq!(code, 201);
    let got = posts(&rx, "/erp", 2).await;
    assert_eq!(got[0].json(), json!({"order": "J-1", "who": "Ada"}));
    assert_eq!(got[1].json(), json!(["job.status.delivered"]));
    let id = event["id"].as_str().unwrap();
    assert_eq!((got[0].header("webhook-id"), got[1].header("webhook-id")), (id, format!("{id}.1").as_str()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 2, "heading_to was filtered out: nothing sent for it");
    let s = status_of(&agent, "erp").await;
    assert_eq!(s["pending"], 0, "{s}");

    // `curbside webhook test erp`: the sample (delivered) event through the program, shown.
    let t = agent.post("/api/v1/webhooks/erp/test").await;
    assert_eq!(t["sent"], json!([{"order": "TEST-0001", "who": "Test Recipient"}, ["job.status.delivered"]]), "{t}");
    assert_eq!(t["delivered"], true, "{t}");
}

/// A program that runs away (a loop, unbounded memory, a stack overflow), or makes something
/// that is not a body, parks its event on its endpoint within the bounds, says why in status,
/// and stalls nothing: the agent answers and another endpoint delivers meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_program_parks_its_event_and_stalls_nothing() {
    let rx = Receiver::start(None, vec![]).await;
    let mut config = String::new();
    let runaway = [
        ("loop", "def f: f; f"),
        ("memory", "[range(1e12)]"),
        ("stack", "def f: 1 + f; f"),
        ("scalar", ".data.job_id"),
    ];
    for (name, program) in runaway {
        config +=
            &hook(name, &format!("http://{}/{name}", rx.addr), &format!("format = \"jq\"\ntransform = '{program}'"));
    }
    config += &hook("plain", &format!("http://{}/plain", rx.addr), "");
    let agent = agent::start(&config).await;
    let (code, _) = agent.tap("J-1", json!({"status": "delivered"})).await;
    assert_eq!(code, 201);
    posts(&rx, "/plain", 1).await;
    // Delivered while the endless loop still runs (it is stopped by its CPU or wall bound
    // only): nothing waited for it.
    let l = status_of(&agent, "loop").await;
    assert_eq!(l["failed"], 0, "the plain endpoint waited for the loop to be stopped: {l}");
    for (name, _) in runaway {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = status_of(&agent, name).await;
            if s["failed"] == 1 {
                let why = s["state"]["last_error"].as_str().unwrap_or_default();
                assert!(why.starts_with("jq"), "{name}: {s}");
                if name == "scalar" {
                    assert!(why.contains("is a string, not an object or an array"), "{s}");
                }
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} not parked within 20 s: {s}");
            assert_eq!(agent.get("/api/v1/status").await["vehicle_id"], "van-17", "the agent answers meanwhile");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(rx.got().iter().all(|g| g.path == "/plain"), "a runaway program sent nothing");
}

#[tokio::test]
async fn a_program_that_does_not_compile_is_a_config_error_naming_the_file_the_key_and_jqs_message() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("erp.jq");
    std::fs::write(&program, "{order: .data.job_id").unwrap();
    let text = format!(
        "vehicle_id = \"van-17\"\n[gps]\nsource = \"sim\"\n[[webhook]]\nname = \"erp\"\nurl = \"http://127.0.0.1:9/\"\nformat = \"jq\"\ntransform_file = {:?}\n",
        program.display().to_string()
    );
    let e = curbside::config::Config::parse(&text, "curbside.toml").unwrap_err().to_string();
    assert!(e.contains("curbside.toml"), "{e}");
    assert!(e.contains("webhook[0].transform_file"), "{e}");
    assert!(e.contains("erp.jq") && e.contains("does not compile: expected"), "{e}");
}

mod every_tap_in_every_format {
    use std::sync::Arc;

    use curbside::webhook::format::{self, Context, Format, antsroute, jq, track_pod, trackingmore};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn text() -> impl Strategy<Value = String> {
        // Unicode, quotes, backslashes and control characters: what a driver's phone may send.
        proptest::string::string_regex("[a-zA-Z0-9 \"\\\\\u{0}-\u{1f}\u{e9}\u{4e2d}\u{1f4e6}]{0,40}").unwrap()
    }

    fn tap_body() -> impl Strategy<Value = Value> {
        let status = prop::sample::select(vec![
            "heading_to",
            "arrived",
            "delivered",
            "partially_delivered",
            "failed",
            "picked_up",
        ]);
        let reason = prop::sample::select(vec![
            "customer_not_present",
            "address_not_found",
            "refused",
            "damaged",
            "access_denied",
            "other",
        ]);
        let item = (proptest::string::string_regex("[A-Z0-9-]{1,12}").unwrap(), 0u32..10_000, 0u32..10_000)
            .prop_map(|(sku, qty, rejected)| json!({"sku": sku, "qty": qty, "rejected": rejected.min(qty)}));
        (
            status,
            reason,
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::collection::vec(item, 0..4),
        )
            .prop_map(|(status, reason, received_by, note, why, items)| {
                let mut v = json!({"status": status, "items": items});
                if status == "failed" {
                    v["reason_code"] = json!(reason);
                    if let Some(w) = why {
                        v["reason"] = json!(w);
                    }
                }
                if let Some(r) = received_by {
                    v["received_by"] = json!(r);
                }
                if let Some(n) = note {
                    v["note"] = json!(n);
                }
                v
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Every tap the API accepts renders in every format to JSON, without a panic (the
        /// program formats run in this process here: the shipped AntsRoute program and an
        /// identity program).
        #[test]
        fn renders_to_json(body in tap_body()) {
            let headers = axum::http::HeaderMap::new();
            let bytes = serde_json::to_vec(&body).unwrap();
            let Ok((tap, _)) = curbside::api::parse_tap_request("J-1", &headers, &bytes) else {
                return Ok(()); // refused with a 4xx: not a tap the API accepts
            };
            let mut e = format::sample("van-17");
            e.status = tap.status;
            e.reason_code = tap.reason_code;
            e.reason = tap.reason;
            e.received_by = tap.received_by;
            e.note = tap.note;
            e.items = tap.items;
            let tz: curbside::zone::Zone = "Asia/Kolkata".parse().unwrap();
            let history = vec![curbside::event::Milestone::of(&e)];
            let ctx = Context { tz, history: &history, stop: None };
            let fixed = [
                Format::Standard, Format::DetrackV1, Format::DetrackV2, Format::Carrier,
                Format::TrackPod(Arc::new(track_pod::Settings::default())),
                Format::TrackingMore(Arc::new(trackingmore::Settings::default())),
            ];
            for f in &fixed {
                let b = format::body(f, &e, &ctx).unwrap();
                prop_assert!(serde_json::from_slice::<Value>(&b).is_ok(), "{}", f.name());
            }
            let envelope = curbside::event::envelope(&e);
            for p in [antsroute::program(), jq::Program::compile(".").unwrap()] {
                for line in p.run_here(&envelope).unwrap() {
                    prop_assert!(serde_json::from_str::<Value>(&line).is_ok(), "{line}");
                }
            }
        }
    }
}
