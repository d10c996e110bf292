//! What the golden tests of every format share: sample events and the shape comparison with a
//! document's example.

use chrono::DateTime;
use serde_json::Value;

use super::*;
use crate::event::{Attachment, AttachmentKind, Status, StatusEvent};

pub(super) fn event(status: Status) -> StatusEvent {
    let mut e = sample("van-17");
    e.status = status;
    e
}

/// A delivered event with two photos and a signature, uploaded, at a fixed time.
pub(super) fn with_proof(status: Status) -> StatusEvent {
    let mut e = event(status);
    e.occurred_at = "2026-03-01T23:30:45.123456789Z".parse().unwrap();
    e.location.as_mut().unwrap().lat = 53.55073000000001;
    e.driver_id = Some("Adam".into());
    for (kind, index) in [(AttachmentKind::Photo, 1), (AttachmentKind::Photo, 2), (AttachmentKind::Signature, 1)] {
        e.attachments.push(Attachment {
            kind,
            index,
            sha256: "ab".repeat(32),
            bytes: 1000,
            content_type: "image/png".into(),
            captured_at: e.occurred_at,
            url: Some(format!("https://files.example/{}-{index}.png", kind.as_str())),
        });
    }
    e
}

pub(super) fn doc(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/formats/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `ours` has every field of the document's `example`, each of the same JSON type (a null
/// in the example may be anything: it is a field the example leaves unknown), and no field
/// the example lacks but `extra`. Arrays are compared element by element with the example's
/// first.
pub(super) fn same_shape(example: &Value, ours: &Value, path: &str, extra: &[&str]) {
    shape(example, ours, path, extra, false)
}

/// As [`same_shape`], where curbside may also send null for a field it does not know
/// (Detrack V2 sends unknown fields as null).
pub(super) fn same_shape_or_null(example: &Value, ours: &Value, path: &str) {
    shape(example, ours, path, &[], true)
}

pub(super) fn shape(example: &Value, ours: &Value, path: &str, extra: &[&str], null_ok: bool) {
    let same_shape = |d: &Value, o: &Value, p: &str, e: &[&str]| shape(d, o, p, e, null_ok);
    match (example, ours) {
        (Value::Null, _) => {}
        (_, Value::Null) if null_ok => {}
        (Value::Object(d), Value::Object(o)) => {
            for (k, v) in d {
                let ov = o.get(k).unwrap_or_else(|| panic!("{path}.{k} is missing in {ours}"));
                same_shape(v, ov, &format!("{path}.{k}"), extra);
            }
            for k in o.keys() {
                assert!(d.contains_key(k) || extra.contains(&k.as_str()), "{path}.{k} is not in the document");
            }
        }
        (Value::Array(d), Value::Array(o)) => {
            if let Some(first) = d.first() {
                for (i, ov) in o.iter().enumerate() {
                    same_shape(first, ov, &format!("{path}[{i}]"), extra);
                }
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        (d, o) => panic!("{path}: the document has {d}, curbside sends {o}"),
    }
}

pub(super) fn is_time(v: &Value, fraction: usize, offset: bool) -> bool {
    let Some(s) = v.as_str() else { return false };
    let Ok(t) = DateTime::parse_from_rfc3339(s) else { return false };
    let frac = s.split_once('.').map_or(0, |(_, r)| r.chars().take_while(char::is_ascii_digit).count());
    frac == fraction && (offset != s.ends_with('Z')) && t.timestamp() > 0
}
