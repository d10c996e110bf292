//! The driver page in a real browser: Debian's Chromium driven over WebDriver (chromedriver) at
//! a phone's 360×640, against the agent on the simulated route (ten times real time), a webhook
//! receiver behind a link the test can cut, and the page reached through a "van Wi-Fi" proxy
//! that can swallow the agent's answers.
//!
//! The driver: picks a stop, taps Heading to; the van arrives (the geofence); Delivered with a
//! name, a photo file and a signature drawn with pointer actions; the receiver gets the event
//! and both files. With the receiver down a tap shows "Saved on the van", then "Sent to the
//! office" once it is back. A tap whose answer is lost and a reload in the middle: one event.
//!
//! `CURBSIDE_SCREENSHOTS=DIR` saves the README's screenshots there.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::agent::{self, free_addr};
use crate::common::broker::Link;
use crate::common::pod::jpeg;
use crate::common::receiver::Receiver;

const WAIT: Duration = Duration::from_secs(60);
/// The simulated route's first legs (`gps::source::sim::Route::demo`).
const S2: (f64, f64) = (53.55311, 10.00069);
const S3: (f64, f64) = (53.55686, 10.00412);

/// chromedriver on a free port, killed with the test.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> (Driver, Client) {
        Driver::start_in("en-US").await
    }

    /// A browser whose language (`Accept-Language`, `navigator.languages`) is `lang`.
    async fn start_in(lang: &str) -> (Driver, Client) {
        let port = free_addr().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run chromedriver ({e}): install chromium and chromium-driver; tools/test does")
            });
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", format!("--user-data-dir={}", profile.path().display()),
                         format!("--lang={lang}")],
                "prefs": {"intl.accept_languages": lang},
                // A phone's viewport (headless windows are at least 500 wide).
                "mobileEmulation": {"deviceMetrics": {"width": 360, "height": 640, "pixelRatio": 2.0, "touch": false}},
            }
        });
        let Value::Object(caps) = caps else { unreachable!() };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector).capabilities(caps).connect(&url).await.expect("a Chromium session");
        (Driver { child, url, _profile: profile }, client)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.url;
        // A test that failed before closing its session leaves the browser running: its
        // processes are the ones with this test's profile directory.
        let profile = format!("--user-data-dir={}", self._profile.path().display());
        let _ = Command::new("pkill").args(["-f", "--"]).arg(profile).status();
    }
}

/// The van's Wi-Fi between the phone and the agent: forwards everything, except that while
/// `swallow` is set the agent's answers never reach the phone (the request still arrives).
struct Wifi {
    addr: SocketAddr,
    swallow: Arc<AtomicBool>,
}

