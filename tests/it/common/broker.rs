//! Real MQTT brokers for the tests: rumqttd in-process, mosquitto as a child process, a TCP
//! link between agent and broker that can be cut and restored, and a subscriber that records
//! everything it receives.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::agent::free_addr;

/// Starts rumqttd on a free loopback port, on a thread of its own (it has no shutdown: each
/// test gets a fresh port), and returns once it accepts connections.
pub async fn rumqttd() -> SocketAddr {
    let addr = free_addr();
    rumqttd_at(addr).await;
    addr
}

/// Starts rumqttd at `addr`.
pub async fn rumqttd_at(addr: SocketAddr) {
    rumqttd_with(addr, "").await
}

/// Starts rumqttd on a free port accepting only `user` with `password`.
pub async fn rumqttd_with_user(user: &str, password: &str) -> SocketAddr {
    let addr = free_addr();
    rumqttd_with(addr, &format!("auth = {{ {user} = \"{password}\" }}\n")).await;
    addr
}

async fn rumqttd_with(addr: SocketAddr, connections: &str) {
    let text = format!(
        r#"id = 0
[router]
max_connections = 100
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "{addr}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 262144
max_inflight_count = 200
dynamic_filters = true
{connections}"#
    );
    let config: rumqttd::Config = toml::from_str(&text).expect("rumqttd config");
    std::thread::Builder::new()
        .name(format!("rumqttd-{}", addr.port()))
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            let _ = broker.start();
        })
        .unwrap();
    wait_listening(addr).await;
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listening on {addr} after 5 s");
}

/// A TCP link on its own port to a broker, which the test can cut (listener closed, every
/// connection reset: to the agent, the broker is gone) and restore; optionally slow (every byte
/// delivered `delay` after it was sent, each way: a cellular link's latency).
pub struct Link {
    pub addr: SocketAddr,
    target: SocketAddr,
    delay: Duration,
    task: Option<JoinHandle<()>>,
}

impl Link {
    pub async fn to(target: SocketAddr) -> Link {
        Self::slow(target, Duration::ZERO).await
    }

    /// A link that delays every byte by `delay` each way.
    pub async fn slow(target: SocketAddr, delay: Duration) -> Link {
        let mut link = Link { addr: free_addr(), target, delay, task: None };
        link.restore().await;
        link
    }

