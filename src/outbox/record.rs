//! Encoding of outbox records: one version byte, then the record. Pure, so it is tested without
//! sled.
//!
//! | version | written by | the record |
//! |---|---|---|
//! | 1 | releases up to eef64a4 (2026-12-04) | JSON (`serde_json`) |
//! | 2 | today | compact binary, field by field: [`super::binary`] |
//!
//! [`decode`] reads both, so a store written by an older release opens and drains (the test
//! `store_v1` drains one); [`encode`] writes version 2. The `history` tree's steps were JSON
//! without a version byte before version 2: a record starting with `{` is read as that.
//!
//! Do not change the meaning of an existing version: add a new version and teach `decode` to
//! read both (a migration), because gateways in the field hold records written by older releases.

use serde::de::DeserializeOwned;

use super::binary::{BinaryError, Record, Writer};

/// The version written today.
pub const VERSION: u8 = 2;
/// JSON, as releases up to eef64a4 wrote every record.
pub const VERSION_JSON: u8 = 1;

/// A record that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Empty value.
    #[error("empty record")]
    Empty,
    /// Written by a newer release (or garbage).
    #[error("record version {0} is not known to this release (knows {VERSION_JSON} and {VERSION})")]
    UnknownVersion(u8),
    /// A version 1 record whose JSON does not decode.
    #[error("record does not decode: {0}")]
    Json(#[from] serde_json::Error),
    /// A version 2 record that does not decode.
    #[error(transparent)]
    Binary(#[from] BinaryError),
}

/// The version byte, then the compact record.
pub fn encode<T: Record>(value: &T) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(128));
    w.0.push(VERSION);
    value.put(&mut w);
    w.0
}

/// Reads a record written by [`encode`], or by an older release (see the module docs).
pub fn decode<T: Record + DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    match bytes.split_first() {
        None => Err(RecordError::Empty),
        Some((&VERSION, rest)) => Ok(super::binary::read(rest)?),
        Some((&VERSION_JSON, json)) => Ok(serde_json::from_slice(json)?),
        Some((b'{', _)) => Ok(serde_json::from_slice(bytes)?),
        Some((&v, _)) => Err(RecordError::UnknownVersion(v)),
    }
}

/// Key of a per-endpoint record: endpoint name, a NUL, then the sequence big-endian, so that an
/// endpoint's records sort in outbox order under its prefix. Endpoint names never contain NUL
/// (config validation allows `[A-Za-z0-9._-]`).
pub fn endpoint_key(endpoint: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(endpoint.len() + 9);
    k.extend_from_slice(endpoint.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The prefix of every key of `endpoint`.
pub fn endpoint_prefix(endpoint: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(endpoint.len() + 1);
    k.extend_from_slice(endpoint.as_bytes());
    k.push(0);
    k
}

/// Splits an [`endpoint_key`] back into endpoint and sequence.
pub fn split_endpoint_key(key: &[u8]) -> Option<(&str, u64)> {
    let nul = key.iter().position(|b| *b == 0)?;
    let (name, rest) = key.split_at(nul);
    let seq: [u8; 8] = rest.get(1..9)?.try_into().ok()?;
    Some((std::str::from_utf8(name).ok()?, u64::from_be_bytes(seq)))
}

/// A sequence as a key.
pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_older_versions_read_and_unknown_ones_are_refused() {
        use super::super::types::DeliveryState;
        let mut d = DeliveryState::new("JOB-1");
        d.last_error = Some("HTTP 500".into());
        let bytes = encode(&d);
        assert_eq!(bytes[0], VERSION);
        assert_eq!(decode::<DeliveryState>(&bytes).unwrap(), d);
        let mut v1 = vec![VERSION_JSON];
        v1.extend(serde_json::to_vec(&d).unwrap());
        assert_eq!(decode::<DeliveryState>(&v1).unwrap(), d, "version 1: JSON");
        assert_eq!(decode::<DeliveryState>(&v1[1..]).unwrap(), d, "JSON without a version byte");
        let mut newer = bytes.clone();
        newer[0] = 3;
        assert!(matches!(decode::<DeliveryState>(&newer), Err(RecordError::UnknownVersion(3))));
        assert!(matches!(decode::<DeliveryState>(&[]), Err(RecordError::Empty)));
        assert!(matches!(decode::<DeliveryState>(&[1, b'{']), Err(RecordError::Json(_))));
        assert!(matches!(decode::<DeliveryState>(&bytes[..bytes.len() - 1]), Err(RecordError::Binary(_))));
    }

    #[test]
    fn endpoint_keys_sort_by_sequence_within_an_endpoint() {
        let a = endpoint_key("hook", 2);
        let b = endpoint_key("hook", 256);
        assert!(a < b);
        assert!(a.starts_with(&endpoint_prefix("hook")));
        assert!(!endpoint_key("hook2", 1).starts_with(&endpoint_prefix("hook")));
        assert_eq!(split_endpoint_key(&b), Some(("hook", 256)));
        assert_eq!(split_endpoint_key(b"junk"), None);
    }
}
