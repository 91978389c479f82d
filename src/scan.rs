//! Full reconciliation of a local store: walk the tree, record what is there, forget what
//! is not. The walk runs on its own thread and hands batches to the registry writer, so
//! reading the disk and writing the database overlap.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::classify::Classifier;
use crate::clock::to_nanos;
use crate::registry::{FileMeta, Registry, RegistryError};
use crate::units::Nanos;

const BATCH: usize = 8192;

/// What one scan of one store found.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScanStats {
    /// Store name.
    pub store: String,
    /// Regular files recorded.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Directories read.
    pub dirs: u64,
    /// Directories that could not be read (their entries are kept, not forgotten).
    pub unreadable: u64,
    /// Entries forgotten because their files are gone.
    pub forgotten: u64,
    /// Wall time in milliseconds.
    pub millis: u64,
    /// Empty directories seen (candidates for pruning).
    #[serde(skip)]
    pub empty_dirs: Vec<PathBuf>,
}

/// Walks `root` from `prefix` and calls `sink` with batches of regular files (relative
/// paths); empty directories below the root are pushed to `empty`. Symlinks are never
/// followed. Returns (dirs read, dirs unreadable).
pub fn walk(
    root: &Path,
    prefix: &Path,
    mut sink: impl FnMut(Vec<FileMeta>),
    empty: &mut Vec<PathBuf>,
) -> (u64, u64) {
    let mut stack: Vec<PathBuf> = vec![prefix.to_path_buf()];
    let mut batch = Vec::with_capacity(BATCH);
    let (mut dirs, mut unreadable) = (0, 0);
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let rd = match fs::read_dir(&abs) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                warn!(path = %abs.display(), error = %e, "cannot read directory; its entries are kept as they were");
                unreadable += 1;
                continue;
            }
        };
        dirs += 1;
        let mut any = false;
        for de in rd {
            any = true;
            // A listing or stat error other than "vanished" makes this walk partial: count
            // it, so the sweep keeps (does not forget) what it could not see.
            let partial = |e: &std::io::Error| e.kind() != std::io::ErrorKind::NotFound;
            let de = match de {
                Ok(de) => de,
                Err(e) => {
                    warn!(path = %abs.display(), error = %e, "directory listing failed part-way");
                    unreadable += 1;
                    break;
                }
            };
            let ft = match de.file_type() {
                Ok(ft) => ft,
                Err(e) => {
                    unreadable += u64::from(partial(&e));
                    continue;
                }
            };
            // Our own trash directory (files on their way out) is never part of the store.
            if rel.as_os_str().is_empty() && de.file_name() == crate::store::local::TRASH_DIR {
                continue;
            }
            let child = rel.join(de.file_name());
            if ft.is_dir() {
                stack.push(child);
            } else if ft.is_file() {
                // DirEntry::metadata is an fstatat relative to the open directory, no-follow.
                let md = match de.metadata() {
                    Ok(md) => md,
                    Err(e) => {
                        unreadable += u64::from(partial(&e));
                        continue;
                    }
                };
                let mtime = md.modified().map(to_nanos).unwrap_or(0);
                batch.push(FileMeta {
                    path: child,
                    size: md.len(),
                    mtime,
                    ino: md.ino(),
                });
                if batch.len() >= BATCH {
                    sink(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            }
        }
        if !any && !rel.as_os_str().is_empty() {
            empty.push(rel);
        }
    }
    if !batch.is_empty() {
        sink(batch);
    }
    (dirs, unreadable)
}

/// At most this many unseen entries are checked one by one after a partial scan.
const MAX_UNSEEN_CHECKS: usize = 100_000;

/// After a partial walk (a directory could not be read, e.g. one deeper than PATH_MAX):
/// an entry the walk did not see is forgotten once a no-follow `stat` beneath the root
/// says it is gone, so that budgets never count vanished files; entries that cannot be
/// looked at (inside the unreadable part) are kept.
fn forget_unseen_if_gone(
    store: &str,
    root: &Path,
    registry: &Mutex<Registry>,
    generation: i64,
) -> Result<u64, RegistryError> {
    let unseen =
        registry
            .lock()
            .expect("registry lock")
            .unseen(store, generation, MAX_UNSEEN_CHECKS)?;
    let Ok(local) = crate::store::local::LocalStore::open(store, root) else {
        return Ok(0);
    };
    let gone: Vec<(i64, PathBuf)> = unseen
        .into_iter()
        .filter(|(_, p)| matches!(local.stat(p), Ok(None)))
        .collect();
    Ok(registry
        .lock()
        .expect("registry lock")
        .forget_entries(&gone)? as u64)
}

/// Scans store `store` rooted at `root` into the registry and forgets vanished files —
/// unless part of the tree was unreadable, in which case nothing is forgotten.
pub fn scan_store(
    store: &str,
    root: &Path,
    registry: &Mutex<Registry>,
    classifier: &Classifier,
    now: Nanos,
) -> Result<ScanStats, RegistryError> {
    let started = Instant::now();
    let generation = registry.lock().expect("registry lock").begin_scan();
    let mut stats = ScanStats {
        store: store.into(),
        ..Default::default()
    };
    let (tx, rx) = sync_channel::<Vec<FileMeta>>(4);
    let mut empty = Vec::new();
    let (dirs, unreadable) = std::thread::scope(|s| -> Result<(u64, u64), RegistryError> {
        let empty = &mut empty;
        let walker = s.spawn(move || walk(root, Path::new(""), |b| drop(tx.send(b)), empty));
        let class_of = |p: &Path| classifier.classify(store, p).map(str::to_string);
        for mut batch in rx {
            // Sorted batches touch the (store, path) index in order: fewer pages per commit.
            batch.sort_unstable_by(|a, b| a.path.cmp(&b.path));
            stats.files += batch.len() as u64;
            stats.bytes += batch.iter().map(|f| f.size).sum::<u64>();
            registry
                .lock()
                .expect("registry lock")
                .upsert(store, &batch, now, &class_of)?;
        }
        Ok(walker.join().expect("walker thread"))
    })?;
    stats.dirs = dirs;
    stats.empty_dirs = empty;
    stats.unreadable = unreadable;
    if unreadable == 0 && dirs > 0 {
        stats.forgotten = registry
            .lock()
            .expect("registry lock")
            .sweep(store, generation)? as u64;
    } else if dirs > 0 {
        stats.forgotten = forget_unseen_if_gone(store, root, registry, generation)?;
    }
    stats.millis = started.elapsed().as_millis() as u64;
    debug!(
        store,
        files = stats.files,
        forgotten = stats.forgotten,
        millis = stats.millis,
        "scan done"
    );
    Ok(stats)
}
