//! A tap request as the API receives it, from arbitrary bytes: the job id from the path, the
//! `Idempotency-Key` and `Authorization` headers, the body. Fields are separated by 0xFF (never
//! valid UTF-8, so the fuzzer can place any text in any field). Must never panic; every refusal
//! is a 4xx naming a field; every accepted tap serialises into an event that reads back the same.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use curbside::api::{bearer, parse_tap_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == 0xFF);
    let job = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let key = parts.next();
    let auth = parts.next();
    let body = parts.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    if let Some(v) = key.and_then(|k| HeaderValue::from_bytes(k).ok()) {
        headers.insert("idempotency-key", v);
    }
    if let Some(v) = auth.and_then(|a| std::str::from_utf8(a).ok()) {
        let _ = bearer(v);
    }
    match parse_tap_request(&job, &headers, body) {
        Ok((tap, _key)) => {
            let event = curbside::event::StatusEvent {
                id: uuid::Uuid::nil(),
                sequence: 1,
                job_id: job.clone(),
                status: tap.status,
                reason_code: tap.reason_code,
                reason: tap.reason.clone(),
                received_by: tap.received_by.clone(),
                note: tap.note.clone(),
                items: tap.items.clone(),
                occurred_at: chrono::DateTime::UNIX_EPOCH,
                clock_source: curbside::gps::clock::ClockSource::System,
                location: None,
                vehicle_id: "van".into(),
                driver_id: None,
                attachments: Vec::new(),
                source: curbside::event::Source::Driver,
                stop: None,
            };
            let json = serde_json::to_vec(&event).unwrap();
            let back: curbside::event::StatusEvent = serde_json::from_slice(&json).unwrap();
            assert_eq!(back, event);
            assert!(tap.is_recorded_by(&back));
        }
        Err(e) => {
            assert!(e.status().is_client_error(), "{e:?}");
            assert!(e.field().is_some(), "{e:?}");
        }
    }
});
