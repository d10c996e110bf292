//! A system without a TLS trust store (no `ca-certificates`): the agent starts when no endpoint
//! needs TLS, and refuses to start with an error naming the `https://` endpoint when one does
//! (it used to panic at every start, and systemd restarted it forever). The CLI, which speaks
//! plain HTTP to the agent, needs no trust store either.

use std::time::{Duration, Instant};

use crate::common::agent::{config_text, free_addr};
use crate::common::run_agent;

/// `curbside run` with no trust store at all: rustls-native-certs reads only these two.
fn without_trust_store(config: &std::path::Path, empty: &std::path::Path) -> std::process::Command {
    let mut cmd = run_agent(config);
    cmd.env("SSL_CERT_FILE", empty.join("none.pem")).env("SSL_CERT_DIR", empty);
    cmd
}

#[test]
fn no_trust_store_is_fine_for_http_endpoints_and_a_clear_error_for_https() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-certs");
    std::fs::create_dir(&empty).unwrap();
    let api = free_addr();

    // A config in `dir` named NAME.toml with its own state dir and one webhook at `url`.
    let config = |name: &str, url: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        let hook = format!("[[webhook]]\nname = \"{name}\"\nurl = \"{url}\"\n");
        let api = format!("listen = \"{api}\"");
        std::fs::write(&path, config_text(&dir.path().join(name), "source = \"sim\"", &api, &hook)).unwrap();
        path
    };

    let plain = config("office", "http://127.0.0.1:9/hook");
    let mut child = without_trust_store(&plain, &empty).spawn().unwrap();
    let t = Instant::now();
    let up = loop {
        if std::net::TcpStream::connect(api).is_ok() {
            break true;
        }
        if child.try_wait().unwrap().is_some() || t.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let tap = up.then(|| {
        let mut cli = crate::common::curbside();
        cli.args(["tap", "arrived", "--job", "J1", "--config"]).arg(&plain);
        cli.env("SSL_CERT_FILE", empty.join("none.pem")).env("SSL_CERT_DIR", &empty).output().unwrap()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "with only http:// endpoints the agent must start without a trust store");
    let tap = tap.unwrap();
    assert!(tap.status.success(), "the CLI talks plain HTTP to the agent: {}", String::from_utf8_lossy(&tap.stderr));

    let tls = config("secure-office", "https://127.0.0.1:9/hook");
    let out = without_trust_store(&tls, &empty).stderr(std::process::Stdio::piped()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an https:// endpoint without a trust store must fail the start");
    assert!(!err.contains("panicked"), "a clear error, not a panic: {err}");
    assert!(err.contains("secure-office") && err.contains("ca-certificates"), "names the endpoint and the fix: {err}");
}
