//! Proof of delivery: multipart taps with photos and a signature, stored before the 201,
//! uploaded before the webhook that links them, removed from the van once delivered.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::agent::{self, TestAgent};
use crate::common::pod::{file, jpeg, media_files, png, sha256, tap_with};
use crate::common::receiver::{Receiver, Reply};

fn hook(url: &str) -> String {
    format!("[[webhook]]\nname = \"bo\"\nurl = \"{url}\"\nretry_schedule = [\"150ms\"]\n")
}

fn upload(addr: std::net::SocketAddr) -> String {
    format!(
        "[pod]\nupload_url = \"http://{addr}/pod/{{vehicle_id}}/{{event_id}}/{{kind}}-{{index}}.{{ext}}\"\nretry_schedule = [\"150ms\"]\n"
    )
}

/// A webhook nobody listens on: events stay in the store (a store with no endpoint keeps none).
fn unreachable_hook() -> String {
    hook(&format!("http://{}/hook", agent::free_addr()))
}

fn state(agent: &TestAgent) -> std::path::PathBuf {
    agent.dir.path().join("state")
}

async fn until(limit: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !pred() {
        assert!(tokio::time::Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn files_are_stored_uploaded_with_their_digest_and_linked_from_the_webhook_that_follows() {
    let rx = Receiver::start(None, vec![]).await;
    let agent = agent::start(&(upload(rx.addr) + &hook(&rx.url()))).await;
    let (p1, p2, sig) = (jpeg(1, 60_000), jpeg(2, 150_000), png(3));
    let (code, event) = tap_with(
        &agent,
        "J-1",
        &json!({"status": "delivered", "received_by": "Ada"}),
        &[file("signature", Some("image/png"), &sig), file("photo", Some("image/jpeg"), &p1), file("photo", None, &p2)],
    )
    .await;
    assert_eq!(code, 201, "{event}");
    let a = event["attachments"].as_array().unwrap();
    let expect = [
        ("photo", 1, &p1, "image/jpeg", "jpg"),
        ("photo", 2, &p2, "image/jpeg", "jpg"),
        ("signature", 1, &sig, "image/png", "png"),
    ];
    assert_eq!(a.len(), 3);
    for (got, (kind, index, bytes, ct, ext)) in a.iter().zip(expect) {
        assert_eq!(got["kind"], kind);
        assert_eq!(got["index"], index);
        assert_eq!(got["sha256"], sha256(bytes));
        assert_eq!(got["bytes"], bytes.len());
        assert_eq!(got["content_type"], ct);
        assert_eq!(got["captured_at"], event["occurred_at"]);
        let url = format!("http://{}/pod/van-17/{}/{kind}-{index}.{ext}", rx.addr, event["id"].as_str().unwrap());
        assert_eq!(got["url"], url.as_str());
    }
    let got = rx.wait_for(4, Duration::from_secs(20)).await;
    let (puts, hooks): (Vec<_>, Vec<_>) = got.iter().partition(|g| g.method == "PUT");
    assert_eq!((puts.len(), hooks.len()), (3, 1), "three files, then one webhook");
    for (att, (_, _, bytes, ct, _)) in a.iter().zip(expect) {
        let put =
            puts.iter().find(|p| att["url"].as_str().unwrap().ends_with(&p.path)).expect("each file PUT at its URL");
        assert_eq!(&put.body[..], &bytes[..]);
        assert_eq!(put.header("content-type"), ct);
        assert_eq!(put.header("content-length"), bytes.len().to_string());
        use base64::Engine as _;
        let digest = base64::engine::general_purpose::STANDARD.encode(hex_bytes(&sha256(bytes)));
        assert_eq!(put.header("content-digest"), format!("sha-256=:{digest}:"));
        assert!(put.at <= hooks[0].at, "every file before the webhook that links it");
    }
    let body = hooks[0].json();
    assert_eq!(body["data"]["attachments"], event["attachments"], "the webhook links what the 201 said");
    let dir = state(&agent);
    until(Duration::from_secs(10), "the files leave the van once uploaded and the webhook delivered", || {
        media_files(&dir) == (0, 0)
    })
    .await;
    agent.stop().await;
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

#[tokio::test]
async fn bad_multipart_taps_get_a_4xx_naming_the_part_and_store_nothing() {
    let agent = agent::start(&unreachable_hook()).await;
    let (photo, sig) = (jpeg(7, 20_000), png(1));
    let ev = serde_json::to_vec(&json!({"status": "delivered"})).unwrap();
    let event = || file("event", Some("application/json"), &ev);
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".repeat(100);
    let mut huge = jpeg(8, 1000);
    huge.resize((8 << 20) + 1, 0);
    let eleven: Vec<_> = (0..11).map(|_| file("photo", None, &photo)).collect();
    let svg_as_photo = b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec();
    let mut cases: Vec<(&str, Vec<curbside::api::multipart::Part>, u16, &str)> = vec![
        ("wrong magic number", vec![event(), file("photo", Some("image/jpeg"), &gif)], 415, "photo[0]"),
        ("an svg is no photo", vec![event(), file("photo", None, &svg_as_photo)], 415, "photo[0]"),
        ("a jpeg is no signature", vec![event(), file("signature", None, &photo)], 415, "signature[0]"),
        ("declared png, bytes jpeg", vec![event(), file("photo", Some("image/png"), &photo)], 415, "photo[0]"),
        ("oversized photo", vec![event(), file("photo", None, &huge)], 413, "photo[0]"),
        (
            "two signatures",
            vec![event(), file("signature", None, &sig), file("signature", None, &sig)],
            422,
            "signature",
        ),
        ("unknown part", vec![event(), file("selfie", None, &photo)], 400, "selfie"),
        ("missing event", vec![file("photo", None, &photo)], 400, "event"),
        ("empty photo", vec![event(), file("photo", None, b"")], 400, "photo[0]"),
    ];
    let mut with_eleven = vec![event()];
    with_eleven.extend(eleven);
    cases.push(("eleven photos", with_eleven, 422, "photo"));
    for (what, parts, status, field) in cases {
        let (ct, body) = curbside::api::multipart::encode(&parts);
        let (code, answer) = agent.tap_raw("J-1", body, &[("content-type", &ct)]).await;
        assert_eq!((code, answer["field"].as_str()), (status, Some(field)), "{what}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {answer}");
    }
    // A body cut short, and one with a broken boundary.
    let (ct, body) = curbside::api::multipart::encode(&[event(), file("photo", None, &photo)]);
    let (code, answer) = agent.tap_raw("J-1", body[..body.len() - 500].to_vec(), &[("content-type", &ct)]).await;
    assert_eq!((code, answer["field"].as_str()), (400, Some("body")), "truncated: {answer}");
    let (code, answer) = agent.tap_raw("J-1", body.clone(), &[("content-type", "multipart/form-data")]).await;
    assert_eq!((code, answer["field"].as_str()), (400, Some("Content-Type")), "no boundary: {answer}");
    // The event part is checked as a JSON tap is.
    let bad = br#"{"status": "teleported"}"#;
    let (ct, body) = curbside::api::multipart::encode(&[file("event", None, bad), file("photo", None, &photo)]);
    let (code, answer) = agent.tap_raw("J-1", body, &[("content-type", &ct)]).await;
    assert_eq!((code, answer["field"].as_str()), (422, Some("status")), "{answer}");
    assert_eq!(agent.running.outbox.len(), 0, "nothing stored");
    assert_eq!(media_files(&state(&agent)), (0, 0), "no file left behind");
    agent.stop().await;
}

#[tokio::test]
async fn required_proof_is_a_422_naming_the_part_and_the_media_budget_a_507() {
    let agent = agent::start(
        &("[pod]\nrequire_photo = [\"delivered\"]\nrequire_signature = [\"delivered\"]\nmedia_max_mb = 1\n"
            .to_string()
            + &unreachable_hook()),
    )
    .await;
    let (code, answer) = agent.tap("J-1", json!({"status": "delivered"})).await;
    assert_eq!((code, answer["field"].as_str()), (422, Some("photo")), "{answer}");
    let (small, sig) = (jpeg(1, 300_000), png(2));
    let (code, answer) = tap_with(&agent, "J-1", &json!({"status": "delivered"}), &[file("photo", None, &small)]).await;
    assert_eq!((code, answer["field"].as_str()), (422, Some("signature")), "{answer}");
    let (code, _) = agent.tap("J-2", json!({"status": "failed", "reason_code": "customer_not_present"})).await;
    assert_eq!(code, 201, "not required on failed");
    let (code, answer) = tap_with(
        &agent,
        "J-1",
        &json!({"status": "delivered"}),
        &[file("photo", None, &small), file("signature", None, &sig)],
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    let big = jpeg(9, 900_000);
    let (code, answer) = tap_with(
        &agent,
        "J-3",
        &json!({"status": "delivered"}),
        &[file("photo", None, &big), file("signature", None, &sig)],
    )
    .await;
    assert_eq!(code, 507, "over the media budget: {answer}");
    assert!(answer["error"].as_str().unwrap().contains("media_max_mb"), "{answer}");
    assert_eq!(agent.running.outbox.len(), 2, "the refused tap stored nothing");
    assert_eq!(media_files(&state(&agent)), (2, 0), "its file is gone, the others stay");
    let status = agent.get("/api/v1/status").await;
    assert_eq!(status["pod"]["media_bytes"], small.len() + sig.len());
    assert_eq!(status["pod"]["media_budget"], 1 << 20);
    assert!(status["pod"]["warning"].as_str().unwrap().contains("stay on this van"), "{status}");
    let metrics = agent.http.get(agent.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("curbside_media_bytes {}\n", small.len() + sig.len())), "{metrics}");
    assert!(metrics.contains("curbside_media_budget_bytes 1048576\n"), "{metrics}");
    agent.stop().await;
}

#[tokio::test]
async fn a_replayed_tap_stores_its_files_once_and_another_tap_may_share_them() {
    let agent = agent::start(&unreachable_hook()).await;
    let photo = jpeg(4, 80_000);
    let ev = json!({"status": "failed", "reason_code": "customer_not_present"});
    let key = [("idempotency-key", "tap-1")];
    let json = serde_json::to_vec(&ev).unwrap();
    let (ct, body) = curbside::api::multipart::encode(&[file("event", None, &json), file("photo", None, &photo)]);
    let headers = [key[0], ("content-type", ct.as_str())];
    let (c1, first) = agent.tap_raw("J-1", body.clone(), &headers).await;
    let (c2, again) = agent.tap_raw("J-1", body, &headers).await;
    assert_eq!((c1, c2), (201, 201));
    assert_eq!(first["id"], again["id"], "the same event");
    let other = jpeg(5, 80_000);
    let (ct, body) = curbside::api::multipart::encode(&[file("event", None, &json), file("photo", None, &other)]);
    let (code, answer) = agent.tap_raw("J-1", body, &[key[0], ("content-type", ct.as_str())]).await;
    assert_eq!(code, 422, "the key already holds another photo: {answer}");
    let (code, _) = tap_with(&agent, "J-2", &ev, &[file("photo", None, &photo)]).await;
    assert_eq!(code, 201);
    assert_eq!(agent.running.outbox.len(), 2);
    assert_eq!(media_files(&state(&agent)), (1, 0), "one file for the same bytes, none for the refused replay");
    agent.stop().await;
}

#[tokio::test]
async fn a_webhook_waits_for_its_files_and_no_other_job_waits_for_them() {
    let files = Receiver::start(None, vec![Reply::Status(503); 6]).await;
    let rx = Receiver::start(None, vec![]).await;
    let agent = agent::start(&(upload(files.addr) + &hook(&rx.url()))).await;
    let photo = jpeg(6, 100_000);
    let (code, with) = tap_with(&agent, "J-1", &json!({"status": "delivered"}), &[file("photo", None, &photo)]).await;
    assert_eq!(code, 201);
    let (code, _) = agent.tap("J-2", json!({"status": "arrived"})).await;
    assert_eq!(code, 201);
    let first = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(first[0].json()["data"]["job_id"], "J-2", "a job without files is not held up");
    let got = rx.wait_for(2, Duration::from_secs(20)).await;
    let hook = got.iter().find(|g| g.json()["data"]["job_id"] == "J-1").unwrap();
    let puts = files.got();
    let ok = puts.iter().filter(|p| p.method == "PUT").nth(6).expect("the seventh PUT was answered 200");
    assert!(ok.at <= hook.at, "the webhook came after its file was uploaded");
    assert_eq!(hook.json()["data"]["attachments"], with["attachments"]);
    agent.stop().await;
}

#[tokio::test]
async fn without_an_upload_target_files_stay_and_webhooks_carry_their_digest() {
    let rx = Receiver::start(None, vec![]).await;
    let agent = agent::start(&hook(&rx.url())).await;
    let sig = b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"><path d=\"M0 0L10 10\"/></svg>\n".to_vec();
    let (code, event) =
        tap_with(&agent, "J-1", &json!({"status": "delivered"}), &[file("signature", None, &sig)]).await;
    assert_eq!(code, 201, "{event}");
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let a = &got[0].json()["data"]["attachments"][0];
    assert_eq!(a["content_type"], "image/svg+xml");
    assert_eq!(a["sha256"], sha256(&sig));
    assert_eq!(a["url"], Value::Null, "no upload target: no URL");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(media_files(&state(&agent)), (1, 0), "the file stays on the van");
    let text = curbside::status::Status::text(&serde_json::from_value(agent.get("/api/v1/status").await).unwrap());
    assert!(text.contains("stay on this van"), "{text}");
    agent.stop().await;
}

#[tokio::test]
async fn files_nobody_references_are_swept_at_start() {
    let agent = agent::start("").await;
    let photo = jpeg(3, 50_000);
    let (code, _) = tap_with(&agent, "J-1", &json!({"status": "delivered"}), &[file("photo", None, &photo)]).await;
    assert_eq!(code, 201);
    let dir = agent.stop().await;
    let media = dir.path().join("state/media");
    std::fs::write(media.join("tmp/0190-partial"), b"half a photo").unwrap();
    std::fs::write(media.join("ab".repeat(32)), b"a file no event references").unwrap();
    let agent = agent::start_in(dir, "").await;
    assert_eq!(media_files(&state(&agent)), (1, 0), "the referenced file stays; the rest is swept");
    assert!(state(&agent).join("media").join(sha256(&photo)).exists());
    agent.stop().await;
}
