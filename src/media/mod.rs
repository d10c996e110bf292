//! Proof-of-delivery files on the van: photos and signatures, stored content-addressed under
//! `state_dir/media/` (the file's name is its SHA-256) before the event that refers to them.
//!
//! # The life of a file
//! 1. [`Media::stage`]: the bytes are streamed into `media/tmp/` as they arrive (never held whole
//!    in memory), hashed on the way, and fsynced.
//! 2. [`Media::commit`]: once every part of the request is in and valid, each staged file is
//!    renamed to `media/SHA256` (or dropped, if that content is already there) and the
//!    directory fsynced. The files are *pinned* until the event is appended: nothing deletes a
//!    pinned file.
//! 3. The event is appended; its `media` references (`sha256, sequence`, see [`refs`]) go into
//!    the store in the same transaction. Only then is the driver told "saved".
//! 4. Once the event has left the van (uploaded and every webhook delivered), its references are
//!    removed and [`Media::release`] deletes each file nothing else refers to.
//!
//! A crash anywhere leaves at worst a file no event refers to (after 2, before 3); it is
//! deleted by [`Media::sweep`] at the next start, with everything in `media/tmp/`. An
//! acknowledged event's files are never deleted before its references are.

pub mod janitor;
pub mod refs;
pub mod settings;
pub mod sniff;
pub mod upload;

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

pub use crate::digest::{Sha, hex, parse_hex};
use crate::event::AttachmentKind;
pub use sniff::ContentType;

/// Bytes buffered before a staged file is written out (one write per buffer).
const WRITE_BUFFER: usize = 256 * 1024;

/// Why a file was not stored.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Storing it would take the media over `[pod] media_max_mb`.
    #[error("the van's media budget is full: {used} of {budget} bytes used, this tap needs {needed} more")]
    OverBudget {
        /// Bytes stored now.
        used: u64,
        /// The budget.
        budget: u64,
        /// Bytes this request would add.
        needed: u64,
    },
    /// The disk failed.
    #[error("cannot store the file: {0}")]
    Io(#[from] io::Error),
}

/// Handle to the media directory; clones share it.
#[derive(Clone, Debug)]
pub struct Media {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    tmp: PathBuf,
    budget: u64,
    /// Bytes of the files in `dir` (not counting `tmp`).
    bytes: AtomicU64,
    /// Files committed for a request whose event is not appended yet: never deleted. The lock
    /// is never held across an `.await`.
    pinned: Mutex<HashMap<Sha, u32>>,
}

/// What a start-up sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Files no event refers to.
    pub unreferenced: u64,
    /// Partial files from requests that never finished.
    pub partial: u64,
}

impl Media {
    /// Opens (or creates) `state_dir/media` with a budget in bytes; counts what is there.
    pub fn open(state_dir: &Path, budget: u64) -> io::Result<Media> {
        let dir = state_dir.join("media");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let media =
            Media { inner: Arc::new(Inner { dir, tmp, budget, bytes: AtomicU64::new(0), pinned: Mutex::default() }) };
        media.recount()?;
        Ok(media)
    }

