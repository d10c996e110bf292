//! A tap with proof of delivery: `multipart/form-data` with a part `event` (the JSON body of a
//! plain tap, at most [`super::BODY_LIMIT`]), up to [`MAX_PHOTOS`] parts `photo` and one part
//! `signature`. File parts are streamed to `state_dir/media/tmp` as they arrive (see
//! [`crate::media`]); their type is decided by their bytes, and the part's `Content-Type`, when
//! given, must agree.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;

use crate::event::AttachmentKind;
use crate::media::{ContentType, Media, StageError, Staged, sniff};

use super::{ApiError, BODY_LIMIT};

/// Most photos in one tap.
pub const MAX_PHOTOS: usize = 10;
/// Largest photo, bytes.
pub const MAX_PHOTO: u64 = 8 << 20;
/// Largest signature, bytes.
pub const MAX_SIGNATURE: u64 = 1 << 20;
/// Largest multipart request: every file at its limit, the event, and room for part headers.
pub const MAX_REQUEST: u64 = MAX_PHOTOS as u64 * MAX_PHOTO + MAX_SIGNATURE + BODY_LIMIT as u64 + 64 * 1024;

/// What a multipart tap carried, with its files on disk (not yet at their content address).
#[derive(Debug)]
pub struct Form {
    /// The `event` part's bytes.
    pub event: Vec<u8>,
    /// The files, in the order they arrived, each with its type and its own `Captured-At`.
    pub files: Vec<(Staged, ContentType, Option<DateTime<Utc>>)>,
}

/// The boundary of a `multipart/form-data` content type, or `None` for any other type.
pub fn boundary(content_type: &str) -> Option<Result<String, ApiError>> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    Some(multer::parse_boundary(content_type).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, Some("Content-Type"), "multipart/form-data needs a boundary")
    }))
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, Some(field), message)
}

fn multer_error(e: multer::Error, field: &str) -> ApiError {
    use multer::Error as E;
    match e {
        E::FieldSizeExceeded { limit, .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, Some(field), format!("larger than {limit} bytes"))
        }
        E::StreamSizeExceeded { limit } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, Some("body"), format!("larger than {limit} bytes"))
        }
        other => bad("body", format!("is not a complete multipart/form-data body: {other}")),
    }
}

