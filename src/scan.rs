//! Full reconciliation of a local store: walk the tree, record what is there, forget what
//! is not. The walk runs on its own thread and hands batches to the registry writer, so
//! reading the disk and writing the database overlap.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::classify::Classifier;
use crate::registry::{FileMeta, Registry, RegistryError, StoreScan};
use crate::units::Nanos;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

const BATCH: usize = 8192;

/// The checkpointer beside a scan is asked after this many batches (about 250 pages of
/// the log at a first index): after every batch, the writer restarted the log each time
/// and paid an `fsync` of its own for it (9 for 100k files); after 3, none, and a first
/// index of 100k or 1M files took 6–7% less time (medians of pairs) than with the writer
/// checkpointing itself.
const CHECKPOINT_EVERY: usize = 3;

/// Bytes read from a directory by one `getdents64` (about 2,000 names of 16 bytes).
const DENTS_BUF: usize = 64 * 1024;

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
    /// Wall time.
    #[serde(rename = "took", with = "crate::units::millis")]
    pub millis: u64,
    /// Empty directories seen (candidates for pruning).
    #[serde(skip)]
    pub empty_dirs: Vec<PathBuf>,
}

/// Deepest directory level walked or watched below a store root: a hostile tree cannot
/// make a walk hold more descriptors than this.
pub const MAX_DEPTH: usize = 256;

/// Opens directory `rel` beneath `root` without following any symlink on the way
/// (`openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`, else one `O_NOFOLLOW` component at a
/// time). The empty path is the root itself.
pub fn open_dir_beneath(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if rel.as_os_str().is_empty() {
        return rustix::fs::openat(root, ".", flags, Mode::empty());
    }
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve) {
        Err(Errno::NOSYS) | Err(Errno::PERM) => {
            let mut fd = rustix::io::fcntl_dupfd_cloexec(root, 0)?;
            for c in rel.components() {
                let std::path::Component::Normal(name) = c else {
                    return Err(Errno::XDEV);
                };
                fd = rustix::fs::openat(&fd, name, flags, Mode::empty())?;
            }
            Ok(fd)
        }
        r => r,
    }
}