    fn recount(&self) -> io::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(&self.inner.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                total += entry.metadata()?.len();
            }
        }
        self.inner.bytes.store(total, Ordering::Relaxed);
        Ok(total)
    }

    /// Where the file with this digest is (or would be).
    pub fn path(&self, sha: &Sha) -> PathBuf {
        self.inner.dir.join(hex(sha))
    }

    /// Bytes stored.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// The budget, bytes.
    pub fn budget(&self) -> u64 {
        self.inner.budget
    }

    /// Starts receiving a file of `kind`, at most `limit` bytes.
    pub fn stage(&self, kind: AttachmentKind, limit: u64) -> io::Result<Staging> {
        let path = self.inner.tmp.join(uuid::Uuid::now_v7().to_string());
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok(Staging {
            kind,
            limit,
            file: Some(file),
            buf: Vec::new(),
            hasher: Sha256::new(),
            bytes: 0,
            head: Vec::new(),
            path: Some(path),
        })
    }

    /// Moves staged files to their content address, fsyncs the directory, and pins them until
    /// the returned guard is dropped. Over the budget, nothing is moved. Blocking: call it from
    /// `spawn_blocking`.
    pub fn commit(&self, files: Vec<Staged>) -> Result<Pinned, MediaError> {
        let shas: Vec<Sha> = files.iter().map(|f| f.sha256).collect();
        let pinned = self.pin(&shas);
        let mut seen = std::collections::HashSet::new();
        let needed: u64 =
            files.iter().filter(|f| seen.insert(f.sha256) && !self.path(&f.sha256).exists()).map(|f| f.bytes).sum();
        let used = self.bytes();
        if used.saturating_add(needed) > self.inner.budget {
            return Err(MediaError::OverBudget { used, budget: self.inner.budget, needed });
        }
        let mut added = 0;
        for mut f in files {
            let Some(from) = f.path.take() else { continue };
            let to = self.path(&f.sha256);
            if to.exists() {
                // The same bytes are stored already (and pinned: they stay).
                let _ = std::fs::remove_file(&from);
            } else {
                std::fs::rename(&from, &to)?;
                added += f.bytes;
            }
        }
        std::fs::File::open(&self.inner.dir)?.sync_all()?;
        self.inner.bytes.fetch_add(added, Ordering::Relaxed);
        Ok(pinned)
    }

    fn pin(&self, shas: &[Sha]) -> Pinned {
        let mut p = self.inner.pinned.lock().unwrap_or_else(|e| e.into_inner());
        for s in shas {
            *p.entry(*s).or_insert(0) += 1;
        }
        Pinned { media: self.clone(), shas: shas.to_vec() }
    }

    /// Deletes each of `shas` that no event refers to (`referenced` is false) and no request
    /// has pinned; returns how many were deleted. Blocking.
    pub fn release(&self, shas: impl IntoIterator<Item = Sha>, referenced: impl Fn(&Sha) -> bool) -> u64 {
        let mut deleted = 0;
        for sha in shas {
            // Held while deciding and deleting: a request cannot pin (and reuse) the file in
            // between.
            let pinned = self.inner.pinned.lock().unwrap_or_else(|e| e.into_inner());
            if pinned.contains_key(&sha) || referenced(&sha) {
                continue;
            }
            let path = self.path(&sha);
            if let Ok(meta) = std::fs::metadata(&path) {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        self.inner.bytes.fetch_sub(meta.len().min(self.bytes()), Ordering::Relaxed);
                        deleted += 1;
                    }
                    Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot delete a released media file"),
                }
            }
            drop(pinned);
        }
        deleted
    }

    /// At start-up, before any request: deletes partial files and every file no event refers
    /// to. Blocking.
    pub fn sweep(&self, referenced: impl Fn(&Sha) -> bool) -> io::Result<Swept> {
        let mut swept = Swept::default();
        for entry in std::fs::read_dir(&self.inner.tmp)? {
            let path = entry?.path();
            if std::fs::remove_file(&path).is_ok() {
                swept.partial += 1;
            }
        }
        let mut candidates = Vec::new();
        for entry in std::fs::read_dir(&self.inner.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            match entry.file_name().to_str().and_then(parse_hex) {
                Some(sha) => candidates.push(sha),
                None => {
                    // Not a name curbside gives: not ours to keep in the budget's directory.
                    tracing::warn!(file = %entry.path().display(), "unexpected file in the media directory: removed");
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        swept.unreferenced = self.release(candidates, referenced);
        self.recount()?;
        Ok(swept)
    }
}

/// Files pinned by a request until its event is appended (or refused).
#[derive(Debug)]
pub struct Pinned {
    media: Media,
    shas: Vec<Sha>,
}

impl Pinned {
    /// The pinned digests.
    pub fn shas(&self) -> &[Sha] {
        &self.shas
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let mut p = self.media.inner.pinned.lock().unwrap_or_else(|e| e.into_inner());
        for s in &self.shas {
            if let Some(n) = p.get_mut(s) {
                *n -= 1;
                if *n == 0 {
                    p.remove(s);
                }
            }
        }
    }
}

/// A file being received. Dropped before [`Staging::finish`], its partial file is deleted.
#[derive(Debug)]
pub struct Staging {
    kind: AttachmentKind,
    limit: u64,
    file: Option<std::fs::File>,
    buf: Vec<u8>,
    hasher: Sha256,
    bytes: u64,
    head: Vec<u8>,
    path: Option<PathBuf>,
}

/// Why a chunk was not taken.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// More than the limit.
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    /// The disk failed.
    #[error("cannot store the file: {0}")]
    Io(#[from] io::Error),
}

impl Staging {
    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The file's first bytes (up to [`sniff::HEAD`]).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Takes the next chunk of the file.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StageError> {
        self.bytes += chunk.len() as u64;
        if self.bytes > self.limit {
            return Err(StageError::TooLarge(self.limit));
        }
        if self.head.len() < sniff::HEAD {
            let n = (sniff::HEAD - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..n]);
        }
        self.hasher.update(chunk);
        self.buf.extend_from_slice(chunk);
        if self.buf.len() >= WRITE_BUFFER {
            self.write_out(false).await?;
        }
        Ok(())
    }

    async fn write_out(&mut self, sync: bool) -> io::Result<()> {
        let Some(mut file) = self.file.take() else { return Err(io::Error::other("staged file already closed")) };
        let buf = std::mem::take(&mut self.buf);
        let (file, buf) = tokio::task::spawn_blocking(move || {
            file.write_all(&buf)?;
            if sync {
                file.sync_all()?;
            }
            Ok::<_, io::Error>((file, buf))
        })
        .await
        .map_err(io::Error::other)??;
        let mut buf = buf;
        buf.clear();
        self.buf = buf;
        self.file = Some(file);
        Ok(())
    }

    /// Writes out and fsyncs the rest: the file is ready to [`Media::commit`].
    pub async fn finish(mut self) -> io::Result<Staged> {
        self.write_out(true).await?;
        let sha256: Sha = std::mem::take(&mut self.hasher).finalize().into();
        Ok(Staged { kind: self.kind, sha256, bytes: self.bytes, path: self.path.take() })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A received, fsynced file in `media/tmp/`, not yet at its content address. Dropped without
/// [`Media::commit`], it is deleted.
#[derive(Debug)]
pub struct Staged {
    /// Photo or signature.
    pub kind: AttachmentKind,
    /// Its digest.
    pub sha256: Sha,
    /// Its size.
    pub bytes: u64,
    path: Option<PathBuf>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn staged(m: &Media, bytes: &[u8]) -> Staged {
        let mut s = m.stage(AttachmentKind::Photo, 1 << 20).unwrap();
        for chunk in bytes.chunks(7) {
            s.write(chunk).await.unwrap();
        }
        s.finish().await.unwrap()
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_type().unwrap().is_file()).count()
    }

    #[tokio::test]
    async fn a_file_is_stored_under_its_digest_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = Media::open(dir.path(), 1 << 20).unwrap();
        let a = staged(&m, b"hello photo").await;
        let sha: Sha = Sha256::digest(b"hello photo").into();
        assert_eq!(a.sha256, sha);
        let b = staged(&m, b"hello photo").await;
        let pin = m.commit(vec![a, b]).unwrap();
        assert_eq!(std::fs::read(m.path(&sha)).unwrap(), b"hello photo");
        assert_eq!(m.bytes(), 11);
        assert_eq!(files(&dir.path().join("media/tmp")), 0, "staged files moved or dropped");
        // Pinned: not deleted even though nothing refers to it.
        assert_eq!(m.release([sha], |_| false), 0);
        drop(pin);
        assert_eq!(m.release([sha], |_| true), 0, "referenced: kept");
        assert_eq!(m.release([sha], |_| false), 1);
        assert_eq!(m.bytes(), 0);
        assert!(!m.path(&sha).exists());
    }

    #[tokio::test]
    async fn over_the_budget_nothing_is_moved_and_a_dropped_staging_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = Media::open(dir.path(), 10).unwrap();
        let a = staged(&m, b"eleven byte").await;
        assert!(matches!(m.commit(vec![a]), Err(MediaError::OverBudget { needed: 11, budget: 10, .. })));
        assert_eq!(files(&dir.path().join("media")), 0);
        assert_eq!(files(&dir.path().join("media/tmp")), 0);
        let mut s = m.stage(AttachmentKind::Signature, 4).unwrap();
        assert!(matches!(s.write(b"12345").await, Err(StageError::TooLarge(4))));
        drop(s);
        assert_eq!(files(&dir.path().join("media/tmp")), 0);
    }

    #[tokio::test]
    async fn the_sweep_keeps_only_referenced_files() {
        let dir = tempfile::tempdir().unwrap();
        let m = Media::open(dir.path(), 1 << 20).unwrap();
        let keep = staged(&m, b"kept").await;
        let gone = staged(&m, b"garbage").await;
        let (k, g) = (keep.sha256, gone.sha256);
        drop(m.commit(vec![keep, gone]).unwrap());
        std::fs::write(dir.path().join("media/tmp/partial"), b"half").unwrap();
        let m = Media::open(dir.path(), 1 << 20).unwrap();
        let swept = m.sweep(|s| *s == k).unwrap();
        assert_eq!(swept, Swept { unreferenced: 1, partial: 1 });
        assert!(m.path(&k).exists() && !m.path(&g).exists());
        assert_eq!(m.bytes(), 4);
    }

    #[test]
    fn hex_round_trips() {
        let sha: Sha = Sha256::digest(b"x").into();
        assert_eq!(parse_hex(&hex(&sha)), Some(sha));
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex(&"g".repeat(64)), None);
    }
}
