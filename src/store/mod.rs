//! Where files live: local directories ([`local::LocalStore`]) and S3-compatible buckets
//! ([`s3::S3Store`]), both behind one small [`Store`] trait — list, stat, verified
//! delete (one or many, a result per key), streamed upload with an abortable upload id and
//! a verified checksum, streamed fetch — which one conformance suite
//! (`tests/store_conformance.rs`) runs against every implementation.

pub mod checksum;
pub mod local;
mod local_ops;
pub mod newfile;
pub mod s3;

use std::future::Future;
use std::path::{Component, Path, PathBuf};

use futures::Stream;

use serde::{Deserialize, Serialize};

/// The result of one deletion attempt; every file gets its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// Unlinked, and observed gone afterwards.
    Deleted,
    /// Not attempted, for the reason given.
    Refused(String),
    /// Attempted, and the file may still be there.
    Failed(String),
    /// Already gone before we acted (nothing was lost). Local stores only: S3's bulk
    /// delete cannot tell, so an S3 key already gone is `Deleted` once seen gone.
    Vanished,
    /// Selected, but not attempted: a dry run.
    WouldDelete,
}

impl Outcome {
    /// The short word used in audit records and logs.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Deleted => "deleted",
            Outcome::Refused(_) => "refused",
            Outcome::Failed(_) => "failed",
            Outcome::Vanished => "vanished",
            Outcome::WouldDelete => "would delete",
        }
    }
    /// The reason or error, if any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Refused(s) | Outcome::Failed(s) => Some(s),
            _ => None,
        }
    }
}

/// Store failures, each naming the store and path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The root could not be opened.
    #[error(
        "store {store:?}: cannot open root {}: {source}",
        crate::spell::show(root)
    )]
    OpenRoot {
        /// Store name.
        store: String,
        /// Its root.
        root: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A path is not a plain relative path inside the store.
    #[error(
        "store {store:?}: {} is not a path inside the store",
        crate::spell::show(path)
    )]
    Outside {
        /// Store name.
        store: String,
        /// The path.
        path: PathBuf,
    },
    /// Reading a file or directory failed.
    #[error("store {store:?}: {}: {source}", crate::spell::show(path))]
    Io {
        /// Store name.
        store: String,
        /// The path, relative to the root.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A copy does not match its source (size or checksum), or changed while being copied.
    #[error("store {store:?}: {key}: {detail}")]
    Verify {
        /// Store name.
        store: String,
        /// The key.
        key: String,
        /// What differed.
        detail: String,
    },
    /// The server stored a part of an upload other than what was sent (or lost it): the
    /// upload is abandoned before completion, so nothing under the key changed.
    #[error("store {store:?}: {key}: {detail}; the upload was abandoned")]
    PartMismatch {
        /// Store name.
        store: String,
        /// The key.
        key: String,
        /// What differed.
        detail: String,
    },
    /// The upload id is unknown: completed, aborted, or never started.
    #[error("store {store:?}: {key}: no upload {upload_id:?} in progress")]
    NoUpload {
        /// Store name.
        store: String,
        /// The key.
        key: String,
        /// The upload id.
        upload_id: String,
    },
    /// An S3 request failed.
    #[error(transparent)]
    S3(#[from] s3::S3Error),
}

impl StoreError {
    /// An I/O error on `path` of `store`.
    pub fn io(store: &str, path: impl Into<PathBuf>, source: impl Into<std::io::Error>) -> Self {
        StoreError::Io {
            store: store.into(),
            path: path.into(),
            source: source.into(),
        }
    }
}

/// True when `key` is a plain store key: `/`-separated, non-empty segments, none of them
/// `.` or `..`, no NUL — the same text names the same object in every store.
pub fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && !key.contains('\0')
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// The key under which local file `path` of store `store` is offloaded: `STORE/PATH`, so
/// the files of two stores never share one (store names hold no '/'). `None` for a name
/// that is not UTF-8: S3 keys are, and a lossy conversion could make two names one.
/// `None` too for a key with a component starting with `.mediaretain` (the fleet's control
/// objects): an offload never writes one.
pub fn offload_key(store: &str, path: &Path) -> Option<String> {
    path.to_str()
        .map(|p| format!("{store}/{p}"))
        .filter(|k| !crate::node::is_control_key(k))
}

/// The key for one version (modified at `mtime`, attempt `n` ≥ 1) of a file whose plain
/// offload key `key` already holds another object: the version's UTC mtime goes before the
/// extension (`media/rec/13.mp4` → `media/rec/13.2026-12-03T130000.123456789Z.mp4`, then
/// `…Z-2.mp4`), so an archive never loses an earlier version to a later one.
pub fn version_key(key: &str, mtime: crate::units::Nanos, n: u32) -> String {
    let (dir, name) = key.rsplit_once('/').unwrap_or(("", key));
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    let secs = mtime.div_euclid(1_000_000_000);
    let nanos = mtime.rem_euclid(1_000_000_000);
    let t = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64),
    )
    .to_string()
    .replace(':', "");
    let t = t.trim_end_matches('Z');
    let again = if n > 1 {
        format!("-{n}")
    } else {
        String::new()
    };
    let name = format!("{stem}.{t}.{nanos:09}Z{again}{ext}");
    if dir.is_empty() {
        name
    } else {
        format!("{dir}/{name}")
    }
}

