//! Arbitrary bytes into framing, decoding and assembly never panic, and how a stream is split
//! into reads never changes what comes out.

use curbside::gps::NmeaDecoder;
use curbside::gps::frame::with_checksum;
use curbside::gps::sentence;
use proptest::prelude::*;

fn decode_chunks(chunks: &[&[u8]]) -> (Vec<curbside::gps::Fix>, curbside::gps::DecodeStats) {
    let mut d = NmeaDecoder::with_sky();
    let mut fixes = Vec::new();
    for c in chunks {
        d.feed(c, |f| fixes.push(f), |_| {});
    }
    fixes.extend(d.flush());
    (fixes, d.stats())
}

/// Sentences that look like NMEA, with fields that are often wrong: the shape fuzzers miss.
fn nmeaish() -> impl Strategy<Value = String> {
    let kind = prop::sample::select(vec!["GGA", "RMC", "GNS", "GLL", "VTG", "GSA", "ZDA", "GSV", "TXT"]);
    let talker = prop::sample::select(vec!["GP", "GN", "GL", "GA", "GB", "BD", "GQ", "P"]);
    let field = prop::string::string_regex("[0-9.NSEWAVMTK+-]{0,12}").unwrap();
    (talker, kind, prop::collection::vec(field, 0..20), any::<bool>()).prop_map(|(t, k, f, good)| {
        let body = format!("${t}{k},{}", f.join(","));
        if good { with_checksum(&body) } else { format!("{body}*00\r\n") }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_counts_add_up(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let (fixes, stats) = decode_chunks(&[&bytes]);
        prop_assert!(stats.fixes as usize >= fixes.len());
    }

    #[test]
    fn arbitrary_text_never_panics_the_sentence_decoder(s in "\\PC{0,200}") {
        let _ = sentence::decode(&s);
        let _ = sentence::decode(&format!("$GP{s}"));
    }

    #[test]
    fn nmea_shaped_garbage_never_panics(lines in prop::collection::vec(nmeaish(), 0..60)) {
        let text = lines.concat();
        let _ = decode_chunks(&[text.as_bytes()]);
    }

    #[test]
    fn how_the_stream_is_split_into_reads_does_not_change_the_fixes(
        lines in prop::collection::vec(nmeaish(), 1..40),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let text = lines.concat();
        let bytes = text.as_bytes();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.sort();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for a in at {
            chunks.push(&bytes[prev..a]);
            prev = a;
        }
        chunks.push(&bytes[prev..]);
        prop_assert_eq!(decode_chunks(&[bytes]), decode_chunks(&chunks));
    }
}
