//! The one way a local file goes: re-check the planned version beneath the root, take the
//! kernel's exclusive lease (nobody else may have it open), move it into the store's
//! private trash directory with `RENAME_NOREPLACE`, check the inode there, unlink, verify.
//! A file renamed over the planned name in the last instant is put back, never deleted.
//! Also: putting back or settling what a crash left in the trash.
//!
//! One file (about 760 lines of code, then its tests) because each step relies on the one
//! before it holding: the descriptor opened beneath the root is the one leased, renamed and
//! checked, and the recovery reads the names the rename wrote; split, the invariant "the
//! checked inode or nothing" would be spread over files.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::*;

/// What the kernel says about other users of a file.
enum Exclusive {
    /// Nobody else has it open; keep the descriptor (and its lease) until after the unlink.
    /// With its `fstat` under the lease (the inode checked, the version not yet).
    Granted(OwnedFd, rustix::fs::Stat),
    /// Another process has it open (or holds a lease on it).
    Busy,
    /// No kernel answer — this filesystem has no leases (NFS, FUSE…), or we may not lease
    /// this file (not its owner, no CAP_LEASE): only a `/proc` snapshot can tell. The
    /// descriptor still pins the inode, so that its number cannot be reused meanwhile.
    Unsupported(OwnedFd),
}

/// Asks the kernel whether anyone else has the file open, atomically: an exclusive (write)
/// lease — `fcntl(F_SETLEASE, F_WRLCK)` — is granted only while no other descriptor for
/// the file is open anywhere (and a lock needs an open descriptor), and an `open()` racing
/// with us blocks until we let go. No `/proc` walk, and no window before the unlink.
/// The descriptor's inode is checked against `before` once: under the lease when granted
/// (one `fstat` for both checks), before trusting a snapshot when there is no lease.
fn exclusive(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    before: &rustix::fs::Stat,
) -> Result<Exclusive, Outcome> {
    ignore_sigio();
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(Outcome::Vanished),
        Err(Errno::WOULDBLOCK) => return Ok(Exclusive::Busy), // another lease holder
        Err(e) => {
            return Err(Outcome::Failed(format!(
                "cannot open to check for users: {e}"
            )));
        }
    };
    let same = |fd: &OwnedFd| match rustix::fs::fstat(fd) {
        Ok(st) if st.st_ino == before.st_ino && st.st_dev == before.st_dev => Ok(st),
        _ => Err(Outcome::Refused(
            "changed while being checked; it is re-evaluated on the next pass".into(),
        )),
    };
    // SAFETY: F_SETLEASE takes an int argument; `fd` is a valid open descriptor.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
    if r == 0 {
        let st = same(&fd)?;
        return Ok(Exclusive::Granted(fd, st));
    }
    match std::io::Error::last_os_error().raw_os_error() {
        // Whatever the name holds now is busy: refused either way.
        Some(libc::EAGAIN) | Some(libc::EBUSY) => Ok(Exclusive::Busy),
        _ => {
            same(&fd)?;
            Ok(Exclusive::Unsupported(fd))
        }
    }
}

/// A lease break is announced with SIGIO, whose default action ends the process; a lease
/// is only held for the microseconds around an unlink, so the notice is not needed.
fn ignore_sigio() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: installs SIG_IGN for SIGIO, process-wide; no handler code runs.
    ONCE.call_once(|| unsafe {
        libc::signal(libc::SIGIO, libc::SIG_IGN);
    });
}

/// The private trash directory at every local store root (mode 0700, ours alone). A file
/// is deleted by moving it in here first and checking that what arrived is the inode that
/// passed the re-check: `unlinkat(dir, name)` would remove whatever the name holds by then.
/// Scans, the watcher and listings skip it; a crash leaves at most a few files in it, put
/// back at the next start (see [`LocalStore::recover_trash`]).
pub const TRASH_DIR: &str = ".mediaretain-trash";

/// The name prefix under which a trash directory that is not ours is moved aside (then
/// the Unix time, and a number when that is taken): it is the store's, scanned like any.
pub const FOREIGN_TRASH: &str = ".mediaretain-trash.foreign.";

/// How often a batch moves aside a trash swapped in under it before it gives up.
const TRASH_ATTEMPTS: usize = 16;

/// Why the trash directory could not be opened; `raced`: another user kept replacing it
/// (worth trying again at once), else a lasting cause (the rest of a batch fails alike).
#[derive(Debug)]
struct TrashError {
    why: String,
    raced: bool,
}

impl From<String> for TrashError {
    fn from(why: String) -> Self {
        TrashError { why, raced: false }
    }
}

