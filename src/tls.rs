//! TLS for every outbound connection (webhooks, mqtts): rustls with ring as its only crypto
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
