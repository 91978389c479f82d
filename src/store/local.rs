//! A store rooted in a local directory.
//!
//! Every operation resolves paths *beneath* an open descriptor of the root with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (falling back to a component-by-component
//! `O_NOFOLLOW` walk where openat2 is unavailable), so a symlink — planted before or during a
//! pass — can never lead a deletion outside the root, and a symlink itself is never followed.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::{Outcome, StoreError, is_confined};
use crate::registry::FileMeta;

mod delete;

pub use delete::{Deleter, Recovered, TRASH_DIR};

/// What a `/proc` snapshot says about a file's users.
#[derive(Debug, Default)]
pub struct Users {
    /// Who uses it, in words.
    pub who: Option<String>,
    /// Why the snapshot cannot vouch that nobody does (processes it could not see).
    pub blind_spot: Option<String>,
}

/// Why this process cannot write a store root, and what to do about it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Unwritable {
    /// The error, as the system words it ("Read-only file system").
    pub error: String,
    /// What to do.
    pub hint: String,
}

/// Whether this process may write `root` (create and remove entries in it): None when it
/// may. A read-only mount (EROFS) — what systemd's `ProtectSystem=strict` makes of every
/// path left out of `ReadWritePaths=` — or missing permission (EACCES) means nothing in
/// the store can be deleted.
pub fn unwritable(root: &Path) -> Option<Unwritable> {
    let e = rustix::fs::access(root, rustix::fs::Access::WRITE_OK).err()?;
    let error = std::io::Error::from(e).to_string();
    let shown = crate::spell::show(root);
    let hint = match e {
        Errno::ROFS => format!(
            "{shown} is read-only to mediaretain, so nothing in it can be deleted; under systemd add it to ReadWritePaths= (systemctl edit mediaretain), else remount it read-write"
        ),
        Errno::ACCESS | Errno::PERM => format!(
            "uid {} may not write {shown}, so nothing in it can be deleted; give it write access (and under systemd list it in ReadWritePaths=)",
            rustix::process::geteuid().as_raw()
        ),
        _ => format!("{shown} cannot be written, so nothing in it can be deleted"),
    };
    Some(Unwritable { error, hint })
}

/// A store root as found on this machine (kept in the registry: migration 12).
pub use crate::registry::RootFound;

/// Why a store root cannot be used now (its store is left alone until it can).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", content = "why", rename_all = "kebab-case")]
pub enum RootAbsent {
    /// Nothing usable is at the path ("No such file or directory", not a directory).
    Missing(String),
    /// A directory is there, but it is not the filesystem the store lives on: a mount
    /// point whose filesystem is not mounted (the bare directory of the parent filesystem).
    NotMounted(String),
}

impl std::fmt::Display for RootAbsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootAbsent::Missing(why) => write!(f, "missing: {why}"),
            RootAbsent::NotMounted(why) => write!(f, "not mounted: {why}"),
        }
    }
}

/// Whether store root `root` can be used now. `require_mount`: Some(true), it must be a
/// mount point; Some(false), any directory will do (the operator said so); None, it must
/// not look like the bare directory under an unmounted filesystem — a root that
/// `last` (when it was last used) was a mount point, or on another device, and is no
/// longer a mount point.
pub fn find_root(
    root: &Path,
    require_mount: Option<bool>,
    last: Option<RootFound>,
) -> Result<RootFound, RootAbsent> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(root).map_err(|e| RootAbsent::Missing(e.to_string()))?;
    if !md.is_dir() {
        return Err(RootAbsent::Missing("not a directory".into()));
    }
    let found = RootFound {
        dev: md.dev(),
        mount_point: is_mount_point(root, &md),
    };
    if found.mount_point {
        return Ok(found);
    }
    match (require_mount, last) {
        (Some(true), _) => Err(RootAbsent::NotMounted(
            "it is not a mount point, and the store has require_mount = true".into(),
        )),
        (None, Some(l)) if l.mount_point || l.dev != found.dev => {
            Err(RootAbsent::NotMounted(format!(
                "it is not a mount point now, but was {} when last used (device {}:{}, now {}:{}); if the store now lives in this directory on purpose, set require_mount = false for it and reload",
                if l.mount_point {
                    "one"
                } else {
                    "on another device"
                },
                rustix::fs::major(l.dev),
                rustix::fs::minor(l.dev),
                rustix::fs::major(found.dev),
                rustix::fs::minor(found.dev)
            )))
        }
        _ => Ok(found),
    }
}

