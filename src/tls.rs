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