    /// Drops the listener and every connection through it.
    pub fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&mut self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (target, delay) = (self.target, self.delay);
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                conns.spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    if delay.is_zero() {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                    let (in_r, in_w) = inbound.into_split();
                    let (out_r, out_w) = outbound.into_split();
                    tokio::join!(delayed(in_r, out_w, delay), delayed(out_r, in_w, delay));
                });
            }
        }));
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read, in order.
async fn delayed(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, delay: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if tx.send((tokio::time::Instant::now() + delay, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

impl Drop for Link {
    fn drop(&mut self) {
        self.cut();
    }
}

/// mosquitto on a free loopback port, as a child process that can be stopped (SIGKILL by its
/// PID) and started again on the same port.
pub struct Mosquitto {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    extra: String,
    child: Option<Child>,
}

impl Mosquitto {
    pub async fn start() -> Mosquitto {
        Self::start_with("").await
    }

    /// With more configuration lines (another listener, say) after the loopback listener.
    pub async fn start_with(extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mosquitto { addr: free_addr(), dir, extra: extra.to_string(), child: None };
        m.restart().await;
        m
    }

    /// Starts it (again) on the same port.
    pub async fn restart(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let text = format!(
            // Started as root (as CI is), mosquitto would switch to user `mosquitto`, which
            // cannot write the test's private directory: `user root` keeps it as it was started.
            "user root\nallow_anonymous true\npersistence true\npersistence_location {0}/\n\
             log_dest file {0}/mosquitto.log\n\
             listener {1} 127.0.0.1\n{2}\n",
            self.dir.path().display(),
            self.addr.port(),
            self.extra
        );
        std::fs::write(&conf, text).unwrap();
        // Debian puts it in /usr/sbin, which a user's PATH may lack.
        let bin =
            if std::path::Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
        let child =
            Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(
                |e| panic!("cannot run mosquitto ({e}): install it (Debian: apt-get install mosquitto); .ci/run does"),
            );
        self.child = Some(child);
        // Listening, and it is ours (its log says so): not something else on the port.
        let log = self.dir.path().join("mosquitto.log");
        let opened = format!("listen socket on port {}", self.addr.port());
        for _ in 0..200 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(&opened) {
                wait_listening(self.addr).await;
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("mosquitto exited ({status}):\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("mosquitto did not open port {} within 5 s", self.addr.port());
    }

    /// Stops it by PID (SIGTERM: it saves its persistent sessions) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message as a subscriber received it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A subscriber on `filter` (QoS 1) that records every message, resubscribing after reconnects.
pub struct Subscriber {
    msgs: Arc<Mutex<Vec<Msg>>>,
    task: JoinHandle<()>,
}

impl Subscriber {
    pub async fn connect(broker: SocketAddr, filter: &str) -> Subscriber {
        Self::connect_with(broker, filter, true).await
    }

    /// As [`Subscriber::connect`] with a persistent session (clean session off): a broker that
    /// keeps sessions queues what arrives while the subscriber is away.
    pub async fn connect_persistent(broker: SocketAddr, filter: &str) -> Subscriber {
        Self::connect_with(broker, filter, false).await
    }

    async fn connect_with(broker: SocketAddr, filter: &str, clean: bool) -> Subscriber {
        let id = format!("test-sub-{}", rand_id());
        let mut o = MqttOptions::new(id, broker.ip().to_string(), broker.port());
        o.set_clean_session(clean);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let filter = filter.to_string();
        let m = msgs.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let _ = client.subscribe(&filter, QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        m.lock().unwrap().push(Msg {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx).await.expect("subscribed within 10 s").unwrap();
        Subscriber { msgs, task }
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    /// Messages on `topic` so far.
    pub fn on(&self, topic: &str) -> Vec<Msg> {
        self.all().into_iter().filter(|m| m.topic == topic).collect()
    }

    /// Waits until `pred` holds for what was received, or panics after `limit` showing it.
    pub async fn wait_until(&self, limit: Duration, what: &str, pred: impl Fn(&[Msg]) -> bool) -> Vec<Msg> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let all = self.all();
            if pred(&all) {
                return all;
            }
            if tokio::time::Instant::now() >= deadline {
                let tail: Vec<String> = all.iter().rev().take(5).map(|m| format!("{} {}", m.topic, m.text())).collect();
                panic!("timed out after {limit:?} waiting for {what}; {} messages, last: {tail:#?}", all.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    u64::from(std::process::id()) << 20 | N.fetch_add(1, Ordering::Relaxed)
}

/// Publishes one retained message (QoS 1) as a back office would, and waits for the broker's
/// acknowledgement.
pub async fn publish_retained(broker: SocketAddr, topic: &str, payload: Vec<u8>) {
    publish(broker, topic, payload, true).await
}

/// Publishes one message (QoS 1), and waits for the broker's acknowledgement.
pub async fn publish(broker: SocketAddr, topic: &str, payload: Vec<u8>, retain: bool) {
    publish_all(broker, topic, vec![payload], retain).await
}

/// Publishes messages (QoS 1) in order over one connection, and waits for every
/// acknowledgement.
pub async fn publish_all(broker: SocketAddr, topic: &str, payloads: Vec<Vec<u8>>, retain: bool) {
    let mut o = MqttOptions::new(format!("test-pub-{}", rand_id()), broker.ip().to_string(), broker.port());
    o.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    let n = payloads.len();
    for payload in payloads {
        client.publish(topic, QoS::AtLeastOnce, retain, payload).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut acked = 0;
        while acked < n {
            if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await.expect("broker reachable") {
                acked += 1;
            }
        }
    })
    .await
    .expect("the broker acknowledged the message within 10 s");
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
}