/// What is at the trash directory's name.
enum TrashLook {
    /// Our own: a directory of our uid, closed to others.
    Ours(OwnedFd),
    /// Nothing.
    Missing,
    /// Something else: what it is, in words.
    Foreign(String),
}

/// The longest file name (`NAME_MAX`).
const NAME_MAX: usize = 255;
/// Suffix of a trash entry whose original path was too long to be its name: the path is in
/// a sidecar file of the same stem with [`TRASH_PATH_SUFFIX`].
const TRASH_LONG_SUFFIX: &str = "+";
const TRASH_PATH_SUFFIX: &str = "+path";

/// Where a trash entry came from: its name is `PID.N.ESCAPED` (the relative path with
/// `%` → `%25` and `/` → `%2F`), or `PID.N+` with the path in `PID.N+path` when escaped
/// it would not fit in a file name.
fn trash_name(rel: &Path, pid: u32, n: u64) -> (String, Option<String>) {
    use std::fmt::Write as _;
    // One allocation per file (this runs for every deletion).
    let mut name = String::with_capacity(NAME_MAX + 1);
    let _ = write!(name, "{pid}.{n}");
    let stem = name.len();
    // Not UTF-8 (a raw name) or too long: the sidecar holds the raw bytes.
    if let Some(text) = rel.to_str() {
        name.push('.');
        for c in text.chars() {
            match c {
                '%' => name.push_str("%25"),
                '/' => name.push_str("%2F"),
                c => name.push(c),
            }
        }
        if name.len() <= NAME_MAX {
            return (name, None);
        }
        name.truncate(stem);
    }
    let sidecar = format!("{name}{TRASH_PATH_SUFFIX}");
    name.push_str(TRASH_LONG_SUFFIX);
    (name, Some(sidecar))
}

/// The original relative path of trash entry `name` (`None` for a sidecar, or a name that
/// is not ours); `sidecar` reads a sidecar's content.
fn trash_origin(name: &str, sidecar: impl FnOnce(&str) -> Option<Vec<u8>>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    if name.ends_with(TRASH_PATH_SUFFIX) {
        return None;
    }
    if let Some(stem) = name.strip_suffix(TRASH_LONG_SUFFIX) {
        let raw = sidecar(&format!("{stem}{TRASH_PATH_SUFFIX}"))?;
        return Some(PathBuf::from(std::ffi::OsString::from_vec(raw)));
    }
    let mut parts = name.splitn(3, '.');
    let (_pid, _n, esc) = (parts.next()?, parts.next()?, parts.next()?);
    let (mut out, b) = (Vec::new(), esc.as_bytes());
    let mut i = 0;
    while i < b.len() {
        match &b[i..] {
            [b'%', b'2', b'5', ..] => (out.push(b'%'), i += 3),
            [b'%', b'2', b'F', ..] => (out.push(b'/'), i += 3),
            [c, ..] => (out.push(*c), i += 1),
            [] => break,
        };
    }
    let p = PathBuf::from(std::ffi::OsString::from_vec(out));
    is_confined(&p).then_some(p)
}

/// Moves `name` of `dir` into `trash` under a fresh entry name (with its sidecar when the
/// path is too long to be a name), never over an existing entry: (entry, sidecar).
fn into_trash(
    trash: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    rel: &Path,
    pid: u32,
) -> Result<(String, Option<String>), Errno> {
    loop {
        let n = TRASH_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tname, sidecar) = trash_name(rel, pid, n);
        if let Some(side) = &sidecar {
            use std::os::unix::ffi::OsStrExt;
            let fl = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
            let fd = match rustix::fs::openat(trash, side.as_str(), fl, Mode::from_raw_mode(0o600))
            {
                Ok(fd) => fd,
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e),
            };
            if let Err(e) =
                std::io::Write::write_all(&mut std::fs::File::from(fd), rel.as_os_str().as_bytes())
            {
                let _ = rustix::fs::unlinkat(trash, side.as_str(), AtFlags::empty());
                return Err(Errno::from_io_error(&e).unwrap_or(Errno::IO));
            }
        }
        let drop_sidecar = || {
            if let Some(side) = &sidecar {
                let _ = rustix::fs::unlinkat(trash, side.as_str(), AtFlags::empty());
            }
        };
        match rustix::fs::renameat_with(
            dir,
            name,
            trash,
            tname.as_str(),
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => return Ok((tname, sidecar)),
            Err(Errno::EXIST) => {
                drop_sidecar();
                continue;
            }
            Err(e) => {
                drop_sidecar();
                return Err(e);
            }
        }
    }
}