/// Whether directory `dir` (with metadata `md`) is the root of a mounted filesystem: by
/// `statx`'s `STATX_ATTR_MOUNT_ROOT` (a bind mount of the same filesystem too), else by
/// its device differing from its parent's.
fn is_mount_point(dir: &Path, md: &std::fs::Metadata) -> bool {
    use rustix::fs::{StatxAttributes, StatxFlags};
    use std::os::unix::fs::MetadataExt;
    if let Ok(x) = rustix::fs::statx(
        rustix::fs::CWD,
        dir,
        AtFlags::empty(),
        StatxFlags::BASIC_STATS,
    ) && x.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
    {
        return x.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
    }
    match std::fs::metadata(dir.join("..")) {
        Ok(parent) => parent.dev() != md.dev() || parent.ino() == md.ino(),
        Err(_) => false,
    }
}

/// A local directory store.
#[derive(Debug)]
pub struct LocalStore {
    name: String,
    root: PathBuf,
    root_fd: OwnedFd,
}

/// What a deletion expects to find: the file as it was planned.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime: i64,
    /// Inode number.
    pub ino: u64,
    /// The inode's change time, when the plan depends on the content (a duplicate judged
    /// by its hash): a rewrite that restored size and mtime still moves it.
    pub ctime: Option<i64>,
}

impl Expect {
    /// Whether `st` is the version planned.
    pub(crate) fn matches(&self, st: &rustix::fs::Stat) -> bool {
        st.st_size as u64 == self.size
            && stat_mtime(st) == self.mtime
            && st.st_ino == self.ino
            && self.ctime.is_none_or(|c| stat_ctime(st) == c)
    }
}

/// `st_ctime` in ns since the epoch.
pub(crate) fn stat_ctime(st: &rustix::fs::Stat) -> i64 {
    st.st_ctime
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_ctime_nsec as i64)
}

pub(super) fn stat_mtime(st: &rustix::fs::Stat) -> i64 {
    st.st_mtime
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_mtime_nsec as i64)
}

