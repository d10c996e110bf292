//! `standard`: curbside's own payload, the whole event under `data` (the bytes come from
//! [`crate::event::envelope`]; this JSON tree is what they must equal).

use serde_json::{Value, json};

use crate::event::StatusEvent;

/// The standard payload as a JSON value (the bytes come from [`crate::event::envelope`]).
pub fn standard(e: &StatusEvent) -> Value {
    json!({ "type": crate::event::event_type(e.status), "timestamp": e.occurred_at, "data": e })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::golden::*;
    use super::super::*;
    use super::*;
    use crate::event::Status;

    #[test]
    fn the_fast_standard_body_equals_the_json_tree() {
        let e = with_proof(Status::Arrived);
        let fast: Value = serde_json::from_slice(&body(&Format::Standard, &e, &Context::UTC).unwrap()).unwrap();
        assert_eq!(fast, standard(&e));
    }

    #[test]
    fn standard_wraps_the_whole_event_and_its_attachments() {
        let e = with_proof(Status::Delivered);
        let v: Value = serde_json::from_slice(&body(&Format::Standard, &e, &Context::UTC).unwrap()).unwrap();
        assert_eq!(v["type"], "job.status.delivered");
        assert_eq!(v["data"]["job_id"], "TEST-0001");
        assert_eq!(v["data"]["id"], e.id.to_string());
        assert_eq!(v["timestamp"], serde_json::to_value(e.occurred_at).unwrap());
        let a = &v["data"]["attachments"];
        assert_eq!(a.as_array().unwrap().len(), 3);
        assert_eq!(
            a[2],
            json!({"kind": "signature", "index": 1, "sha256": "ab".repeat(32), "bytes": 1000,
                   "content_type": "image/png", "captured_at": "2026-03-01T23:30:45.123456789Z",
                   "url": "https://files.example/signature-1.png"})
        );
    }
}
