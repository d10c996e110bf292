//! MQTT telemetry against real brokers: rumqttd in-process (behind a link the test can cut) and
//! mosquitto as a child process, with a real subscriber. Fixes are fed to the agent directly (its
//! GPS source waits for a device that never appears), so the test knows every position made.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use curbside::gps::{Fix, Mode};
use serde_json::{Value, json};

use crate::common::agent::{TestAgent, config_text, free_addr, start_with_gps};
use crate::common::broker::{
    Link, Mosquitto, Msg, Subscriber, publish, publish_all, publish_retained, rumqttd, rumqttd_at,
};

pub(crate) const POSITION: &str = "curbside/van-17/position";
const EVENT: &str = "curbside/van-17/event";
const STATE: &str = "curbside/van-17/state";
/// A GPS that never delivers: the test feeds fixes itself.
pub(crate) const NO_GPS: &str = "source = \"serial\"\ndevice = \"/nonexistent/curbside-test-tty\"";
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Every fix becomes a point: no interval, 1 m distance, fixes 11 m apart. `extra` is more of
/// `[mqtt]`.
pub(crate) fn mqtt(broker: std::net::SocketAddr, extra: &str) -> String {
    mqtt_with(broker, "", extra)
}

/// [`mqtt`] with more of `[positions]` too.
pub(crate) fn mqtt_with(broker: std::net::SocketAddr, positions: &str, extra: &str) -> String {
    format!("{DENSE}{positions}\n[mqtt]\nurl = \"mqtt://{broker}\"\n{extra}")
}

/// `[positions]` where every fix becomes a point.
pub(crate) const DENSE: &str =
    "[positions]\ninterval_moving_min = \"0s\"\ninterval_moving_max = \"1s\"\ndistance_m = 1.0\n";

/// When fix 0 was taken: an hour before the suite started, to the second, so that no fixture
/// meets an age limit whatever the day (GPS time an hour off the system clock: the agent stamps
/// with GPS time, as it does whenever the two disagree).
pub(crate) fn t0() -> DateTime<Utc> {
    static T0: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *T0.get_or_init(|| {
        let now = Utc::now() - chrono::Duration::hours(1);
        now - chrono::Duration::nanoseconds(now.timestamp_subsec_nanos().into())
    })
}

/// Fix number `i` of a van driving north at 11 m/s, one second apart.
pub(crate) fn fix(i: i64) -> Fix {
    Fix {
        time: Some(t0() + chrono::Duration::seconds(i)),
        lat: Some(53.55 + i as f64 * 0.0001),
        lon: Some(9.99),
        alt_m: Some(12.0),
        speed_mps: Some(11.0),
        course_deg: Some(0.0),
        mode: Mode::ThreeD,
        quality: Some(1),
        sats: Some(9),
        hdop: Some(0.8),
    }
}

