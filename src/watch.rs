//! Real-time changes: inotify → a bounded channel → batched registry writes.
//!
//! The channel never blocks the watch task: when it is full, or when the kernel queue
//! overflowed, a rescan is requested instead — a missed event costs a scan, never a silent
//! miss.
//!
//! Watches never leave a store. `notify` adds a watch by path (`inotify_add_watch` follows
//! links, and so does its walk of a new directory), so a symlink swapped in for a fresh
//! directory would make it watch — and report — a tree outside the store. Here every
//! directory is opened beneath the store root without following links (`openat2` with
//! `RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS`, `openat(O_NOFOLLOW|O_DIRECTORY)` below), and the
//! watch is added on that very descriptor (`/proc/self/fd/N`, `IN_ONLYDIR`): what is watched
//! is the directory that was opened, whatever its name points at a moment later. A symlink
//! costs no watch at all.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, mpsc};
use tracing::{debug, warn};

use crate::scan::{MAX_DEPTH, open_dir_beneath, open_root};

/// Capacity of the event channel.
pub const CHANNEL: usize = 16_384;

/// A changed path: (store name, path relative to its root).
pub type Change = (Arc<str>, PathBuf);

/// Watch failures.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// inotify could not be set up.
    #[error("inotify: {0}")]
    Init(#[source] std::io::Error),
    /// A store root could not be opened or watched.
    #[error("watching {}: {source}", path.display())]
    Root {
        /// The root.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Watches the roots of local stores. Dropping it stops every watch.
pub struct Watch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Shared between the watch task and the daemon.
#[derive(Default)]
pub struct Signals {
    /// Events were lost; a full rescan is needed.
    pub overflow: AtomicBool,
    /// A full rescan is wanted for a routine reason (a reload restarted the watches).
    pub rescan: AtomicBool,
    /// Wakes the daemon when `overflow` or `rescan` is set.
    pub wake: Notify,
}

const MASK: WatchMask = WatchMask::ATTRIB
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MODIFY)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

struct Root {
    name: Arc<str>,
    fd: OwnedFd,
}

/// The watch set: which descriptor watches which directory of which store.
struct Watches {
    inotify: Inotify,
    roots: Vec<Root>,
    dirs: HashMap<WatchDescriptor, (usize, PathBuf)>,
    /// The watch limit was hit (warned once, not per directory).
    limit_warned: bool,
}

impl Watches {
    /// Watches directory `rel` of root `r` and every directory below it (depth-first,
    /// descriptor-based; links skipped).
    fn add_tree(&mut self, r: usize, rel: &Path) {
        let start = match open_dir_beneath(&self.roots[r].fd, rel) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return,
            Err(Errno::LOOP) | Err(Errno::NOTDIR) | Err(Errno::XDEV) => {
                debug!(store = %self.roots[r].name, path = %crate::spell::show(rel), "not a directory beneath the root (a symlink?); not watched");
                return;
            }
            Err(e) => {
                warn!(store = %self.roots[r].name, path = %crate::spell::show(rel), error = %e, "cannot watch directory");
                return;
            }
        };
        let base_depth = rel.components().count();
        let mut stack = vec![(start, rel.to_path_buf())];
        while let Some((fd, rel)) = stack.pop() {
            if !self.add_one(r, &fd, &rel) {
                continue;
            }
            let Ok(dir) = rustix::fs::Dir::read_from(&fd) else {
                continue;
            };
            if rel.components().count() - base_depth + 1 >= MAX_DEPTH {
                continue;
            }
            for de in dir.flatten() {
                let name = de.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                // Our trash directory is not the store's.
                if rel.as_os_str().is_empty() && name == crate::store::local::TRASH_DIR.as_bytes() {
                    continue;
                }
                let t = de.file_type();
                if t != rustix::fs::FileType::Directory && t != rustix::fs::FileType::Unknown {
                    if t == rustix::fs::FileType::Symlink {
                        debug!(store = %self.roots[r].name, path = %crate::spell::show(&rel.join(OsStr::from_bytes(name))), "symlink not watched");
                    }
                    continue;
                }
                let name = OsStr::from_bytes(name);
                match rustix::fs::openat(
                    &fd,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(child) => stack.push((child, rel.join(name))),
                    Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                        debug!(store = %self.roots[r].name, path = %crate::spell::show(&rel.join(name)), "not a directory (a symlink?); not watched");
                    }
                    Err(_) => {}
                }
            }
        }
    }

    /// Adds a watch on the directory open as `fd`: through its descriptor, so exactly that
    /// directory is watched.
    fn add_one(&mut self, r: usize, fd: &OwnedFd, rel: &Path) -> bool {
        let at = format!("/proc/self/fd/{}", fd.as_raw_fd());
        match self.inotify.watches().add(&at, MASK) {
            Ok(wd) => {
                self.dirs.insert(wd, (r, rel.to_path_buf()));
                true
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                if !self.limit_warned {
                    self.limit_warned = true;
                    warn!(store = %self.roots[r].name, path = %crate::spell::show(rel), watches = self.dirs.len(), "inotify watch limit reached; directories beyond it are seen by scans only (raise fs.inotify.max_user_watches?)");
                }
                false
            }
            Err(e) => {
                warn!(store = %self.roots[r].name, path = %crate::spell::show(rel), error = %e, "cannot watch directory; changes there are seen by the next scan");
                false
            }
        }
    }

    /// Stops watching `rel` of root `r` and everything below it (it moved away).
    fn remove_tree(&mut self, r: usize, rel: &Path) {
        let gone: Vec<WatchDescriptor> = self
            .dirs
            .iter()
            .filter(|(_, (rr, p))| *rr == r && p.starts_with(rel))
            .map(|(wd, _)| wd.clone())
            .collect();
        for wd in gone {
            self.dirs.remove(&wd);
            let _ = self.inotify.watches().remove(wd);
        }
    }
}