/// Reads every part within `idle` of each other; files go to `media` as they arrive.
pub async fn read(media: &Media, body: Body, boundary: String, idle: Duration) -> Result<Form, ApiError> {
    let limits = multer::SizeLimit::new()
        .whole_stream(MAX_REQUEST)
        .for_field("event", BODY_LIMIT as u64)
        .for_field("photo", MAX_PHOTO)
        .for_field("signature", MAX_SIGNATURE)
        .per_field(BODY_LIMIT as u64);
    let mut mp = multer::Multipart::with_constraints(
        body.into_data_stream(),
        boundary,
        multer::Constraints::new().size_limit(limits),
    );
    let timeout =
        || ApiError::new(StatusCode::REQUEST_TIMEOUT, Some("body"), format!("stalled for {} s", idle.as_secs()));
    let mut event: Option<Vec<u8>> = None;
    let mut files = Vec::new();
    let (mut photos, mut signatures) = (0usize, 0usize);
    while let Some(mut field) = tokio::time::timeout(idle, mp.next_field())
        .await
        .map_err(|_| timeout())?
        .map_err(|e| multer_error(e, "body"))?
    {
        let name = field.name().unwrap_or("").to_string();
        let kind = match name.as_str() {
            "event" => {
                if event.is_some() {
                    return Err(bad("event", "appears twice; send one event part"));
                }
                let mut bytes = Vec::new();
                while let Some(chunk) = tokio::time::timeout(idle, field.chunk())
                    .await
                    .map_err(|_| timeout())?
                    .map_err(|e| multer_error(e, "event"))?
                {
                    bytes.extend_from_slice(&chunk);
                }
                event = Some(bytes);
                continue;
            }
            "photo" => AttachmentKind::Photo,
            "signature" => AttachmentKind::Signature,
            "" => return Err(bad("body", "a part has no name; expected event, photo or signature")),
            other => return Err(bad(other, "unknown part; expected event, photo (up to 10) or signature (one)")),
        };
        let (count, max, limit) = match kind {
            AttachmentKind::Photo => (&mut photos, MAX_PHOTOS, MAX_PHOTO),
            AttachmentKind::Signature => (&mut signatures, 1, MAX_SIGNATURE),
        };
        *count += 1;
        if *count > max {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&name),
                format!("at most {max} {name} part(s) in one tap"),
            ));
        }
        let field_name = format!("{name}[{}]", *count - 1);
        let declared = match field.content_type() {
            None => None,
            Some(m) => {
                Some(ContentType::from_mime(m.essence_str()).filter(|t| t.allowed_for(kind)).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        Some(&field_name),
                        format!("Content-Type {m} is not accepted; expected {}", ContentType::allowed_list(kind)),
                    )
                })?)
            }
        };
        let captured_at = match field.headers().get("captured-at") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .ok_or_else(|| bad(&format!("{field_name}.Captured-At"), "must be an RFC 3339 time"))?,
            ),
        };
        let mut staging = media.stage(kind, limit).map_err(store_error)?;
        let not_allowed = || {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some(&field_name),
                format!("its bytes are not {} (checked by magic number)", ContentType::allowed_list(kind)),
            )
        };
        let allowed = |head: &[u8]| sniff::sniff(head).filter(|t| t.allowed_for(kind));
        loop {
            let chunk = tokio::time::timeout(idle, field.next())
                .await
                .map_err(|_| timeout())?
                .transpose()
                .map_err(|e| multer_error(e, &field_name))?;
            let Some(chunk) = chunk else { break };
            let had = staging.head().len();
            staging.write(&chunk).await.map_err(|e| match e {
                StageError::TooLarge(n) => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, Some(&field_name), format!("larger than {n} bytes"))
                }
                StageError::Io(e) => store_error(e),
            })?;
            // A file that is not what it claims is refused as soon as its head says so.
            if had < sniff::HEAD && staging.head().len() == sniff::HEAD && allowed(staging.head()).is_none() {
                return Err(not_allowed());
            }
        }
        if staging.bytes() == 0 {
            return Err(bad(&field_name, "is empty"));
        }
        let actual = allowed(staging.head()).ok_or_else(not_allowed)?;
        if declared.is_some_and(|d| d != actual) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some(&field_name),
                format!("declared as {} but its bytes are {}", declared.map_or("", ContentType::mime), actual.mime()),
            ));
        }
        files.push((staging.finish().await.map_err(store_error)?, actual, captured_at));
    }
    let event = event.ok_or_else(|| bad("event", "is required: the tap's JSON, as a part named \"event\""))?;
    Ok(Form { event, files })
}

pub(super) fn store_error(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "cannot store a proof-of-delivery file; tap refused");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        format!("the file could not be stored: {e}; the tap was NOT recorded"),
    )
}

/// One part of a body built by [`encode`].
#[derive(Debug, Clone)]
pub struct Part<'a> {
    /// `event`, `photo` or `signature`.
    pub name: &'a str,
    /// A file name, for file parts.
    pub filename: Option<&'a str>,
    /// The part's `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// Its bytes.
    pub bytes: &'a [u8],
}

/// A `multipart/form-data` body of `parts` and its `Content-Type` (what the CLI sends; a
/// boundary that cannot occur in the parts' bytes is picked).
pub fn encode(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let mut n = 0u32;
    let boundary = loop {
        let b = format!("curbside-{:016x}-{n}", rand::random::<u64>());
        if !parts.iter().any(|p| p.bytes.windows(b.len()).any(|w| w == b.as_bytes())) {
            break b;
        }
        n += 1;
    };
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.bytes.len() + 200).sum());
    for p in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"", p.name).as_bytes(),
        );
        if let Some(f) = p.filename {
            let f: String = f.chars().map(|c| if c == '"' || c == '\\' || c.is_control() { '_' } else { c }).collect();
            body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        if let Some(t) = p.content_type {
            body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(p.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