impl LocalStore {
    /// Opens the root directory of store `name`.
    pub fn open(name: &str, root: &Path) -> Result<LocalStore, StoreError> {
        let root_fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StoreError::OpenRoot {
            store: name.into(),
            root: root.into(),
            source: e.into(),
        })?;
        Ok(LocalStore {
            name: name.into(),
            root: root.into(),
            root_fd,
        })
    }

    /// A second handle on the same root (a duplicated descriptor), for blocking work moved
    /// to another thread.
    pub(super) fn try_clone(&self) -> Result<LocalStore, Errno> {
        Ok(LocalStore {
            name: self.name.clone(),
            root: self.root.clone(),
            root_fd: rustix::io::fcntl_dupfd_cloexec(&self.root_fd, 0)?,
        })
    }

    /// The store name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the root path no longer leads to the directory this store has open (it
    /// was unmounted — also lazily — replaced, or removed): its store must be looked at
    /// again before anything in it is indexed or forgotten.
    pub fn root_moved(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(open) = rustix::fs::fstat(&self.root_fd) else {
            return true;
        };
        match std::fs::metadata(&self.root) {
            Ok(now) => now.dev() != open.st_dev || now.ino() != open.st_ino,
            Err(_) => true,
        }
    }

    /// Opens directory `rel` beneath the root without following any symlink.
    pub(super) fn open_dir(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        self.open_beneath(rel, OFlags::PATH | OFlags::DIRECTORY)
    }

    /// Opens `rel` beneath the root with `flags` (plus `O_CLOEXEC`) without following any
    /// symlink on the way or at the end; the empty path is the root itself.
    pub(super) fn open_beneath(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        let flags = flags | OFlags::CLOEXEC;
        if rel.as_os_str().is_empty() {
            return rustix::fs::openat(&self.root_fd, ".", flags, Mode::empty());
        }
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(&self.root_fd, rel, flags, Mode::empty(), resolve) {
            Err(Errno::NOSYS) | Err(Errno::PERM) => {
                // No openat2 (old kernel or a seccomp filter): walk one component at a time.
                let mut fd = rustix::io::fcntl_dupfd_cloexec(&self.root_fd, 0)?;
                let mut comps = rel.components().peekable();
                while let Some(c) = comps.next() {
                    let f = if comps.peek().is_some() {
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
                    } else {
                        flags
                    };
                    fd = rustix::fs::openat(
                        &fd,
                        c.as_os_str(),
                        f | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )?;
                }
                Ok(fd)
            }
            r => r,
        }
    }

    /// Opens directory `rel` beneath the root, creating missing components (mode 0755); a
    /// symlink on the way is an error, never followed.
    pub(super) fn make_dirs(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut fd = rustix::io::fcntl_dupfd_cloexec(&self.root_fd, 0)?;
        for c in rel.components() {
            match rustix::fs::mkdirat(&fd, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
            fd = rustix::fs::openat(&fd, c.as_os_str(), flags, Mode::empty())?;
        }
        Ok(fd)
    }

    /// What is at `rel` now, without following symlinks: `Ok(None)` when nothing is there
    /// or it is not a regular file.
    pub fn stat(&self, rel: &Path) -> Result<Option<FileMeta>, StoreError> {
        Ok(self.stat_full(rel)?.map(|st| FileMeta {
            path: rel.into(),
            size: st.st_size as u64,
            mtime: stat_mtime(&st),
            ino: st.st_ino,
        }))
    }

    /// Like [`LocalStore::stat`], the whole `stat` (change time, links).
    pub fn stat_full(&self, rel: &Path) -> Result<Option<rustix::fs::Stat>, StoreError> {
        let io = |e: Errno| StoreError::Io {
            store: self.name.clone(),
            path: rel.into(),
            source: e.into(),
        };
        if !is_confined(rel) {
            return Err(StoreError::Outside {
                store: self.name.clone(),
                path: rel.into(),
            });
        }
        let (parent, name) = split(rel);
        let dir = match self.open_dir(parent) {
            Ok(d) => d,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) | Err(Errno::XDEV) => {
                return Ok(None);
            }
            Err(e) => return Err(io(e)),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => Ok(Some(st)),
            Ok(_) | Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// Opens regular file `rel` beneath the root for reading — no link followed anywhere on
    /// the way — and checks with `fstat` that it is the version `want` (size, mtime, inode):
    /// `Ok(None)` when nothing, a link, or another version is there. Every byte read for
    /// an upload comes from such a descriptor.
    pub fn open_version(
        &self,
        rel: &Path,
        want: &Expect,
    ) -> Result<Option<std::fs::File>, StoreError> {
        if !is_confined(rel) {
            return Err(StoreError::Outside {
                store: self.name.clone(),
                path: rel.into(),
            });
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let fd = match self.open_beneath(rel, flags) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => return Ok(None),
            Err(e) => {
                return Err(StoreError::Io {
                    store: self.name.clone(),
                    path: rel.into(),
                    source: e.into(),
                });
            }
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| StoreError::Io {
            store: self.name.clone(),
            path: rel.into(),
            source: e.into(),
        })?;
        let same = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
            && st.st_size as u64 == want.size
            && stat_mtime(&st) == want.mtime
            && st.st_ino == want.ino;
        Ok(same.then(|| std::fs::File::from(fd)))
    }

    /// Reads a small regular file beneath the root (no symlinks followed): `Ok(None)` when
    /// it is gone, an error when it is larger than `max` bytes or unreadable.
    pub fn read_small(&self, rel: &Path, max: usize) -> std::io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        if !is_confined(rel) {
            return Err(std::io::Error::other("not a path inside the store"));
        }
        let (parent, name) = split(rel);
        let dir = match self.open_dir(parent) {
            Ok(d) => d,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Only a regular file is read (a FIFO or device planted under the name is not).
        if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) != FileType::RegularFile {
            return Err(std::io::Error::other("not a regular file"));
        }
        let mut buf = Vec::new();
        std::fs::File::from(fd)
            .take(max as u64 + 1)
            .read_to_end(&mut buf)?;
        if buf.len() > max {
            return Err(std::io::Error::other(format!("larger than {max} bytes")));
        }
        Ok(Some(buf))
    }

    /// The files of directory `dir` (beneath the root, no symlinks followed) whose names end
    /// in `suffix`, as relative paths; nothing when it cannot be read.
    pub fn names_ending(&self, dir: &Path, suffix: &str) -> Vec<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
        let Ok(fd) = self.open_beneath(dir, flags) else {
            return Vec::new();
        };
        let Ok(entries) = rustix::fs::Dir::read_from(&fd) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_type() == FileType::RegularFile || e.file_type() == FileType::Unknown
            })
            .filter(|e| e.file_name().to_bytes().ends_with(suffix.as_bytes()))
            .map(|e| dir.join(std::ffi::OsStr::from_bytes(e.file_name().to_bytes())))
            .collect()
    }
}

