//! The local API's sockets: the accept loop and each connection's task, under the rules of
//! [`conns`] (a cap on open connections, a timeout for anything that is not a request
//! being answered). The accept loop never waits on a client: a connection is admitted, admitted
//! in place of a slow one, or closed at once, and counted. What is served is a [`Router`]
//! ([`crate::api`]'s routes); this module knows nothing of them.

pub mod conns;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service as _;

use conns::{Admit, Check, ConnId, Table};

/// How long open connections get to finish when the agent stops.
const DRAIN: Duration = Duration::from_secs(5);

/// Limits on the API's connections (`[api]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a request's headers may take, and how long a connection may idle between
    /// requests (the API gives a request's body as long again).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_connections: 256, request_timeout: Duration::from_secs(10) }
    }
}

/// The connections' counters, for status and `/metrics`.
#[derive(Debug, Default)]
pub struct ConnCounters {
    open: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    timed_out: AtomicU64,
}

/// A reading of [`ConnCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnReport {
    /// Open now.
    pub open: u64,
    /// Accepted since start.
    pub accepted: u64,
    /// Closed at once because every open connection was inside a request.
    pub refused: u64,
    /// Closed to make room for a new one (they had sent no request, or were idle).
    pub evicted: u64,
    /// Closed for taking longer than the request timeout to send a request.
    pub timed_out: u64,
}

impl ConnCounters {
    /// The counters now.
    pub fn report(&self) -> ConnReport {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConnReport {
            open: r(&self.open),
            accepted: r(&self.accepted),
            refused: r(&self.refused),
            evicted: r(&self.evicted),
            timed_out: r(&self.timed_out),
        }
    }
}

