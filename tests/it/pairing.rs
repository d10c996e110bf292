//! Pairing the driver's phone: with a token set (as beyond loopback), the page loads but the API
//! answers 401 until the phone pairs with a one-time code from `curbside pair`; the session
//! cookie is HttpOnly and SameSite=Strict, opens only the driver's routes, only from the page's
//! origin, and survives a restart; wrong, reused and guessed codes change nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::agent::{TestAgent, free_addr, start_full};
use crate::common::curbside;

const TOKEN: &str = "a-long-random-operator-token";

fn api(listen: std::net::SocketAddr) -> String {
    format!("listen = \"{listen}\"\ntoken = \"{TOKEN}\"")
}

async fn pair(a: &TestAgent, code: &str) -> reqwest::Response {
    a.http.post(a.url("/api/v1/pair")).json(&json!({ "code": code })).send().await.unwrap()
}

/// A request as the page makes it: the session cookie, from its own origin.
fn from_page(a: &TestAgent, req: reqwest::RequestBuilder, cookie: &str) -> reqwest::RequestBuilder {
    req.header("cookie", format!("curbside_session={cookie}"))
        .header("origin", format!("http://{}", a.addr()))
        .header("sec-fetch-site", "same-origin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_pairs_with_a_one_time_code() {
    let listen = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let a = start_full(dir, &api(listen), "").await;

    // The page itself loads; nothing behind it does.
    let page = a.http.get(a.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(">Delivered</button>"));
    assert_eq!(a.http.get(a.url("/api/v1/status")).send().await.unwrap().status(), 401);
    assert_eq!(a.http.post(a.url("/api/v1/pair/codes")).send().await.unwrap().status(), 401, "codes need the token");

    // `curbside pair`, as the operator runs it on the van.
    let conf = a.dir.path().join("curbside.toml");
    std::fs::write(&conf, format!("vehicle_id = \"van-17\"\n[api]\n{}\n", api(listen))).unwrap();
    let out = curbside().args(["pair", "--config"]).arg(&conf).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let code = printed.lines().next().unwrap().strip_prefix("pairing code: ").unwrap().to_string();
    assert!(printed.contains(&format!("open http://{listen}/")), "{printed}");

    // A wrong code: 403 naming the field, no cookie.
    let wrong = pair(&a, "ZZZZ-ZZZZ").await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert_eq!(wrong.json::<Value>().await.unwrap()["field"], "code");

    // The right one, typed as a phone would: a session cookie, HttpOnly and SameSite=Strict.
    let ok = pair(&a, &code.to_lowercase()).await;
    assert_eq!(ok.status(), 200);
    let set = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let session = set.split(';').next().unwrap().strip_prefix("curbside_session=").unwrap().to_string();
    assert_eq!(pair(&a, &code).await.status(), StatusCode::FORBIDDEN, "a code works once");

    // The driver's routes from the page: yes.
    let st = from_page(&a, a.http.get(a.url("/api/v1/status")), &session).send().await.unwrap();
    assert_eq!(st.status(), 200);
    let tap = from_page(&a, a.http.post(a.url("/api/v1/jobs/J1/status")), &session)
        .json(&json!({"status": "arrived"}))
        .send()
        .await
        .unwrap();
    assert_eq!(tap.status(), 201);
    // From another origin, or without saying where from: no.
    let cross = a
        .http
        .post(a.url("/api/v1/jobs/J1/status"))
        .header("cookie", format!("curbside_session={session}"))
        .header("origin", "http://evil.example")
        .json(&json!({"status": "delivered"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 401);
    let blind = a
        .http
        .post(a.url("/api/v1/jobs/J1/status"))
        .header("cookie", format!("curbside_session={session}"))
        .json(&json!({"status": "delivered"}))
        .send()
        .await
        .unwrap();
    assert_eq!(blind.status(), 401, "a cookie without an Origin is not the page");
    // The operator's routes: not with a cookie.
    for (method, path) in
        [("POST", "/api/v1/events/retry-failed"), ("PUT", "/api/v1/stops"), ("POST", "/api/v1/pair/codes")]
    {
        let req = a.http.request(method.parse().unwrap(), a.url(path)).json(&json!({"stops": []}));
        assert_eq!(from_page(&a, req, &session).send().await.unwrap().status(), 401, "{method} {path}");
    }
    let forged = from_page(&a, a.http.get(a.url("/api/v1/status")), &"0".repeat(64)).send().await.unwrap();
    assert_eq!(forged.status(), 401);

    // Guessing: after five wrong codes in a minute (two above), even a right one waits.
    let code = a
        .http
        .post(a.url("/api/v1/pair/codes"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        assert_eq!(pair(&a, "QQQQ-QQQQ").await.status(), StatusCode::FORBIDDEN);
    }
    let limited = pair(&a, &code).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("retry-after").is_some());
    assert_eq!(limited.json::<Value>().await.unwrap()["field"], "code");

    // The phone stays paired across a restart of the agent.
    let dir = a.stop().await;
    let a = start_full(dir, &api(listen), "").await;
    let st = from_page(&a, a.http.get(a.url("/api/v1/status")), &session).send().await.unwrap();
    assert_eq!(st.status(), 200);
    a.stop().await;
}