pub(super) fn split(rel: &Path) -> (&Path, &std::ffi::OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or_default(),
    )
}

/// What [`LocalStore::prune`] did with one candidate directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Pruned {
    /// Removed these directories (the candidate, then touched parents).
    Removed(Vec<PathBuf>),
    /// Empty or not, it was touched too recently: try again later.
    TooYoung,
    /// Not empty, not a directory, or gone: no longer a candidate.
    Done,
}

impl LocalStore {
    /// Removes directory `rel` if it is empty and was last modified before `before`, then
    /// its parents on the same terms — never the root, never through a symlink. A muxer
    /// still writing into a directory keeps its mtime fresh, so it is never pulled away.
    pub fn prune(&self, rel: &Path, before: i64) -> Pruned {
        let mut removed = Vec::new();
        let mut cur = rel.to_path_buf();
        // The mtime a directory had before we removed a child of it (our own rmdir
        // refreshes it, and that must not count as activity).
        let mut known_mtime: Option<i64> = None;
        while is_confined(&cur) {
            let (parent, name) = split(&cur);
            let Ok(pfd) = self.open_dir(parent) else {
                break;
            };
            let parent_mtime = rustix::fs::fstat(&pfd).map(|st| stat_mtime(&st)).ok();
            let st = match rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => st,
                _ => break,
            };
            if known_mtime.unwrap_or_else(|| stat_mtime(&st)) >= before {
                if removed.is_empty() {
                    return Pruned::TooYoung;
                }
                break;
            }
            if rustix::fs::unlinkat(&pfd, name, AtFlags::REMOVEDIR).is_err() {
                break; // not empty (or gone): stop climbing
            }
            removed.push(cur.clone());
            known_mtime = parent_mtime;
            cur = parent.to_path_buf();
        }
        if removed.is_empty() {
            Pruned::Done
        } else {
            Pruned::Removed(removed)
        }
    }
}

#[cfg(test)]
mod root_tests {
    use super::*;

    #[test]
    fn a_root_is_found_missing_or_not_mounted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("disk");
        assert!(matches!(
            find_root(&root, None, None),
            Err(RootAbsent::Missing(_))
        ));
        std::fs::create_dir(&root).unwrap();
        let here = find_root(&root, None, None).unwrap();
        assert!(!here.mount_point);
        // The same directory as last time, or an operator who says any directory will do.
        assert_eq!(find_root(&root, None, Some(here)), Ok(here));
        let was_mounted = RootFound {
            mount_point: true,
            ..here
        };
        assert!(matches!(
            find_root(&root, None, Some(was_mounted)),
            Err(RootAbsent::NotMounted(_))
        ));
        let elsewhere = RootFound {
            dev: here.dev ^ 1,
            mount_point: false,
        };
        assert!(matches!(
            find_root(&root, None, Some(elsewhere)),
            Err(RootAbsent::NotMounted(_))
        ));
        assert_eq!(find_root(&root, Some(false), Some(was_mounted)), Ok(here));
        assert!(matches!(
            find_root(&root, Some(true), None),
            Err(RootAbsent::NotMounted(_))
        ));
        // A file where the root should be is no store either.
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            find_root(&file, None, None),
            Err(RootAbsent::Missing(_))
        ));
        // "/" is a mount point by any measure.
        assert!(find_root(Path::new("/"), Some(true), None).is_ok());
    }
}
