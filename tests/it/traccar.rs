//! Traccar against a loopback server that reads each request as Traccar's
//! `OsmAndProtocolDecoder` does: the query string's parameters, or, when there are none, the
//! body as a form; and the JSON body recent servers take from the Traccar Client
//! (`{"device_id", "location": {"timestamp", "coords": {...}}}`). A device it does not know is
//! a `400`, as Traccar answers. Positions arrive in time order, each tap is one more position
//! with its attributes, and a `400` shows in status with what to do, keeping the points.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::common::agent::{TestAgent, start_with_gps};
use crate::common::transport;
use crate::mqtt::{DENSE, NO_GPS, WAIT, fix, t0};

/// One position as Traccar stores it.
#[derive(Debug, Clone, PartialEq)]
struct Position {
    device: String,
    time: DateTime<Utc>,
    lat: f64,
    lon: f64,
    /// Knots, as Traccar keeps speed.
    speed: Option<f64>,
    course: Option<f64>,
    attributes: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Server {
    known: Arc<Mutex<Vec<String>>>,
    positions: Arc<Mutex<Vec<Position>>>,
    refused: Arc<Mutex<u32>>,
}

fn pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let decode =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (decode(k), decode(v))
        })
        .collect()
}

/// The decoder's `timestamp`: unix seconds (below `Integer.MAX_VALUE`) or milliseconds, an ISO
/// time, or `yyyy-MM-dd HH:mm:ss`.
fn time(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(n) = v.parse::<i64>() {
        return if n < i64::from(i32::MAX) {
            DateTime::from_timestamp(n, 0)
        } else {
            DateTime::from_timestamp_millis(n)
        };
    }
    if v.contains('T') {
        return DateTime::parse_from_rfc3339(v).ok().map(|t| t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc())
}

impl Server {
    async fn start(known: &[&str]) -> (Server, std::net::SocketAddr) {
        let s = Server::default();
        s.known.lock().unwrap().extend(known.iter().map(|k| k.to_string()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(s.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (s, addr)
    }

    fn positions(&self) -> Vec<Position> {
        self.positions.lock().unwrap().clone()
    }

    /// The decoder: a position from the parameters, or `None` (a 400) without a known device.
    fn decode(&self, params: &[(String, String)]) -> Option<Position> {
        let mut p = Position {
            device: String::new(),
            time: Utc::now(),
            lat: 0.0,
            lon: 0.0,
            speed: None,
            course: None,
            attributes: BTreeMap::new(),
        };
        for (k, v) in params {
            match k.as_str() {
                "id" | "deviceid" => {
                    if !self.known.lock().unwrap().contains(v) {
                        return None;
                    }
                    p.device = v.clone();
                }
                "timestamp" => p.time = time(v)?,
                "lat" => p.lat = v.parse().ok()?,
                "lon" => p.lon = v.parse().ok()?,
                "location" => {
                    let (a, b) = v.split_once(',')?;
                    (p.lat, p.lon) = (a.parse().ok()?, b.parse().ok()?);
                }
                "speed" => p.speed = Some(v.parse().ok()?),
                "bearing" | "heading" => p.course = Some(v.parse().ok()?),
                _ => {
                    p.attributes.insert(k.clone(), v.clone());
                }
            }
        }
        (!p.device.is_empty()).then_some(p)
    }

    /// A recent server's JSON body, as the Traccar Client sends it (speed in m/s there).
    fn decode_json(&self, v: &Value) -> Option<Position> {
        let device = v["device_id"].as_str()?;
        let c = &v["location"]["coords"];
        let mut params = vec![
            ("id".to_string(), device.to_string()),
            ("timestamp".to_string(), v["location"]["timestamp"].as_str()?.to_string()),
            ("lat".to_string(), c["latitude"].as_f64()?.to_string()),
            ("lon".to_string(), c["longitude"].as_f64()?.to_string()),
        ];
        if let Some(s) = c["speed"].as_f64() {
            params.push(("speed".into(), (s * 3600.0 / 1852.0).to_string()));
        }
        if let Some(h) = c["heading"].as_f64() {
            params.push(("heading".into(), h.to_string()));
        }
        self.decode(&params)
    }
}

async fn handle(State(s): State<Server>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let json =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/json"));
    let position = if json {
        serde_json::from_slice(&body).ok().and_then(|v| s.decode_json(&v))
    } else {
        let mut params = pairs(uri.query().unwrap_or(""));
        if params.is_empty() {
            // US-ASCII, as the decoder reads a body.
            params = pairs(&String::from_utf8_lossy(&body));
        }
        s.decode(&params)
    };
    match position {
        Some(p) => {
            s.positions.lock().unwrap().push(p);
            StatusCode::OK
        }
        None => {
            *s.refused.lock().unwrap() += 1;
            StatusCode::BAD_REQUEST
        }
    }
}

async fn wait_status(agent: &TestAgent, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    transport::wait(agent, "traccar", what, pred).await
}

async fn feed(agent: &TestAgent, range: std::ops::Range<i64>) {
    transport::feed(agent, "traccar", range).await
}

async fn wait_positions(server: &Server, n: usize) -> Vec<Position> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = server.positions();
        if got.len() >= n {
            return got;
        }
        assert!(tokio::time::Instant::now() < deadline, "the server has {} of {n} positions", got.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_and_taps_reach_traccar_as_its_decoder_reads_them() {
    let (server, addr) = Server::start(&["van-17"]).await;
    let extra = format!("{DENSE}[traccar]\nurl = \"http://{addr}\"\ntimeout = \"5s\"\n");
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &extra).await;
    feed(&agent, 0..5).await;
    wait_positions(&server, 5).await;
    let (code, tap) = agent.tap("J-1", json!({"status": "failed", "reason_code": "refused"})).await;
    assert_eq!(code, 201, "{tap}");
    feed(&agent, 5..8).await;
    let got = wait_positions(&server, 9).await;
    // The fixes, in time order, each where and when it was, speed in knots.
    let fixes: Vec<&Position> = got.iter().filter(|p| !p.attributes.contains_key("event")).collect();
    assert_eq!(fixes.len(), 8);
    for (i, p) in fixes.iter().enumerate() {
        let f = fix(i as i64);
        assert_eq!(p.device, "van-17");
        assert_eq!(p.time, t0() + chrono::Duration::seconds(i as i64), "fix {i} in time order");
        assert!((p.lat - f.lat.unwrap()).abs() < 1e-7 && (p.lon - f.lon.unwrap()).abs() < 1e-7, "fix {i}: {p:?}");
        assert!((p.speed.unwrap() - 11.0 * 3600.0 / 1852.0).abs() < 0.06, "knots: {p:?}");
        assert_eq!(p.course, Some(0.0));
        assert!(p.attributes.contains_key("hdop") && p.attributes.contains_key("accuracy"), "{p:?}");
    }
    // The tap: one more position, with its attributes.
    let e = got.iter().find(|p| p.attributes.contains_key("event")).unwrap();
    assert_eq!(e.attributes["event"], "job.status.failed");
    assert_eq!((e.attributes["job"].as_str(), e.attributes["status"].as_str()), ("J-1", "failed"));
    assert_eq!(e.attributes["reason"], "refused");
    assert_eq!(e.attributes["eventId"], tap["id"].as_str().unwrap());
    assert_eq!(
        e.time.timestamp(),
        DateTime::parse_from_rfc3339(tap["occurred_at"].as_str().unwrap()).unwrap().timestamp()
    );
    let s = wait_status(&agent, "all delivered", |s| s["positions_published"] == 8 && s["events_published"] == 1).await;
    assert_eq!((s["connected"].as_bool(), s["events_pending"].as_u64()), (Some(true), Some(0)));
    assert_eq!(s["url"], format!("http://{addr}/"));
    let metrics = agent.http.get(agent.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("curbside_traccar_events_delivered_total 1"), "{metrics}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_device_is_shown_with_what_to_do_and_its_points_wait() {
    let (server, addr) = Server::start(&[]).await;
    let extra = format!("{DENSE}[traccar]\nurl = \"http://{addr}\"\ndevice_id = \"van-17-gw\"\n");
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &extra).await;
    feed(&agent, 0..3).await;
    let s = wait_status(&agent, "the 400 in status", |s| {
        s["last_error"].as_str().is_some_and(|e| e.contains("does not know device \"van-17-gw\""))
    })
    .await;
    assert_eq!(s["connected"], false);
    assert!(s["last_error"].as_str().unwrap().contains("device_id"), "says what to do: {s}");
    assert!(server.positions().is_empty());
    assert!(*server.refused.lock().unwrap() >= 1);
    // The operator adds the device in Traccar: the points that waited arrive, in order.
    server.known.lock().unwrap().push("van-17-gw".into());
    let got = wait_positions(&server, 3).await;
    let times: Vec<i64> = got.iter().map(|p| (p.time - t0()).num_seconds()).collect();
    assert_eq!(times, [0, 1, 2]);
    wait_status(&agent, "delivering", |s| s["connected"] == true && s["backlog"]["points"] == 0).await;
    agent.stop().await;
}

/// The receiver reads what Traccar's decoder reads, whichever way a client sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_server_reads_a_query_a_form_and_a_json_body_like_traccar() {
    curbside::tls::install_crypto();
    let (server, addr) = Server::start(&["d1"]).await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/");
    let r = http.post(format!("{url}?id=d1&timestamp=1700000000&lat=53.5&lon=9.9&speed=10")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r =
        http.post(&url).body("deviceid=d1&timestamp=2023-11-14%2022:13:21&location=53.6,10.0").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = json!({"device_id": "d1", "location": {"timestamp": "2023-11-14T22:13:22Z",
        "coords": {"latitude": 53.7, "longitude": 10.1, "speed": 5.0, "heading": 90.0}}});
    let r = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.post(format!("{url}?id=nobody&lat=1&lon=2")).send().await.unwrap();
    assert_eq!(r.status(), 400, "an unknown device");
    let got = server.positions();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].time.timestamp(), 1_700_000_000);
    assert_eq!((got[1].lat, got[1].lon), (53.6, 10.0));
    assert_eq!(got[1].time.timestamp(), 1_700_000_001);
    assert!((got[2].speed.unwrap() - 9.72).abs() < 0.01 && got[2].course == Some(90.0));
}