/// Opens a store root (the operator's path: the root itself may be a configured link).
pub fn open_root(root: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Walks `root` from `prefix` and calls `sink` with batches of regular files (relative
/// paths); empty directories below the root are pushed to `empty`. Returns (dirs read,
/// dirs unreadable).
///
/// Descriptor-based: `prefix` is opened beneath the root without following links, every
/// directory below it with `openat(parent, name, O_NOFOLLOW|O_DIRECTORY)`, and every file is
/// `fstatat`-ed no-follow in its open directory. A symlink is logged (debug) and skipped; a
/// directory swapped for a symlink between listing and opening is not entered.
pub fn walk(
    root: &Path,
    prefix: &Path,
    sink: impl FnMut(Vec<FileMeta>),
    empty: &mut Vec<PathBuf>,
) -> (u64, u64) {
    walk_noting(root, prefix, sink, empty, None)
}

/// At most this many directories and this many other entries are noted by a walk (see
/// [`Passed`]); the rest are only counted.
pub const MAX_PASSED: usize = 100_000;

/// What a walk passed by without handing it to its sink — for `rm`, which must account
/// for everything below a directory it was asked to delete: each directory it read (in
/// the order read: a parent before its children), and each entry it did not list as a
/// file, saying what it is (a symlink, a socket, a FIFO, a device, a directory it could
/// not read or that is nested too deep). At most [`MAX_PASSED`] of each; `more` counts
/// the rest.
#[derive(Debug, Default)]
pub struct Passed {
    /// Directories read, relative to the root.
    pub dirs: Vec<PathBuf>,
    /// Entries skipped, with what they are.
    pub others: Vec<(PathBuf, &'static str)>,
    /// Directories and entries beyond the bound (not listed).
    pub more: u64,
}

impl Passed {
    fn dir(&mut self, rel: &Path) {
        if self.dirs.len() < MAX_PASSED {
            self.dirs.push(rel.to_path_buf());
        } else {
            self.more += 1;
        }
    }

    fn other(&mut self, rel: PathBuf, what: &'static str) {
        if self.others.len() < MAX_PASSED {
            self.others.push((rel, what));
        } else {
            self.more += 1;
        }
    }
}

/// What a directory entry that is not a regular file or directory is, in words.
pub fn kind_of(ft: FileType) -> &'static str {
    match ft {
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "of an unknown type",
    }
}

/// What [`walk_noting`] notes for a directory listed and then gone before it was entered.
pub const MOVED_AWAY: &str = "a directory moved away while it was walked";

fn note(passed: &mut Option<&mut Passed>, rel: PathBuf, what: &'static str) {
    if let Some(p) = passed.as_deref_mut() {
        p.other(rel, what);
    }
}

/// One walker's buffers and counts.
struct Walker {
    /// Files found, not yet handed to the sink.
    batch: Vec<FileMeta>,
    /// The `getdents64` buffer, reused for every directory.
    dents: Vec<std::mem::MaybeUninit<u8>>,
    /// Empty directories below the root.
    empty: Vec<PathBuf>,
    dirs: u64,
    unreadable: u64,
}

impl Walker {
    fn new() -> Walker {
        Walker {
            batch: Vec::with_capacity(BATCH),
            dents: vec![std::mem::MaybeUninit::<u8>::uninit(); DENTS_BUF],
            empty: Vec::new(),
            dirs: 0,
            unreadable: 0,
        }
    }
}

/// A directory to read: its parent's descriptor (None: the walk's start), its name,
/// its path relative to the root, its depth. Siblings share their parent's descriptor,
/// so a depth-first walk holds about one per level.
type Pending = (Option<Arc<OwnedFd>>, OsString, PathBuf, usize);

/// Opens the walk's start, `prefix` beneath `root`: Err is what the walk returns then.
fn open_start(
    root: &Path,
    prefix: &Path,
    passed: &mut Option<&mut Passed>,
) -> Result<OwnedFd, (u64, u64)> {
    match open_root(root).and_then(|r| open_dir_beneath(&r, prefix)) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => Err((0, 0)),
        // A link (or a non-directory) where a directory was: nothing of ours to list there.
        Err(Errno::LOOP) | Err(Errno::NOTDIR) | Err(Errno::XDEV) => {
            debug!(path = %crate::spell::show(&root.join(prefix)), "not a directory beneath the root; skipped");
            Err((0, 0))
        }
        Err(e) => {
            warn!(path = %crate::spell::show(&root.join(prefix)), error = %e, "cannot read directory; its entries are kept as they were");
            note(
                passed,
                prefix.to_path_buf(),
                "a directory that cannot be read",
            );
            Err((0, 1))
        }
    }
}

/// Reads one directory: its regular files go to `w.batch` (and on to `sink` once a batch
/// is full), its subdirectories to `subdirs` (sorted so that the smallest name is popped
/// first); what it passes by is noted.
#[allow(clippy::too_many_arguments)]
fn read_dir(
    root: &Path,
    (parent, name, rel, depth): Pending,
    start: &mut Option<OwnedFd>,
    w: &mut Walker,
    subdirs: &mut Vec<Pending>,
    sink: &mut dyn FnMut(Vec<FileMeta>),
    passed: &mut Option<&mut Passed>,
) {
    let abs = || root.join(&rel);
    let fd = match parent {
        None => match start.take() {
            Some(fd) => fd,
            None => return,
        },
        Some(p) => match rustix::fs::openat(
            &*p,
            name.as_os_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                // Listed, then gone: removed, or renamed to a name this walk has
                // passed already — rm walks again to find what it held.
                note(passed, rel, MOVED_AWAY);
                return;
            }
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                debug!(path = %crate::spell::show(&abs()), "replaced by a symlink or file since it was listed; not entered");
                // rm accounts for it: what the directory held may be somewhere still.
                note(
                    passed,
                    rel,
                    "a directory replaced by a symlink or file while it was walked",
                );
                return;
            }
            Err(e) => {
                warn!(path = %crate::spell::show(&abs()), error = %e, "cannot read directory; its entries are kept as they were");
                w.unreadable += 1;
                note(passed, rel, "a directory that cannot be read");
                return;
            }
        },
    };
    w.dirs += 1;
    if let Some(p) = passed.as_deref_mut() {
        p.dir(&rel);
    }
    let fd = Arc::new(fd);
    let mut any = false;
    // This directory's files and subdirectories go out sorted by name: a tree walked in
    // name order reaches the registry in its index's order, so a first index appends
    // to the (store, path) b-tree instead of splitting pages in its middle.
    let (mut files_from, dirs_from) = (w.batch.len(), subdirs.len());
    // getdents into one buffer for the whole walk: no second descriptor per
    // directory and no allocation per name (rustix's `Dir` makes both).
    let mut dir = rustix::fs::RawDir::new(&*fd, &mut w.dents);
    while let Some(de) = dir.next() {
        let de = match de {
            Ok(de) => de,
            // A directory removed while it is read ends its listing (as `Dir` does).
            Err(Errno::NOENT) => break,
            Err(e) => {
                // A listing error makes this walk partial: counted, so the sweep keeps
                // (does not forget) what it could not see.
                warn!(path = %crate::spell::show(&abs()), error = %e, "directory listing failed part-way");
                w.unreadable += 1;
                note(
                    passed,
                    rel.clone(),
                    "a directory whose listing failed part-way",
                );
                break;
            }
        };
        let fname = de.file_name().to_bytes();
        if fname == b"." || fname == b".." {
            continue;
        }
        // Our own trash directory (files on their way out) is never part of the store.
        if rel.as_os_str().is_empty() && fname == crate::store::local::TRASH_DIR.as_bytes() {
            continue;
        }
        any = true;
        let cname = de.file_name();
        let fname = OsStr::from_bytes(fname);
        // One allocation of the right size per file (`join` grows it twice).
        let mut child = PathBuf::with_capacity(rel.as_os_str().len() + 1 + fname.len());
        child.push(&rel);
        child.push(fname);
        let mut ft = de.file_type();
        let mut st = None;
        if ft == FileType::Unknown || ft == FileType::RegularFile {
            match rustix::fs::statat(&*fd, cname, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) => {
                    ft = FileType::from_raw_mode(s.st_mode);
                    st = Some(s);
                }
                Err(Errno::NOENT) => continue,
                Err(_) => {
                    w.unreadable += 1;
                    note(passed, child, "an entry that cannot be looked at");
                    continue;
                }
            }
        }
        match ft {
            FileType::Directory if depth + 1 >= MAX_DEPTH => {
                warn!(path = %crate::spell::show(&root.join(&child)), max_depth = MAX_DEPTH, "directory nested too deep; not walked, its entries are kept as they were");
                w.unreadable += 1;
                note(passed, child, "a directory nested too deep to walk");
            }
            FileType::Directory => {
                subdirs.push((Some(fd.clone()), fname.to_os_string(), child, depth + 1))
            }
            FileType::RegularFile => {
                let Some(s) = st else { continue };
                w.batch.push(FileMeta {
                    path: child,
                    size: s.st_size as u64,
                    mtime: s
                        .st_mtime
                        .saturating_mul(1_000_000_000)
                        .saturating_add(s.st_mtime_nsec as i64),
                    ino: s.st_ino,
                });
                if w.batch.len() >= 4 * BATCH {
                    // A huge directory goes out in parts, each sorted.
                    w.batch[files_from..].sort_unstable_by(by_path);
                    sink(std::mem::replace(&mut w.batch, Vec::with_capacity(BATCH)));
                    files_from = 0;
                }
            }
            FileType::Symlink => {
                debug!(path = %crate::spell::show(&root.join(&child)), "symlink skipped: never followed");
                note(passed, child, kind_of(ft));
            }
            other => note(passed, child, kind_of(other)),
        }
    }
    w.batch[files_from..].sort_unstable_by(by_path);
    // Popped last first: the smallest name is walked next.
    subdirs[dirs_from..].sort_unstable_by(|a, b| b.1.as_bytes().cmp(a.1.as_bytes()));
    if w.batch.len() >= BATCH {
        sink(std::mem::replace(&mut w.batch, Vec::with_capacity(BATCH)));
    }
    if !any && !rel.as_os_str().is_empty() {
        w.empty.push(rel);
    }
}

