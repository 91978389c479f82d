//! Where files live. Today: local directories ([`local::LocalStore`]); S3-compatible buckets
//! join behind the same operations (walk, stat, verified delete) with the S3 issue.

pub mod local;

use std::path::{Component, Path, PathBuf};

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
    /// Already gone before we acted (nothing was lost).
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
    #[error("store {store:?}: cannot open root {}: {source}", root.display())]
    OpenRoot {
        /// Store name.
        store: String,
        /// Its root.
        root: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A path is not a plain relative path inside the store.
    #[error("store {store:?}: {} is not a path inside the store", path.display())]
    Outside {
        /// Store name.
        store: String,
        /// The path.
        path: PathBuf,
    },
    /// Reading a file or directory failed.
    #[error("store {store:?}: {}: {source}", path.display())]
    Io {
        /// Store name.
        store: String,
        /// The path, relative to the root.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
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
