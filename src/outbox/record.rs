//! Encoding of outbox records: one version byte, then JSON. Pure, so it is tested without sled.
//!
//! Do not change the meaning of an existing version: add a new version and teach `decode` to
//! read both (a migration), because gateways in the field hold records written by older releases.

use serde::{Serialize, de::DeserializeOwned};

/// The version written today.
pub const VERSION: u8 = 1;

/// A record that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Empty value.
    #[error("empty record")]
    Empty,
    /// Written by a newer release (or garbage).
    #[error("record version {0} is not known to this release (knows {VERSION})")]
    UnknownVersion(u8),
    /// The JSON does not decode.
    #[error("record does not decode: {0}")]
    Json(#[from] serde_json::Error),
}

/// Version byte + JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(VERSION);
    // Serializing plain structs of strings and numbers into a Vec cannot fail.
    serde_json::to_writer(&mut out, value).expect("record serializes");
    out
}

/// Reads a record written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    match bytes.split_first() {
        None => Err(RecordError::Empty),
        Some((&VERSION, json)) => Ok(serde_json::from_slice(json)?),
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
    fn records_round_trip_and_unknown_versions_are_refused() {
        let v = vec![1u32, 2, 3];
        let bytes = encode(&v);
        assert_eq!(bytes[0], VERSION);
        assert_eq!(decode::<Vec<u32>>(&bytes).unwrap(), v);
        let mut newer = bytes.clone();
        newer[0] = 2;
        assert!(matches!(decode::<Vec<u32>>(&newer), Err(RecordError::UnknownVersion(2))));
        assert!(matches!(decode::<Vec<u32>>(&[]), Err(RecordError::Empty)));
        assert!(matches!(decode::<Vec<u32>>(&[1, b'{']), Err(RecordError::Json(_))));
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
