//! Arbitrary bytes through framing, decoding and epoch assembly, fed in two reads split at a
//! fuzzer-chosen point: must never panic, and the split must not change the fixes.
#![no_main]

use curbside::gps::NmeaDecoder;
use libfuzzer_sys::fuzz_target;

fn run(chunks: &[&[u8]]) -> Vec<curbside::gps::Fix> {
    let mut d = NmeaDecoder::with_sky();
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c, |f| out.push(f), |_| {});
    }
    out.extend(d.flush());
    out
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let body = &data[1..];
    let split = split.min(body.len());
    let whole = run(&[body]);
    let parts = run(&[&body[..split], &body[split..]]);
    assert_eq!(whole, parts);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = curbside::gps::sentence::decode(text);
    }
});
