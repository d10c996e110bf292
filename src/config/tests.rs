//! The config's tests: every key's validation and its error naming the file and the key.

use super::*;
use crate::telemetry::settings::MqttMode;

#[test]
fn the_laptop_example_runs_anywhere_and_the_template_says_what_it_is() {
    let c = Config::parse(&example(true), "laptop").unwrap();
    assert!(matches!(c.gps.source, SourceConfig::Sim { .. }), "{:?}", c.gps.source);
    assert!(c.state_dir.starts_with(std::env::temp_dir()), "{}", c.state_dir.display());
    let template = example(false);
    assert!(template.starts_with("# The gateway template") && template.contains("--laptop"));
    assert_eq!(Config::parse(&template, "template").unwrap().state_dir, PathBuf::from("/var/lib/curbside"));
}

#[test]
fn the_example_config_is_valid_and_every_default_matches_it() {
    let c = Config::parse(EXAMPLE, "example").unwrap();
    assert_eq!(c.gps.source, SourceConfig::Serial { device: "/dev/ttyACM0".into(), baud: 9600 });
    assert_eq!(c.gps.stale_after, Duration::from_secs(10));
    assert_eq!(c.api.listen, "127.0.0.1:8080".parse().unwrap());
    let minimal = Config::parse("vehicle_id = \"van-17\"", "minimal").unwrap();
    let minimal = Config { origin: "example".into(), webhooks: c.webhooks.clone(), ..minimal };
    assert_eq!(format!("{minimal:?}"), format!("{c:?}"), "the example documents the defaults");
}