/// [`walk`], noting in `passed` (when given) what it passed by.
pub fn walk_noting(
    root: &Path,
    prefix: &Path,
    mut sink: impl FnMut(Vec<FileMeta>),
    empty: &mut Vec<PathBuf>,
    mut passed: Option<&mut Passed>,
) -> (u64, u64) {
    let start = match open_start(root, prefix, &mut passed) {
        Ok(fd) => fd,
        Err(r) => return r,
    };
    let mut w = Walker::new();
    let mut stack: Vec<Pending> = vec![(None, OsString::new(), prefix.to_path_buf(), 0)];
    let mut start = Some(start);
    while let Some(p) = stack.pop() {
        read_dir(
            root,
            p,
            &mut start,
            &mut w,
            &mut stack,
            &mut sink,
            &mut passed,
        );
    }
    if !w.batch.is_empty() {
        sink(w.batch);
    }
    empty.append(&mut w.empty);
    (w.dirs, w.unreadable)
}

/// [`walk`] by `workers` threads sharing one stack of directories to read (as `bfs` and
/// `fd` do): each reads a directory at a time — its `getdents` and `statat`s — and hands
/// its own batches to `sink`. Batches are each sorted by directory, not with each other.
pub fn walk_parallel(
    root: &Path,
    workers: usize,
    sink: &(dyn Fn(Vec<FileMeta>) + Sync),
    empty: &mut Vec<PathBuf>,
) -> (u64, u64) {
    let start = match open_start(root, Path::new(""), &mut None) {
        Ok(fd) => fd,
        Err(r) => return r,
    };
    // The start is read here; its subdirectories are the workers' first share.
    let mut first = Walker::new();
    let mut stack: Vec<Pending> = Vec::new();
    let mut fwd = |b| sink(b);
    read_dir(
        root,
        (None, OsString::new(), PathBuf::new(), 0),
        &mut Some(start),
        &mut first,
        &mut stack,
        &mut fwd,
        &mut None,
    );
    // Each worker walks depth-first from its own stack, in name order, so that its batches
    // reach the registry's index in order; it gives the far half of its stack to the
    // shared one only when another worker waits for work. Shared: (directories given
    // away, workers not waiting); the walk is over when both are none.
    let workers = workers.max(1);
    let shared = Mutex::new((stack, workers));
    let waiting = std::sync::atomic::AtomicUsize::new(0);
    let more = std::sync::Condvar::new();
    let work = || {
        let mut w = Walker::new();
        let mut local: Vec<Pending> = Vec::new();
        let mut fwd = |b| sink(b);
        loop {
            let next = match local.pop() {
                Some(p) => Some(p),
                None => {
                    let mut s = shared.lock().expect("walk lock");
                    s.1 -= 1;
                    waiting.fetch_add(1, Ordering::SeqCst);
                    loop {
                        if let Some(p) = s.0.pop() {
                            s.1 += 1;
                            waiting.fetch_sub(1, Ordering::SeqCst);
                            break Some(p);
                        }
                        if s.1 == 0 {
                            // Every worker waits and nothing is left: done (and the
                            // others are told).
                            more.notify_all();
                            break None;
                        }
                        s = more.wait(s).expect("walk lock");
                    }
                }
            };
            let Some(p) = next else { break };
            read_dir(root, p, &mut None, &mut w, &mut local, &mut fwd, &mut None);
            if local.len() > 1 && waiting.load(Ordering::SeqCst) > 0 {
                let mut s = shared.lock().expect("walk lock");
                // The bottom of its stack: the largest names, which it would walk last.
                s.0.extend(local.drain(..local.len() / 2));
                more.notify_all();
            }
        }
        if !w.batch.is_empty() {
            sink(std::mem::take(&mut w.batch));
        }
        w
    };
    let done: Vec<Walker> = std::thread::scope(|s| {
        let others: Vec<_> = (1..workers).map(|_| s.spawn(work)).collect();
        let mut done = vec![work()];
        done.extend(others.into_iter().map(|t| t.join().expect("walker thread")));
        done
    });
    let (mut dirs, mut unreadable) = (first.dirs, first.unreadable);
    if !first.batch.is_empty() {
        sink(first.batch);
    }
    empty.append(&mut first.empty);
    for mut w in done {
        dirs += w.dirs;
        unreadable += w.unreadable;
        empty.append(&mut w.empty);
    }
    (dirs, unreadable)
}