/// Distinguishes the trash entries of one process.
static TRASH_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What [`LocalStore::recover_trash`] did with one file left in the trash directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovered {
    /// The file the interrupted deletion had checked: removed now.
    Deleted(PathBuf),
    /// Put back under its name.
    Restored(PathBuf),
    /// Left in the trash: (its original path if known, its name in the trash, why).
    Kept(Option<PathBuf>, String, String),
}

impl LocalStore {
    /// The re-check before a deletion, shared by [`Deleter::delete`] and
    /// [`LocalStore::would_delete`]: `rel` must be a plain path beneath the root (no
    /// symlink on the way) naming the regular file that was planned (size, mtime, inode).
    /// Its directory (opened now, never cached) and its stat, or the outcome to report.
    fn recheck(&self, rel: &Path, expect: &Expect) -> Result<(OwnedFd, rustix::fs::Stat), Outcome> {
        if !is_confined(rel) {
            return Err(Outcome::Refused(format!(
                "{} is not a plain path inside the store",
                crate::spell::show(rel)
            )));
        }
        let (parent, name) = split(rel);
        // Resolved beneath the root for every file, never cached: a directory moved out of
        // the store during a pass must not take a deletion along with it.
        let dir = match self.open_dir(parent) {
            Ok(d) => d,
            Err(Errno::NOENT) => return Err(Outcome::Vanished),
            Err(Errno::LOOP) | Err(Errno::NOTDIR) | Err(Errno::XDEV) => {
                return Err(Outcome::Refused("a directory on its path is a symlink or leaves the store root; symlinks are never followed".into()));
            }
            Err(e) => return Err(Outcome::Failed(format!("cannot open its directory: {e}"))),
        };
        let st = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Err(Outcome::Vanished),
            Err(e) => return Err(Outcome::Failed(format!("cannot stat: {e}"))),
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft != FileType::RegularFile {
            return Err(Outcome::Refused(format!(
                "not a regular file ({ft:?}); only regular files are deleted"
            )));
        }
        if !expect.matches(&st) {
            return Err(Outcome::Refused(format!(
                "changed since it was planned (now {} bytes, modified {}); it is re-evaluated on the next pass",
                st.st_size,
                crate::units::fmt_time(stat_mtime(&st))
            )));
        }
        Ok((dir, st))
    }

    /// What [`Deleter::delete`] would do with `rel` now, changing nothing: the same
    /// re-check of the planned version, and whether anyone has it open by `users` (the
    /// `/proc` snapshot; the kernel is asked only when the pass acts).
    pub fn would_delete(
        &self,
        rel: &Path,
        expect: Expect,
        users: &mut dyn FnMut(u64, u64) -> Users,
    ) -> Outcome {
        match self.recheck(rel, &expect) {
            Err(o) => o,
            Ok((_, st)) => match users(st.st_dev, st.st_ino).who {
                Some(who) => Outcome::Refused(format!("in use: {who}")),
                None => Outcome::WouldDelete,
            },
        }
    }

