//! What a file is, from its first bytes (magic numbers), not from what the client says it is.

use crate::event::AttachmentKind;

/// Bytes of a file's head that [`sniff`] needs at most.
pub const HEAD: usize = 1024;

/// A content type curbside accepts for proof of delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `image/jpeg`: `FF D8 FF`.
    Jpeg,
    /// `image/png`: the 8-byte PNG signature.
    Png,
    /// `image/webp`: `RIFF????WEBP`.
    Webp,
    /// `image/svg+xml`: UTF-8 text whose first element is `<svg` (after an optional BOM, XML
    /// declaration, comments and doctype).
    Svg,
}

impl ContentType {
    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            ContentType::Jpeg => "image/jpeg",
            ContentType::Png => "image/png",
            ContentType::Webp => "image/webp",
            ContentType::Svg => "image/svg+xml",
        }
    }

    /// The file extension (`{ext}` in upload URLs).
    pub fn ext(self) -> &'static str {
        match self {
            ContentType::Jpeg => "jpg",
            ContentType::Png => "png",
            ContentType::Webp => "webp",
            ContentType::Svg => "svg",
        }
    }

    /// The type of a MIME name (parameters and case ignored).
    pub fn from_mime(mime: &str) -> Option<ContentType> {
        let base = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        [ContentType::Jpeg, ContentType::Png, ContentType::Webp, ContentType::Svg]
            .into_iter()
            .find(|t| t.mime() == base || (base == "image/jpg" && *t == ContentType::Jpeg))
    }

    /// Whether files of `kind` may have this type.
    pub fn allowed_for(self, kind: AttachmentKind) -> bool {
        match kind {
            AttachmentKind::Photo => matches!(self, ContentType::Jpeg | ContentType::Png | ContentType::Webp),
            AttachmentKind::Signature => matches!(self, ContentType::Png | ContentType::Svg),
        }
    }

    /// The types allowed for `kind`, for error messages.
    pub fn allowed_list(kind: AttachmentKind) -> &'static str {
        match kind {
            AttachmentKind::Photo => "image/jpeg, image/png or image/webp",
            AttachmentKind::Signature => "image/png or image/svg+xml",
        }
    }
}

/// The type of a file from its first bytes (up to [`HEAD`]); `None` for anything else.
pub fn sniff(head: &[u8]) -> Option<ContentType> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(ContentType::Jpeg);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(ContentType::Png);
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return Some(ContentType::Webp);
    }
    if svg(head) {
        return Some(ContentType::Svg);
    }
    None
}

fn svg(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    // The head may end inside a character: only the valid prefix is read.
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) => match std::str::from_utf8(&head[..e.valid_up_to()]) {
            Ok(t) if e.error_len().is_none() => t,
            _ => return false,
        },
    };
    let mut rest = text.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("<?") {
            let Some(end) = r.find("?>") else { return false };
            rest = r[end + 2..].trim_start();
        } else if let Some(r) = rest.strip_prefix("<!--") {
            let Some(end) = r.find("-->") else { return false };
            rest = r[end + 3..].trim_start();
        } else if let Some(r) = rest.strip_prefix("<!DOCTYPE") {
            let Some(end) = r.find('>') else { return false };
            rest = r[end + 1..].trim_start();
        } else {
            break;
        }
    }
    rest.strip_prefix("<svg").is_some_and(|r| r.starts_with(|c: char| c.is_whitespace() || c == '>' || c == '/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_decide() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F']), Some(ContentType::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some(ContentType::Png));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some(ContentType::Webp));
        assert_eq!(sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"), Some(ContentType::Svg));
        assert_eq!(
            sniff(b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<!-- by hand -->\n<!DOCTYPE svg>\n<svg>"),
            Some(ContentType::Svg)
        );
        for not in [&b""[..], b"GIF89a", b"RIFF\0\0\0\0WAVE", b"<svgx>", b"<html><svg>", b"\xFF\xD8", b"%PDF-1.7"] {
            assert_eq!(sniff(not), None, "{not:?}");
        }
    }

    #[test]
    fn a_head_cut_inside_a_character_is_still_read() {
        let mut head = b"<svg><title>".to_vec();
        head.extend_from_slice(&"é".as_bytes()[..1]);
        assert_eq!(sniff(&head), Some(ContentType::Svg));
    }

    #[test]
    fn each_kind_has_its_types() {
        assert!(ContentType::Jpeg.allowed_for(AttachmentKind::Photo));
        assert!(!ContentType::Jpeg.allowed_for(AttachmentKind::Signature));
        assert!(ContentType::Svg.allowed_for(AttachmentKind::Signature));
        assert!(!ContentType::Svg.allowed_for(AttachmentKind::Photo));
        assert_eq!(ContentType::from_mime("IMAGE/JPEG; q=1"), Some(ContentType::Jpeg));
        assert_eq!(ContentType::from_mime("image/jpg"), Some(ContentType::Jpeg));
        assert_eq!(ContentType::from_mime("text/plain"), None);
    }
}