/// Publishes fixes one at a time, each once the agent has turned the one before into a point:
/// the live fix is a watch channel, so fixes faster than the sampler runs would be coalesced
/// (harmless with a real receiver's 1 Hz, but then the test would not know what was made).
pub(crate) async fn feed(agent: &TestAgent, range: std::ops::Range<i64>) {
    let made = |s: &Value| s["positions_made"].as_u64().unwrap_or(0);
    for i in range {
        let before = made(&mqtt_status(agent).await);
        agent.running.latest.publish(fix(i));
        let deadline = tokio::time::Instant::now() + WAIT;
        while made(&mqtt_status(agent).await) == before {
            assert!(tokio::time::Instant::now() < deadline, "fix {i} never became a point");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Seconds since t0 of every position received, in arrival order.
pub(crate) fn positions(msgs: &[Msg]) -> Vec<i64> {
    msgs.iter().filter(|m| m.topic == POSITION).map(|m| m.json()["tst"].as_i64().unwrap() - t0().timestamp()).collect()
}

pub(crate) fn distinct(v: &[i64]) -> BTreeSet<i64> {
    v.iter().copied().collect()
}

/// First arrivals only, in arrival order.
pub(crate) fn first_arrivals(v: &[i64]) -> Vec<i64> {
    let mut seen = BTreeSet::new();
    v.iter().copied().filter(|t| seen.insert(*t)).collect()
}

pub(crate) async fn mqtt_status(agent: &TestAgent) -> Value {
    agent.get("/api/v1/status").await["mqtt"].clone()
}

pub(crate) async fn wait_status(agent: &TestAgent, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = mqtt_status(agent).await;
        if pred(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; mqtt status: {s:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn tap(agent: &TestAgent, job: &str) -> String {
    let (code, body) = agent.tap(job, json!({"status": "delivered", "received_by": "J. Doe"})).await;
    assert_eq!(code, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn event_ids(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.topic == EVENT)
        .map(|m| m.json()["data"]["id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_positions_retained_state_and_mirrored_events() {
    let broker = rumqttd().await;
    let sub = Subscriber::connect(broker, "curbside/van-17/#").await;
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &mqtt(broker, "")).await;
    sub.wait_until(WAIT, "retained online", |m| m.iter().any(|m| m.topic == STATE && m.text() == "online")).await;
    let state = sub.on(STATE);
    assert!(state[0].retain || state.len() == 1, "state is published retained");

    feed(&agent, 0..5).await;
    let msgs = sub.wait_until(WAIT, "5 positions", |m| distinct(&positions(m)).len() == 5).await;
    let first = msgs.iter().find(|m| m.topic == POSITION).unwrap().json();
    assert_eq!(first["tst"], t0().timestamp());
    assert_eq!(
        (first["lat"].as_f64(), first["speed_mps"].as_f64(), &first["mode"]),
        (Some(53.55), Some(11.0), &json!("3d"))
    );

    let id = tap(&agent, "job-1").await;
    let msgs = sub.wait_until(WAIT, "the event", |m| event_ids(m).contains(&id)).await;
    let ev = msgs.iter().find(|m| m.topic == EVENT).unwrap().json();
    assert_eq!(ev["type"], "job.status.delivered");
    assert_eq!(ev["data"]["job_id"], "job-1");
    let lat = fix(4).lat.map(|l| curbside::units::round(l, 7));
    assert_eq!(ev["data"]["location"]["lat"].as_f64(), lat, "stamped with the last fix, to 7 decimals");

    // A route event is mirrored like a tap.
    let resp =
        agent.http.post(agent.url("/api/v1/route/status")).json(&json!({"status": "started"})).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let route_id = resp.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let msgs = sub.wait_until(WAIT, "the route event", |m| event_ids(m).contains(&route_id)).await;
    let ev = msgs.iter().filter(|m| m.topic == EVENT).map(|m| m.json()).find(|e| e["data"]["id"] == route_id).unwrap();
    assert_eq!((ev["type"].as_str(), ev["data"]["job_id"].as_str()), (Some("route.started"), None));

    let s = wait_status(&agent, "counters", |s| s["events_published"] == 2 && s["positions_published"] == 5).await;
    assert_eq!((s["connected"].as_bool(), s["positions_made"].as_u64()), (Some(true), Some(5)));
    assert_eq!((s["backlog"]["points"].as_u64(), s["events_pending"].as_u64()), (Some(0), Some(0)));
    assert_eq!(s["broker"], broker.to_string());

    // A clean stop says offline, retained: a subscriber arriving later still sees it.
    agent.stop().await;
    sub.wait_until(WAIT, "offline", |m| {
        m.iter().rev().find(|m| m.topic == STATE).is_some_and(|m| m.text() == "offline")
    })
    .await;
    let late = Subscriber::connect(broker, STATE).await;
    let got = late.wait_until(WAIT, "retained offline", |m| !m.is_empty()).await;
    assert_eq!((got[0].text().as_str(), got[0].retain), ("offline", true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_made_while_the_broker_is_away_arrive_afterwards_in_order() {
    let broker = rumqttd().await;
    let mut link = Link::to(broker).await;
    let sub = Subscriber::connect(broker, "curbside/van-17/#").await;
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &mqtt(link.addr, "")).await;
    wait_status(&agent, "connected", |s| s["connected"] == true).await;
    feed(&agent, 0..10).await;
    sub.wait_until(WAIT, "live positions", |m| distinct(&positions(m)).len() == 10).await;

    link.cut();
    wait_status(&agent, "disconnected", |s| s["connected"] == false).await;
    feed(&agent, 10..40).await;
    let id = tap(&agent, "job-away").await;
    let s = wait_status(&agent, "backlog", |s| s["backlog"]["points"].as_u64() >= Some(30)).await;
    assert_eq!(s["events_pending"], 1);
    assert!(s["last_error"].is_string());

    link.restore().await;
    wait_status(&agent, "reconnected", |s| s["connected"] == true).await;
    feed(&agent, 40..45).await;
    let msgs = sub
        .wait_until(WAIT, "every position and the event", |m| {
            distinct(&positions(m)).len() == 45 && event_ids(m).contains(&id)
        })
        .await;
    let got = positions(&msgs);
    assert_eq!(distinct(&got), (0..45).collect(), "every position arrived");
    let backlog: Vec<i64> = first_arrivals(&got).into_iter().filter(|t| (10..40).contains(t)).collect();
    assert!(backlog.windows(2).all(|w| w[0] < w[1]), "the backlog arrives in time order: {backlog:?}");
    let s = wait_status(&agent, "drained", |s| s["backlog"]["points"] == 0 && s["events_pending"] == 0).await;
    assert_eq!((s["positions_made"].as_u64(), s["backlog"]["dropped"].as_u64()), (Some(45), Some(0)));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ring_keeps_the_newest_points_within_its_limit_across_a_restart() {
    let broker = free_addr(); // nothing there yet
    let config = mqtt_with(broker, "backlog_max_points = 5", "");
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &config).await;
    feed(&agent, 0..12).await;
    let id = tap(&agent, "job-offline").await;
    let s = wait_status(&agent, "a full ring", |s| s["backlog"]["dropped"] == 7).await;
    assert_eq!((s["backlog"]["points"].as_u64(), s["connected"].as_bool()), (Some(5), Some(false)));
    assert_eq!(s["backlog"]["oldest_tst"].as_i64(), Some(t0().timestamp() + 7));

    // Restarted while still offline: the ring, its drop count and the event are on disk.
    let dir = agent.stop().await;
    let agent = start_with_gps(dir, NO_GPS, &config).await;
    let s = mqtt_status(&agent).await;
    assert_eq!((s["backlog"]["points"].as_u64(), s["backlog"]["dropped"].as_u64()), (Some(5), Some(7)));
    assert_eq!(s["events_pending"], 1);

    // The broker and a subscriber come up while the agent is stopped: what the agent sends on
    // reconnecting must not reach the broker before anyone listens (under qemu-user the agent's
    // probe once connected between the broker's start and the subscription).
    let dir = agent.stop().await;
    rumqttd_at(broker).await;
    let sub = Subscriber::connect(broker, "curbside/van-17/#").await;
    let agent = start_with_gps(dir, NO_GPS, &config).await;
    let msgs = sub
        .wait_until(WAIT, "the kept points and the event", |m| {
            distinct(&positions(m)).len() == 5 && event_ids(m).contains(&id)
        })
        .await;
    assert_eq!(distinct(&positions(&msgs)), (7..12).collect(), "the newest five were kept");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_leaves_its_last_will() {
    let broker = rumqttd().await;
    let sub = Subscriber::connect(broker, STATE).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("curbside.toml");
    let api = format!("listen = \"{}\"", free_addr());
    std::fs::write(&config, config_text(&dir.path().join("state"), "source = \"sim\"", &api, &mqtt(broker, "")))
        .unwrap();
    let mut child = crate::common::run_agent(&config).spawn().unwrap();
    sub.wait_until(WAIT, "online", |m| m.last().is_some_and(|m| m.text() == "online")).await;
    child.kill().unwrap(); // SIGKILL: no goodbye, only the will
    child.wait().unwrap();
    sub.wait_until(WAIT, "the last will", |m| m.last().is_some_and(|m| m.text() == "offline")).await;
    let late = Subscriber::connect(broker, STATE).await;
    let got = late.wait_until(WAIT, "retained will", |m| !m.is_empty()).await;
    assert_eq!((got[0].text().as_str(), got[0].retain), ("offline", true));
}

/// The same through mosquitto, stopped by its PID and started again while the agent runs.
/// mosquitto persists the subscriber's session across its restart (SIGTERM saves it), so the
/// subscriber misses nothing the agent publishes after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_stopped_and_restarted() {
    let mut mosq = Mosquitto::start().await;
    let sub = Subscriber::connect_persistent(mosq.addr, "curbside/van-17/#").await;
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &mqtt(mosq.addr, "")).await;
    sub.wait_until(WAIT, "retained online", |m| m.iter().any(|m| m.topic == STATE && m.text() == "online")).await;
    feed(&agent, 0..10).await;
    sub.wait_until(WAIT, "live positions", |m| distinct(&positions(m)).len() == 10).await;

    mosq.stop();
    wait_status(&agent, "disconnected", |s| s["connected"] == false).await;
    feed(&agent, 10..30).await;
    let id = tap(&agent, "job-mosq").await;
    wait_status(&agent, "backlog", |s| s["backlog"]["points"].as_u64() >= Some(20)).await;

    mosq.restart().await;
    let msgs = sub
        .wait_until(WAIT, "every position and the event", |m| {
            distinct(&positions(m)).len() == 30 && event_ids(m).contains(&id)
        })
        .await;
    let backlog: Vec<i64> = first_arrivals(&positions(&msgs)).into_iter().filter(|t| (10..30).contains(t)).collect();
    assert!(backlog.windows(2).all(|w| w[0] < w[1]), "the backlog arrives in time order: {backlog:?}");
    sub.wait_until(WAIT, "online again", |m| {
        m.iter().filter(|m| m.topic == STATE && m.text() == "online").count() >= 2
    })
    .await;
    agent.stop().await;
    sub.wait_until(WAIT, "offline", |m| {
        m.iter().rev().find(|m| m.topic == STATE).is_some_and(|m| m.text() == "offline")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_mqtt_from_the_config_drops_the_events_waiting_for_it() {
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &mqtt(free_addr(), "")).await;
    tap(&agent, "job-1").await;
    assert_eq!(agent.get("/api/v1/status").await["outbox"]["events"], 1);
    let agent = start_with_gps(agent.stop().await, NO_GPS, "").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while agent.get("/api/v1/status").await["outbox"]["events"] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the mirrored event was not dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(agent.get("/api/v1/status").await["mqtt"].is_null());
    agent.stop().await;
}

/// OwnTracks mode: positions on `owntracks/{user}/{device}` as OwnTracks location messages, the
/// way OwnTracks Recorder reads them; events and state stay under the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owntracks_mode_publishes_location_messages() {
    let broker = rumqttd().await;
    let sub = Subscriber::connect(broker, "#").await;
    let config = mqtt(broker, "mode = \"owntracks\"\nowntracks_user = \"fleet\"\nqos_position = 0");
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &config).await;
    sub.wait_until(WAIT, "online", |m| m.iter().any(|m| m.topic == STATE && m.text() == "online")).await;
    feed(&agent, 0..3).await;
    let msgs = sub
        .wait_until(WAIT, "3 locations", |m| m.iter().filter(|m| m.topic == "owntracks/fleet/van-17").count() >= 3)
        .await;
    let mut loc = msgs.iter().find(|m| m.topic == "owntracks/fleet/van-17").unwrap().json();
    let created_at = loc.as_object_mut().unwrap().remove("created_at").and_then(|v| v.as_i64());
    assert!(created_at.is_some_and(|c| c >= t0().timestamp()), "created_at: when the message was made: {created_at:?}");
    assert_eq!(
        loc,
        json!({"_type": "location", "lat": 53.55, "lon": 9.99, "tst": t0().timestamp(), "tid": "17",
               "acc": 4, "alt": 12, "vel": 40, "cog": 0}),
        "11 m/s is 40 km/h; acc is hdop × 5 m; the first point is an automatic update: no `t`"
    );
    assert!(sub.on(POSITION).is_empty());
    agent.stop().await;
}

/// A long backlog does not hold live positions back: one made while the backlog drains arrives
/// before the backlog's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_position_overtakes_a_long_backlog() {
    const BACKLOG: i64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    {
        use curbside::telemetry::{EVENT_ENDPOINT, Point, rules::Trigger};
        let filters =
            vec![curbside::outbox::EndpointFilter { name: EVENT_ENDPOINT.into(), events: None, files_only: false }];
        let outbox = curbside::outbox::Outbox::open(&dir.path().join("state"), filters).unwrap();
        for i in -BACKLOG..0 {
            let p = Point {
                id: Some(uuid::Uuid::now_v7()),
                tst: t0().timestamp() + i,
                trigger: Trigger::Distance,
                fix: fix(i),
            };
            outbox.ring().push(p.tst, &serde_json::to_vec(&p).unwrap(), Default::default(), Some(p.tst)).unwrap();
        }
        outbox.flush().await.unwrap();
    }
    let broker = rumqttd().await;
    let sub = Subscriber::connect(broker, POSITION).await;
    let agent = start_with_gps(dir, NO_GPS, &mqtt(broker, "")).await;
    wait_status(&agent, "connected", |s| s["connected"] == true).await;
    agent.running.latest.publish(fix(0));
    let msgs =
        sub.wait_until(WAIT * 3, "backlog and live", |m| distinct(&positions(m)).len() as i64 == BACKLOG + 1).await;
    let got = first_arrivals(&positions(&msgs));
    let live_at = got.iter().position(|t| *t == 0).unwrap();
    let backlog_end = got.iter().position(|t| *t == -1).unwrap();
    assert!(live_at < backlog_end, "the live point came {live_at}th, the backlog ended {backlog_end}th");
    assert!(got.iter().filter(|t| **t < 0).is_sorted(), "the backlog in time order");
    agent.stop().await;
}

/// A test CA, a server certificate for `localhost` and a client certificate, as PEM files.
fn pki(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "curbside test CA");
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for (name, sans, usage) in [
        ("server", vec!["localhost".to_string()], ExtendedKeyUsagePurpose::ServerAuth),
        ("client", vec![], ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, format!("curbside test {name}"));
        params.extended_key_usages = vec![usage];
        std::fs::write(dir.join(format!("{name}.pem")), params.signed_by(&key, &issuer).unwrap().pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// mqtts:// through rustls: the broker's certificate checked against `ca_file`, and a client
/// certificate the broker requires. Without the client certificate the broker refuses, and
/// status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_private_ca_and_a_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    pki(certs.path());
    let tls = free_addr();
    let p = |f: &str| certs.path().join(f).display().to_string();
    let mosq = Mosquitto::start_with(&format!(
        "listener {} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        tls.port(),
        p("ca.pem"),
        p("server.pem"),
        p("server.key")
    ))
    .await;
    let sub = Subscriber::connect(mosq.addr, "curbside/van-17/#").await;
    let url = format!("[mqtt]\nurl = \"mqtts://localhost:{}\"\nca_file = {:?}\n", tls.port(), p("ca.pem"));

    let without = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &url).await;
    let s = wait_status(&without, "a refusal", |s| s["last_error"].is_string()).await;
    assert_eq!(s["connected"], false, "{s}");
    without.stop().await;

    let with = format!(
        "{url}client_cert = {:?}\nclient_key = {:?}\n[positions]\ninterval_moving_min = \"0s\"\ndistance_m = 1.0\n",
        p("client.pem"),
        p("client.key")
    );
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &with).await;
    sub.wait_until(WAIT, "online over TLS", |m| m.iter().any(|m| m.topic == STATE && m.text() == "online")).await;
    feed(&agent, 0..3).await;
    sub.wait_until(WAIT, "positions over TLS", |m| distinct(&positions(m)).len() == 3).await;
    agent.stop().await;
}

#[tokio::test]
async fn an_unreadable_ca_file_fails_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &dir.path().join("state"),
        NO_GPS,
        "listen = \"127.0.0.1:0\"",
        "[mqtt]\nurl = \"mqtts://localhost:8883\"\nca_file = \"/nonexistent/ca.pem\"",
    );
    let config = curbside::config::Config::parse(&text, "t.toml").unwrap();
    let err = format!("{:#}", curbside::app::start(config).await.unwrap_err());
    assert!(err.contains("mqtt.ca_file") && err.contains("/nonexistent/ca.pem"), "{err}");
}

/// Username and password reach the broker; a wrong password is refused with the broker's reason
/// in status, and the password appears in neither status nor the agent's config debug output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_used_and_never_shown() {
    let broker = crate::common::broker::rumqttd_with_user("van17", "s3cret-pw").await;
    let wrong = mqtt(broker, "username = \"van17\"\npassword = \"wrong-pw\"");
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &wrong).await;
    let s = wait_status(&agent, "a refusal", |s| s["last_error"].is_string()).await;
    assert_eq!(s["connected"], false);
    assert!(!s.to_string().contains("wrong-pw"), "{s}");
    agent.stop().await;

    let right = mqtt(broker, "username = \"van17\"\npassword = \"s3cret-pw\"");
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &right).await;
    let status = wait_status(&agent, "connected", |s| s["connected"] == true).await;
    let all = agent.get("/api/v1/status").await.to_string();
    assert!(!all.contains("s3cret-pw") && !status.to_string().contains("s3cret-pw"));
    let config =
        curbside::config::Config::parse(&config_text(std::path::Path::new("/tmp"), NO_GPS, "", &right), "t").unwrap();
    assert!(!format!("{config:?}").contains("s3cret-pw"));
    agent.stop().await;
}

/// The stop list's version and its jobs.
async fn jobs(a: &TestAgent) -> (u64, Vec<String>) {
    let l = a.get("/api/v1/stops").await;
    let ids = l["stops"].as_array().unwrap().iter().map(|s| s["job_id"].as_str().unwrap().into()).collect();
    (l["version"].as_u64().unwrap(), ids)
}

/// The day's stops as a back office sends them: retained on `{prefix}/stops` in mosquitto, so a
/// van that connects later gets them; applied once (a list changed through the API since stays
/// when the retained message comes again on reconnect); a bad list replaces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_days_stops_come_as_a_retained_message() {
    const STOPS: &str = "curbside/van-17/stops";
    let broker = Mosquitto::start().await;
    let list = |jobs: &[&str]| {
        let stops: Vec<Value> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| json!({"job_id": j, "sequence": i + 1, "lat": 53.55, "lng": 9.99 + i as f64 * 0.01}))
            .collect();
        serde_json::to_vec(&json!({"stops": stops})).unwrap()
    };
    // Sent before the van is even on.
    publish_retained(broker.addr, STOPS, list(&["A1", "A2"])).await;
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &mqtt(broker.addr, "")).await;
    wait_status(&agent, "the list applied", |s| s["stops_applied"] == 1).await;
    assert_eq!(jobs(&agent).await, (1, vec!["A1".to_string(), "A2".to_string()]));

    // The driver's tablet replaces it through the API; a restart brings the retained message
    // again, which must not undo that.
    let resp = agent.http.put(agent.url("/api/v1/stops")).json(&json!({"stops": [{"job_id": "LOCAL", "sequence": 1}]}));
    assert_eq!(resp.send().await.unwrap().status(), 200);
    let dir = agent.stop().await;
    let agent = crate::common::agent::start_in(dir, &mqtt(broker.addr, "")).await;
    let s = wait_status(&agent, "the retained list again", |s| s["stops_received"] == 1).await;
    assert_eq!(s["stops_applied"], 0, "{s}");
    assert_eq!(jobs(&agent).await, (2, vec!["LOCAL".to_string()]), "the retained list was applied once only");

    // A bad list: counted, named, nothing replaced.
    publish_retained(
        broker.addr,
        STOPS,
        br#"{"stops": [{"job_id": "B1", "sequence": 1, "lat": 123.0, "lng": 9.9}]}"#.to_vec(),
    )
    .await;
    let s = wait_status(&agent, "the bad list refused", |s| s["stops_rejected"] == 1).await;
    assert!(s["stops_last_error"].as_str().unwrap().starts_with("stops[0].lat:"), "{s}");
    publish_retained(broker.addr, STOPS, b"not json".to_vec()).await;
    wait_status(&agent, "garbage refused", |s| s["stops_rejected"] == 2).await;
    assert_eq!(jobs(&agent).await.0, 2, "nothing replaced");

    // A new list from the office replaces it.
    publish_retained(broker.addr, STOPS, list(&["C1", "C2", "C3"])).await;
    wait_status(&agent, "the new list", |s| s["stops_applied"] == 1).await;
    assert_eq!(jobs(&agent).await, (3, vec!["C1".to_string(), "C2".to_string(), "C3".to_string()]));
    agent.stop().await;
}

