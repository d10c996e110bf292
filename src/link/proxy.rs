//! The metering proxy: an HTTP proxy on loopback that every outbound client of the agent goes
//! through, so that the bytes of each connection are counted on a socket curbside owns (see the
//! module above).
//!
//! - `CONNECT host:port` (https, mqtts and mqtt through rumqttc's proxy support): dial, answer
//!   `200`, then pipe; the TLS inside is the client's, end to end.
//! - `METHOD http://host:port/… HTTP/1.1` (plain http through reqwest): dial, then pipe the
//!   request as written; an HTTP/1.1 server accepts the absolute form.
//! - A destination the config does not name is refused (`403`), so the proxy is no open relay
//!   for other local processes; at most [`MAX_CONNECTIONS`] at once; a request head must come
//!   within [`HEAD_TIMEOUT`] and fit in [`MAX_HEAD`] bytes.
//! - A failed dial answers `502` with `x-curbside-unreachable` and is kept in the [`Meter`]
//!   ([`super::Meter::dial_error`]), so that a client reports the far end as unreachable (with
//!   the real reason) and not as an answer.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Counted, Meter};

/// Connections through the proxy at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 128;
/// A request head larger than this is refused.
pub const MAX_HEAD: usize = 8 * 1024;
/// A request head must arrive within this.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A destination must answer within this.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The header of a `502` that says the proxy could not reach the destination.
pub const UNREACHABLE: &str = "x-curbside-unreachable";

/// Where the proxy may connect: the destinations the config names (`host:port`), or anywhere
/// when one of them is only known per request (an upload URL template with a placeholder in its
/// host).
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    /// Any destination.
    pub any: bool,
    /// These destinations.
    pub to: HashSet<String>,
}

/// What a client asked the proxy for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// `CONNECT host:port`.
    Tunnel(String),
    /// A plain-http request for `host:port`.
    Forward(String),
}

impl Ask {
    /// `host:port`.
    pub fn destination(&self) -> &str {
        match self {
            Ask::Tunnel(to) | Ask::Forward(to) => to,
        }
    }
}

/// The request line of a proxy request head (the headers are not read: they go to the far end
/// as written).
pub fn parse_head(head: &[u8]) -> Result<Ask, &'static str> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| "the request line is not UTF-8")?.trim_end_matches('\r');
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (words.next(), words.next(), words.next(), words.next())
    else {
        return Err("the request line is not METHOD TARGET VERSION");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("not HTTP/1.x");
    }
    if method == "CONNECT" {
        let (host, port) = target.rsplit_once(':').ok_or("CONNECT needs host:port")?;
        let port: u16 = port.parse().map_err(|_| "CONNECT needs a port")?;
        if host.is_empty() {
            return Err("CONNECT needs a host");
        }
        return Ok(Ask::Tunnel(format!("{host}:{port}")));
    }
    let url = reqwest::Url::parse(target).map_err(|_| "the target is not an absolute URL")?;
    if url.scheme() != "http" {
        return Err("only http:// is forwarded (https goes through CONNECT)");
    }
    super::destination(&url).map(Ask::Forward).ok_or("the target has no host")
}

/// Binds the proxy on loopback (a port the system picks).
pub async fn bind() -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Serves the proxy until shutdown. Tunnels that are open then end when their client closes.
pub async fn serve(listener: TcpListener, meter: Meter, allowed: Arc<Allowed>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            _ = shutdown.cancelled() => return,
        };
        let Ok(slot) = slot else { return };
        let client = tokio::select! {
            c = listener.accept() => c,
            _ = shutdown.cancelled() => return,
        };
        match client {
            Ok((client, _)) => {
                let (meter, allowed) = (meter.clone(), allowed.clone());
                tokio::spawn(async move {
                    handle(client, &meter, &allowed).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "link proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(mut client: TcpStream, meter: &Meter, allowed: &Allowed) {
    let _ = client.set_nodelay(true);
    let (ask, read) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(head)) => head,
        Ok(Err(why)) => return answer(&mut client, "400 Bad Request", why, None).await,
        Err(_) => return,
    };
    let to = ask.destination().to_string();
    if !allowed.any && !allowed.to.contains(&to) {
        return answer(&mut client, "403 Forbidden", "not a destination of this agent's config", None).await;
    }
    let counters = meter.counters(&to);
    let remote = match tokio::time::timeout(DIAL_TIMEOUT, dial(&to)).await {
        Ok(Ok(remote)) => remote,
        Ok(Err(e)) => {
            counters.dialed(Err(e.to_string()));
            let why = format!("cannot connect to {to}: {e}");
            return answer(&mut client, "502 Bad Gateway", "cannot connect", Some(&why)).await;
        }
        Err(_) => {
            let why = format!("no answer within {DIAL_TIMEOUT:?}");
            counters.dialed(Err(why.clone()));
            let why = format!("cannot connect to {to}: {why}");
            return answer(&mut client, "502 Bad Gateway", "cannot connect", Some(&why)).await;
        }
    };
    counters.dialed(Ok(()));
    let _ = remote.set_nodelay(true);
    let mut remote = Counted { inner: remote, counters };
    let started = match ask {
        Ask::Tunnel(_) => match client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await {
            // Anything the client sent after its head is already the tunnel's.
            Ok(()) => remote.write_all(&read[head_len(&read)..]).await,
            Err(e) => Err(e),
        },
        Ask::Forward(_) => remote.write_all(&read).await,
    };
    if started.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut remote).await;
    }
}