struct Shared {
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
    table: Mutex<Table>,
    /// One token per open connection: cancelled to evict it.
    closers: Mutex<std::collections::HashMap<ConnId, CancellationToken>>,
    counters: Arc<ConnCounters>,
    /// The most connections open since memory was last given back.
    peak: AtomicU64,
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn closers(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<ConnId, CancellationToken>> {
        self.closers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown`, then gives open connections
/// `DRAIN` to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    counters: Arc<ConnCounters>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        router,
        limits,
        shutdown: shutdown.clone(),
        table: Mutex::new(Table::new(limits.max_connections, limits.request_timeout)),
        closers: Mutex::default(),
        counters,
        peak: AtomicU64::new(0),
    });
    let tracker = TaskTracker::new();
    let mut backoff_logged = false;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors (EMFILE, ENFILE) or a connection reset before it was
                // accepted: wait a moment rather than spin, and say so once.
                if !backoff_logged {
                    tracing::warn!(error = %e, "the local API cannot accept a connection; retrying");
                    backoff_logged = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        backoff_logged = false;
        let mut admitted = shared.table().admit(tokio::time::Instant::now(), false);
        for _ in 0..3 {
            if admitted != Admit::Wait {
                break;
            }
            // Every connection that could make room has not been read yet (a burst outran their
            // tasks): let them run, so that a prompt client's request is read, not thrown away.
            tokio::task::yield_now().await;
            admitted = shared.table().admit(tokio::time::Instant::now(), false);
        }
        if admitted == Admit::Wait {
            admitted = shared.table().admit(tokio::time::Instant::now(), true);
        }
        let c = &shared.counters;
        let id = match admitted {
            Admit::Refuse | Admit::Wait => {
                c.refused.fetch_add(1, Ordering::Relaxed);
                drop(stream);
                continue;
            }
            Admit::Yes(id) => id,
            Admit::Evicting { id, evict } => {
                c.evicted.fetch_add(1, Ordering::Relaxed);
                if let Some(close) = shared.closers().remove(&evict) {
                    close.cancel();
                }
                id
            }
        };
        c.accepted.fetch_add(1, Ordering::Relaxed);
        let open = shared.table().len() as u64;
        c.open.store(open, Ordering::Relaxed);
        shared.peak.fetch_max(open, Ordering::Relaxed);
        let close = CancellationToken::new();
        shared.closers().insert(id, close.clone());
        let _ = stream.set_nodelay(true);
        tracker.spawn(connection(stream, id, shared.clone(), close));
        if open as usize >= limits.max_connections {
            // At the cap: let the new connection's task read what it has been sent before the
            // next arrival is weighed against it (a burst must not outrun the reading).
            tokio::task::yield_now().await;
        }
    }
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::info!("local API: connections still open after {} s closed", DRAIN.as_secs());
    }
    Ok(())
}

/// Serves one connection until it ends, is evicted, times out, or the agent stops.
async fn connection(stream: tokio::net::TcpStream, id: ConnId, shared: Arc<Shared>, close: CancellationToken) {
    let (limits, shutdown) = (shared.limits, shared.shutdown.clone());
    let service = {
        let shared = shared.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            shared.table().request_started(id);
            let done = Done { shared: shared.clone(), id };
            let mut router = shared.router.clone();
            let (req, read_to_end) = ReadToEnd::wrap(req);
            async move {
                let mut resp = router.call(req).await;
                drop(done);
                if let (Ok(resp), false) = (resp.as_mut(), read_to_end.load(Ordering::Relaxed)) {
                    // Answered before its body was read (a bad path, a body announced too
                    // large): hyper could not reuse the connection, so say so. Without this
                    // the answer looks keep-alive, the client sends its next request on a
                    // connection being closed, and that request fails (seen under qemu).
                    resp.headers_mut()
                        .insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
                }
                resp
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.request_timeout).max_buf_size(64 * 1024);
    let io = Watched { stream, shared: shared.clone(), id, got_bytes: false, marked: false };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut look_at = tokio::time::Instant::now() + limits.request_timeout;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if r.as_ref().is_err_and(hyper::Error::is_timeout) {
                    // hyper's own header timeout (the same as ours) came first.
                    shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            _ = close.cancelled() => break,
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
                break;
            }
            _ = tokio::time::sleep_until(look_at) => {
                let now = tokio::time::Instant::now();
                let verdict = shared.table().check(id, now);
                match verdict {
                    Some(Check::Later(at)) => look_at = at,
                    Some(Check::TimedOut) => {
                        shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    None => break,
                }
            }
        }
    }
    let open = {
        let mut table = shared.table();
        table.closed(id);
        table.len() as u64
    };
    shared.closers().remove(&id);
    shared.counters.open.store(open, Ordering::Relaxed);
    give_back_memory(&shared, open);
}

/// The connection's socket, telling the table when it has been read and found without a
/// complete request: the first time a read would wait after some bytes came. Not before any
/// came: a client's request may simply not have arrived when its task first reads, and a
/// prompt client must not look like a slow one.
struct Watched {
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    id: ConnId,
    got_bytes: bool,
    marked: bool,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        if polled.is_ready() && buf.filled().len() > before {
            self.got_bytes = true;
        } else if polled.is_pending() && self.got_bytes && !self.marked {
            self.marked = true;
            self.shared.table().read_incomplete(self.id);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A request's body that tells whether it was read to its end (or had none).
struct ReadToEnd {
    inner: Incoming,
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl ReadToEnd {
    fn wrap(req: hyper::Request<Incoming>) -> (hyper::Request<ReadToEnd>, Arc<std::sync::atomic::AtomicBool>) {
        let (parts, inner) = req.into_parts();
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(hyper::body::Body::is_end_stream(&inner)));
        let body = ReadToEnd { inner, ended: ended.clone() };
        (hyper::Request::from_parts(parts, body), ended)
    }
}

impl hyper::body::Body for ReadToEnd {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Relaxed);
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Marks a request answered when dropped (also when its handler is cancelled).
struct Done {
    shared: Arc<Shared>,
    id: ConnId,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.shared.table().request_done(self.id, tokio::time::Instant::now());
    }
}

/// After a flood of connections has gone, hands the memory their buffers took back to the
/// system: the allocator keeps freed memory for reuse otherwise, and a gateway's RSS would stay
/// at the flood's high-water mark.
fn give_back_memory(shared: &Shared, open: u64) {
    let peak = shared.peak.load(Ordering::Relaxed);
    if open <= 2 && peak >= 32 && shared.peak.compare_exchange(peak, open, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        tokio::task::spawn_blocking(crate::memory::trim);
    }
}