/// Feeds fix after fix from `from` on, `every` apart, until `stop`; returns the next index.
pub(crate) async fn feed_until(agent: &TestAgent, from: i64, every: Duration, stop: &AtomicBool) -> i64 {
    let mut i = from;
    while !stop.load(Ordering::Relaxed) {
        feed(agent, i..i + 1).await;
        i += 1;
        tokio::time::sleep(every).await;
    }
    i
}

/// Time order (the default in OwnTracks mode) over a slow link (0.5 s each way) after a dead
/// zone holding 120 s of fixes (made as fast as the test feeds them): the subscriber sees `tst`
/// strictly increasing, every point once, though live points kept coming while the backlog
/// crossed the link (OwnTracks Recorder keeps arrival order: a live point ahead of the backlog
/// made its track jump back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_time_order_a_slow_link_after_a_dead_zone_shows_tst_strictly_increasing() {
    const OT: &str = "owntracks/fleet/van-17";
    let broker = rumqttd().await;
    let mut link = Link::slow(broker, Duration::from_millis(500)).await;
    let sub = Subscriber::connect(broker, OT).await;
    let config = mqtt(link.addr, "mode = \"owntracks\"\nowntracks_user = \"fleet\"");
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &config).await;
    wait_status(&agent, "connected", |s| s["connected"] == true).await;
    feed(&agent, 0..10).await;
    // Nothing in flight when the link goes (a point in flight then may come twice: at least once).
    wait_status(&agent, "acknowledged", |s| s["positions_published"] == 10).await;
    link.cut();
    wait_status(&agent, "disconnected", |s| s["connected"] == false).await;
    feed(&agent, 10..130).await;
    link.restore().await;
    let stop = AtomicBool::new(false);
    // Live points every 0.3 s for 4 s after the reconnect, while the backlog crosses the link
    // (a window of 64 per 1 s round trip). Points that come faster than the round trip wait
    // their turn in the backlog, in order.
    let (end, backlog_then) = tokio::join!(feed_until(&agent, 130, Duration::from_millis(300), &stop), async {
        let s = wait_status(&agent, "reconnected", |s| s["connected"] == true).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop.store(true, Ordering::Relaxed);
        s["backlog"]["points"].as_u64().unwrap_or(0)
    });
    assert!(backlog_then >= 120, "the dead zone's points waited: {backlog_then}");
    assert!(end > 135, "live points were made while the backlog drained: {}", end - 130);
    // The link's cut also made the broker publish the van's `lwt` on the same topic.
    let locations =
        |m: &[Msg]| -> Vec<Value> { m.iter().map(Msg::json).filter(|v| v["_type"] == "location").collect() };
    let msgs = sub.wait_until(WAIT * 2, "every point", |m| locations(m).len() as i64 >= end).await;
    let tst: Vec<i64> = locations(&msgs).iter().map(|v| v["tst"].as_i64().unwrap() - t0().timestamp()).collect();
    assert_eq!(tst, (0..end).collect::<Vec<_>>(), "every point once, in time order");
    assert_eq!(msgs.iter().filter(|m| m.json()["_type"] == "lwt").count(), 1, "the lwt of the cut");
    agent.stop().await;
}

