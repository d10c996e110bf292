//! The van's links to the outside, metered: every byte that leaves or reaches the van on a
//! connection curbside makes (MQTT, webhooks, uploads, OwnTracks HTTP, Traccar) is counted per
//! destination (`host:port`), since the agent started and today, kept across restarts.
//!
//! # Data flow
//! rumqttc and reqwest own their sockets and show none of them, so the one place curbside sees
//! every byte on the wire is a socket of its own: every outbound client is given [`proxy`], an
//! HTTP proxy in the process on loopback, as its proxy. The proxy dials the destination, counts
//! what crosses that socket (TLS records, keepalives and handshakes included; TCP/IP headers are
//! the kernel's and are not counted) into the [`Meter`], and pipes the bytes unchanged: TLS stays
//! end to end between the client and the far end (`CONNECT`), and plain `http://` is forwarded
//! as written (absolute-form requests, which every HTTP/1.1 server accepts).
//!
//! Webhooks to plain `http://` endpoints need no tunnel, so they skip the proxy: [`direct`] dials
//! them itself and wraps the socket in the same [`Counted`], so the [`Meter`] sees the same bytes
//! and dial errors with one loopback hop fewer (the drain benchmark's receiver is plain http;
//! `https://` webhooks still go through the proxy).
//!
//! The [`Meter`] is the one source of the van's usage: status, `/metrics` and the daily budget
//! (`[positions] daily_budget_mb`) read it. Today's totals are saved in the store's `links` tree
//! every [`SAVE_EVERY`] and when the agent stops; a power cut loses at most that much counting.

pub mod direct;
pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::outbox::{Outbox, OutboxError, PartTree};

/// The store's tree of today's totals, one key per destination.
const TREE: &str = "links";

/// Today's totals are saved this often.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

/// What today is (the van's time zone, GPS time when the system clock is wrong).
pub type Today = Arc<dyn Fn() -> NaiveDate + Send + Sync>;

/// The counters of one destination. The proxy adds to them as bytes cross.
#[derive(Debug, Default)]
pub struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    connections: AtomicU64,
    day: Mutex<Day>,
    /// Why the last dial failed (cleared by the next that succeeds).
    last_error: Mutex<Option<String>>,
}

/// Today's totals: what earlier runs counted today, plus what this one counted since `mark`.
#[derive(Debug, Default, Clone, Copy)]
struct Day {
    date: Option<NaiveDate>,
    carried_sent: u64,
    carried_received: u64,
    mark_sent: u64,
    mark_received: u64,
}

impl Counters {
    /// Bytes written to the far end.
    pub fn add_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes read from the far end.
    pub fn add_received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A connection made (`Ok`) or not (why).
    pub fn dialed(&self, result: Result<(), String>) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                self.connections.fetch_add(1, Ordering::Relaxed);
                *last = None;
            }
            Err(e) => *last = Some(e),
        }
    }

    /// Today's (sent, received), moving to `today` first if the day changed.
    fn today(&self, today: NaiveDate) -> (u64, u64) {
        let (sent, received) = (self.sent.load(Ordering::Relaxed), self.received.load(Ordering::Relaxed));
        let mut day = self.day.lock().unwrap_or_else(|e| e.into_inner());
        match day.date {
            // Counted from 0 since these counters were made, all of it today.
            None => day.date = Some(today),
            Some(d) if d != today => {
                *day = Day { date: Some(today), mark_sent: sent, mark_received: received, ..Day::default() };
            }
            Some(_) => {}
        }
        (day.carried_sent + sent - day.mark_sent, day.carried_received + received - day.mark_received)
    }
}

/// What one destination used, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// `host:port`.
    pub to: String,
    /// The parts that connect there (`mqtt`, `webhook office`, `uploads`, …).
    pub used_by: Vec<String>,
    /// Bytes sent since the agent started.
    pub sent_bytes: u64,
    /// Bytes received since the agent started.
    pub received_bytes: u64,
    /// Bytes sent today (earlier runs today included).
    pub today_sent_bytes: u64,
    /// Bytes received today (earlier runs today included).
    pub today_received_bytes: u64,
    /// Connections made since the agent started.
    pub connections: u64,
    /// Why the last connection attempt failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Today's totals as saved.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    day: NaiveDate,
    sent: u64,
    received: u64,
}

