//! The systemd unit: the notify/watchdog/restart settings the agent relies on, and its hardening
//! score (`systemd-analyze security --offline=true`, from Debian's `systemd`; `.ci/run` installs it).

use std::process::Command;

fn unit() -> (std::path::PathBuf, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/curbside.service");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

#[test]
fn the_unit_is_notify_with_a_watchdog_restarts_always_and_does_not_wait_for_the_network() {
    let (_, text) = unit();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for needed in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "Restart=always",
        "StateDirectory=curbside",
        "ConfigurationDirectory=curbside",
        "SupplementaryGroups=dialout",
        "ExecStart=/usr/bin/curbside run --config /etc/curbside/curbside.toml",
    ] {
        assert!(lines.contains(&needed), "{needed} missing");
    }
    // Room for the largest connection cap the config allows, and as much again for the rest.
    let nofile: u32 = lines.iter().find_map(|l| l.strip_prefix("LimitNOFILE=")).expect("LimitNOFILE").parse().unwrap();
    assert!(nofile >= 2 * curbside::config::MAX_API_CONNECTIONS, "LimitNOFILE={nofile}");
    let settings: Vec<&&str> = lines.iter().filter(|l| !l.starts_with('#')).collect();
    assert!(
        !settings.iter().any(|l| l.contains("network-online") || l.contains("network.target")),
        "offline-first: the agent must not wait for the network"
    );
}

#[test]
fn the_unit_scores_2_5_or_lower() {
    let (path, _) = unit();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze ({e}): install systemd (Debian: apt-get install systemd); .ci/run does")
        });
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for curbside.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no score in: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(score <= 2.5, "exposure {score} > 2.5:\n{text}");
}