/// OwnTracks commands: `reportLocation` on `owntracks/USER/DEVICE/cmd` is answered at once
/// with the current position and `t: "r"`; a malformed command or one curbside does not carry
/// out is counted and said why, and nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owntracks_report_location_is_answered_and_bad_commands_are_counted() {
    const OT: &str = "owntracks/fleet/van-17";
    let broker = rumqttd().await;
    let sub = Subscriber::connect(broker, OT).await;
    let config = mqtt(broker, "mode = \"owntracks\"\nowntracks_user = \"fleet\"");
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &config).await;
    wait_status(&agent, "connected", |s| s["connected"] == true).await;
    // Before any fix: nothing to report, and it says so.
    publish(broker, &format!("{OT}/cmd"), br#"{"_type":"cmd","action":"reportLocation"}"#.to_vec(), false).await;
    let s = wait_status(&agent, "refused", |s| s["commands_rejected"] == 1).await;
    assert!(s["last_command_error"].as_str().unwrap().contains("no position"), "{s}");
    feed(&agent, 0..3).await;
    sub.wait_until(WAIT, "3 locations", |m| m.len() >= 3).await;

    publish(broker, &format!("{OT}/cmd"), br#"{"_type":"cmd","action":"reportLocation"}"#.to_vec(), false).await;
    let msgs = sub.wait_until(WAIT, "the answer", |m| m.len() >= 4).await;
    let answer = msgs[3].json();
    assert_eq!((answer["_type"].as_str(), answer["t"].as_str()), (Some("location"), Some("r")), "{answer}");
    assert_eq!(answer["tst"].as_i64(), Some(t0().timestamp() + 2), "the latest fix: {answer}");

    let bad = [&b"{not json"[..], br#"{"_type":"cmd","action":"dump"}"#, br#"{"_type":"cmd"}"#, b"\xff"];
    publish_all(broker, &format!("{OT}/cmd"), bad.iter().map(|b| b.to_vec()).collect(), false).await;
    let s = wait_status(&agent, "counted", |s| s["commands_received"] == 6 && s["commands_rejected"] == 5).await;
    assert!(s["connected"] == true && s["last_error"].is_null(), "the connection is untouched: {s}");
    assert_eq!(s["positions_made"], 4);
    agent.stop().await;
}

/// In OwnTracks mode the last will is OwnTracks' `lwt` on the device topic, with the time the
/// connection was made: a SIGKILLed van shows up in the Recorder as gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_in_owntracks_mode_leaves_an_lwt() {
    const OT: &str = "owntracks/fleet/van-17";
    let broker = rumqttd().await;
    let sub = Subscriber::connect(broker, OT).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("curbside.toml");
    let api = format!("listen = \"{}\"", free_addr());
    let mqtt = mqtt(broker, "mode = \"owntracks\"\nowntracks_user = \"fleet\"");
    std::fs::write(&config, config_text(&dir.path().join("state"), "source = \"sim\"", &api, &mqtt)).unwrap();
    let before = Utc::now().timestamp();
    let mut child = crate::common::run_agent(&config).spawn().unwrap();
    sub.wait_until(WAIT, "a location", |m| m.iter().any(|m| m.json()["_type"] == "location")).await;
    child.kill().unwrap(); // SIGKILL: no goodbye, only the will
    child.wait().unwrap();
    let msgs = sub.wait_until(WAIT, "the lwt", |m| m.iter().any(|m| m.json()["_type"] == "lwt")).await;
    let lwt = msgs.iter().find(|m| m.json()["_type"] == "lwt").unwrap();
    let v = lwt.json();
    assert_eq!(v.as_object().unwrap().len(), 2, "_type and tst: {v}");
    let tst = v["tst"].as_i64().unwrap_or_else(|| panic!("tst is an integer: {v}"));
    assert!((before - 5..=Utc::now().timestamp()).contains(&tst), "the connection's time: {tst}");
    assert!(!lwt.retain);
}

/// A fix at `(lat, lon)` now, at `speed` m/s.
fn fix_at(lat: f64, lon: f64, speed: f64, secs: i64) -> Fix {
    Fix { lat: Some(lat), lon: Some(lon), speed_mps: Some(speed), ..fix(secs) }
}

/// The stops as OwnTracks regions: the list as `_type: "waypoints"`, `inregions`/`inrids` on a
/// point at a stop, a `transition` enter and leave when the geofence decides arrival and
/// departure, and `setWaypoints` replacing the van's stops (then published as waypoints too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owntracks_regions_are_the_stops_both_ways() {
    const OT: &str = "owntracks/fleet/van-17";
    let broker = rumqttd().await;
    let sub = Subscriber::connect(broker, "owntracks/#").await;
    let config = format!(
        "{}\n[stops]\ndwell = \"1s\"\nhysteresis_m = 10\n",
        mqtt(broker, "mode = \"owntracks\"\nowntracks_user = \"fleet\"")
    );
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &config).await;
    wait_status(&agent, "connected", |s| s["connected"] == true).await;
    let stops = json!({"stops": [{"job_id": "J-1", "sequence": 1, "name": "Bakery", "lat": 53.56, "lng": 9.99, "radius_m": 50}]});
    let resp = agent.http.put(agent.url("/api/v1/stops")).json(&stops).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Published with the next message handled (a point here).
    feed(&agent, 0..1).await;
    let on =
        |topic: &'static str| move |m: &[Msg]| m.iter().filter(|m| m.topic == topic).map(Msg::json).collect::<Vec<_>>();
    let waypoints = on("owntracks/fleet/van-17/waypoints");
    let msgs = sub.wait_until(WAIT, "waypoints", |m| !waypoints(m).is_empty()).await;
    let w = &waypoints(&msgs)[0];
    let tst = w["waypoints"][0]["tst"].as_i64().unwrap();
    assert!(tst > 1_700_000_000, "when the list was stored: {w}");
    assert_eq!(
        *w,
        json!({"_type": "waypoints", "waypoints": [{"_type": "waypoint", "desc": "Bakery", "lat": 53.56, "lon": 9.99,
               "rad": 50, "tst": tst, "rid": "J-1"}]})
    );

    // The van stops at the bakery: a point there says so, and the geofence's arrival is an enter.
    for i in 1..12 {
        agent.running.latest.publish(fix_at(53.56, 9.99, 0.0, i));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let transitions = on("owntracks/fleet/van-17/event");
    let msgs = sub.wait_until(WAIT, "enter", |m| !transitions(m).is_empty()).await;
    let enter = &transitions(&msgs)[0];
    let at = enter["tst"].as_i64().unwrap();
    assert_eq!(
        *enter,
        json!({"_type": "transition", "event": "enter", "desc": "Bakery", "rid": "J-1", "wtst": tst,
               "lat": 53.56, "lon": 9.99, "tst": at, "tid": "17", "t": "c", "acc": 4})
    );
    let inside: Vec<Value> = on(OT)(&msgs).into_iter().filter(|v| v.get("inrids").is_some()).collect();
    assert!(!inside.is_empty(), "a point at the stop");
    assert_eq!((&inside[0]["inregions"], &inside[0]["inrids"]), (&json!(["Bakery"]), &json!(["J-1"])));

    // And drives off: a leave.
    for i in 12..24 {
        agent.running.latest.publish(fix_at(53.57, 9.99, 11.0, i));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let msgs = sub.wait_until(WAIT, "leave", |m| transitions(m).len() >= 2).await;
    assert_eq!(transitions(&msgs)[1]["event"], "leave");
    assert!(on(OT)(&msgs).last().unwrap().get("inrids").is_none(), "away from every stop");

    // The back office sets the regions: they become the van's stops, and go out as waypoints.
    let cmd = json!({"_type": "cmd", "action": "setWaypoints", "waypoints": {"_type": "waypoints", "waypoints": [
        {"_type": "waypoint", "desc": "Depot", "lat": 53.5, "lon": 10.0, "rad": 120, "tst": 1, "rid": "D-1"},
        {"_type": "waypoint", "desc": "Florist", "lat": 53.51, "lon": 10.01, "tst": 1, "rid": "F-7"}]}});
    publish(broker, &format!("{OT}/cmd"), cmd.to_string().into_bytes(), false).await;
    wait_status(&agent, "applied", |s| s["stops_applied"] == 1).await;
    let list = agent.get("/api/v1/stops").await;
    let jobs: Vec<&str> = list["stops"].as_array().unwrap().iter().map(|s| s["job_id"].as_str().unwrap()).collect();
    assert_eq!(jobs, ["D-1", "F-7"]);
    assert_eq!(list["stops"][0]["radius_m"], 120.0);
    feed(&agent, 24..25).await;
    let msgs = sub.wait_until(WAIT, "the new waypoints", |m| waypoints(m).len() >= 2).await;
    assert_eq!(waypoints(&msgs)[1]["waypoints"][1]["rid"], "F-7");
    // A bad list replaces nothing and says which field.
    let bad = json!({"_type": "cmd", "action": "setWaypoints", "waypoints": [{"desc": "x", "lat": 91, "lon": 0, "rid": "X"}]});
    publish(broker, &format!("{OT}/cmd"), bad.to_string().into_bytes(), false).await;
    let s = wait_status(&agent, "refused", |s| s["stops_rejected"] == 1).await;
    assert!(s["stops_last_error"].as_str().unwrap().starts_with("stops[0].lat"), "{s}");
    assert_eq!(agent.get("/api/v1/stops").await["stops"].as_array().unwrap().len(), 2);
    agent.stop().await;
}

/// `mode = "compact"` (opt-in): each position a versioned array on the same topic, in order;
/// events and state as in curbside mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_positions_are_versioned_arrays_on_the_same_topic() {
    let broker = rumqttd().await;
    let sub = Subscriber::connect(broker, "curbside/van-17/#").await;
    let agent = start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &mqtt(broker, "mode = \"compact\"")).await;
    feed(&agent, 0..3).await;
    let msgs =
        sub.wait_until(WAIT, "3 compact positions", |m| m.iter().filter(|m| m.topic == POSITION).count() >= 3).await;
    let points: Vec<Value> = msgs.iter().filter(|m| m.topic == POSITION).map(|m| m.json()).collect();
    for (i, p) in points.iter().take(3).enumerate() {
        let f = fix(i as i64);
        assert_eq!(p[0], 2, "version 2: {p}");
        assert_eq!(p[1].as_i64(), Some(t0().timestamp() + i as i64), "in time order: {p}");
        assert_eq!(p[2].as_f64(), f.lat.map(|l| curbside::units::round(l, 7)));
        assert_eq!((p[3].as_f64(), p[4].as_f64()), (Some(9.99), Some(11.0)));
        assert!(msgs.iter().find(|m| m.topic == POSITION).unwrap().payload.len() < 60, "compact: {p}");
    }
    let id = tap(&agent, "job-1").await;
    let msgs = sub.wait_until(WAIT, "the event", |m| event_ids(m).contains(&id)).await;
    assert_eq!(msgs.iter().find(|m| m.topic == EVENT).unwrap().json()["type"], "job.status.delivered");
    agent.stop().await;
}

