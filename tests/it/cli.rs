//! The binary as users run it: exit codes, config errors naming file and key, replay output.

use std::process::Command;

fn curbside() -> Command {
    crate::common::curbside()
}

#[test]
fn config_check_accepts_the_example_and_names_file_and_key_of_an_error() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/curbside.example.toml");
    let ok = curbside().args(["config", "check", example]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "vehicle_id = \"van-17\"\n[gps]\nbaud = 12\n").unwrap();
    let out = curbside().args(["config", "check"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("gps.baud"), "{err}");

    let missing = curbside().args(["config", "check", "/nonexistent/curbside.toml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(64));
}

#[test]
fn gps_replay_prints_one_json_object_per_fix_with_every_field() {
    let log = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpsd/mtk-3329.log");
    let out = curbside().args(["gps", "replay", log]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    for field in ["time", "lat", "lon", "alt_m", "speed_mps", "course_deg", "mode", "quality", "sats", "hdop"] {
        assert!(first.get(field).is_some(), "{field} missing in {first}");
    }
    assert_eq!(first["time"], "2011-02-21T10:21:28Z");
    assert_eq!(first["mode"], "2d");
}

#[test]
fn gps_replay_of_a_missing_file_fails_cleanly() {
    let out = curbside().args(["gps", "replay", "/nonexistent.nmea"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.nmea"));
}

#[test]
fn run_on_the_simulator_logs_fixes_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded defaults with a free port (8080 may be taken on a test machine).
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "vehicle_id = \"demo-van\"\nstate_dir = \"curbside-state\"\n[gps]\nsource = \"sim\"\n[api]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let mut child = curbside()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // SIGTERM once the first fix is logged (under qemu on a loaded machine that can take a
    // while), reading the log as it comes.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("gps fix acquired") {
                let _ = tx.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let fixed = rx.recv_timeout(std::time::Duration::from_secs(120)).is_ok();
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(fixed, "no fix logged within 120 s: {log}");
    assert!(status.success(), "{log}");
    assert!(log.contains("SIGTERM") && log.contains("curbside stopped"), "{log}");
    assert!(dir.path().join("curbside-state").is_dir());
}

#[test]
fn gps_watch_shows_the_live_fix_of_the_simulated_route() {
    let out = curbside().args(["gps", "watch", "--source", "--json", "--seconds", "3"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().expect("a line per second")).unwrap();
    assert_eq!(last["connected"], true, "{last}");
    assert_eq!(last["live"]["mode"], "3d", "{last}");
    assert!(last["live"]["lat"].as_f64().is_some_and(|lat| (53.5..53.6).contains(&lat)), "{last}");
}

#[test]
fn tap_status_and_outbox_commands_talk_to_the_running_agent() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::agent::free_addr().port();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "vehicle_id = \"van-17\"\nstate_dir = \"s\"\n[gps]\nsource = \"sim\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
             [[webhook]]\nname = \"bo\"\nurl = \"http://127.0.0.1:9/hook\"\n"
        ),
    )
    .unwrap();
    let run =
        |args: &[&str]| curbside().args(args).arg("--config").arg(&config).current_dir(dir.path()).output().unwrap();
    // Not running yet: a clear error.
    let down = run(&["status"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach the agent"));

    let mut agent = curbside()
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if run(&["status"]).status.success() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(up, "agent did not come up");
    let tap = run(&["tap", "delivered", "--job", "J-1", "--received-by", "Jo", "--idempotency-key", "k1"]);
    assert!(tap.status.success(), "{}", String::from_utf8_lossy(&tap.stderr));
    let event: serde_json::Value = serde_json::from_slice(&tap.stdout).unwrap();
    assert_eq!((event["job_id"].as_str(), event["received_by"].as_str()), (Some("J-1"), Some("Jo")));
    let again = run(&["tap", "delivered", "--job", "J-1", "--received-by", "Jo", "--idempotency-key", "k1"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["id"], event["id"]);

    let bad = run(&["tap", "failed", "--job", "J-1"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("422: reason_code"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let status = String::from_utf8(run(&["status"]).stdout).unwrap();
    assert!(status.contains("webhook  bo") && status.contains("1 pending"), "{status}");
    let list = String::from_utf8(run(&["outbox", "list"]).stdout).unwrap();
    assert!(list.contains(event["id"].as_str().unwrap()) && list.contains("pending"), "{list}");
    let failed = String::from_utf8(run(&["outbox", "list", "--failed"]).stdout).unwrap();
    assert!(failed.contains("nothing waiting"), "{failed}");

    // The day's route: a route event, once; the day so far.
    let show = String::from_utf8(run(&["route", "show"]).stdout).unwrap();
    assert!(show.contains("no route loaded") && show.contains("not started"), "{show}");
    let start = run(&["route", "start", "--idempotency-key", "r1"]);
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));
    let started: serde_json::Value = serde_json::from_slice(&start.stdout).unwrap();
    assert_eq!((started["status"].as_str(), started["job_id"].as_str()), (Some("route_started"), None));
    let again = run(&["route", "start", "--idempotency-key", "r1"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["id"], started["id"]);
    let twice = run(&["route", "start"]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("422: status"),
        "{}",
        String::from_utf8_lossy(&twice.stderr)
    );
    assert!(run(&["route", "break-start"]).status.success());
    let show = String::from_utf8(run(&["route", "show"]).stdout).unwrap();
    assert!(show.contains("started ") && show.contains("on a break"), "{show}");
    let json: serde_json::Value = serde_json::from_slice(&run(&["route", "show", "--json"]).stdout).unwrap();
    assert_eq!(json["on_break"], true);
    agent.kill().unwrap();
    agent.wait().unwrap();
}

/// `gps watch` shows what the running agent sees (it holds the receiver); with no agent it says
/// how to open the receiver directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gps_watch_asks_the_running_agent() {
    let agent = crate::common::agent::start("").await;
    let config = agent.dir.path().join("cli.toml");
    std::fs::write(&config, format!("vehicle_id = \"van-17\"\n[api]\nlisten = \"{}\"\n", agent.addr())).unwrap();
    let out = tokio::task::block_in_place(|| {
        curbside().args(["gps", "watch", "--json", "--seconds", "3", "--config"]).arg(&config).output().unwrap()
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().expect("a line a second")).unwrap();
    assert_eq!(first["source"], "sim", "the agent's source, not a second one: {text}");
    let _dir = agent.stop().await;
    let out = tokio::task::block_in_place(|| {
        curbside().args(["gps", "watch", "--seconds", "3", "--config"]).arg(&config).output().unwrap()
    });
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--source"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `curbside tap delivered --photo … --signature …` sends the files as a multipart tap; a file
/// over its limit is refused before anything is sent, naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_sends_photos_and_a_signature() {
    use crate::common::pod::{jpeg, png, sha256};
    let agent = crate::common::agent::start("").await;
    let dir = agent.dir.path().to_path_buf();
    let config = dir.join("cli.toml");
    std::fs::write(&config, format!("vehicle_id = \"van-17\"\n[api]\nlisten = \"{}\"\n", agent.addr())).unwrap();
    let (door, parcel, sig) = (jpeg(1, 40_000), jpeg(2, 60_000), png(3));
    std::fs::write(dir.join("door.jpg"), &door).unwrap();
    std::fs::write(dir.join("parcel.jpg"), &parcel).unwrap();
    std::fs::write(dir.join("sig.png"), &sig).unwrap();
    let tap = |extra: &[&str]| {
        let mut c = curbside();
        c.args(["tap", "delivered", "--job", "J-9", "--received-by", "Ada"]).args(extra).arg("--config").arg(&config);
        c.current_dir(&dir);
        tokio::task::block_in_place(|| c.output().unwrap())
    };
    let out = tap(&["--photo", "door.jpg", "--photo", "parcel.jpg", "--signature", "sig.png"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let event: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shas: Vec<_> = event["attachments"].as_array().unwrap().iter().map(|a| a["sha256"].clone()).collect();
    assert_eq!(shas, [sha256(&door), sha256(&parcel), sha256(&sig)]);
    assert_eq!(event["received_by"], "Ada");
    let mut big = jpeg(4, 1000);
    big.resize(2 << 20, 0);
    std::fs::write(dir.join("big.png"), &big).unwrap();
    let out = tap(&["--signature", "big.png"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--signature big.png") && err.contains("larger"), "{err}");
    let out = tap(&["--photo", "missing.jpg"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--photo missing.jpg"));
    agent.stop().await;
}
