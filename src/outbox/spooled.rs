//! What one record of the outbox's [`super::spool`] holds: an event, the endpoints it is for,
//! and every write the tap makes beside it in sled (its idempotency key, what parts keep with it).
//!
//! The spool is the write-ahead log of a tap: the record is appended and synced first (the one
//! device flush a tap waits for), and the sled writes it carries are applied after, unsynced, with
//! `meta`'s `applied` mark in the same transaction. A crash before sled flushed them loses
//! nothing: [`super::Outbox::open`] applies again every record after the mark (see
//! [`super::journal`]).
//!
//! # Layout (version 1; numbers little-endian)
//! | bytes | what |
//! |---|---|
//! | 1 | version, 1 |
//! | 1 | endpoints the event is for, n; then n times: 1 byte length, the endpoint's name |
//! | 2 | the job id's length; the job id |
//! | 2 | the idempotency record's key length (0: none); the key (the event is its value) |
//! | 2 | writes beside it, m; then m times: 1 byte tree name length, the name, 2 bytes key length, the key, 4 bytes value length, the value |
//! | rest | the event, as [`super::record::encode`] writes it |

/// The version this build writes (and the only one it reads).
pub const VERSION: u8 = 1;

/// One write a tap makes in a part's tree beside its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub tree: Vec<u8>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    /// The endpoints that must each take the event before it may go.
    pub targets: Vec<String>,
    pub job_id: String,
    /// The idempotency record's key, if the tap had one.
    pub idem: Option<Vec<u8>>,
    pub writes: Vec<Write>,
    /// The event's record bytes.
    pub event: Vec<u8>,
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpooledError {
    #[error("spooled record of version {0}, which this build does not read")]
    Version(u8),
    #[error("spooled record cut short")]
    Short,
    #[error("spooled record's {0} is too long")]
    TooLong(&'static str),
    #[error("spooled record's text is not UTF-8")]
    Text,
}

fn short<T: TryFrom<usize>>(n: usize, what: &'static str) -> Result<T, SpooledError> {
    T::try_from(n).map_err(|_| SpooledError::TooLong(what))
}

/// Encodes a record. Fails only on a field longer than its length prefix holds.
pub fn encode(
    targets: &[&str],
    job_id: &str,
    idem: Option<&[u8]>,
    writes: &[Write],
    event: &[u8],
) -> Result<Vec<u8>, SpooledError> {
    let mut out = Vec::with_capacity(16 + job_id.len() + event.len());
    out.push(VERSION);
    out.push(short::<u8>(targets.len(), "endpoint list")?);
    for t in targets {
        out.push(short::<u8>(t.len(), "endpoint name")?);
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&short::<u16>(job_id.len(), "job id")?.to_le_bytes());
    out.extend_from_slice(job_id.as_bytes());
    let idem = idem.unwrap_or_default();
    out.extend_from_slice(&short::<u16>(idem.len(), "idempotency key")?.to_le_bytes());
    out.extend_from_slice(idem);
    out.extend_from_slice(&short::<u16>(writes.len(), "list of writes")?.to_le_bytes());
    for w in writes {
        out.push(short::<u8>(w.tree.len(), "tree name")?);
        out.extend_from_slice(&w.tree);
        out.extend_from_slice(&short::<u16>(w.key.len(), "key")?.to_le_bytes());
        out.extend_from_slice(&w.key);
        out.extend_from_slice(&short::<u32>(w.value.len(), "value")?.to_le_bytes());
        out.extend_from_slice(&w.value);
    }
    out.extend_from_slice(event);
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SpooledError> {
        if self.0.len() < n {
            return Err(SpooledError::Short);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn len(&mut self, bytes: usize) -> Result<usize, SpooledError> {
        let b = self.take(bytes)?;
        let mut n = [0u8; 8];
        n[..bytes].copy_from_slice(b);
        Ok(u64::from_le_bytes(n) as usize)
    }
    fn field(&mut self, bytes: usize) -> Result<&'a [u8], SpooledError> {
        let n = self.len(bytes)?;
        self.take(n)
    }
    fn text(&mut self, bytes: usize) -> Result<String, SpooledError> {
        String::from_utf8(self.field(bytes)?.to_vec()).map_err(|_| SpooledError::Text)
    }
}

/// What every record starts with: the version, then the endpoints and the job.
fn start(r: &mut Reader<'_>) -> Result<(Vec<String>, String), SpooledError> {
    let version = r.take(1)?[0];
    if version != VERSION {
        return Err(SpooledError::Version(version));
    }
    let n = r.len(1)?;
    let targets = (0..n).map(|_| r.text(1)).collect::<Result<Vec<_>, _>>()?;
    Ok((targets, r.text(2)?))
}

/// The endpoints and the job of a record, without the rest (what a delivery loop's scan needs).
pub fn head(bytes: &[u8]) -> Result<(Vec<String>, String), SpooledError> {
    start(&mut Reader(bytes))
}

/// The endpoints and the event's bytes of a record, past what the tap wrote beside it (what a
/// delivery reads).
pub fn event(bytes: &[u8]) -> Result<(Vec<String>, &[u8]), SpooledError> {
    let mut r = Reader(bytes);
    let (targets, _) = start(&mut r)?;
    r.field(2)?;
    for _ in 0..r.len(2)? {
        r.field(1)?;
        r.field(2)?;
        r.field(4)?;
    }
    Ok((targets, r.0))
}

/// Decodes a record.
pub fn decode(bytes: &[u8]) -> Result<Spooled, SpooledError> {
    let mut r = Reader(bytes);
    let (targets, job_id) = start(&mut r)?;
    let idem = Some(r.field(2)?.to_vec()).filter(|k| !k.is_empty());
    let m = r.len(2)?;
    let mut writes = Vec::with_capacity(m.min(64));
    for _ in 0..m {
        let tree = r.field(1)?.to_vec();
        let key = r.field(2)?.to_vec();
        let value = r.field(4)?.to_vec();
        writes.push(Write { tree, key, value });
    }
    Ok(Spooled { targets, job_id, idem, writes, event: r.0.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_every_cut_is_an_error_not_a_panic() {
        let writes = vec![
            Write { tree: b"history".to_vec(), key: vec![1, 2, 3], value: b"step".to_vec() },
            Write { tree: b"media".to_vec(), key: vec![9; 40], value: Vec::new() },
        ];
        let bytes = encode(&["bo", "mqtt"], "JOB-1", Some(b"JOB-1\0k1"), &writes, b"\x02event").unwrap();
        let (targets, event_bytes) = event(&bytes).unwrap();
        assert_eq!((targets, event_bytes), (vec!["bo".to_string(), "mqtt".to_string()], &b"\x02event"[..]));
        let r = decode(&bytes).unwrap();
        assert_eq!(r.targets, ["bo", "mqtt"]);
        assert_eq!(r.job_id, "JOB-1");
        assert_eq!(r.idem.as_deref(), Some(&b"JOB-1\0k1"[..]));
        assert_eq!(r.writes, writes);
        assert_eq!(r.event, b"\x02event");
        assert_eq!(head(&bytes).unwrap(), (vec!["bo".to_string(), "mqtt".to_string()], "JOB-1".to_string()));
        let none = decode(&encode(&[], "J", None, &[], b"").unwrap()).unwrap();
        assert_eq!((none.targets.len(), none.idem, none.writes.len()), (0, None, 0));
        // The event is the rest, so a cut inside it reads as a shorter event (the spool's CRC
        // stands before this); every cut before it is refused.
        let event_at = bytes.len() - b"\x02event".len();
        for cut in 0..event_at {
            assert!(decode(&bytes[..cut]).is_err(), "a record cut at {cut} of {} was read", bytes.len());
        }
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(decode(&other), Err(SpooledError::Version(9)));
        assert_eq!(encode(&["x"; 300], "J", None, &[], b""), Err(SpooledError::TooLong("endpoint list")));
    }
}