/// `batch` (compact mode): the points of a period in one message, an array of compact
/// positions in time order, removed from the backlog once the broker has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_the_periods_compact_positions_in_one_message() {
    let broker = rumqttd().await;
    let sub = Subscriber::connect(broker, "curbside/van-17/#").await;
    let agent =
        start_with_gps(tempfile::tempdir().unwrap(), NO_GPS, &mqtt(broker, "mode = \"compact\"\nbatch = \"2s\"")).await;
    sub.wait_until(WAIT, "online", |m| m.iter().any(|m| m.topic == STATE && m.text() == "online")).await;
    feed(&agent, 0..5).await;
    let msgs = sub
        .wait_until(WAIT, "the batch", |m| {
            m.iter().filter(|m| m.topic == POSITION).map(|m| m.json().as_array().map_or(0, Vec::len)).sum::<usize>()
                >= 5
        })
        .await;
    let batches: Vec<Value> = msgs.iter().filter(|m| m.topic == POSITION).map(|m| m.json()).collect();
    assert!(batches.len() < 5, "fewer messages than points: {batches:?}");
    let tsts: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.as_array().unwrap().iter().map(|p| p[1].as_i64().unwrap() - t0().timestamp()))
        .collect();
    assert_eq!(tsts, [0, 1, 2, 3, 4], "every point once, in time order");
    assert!(batches.iter().all(|b| b[0][0] == 2), "each a compact position: {batches:?}");
    let s = wait_status(&agent, "all published", |s| s["positions_published"] == 5).await;
    assert_eq!(s["backlog"]["points"], 0, "{s}");
    agent.stop().await;
}