    /// A deletion session; it remembers the directories it touched, for pruning.
    pub fn deleter(&self) -> Deleter<'_> {
        Deleter {
            store: self,
            pid: std::process::id(),
            touched: Vec::new(),
            trash: None,
            trash_error: None,
            unwritable: None,
        }
    }

    /// What is at the trash directory's name now, never following a link.
    fn look_trash(&self) -> Result<TrashLook, String> {
        let flags = OFlags::RDONLY
            | OFlags::DIRECTORY
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.root_fd, TRASH_DIR, flags, Mode::empty()) {
            Ok(fd) => {
                let st = rustix::fs::fstat(&fd)
                    .map_err(|e| format!("cannot stat {TRASH_DIR} at the store root: {e}"))?;
                if st.st_uid == rustix::process::geteuid().as_raw() && st.st_mode & 0o077 == 0 {
                    Ok(TrashLook::Ours(fd))
                } else {
                    Ok(TrashLook::Foreign(format!(
                        "a directory of uid {} with mode {:o}",
                        st.st_uid,
                        st.st_mode & 0o7777
                    )))
                }
            }
            Err(Errno::NOENT) => Ok(TrashLook::Missing),
            // A symlink (never followed), a file, a FIFO, or a directory we may not open.
            Err(Errno::LOOP | Errno::NOTDIR | Errno::ACCESS | Errno::PERM) => {
                let what =
                    match rustix::fs::statat(&self.root_fd, TRASH_DIR, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                            FileType::Symlink => format!("a symbolic link of uid {}", st.st_uid),
                            FileType::Directory => {
                                format!("a directory of uid {} we may not open", st.st_uid)
                            }
                            ft => format!("a {ft:?} of uid {}", st.st_uid),
                        },
                        Err(Errno::NOENT) => return Ok(TrashLook::Missing),
                        Err(e) => format!("something that cannot be examined ({e})"),
                    };
                Ok(TrashLook::Foreign(what))
            }
            Err(e) => Err(format!(
                "cannot open the trash directory {TRASH_DIR} at the store root: {e}"
            )),
        }
    }

    /// Moves a trash that is not ours (`what` it is) aside, beneath the root, under a name
    /// that says so (the name itself is renamed: a link is never followed). Logged once
    /// for each one moved, never per file.
    fn move_trash_aside(&self, what: &str) -> Result<(), String> {
        // The time to the nanosecond: a user who keeps planting one makes many a second.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        for n in 0..100u32 {
            let aside = match n {
                0 => format!("{FOREIGN_TRASH}{secs}"),
                n => format!("{FOREIGN_TRASH}{secs}.{n}"),
            };
            match rustix::fs::renameat_with(
                &self.root_fd,
                TRASH_DIR,
                &self.root_fd,
                aside.as_str(),
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) => {
                    tracing::warn!(
                        action = "trash",
                        store = %self.name,
                        root = %crate::spell::show(&self.root),
                        found = what,
                        moved_to = %aside,
                        "the trash directory {TRASH_DIR} at the root of store {} was not mediaretain's ({what}): moved aside as {aside}, never followed; a fresh one is made",
                        self.name
                    );
                    return Ok(());
                }
                Err(Errno::EXIST | Errno::NOTEMPTY) => continue,
                Err(Errno::NOENT) => return Ok(()), // gone meanwhile
                Err(e) => {
                    return Err(format!(
                        "the trash directory {TRASH_DIR} at the store root is not mediaretain's ({what}) and cannot be moved aside: {e}"
                    ));
                }
            }
        }
        Err(format!(
            "the trash directory {TRASH_DIR} at the store root is not mediaretain's ({what}), and every name to move it aside to is taken"
        ))
    }

    /// Opens the trash directory (creating it, mode 0700, when `create`): `Ok(None)` when
    /// it does not exist. It must be a real directory owned by us and closed to others —
    /// else somebody else could swap names in it. Anything else under its name (another
    /// user's directory, a symlink, a file: the store root's owner may put one there at any
    /// time) is moved aside and a fresh one made, so that nobody but root can stop deletion.
    fn open_trash(&self, create: bool) -> Result<Option<OwnedFd>, TrashError> {
        let mut last = String::new();
        for _ in 0..TRASH_ATTEMPTS {
            match self.look_trash()? {
                TrashLook::Ours(fd) => return Ok(Some(fd)),
                TrashLook::Missing if !create => return Ok(None),
                TrashLook::Missing => {
                    match rustix::fs::mkdirat(&self.root_fd, TRASH_DIR, Mode::from_raw_mode(0o700))
                    {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(format!(
                                "cannot create the trash directory {TRASH_DIR} at the store root: {e}"
                            )
                            .into());
                        }
                    }
                }
                TrashLook::Foreign(what) => {
                    self.move_trash_aside(&what)?;
                    last = what;
                }
            }
        }
        Err(TrashError {
            why: format!(
                "the trash directory {TRASH_DIR} at the store root was replaced by another's ({last}) {TRASH_ATTEMPTS} times in a row; tried again for the next file"
            ),
            raced: true,
        })
    }

    /// Handles what a crash left in the trash directory: a file that `checked` says is the
    /// inode an interrupted deletion had checked (by its original path and `stat`) is
    /// removed; anything else is put back under its name if that is free, else kept and
    /// reported. Nothing else is ever removed from the trash.
    pub fn recover_trash(
        &self,
        checked: &mut dyn FnMut(&Path, &rustix::fs::Stat) -> bool,
    ) -> Result<Vec<Recovered>, String> {
        let Some(trash) = self.open_trash(false).map_err(|e| e.why)? else {
            return Ok(Vec::new());
        };
        let dir = rustix::fs::Dir::read_from(&trash)
            .map_err(|e| format!("cannot read {TRASH_DIR}: {e}"))?;
        let mut names = Vec::new();
        for ent in dir {
            let ent = ent.map_err(|e| format!("cannot read {TRASH_DIR}: {e}"))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        let mut out = Vec::new();
        for name in &names {
            let read_sidecar = |side: &str| {
                let fl = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = rustix::fs::openat(&trash, side, fl, Mode::empty()).ok()?;
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut buf).ok()?;
                Some(buf)
            };
            if name.ends_with(TRASH_PATH_SUFFIX) {
                continue; // handled with its entry
            }
            let sidecar = name
                .strip_suffix(TRASH_LONG_SUFFIX)
                .map(|stem| format!("{stem}{TRASH_PATH_SUFFIX}"));
            let drop_sidecar = || {
                if let Some(side) = &sidecar {
                    let _ = rustix::fs::unlinkat(&trash, side.as_str(), AtFlags::empty());
                }
            };
            let Some(rel) = trash_origin(name, read_sidecar) else {
                out.push(Recovered::Kept(
                    None,
                    name.clone(),
                    "not an entry mediaretain made, or its original path is unreadable".into(),
                ));
                continue;
            };
            let st = match rustix::fs::statat(&trash, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(_) => continue, // gone meanwhile
            };
            if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && checked(&rel, &st) {
                match rustix::fs::unlinkat(&trash, name.as_str(), AtFlags::empty()) {
                    Ok(()) => {
                        drop_sidecar();
                        out.push(Recovered::Deleted(rel));
                    }
                    Err(e) => out.push(Recovered::Kept(
                        Some(rel),
                        name.clone(),
                        format!("cannot remove it: {e}"),
                    )),
                }
                continue;
            }
            let (parent, base) = split(&rel);
            let back = self.make_dirs(parent).and_then(|d| {
                rustix::fs::renameat_with(
                    &trash,
                    name.as_str(),
                    &d,
                    base,
                    rustix::fs::RenameFlags::NOREPLACE,
                )
            });
            match back {
                Ok(()) => {
                    drop_sidecar();
                    out.push(Recovered::Restored(rel));
                }
                Err(Errno::EXIST) => out.push(Recovered::Kept(
                    Some(rel),
                    name.clone(),
                    "its name is taken by another file now".into(),
                )),
                Err(e) => out.push(Recovered::Kept(
                    Some(rel),
                    name.clone(),
                    format!("cannot put it back: {e}"),
                )),
            }
        }
        Ok(out)
    }
}

