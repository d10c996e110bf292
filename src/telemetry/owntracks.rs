//! OwnTracks' messages besides the location (`payload` has that), pure: the last will and the
//! commands a back office sends to `owntracks/{user}/{device}/cmd`, as the OwnTracks JSON
//! booklet describes them. A command is untrusted input: anything that is not one curbside
//! carries out is an error saying why, never a panic.

use serde_json::{Value, json};

/// The last will in OwnTracks mode: `_type: "lwt"` with `tst`, the time the connection was
/// made, on the device topic (not retained), so that the Recorder and the apps see the van go
/// away when it disappears without a goodbye.
pub fn lwt(tst: i64) -> Value {
    json!({ "_type": "lwt", "tst": tst })
}

/// A command curbside carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Publish the current position now (answered with `t: "r"`).
    ReportLocation,
}

/// Reads a `cmd` message.
pub fn command(bytes: &[u8]) -> Result<Command, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("_type").and_then(Value::as_str) != Some("cmd") {
        return Err("_type: must be \"cmd\"".into());
    }
    match v.get("action").and_then(Value::as_str) {
        Some("reportLocation") => Ok(Command::ReportLocation),
        Some(other) => Err(format!("action: {other:?} is not one curbside carries out (reportLocation)")),
        None => Err("action: missing".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_will_is_the_booklets_lwt() {
        assert_eq!(lwt(1_763_800_000), json!({"_type": "lwt", "tst": 1_763_800_000}));
    }

    #[test]
    fn commands_are_read_and_anything_else_is_an_error_naming_the_field() {
        assert_eq!(command(br#"{"_type":"cmd","action":"reportLocation"}"#), Ok(Command::ReportLocation));
        for (bad, field) in [
            (&b"{not json"[..], "not JSON"),
            (b"[]", "_type"),
            (br#"{"_type":"location","action":"reportLocation"}"#, "_type"),
            (br#"{"_type":"cmd"}"#, "action"),
            (br#"{"_type":"cmd","action":"dump"}"#, "action"),
            (br#"{"_type":"cmd","action":7}"#, "action"),
            (b"\xff\xfe", "not JSON"),
        ] {
            let e = command(bad).unwrap_err();
            assert!(e.starts_with(field), "{e}");
        }
    }
}