impl Watch {
    /// Starts watching `roots` (store name, root). Changes go to `tx`. Must be called
    /// within a tokio runtime.
    pub fn start(
        roots: &[(String, PathBuf)],
        tx: mpsc::Sender<Change>,
        signals: Arc<Signals>,
    ) -> Result<Watch, WatchError> {
        let inotify = Inotify::init().map_err(WatchError::Init)?;
        let mut w = Watches {
            inotify,
            roots: Vec::new(),
            dirs: HashMap::new(),
            limit_warned: false,
        };
        for (name, root) in roots {
            let fd = open_root(root).map_err(|e| WatchError::Root {
                path: root.clone(),
                source: e.into(),
            })?;
            w.roots.push(Root {
                name: Arc::from(name.as_str()),
                fd,
            });
            let r = w.roots.len() - 1;
            w.add_tree(r, Path::new(""));
            debug!(store = %name, root = %crate::spell::show(root), watches = w.dirs.len(), "watching");
        }
        let task = tokio::spawn(run(w, tx, signals));
        Ok(Watch { task })
    }
}

/// Number of directories watched by inotify descriptor `fd` of process `pid` (from
/// `/proc/PID/fdinfo`), for tests and diagnostics.
pub fn watch_count(pid: u32, fd: i32) -> Option<usize> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    Some(
        info.lines()
            .filter(|l| l.starts_with("inotify wd:"))
            .count(),
    )
}

async fn run(w: Watches, tx: mpsc::Sender<Change>, sig: Arc<Signals>) {
    let lost = || {
        sig.overflow.store(true, Ordering::SeqCst);
        sig.wake.notify_one();
    };
    // SAFETY: the inotify descriptor is owned by `w`, which the AsyncFd owns: it stays open
    // and the same for the AsyncFd's whole life.
    let mut afd = match unsafe { AsyncFd::register_with_interest(w, tokio::io::Interest::READABLE) }
    {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "cannot poll inotify; changes are seen by periodic scans only");
            return;
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut guard = match afd.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                warn!(error = %e, "inotify failed; changes are seen by periodic scans only");
                return lost();
            }
        };
        let w = guard.get_inner_mut();
        let events: Vec<(WatchDescriptor, EventMask, Option<Vec<u8>>)> =
            match w.inotify.read_events(&mut buf) {
                Ok(evs) => evs
                    .map(|e| (e.wd, e.mask, e.name.map(|n| n.as_bytes().to_vec())))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "reading inotify events failed; scheduling a rescan");
                    lost();
                    continue;
                }
            };
        let mut overflow = false;
        for (wd, mask, name) in events {
            if mask.contains(EventMask::Q_OVERFLOW) {
                overflow = true;
                continue;
            }
            if mask.contains(EventMask::IGNORED) {
                w.dirs.remove(&wd);
                continue;
            }
            let Some((r, dir)) = w.dirs.get(&wd).cloned() else {
                continue;
            };
            let rel = match &name {
                Some(n) => dir.join(OsStr::from_bytes(n)),
                // An event on the watched directory itself (deleted, moved).
                None => dir.clone(),
            };
            // Files on their way out through our trash directory are not the store's.
            if rel.starts_with(crate::store::local::TRASH_DIR) {
                continue;
            }
            if mask.contains(EventMask::ISDIR) && name.is_some() {
                if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                    w.add_tree(r, &rel);
                } else if mask.intersects(EventMask::MOVED_FROM | EventMask::DELETE) {
                    w.remove_tree(r, &rel);
                }
            }
            if rel.as_os_str().is_empty() {
                continue;
            }
            if tx.try_send((w.roots[r].name.clone(), rel)).is_err() {
                overflow = true;
            }
        }
        if overflow {
            lost();
        }
    }
}

impl std::os::fd::AsRawFd for Watches {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inotify.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_symlinked_directory_is_never_watched() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(outside.join("x/y")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let w = Watch::start(
            &[("s".into(), root.clone())],
            tx,
            Arc::new(Signals::default()),
        )
        .unwrap();
        // Root, a, a/b — not the link, not the tree it points at.
        let fd = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .find(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy() == "anon_inode:inotify")
            })
            .and_then(|e| e.file_name().to_str()?.parse().ok())
            .unwrap();
        assert_eq!(watch_count(std::process::id(), fd), Some(3));
        // A new directory is watched; a link replacing it right after is not followed.
        std::fs::create_dir(root.join("new")).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.1, PathBuf::from("new"));
        std::fs::write(root.join("new/f"), b"x").unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.1, PathBuf::from("new/f"));
        std::fs::remove_file(root.join("new/f")).unwrap();
        std::fs::remove_dir(root.join("new")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("new")).unwrap();
        std::fs::write(outside.join("x/secret"), b"x").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
        while let Ok(Some(c)) = tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            assert!(!c.1.starts_with("new/x"), "saw {c:?} outside the store");
        }
        assert!(watch_count(std::process::id(), fd).unwrap() <= 4);
        drop(w);
    }
}