/// The counters of every destination. Cheap to clone; clones share them.
#[derive(Clone)]
pub struct Meter {
    links: Arc<Mutex<BTreeMap<String, Arc<Counters>>>>,
    /// Which parts use each destination (what the config says; shown in status).
    used_by: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
    tree: Option<PartTree>,
    today: Today,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter").field("links", &self.links).finish_non_exhaustive()
    }
}

impl Meter {
    /// A meter whose today's totals start from what `outbox` kept for `today`.
    pub fn open(outbox: &Outbox, today: Today) -> Result<Meter, OutboxError> {
        let tree = outbox.part_tree(TREE)?;
        let meter = Meter { tree: None, ..Meter::in_memory(today) };
        let date = (meter.today)();
        for kv in tree.iter() {
            let (k, v) = kv?;
            let Ok(saved) = serde_json::from_slice::<Saved>(&v) else { continue };
            if saved.day != date {
                continue;
            }
            let counters = meter.counters(&String::from_utf8_lossy(&k));
            *counters.day.lock().unwrap_or_else(|e| e.into_inner()) =
                Day { date: Some(date), carried_sent: saved.sent, carried_received: saved.received, ..Day::default() };
        }
        Ok(Meter { tree: Some(tree), ..meter })
    }

    /// A meter that keeps nothing (tests, benchmarks).
    pub fn in_memory(today: Today) -> Meter {
        Meter { links: Arc::default(), used_by: Arc::default(), tree: None, today }
    }

    /// The counters of `to` (`host:port`), made on first use.
    pub fn counters(&self, to: &str) -> Arc<Counters> {
        self.links.lock().unwrap_or_else(|e| e.into_inner()).entry(to.to_string()).or_default().clone()
    }

    /// Records that `part` connects to `url`'s destination (for status).
    pub fn used_by(&self, url: &reqwest::Url, part: &str) {
        if let Some(to) = destination(url) {
            self.used_by_destination(&to, part);
        }
    }

    /// Records that `part` connects to `to` (`host:port`).
    pub fn used_by_destination(&self, to: &str, part: &str) {
        self.used_by.lock().unwrap_or_else(|e| e.into_inner()).entry(to.to_string()).or_default().insert(part.into());
        self.counters(to);
    }

    /// Why the last connection to `url`'s destination failed, if it did: the proxy's dial error,
    /// which a client only sees as a refused tunnel.
    pub fn dial_error(&self, url: &reqwest::Url) -> Option<String> {
        self.dial_error_to(&destination(url)?)
    }

    /// [`Meter::dial_error`] of `to` (`host:port`).
    pub fn dial_error_to(&self, to: &str) -> Option<String> {
        let counters = self.links.lock().unwrap_or_else(|e| e.into_inner()).get(to).cloned()?;
        let e = counters.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        Some(format!("cannot connect to {to}: {e}"))
    }

    /// Today's date, as the meter counts days.
    pub fn today(&self) -> NaiveDate {
        (self.today)()
    }

    /// Every destination's usage, in name order.
    pub fn usage(&self) -> Vec<Usage> {
        let today = (self.today)();
        let links: Vec<_> =
            self.links.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let used_by = self.used_by.lock().unwrap_or_else(|e| e.into_inner()).clone();
        links
            .into_iter()
            .map(|(to, c)| {
                let (today_sent_bytes, today_received_bytes) = c.today(today);
                Usage {
                    used_by: used_by.get(&to).map(|s| s.iter().cloned().collect()).unwrap_or_default(),
                    sent_bytes: c.sent.load(Ordering::Relaxed),
                    received_bytes: c.received.load(Ordering::Relaxed),
                    today_sent_bytes,
                    today_received_bytes,
                    connections: c.connections.load(Ordering::Relaxed),
                    last_error: c.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                    to,
                }
            })
            .collect()
    }

    /// Bytes sent and received today on every link together.
    pub fn today_total(&self) -> u64 {
        self.usage().iter().map(|u| u.today_sent_bytes + u.today_received_bytes).sum()
    }

