//! NMEA 0183 framing: turns an arbitrary byte stream (split reads, binary protocol bytes, line
//! noise) into checksum-verified sentences, with bounded memory and a count of everything dropped.
//!
//! The framer never allocates after construction and never panics on any input; it is the only
//! place that decides what a sentence is, so every source (serial, replay, sim) shares it.

/// Longest sentence accepted, counted from `$` to the last checksum digit. NMEA 0183 allows 82
/// bytes with CR LF; real receivers exceed that, and gpsd accepts up to this many.
pub const MAX_SENTENCE_LEN: usize = 130;

/// Counters of what the framer has seen; monotonically increasing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FrameStats {
    /// Sentences that passed framing and checksum.
    pub sentences: u64,
    /// Sentences whose checksum did not match, or whose checksum field was malformed.
    pub bad_checksum: u64,
    /// Sentences longer than [`MAX_SENTENCE_LEN`].
    pub too_long: u64,
    /// Sentences cut short by a non-printable byte or a new `$` before their line ended.
    pub interrupted: u64,
}

impl FrameStats {
    /// Every sentence that was started but dropped, whatever the reason.
    pub fn bad(&self) -> u64 {
        self.bad_checksum + self.too_long + self.interrupted
    }
}

/// Why a candidate sentence was dropped; returned so callers can log a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The `*HH` checksum was missing digits or did not match.
    BadChecksum,
    /// Longer than [`MAX_SENTENCE_LEN`].
    TooLong,
    /// A binary byte or a new start character arrived mid-sentence.
    Interrupted,
}

/// What the framer hands out: a verified sentence, or the reason one was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed<'a> {
    /// A sentence with a good checksum: its text from `$` (or `!`) to the last checksum digit.
    Sentence(&'a str),
    /// A candidate sentence that was dropped.
    Dropped(Drop),
}

/// Incremental NMEA framer. Feed it bytes as they arrive; it calls back once per verified or
/// dropped sentence.
#[derive(Debug)]
pub struct Framer {
    buf: [u8; MAX_SENTENCE_LEN],
    len: usize,
    /// True between a start character and the end of its line.
    in_sentence: bool,
    /// True after an over-long sentence, until its line ends: the rest is skipped.
    skipping: bool,
    stats: FrameStats,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    /// A framer waiting for the first start character.
    pub fn new() -> Self {
        Self { buf: [0; MAX_SENTENCE_LEN], len: 0, in_sentence: false, skipping: false, stats: FrameStats::default() }
    }

