//! A file's SHA-256 (the name a proof-of-delivery file is stored under, and what the store keeps
//! references by), and its hex form.

/// A file's SHA-256.
pub type Sha = [u8; 32];

/// Lower-case hex of a digest.
pub fn hex(sha: &Sha) -> String {
    sha.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest of a lower-case (or upper-case) hex string of 64 digits.
pub fn parse_hex(s: &str) -> Option<Sha> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
