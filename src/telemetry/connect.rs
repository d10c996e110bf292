//! Connection setup: the topics, rumqttc's options (keepalive, last will, credentials) and
//! rustls (a private CA or the system's trust store, an optional client certificate). Built
//! before anything runs, so that an unreadable certificate fails the start.

use std::sync::Arc;

use anyhow::Context as _;
use rumqttc::{LastWill, MqttOptions, QoS};

use super::settings::{MqttConfig, MqttMode};

/// The topics in use.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Positions.
    pub position: String,
    /// Status events.
    pub event: String,
    /// Retained online/offline.
    pub state: String,
    /// The day's stops from the back office (subscribed; retained there).
    pub stops: String,
    /// OwnTracks commands to the van (subscribed; OwnTracks mode only).
    pub cmd: Option<String>,
    /// OwnTracks `transition`s (OwnTracks mode only).
    pub transition: Option<String>,
    /// OwnTracks `waypoints`: the stops as regions (OwnTracks mode only).
    pub waypoints: Option<String>,
}

impl Topics {
    /// The topics of `cfg`. OwnTracks mode moves positions to `owntracks/{user}/{device}`;
    /// events and state stay under the prefix (OwnTracks has no place for them).
    pub fn of(cfg: &MqttConfig) -> Topics {
        let p = &cfg.topic_prefix;
        let (position, owntracks) = match &cfg.mode {
            MqttMode::Curbside | MqttMode::Compact => (format!("{p}/position"), None),
            MqttMode::OwnTracks { user, device } => {
                let base = format!("owntracks/{user}/{device}");
                (base.clone(), Some(base))
            }
        };
        let sub = |s: &str| owntracks.as_ref().map(|b| format!("{b}/{s}"));
        Topics {
            event: format!("{p}/event"),
            state: format!("{p}/state"),
            stops: format!("{p}/stops"),
            cmd: sub("cmd"),
            transition: sub("event"),
            waypoints: sub("waypoints"),
            position,
        }
    }
}

/// Builds the client options (TLS files are read here, so a bad file fails the start). The last
/// will is the retained `offline` state; in OwnTracks mode the publisher replaces it on every
/// connection with OwnTracks' `lwt` (MQTT has one will per connection, and the Recorder reads
/// only that one). With `proxy` (the agent's metering proxy, [`crate::link::proxy`]) the
/// connection goes through it.
pub fn options(cfg: &MqttConfig, proxy: Option<std::net::SocketAddr>) -> anyhow::Result<MqttOptions> {
    let mut o = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
    if let Some(addr) = proxy {
        o.set_proxy(rumqttc::Proxy {
            ty: rumqttc::ProxyType::Http,
            auth: rumqttc::ProxyAuth::None,
            addr: addr.ip().to_string(),
            port: addr.port(),
        });
    }
    o.set_keep_alive(cfg.keepalive);
    o.set_clean_session(true);
    o.set_inflight(100);
    // Incoming: a stop list may be as large as the API takes (1 MiB), plus the header.
    o.set_max_packet_size(crate::stops::MAX_LIST_BYTES + 4096, 256 * 1024);
    if let Some((u, p)) = &cfg.credentials {
        o.set_credentials(u, p);
    }
    o.set_last_will(LastWill::new(Topics::of(cfg).state, "offline", QoS::AtLeastOnce, true));
    if cfg.tls {
        o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(tls_config(
            cfg,
        )?))));
    }
    Ok(o)
}

fn tls_config(cfg: &MqttConfig) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    crate::tls::install_crypto();
    let builder = match &cfg.ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("mqtt.ca_file: cannot read certificates from {}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            anyhow::ensure!(added > 0, "mqtt.ca_file: no usable certificate in {}", path.display());
            rustls::ClientConfig::builder().with_root_certificates(roots)
        }
        None => crate::tls::system_roots()
            .context("mqtts:// needs the system's CA certificates (install ca-certificates) or mqtt.ca_file")?,
    };
    Ok(match &cfg.client_auth {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("mqtt.client_cert: cannot read {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("mqtt.client_key: cannot read {}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .context("mqtt.client_cert/client_key do not make a client identity")?
        }
    })
}