/// Byte order of paths: the registry's (BLOB) index order, and far cheaper than comparing
/// `Path`s component by component.
fn by_path(a: &FileMeta, b: &FileMeta) -> std::cmp::Ordering {
    a.path
        .as_os_str()
        .as_bytes()
        .cmp(b.path.as_os_str().as_bytes())
}

/// At most this many unseen entries are checked one by one after a partial scan.
const MAX_UNSEEN_CHECKS: usize = 100_000;

/// After a partial walk (a directory could not be read, e.g. one deeper than PATH_MAX):
/// an entry the walk did not see is forgotten once a no-follow `stat` beneath the root
/// says it is gone, so that budgets never count vanished files; entries that cannot be
/// looked at (inside the unreadable part) are kept.
fn forget_unseen_if_gone(
    root: &Path,
    registry: &Mutex<Registry>,
    scan: &mut StoreScan,
    store: &str,
) -> Result<u64, RegistryError> {
    let unseen = registry
        .lock()
        .expect("registry lock")
        .unseen_scanned(scan, MAX_UNSEEN_CHECKS)?;
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
    progress: &crate::progress::Progress,
    root_unchanged: &dyn Fn() -> bool,
) -> Result<ScanStats, RegistryError> {
    let started = Instant::now();
    let (mut scan, checkpointer) = {
        let mut reg = registry.lock().expect("registry lock");
        let scan = reg.begin_store_scan(store)?;
        // The log is copied into the database beside the writer, not by it: a writer
        // that checkpoints stops for the copy and its fsyncs. Without a second
        // connection the writer checkpoints as before.
        let checkpointer = reg
            .checkpointer()
            .and_then(|c| reg.set_auto_checkpoint(false).map(|()| c))
            .map_err(|e| debug!(store, error = %e, "no checkpoints beside the scan"))
            .ok();
        (scan, checkpointer)
    };
    // The registry checkpoints by itself again when the scan ends, however it ends.
    let _back = checkpointer
        .is_some()
        .then_some(AutoCheckpointBack(registry));
    let mut stats = ScanStats {
        store: store.into(),
        ..Default::default()
    };
    let (tx, rx) = sync_channel::<(Vec<FileMeta>, Vec<Option<String>>)>(4);
    let mut empty = Vec::new();
    let (dirs, unreadable) = std::thread::scope(|s| -> Result<(u64, u64), RegistryError> {
        let empty = &mut empty;
        let scan = &mut scan;
        // Asked every few batches; pending asks are one checkpoint.
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        if let Some(c) = checkpointer {
            s.spawn(move || {
                while asked.recv().is_ok() {
                    while asked.try_recv().is_ok() {}
                    c.checkpoint();
                }
            });
        }
        // The walking thread also sorts and classifies each batch: the writing thread,
        // the slower of the two, is left only the registry's work.
        let walker = s.spawn(move || {
            let sink = move |mut batch: Vec<FileMeta>| {
                // Sorted batches touch the (store, path) index in order: fewer pages per
                // commit. The walk sorts each directory already, so this costs about one
                // comparison per file unless a directory's file and subdirectory names
                // interleave.
                batch.sort_unstable_by(by_path);
                let classes = batch
                    .iter()
                    .map(|f| classifier.classify(store, &f.path).map(str::to_string))
                    .collect();
                drop(tx.send((batch, classes)));
            };
            // Two walkers: the writer is a third thread, and the walk the slower side.
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
            walk_parallel(root, workers, &sink, empty)
        });
        let mut batches = 0;
        for (batch, classes) in rx {
            stats.files += batch.len() as u64;
            progress.add(batch.len() as u64);
            stats.bytes += batch.iter().map(|f| f.size).sum::<u64>();
            registry
                .lock()
                .expect("registry lock")
                .record_scanned(scan, &batch, &classes, now)?;
            batches += 1;
            if batches % CHECKPOINT_EVERY == 0 {
                let _ = ask.send(());
            }
        }
        drop(ask);
        Ok(walker.join().expect("walker thread"))
    })?;
    stats.dirs = dirs;
    stats.empty_dirs = empty;
    stats.unreadable = unreadable;
    if !root_unchanged() {
        // Unmounted (or replaced) during the walk: what was not seen may be on the disk
        // that left; nothing is forgotten on its account.
        debug!(
            store,
            "the store's root changed during the scan; nothing forgotten"
        );
    } else if unreadable == 0 && dirs > 0 {
        stats.forgotten = registry
            .lock()
            .expect("registry lock")
            .sweep_scanned(&mut scan)? as u64;
    } else if dirs > 0 {
        stats.forgotten = forget_unseen_if_gone(root, registry, &mut scan, store)?;
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

/// Turns the registry's automatic checkpoints back on when dropped (a scan's end).
struct AutoCheckpointBack<'a>(&'a Mutex<Registry>);

impl Drop for AutoCheckpointBack<'_> {
    fn drop(&mut self) {
        let mut reg = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = reg.set_auto_checkpoint(true) {
            warn!(error = %e, "cannot turn the registry's checkpoints back on; its log grows until the next start");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two walkers (or one) sharing the work find exactly what the one-thread walk finds:
    /// every file once, every directory counted once, the same empty directories.
    #[test]
    fn a_parallel_walk_finds_what_the_sequential_walk_finds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for a in 0..7 {
            for b in 0..(a * 3) {
                let d = root.join(format!("a{a}/b{b:02}"));
                std::fs::create_dir_all(&d).unwrap();
                for f in 0..(b % 5) {
                    std::fs::write(d.join(format!("f{f}.ts")), b"x").unwrap();
                }
            }
            std::fs::create_dir_all(root.join(format!("a{a}/deep/er/est"))).unwrap();
            std::fs::write(root.join(format!("a{a}/deep/er/g.ts")), b"").unwrap();
        }
        std::fs::write(root.join("top.ts"), b"").unwrap();
        std::os::unix::fs::symlink("top.ts", root.join("link.ts")).unwrap();
        let sorted = |mut v: Vec<PathBuf>| {
            v.sort();
            v
        };
        let mut files = Vec::new();
        let mut empty = Vec::new();
        let counts = walk(
            root,
            Path::new(""),
            |b| files.extend(b.into_iter().map(|f| f.path)),
            &mut empty,
        );
        let (files, empty) = (sorted(files), sorted(empty));
        assert!(files.len() > 100, "{}", files.len());
        for workers in [1, 2, 3] {
            let got = Mutex::new(Vec::new());
            let mut e = Vec::new();
            let c = walk_parallel(
                root,
                workers,
                &|b| got.lock().unwrap().extend(b.into_iter().map(|f| f.path)),
                &mut e,
            );
            assert_eq!(c, counts, "{workers} workers");
            assert_eq!(sorted(got.into_inner().unwrap()), files, "{workers}");
            assert_eq!(sorted(e), empty, "{workers} workers");
        }
    }
}
