//! The media janitor: files leave the van once every event that refers to them has.

use tokio_util::sync::CancellationToken;

use super::Media;
use super::refs::Refs;
use crate::outbox::Outbox;

/// Removes a file once no stored event references it: woken whenever events leave the store
/// (delivered everywhere: with an upload target, that includes the upload), it drops their
/// media references and deletes the files left without one (a file shared by two taps stays
/// until both are gone). Without an upload target it does not run: files stay on the van.
pub async fn run(outbox: Outbox, refs: Refs, media: Media, shutdown: CancellationToken) {
    let released = outbox.released();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = released.notified() => {}
        }
        let (r, m) = (refs.clone(), media.clone());
        let done = tokio::task::spawn_blocking(move || {
            let shas = r.drop_released()?;
            Ok::<_, crate::outbox::OutboxError>(m.release(shas, |s| r.referenced(s)))
        })
        .await;
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(files = n, "media: removed files of delivered events"),
            Ok(Err(e)) => tracing::warn!(error = %e, "media: could not drop references of delivered events"),
            Err(e) => tracing::warn!(error = %e, "media: the janitor panicked"),
        }
    }
}
