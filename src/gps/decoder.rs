//! The NMEA decoder every source shares: bytes in, one [`Fix`] per receiver epoch out, with
//! counters of everything dropped. Pure: no I/O, no clock.

use serde::Serialize;

use super::assemble::Assembler;
use super::fix::Fix;
use super::frame::{self, Framed, Framer};
use super::sentence::{self, DecodeError};
use super::sky::Sky;

/// What the decoder has seen, for status and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DecodeStats {
    /// Sentences framed with a good checksum.
    pub sentences: u64,
    /// Sentences dropped: bad checksum, too long, cut by binary bytes, or with nonsense fields.
    pub bad_sentences: u64,
    /// Fixes produced (one per epoch).
    pub fixes: u64,
}

/// A dropped sentence worth a log line: what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadSentence {
    /// Framing or checksum.
    Frame(frame::Drop),
    /// Fields that could not be read.
    Decode(DecodeError),
}

/// Frames, decodes and assembles NMEA from any byte stream.
#[derive(Debug, Default)]
pub struct NmeaDecoder {
    framer: Framer,
    assembler: Assembler,
    sky: Option<Sky>,
    decode_errors: u64,
    fixes: u64,
}

impl NmeaDecoder {
    /// A decoder that ignores satellites in view (the fastest, for replay).
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that also keeps satellites in view from GSV (for live sources).
    pub fn with_sky() -> Self {
        Self { sky: Some(Sky::default()), ..Self::default() }
    }

    /// Satellites in view, when this decoder keeps them.
    pub fn sky(&self) -> Option<&Sky> {
        self.sky.as_ref()
    }

    /// Counters so far.
    pub fn stats(&self) -> DecodeStats {
        let f = self.framer.stats();
        DecodeStats {
            sentences: f.sentences - self.decode_errors,
            bad_sentences: f.bad() + self.decode_errors,
            fixes: self.fixes,
        }
    }

    /// Feeds bytes; calls `on_fix` for each completed epoch and `on_bad` for each dropped
    /// sentence.
    pub fn feed(&mut self, bytes: &[u8], mut on_fix: impl FnMut(Fix), mut on_bad: impl FnMut(BadSentence)) {
        let Self { framer, assembler, sky, decode_errors, fixes } = self;
        framer.feed(bytes, |framed| match framed {
            Framed::Sentence(text) => match sentence::decode(text) {
                Ok(s) => {
                    if let Some(fix) = assembler.push(&s) {
                        *fixes += 1;
                        on_fix(fix);
                    }
                    if let (Some(sky), sentence::Sentence::Other) = (sky.as_mut(), &s) {
                        if text.get(3..6) == Some("GSV") {
                            sky.merge(text);
                        }
                    }
                }
                Err(e) => {
                    *decode_errors += 1;
                    on_bad(BadSentence::Decode(e));
                }
            },
            Framed::Dropped(d) => on_bad(BadSentence::Frame(d)),
        });
    }

    /// Ends the input: returns the last epoch only if it is complete (see
    /// [`Assembler::finish_input`]).
    pub fn finish_input(&mut self) -> Option<Fix> {
        let fix = self.assembler.finish_input();
        if fix.is_some() {
            self.fixes += 1;
        }
        fix
    }

    /// Ends the epoch in progress (the receiver went quiet).
    pub fn flush(&mut self) -> Option<Fix> {
        let fix = self.assembler.finish();
        if fix.is_some() {
            self.fixes += 1;
        }
        fix
    }
}
