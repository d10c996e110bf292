//! The gpsd source against a fake gpsd on loopback: it sends `?WATCH`, turns TPV into fixes, and
//! reconnects when gpsd goes away.

use std::time::Duration;

use curbside::gps::LatestFix;
use curbside::gps::fix::Mode;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::common::wait_for;

async fn serve_once(listener: &TcpListener, lat: f64) {
    // Only the gpsd source's `?WATCH` is served: another test's client may reach this port (one
    // it had before, given again to this listener) and is dropped. A source that never sends
    // it never gets a fix, and the test fails waiting for one.
    let watched = async {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let (r, w) = sock.into_split();
            let mut line = String::new();
            let read = tokio::time::timeout(Duration::from_secs(2), BufReader::new(r).read_line(&mut line)).await;
            if matches!(read, Ok(Ok(_))) && line.starts_with("?WATCH={\"enable\":true,\"json\":true}") {
                break w;
            }
        }
    };
    let mut w = tokio::time::timeout(Duration::from_secs(20), watched).await.expect("the gpsd source sends ?WATCH");
    w.write_all(b"{\"class\":\"VERSION\",\"release\":\"3.25\"}\n{\"class\":\"SKY\",\"uSat\":7,\"hdop\":0.8}\n")
        .await
        .unwrap();
    w.write_all(b"not json at all\n").await.unwrap();
    let tpv = format!(
        "{{\"class\":\"TPV\",\"mode\":3,\"time\":\"2026-11-22T10:00:00.000Z\",\"lat\":{lat},\"lon\":9.99,\"altMSL\":12.0,\"speed\":3.5,\"track\":90.0}}\n"
    );
    w.write_all(tpv.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpsd_reports_become_fixes_and_a_lost_gpsd_is_reconnected() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let latest = LatestFix::new(Duration::from_secs(10));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (latest, shutdown) = (latest.clone(), shutdown.clone());
        async move { curbside::gps::source::gpsd::run(&addr, latest, shutdown).await }
    });
    serve_once(&listener, 53.5).await;
    wait_for(&latest, Duration::from_secs(5), "the first TPV", |s| s.last_valid.is_some()).await;
    let f = latest.live().unwrap().fix;
    assert_eq!((f.mode, f.sats, f.hdop, f.lat), (Mode::ThreeD, Some(7), Some(0.8), Some(53.5)));
    // gpsd closed that connection; the source comes back.
    serve_once(&listener, 53.6).await;
    wait_for(&latest, Duration::from_secs(5), "a TPV after reconnecting", |s| {
        s.last_valid.as_ref().and_then(|r| r.fix.lat) == Some(53.6)
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}