impl Wifi {
    async fn start(agent: SocketAddr) -> Wifi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let swallow = Arc::new(AtomicBool::new(false));
        let s = swallow.clone();
        tokio::spawn(async move {
            loop {
                let Ok((phone, _)) = listener.accept().await else { return };
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(van) = TcpStream::connect(agent).await else { return };
                    let (mut pr, mut pw) = phone.into_split();
                    let (mut vr, mut vw) = van.into_split();
                    let up = async move {
                        let _ = tokio::io::copy(&mut pr, &mut vw).await;
                        let _ = vw.shutdown().await;
                    };
                    let down = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match vr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if s.load(Ordering::SeqCst) {
                                continue;
                            }
                            if pw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = pw.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Wifi { addr, swallow }
    }
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn wait_text(c: &Client, css: &str, needle: &str, limit: Duration) -> String {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let t = text(c, css).await;
        if t.contains(needle) {
            return t;
        }
        assert!(tokio::time::Instant::now() < deadline, "{css} never showed {needle:?}; it shows {t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A button by its visible label, as the driver sees it.
async fn button(c: &Client, label: &str) -> fantoccini::elements::Element {
    let xpath = format!("//button[normalize-space()='{label}' and not(ancestor-or-self::*[@hidden])]");
    c.wait().at_most(WAIT).for_element(Locator::XPath(&xpath)).await.unwrap_or_else(|e| panic!("{label}: {e}"))
}

/// Presses the button labelled `label`, scrolled to the middle of the screen first, as a driver
/// scrolls to it (WebDriver scrolls it to the top edge, under the page's sticky header).
async fn press(c: &Client, label: &str) {
    click(c, button(c, label).await).await;
}

/// Clicks `e`, scrolled to the middle of the screen first (see [`press`]).
async fn click(c: &Client, e: fantoccini::elements::Element) {
    let arg = serde_json::to_value(&e).unwrap();
    c.execute("arguments[0].scrollIntoView({block: 'center'})", vec![arg]).await.unwrap();
    e.click().await.unwrap();
}

async fn screenshot(c: &Client, name: &str) {
    if let Ok(dir) = std::env::var("CURBSIDE_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
    }
}

fn events(rx: &Receiver, job: &str, status: &str) -> Vec<Value> {
    rx.got()
        .iter()
        .filter(|g| g.method == "POST")
        .map(|g| g.json()["data"].clone())
        .filter(|d| d["job_id"] == job && d["status"] == status)
        .collect()
}

/// The last route event of `kind` (`route.started`, ...) the receiver got.
async fn wait_route(rx: &Receiver, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = rx.got().iter().filter(|g| g.method == "POST").map(|g| g.json()).filter(|b| b["type"] == kind).last();
        if let Some(b) = got {
            return b["data"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "the receiver never got {kind}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_event(rx: &Receiver, job: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(e) = events(rx, job, status).pop() {
            return e;
        }
        assert!(tokio::time::Instant::now() < deadline, "the receiver never got {status} for {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_round_on_the_page_in_chromium() {
    let rx = Receiver::start(None, vec![]).await;
    let mut office = Link::to(rx.addr).await;
    let extra = format!(
        "[stops]\ndwell = \"2s\"\n[pod]\nupload_url = \"http://{}/files/{{sha256}}.{{ext}}\"\n\
         [[webhook]]\nname = \"office\"\nurl = \"http://{}/hook\"\n",
        rx.addr, office.addr
    );
    let a = agent::start_with_gps(tempfile::tempdir().unwrap(), "source = \"sim\"\nspeed = 10.0", &extra).await;
    let stops = json!({"stops": [
        {"job_id": "S2", "sequence": 1, "name": "Elbe Coffee Roasters", "address": "Steinstraße 7",
         "lat": S2.0, "lng": S2.1, "items": [{"sku": "PKG-1", "desc": "Coffee sacks", "qty": 2}]},
        {"job_id": "S3", "sequence": 2, "name": "Kunsthalle shop", "address": "Glockengießerwall 5",
         "lat": S3.0, "lng": S3.1},
    ]});
    let resp = a.http.put(a.url("/api/v1/stops")).json(&stops).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let wifi = Wifi::start(a.addr()).await;
    let (_driver, c) = Driver::start().await;
    let page = format!("http://{}/", wifi.addr);
    c.goto(&page).await.unwrap();
    let (w, h): (u64, u64) =
        serde_json::from_value(c.execute("return [window.innerWidth, window.innerHeight]", vec![]).await.unwrap())
            .unwrap();
    assert_eq!((w, h), (360, 640), "a phone's viewport");
    wait_text(&c, "#stops", "Kunsthalle shop", WAIT).await;
    wait_text(&c, "#next", "Elbe Coffee Roasters", WAIT).await;
    wait_text(&c, "#gps", "GPS ok", WAIT).await;

    // Heading to the first stop, then the van gets there.
    click(&c, c.find(Locator::Css("[data-job=S2]")).await.unwrap()).await;
    press(&c, "Heading to").await;
    wait_text(&c, "#result", "Saved on the van", WAIT).await;
    let heading = wait_event(&rx, "S2", "heading_to").await;
    assert_eq!(heading["source"], "driver");
    let arrived = wait_event(&rx, "S2", "arrived").await;
    assert_eq!(arrived["source"], "geofence", "{arrived}");
    wait_text(&c, "#stops", "at the stop", WAIT).await;
    screenshot(&c, "stops.png").await;

    // Delivered: a name, a photo, a signature drawn with the pointer.
    press(&c, "Delivered").await;
    c.find(Locator::Css("#received-by")).await.unwrap().send_keys("Ana Schmidt").await.unwrap();
    let photo_dir = tempfile::tempdir().unwrap();
    let photo = jpeg(7, 40_000);
    let photo_path = photo_dir.path().join("door.jpg");
    std::fs::write(&photo_path, &photo).unwrap();
    c.find(Locator::Css("#pod-photos")).await.unwrap().send_keys(photo_path.to_str().unwrap()).await.unwrap();
    let pad = c.find(Locator::Css("#signature")).await.unwrap();
    let mut pen = MouseActions::new("pen".into())
        .then(PointerAction::MoveToElement { element: pad.clone(), duration: None, x: -120.0, y: 10.0 })
        .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT });
    for (x, y) in [(30.0, -25.0), (30.0, 30.0), (30.0, -30.0), (30.0, 25.0), (30.0, -20.0), (30.0, 15.0)] {
        pen = pen.then(PointerAction::MoveBy { duration: Some(Duration::from_millis(40)), x, y });
    }
    pen = pen.then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
    c.perform_actions(pen).await.unwrap();
    c.execute("document.querySelector('#pod').scrollIntoView()", vec![]).await.unwrap();
    screenshot(&c, "delivered.png").await;
    click(&c, c.find(Locator::Css("#pod-save")).await.unwrap()).await;
    wait_text(&c, "#result", "Saved on the van", WAIT).await;
    wait_text(&c, "#result", "Sent to the office", WAIT).await;
    let delivered = wait_event(&rx, "S2", "delivered").await;
    assert_eq!(delivered["received_by"], "Ana Schmidt");
    let files = delivered["attachments"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{delivered}");
    assert_eq!((files[0]["kind"].as_str(), files[1]["kind"].as_str()), (Some("photo"), Some("signature")));
    assert_eq!(files[0]["sha256"], hex(&photo));
    for f in files {
        let sha = f["sha256"].as_str().unwrap();
        let put = rx.got().into_iter().find(|g| g.method == "PUT" && g.path.contains(sha)).expect("the file uploaded");
        assert_eq!(hex(&put.body), sha);
        if f["kind"] == "signature" {
            assert!(put.body.starts_with(b"\x89PNG\r\n\x1a\n"), "the signature is a PNG");
        }
    }

    // The office is down: saved on the van; sent once it is back.
    office.cut();
    click(&c, c.find(Locator::Css("[data-job=S3]")).await.unwrap()).await;
    press(&c, "Failed").await;
    click(&c, c.find(Locator::Css("input[value=refused]")).await.unwrap()).await;
    click(&c, c.find(Locator::Css("#fail-save")).await.unwrap()).await;
    wait_text(&c, "#result", "Saved on the van", WAIT).await;
    wait_text(&c, "#link", "Office offline", WAIT).await;
    assert!(text(&c, "#result").await.contains("Saved on the van"), "not sent while the office is down");
    assert!(events(&rx, "S3", "failed").is_empty());
    office.restore().await;
    wait_text(&c, "#result", "Sent to the office", WAIT).await;
    let failed = wait_event(&rx, "S3", "failed").await;
    assert_eq!(failed["reason_code"], "refused");

    // The answer to a tap is lost on the Wi-Fi, and the driver reloads the page: the page sends
    // the tap again under its key, and the agent answers with the event it has. One event.
    wifi.swallow.store(true, Ordering::SeqCst);
    press(&c, "Picked up").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.get("/api/v1/stops").await["stops"][1]["status"] != "picked_up" {
        assert!(tokio::time::Instant::now() < deadline, "the tap never reached the agent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!text(&c, "#result").await.contains("Saved"), "no answer reached the page");
    wifi.swallow.store(false, Ordering::SeqCst);
    c.refresh().await.unwrap();
    wait_text(&c, "#result", "Saved on the van", WAIT).await;
    wait_text(&c, "#result", "Sent to the office", WAIT).await;
    let left: u64 = serde_json::from_value(
        c.execute_async(
            "const done = arguments[0]; const r = indexedDB.open('curbside', 1);
             r.onsuccess = () => { const q = r.result.transaction('taps').objectStore('taps').count();
                                   q.onsuccess = () => done(q.result); };",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(left, 0, "no tap left waiting in the browser");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events(&rx, "S3", "picked_up").len(), 1, "one event for one tap");
    let stops = a.get("/api/v1/stops").await;
    assert_eq!(stops["stops"][1]["state"], "done");
    c.close().await.unwrap();
    a.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Beyond loopback (a token set), the page asks for a pairing code; a wrong one is refused on
/// the page, the right one opens it, and the cookie it got works for the page's own requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_pairs_in_chromium() {
    const TOKEN: &str = "a-long-random-operator-token";
    let api = format!("listen = \"{}\"\ntoken = \"{TOKEN}\"", free_addr());
    let a = agent::start_full(tempfile::tempdir().unwrap(), &api, "").await;
    let stops = json!({"stops": [{"job_id": "P1", "sequence": 1, "name": "Paired stop"}]});
    let put = a.http.put(a.url("/api/v1/stops")).bearer_auth(TOKEN).json(&stops).send().await.unwrap();
    assert_eq!(put.status(), 200);
    let (_driver, c) = Driver::start().await;
    c.goto(&a.url("/")).await.unwrap();
    c.wait().at_most(WAIT).for_element(Locator::Css("#pair:not([hidden])")).await.unwrap();
    assert!(c.find(Locator::Css("#main")).await.unwrap().attr("hidden").await.unwrap().is_some());

    c.find(Locator::Css("#pair-code")).await.unwrap().send_keys("ZZZZ-ZZZZ").await.unwrap();
    press(&c, "Pair").await;
    wait_text(&c, "#pair-error", "wrong, expired or used", WAIT).await;

    let code: Value =
        a.http.post(a.url("/api/v1/pair/codes")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    let input = c.find(Locator::Css("#pair-code")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(code["code"].as_str().unwrap()).await.unwrap();
    press(&c, "Pair").await;
    wait_text(&c, "#stops", "Paired stop", WAIT).await;
    let cookie: Value = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(cookie, "", "the session cookie is HttpOnly: no script sees it");
    click(&c, c.find(Locator::Css("[data-job=P1]")).await.unwrap()).await;
    press(&c, "Arrived").await;
    wait_text(&c, "#result", "Saved on the van", WAIT).await;
    c.close().await.unwrap();
    a.stop().await;
}

/// The day in German at 360x640: the page speaks the browser's language, and the first tap of
/// a fresh store (sequence 0) is shown "Sent to the office" in it (it once polled forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_speaks_german_and_the_first_tap_of_a_fresh_store_is_sent() {
    let rx = Receiver::start(None, vec![]).await;
    let extra = format!("[[webhook]]\nname = \"office\"\nurl = \"http://{}/hook\"\n", rx.addr);
    let a = agent::start_with_gps(tempfile::tempdir().unwrap(), "source = \"sim\"", &extra).await;
    let stops =
        json!({"stops": [{"job_id": "S2", "sequence": 1, "name": "Elbe Coffee Roasters", "lat": S2.0, "lng": S2.1}]});
    let resp = a.http.put(a.url("/api/v1/stops")).json(&stops).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (_driver, c) = Driver::start_in("de").await;
    c.goto(&a.url("/")).await.unwrap();
    wait_text(&c, "#stops", "Elbe Coffee Roasters", WAIT).await;
    assert_eq!(text(&c, "h2[data-i18n='stops.title']").await, "Stopps");
    let lang: String =
        serde_json::from_value(c.execute("return document.documentElement.lang", vec![]).await.unwrap()).unwrap();
    assert_eq!(lang, "de");
    // The next stop, with how far it is and a way to navigate there.
    wait_text(&c, "#next", "Elbe Coffee Roasters", WAIT).await;
    let geo = c.find(Locator::Css("#next a[href^='geo:']")).await.unwrap();
    assert_eq!(geo.text().await.unwrap(), "Navigation");
    let href = geo.attr("href").await.unwrap().unwrap();
    assert!(href.starts_with(&format!("geo:{},{}", S2.0, S2.1)), "{href}");
    assert!(c.find(Locator::Css("#next a[href*='waze.com']")).await.is_ok());
    assert!(text(&c, "#next").await.contains(" m") || text(&c, "#next").await.contains(" km"), "how far");
    // The day, in German: the first tap of a fresh store starts the route, and is seen sent.
    assert_eq!(text(&c, "h2[data-i18n='day.title']").await, "Heutige Tour");
    wait_text(&c, "#day-state", "Nicht gestartet", WAIT).await;
    press(&c, "Tour starten").await;
    wait_text(&c, "#result", "Im Fahrzeug gespeichert", WAIT).await;
    assert!(text(&c, "#result").await.contains("Tour gestartet"));
    let started = wait_route(&rx, "route.started").await;
    assert_eq!(started["sequence"], 0, "the first event of a fresh store");
    wait_text(&c, "#result", "An das Büro gesendet", WAIT).await;
    wait_text(&c, "#day-state", "Unterwegs seit", WAIT).await;
    // A tap for a stop, a break, loading done, the end of the day.
    // Choosing the stop renders the list again, and its button is the same element after it: the
    // list is rendered every refresh too, and a button replaced under the finger takes no click.
    let s2 = c.find(Locator::Css("[data-job=S2]")).await.unwrap();
    c.execute("arguments[0].dataset.kept = 'yes'", vec![serde_json::to_value(&s2).unwrap()]).await.unwrap();
    click(&c, s2).await;
    wait_text(&c, "#job-title", "Elbe Coffee Roasters", WAIT).await;
    let kept = c.execute("return document.querySelector('[data-job=S2]').dataset.kept", vec![]).await.unwrap();
    assert_eq!(kept, "yes", "the stop's button was replaced by a render");
    press(&c, "Unterwegs").await;
    wait_text(&c, "#result", "Im Fahrzeug gespeichert", WAIT).await;
    wait_event(&rx, "S2", "heading_to").await;
    press(&c, "Pause").await;
    wait_text(&c, "#day-state", "In der Pause", WAIT).await;
    press(&c, "Pause beendet").await;
    wait_text(&c, "#day-state", "Unterwegs seit", WAIT).await;
    press(&c, "Beladen fertig").await;
    wait_text(&c, "#result", "Beladen fertig", WAIT).await;
    press(&c, "Tour beenden").await;
    wait_text(&c, "#day-state", "Tour beendet", WAIT).await;
    assert!(text(&c, "#day-state").await.contains(" km"), "the day's distance");
    let ended = wait_route(&rx, "route.ended").await;
    assert!(ended["route"]["summary"]["distance_m"].is_number(), "{ended}");
    assert!(c.find(Locator::XPath("//button[normalize-space()='Tour starten' and not(@hidden)]")).await.is_err());
    screenshot(&c, "german.png").await;
}
