//! Plain `http://` requests on the agent's own sockets, counted where they are made: the one
//! loopback-free hop for `http://` webhooks.
//!
//! Through [`super::proxy`] every request and answer crosses a second socket pair, the
//! client's to the proxy, which the drain benchmark measured at a fifth of the agent's CPU per
//! delivery (issue 29, docs/benchmarks.md). Plain HTTP needs no tunnel: this client dials the
//! destination itself and wraps the socket in the same [`super::Counted`] the proxy uses, so
//! the [`super::Meter`] sees the same bytes (request and answer, keepalive reuse included) and
//! the same dial errors ([`super::Meter::dial_error`]). TLS (`https://`, MQTT over TLS) stays
//! with the proxy, whose `CONNECT` tunnel keeps the client's rustls end to end.
//!
//! Only what the config names is dialled: the caller passes the endpoint's URL.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::proxy::{DIAL_TIMEOUT, dial};
use super::{Counted, Meter};

/// How long an idle connection is kept for the next request (as the reqwest client's pool).
pub const IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The client: HTTP/1.1 with a pool of keepalive connections per destination.
#[derive(Clone, Debug)]
pub struct Direct {
    client: Client<Dialer, Full<Bytes>>,
}

impl Direct {
    /// A client whose connections count into `meter`.
    pub fn new(meter: Meter) -> Direct {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .pool_timer(TokioTimer::new())
            .build(Dialer { meter });
        Direct { client }
    }

    /// Sends `request` (an `http://` URI in absolute form; `Host` is added from it) and
    /// returns the answer's head. The body is not read.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(request).await
    }
}

/// Dials `host:port` of a URI, counting the connection under that destination.
#[derive(Clone)]
struct Dialer {
    meter: Meter,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer").finish_non_exhaustive()
    }
}

/// A counted socket, as hyper wants it.
pub struct Conn(TokioIo<Counted<TcpStream>>);

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `host:port` of an `http://` URI ([`super::destination`], port 80 when it names none).
pub(super) fn destination(uri: &Uri) -> Option<String> {
    let url = reqwest::Url::parse(&uri.to_string()).ok().filter(|u| u.scheme() == "http")?;
    super::destination(&url)
}

impl tower_service::Service<Uri> for Dialer {
    type Response = Conn;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Conn>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let meter = self.meter.clone();
        Box::pin(async move {
            let to = destination(&uri)
                .ok_or_else(|| std::io::Error::other(format!("not a plain http:// URL with a host: {uri}")))?;
            let counters = meter.counters(&to);
            let stream = match tokio::time::timeout(DIAL_TIMEOUT, dial(&to)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    counters.dialed(Err(e.to_string()));
                    return Err(e);
                }
                Err(_) => {
                    let why = format!("no answer within {DIAL_TIMEOUT:?}");
                    counters.dialed(Err(why.clone()));
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why));
                }
            };
            counters.dialed(Ok(()));
            let _ = stream.set_nodelay(true);
            Ok(Conn(TokioIo::new(Counted { inner: stream, counters })))
        })
    }
}
