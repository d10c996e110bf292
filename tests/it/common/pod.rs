//! Proof-of-delivery files for tests: real JPEG and PNG bytes, and multipart taps.

use curbside::api::multipart::{Part, encode};
use serde_json::Value;

use super::agent::TestAgent;

/// A real JPEG (baseline, RGB noise, so that it hardly compresses) of about `bytes` bytes.
pub fn jpeg(seed: u64, bytes: usize) -> Vec<u8> {
    let width: u16 = 512;
    // Noise at quality 90 takes about 1.9 bytes a pixel.
    let height = ((bytes as f64 / (width as f64 * 1.9)).ceil() as u16).max(8);
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let pixels: Vec<u8> = (0..width as usize * height as usize * 3)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    let mut out = Vec::with_capacity(bytes + 4096);
    jpeg_encoder::Encoder::new(&mut out, 90).encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).unwrap();
    out
}

/// A real PNG: a 200×80 grey signature-like stroke, varied by `seed`.
pub fn png(seed: u8) -> Vec<u8> {
    let (w, h) = (200u32, 80u32);
    let mut data = vec![255u8; (w * h) as usize];
    for x in 0..w {
        let y = (40.0 + 25.0 * ((x as f32 + seed as f32) / 15.0).sin()) as u32;
        data[(y.min(h - 1) * w + x) as usize] = 0;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(&data).unwrap();
    }
    out
}

/// The hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A file part.
pub fn file<'a>(name: &'a str, content_type: Option<&'a str>, bytes: &'a [u8]) -> Part<'a> {
    Part { name, filename: Some("file"), content_type, bytes }
}

/// POSTs a multipart tap: `event` (JSON) then `files`.
pub async fn tap_with(agent: &TestAgent, job: &str, event: &Value, files: &[Part<'_>]) -> (u16, Value) {
    let json = serde_json::to_vec(event).unwrap();
    let mut parts = vec![Part { name: "event", filename: None, content_type: Some("application/json"), bytes: &json }];
    parts.extend_from_slice(files);
    let (content_type, body) = encode(&parts);
    agent.tap_raw(job, body, &[("content-type", &content_type)]).await
}

/// Files in `state_dir/media` (not counting `tmp/`) and in `media/tmp`.
pub fn media_files(state: &std::path::Path) -> (usize, usize) {
    let count = |d: std::path::PathBuf| {
        std::fs::read_dir(d)
            .map(|r| r.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_file())).count())
            .unwrap_or(0)
    };
    (count(state.join("media")), count(state.join("media/tmp")))
}