/// True when `rel` is a non-empty relative path of plain components only (no `..`, no
/// root, no `.`), i.e. it cannot name anything outside the directory it is joined to.
pub fn is_confined(rel: &Path) -> bool {
    let mut any = false;
    for c in rel.components() {
        match c {
            Component::Normal(_) => any = true,
            _ => return false,
        }
    }
    any
}

/// One file or object as a store lists it; `key` is relative to the store root or prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store (`rec/2026/cam1.mp4`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, ns since the epoch.
    pub last_modified: i64,
    /// The store's entity tag (S3 ETag without quotes); `None` for local files.
    pub e_tag: Option<String>,
}

/// A copy whose size and checksum were checked against what the store itself reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Size in bytes, as the store reports it.
    pub size: u64,
    /// S3-style ETag computed while reading: `hex(md5)` for a local file or an empty
    /// object (one plain PUT), `hex(md5(md5(part 1) ‖ … ‖ md5(part N)))-N` for a
    /// multipart upload.
    pub checksum: String,
}

/// The id of an upload in progress; persist it to abort the upload after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadId(pub String);

/// What every store offers the engine and the conformance suite.
///
/// Keys are plain relative paths (`a/b/c.mp4`, see [`is_plain_key`]); a key that is not is
/// refused, so no operation can reach outside the store's root or prefix.
pub trait Store: Send + Sync {
    /// The store's configured name.
    fn name(&self) -> &str;

    /// Every object in the store, streamed (memory bounded whatever the count), any order.
    fn list(&self) -> impl Stream<Item = Result<ObjectInfo, StoreError>> + Send + '_;

    /// The object at `key`, or `None` when there is none.
    fn stat(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectInfo>, StoreError>> + Send;

    /// Begins an upload to `key`; nothing is visible at `key` until it completes.
    fn start_upload(&self, key: &str) -> impl Future<Output = Result<UploadId, StoreError>> + Send;

    /// Streams local file `src` into upload `id` (memory bounded whatever its size),
    /// completes it and verifies the stored size and checksum.
    fn finish_upload(
        &self,
        key: &str,
        id: &UploadId,
        src: &Path,
    ) -> impl Future<Output = Result<Verified, StoreError>> + Send;

    /// Abandons upload `id`: its parts are discarded and the id can no longer complete.
    fn abort_upload(
        &self,
        key: &str,
        id: &UploadId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Streams object `key` into local file `dest` through a partial file and a rename,
    /// verifying its size (and checksum where the store's tag is a plain MD5).
    fn fetch(
        &self,
        key: &str,
        dest: &Path,
    ) -> impl Future<Output = Result<Verified, StoreError>> + Send;

    /// Deletes every key, each with its own verified result, in the order given.
    fn delete_many(&self, keys: &[String]) -> impl Future<Output = Vec<(String, Outcome)>> + Send;

    /// Uploads `src` to `key`: start, stream, verify; the upload is aborted on failure.
    fn put_file(
        &self,
        key: &str,
        src: &Path,
    ) -> impl Future<Output = Result<Verified, StoreError>> + Send {
        async move {
            let id = self.start_upload(key).await?;
            match self.finish_upload(key, &id, src).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    // Best effort: an upload left behind is found again by its id.
                    let _ = self.abort_upload(key, &id).await;
                    Err(e)
                }
            }
        }
    }

    /// Deletes one key and verifies it is gone.
    fn delete(&self, key: &str) -> impl Future<Output = Outcome> + Send {
        async move {
            let mut r = self.delete_many(&[key.to_string()]).await;
            r.pop()
                .map_or_else(|| Outcome::Failed("no result".into()), |(_, o)| o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_keep_the_extension_and_differ_per_version() {
        let t = 1_764_766_800_123_456_789; // 2025-12-03T13:00:00.123456789Z
        assert_eq!(
            version_key("media/rec/13.mp4", t, 1),
            "media/rec/13.2025-12-03T130000.123456789Z.mp4"
        );
        assert_eq!(
            version_key("media/rec/13.mp4", t, 2),
            "media/rec/13.2025-12-03T130000.123456789Z-2.mp4"
        );
        assert_eq!(
            version_key("media/noext", t, 1),
            "media/noext.2025-12-03T130000.123456789Z"
        );
        assert_eq!(
            version_key("media/.hidden", t, 1),
            "media/.hidden.2025-12-03T130000.123456789Z"
        );
        assert_ne!(version_key("a/b.ts", t, 1), version_key("a/b.ts", t + 1, 1));
    }
}
