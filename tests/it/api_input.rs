//! Every bad input a driver's device or an integrator can send: a clear 4xx with a JSON error
//! naming the field, and nothing stored. Also idempotent retries and the bearer token.

use serde_json::{Value, json};

use crate::common::agent::start;

async fn stored(agent: &crate::common::agent::TestAgent) -> u64 {
    agent.get("/api/v1/status").await["outbox"]["events"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_taps_get_a_4xx_naming_the_field_and_store_nothing() {
    // An endpoint that never answers keeps stored events visible.
    let agent = start("[[webhook]]\nname = \"h\"\nurl = \"http://127.0.0.1:9/hook\"\n").await;
    let json_ct = [("content-type", "application/json")];
    let big = format!("{{\"status\":\"delivered\",\"note\":\"{}\"}}", "x".repeat(70 * 1024));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("J", b"{not json".to_vec(), 400, "body"),
        ("J", vec![0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d], 400, "body"),
        ("J", br#"{"status":"teleported"}"#.to_vec(), 422, "status"),
        ("J", br#"{"note":"no status"}"#.to_vec(), 422, "status"),
        ("J", br#"{"status":"failed"}"#.to_vec(), 422, "reason_code"),
        ("J", br#"{"status":"failed","reason_code":"aliens"}"#.to_vec(), 422, "reason_code"),
        ("J", format!(r#"{{"status":"delivered","note":"{}"}}"#, "n".repeat(2001)).into_bytes(), 422, "note"),
        (
            "J",
            format!(r#"{{"status":"delivered","received_by":"{}"}}"#, "r".repeat(201)).into_bytes(),
            422,
            "received_by",
        ),
        ("J", br#"{"status":"delivered","items":[{"sku":"A","qty":"two"}]}"#.to_vec(), 422, "items[0].qty"),
        ("J", br#"{"status":"delivered","extra":1}"#.to_vec(), 422, "extra"),
        ("J", br#"[]"#.to_vec(), 422, "body"),
        ("bad%20id", br#"{"status":"delivered"}"#.to_vec(), 422, "job_id"),
        ("a..b*", br#"{"status":"delivered"}"#.to_vec(), 422, "job_id"),
        ("J", big.into_bytes(), 413, "body"),
        // A tap that says two things.
        ("J", br#"{"status":"arrived","reason_code":"refused"}"#.to_vec(), 422, "reason_code"),
        ("J", br#"{"status":"delivered","reason":"dog"}"#.to_vec(), 422, "reason"),
        ("J", br#"{"status":"partially_delivered"}"#.to_vec(), 422, "items"),
        ("J", br#"{"status":"delivered","items":[{"sku":"A","qty":2,"rejected":2}]}"#.to_vec(), 422, "items"),
        ("J", br#"{"status":"delivered","status":"failed","reason_code":"refused"}"#.to_vec(), 400, "status"),
        // Path segments are not jobs.
        ("...", br#"{"status":"delivered"}"#.to_vec(), 422, "job_id"),
    ];
    let long_job = "j".repeat(65);
    let mut all = cases;
    all.push((long_job.as_str(), br#"{"status":"delivered"}"#.to_vec(), 422, "job_id"));
    for (job, body, want, field) in all {
        let (code, err) = agent.tap_raw(job, body.clone(), &json_ct).await;
        assert_eq!(code, want, "{job} {}: {err}", String::from_utf8_lossy(&body[..body.len().min(80)]));
        assert_eq!(err["field"], field, "{err}");
        assert!(err["error"].as_str().unwrap().starts_with(field), "{err}");
    }
    let (code, err) = agent.tap_raw("J", br#"{"status":"delivered"}"#.to_vec(), &[("idempotency-key", "")]).await;
    assert_eq!((code, err["field"].as_str()), (400, Some("Idempotency-Key")));
    assert_eq!(stored(&agent).await, 0, "nothing stored");
    // Every error is the documented JSON: a wrong method and a wrong path too.
    for (method, path, want) in [
        (reqwest::Method::GET, "/api/v1/jobs/J/status", 405),
        (reqwest::Method::DELETE, "/api/v1/status", 405),
        (reqwest::Method::GET, "/api/v1/nope", 404),
        (reqwest::Method::POST, "/api/v1/jobs/./status", 404),
    ] {
        let resp = agent.http.request(method.clone(), agent.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{method} {path}");
        let v: Value = resp.json().await.unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}"));
        assert!(v["error"].is_string() && v.get("field").is_some(), "{method} {path}: {v}");
    }
    agent.stop().await;
}

/// A body announced larger than the limit is refused at once, not read; one that never comes is
/// given up on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_huge_body_is_refused_without_waiting_for_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let agent = start("").await;
    let mut conn = tokio::net::TcpStream::connect(agent.addr()).await.unwrap();
    conn.write_all(b"POST /api/v1/jobs/J/status HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n{").await.unwrap();
    let mut answer = Vec::new();
    // Within the time the test allows: the agent answers before any of the body arrives.
    tokio::time::timeout(std::time::Duration::from_secs(5), conn.read_to_end(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains(r#""field":"body""#), "{text}");
    assert_eq!(stored(&agent).await, 0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_tap_with_the_same_idempotency_key_returns_the_first_event() {
    let agent = start("[[webhook]]\nname = \"h\"\nurl = \"http://127.0.0.1:9/hook\"\n").await;
    let body = serde_json::to_vec(&json!({"status": "delivered", "received_by": "Ann"})).unwrap();
    let h = [("idempotency-key", "tap-7f3a"), ("content-type", "application/json")];
    let (c1, first) = agent.tap_raw("J-9", body.clone(), &h).await;
    let (c2, second) = agent.tap_raw("J-9", body.clone(), &h).await;
    assert_eq!((c1, c2), (201, 201));
    assert_eq!(first, second);
    // The same key on another job is another tap.
    let (_, other) = agent.tap_raw("J-10", body, &h).await;
    assert_ne!(other["id"], first["id"]);
    assert_eq!(stored(&agent).await, 2);

    // Many concurrent retries of one tap store it once.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, url) = (agent.http.clone(), agent.url("/api/v1/jobs/J-11/status"));
        set.spawn(async move {
            let r = http
                .post(url)
                .header("idempotency-key", "race")
                .json(&json!({"status": "arrived"}))
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()["id"].clone()
        });
    }
    let ids: std::collections::HashSet<String> = set.join_all().await.into_iter().map(|v| v.to_string()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(stored(&agent).await, 3);

    // The same key with another body is another tap under a used key: refused, naming the key.
    let other = serde_json::to_vec(&json!({"status": "delivered", "received_by": "Bob"})).unwrap();
    let (code, err) = agent.tap_raw("J-9", other, &h).await;
    assert_eq!((code, err["field"].as_str()), (422, Some("Idempotency-Key")), "{err}");
    assert!(err["error"].as_str().unwrap().contains("another tap"), "{err}");
    assert_eq!(stored(&agent).await, 3);
    agent.stop().await;
}

/// Within a job, `occurred_at` follows `sequence`: under many concurrent taps no event has a
/// later sequence and an earlier time than another of its job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occurred_at_never_goes_backwards_in_sequence_order() {
    // 500 taps in flight at once: more connections than the default cap, which is raised here.
    let agent = crate::common::agent::start_with_api(
        "listen = \"127.0.0.1:0\"\nmax_connections = 600",
        "[[webhook]]\nname = \"h\"\nurl = \"http://127.0.0.1:9/hook\"\n",
    )
    .await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..500 {
        let (http, url) = (agent.http.clone(), agent.url(&format!("/api/v1/jobs/J{}/status", i % 20)));
        set.spawn(async move {
            let r = http.post(url).json(&json!({"status": "arrived"})).send().await.unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()
        });
    }
    let mut events = set.join_all().await;
    events.sort_by_key(|e| e["sequence"].as_u64().unwrap());
    let mut last: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> = Default::default();
    for e in &events {
        let at: chrono::DateTime<chrono::Utc> = e["occurred_at"].as_str().unwrap().parse().unwrap();
        let job = e["job_id"].as_str().unwrap().to_string();
        if let Some(before) = last.get(&job) {
            assert!(at >= *before, "{job}: seq {} at {at} after {before}", e["sequence"]);
        }
        last.insert(job, at);
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_request_needs_it() {
    let agent =
        crate::common::agent::start_with_api("listen = \"127.0.0.1:0\"\ntoken = \"0123456789abcdef-token\"", "").await;
    let url = agent.url("/api/v1/status");
    let none = agent.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
    let wrong = agent.http.get(&url).bearer_auth("0123456789abcdef-tokeX").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    // The scheme is case-insensitive (RFC 9110).
    for scheme in ["bearer", "BEARER", "Bearer "] {
        let r = agent.http.get(&url).header("authorization", format!("{scheme} 0123456789abcdef-token")).send();
        assert_eq!(r.await.unwrap().status(), 200, "{scheme:?}");
    }
    let body: Value = wrong.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("token"));
    let ok = agent.http.get(&url).bearer_auth("0123456789abcdef-token").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let tap =
        agent.http.post(agent.url("/api/v1/jobs/J/status")).json(&json!({"status": "arrived"})).send().await.unwrap();
    assert_eq!(tap.status(), 401);
    agent.stop().await;
}

#[test]
fn a_non_loopback_listen_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "vehicle_id = \"v\"\nstate_dir = \"s\"\n[api]\nlisten = \"0.0.0.0:18089\"\n").unwrap();
    let out =
        crate::common::curbside().args(["run", "--config"]).arg(&config).current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("api.token") && err.contains("loopback"), "{err}");
    assert!(!dir.path().join("s").exists(), "nothing started, nothing stored");
}

/// A real full disk (a small tmpfs; mounting needs root or a user namespace: `tools/test`): the tap gets 507 with a
/// JSON reason, never a 201, and the agent stops so that systemd restarts it on a fresh handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_stops_the_agent() {
    let uid = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    assert!(
        uid.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
        "mounting a tmpfs needs root, or a user namespace: run the suite with tools/test, which provides one"
    );
    let mnt = tempfile::tempdir().unwrap();
    assert!(
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
            .arg(mnt.path())
            .status()
            .unwrap()
            .success()
    );
    let result = async {
        let mut agent = crate::common::agent::start_with_state(
            mnt.path(),
            "[[webhook]]\nname = \"h\"\nurl = \"http://127.0.0.1:9/hook\"\n",
        )
        .await;
        let (code, _) = agent.tap("J", json!({"status": "arrived"})).await;
        assert_eq!(code, 201);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(mnt.path().join("filler")).unwrap();
            let chunk = vec![0u8; 64 * 1024];
            while f.write_all(&chunk).is_ok() {}
        }
        let mut refused = None;
        for i in 0..500 {
            let (code, body) =
                agent.tap(&format!("J{i}"), json!({"status": "arrived", "note": "n".repeat(1500)})).await;
            if code != 201 {
                refused = Some((code, body));
                break;
            }
        }
        let (code, body) = refused.expect("a tap was refused once the disk filled");
        assert_eq!(code, 507, "{body}");
        assert!(body["error"].as_str().unwrap().contains("disk full"), "{body}");
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), agent.running.finished()).await;
        assert!(matches!(stopped, Ok(Err(_))), "the agent stops with an error: {stopped:?}");
    }
    .await;
    let _ = std::process::Command::new("umount").arg(mnt.path()).status();
    result
}

/// Any body, over real HTTP: either a `201` whose event reads back as the type and says what the
/// body said, with exactly one event stored; or a `4xx` with `{"error", "field"}` and nothing
/// stored. Never a 5xx. Bodies are random bytes, random JSON, and taps built from the real field
/// names with values right and wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_body_is_stored_and_round_trips_or_refused_naming_a_field() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let agent = start("[[webhook]]\nname = \"h\"\nurl = \"http://127.0.0.1:9/hook\"\n").await;
    let word = prop_oneof![
        Just(json!("delivered")),
        Just(json!("partially_delivered")),
        Just(json!("failed")),
        Just(json!("arrived")),
        Just(json!("refused")),
        Just(json!("damaged")),
        Just(json!(null)),
        Just(json!(3)),
        Just(json!(-1)),
        Just(json!("")),
        "[a-z_ ]{0,12}".prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
    ];
    let item = (
        prop::option::of(word.clone()),
        prop::option::of(0u64..4),
        prop::option::of(0u64..4),
        prop::option::of(word.clone()),
    )
        .prop_map(|(sku, qty, rejected, extra)| {
            let mut o = serde_json::Map::new();
            if let Some(s) = sku {
                o.insert("sku".into(), if s.is_string() && s != "" { s } else { json!("A-1") });
            }
            if let Some(q) = qty {
                o.insert("qty".into(), json!(q));
            }
            if let Some(r) = rejected {
                o.insert("rejected".into(), json!(r));
            }
            if let Some(x) = extra.filter(|x| x.is_number()) {
                o.insert("colour".into(), x);
            }
            Value::Object(o)
        });
    let keys = ["status", "reason_code", "reason", "received_by", "note", "items", "extra"];
    let tap = prop::collection::vec((0..keys.len(), word.clone(), prop::collection::vec(item, 0..3)), 0..6).prop_map(
        move |fields| {
            let mut o = serde_json::Map::new();
            for (k, v, items) in fields {
                let v = if keys[k] == "items" { Value::Array(items) } else { v };
                o.insert(keys[k].to_string(), v);
            }
            serde_json::to_vec(&Value::Object(o)).unwrap()
        },
    );
    let statuses =
        prop::sample::select(vec!["heading_to", "arrived", "delivered", "partially_delivered", "failed", "picked_up"]);
    let reasons = prop::sample::select(vec!["refused", "damaged", "other"]);
    let good = (statuses, prop::option::of("[A-Za-z .'-]{0,30}"), prop::option::of(reasons), any::<bool>()).prop_map(
        |(status, received_by, reason_code, with_note)| {
            let mut o = json!({"status": status});
            if status == "failed" || (status == "partially_delivered" && reason_code.is_some()) {
                o["reason_code"] = json!(reason_code.unwrap_or("other"));
            }
            if status == "partially_delivered" {
                o["items"] = json!([{"sku": "A", "qty": 2, "rejected": 1}]);
            }
            if let Some(r) = received_by {
                o["received_by"] = json!(r);
            }
            if with_note {
                o["note"] = json!("left at the back door\nthanks");
            }
            serde_json::to_vec(&o).unwrap()
        },
    );
    let bodies = prop_oneof![
        2 => good,
        3 => tap,
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => "[\\[\\]{}\":,a-z0-9 ]{0,40}".prop_map(String::into_bytes),
    ];
    let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
    let handle = tokio::runtime::Handle::current();
    let seen = std::sync::Mutex::new((0u32, 0u32));
    let result = runner.run(&bodies, |body| {
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let before = stored(&agent).await;
                let (code, answer) = agent.tap_raw("P-1", body.clone(), &[("content-type", "application/json")]).await;
                let after = stored(&agent).await;
                let text = String::from_utf8_lossy(&body);
                if code == 201 {
                    let event: curbside::event::StatusEvent = serde_json::from_value(answer.clone())
                        .map_err(|e| TestCaseError::fail(format!("{text}: 201 not an event: {e}")))?;
                    prop_assert_eq!(serde_json::to_value(&event).unwrap(), answer.clone(), "{}", text);
                    let sent: Value = serde_json::from_slice(&body).unwrap();
                    prop_assert_eq!(json!(event.status.as_str()), sent["status"].clone(), "{}", text);
                    prop_assert_eq!(after, before + 1, "{}", text);
                    seen.lock().unwrap().0 += 1;
                } else {
                    prop_assert!((400..500).contains(&code), "{}: {} {}", text, code, answer);
                    prop_assert!(answer["error"].is_string(), "{}: {}", text, answer);
                    prop_assert!(answer["field"].is_string(), "{}: {}", text, answer);
                    prop_assert_eq!(after, before, "{}: nothing stored", text);
                    seen.lock().unwrap().1 += 1;
                }
                Ok(())
            })
        })
    });
    let (accepted, refused) = *seen.lock().unwrap();
    result.unwrap_or_else(|e| panic!("{e}"));
    // Both outcomes were exercised (the strategy is not all-bad or all-good).
    assert!(accepted >= 5 && refused >= 50, "{accepted} accepted, {refused} refused");
    agent.stop().await;
}

/// An answer given before the request's body was read says `connection: close`: the server
/// cannot reuse that connection, and a client told "keep-alive" would send its next request on
/// a connection being closed (a flake seen under qemu: the next tap failed with an incomplete
/// message). Answers to requests read in full keep the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_is_read_closes_the_connection_and_says_so() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn head(conn: &mut tokio::net::TcpStream) -> String {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(30), conn.read(&mut byte)).await.unwrap().unwrap();
            assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&got));
            got.push(byte[0]);
        }
        String::from_utf8_lossy(&got).to_ascii_lowercase()
    }
    let agent = start("").await;
    let body = br#"{"status":"delivered"}"#;

    // A bad job id is answered before the body; here the body has not even been sent.
    let mut conn = tokio::net::TcpStream::connect(agent.addr()).await.unwrap();
    let path = format!("/api/v1/jobs/{}/status", "j".repeat(65));
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let answer = head(&mut conn).await;
    assert!(answer.starts_with("http/1.1 422"), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");

    // A tap read in full, JSON or multipart, is answered keep-alive, and the connection serves
    // the next one.
    let mut conn = tokio::net::TcpStream::connect(agent.addr()).await.unwrap();
    let multipart = [
        &b"--XyZ\r\ncontent-disposition: form-data; name=\"event\"\r\ncontent-type: application/json\r\n\r\n"[..],
        body,
        b"\r\n--XyZ--\r\n",
    ]
    .concat();
    for (key, content_type, body) in
        [("k1", "application/json", &body[..]), ("k2", "multipart/form-data; boundary=XyZ", &multipart[..])]
    {
        let request = format!(
            "POST /api/v1/jobs/J/status HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\nidempotency-key: {key}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        conn.write_all(body).await.unwrap();
        let answer = head(&mut conn).await;
        assert!(answer.starts_with("http/1.1 201"), "{answer}");
        assert!(!answer.contains("connection: close"), "{answer}");
        let len: usize = answer
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{answer}"));
        let mut rest = vec![0u8; len];
        conn.read_exact(&mut rest).await.unwrap();
    }
    agent.stop().await;
}
