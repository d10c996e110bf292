//! The serial source through a real pseudo-terminal: NMEA mixed with binary garbage in odd-sized
//! chunks, a bad checksum, and the receiver unplugged and plugged back in.

use std::path::Path;
use std::time::{Duration, Instant};

use curbside::gps::LatestFix;
use curbside::gps::fix::Mode;
use curbside::gps::frame::with_checksum;
use curbside::gps::source::serial::{self, Timing};
use tokio::io::AsyncWriteExt;
use tokio_serial::{SerialPort, SerialStream};
use tokio_util::sync::CancellationToken;

use crate::common::wait_for;

/// A receiver on a fresh pty whose device path is `link` (a symlink, as udev makes
/// `/dev/serial/by-id/...`), so that "plugging it back in" is the same path again.
fn plug_in(link: &Path) -> SerialStream {
    let (master, slave) = SerialStream::pair().expect("pty pair");
    let path = slave.name().expect("pty name");
    // The reader opens the slave by path; this end only had to exist to create it.
    drop(slave);
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&path, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
    master
}

fn epoch(hms: &str, lat: &str) -> String {
    with_checksum(&format!("$GNRMC,{hms},A,{lat},N,00632.2910,E,0.23,30.68,221126,,,A"))
        + &with_checksum(&format!("$GNGGA,{hms},{lat},N,00632.2910,E,1,08,0.9,29.7,M,47.4,M,,"))
        + &with_checksum("$GNGSA,A,3,20,17,23,14,05,07,,,,,,,1.6,0.9,1.3,1")
}

async fn write_in_odd_chunks(port: &mut SerialStream, bytes: &[u8]) {
    for chunk in bytes.chunks(7) {
        port.write_all(chunk).await.unwrap();
    }
    port.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_split_reads_and_bad_checksums_still_give_the_right_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("gps");
    let mut port = plug_in(&link);
    let latest = LatestFix::new(Duration::from_secs(10));
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(serial::run(link.clone(), 9600, Timing::default(), latest.clone(), shutdown.clone()));

    let mut stream = Vec::new();
    stream.extend_from_slice(b"\xb5\x62\x01\x07\x5c\x00\x24\x00garbage\x00\xff");
    stream.extend_from_slice(epoch("102128.00", "5129.0623").as_bytes());
    stream.extend_from_slice(b"\xa0\xa2\x00\x29\x02"); // SiRF binary
    // A bad checksum in the middle: dropped and counted.
    stream.extend_from_slice(b"$GNGGA,102129.00,5129.9999,N,00632.2910,E,1,08,0.9,29.7,M,47.4,M,,*00\r\n");
    stream.extend_from_slice(epoch("102130.00", "5129.0700").as_bytes());
    write_in_odd_chunks(&mut port, &stream).await;

    wait_for(&latest, Duration::from_secs(10), "the second epoch", |s| {
        s.last.as_ref().and_then(|r| r.fix.lat).is_some_and(|lat| (lat - (51.0 + 29.07 / 60.0)).abs() < 1e-9)
    })
    .await;
    let s = latest.snapshot();
    assert!(s.connected);
    assert!(s.stats.bad_sentences >= 1, "{:?}", s.stats);
    let fix = latest.live().unwrap().fix;
    assert_eq!(fix.mode, Mode::ThreeD);
    assert_eq!(fix.sats, Some(8));
    assert_eq!(fix.time.unwrap().to_rfc3339(), "2026-11-22T10:21:30+00:00");
    stop(shutdown, reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_waits_for_a_missing_device_and_recovers_when_it_is_unplugged_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("gps");
    let latest = LatestFix::new(Duration::from_secs(10));
    let shutdown = CancellationToken::new();
    // The device does not exist yet when the reader starts.
    let reader = tokio::spawn(serial::run(link.clone(), 9600, Timing::default(), latest.clone(), shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!latest.snapshot().connected);

    let mut port = plug_in(&link);
    write_in_odd_chunks(&mut port, epoch("120000.00", "5129.0001").as_bytes()).await;
    wait_for(&latest, Duration::from_secs(10), "the first fix", |s| s.last_valid.is_some()).await;

    // Unplug: the pty's other side goes away, the reader's next read fails with EIO.
    drop(port);
    std::fs::remove_file(&link).unwrap();
    wait_for(&latest, Duration::from_secs(10), "the port to be seen lost", |s| !s.connected).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Plug back in at the same path: reading again within two seconds.
    let plugged = Instant::now();
    let mut port = plug_in(&link);
    wait_for(&latest, Duration::from_secs(10), "the port to reopen", |s| s.connected).await;
    let reopened = plugged.elapsed();
    write_in_odd_chunks(&mut port, epoch("120005.00", "5129.0005").as_bytes()).await;
    wait_for(&latest, Duration::from_secs(10), "a fix after replugging", |s| {
        s.last_valid.as_ref().and_then(|r| r.fix.lat).is_some_and(|lat| (lat - (51.0 + 29.0005 / 60.0)).abs() < 1e-9)
    })
    .await;
    eprintln!("reopened {reopened:?} after the device reappeared");
    stop(shutdown, reader).await;
}

/// Stops a reader and checks it stopped promptly and without a panic.
async fn stop(shutdown: CancellationToken, reader: tokio::task::JoinHandle<()>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("reader did not stop on shutdown")
        .expect("reader panicked");
}