/// Deletes files of one store with verification; see [`LocalStore::deleter`].
pub struct Deleter<'a> {
    store: &'a LocalStore,
    /// This process's id, part of each trash entry's name (asked once, not per file).
    pid: u32,
    touched: Vec<PathBuf>,
    /// The store's trash directory, opened (and created) at the first deletion.
    trash: Option<OwnedFd>,
    /// Why no trash directory could be had in this batch (not tried again per file).
    trash_error: Option<String>,
    /// Whether the root is writable, looked at after the first failure.
    unwritable: Option<Option<super::Unwritable>>,
}

impl Deleter<'_> {
    /// Unlinks `rel` if it is still the regular file that was planned and nobody else has
    /// it open, then observes it gone. The kernel decides who has it open (see
    /// [`exclusive`]); `users` names them (by device and inode) for the refusal, and decides
    /// alone on filesystems without leases.
    ///
    /// A failure in a root this process cannot write (a read-only mount, as a systemd
    /// unit's `ProtectSystem=` makes of a root left out of `ReadWritePaths=`) says so.
    pub fn delete(
        &mut self,
        rel: &Path,
        expect: Expect,
        users: &mut dyn FnMut(u64, u64) -> Users,
    ) -> Outcome {
        match self.try_delete(rel, expect, users) {
            Outcome::Failed(why) => {
                let root = self.store.root();
                let hint = self
                    .unwritable
                    .get_or_insert_with(|| super::unwritable(root))
                    .as_ref()
                    .map(|u| format!(" ({})", u.hint))
                    .unwrap_or_default();
                Outcome::Failed(format!("{why}{hint}"))
            }
            o => o,
        }
    }

    fn try_delete(
        &mut self,
        rel: &Path,
        expect: Expect,
        users: &mut dyn FnMut(u64, u64) -> Users,
    ) -> Outcome {
        let (dir_fd, before) = match self.store.recheck(rel, &expect) {
            Ok(checked) => checked,
            Err(o) => return o,
        };
        let (parent, name) = split(rel);
        let dir = dir_fd.as_fd();
        // Held until after the unlink: while we hold the lease, any open() of the file
        // waits; either way the descriptor pins the inode, so that its number identifies
        // it until we are done (a freed inode number could be reused by a newcomer).
        let _pin = match exclusive(dir, name, &before) {
            // Under the lease nobody can have it open for writing: check once more that
            // nothing wrote to it between the first look and the lease.
            Ok(Exclusive::Granted(fd, st)) if expect.matches(&st) => fd,
            Ok(Exclusive::Granted(..)) => {
                return Outcome::Refused(
                    "changed while being checked; it is re-evaluated on the next pass".into(),
                );
            }
            Ok(Exclusive::Busy) => {
                let who = users(before.st_dev, before.st_ino).who.unwrap_or_else(|| {
                    "open by another process (the kernel refused exclusive access)".into()
                });
                return Outcome::Refused(format!("in use: {who}"));
            }
            // No kernel answer (no leases here, or not allowed to lease this file): the
            // snapshot decides, and it must have seen every process — else we cannot tell.
            Ok(Exclusive::Unsupported(fd)) => match users(before.st_dev, before.st_ino) {
                Users { who: Some(who), .. } => return Outcome::Refused(format!("in use: {who}")),
                Users {
                    blind_spot: Some(why),
                    ..
                } => {
                    return Outcome::Refused(format!("cannot verify it is unused: {why}"));
                }
                Users { .. } => fd,
            },
            Err(refusal) => return refusal,
        };
        // The name may hold another inode by now (renamed over ours in the last instant):
        // move whatever it holds into the trash, and unlink it only if it is ours. The
        // trash is looked at once per batch, and again only when a move into it fails
        // while the file is still there (another user removed or replaced it meanwhile).
        let mut reopened = false;
        let (tname, sidecar) = loop {
            if self.trash.is_none() {
                if let Some(why) = &self.trash_error {
                    return Outcome::Failed(why.clone());
                }
                match self.store.open_trash(true) {
                    Ok(t) => self.trash = t,
                    // Lost a race with another user swapping the trash: this file fails,
                    // the next one tries again (a sticky error would let the racer fail
                    // the whole batch).
                    Err(TrashError { why, raced: true }) => return Outcome::Failed(why),
                    Err(TrashError { why, .. }) => {
                        self.trash_error = Some(why.clone());
                        return Outcome::Failed(why);
                    }
                }
            }
            let Some(trash) = self.trash.as_ref().map(|t| t.as_fd()) else {
                return Outcome::Failed(format!("no trash directory {TRASH_DIR}"));
            };
            match into_trash(trash, dir, name, rel, self.pid) {
                Ok(moved) => break moved,
                Err(e) => {
                    let still_here = matches!(
                        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
                        Ok(st) if st.st_ino == before.st_ino && st.st_dev == before.st_dev
                    );
                    if e == Errno::NOENT && still_here && !reopened {
                        // Our trash directory was removed under us: make a fresh one.
                        reopened = true;
                        self.trash = None;
                        continue;
                    }
                    return match e {
                        Errno::NOENT if !still_here => Outcome::Vanished,
                        Errno::XDEV => Outcome::Refused(format!(
                            "on another filesystem than the store root (a mount inside the store): files are deleted by moving them into {TRASH_DIR} at the store root first, to be sure of the file removed"
                        )),
                        e => Outcome::Failed(format!("cannot move it into {TRASH_DIR}: {e}")),
                    };
                }
            }
        };
        let Some(trash) = self.trash.as_ref().map(|t| t.as_fd()) else {
            return Outcome::Failed(format!("no trash directory {TRASH_DIR}"));
        };
        let drop_sidecar = || {
            if let Some(side) = &sidecar {
                let _ = rustix::fs::unlinkat(trash, side.as_str(), AtFlags::empty());
            }
        };
        let moved = match rustix::fs::statat(trash, tname.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => {
                return Outcome::Failed(format!(
                    "cannot check what was moved to {TRASH_DIR}/{tname}: {e}"
                ));
            }
        };
        let ours = moved.st_dev == before.st_dev
            && moved.st_ino == before.st_ino
            && moved.st_size as u64 == expect.size
            && stat_mtime(&moved) == expect.mtime;
        if !ours {
            // Not the file we checked: put the newcomer back, never over a name taken again.
            let why = if moved.st_dev == before.st_dev && moved.st_ino == before.st_ino {
                "changed while being checked"
            } else {
                "replaced by another file in the last instant (renamed over it)"
            };
            return match rustix::fs::renameat_with(
                trash,
                tname.as_str(),
                dir,
                name,
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) => {
                    drop_sidecar();
                    Outcome::Refused(format!(
                        "{why}; the file now under its name was left in place and is re-evaluated on the next pass"
                    ))
                }
                Err(e) => Outcome::Failed(format!(
                    "{why}, and the file now under its name could not be put back ({}): it is kept as {TRASH_DIR}/{tname} at the store root",
                    if e == Errno::EXIST {
                        "the name was taken again".to_string()
                    } else {
                        e.to_string()
                    }
                )),
            };
        }
        if let Err(e) = rustix::fs::unlinkat(trash, tname.as_str(), AtFlags::empty()) {
            return Outcome::Failed(format!("unlink of {TRASH_DIR}/{tname}: {e}"));
        }
        match rustix::fs::statat(trash, tname.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => {}
            Ok(_) => {
                return Outcome::Failed(format!(
                    "still present after unlink, as {TRASH_DIR}/{tname}"
                ));
            }
            Err(e) => return Outcome::Failed(format!("cannot verify removal: {e}")),
        }
        drop_sidecar();
        if !parent.as_os_str().is_empty() && self.touched.last().is_none_or(|p| p != parent) {
            self.touched.push(parent.to_path_buf());
        }
        Outcome::Deleted
    }

    /// The directories deletions touched (candidates for pruning), deduplicated.
    pub fn finish(self) -> Vec<PathBuf> {
        let mut dirs = self.touched;
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn expect_of(p: &Path) -> Expect {
        let md = fs::symlink_metadata(p).unwrap();
        use std::os::unix::fs::MetadataExt;
        Expect {
            size: md.len(),
            mtime: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ino: md.ino(),
            ctime: None,
        }
    }

    #[test]
    fn deletes_verifies_and_never_follows_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim.mp4");
        fs::write(&victim, b"precious").unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("a/b")).unwrap();
        fs::write(root.path().join("a/b/x.ts"), b"seg").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(&victim, root.path().join("a/file-link.mp4")).unwrap();

        let store = LocalStore::open("m", root.path()).unwrap();
        let mut d = store.deleter();
        let ex = expect_of(&victim);
        assert!(matches!(
            d.delete(
                Path::new("link/victim.mp4"),
                ex,
                &mut |_, _| Users::default()
            ),
            Outcome::Refused(_)
        ));
        assert!(matches!(
            d.delete(
                Path::new("a/file-link.mp4"),
                ex,
                &mut |_, _| Users::default()
            ),
            Outcome::Refused(_)
        ));
        assert!(matches!(
            d.delete(Path::new("../victim.mp4"), ex, &mut |_, _| Users::default()),
            Outcome::Refused(_)
        ));
        let seg = expect_of(&root.path().join("a/b/x.ts"));
        let stale = Expect {
            size: seg.size + 1,
            ..seg
        };
        assert!(matches!(
            d.delete(Path::new("a/b/x.ts"), stale, &mut |_, _| Users::default()),
            Outcome::Refused(_)
        ));
        assert_eq!(
            d.delete(Path::new("a/b/x.ts"), seg, &mut |_, _| Users::default()),
            Outcome::Deleted
        );
        assert_eq!(
            d.delete(Path::new("a/b/x.ts"), seg, &mut |_, _| Users::default()),
            Outcome::Vanished
        );
        let removed = d.finish();
        assert_eq!(
            removed,
            vec![PathBuf::from("a/b")],
            "a/ still holds file-link.mp4"
        );
        assert!(victim.exists(), "nothing outside the root is touched");
        assert!(root.path().join("a").exists());
    }

    #[test]
    fn a_file_renamed_over_the_planned_one_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let planned = root.path().join("seg.ts");
        fs::write(&planned, b"old").unwrap();
        let ex = expect_of(&planned);
        // Same name, same size, same mtime — but a new inode (a muxer's rename-over).
        let fresh = root.path().join("seg.ts.tmp");
        fs::write(&fresh, b"new").unwrap();
        let mtime = fs::metadata(&planned).unwrap().modified().unwrap();
        fs::File::options()
            .write(true)
            .open(&fresh)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        fs::rename(&fresh, &planned).unwrap();
        let store = LocalStore::open("m", root.path()).unwrap();
        let out = store
            .deleter()
            .delete(Path::new("seg.ts"), ex, &mut |_, _| Users::default());
        assert!(
            matches!(out, Outcome::Refused(ref why) if why.contains("changed since it was planned")),
            "{out:?}"
        );
        assert!(planned.exists());
    }

    #[test]
    fn trash_names_give_back_the_original_path() {
        use std::os::unix::ffi::OsStrExt;
        let long = "d/".repeat(200) + "x.ts";
        let raw = PathBuf::from(std::ffi::OsStr::from_bytes(b"a/\xffb%2F.ts"));
        for rel in [PathBuf::from("hls/s1/seg%1.ts"), PathBuf::from(&long), raw] {
            let (name, side) = trash_name(&rel, 42, 7);
            assert!(name.len() <= NAME_MAX, "{name}");
            let back = trash_origin(&name, |s| {
                assert_eq!(Some(s), side.as_deref());
                Some(rel.as_os_str().as_bytes().to_vec())
            });
            assert_eq!(back.as_deref(), Some(rel.as_path()), "{name}");
        }
        assert_eq!(trash_origin("42.7+path", |_| None), None);
        assert_eq!(
            trash_origin("42.7...%2Fetc%2Fpasswd", |_| None),
            None,
            "never outside"
        );
    }

    #[test]
    fn a_crash_leftover_in_the_trash_is_put_back_kept_or_removed_but_never_guessed() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalStore::open("m", root.path()).unwrap();
        let trash = store.open_trash(true).unwrap().unwrap();
        let t = root.path().join(TRASH_DIR);
        assert_eq!(
            fs::metadata(&t).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // Three leftovers: one whose name is free, one whose name is taken, one checked.
        for (rel, n) in [("a/free.ts", 1), ("taken.ts", 2), ("b/checked.ts", 3)] {
            let (name, _) = trash_name(Path::new(rel), 1, n);
            fs::write(t.join(&name), rel).unwrap();
        }
        fs::write(root.path().join("taken.ts"), b"newcomer").unwrap();
        let mut asked = Vec::new();
        let mut out = store
            .recover_trash(&mut |rel, _| {
                asked.push(rel.to_path_buf());
                rel == Path::new("b/checked.ts")
            })
            .unwrap();
        out.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(asked.len(), 3);
        assert!(
            matches!(&out[0], Recovered::Deleted(p) if p == Path::new("b/checked.ts")),
            "{out:?}"
        );
        assert!(
            matches!(&out[1], Recovered::Kept(Some(p), _, why) if p == Path::new("taken.ts") && why.contains("taken")),
            "{out:?}"
        );
        assert!(
            matches!(&out[2], Recovered::Restored(p) if p == Path::new("a/free.ts")),
            "{out:?}"
        );
        assert_eq!(
            fs::read(root.path().join("a/free.ts")).unwrap(),
            b"a/free.ts"
        );
        assert_eq!(fs::read(root.path().join("taken.ts")).unwrap(), b"newcomer");
        assert_eq!(
            fs::read_dir(&t).unwrap().count(),
            1,
            "the newcomer's rival stays"
        );
        drop(trash);
    }

    #[test]
    fn a_trash_that_is_not_ours_is_moved_aside_never_followed_and_deletion_goes_on() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), b"keep").unwrap();
        // A symlink, a file, and a directory open to others: each moved aside in turn.
        let root = tempfile::tempdir().unwrap();
        let t = root.path().join(TRASH_DIR);
        for (n, plant) in ["link", "file", "dir0777"].into_iter().enumerate() {
            match plant {
                "link" => std::os::unix::fs::symlink(outside.path(), &t).unwrap(),
                "file" => fs::write(&t, b"not a directory").unwrap(),
                _ => {
                    fs::create_dir(&t).unwrap();
                    fs::set_permissions(&t, fs::Permissions::from_mode(0o777)).unwrap();
                }
            }
            let rel = format!("x{n}.ts");
            fs::write(root.path().join(&rel), b"x").unwrap();
            let ex = expect_of(&root.path().join(&rel));
            let store = LocalStore::open("m", root.path()).unwrap();
            let out = store
                .deleter()
                .delete(Path::new(&rel), ex, &mut |_, _| Users::default());
            assert_eq!(out, Outcome::Deleted, "{plant}");
            let md = fs::symlink_metadata(&t).unwrap();
            assert!(
                md.is_dir() && md.permissions().mode() & 0o777 == 0o700,
                "{plant}"
            );
            let aside: Vec<_> = fs::read_dir(root.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with(FOREIGN_TRASH))
                .collect();
            assert_eq!(aside.len(), n + 1, "{aside:?}");
            fs::remove_dir(&t).unwrap();
        }
        assert_eq!(fs::read(outside.path().join("keep")).unwrap(), b"keep");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_trash_removed_under_a_deleter_is_made_again() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalStore::open("m", root.path()).unwrap();
        let mut d = store.deleter();
        for n in 0..2 {
            let rel = format!("x{n}.ts");
            fs::write(root.path().join(&rel), b"x").unwrap();
            let ex = expect_of(&root.path().join(&rel));
            let out = d.delete(Path::new(&rel), ex, &mut |_, _| Users::default());
            assert_eq!(out, Outcome::Deleted);
            assert!(!root.path().join(&rel).exists());
            // The store's owner removes our (empty) trash between two files.
            fs::remove_dir(root.path().join(TRASH_DIR)).unwrap();
        }
    }
}
