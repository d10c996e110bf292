//! The driver page: three files compiled into the binary (no CDN, no build step, works with the
//! van offline), served without authentication (they hold no data: everything the page shows
//! comes from the API, which needs the pairing cookie off loopback). A strict Content Security
//! Policy: only the page's own script, style and API.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../page/index.html");
const SCRIPT: &str = include_str!("../page/app.js");
const STYLE: &str = include_str!("../page/app.css");

/// Everything the page weighs, bytes.
pub const WEIGHT: usize = INDEX.len() + SCRIPT.len() + STYLE.len();
// The budget: 150 KB, held at compile time.
const _: () = assert!(WEIGHT <= 150 * 1024, "the driver page is over its 150 KB budget");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Always revalidated: a new agent version brings a new page.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// `GET /`, `/page/app.js`, `/page/app.css`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { file("text/html; charset=utf-8", INDEX) }))
        .route("/page/app.js", get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/page/app.css", get(|| async { file("text/css; charset=utf-8", STYLE) }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_buttons_are_real_buttons_with_their_labels() {
        for label in ["Heading to", "Arrived", "Delivered", "Partly delivered", "Failed", "Picked up"] {
            let tag = format!(">{label}</button>");
            assert!(super::INDEX.contains(&tag), "{label}");
        }
    }
}
