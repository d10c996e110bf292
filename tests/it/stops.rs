//! The day's stops on the van: replaced whole (with `If-Match` against lost updates), kept in
//! the store across restarts, each stop with the state its job's events give it.

use serde_json::{Value, json};

use crate::common::agent;

fn list() -> Value {
    json!({"stops": [
        {"job_id": "J-2", "sequence": 2, "name": "Bob", "address": "2 Side St", "lat": 53.56, "lng": 10.0,
         "window": {"from": "2026-11-23T10:00:00Z", "to": "2026-11-23T12:00:00Z"}, "requires": {"signature": true}},
        {"job_id": "J-1", "sequence": 1, "name": "Ada", "address": "1 Main St", "lat": 53.55, "lng": 9.99, "radius_m": 40,
         "items": [{"sku": "BOX", "desc": "A box", "qty": 2}]},
        {"job_id": "J-3", "sequence": 3, "name": "Depot", "address": "no coordinates"}
    ]})
}

async fn put(a: &agent::TestAgent, body: &Value, if_match: Option<&str>) -> (u16, Value, Option<String>) {
    let mut req = a.http.put(a.url("/api/v1/stops")).json(body);
    if let Some(m) = if_match {
        req = req.header("if-match", m);
    }
    let resp = req.send().await.unwrap();
    let etag = resp.headers().get("etag").map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null), etag)
}

#[tokio::test]
async fn a_list_is_replaced_whole_kept_across_restarts_and_shows_each_stops_state() {
    let a = agent::start("").await;
    let empty = a.get("/api/v1/stops").await;
    assert_eq!(empty, json!({"version": 0, "stops": []}));
    let (code, answer, etag) = put(&a, &list(), Some("\"0\"")).await;
    assert_eq!((code, answer["version"].as_u64(), etag.as_deref()), (200, Some(1), Some("\"1\"")), "{answer}");
    // A stale version, a bad list: 4xx naming the field, nothing replaced.
    let (code, answer, _) = put(&a, &json!({"stops": []}), Some("\"0\"")).await;
    assert_eq!((code, answer["field"].as_str()), (412, Some("If-Match")), "{answer}");
    let mut bad = list();
    bad["stops"][1]["lat"] = json!(123.0);
    let (code, answer, _) = put(&a, &bad, None).await;
    assert_eq!((code, answer["field"].as_str()), (422, Some("stops[1].lat")), "{answer}");
    let (code, answer, _) = put(&a, &json!({"stops": "none"}), Some("x")).await;
    assert_eq!((code, answer["field"].as_str()), (400, Some("If-Match")), "{answer}");
    let resp = a.http.put(a.url("/api/v1/stops")).body("{\"stops\": [").send().await.unwrap();
    assert_eq!(resp.status(), 400);

    a.tap("J-1", json!({"status": "heading_to"})).await;
    a.tap("J-1", json!({"status": "arrived"})).await;
    a.tap("J-2", json!({"status": "failed", "reason_code": "customer_not_present"})).await;
    let got = a.get("/api/v1/stops").await;
    assert_eq!(got["version"], 1);
    let s = got["stops"].as_array().unwrap();
    let states: Vec<_> =
        s.iter().map(|s| (s["job_id"].as_str().unwrap(), s["state"].as_str().unwrap(), s["status"].clone())).collect();
    assert_eq!(
        states,
        [("J-1", "arrived", json!("arrived")), ("J-2", "done", json!("failed")), ("J-3", "pending", Value::Null)],
        "in sequence order, each with its state"
    );
    assert_eq!(s[0]["radius_m"], 40.0);
    assert_eq!(s[1]["requires"], json!({"photo": false, "signature": true}));
    assert_eq!(s[2]["lat"], Value::Null);

    let dir = a.stop().await;
    let a = agent::start_in(dir, "").await;
    let again = a.get("/api/v1/stops").await;
    assert_eq!((again["version"].as_u64(), again["stops"].as_array().unwrap().len()), (Some(1), 3), "kept on the van");
    let (code, answer, _) = put(&a, &json!({"stops": []}), None).await;
    assert_eq!((code, answer["version"].as_u64()), (200, Some(2)), "without If-Match: replaced");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_loads_and_lists_stops() {
    let a = agent::start("").await;
    let dir = a.dir.path().to_path_buf();
    let config = dir.join("cli.toml");
    std::fs::write(&config, format!("vehicle_id = \"van-17\"\n[api]\nlisten = \"{}\"\n", a.addr())).unwrap();
    std::fs::write(dir.join("day.json"), serde_json::to_vec(&list()).unwrap()).unwrap();
    let run = |args: &[&str]| {
        let mut c = crate::common::curbside();
        c.args(args).arg("--config").arg(&config).current_dir(&dir);
        tokio::task::block_in_place(|| c.output().unwrap())
    };
    let out = run(&["stops", "load", "day.json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("loaded 3 stops from day.json: version 1"));
    let out = run(&["stops", "load", "day.json", "--if-version", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("412"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["stops", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("version 1") && text.contains("J-1") && text.contains("no coordinates"), "{text}");
    std::fs::write(dir.join("bad.json"), "not json").unwrap();
    let out = run(&["stops", "load", "bad.json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.json: not JSON"));
    a.stop().await;
}

/// A day with its route (`{"route": {id, date, depot}, "stops": [...]}`) is stored and shown
/// with the list; a bad route is a 4xx naming its field; the plain list keeps working.
#[tokio::test]
async fn a_day_with_its_route_is_kept_and_a_bad_route_names_its_field() {
    let a = agent::start("").await;
    let mut day = list();
    day["route"] = json!({"id": "R-17", "date": "2026-11-23", "depot": {"lat": 53.54, "lng": 9.98, "radius_m": 150}});
    let (code, v, _) = put(&a, &day, None).await;
    assert_eq!(code, 200, "{v}");
    let got = a.get("/api/v1/stops").await;
    assert_eq!(
        got["route"],
        json!({"id": "R-17", "date": "2026-11-23", "depot": {"lat": 53.54, "lng": 9.98, "radius_m": 150.0}})
    );
    assert_eq!(got["stops"].as_array().unwrap().len(), 3);
    for (route, field) in [
        (json!({"date": "2026-11-23"}), "route.id"),
        (json!({"id": "R 1", "date": "2026-11-23"}), "route.id"),
        (json!({"id": "R-1", "date": "23/11/2026"}), "route.date"),
        (json!({"id": "R-1", "date": "2026-11-23", "depot": {"lat": 53.5}}), "route.depot.lng"),
        (json!({"id": "R-1", "date": "2026-11-23", "colour": "red"}), "route.colour"),
    ] {
        let mut bad = list();
        bad["route"] = route;
        let (code, v, _) = put(&a, &bad, None).await;
        assert_eq!((code, v["field"].as_str()), (422, Some(field)), "{v}");
    }
    let (code, _, _) = put(&a, &list(), None).await;
    assert_eq!(code, 200, "the plain list");
    assert_eq!(a.get("/api/v1/stops").await["route"], Value::Null);
}
