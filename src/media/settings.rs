//! `[pod]`: which statuses require a photo or a signature, the media disk budget, and where
//! files are uploaded (a URL template, with a webhook's auth options and delivery rules).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

use crate::event::Status;
use crate::webhook::Endpoint;
use crate::webhook::format::Format;
use crate::webhook::settings::{Defaults, RawBasic, RawDelivery, delivery};

use super::upload::UrlTemplate;

/// The outbox endpoint of uploads (not a valid webhook name, so it cannot collide with one).
pub const UPLOAD_ENDPOINT: &str = "pod:upload";
/// An upload's defaults: files are larger than events, and the link is shared with them.
const UPLOADS: Defaults = Defaults { timeout: "120s", concurrency: 2 };
/// The media budget when none is configured, MiB.
pub const DEFAULT_MEDIA_MB: u64 = 512;

/// `[pod]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPod {
    /// Statuses whose tap must carry at least one photo.
    pub require_photo: Option<Vec<String>>,
    /// Statuses whose tap must carry a signature.
    pub require_signature: Option<Vec<String>>,
    /// Disk budget of `state_dir/media`, MiB.
    pub media_max_mb: Option<u64>,
    /// Where each file is PUT: a URL template.
    pub upload_url: Option<String>,
    /// What receivers are given: a URL template (default: `upload_url`).
    pub public_url: Option<String>,
    /// HTTP basic auth for uploads.
    pub basic: Option<RawBasic>,
    /// Bearer token for uploads.
    pub bearer: Option<String>,
    /// Extra headers on uploads.
    pub headers: Option<BTreeMap<String, String>>,
    /// Whole-request timeout of one upload.
    pub timeout: Option<String>,
    /// Uploads in flight at once (different jobs).
    pub concurrency: Option<u32>,
    /// Backoff to spend on one event's files before parking them.
    pub retry_budget: Option<String>,
    /// Delays between failed attempts.
    pub retry_schedule: Option<Vec<String>>,
}

/// `[pod]`, validated.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Statuses whose tap must carry a photo.
    pub require_photo: HashSet<Status>,
    /// Statuses whose tap must carry a signature.
    pub require_signature: HashSet<Status>,
    /// Media budget, bytes.
    pub media_budget: u64,
    /// Where files go; `None`: they stay on the van.
    pub upload: Option<Arc<Upload>>,
}

impl Default for Pod {
    fn default() -> Self {
        Pod {
            require_photo: HashSet::new(),
            require_signature: HashSet::new(),
            media_budget: DEFAULT_MEDIA_MB << 20,
            upload: None,
        }
    }
}

/// The upload target.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Auth, headers and delivery rules, as a webhook's; named [`UPLOAD_ENDPOINT`]. Its `url`
    /// is the template rendered with sample values (for status and the TLS check).
    pub endpoint: Arc<Endpoint>,
    /// Where each file is PUT.
    pub template: UrlTemplate,
    /// What receivers are given.
    pub public: UrlTemplate,
}

fn statuses(list: Option<Vec<String>>, key: &str) -> Result<HashSet<Status>, (String, String)> {
    let mut set = HashSet::new();
    for s in list.unwrap_or_default() {
        set.insert(Status::parse(&s).ok_or_else(|| {
            (
                format!("pod.{key}"),
                format!("unknown status {s:?}; expected any of {:?}", Status::ALL.map(Status::as_str)),
            )
        })?);
    }
    Ok(set)
}

/// Validates `[pod]`; an error is the key (`pod.…`) and what is wrong.
pub fn validate(p: RawPod) -> Result<Pod, (String, String)> {
    let mb = p.media_max_mb.unwrap_or(DEFAULT_MEDIA_MB);
    if !(1..=1 << 20).contains(&mb) {
        return Err(("pod.media_max_mb".into(), format!("must be 1 to 1048576 (MiB), got {mb}")));
    }
    let require_photo = statuses(p.require_photo, "require_photo")?;
    let require_signature = statuses(p.require_signature, "require_signature")?;
    let upload = match p.upload_url {
        None => {
            if p.public_url.is_some() {
                return Err(("pod.public_url".into(), "needs upload_url: files are only public once uploaded".into()));
            }
            None
        }
        Some(text) => {
            let template = UrlTemplate::parse(&text).map_err(|m| ("pod.upload_url".to_string(), m.to_string()))?;
            let public = match p.public_url {
                None => template.clone(),
                Some(t) => UrlTemplate::parse(&t).map_err(|m| ("pod.public_url".to_string(), m.to_string()))?,
            };
            let raw = RawDelivery {
                basic: p.basic,
                bearer: p.bearer,
                headers: p.headers,
                timeout: p.timeout,
                concurrency: p.concurrency,
                retry_budget: p.retry_budget,
                retry_schedule: p.retry_schedule,
            };
            let delivery = delivery(raw, UPLOADS, false, &|k| format!("pod.{k}"))?;
            let endpoint = Endpoint {
                name: UPLOAD_ENDPOINT.into(),
                url: template.sample(),
                events: None,
                format: Format::Standard,
                secret: None,
                shared_token: None,
                delivery,
            };
            Some(Arc::new(Upload { endpoint: Arc::new(endpoint), template, public }))
        }
    };
    Ok(Pod { require_photo, require_signature, media_budget: mb << 20, upload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml: &str) -> RawPod {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn defaults_keep_files_on_the_van() {
        let p = validate(RawPod::default()).unwrap();
        assert!(p.upload.is_none());
        assert_eq!(p.media_budget, 512 << 20);
    }

    #[test]
    fn each_bad_key_is_named() {
        let key = |t: &str| validate(raw(t)).unwrap_err().0;
        assert_eq!(key("require_photo = [\"teleported\"]"), "pod.require_photo");
        assert_eq!(key("media_max_mb = 0"), "pod.media_max_mb");
        assert_eq!(key("upload_url = \"ftp://x/{sha256}\""), "pod.upload_url");
        assert_eq!(key("upload_url = \"https://x/{colour}\""), "pod.upload_url");
        assert_eq!(key("public_url = \"https://x/{sha256}\""), "pod.public_url");
        assert_eq!(key("upload_url = \"https://x/{sha256}\"\nconcurrency = 0"), "pod.concurrency");
        assert_eq!(
            key("upload_url = \"https://x/{sha256}\"\n[headers]\nContent-Digest = \"x\""),
            "pod.headers.Content-Digest"
        );
    }

    #[test]
    fn an_upload_target_gets_webhook_rules() {
        let p = validate(raw(
            "upload_url = \"https://files.example.com/pod/{vehicle_id}/{event_id}/{kind}-{index}.{ext}\"\n\
             require_photo = [\"delivered\"]\nbearer = \"t0k\"",
        ))
        .unwrap();
        let u = p.upload.unwrap();
        assert_eq!(u.endpoint.name, UPLOAD_ENDPOINT);
        assert_eq!(u.endpoint.delivery.bearer.as_deref(), Some("t0k"));
        assert!(p.require_photo.contains(&Status::Delivered));
    }
}