#[test]
fn the_example_pod_section_parses_and_documents_the_defaults() {
    let start = EXAMPLE.find("# [pod]").expect("the example has a [pod] section");
    let uncommented: String = EXAMPLE[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
        .map(|l| l.split("   #").next().unwrap_or(l).to_string() + "\n")
        .collect();
    let d = Config::parse(&format!("vehicle_id = \"van-17\"\n{uncommented}"), "example")
        .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    let upload = d.pod.upload.as_ref().expect("the example shows an upload target");
    assert_eq!((upload.endpoint.delivery.timeout, upload.endpoint.delivery.concurrency), (Duration::from_secs(120), 2));
    let minimal = Config::parse("vehicle_id = \"van-17\"", "minimal").unwrap();
    assert_eq!(
        (&d.pod.require_photo, &d.pod.require_signature, d.pod.media_budget),
        (&minimal.pod.require_photo, &minimal.pod.require_signature, minimal.pod.media_budget)
    );
    assert!(
        Config::parse("vehicle_id = \"v\"\ntimezone = \"Mars/Olympus\"", "t")
            .unwrap_err()
            .to_string()
            .contains("timezone")
    );
}

#[test]
fn the_example_mqtt_section_documents_the_defaults() {
    let start = EXAMPLE.find("# [mqtt]").expect("the example has an [mqtt] section");
    let uncommented: String = EXAMPLE[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
        .map(|l| format!("{l}\n"))
        .collect();
    let documented = format!("vehicle_id = \"van-17\"\n{uncommented}");
    let d = Config::parse(&documented, "example").unwrap_or_else(|e| panic!("{e}\n{documented}"));
    let minimal = Config::parse(
        "vehicle_id = \"van-17\"\n[mqtt]\nurl = \"mqtts://broker.example.com:8883\"\nusername = \"van-17\"\npassword = \"...\"\nca_file = \"/etc/curbside/ca.pem\"\nclient_cert = \"/etc/curbside/van.pem\"\nclient_key = \"/etc/curbside/van.key\"",
        "example",
    )
    .unwrap();
    assert_eq!(d.mqtt, minimal.mqtt, "every other documented value is the default");
}

#[test]
fn the_example_positions_and_owntracks_http_sections_document_the_defaults() {
    let section = |name: &str| -> String {
        let start = EXAMPLE.find(&format!("# [{name}]")).unwrap_or_else(|| panic!("the example has [{name}]"));
        EXAMPLE[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
            .map(|l| format!("{}\n", l.split(" #").next().unwrap_or(l).trim_end()))
            .collect()
    };
    let documented = format!("vehicle_id = \"van-17\"\n{}{}", section("positions"), section("owntracks_http"));
    let d = Config::parse(&documented, "example").unwrap_or_else(|e| panic!("{e}\n{documented}"));
    assert_eq!(d.positions, crate::telemetry::settings::Positions::default(), "{documented}");
    let h = d.owntracks_http.expect("the example shows [owntracks_http]");
    let minimal = Config::parse(
        "vehicle_id = \"van-17\"\n[owntracks_http]\nurl = \"https://recorder.example.com/pub\"\nusername = \"van-17\"\npassword = \"...\"",
        "t",
    )
    .unwrap();
    assert_eq!(Some(h), minimal.owntracks_http, "every other documented value is the default");
}

#[test]
fn traccar_is_one_transport_with_its_defaults_and_errors_naming_the_key() {
    let c =
        Config::parse("vehicle_id = \"van-17\"\n[traccar]\nurl = \"http://traccar.example.com:5055\"", "t").unwrap();
    let t = c.traccar.unwrap();
    assert_eq!((t.device_id.as_str(), t.timeout), ("van-17", std::time::Duration::from_secs(20)));
    let documented = {
        let start = EXAMPLE.find("# [traccar]").expect("the example has [traccar]");
        let lines: String = EXAMPLE[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .map(|l| format!("{}\n", l.split(" #").next().unwrap_or(l).trim_end()))
            .collect();
        Config::parse(&format!("vehicle_id = \"van-17\"\n{lines}"), "example").unwrap().traccar
    };
    assert_eq!(documented, Some(t), "the example documents the defaults");
    for (text, key) in [
        ("[traccar]\ndevice_id = \"x\"", "traccar.url"),
        ("[traccar]\nurl = \"ftp://x\"", "traccar.url"),
        ("[traccar]\nurl = \"http://u:p@x:5055\"", "traccar.url"),
        ("[traccar]\nurl = \"http://x:5055\"\ndevice_id = \"a b\"", "traccar.device_id"),
        ("[traccar]\nurl = \"http://x:5055\"\ntimeout = \"0s\"", "traccar.timeout"),
        ("[traccar]\nurl = \"http://x:5055\"\n[mqtt]\nurl = \"mqtt://b\"", "traccar"),
    ] {
        let e = error_of(&format!("vehicle_id = \"van-17\"\n{text}"));
        assert_eq!(e.key, key, "{text}: {e}");
    }
}

#[test]
fn owntracks_http_takes_credentials_from_the_url_never_shows_them_and_excludes_mqtt() {
    let c = Config::parse(
        "vehicle_id = \"van-17\"\n[owntracks_http]\nurl = \"https://fleet:p%40ss@rec.example.com:8443/pub?x=1\"",
        "t",
    )
    .unwrap();
    let h = c.owntracks_http.unwrap();
    assert_eq!(h.url.as_str(), "https://rec.example.com:8443/pub?x=1");
    assert_eq!(h.credentials, Some(("fleet".into(), "p@ss".into())));
    assert_eq!((h.user.as_str(), h.device.as_str()), ("curbside", "van-17"));
    assert!(!format!("{h:?}").contains("p@ss"), "{h:?}");
    for (text, key) in [
        ("[owntracks_http]\nurl = \"mqtt://b\"", "owntracks_http.url"),
        ("[owntracks_http]\nusername = \"u\"", "owntracks_http.url"),
        ("[owntracks_http]\nurl = \"http://b/pub\"\npassword = \"p\"", "owntracks_http.password"),
        ("[owntracks_http]\nurl = \"http://b/pub\"\ndevice = \"a/b\"", "owntracks_http.device"),
        ("[owntracks_http]\nurl = \"http://b/pub\"\ntimeout = \"0s\"", "owntracks_http.timeout"),
        ("[owntracks_http]\nurl = \"http://b/pub\"\n[mqtt]\nurl = \"mqtt://b\"", "owntracks_http"),
        ("[mqtt]\nurl = \"mqtt://b\"\nbacklog_max_mb = 4", "mqtt.backlog_max_mb"),
    ] {
        let e = Config::parse(&format!("vehicle_id = \"v\"\n{text}"), "t.toml").unwrap_err();
        assert_eq!((e.file.as_str(), e.key.as_str()), ("t.toml", key), "{text}: {e}");
        assert!(!e.to_string().contains("p%40ss"), "{e}");
        if key.starts_with("mqtt.") {
            assert!(e.message.contains("[positions]"), "says where it went: {e}");
        }
    }
}

#[test]
fn embedded_defaults_run_the_simulator() {
    let c = Config::embedded();
    assert_eq!(c.gps.source.kind(), "sim");
    assert_eq!(c.state_dir, PathBuf::from("curbside-state"));
}

#[test]
fn the_mqtt_order_follows_the_mode_unless_set_and_a_bad_one_names_its_key() {
    use crate::telemetry::settings::Order;
    let order = |extra: &str| {
        let text = format!("vehicle_id = \"v\"\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\n{extra}");
        Config::parse(&text, "test.toml").map(|c| c.mqtt.unwrap().order)
    };
    assert_eq!(order("").unwrap(), Order::LiveFirst);
    assert_eq!(order("mode = \"owntracks\"").unwrap(), Order::Time);
    assert_eq!(order("order = \"time\"").unwrap(), Order::Time);
    assert_eq!(order("mode = \"owntracks\"\norder = \"live_first\"").unwrap(), Order::LiveFirst);
    let e = order("order = \"newest\"").unwrap_err();
    assert_eq!((e.file.as_str(), e.key.as_str()), ("test.toml", "mqtt.order"), "{e}");
    assert!(e.message.contains("\"time\" or \"live_first\""), "{e}");
}

fn error_of(text: &str) -> ConfigError {
    Config::parse(text, "test.toml").unwrap_err()
}

const HOOK_WITH_HEADER: &str =
    "vehicle_id = \"v\"\n[[webhook]]\nname = \"h\"\nurl = \"http://x/\"\nheaders = { \"H\" = \"1\" }\n";

#[test]
fn errors_name_the_file_and_the_key() {
    let cases = [
        ("", "vehicle_id"),
        ("vehicle_id = \"van 17\"", "vehicle_id"),
        ("vehicle_id = \"v\"\n[gps]\nbaud = 12", "gps.baud"),
        ("vehicle_id = \"v\"\n[gps]\nbaud = \"fast\"", "gps.baud"),
        ("vehicle_id = \"v\"\n[gps]\nsource = \"usb\"", "gps.source"),
        ("vehicle_id = \"v\"\n[gps]\nsource = \"replay\"", "gps.file"),
        ("vehicle_id = \"v\"\n[gps]\nstale_after = \"10\"", "gps.stale_after"),
        ("vehicle_id = \"v\"\n[gps]\nsource = \"gpsd\"\ngpsd = \"localhost\"", "gps.gpsd"),
        ("vehicle_id = \"v\"\n[gps]\ncolour = 1", "gps.colour"),
        ("vehicle_id = \"v\"\n[api]\nlisten = \"0.0.0.0:8080\"", "api.token"),
        ("vehicle_id = \"v\"\n[api]\nlisten = \"nowhere\"", "api.listen"),
        ("vehicle_id = \"v\"\n[api]\nmax_connections = 0", "api.max_connections"),
        ("vehicle_id = \"v\"\n[api]\nmax_connections = 100000", "api.max_connections"),
        ("vehicle_id = \"v\"\n[api]\nrequest_timeout = \"1ms\"", "api.request_timeout"),
        ("vehicle_id = ", "(syntax)"),
    ];
    for (text, key) in cases {
        let e = error_of(text);
        assert_eq!(e.key, key, "{text:?} gave {e}");
        assert_eq!(e.file, "test.toml");
        assert!(e.to_string().starts_with("test.toml: "), "{e}");
    }
    assert!(error_of("vehicle_id = \"v\"\n[gps]\ncolour = 1").message.contains("colour"));
    // Headers curbside writes itself, or that contradict an auth option, are refused by name.
    let hook = |h: &str| HOOK_WITH_HEADER.replace("H", h);
    for (text, key) in [
        (hook("webhook-id"), "webhook[0].headers.webhook-id"),
        (hook("Webhook-Signature"), "webhook[0].headers.Webhook-Signature"),
        (hook("Content-Type"), "webhook[0].headers.Content-Type"),
        (hook("Host"), "webhook[0].headers.Host"),
        (hook("user-agent"), "webhook[0].headers.user-agent"),
        (hook("Content-Digest"), "webhook[0].headers.Content-Digest"),
        (hook("Authorization") + "bearer = \"t\"\n", "webhook[0].headers.Authorization"),
        (
            "vehicle_id = \"v\"\n[[webhook]]\nname = \"h\"\nurl = \"http://x/\"\nbearer = \"t\"\n\
             basic = { username = \"u\", password = \"p\" }\n"
                .to_string(),
            "webhook[0].bearer",
        ),
    ] {
        assert_eq!(error_of(&text).key, key, "{text}");
    }
    // Headers that carry no protocol meaning stay allowed, Authorization too when no auth option is set.
    for ok in ["X-Tenant", "Authorization"] {
        Config::parse(&HOOK_WITH_HEADER.replace("H", ok), "test.toml").unwrap();
    }
}

#[test]
fn a_format_key_with_another_format_or_a_bad_value_names_the_key() {
    let hook = |extra: &str| format!("vehicle_id = \"v\"\n[[webhook]]\nname = \"h\"\nurl = \"http://x/\"\n{extra}\n");
    for (extra, key, says) in [
        ("courier_code = \"acme\"", "webhook[0].courier_code", "only applies with format = trackingmore"),
        (
            "format = \"carrier\"\ntransform = \".\"",
            "webhook[0].transform",
            "only applies with format = jq or antsroute",
        ),
        (
            "format = \"track-pod\"\nevent_names = { teleported = \"X\" }",
            "webhook[0].event_names.teleported",
            "is not a status",
        ),
        ("format = \"jq\"", "webhook[0].transform", "is required"),
        ("format = \"jq\"\ntransform = \".data |\"", "webhook[0].transform", "does not compile"),
        ("format = \"trackingmore\"\nsignature_header = \"content-type\"", "webhook[0].signature_header", "reserved"),
        ("format = \"teletype\"", "webhook[0].format", "must be one of"),
        ("format = \"detrack-v1\"\nevents = [\"delivered\", \"route_started\"]", "webhook[0].events", "cannot say"),
        ("format = \"trackingmore\"\nevents = [\"route_ended\"]", "webhook[0].events", "cannot say"),
    ] {
        let e = error_of(&hook(extra));
        assert_eq!(e.key, key, "{extra}: {e}");
        assert!(e.message.contains(says), "{extra}: {e}");
    }
    // Route statuses go where the format can say them.
    Config::parse(&hook("format = \"track-pod\"\nevents = [\"route_started\", \"delivered\"]\nevent_names = { route_ended = \"RouteClosed\" }"), "test.toml").unwrap();
    Config::parse(&hook("events = [\"break_started\"]"), "test.toml").unwrap();
    // TrackingMore's secret is its own (a plain string), not a Standard Webhooks one.
    Config::parse(&hook("format = \"trackingmore\"\nsecret = \"2e55b9a3-4dd1\""), "test.toml").unwrap();
}

#[test]
fn mqtt_defaults_follow_the_vehicle_and_errors_name_the_key() {
    let c = Config::parse("vehicle_id = \"van-17\"\n[mqtt]\nurl = \"mqtts://broker.example.com\"\nusername = \"u\"\npassword = \"secret-pw\"", "t").unwrap();
    let m = c.mqtt.unwrap();
    assert_eq!((m.host.as_str(), m.port, m.tls), ("broker.example.com", 8883, true));
    assert_eq!(
        (m.client_id.as_str(), m.topic_prefix.as_str(), m.qos_position),
        ("curbside-van-17", "curbside/van-17", 1)
    );
    assert!(!format!("{m:?}").contains("secret-pw"));
    let ot = Config::parse("vehicle_id = \"van-17\"\n[mqtt]\nurl = \"mqtt://localhost\"\nmode = \"owntracks\"", "t")
        .unwrap();
    assert_eq!(ot.mqtt.unwrap().mode, MqttMode::OwnTracks { user: "curbside".into(), device: "van-17".into() });
    for (text, k) in [
        ("[mqtt]\nusername = \"u\"", "mqtt.url"),
        ("[mqtt]\nurl = \"http://b\"", "mqtt.url"),
        ("[mqtt]\nurl = \"mqtt://b\"\nqos_position = 3", "mqtt.qos_position"),
        ("[mqtt]\nurl = \"mqtt://b\"\nmode = \"x\"", "mqtt.mode"),
        ("[mqtt]\nurl = \"mqtt://b\"\nbatch = \"60s\"", "mqtt.batch"),
        ("[mqtt]\nurl = \"mqtt://b\"\nmode = \"compact\"\nbatch = \"2h\"", "mqtt.batch"),
        ("[mqtt]\nurl = \"mqtt://b\"\ntopic_prefix = \"a/#\"", "mqtt.topic_prefix"),
        ("[mqtt]\nurl = \"mqtt://b\"\npassword = \"p\"", "mqtt.password"),
        ("[mqtt]\nurl = \"mqtts://b\"\nclient_cert = \"c.pem\"", "mqtt.client_key"),
        ("[mqtt]\nurl = \"mqtt://b\"\nca_file = \"ca.pem\"", "mqtt.url"),
        ("[positions]\ninterval_moving_min = \"5\"", "positions.interval_moving_min"),
        ("[positions]\ninterval_moving_min = \"1m\"", "positions.interval_moving_max"),
        ("[positions]\ndistance_m = -1.0", "positions.distance_m"),
        ("[positions]\nheading_change_deg = 270.0", "positions.heading_change_deg"),
        ("[positions]\nbacklog_max_points = 0", "positions.backlog_max_points"),
        ("[positions]\nbacklog_max_mb = 0", "positions.backlog_max_mb"),
        ("[positions]\nbacklog_max_age = \"10s\"", "positions.backlog_max_age"),
        ("[positions]\ndaily_budget_mb = 0.0", "positions.daily_budget_mb"),
        ("[positions]\ndaily_budget_mb = -5.0", "positions.daily_budget_mb"),
        ("[positions]\ndaily_budget_mb = 5.0\nover_budget_interval = \"0s\"", "positions.over_budget_interval"),
    ] {
        let e = Config::parse(&format!("vehicle_id = \"v\"\n{text}"), "t").unwrap_err();
        assert_eq!(e.key, k, "{text}: {e}");
    }
}

#[test]
fn a_token_allows_a_non_loopback_listen_and_is_never_printed() {
    let c =
        Config::parse("vehicle_id = \"v\"\n[api]\nlisten = \"0.0.0.0:8080\"\ntoken = \"s3cret-s3cret-s3cret\"", "t")
            .unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(duration(Some("500ms"), "1s"), Ok(Duration::from_millis(500)));
    assert_eq!(duration(None, "2m"), Ok(Duration::from_secs(120)));
    assert!(duration(Some("-1s"), "1s").is_err());
    assert!(duration(Some("1e400s"), "1s").is_err());
}

#[test]
fn batching_pings_half_as_often_as_it_sends_unless_told() {
    let keepalive = |extra: &str| {
        let text = format!("vehicle_id = \"v\"\n[mqtt]\nurl = \"mqtt://b\"\nmode = \"compact\"\n{extra}");
        Config::parse(&text, "t").unwrap().mqtt.unwrap().keepalive.as_secs()
    };
    assert_eq!(keepalive(""), 30);
    assert_eq!(keepalive("batch = \"60s\""), 120);
    assert_eq!(keepalive("batch = \"5s\""), 30, "never below the default");
    assert_eq!(keepalive("batch = \"1h\""), 1200, "at most 20 minutes");
    assert_eq!(keepalive("batch = \"60s\"\nkeepalive = \"45s\""), 45, "as written");
}
