//! Pairing the driver's phone with the van, for an API bound beyond loopback (the van's Wi-Fi),
//! where every request otherwise needs the bearer token.
//!
//! `curbside pair` (with the token) asks for a one-time code: 8 characters from an alphabet
//! without look-alikes, shown as `XXXX-XXXX`, valid for [`CODE_TTL`], at most [`MAX_CODES`]
//! outstanding. The page sends it to `POST /api/v1/pair`; a right code is used up at once and
//! answered with a session cookie (`HttpOnly; SameSite=Strict`, [`SESSION_TTL`]). The session's
//! SHA-256 is kept in the store (the phone stays paired across the van's restarts and power
//! cuts); the token itself only in the phone. A session cookie opens only the driver's routes
//! (status, stops, taps, deliveries), and only from the page's own origin. Wrong codes are
//! counted: after [`WRONG_PER_MINUTE`] in a minute, pairing answers 429 until the minute is out.
//!
//! The decisions (codes, their expiry, the guess limit) are pure over tokio's clock; the store
//! keeps the sessions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::outbox::{Outbox, OutboxError};

/// How long a code is good for.
pub const CODE_TTL: Duration = Duration::from_secs(600);
/// Codes outstanding at once (the oldest goes first).
pub const MAX_CODES: usize = 16;
/// Wrong codes accepted in a minute before pairing pauses.
pub const WRONG_PER_MINUTE: u32 = 5;
/// How long a paired phone stays paired.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "curbside_session";
/// No 0/O, 1/I/L: read off a laptop screen, typed on a phone.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// Why a code was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Wrong, expired or used already.
    Wrong,
    /// Too many wrong codes lately: try again after this long.
    TooMany(Duration),
}

/// The codes and the guess counter.
#[derive(Debug)]
pub struct Pairing {
    codes: Mutex<HashMap<String, Instant>>,
    wrong: Mutex<(Instant, u32)>,
}

impl Default for Pairing {
    fn default() -> Self {
        Pairing { codes: Mutex::default(), wrong: Mutex::new((Instant::now(), 0)) }
    }
}

/// A code as typed: case, spaces and dashes do not matter.
pub fn normalize(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

impl Pairing {
    /// A new one-time code, `XXXX-XXXX`.
    pub fn new_code(&self) -> String {
        let raw: String = (0..8).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect();
        let now = Instant::now();
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.retain(|_, expires| *expires > now);
        while codes.len() >= MAX_CODES {
            let oldest = codes.iter().min_by_key(|(_, e)| **e).map(|(c, _)| c.clone());
            if let Some(c) = oldest {
                codes.remove(&c);
            }
        }
        codes.insert(raw.clone(), now + CODE_TTL);
        format!("{}-{}", &raw[..4], &raw[4..])
    }

    /// Uses up `code` if it is a live one.
    pub fn redeem(&self, code: &str) -> Result<(), Refused> {
        let now = Instant::now();
        let mut wrong = self.wrong.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(wrong.0) >= Duration::from_secs(60) {
            *wrong = (now, 0);
        }
        if wrong.1 >= WRONG_PER_MINUTE {
            return Err(Refused::TooMany(Duration::from_secs(60).saturating_sub(now.duration_since(wrong.0))));
        }
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        match codes.remove(&normalize(code)) {
            Some(expires) if expires > now => Ok(()),
            _ => {
                wrong.1 += 1;
                Err(Refused::Wrong)
            }
        }
    }
}

/// A new session token (256 random bits, hex) and its digest as the store keeps it.
pub fn new_session() -> (String, [u8; 32]) {
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let digest = digest(&token);
    (token, digest)
}

/// The digest the store keeps of a session token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Stores a new session, on disk before the cookie is given out.
pub async fn remember(outbox: &Outbox, digest: [u8; 32]) -> Result<(), OutboxError> {
    let now = chrono::Utc::now().timestamp();
    let sessions = outbox.part_tree(SESSIONS)?;
    // Expired sessions are dropped on the way.
    for kv in sessions.iter() {
        let (k, v) = kv?;
        if expiry(&v).is_some_and(|e| e <= now) {
            sessions.remove(k)?;
        }
    }
    sessions.insert(digest, (now + SESSION_TTL.as_secs() as i64).to_be_bytes())?;
    sessions.commit().await
}

/// The store's tree of sessions: a token's digest (32 bytes) to its expiry (unix seconds, i64 BE).
const SESSIONS: &str = "sessions";

fn expiry(v: &[u8]) -> Option<i64> {
    <[u8; 8]>::try_from(v).ok().map(i64::from_be_bytes)
}

/// Whether `token` is a live session.
pub fn is_session(outbox: &Outbox, token: &str) -> bool {
    let Ok(sessions) = outbox.part_tree(SESSIONS) else { return false };
    sessions
        .get(digest(token))
        .ok()
        .flatten()
        .and_then(|v| expiry(&v))
        .is_some_and(|e| e > chrono::Utc::now().timestamp())
}

/// The session token of a `Cookie` header, if it has one.
pub fn cookie(header: &str) -> Option<&str> {
    header.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == COOKIE).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_code_works_once_and_only_while_fresh() {
        let p = Pairing::default();
        let code = p.new_code();
        assert_eq!(code.len(), 9);
        assert_eq!(&code[4..5], "-");
        assert!(code.chars().all(|c| c == '-' || ALPHABET.contains(&(c as u8))), "{code}");
        assert_eq!(p.redeem(&code.to_lowercase().replace('-', " ")), Ok(()), "as typed on a phone");
        assert_eq!(p.redeem(&code), Err(Refused::Wrong), "used up");
        let late = p.new_code();
        tokio::time::advance(CODE_TTL).await;
        assert_eq!(p.redeem(&late), Err(Refused::Wrong), "expired");
    }

    #[tokio::test(start_paused = true)]
    async fn guessing_is_paused_after_five_wrong_codes_a_minute() {
        let p = Pairing::default();
        let code = p.new_code();
        for _ in 0..WRONG_PER_MINUTE {
            assert_eq!(p.redeem("AAAA-AAAA"), Err(Refused::Wrong));
        }
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(p.redeem(&code), Err(Refused::TooMany(Duration::from_secs(40))), "even the right one");
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(p.redeem(&code), Ok(()), "a minute later it is taken");
    }

    #[test]
    fn at_most_sixteen_codes_are_outstanding() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let p = Pairing::default();
            let first = p.new_code();
            for _ in 0..MAX_CODES {
                p.new_code();
            }
            assert_eq!(p.codes.lock().unwrap().len(), MAX_CODES);
            assert_eq!(p.redeem(&first), Err(Refused::Wrong), "the oldest went first");
        });
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(cookie("a=1; curbside_session=abc; b=2"), Some("abc"));
        assert_eq!(cookie("curbside_sessionx=abc"), None);
        assert_eq!(cookie(""), None);
        let (token, d) = new_session();
        assert_eq!(token.len(), 64);
        assert_eq!(digest(&token), d);
    }
}