    /// What has been framed and dropped so far.
    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    /// Feeds `bytes`, calling `out` for each complete sentence, verified or dropped. A sentence
    /// split across calls is completed by a later call.
    pub fn feed(&mut self, bytes: &[u8], mut out: impl FnMut(Framed<'_>)) {
        for &b in bytes {
            match b {
                b'$' | b'!' => {
                    if self.in_sentence && self.len > 0 {
                        self.stats.interrupted += 1;
                        out(Framed::Dropped(Drop::Interrupted));
                    }
                    self.skipping = false;
                    self.in_sentence = true;
                    self.buf[0] = b;
                    self.len = 1;
                }
                b'\r' | b'\n' => {
                    if self.in_sentence {
                        self.in_sentence = false;
                        match verify(&self.buf[..self.len]) {
                            Ok(text) => {
                                self.stats.sentences += 1;
                                out(Framed::Sentence(text));
                            }
                            Err(drop) => {
                                self.stats.bad_checksum += 1;
                                out(Framed::Dropped(drop));
                            }
                        }
                    }
                    self.skipping = false;
                    self.len = 0;
                }
                0x20..=0x7e => {
                    if !self.in_sentence {
                        continue;
                    }
                    if self.len == MAX_SENTENCE_LEN {
                        self.in_sentence = false;
                        self.skipping = true;
                        self.len = 0;
                        self.stats.too_long += 1;
                        out(Framed::Dropped(Drop::TooLong));
                        continue;
                    }
                    self.buf[self.len] = b;
                    self.len += 1;
                }
                _ => {
                    // A binary byte: UBX, SiRF or line noise. Whatever sentence was in progress
                    // is not NMEA any more.
                    if self.in_sentence {
                        self.in_sentence = false;
                        self.len = 0;
                        self.stats.interrupted += 1;
                        out(Framed::Dropped(Drop::Interrupted));
                    }
                }
            }
        }
    }
}

/// Checks the `*HH` checksum of a framed line (start character included, line ending excluded)
/// and returns the sentence as text.
pub fn verify(line: &[u8]) -> Result<&str, Drop> {
    // Only printable ASCII ever reaches here, so this cannot fail; it is checked rather than
    // assumed so that `verify` is safe to call on any input.
    let text = std::str::from_utf8(line).map_err(|_| Drop::Interrupted)?;
    let star = text.rfind('*').ok_or(Drop::BadChecksum)?;
    let (body, sum) = text.split_at(star);
    let sum = &sum[1..];
    if sum.len() != 2 || body.len() < 2 {
        return Err(Drop::BadChecksum);
    }
    let expected = u8::from_str_radix(sum, 16).map_err(|_| Drop::BadChecksum)?;
    let actual = body.as_bytes()[1..].iter().fold(0u8, |acc, b| acc ^ b);
    if actual == expected { Ok(text) } else { Err(Drop::BadChecksum) }
}

/// Appends `*HH` and CR LF to a sentence body that starts with `$`; used by the simulator and
/// tests to produce what a receiver would send.
pub fn with_checksum(body: &str) -> String {
    let sum = body.as_bytes().iter().skip(1).fold(0u8, |acc, b| acc ^ b);
    format!("{body}*{sum:02X}\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(input: &[u8]) -> (Vec<String>, FrameStats) {
        let mut f = Framer::new();
        let mut out = Vec::new();
        f.feed(input, |x| {
            if let Framed::Sentence(s) = x {
                out.push(s.to_string())
            }
        });
        (out, f.stats())
    }

    const RMC: &str = "$GPRMC,102127.000,A,5129.0623,N,00632.2911,E,0.33,30.68,210211,,,A*51\r\n";

    #[test]
    fn a_valid_sentence_comes_out_without_its_line_ending() {
        let (out, stats) = frame_all(RMC.as_bytes());
        assert_eq!(out, vec![RMC.trim_end().to_string()]);
        assert_eq!(stats.sentences, 1);
        assert_eq!(stats.bad(), 0);
    }

    #[test]
    fn a_sentence_split_across_reads_is_reassembled() {
        let mut f = Framer::new();
        let mut out = Vec::new();
        for chunk in RMC.as_bytes().chunks(7) {
            f.feed(chunk, |x| out.extend(matches!(x, Framed::Sentence(_)).then_some(())));
        }
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_bad_checksum_is_dropped_and_counted() {
        let bad = RMC.replace("*51", "*52");
        let (out, stats) = frame_all(bad.as_bytes());
        assert!(out.is_empty());
        assert_eq!(stats.bad_checksum, 1);
    }

    #[test]
    fn a_missing_checksum_is_dropped() {
        let (out, stats) = frame_all(b"$GPGGA,1,2,3\r\n");
        assert!(out.is_empty());
        assert_eq!(stats.bad_checksum, 1);
    }

    #[test]
    fn binary_bytes_interrupt_a_sentence_and_the_next_one_survives() {
        let mut input = b"$GPRMC,1021\xb5\x62\x01\x07garbage".to_vec();
        input.extend_from_slice(RMC.as_bytes());
        let (out, stats) = frame_all(&input);
        assert_eq!(out.len(), 1);
        assert_eq!(stats.interrupted, 1);
    }

    #[test]
    fn sentences_up_to_130_bytes_pass_and_longer_ones_are_dropped() {
        let fill = |n: usize| {
            let body = format!("$GPTXT,{}", "A".repeat(n - 7 - 3));
            with_checksum(&body)
        };
        let ok = fill(MAX_SENTENCE_LEN);
        assert_eq!(ok.trim_end().len(), MAX_SENTENCE_LEN);
        let (out, _) = frame_all(ok.as_bytes());
        assert_eq!(out.len(), 1);
        let long = fill(MAX_SENTENCE_LEN + 1);
        let mut input = long.into_bytes();
        input.extend_from_slice(RMC.as_bytes());
        let (out, stats) = frame_all(&input);
        assert_eq!(out.len(), 1, "the sentence after an over-long one is kept");
        assert_eq!(stats.too_long, 1);
    }

    #[test]
    fn a_new_dollar_restarts_framing() {
        let input = format!("$GPGGA,12{RMC}");
        let (out, stats) = frame_all(input.as_bytes());
        assert_eq!(out.len(), 1);
        assert_eq!(stats.interrupted, 1);
    }

    #[test]
    fn checksum_helper_round_trips() {
        let s = with_checksum("$GPZDA,120000.00,01,02,2024,00,00");
        assert!(verify(s.trim_end().as_bytes()).is_ok());
    }
}
