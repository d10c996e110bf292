//! TLS for every outbound connection (webhooks, uploads, OwnTracks HTTP, mqtts): rustls with ring as its only crypto
//! provider, servers verified against the system's trust store unless a part brings its own CA.

/// Installs ring as rustls' crypto provider (once per process; later calls do nothing).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client config builder that verifies servers with the system's trust store. Fails when the
/// system has none (no `ca-certificates` package): only parts that need TLS should fail then.
pub fn system_roots()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    install_crypto();
    rustls::ClientConfig::builder().with_platform_verifier()
}

/// A client config that trusts no server: for clients that only speak plain HTTP (the CLI to
/// the local API, webhooks when no endpoint is `https://`), so that they never depend on the
/// system's trust store. Any `https://` it is asked for fails verification.
pub fn trusting_nobody() -> rustls::ClientConfig {
    install_crypto();
    rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
}

/// The HTTP client of a part that sends to the outside (webhooks and uploads, OwnTracks HTTP):
/// rustls with the system's trust store, no redirects (a 3xx is not a delivery), curbside's
/// User-Agent. A system without a trust store is an error only when `https` names a URL that
/// needs one (e.g. `webhook "office"`); plain `http://` works without one. With `proxy` (the
/// agent's metering proxy, [`crate::link::proxy`]) every connection goes through it.
pub fn http_client(https: Option<String>, proxy: Option<std::net::SocketAddr>) -> anyhow::Result<reqwest::Client> {
    let tls = match system_roots() {
        Ok(builder) => builder.with_no_client_auth(),
        Err(e) => {
            if let Some(what) = https {
                anyhow::bail!(
                    "{what} is https:// but the system's CA certificates cannot be loaded \
                     (install the ca-certificates package): {e}"
                );
            }
            trusting_nobody()
        }
    };
    let mut builder = reqwest::Client::builder();
    builder = match proxy {
        Some(addr) => builder.proxy(reqwest::Proxy::all(format!("http://{addr}"))?),
        None => builder,
    };
    Ok(builder
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("curbside/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .build()?)
}