    /// Saves today's totals (durably).
    pub async fn save(&self) -> Result<(), OutboxError> {
        let Some(tree) = &self.tree else { return Ok(()) };
        let day = (self.today)();
        for u in self.usage() {
            let saved = Saved { day, sent: u.today_sent_bytes, received: u.today_received_bytes };
            tree.insert(u.to.as_bytes(), serde_json::to_vec(&saved).expect("plain struct"))?;
        }
        tree.commit().await
    }

    /// Saves today's totals every [`SAVE_EVERY`] and once more at shutdown.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(SAVE_EVERY) => false,
                _ = shutdown.cancelled() => true,
            };
            if let Err(e) = self.save().await {
                tracing::warn!(error = %e, "could not save today's link usage");
            }
            if stopping {
                return Ok(());
            }
        }
    }
}

/// `host:port` of a URL (the scheme's default port when it names none); IPv6 in brackets.
pub fn destination(url: &reqwest::Url) -> Option<String> {
    Some(format!("{}:{}", url.host_str()?, url.port_or_known_default()?))
}

/// A stream that adds what crosses it to a destination's counters.
pub(crate) struct Counted<S> {
    pub(crate) inner: S,
    pub(crate) counters: Arc<Counters>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.counters.add_received(buf.filled().len() - before);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            self.counters.add_sent(n);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    #[test]
    fn today_starts_from_what_earlier_runs_counted_and_starts_again_at_midnight() {
        let day = Arc::new(Mutex::new(date(4)));
        let d = day.clone();
        let meter = Meter::in_memory(Arc::new(move || *d.lock().unwrap()));
        let c = meter.counters("broker:8883");
        *c.day.lock().unwrap() =
            Day { date: Some(date(4)), carried_sent: 1000, carried_received: 10, ..Day::default() };
        c.add_sent(500);
        c.add_received(40);
        let u = &meter.usage()[0];
        assert_eq!((u.sent_bytes, u.received_bytes, u.today_sent_bytes, u.today_received_bytes), (500, 40, 1500, 50));
        *day.lock().unwrap() = date(5);
        c.add_sent(7);
        let u = &meter.usage()[0];
        assert_eq!((u.sent_bytes, u.today_sent_bytes, u.today_received_bytes), (507, 0, 0), "a new day counts from 0");
        c.add_sent(3);
        assert_eq!(meter.today_total(), 3);
    }

    #[test]
    fn a_failed_dial_is_explained_until_one_succeeds() {
        let meter = Meter::in_memory(Arc::new(|| date(4)));
        let url: reqwest::Url = "https://hooks.example.com/x".parse().unwrap();
        meter.counters("hooks.example.com:443").dialed(Err("Connection refused (os error 111)".into()));
        assert_eq!(
            meter.dial_error(&url).as_deref(),
            Some("cannot connect to hooks.example.com:443: Connection refused (os error 111)")
        );
        meter.counters("hooks.example.com:443").dialed(Ok(()));
        assert_eq!(meter.dial_error(&url), None);
        assert_eq!(meter.usage()[0].connections, 1);
    }

    #[test]
    fn destinations_name_the_default_port_and_bracket_ipv6() {
        let d = |u: &str| destination(&u.parse().unwrap());
        assert_eq!(d("https://a.example/x").as_deref(), Some("a.example:443"));
        assert_eq!(d("http://a.example/x").as_deref(), Some("a.example:80"));
        assert_eq!(d("http://127.0.0.1:8080/").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(d("http://[::1]:9/").as_deref(), Some("[::1]:9"));
        // The direct client's dialer: plain http only.
        let plain = |u: &str| direct::destination(&u.parse().unwrap());
        assert_eq!(plain("http://127.0.0.1:9/hook").as_deref(), Some("127.0.0.1:9"));
        assert_eq!(plain("http://hooks.example/a").as_deref(), Some("hooks.example:80"));
        assert_eq!(plain("http://[::1]:8080/").as_deref(), Some("[::1]:8080"));
        assert_eq!(plain("https://hooks.example/a"), None);
        assert_eq!(plain("/origin-form"), None);
    }
}