/// Reads until the end of the request head; returns what was asked and every byte read.
async fn read_head(client: &mut TcpStream) -> Result<(Ask, Vec<u8>), &'static str> {
    let mut read = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    while !read.windows(4).any(|w| w == b"\r\n\r\n") {
        if read.len() > MAX_HEAD {
            return Err("the request head is too large");
        }
        let n = client.read(&mut buf).await.map_err(|_| "the request head could not be read")?;
        if n == 0 {
            return Err("the connection closed before the request head ended");
        }
        read.extend_from_slice(&buf[..n]);
    }
    Ok((parse_head(&read)?, read))
}

fn head_len(read: &[u8]) -> usize {
    read.windows(4).position(|w| w == b"\r\n\r\n").map_or(read.len(), |p| p + 4)
}

/// Connects to `to` (`host:port`, IPv6 in brackets).
pub(super) async fn dial(to: &str) -> std::io::Result<TcpStream> {
    let (host, port) = to.rsplit_once(':').ok_or_else(|| std::io::Error::other("no port"))?;
    let port: u16 = port.parse().map_err(|_| std::io::Error::other("bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    TcpStream::connect((host, port)).await
}

async fn answer(client: &mut TcpStream, status: &str, body: &str, unreachable: Option<&str>) {
    let mark = unreachable.map(|why| format!("{UNREACHABLE}: {}\r\n", why.replace(['\r', '\n'], " ")));
    let text = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n{}\r\n{body}",
        body.len(),
        mark.unwrap_or_default()
    );
    let _ = client.write_all(text.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// When an answer is the proxy's own, that it could not reach the destination: why.
pub fn unreachable(response: &reqwest::Response) -> Option<String> {
    if response.status() != reqwest::StatusCode::BAD_GATEWAY {
        return None;
    }
    let why = response.headers().get(UNREACHABLE)?;
    Some(why.to_str().unwrap_or("cannot connect").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_names_its_destination_or_why_not() {
        let ok = |h: &str| parse_head(h.as_bytes());
        assert_eq!(
            ok("CONNECT hooks.example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Ask::Tunnel("hooks.example.com:443".into()))
        );
        assert_eq!(ok("CONNECT [::1]:8883 HTTP/1.1\r\n\r\n"), Ok(Ask::Tunnel("[::1]:8883".into())));
        assert_eq!(ok("POST http://127.0.0.1:9/hook HTTP/1.1\r\n\r\n"), Ok(Ask::Forward("127.0.0.1:9".into())));
        assert_eq!(ok("PUT http://files.example/a/b HTTP/1.1\r\n\r\n"), Ok(Ask::Forward("files.example:80".into())));
        for bad in [
            "GET /origin-form HTTP/1.1\r\n\r\n",
            "CONNECT nohost HTTP/1.1\r\n\r\n",
            "CONNECT :443 HTTP/1.1\r\n\r\n",
            "CONNECT a:99999 HTTP/1.1\r\n\r\n",
            "GET https://a.example/ HTTP/1.1\r\n\r\n",
            "GET http://a.example/ SPDY/3\r\n\r\n",
            "GET  http://a.example/ HTTP/1.1\r\n\r\n",
            "\u{0}\u{1}\r\n\r\n",
            "",
        ] {
            assert!(ok(bad).is_err(), "{bad:?}");
        }
        assert!(parse_head(b"\xff\xfe HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn the_head_ends_at_the_blank_line() {
        assert_eq!(head_len(b"CONNECT a:1 HTTP/1.1\r\n\r\n\x16\x03"), 24);
    }
}
