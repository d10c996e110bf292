//! The driver page: four files compiled into the binary (the page, its script, its style and its
//! strings in every language it speaks) (no CDN, no build step, works with the
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
/// Every string the page shows, one table per language (`{"en": {key: text}, "de": …}`).
const STRINGS: &str = include_str!("../page/strings.json");

/// Everything the page weighs, bytes.
pub const WEIGHT: usize = INDEX.len() + SCRIPT.len() + STYLE.len() + STRINGS.len();
// The budget: 60 KB, every language included, held at compile time.
const _: () = assert!(WEIGHT <= 60 * 1024, "the driver page is over its 60 KB budget");

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

/// `GET /`, `/page/app.js`, `/page/app.css`, `/page/strings.json`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { file("text/html; charset=utf-8", INDEX) }))
        .route("/page/app.js", get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/page/app.css", get(|| async { file("text/css; charset=utf-8", STYLE) }))
        .route("/page/strings.json", get(|| async { file("application/json", STRINGS) }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// The languages the page must speak.
    const LANGUAGES: [&str; 6] = ["en", "de", "fr", "es", "nl", "pl"];

    fn strings() -> BTreeMap<String, BTreeMap<String, String>> {
        serde_json::from_str(super::STRINGS).expect("strings.json is a table per language")
    }

    /// Fails when a string is missing (or empty) in a language, or when the page uses a key the
    /// table does not have.
    #[test]
    fn every_string_is_in_every_language() {
        let table = strings();
        let en = &table["en"];
        for lang in LANGUAGES {
            let t = table.get(lang).unwrap_or_else(|| panic!("no {lang} table"));
            for key in en.keys() {
                let text = t.get(key).unwrap_or_else(|| panic!("{lang}: {key} is missing"));
                assert!(!text.trim().is_empty(), "{lang}: {key} is empty");
            }
            assert_eq!(t.len(), en.len(), "{lang} has keys English has not");
        }
        let mut used: Vec<String> = Vec::new();
        for (text, marker) in
            [(super::INDEX, "data-i18n=\""), (super::INDEX, "data-i18n-label=\""), (super::SCRIPT, "T('")]
        {
            for part in text.split(marker).skip(1) {
                let key: String =
                    part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_').collect();
                used.push(key);
            }
        }
        // Keys the script builds from a status or a state.
        for s in crate::event::Status::ALL {
            used.push(format!("status.{}", s.as_str()));
        }
        for s in crate::event::Status::ROUTE {
            used.push(format!("route.{}", s.route_name().unwrap_or_default()));
        }
        for s in ["pending", "heading", "arrived", "done"] {
            used.push(format!("state.{s}"));
        }
        for key in used.iter().filter(|k| !k.ends_with('.')) {
            assert!(en.contains_key(key), "the page uses {key:?}, which strings.json has not");
        }
        assert!(used.len() > 50, "the check read the page: {} keys", used.len());
    }

    #[test]
    fn the_buttons_are_real_buttons_with_their_labels() {
        for label in ["Heading to", "Arrived", "Delivered", "Partly delivered", "Failed", "Picked up"] {
            let tag = format!(">{label}</button>");
            assert!(super::INDEX.contains(&tag), "{label}");
        }
    }
}
