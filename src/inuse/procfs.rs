//! In-use signals that come from the kernel: files held open by any process (a
//! `/proc/*/fd` snapshot) and files under a BSD flock, POSIX or OFD lock (`/proc/locks`).
//!
//! A [`Snapshot`] is taken right before each deletion batch and consulted right before
//! each unlink, with the (device, inode) of the file as it is then. It records holders by
//! (device, inode), whoever they are — not by process name. Processes whose fds we may not
//! read (another user's, when not running as root) are counted, so the gap is visible.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fs::{AtFlags, FileType};
use serde::{Deserialize, Serialize};

/// Why a file is in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Use {
    /// A process holds it open.
    Open {
        /// The process.
        pid: i32,
    },
    /// A lock is held on it.
    Lock {
        /// FLOCK, POSIX or OFDLCK, as /proc/locks says.
        kind: String,
        /// The holder (-1 for OFD locks, whose owner the kernel does not report).
        pid: i32,
    },
}

fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

impl fmt::Display for Use {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Use::Open { pid } => write!(f, "open by pid {pid} ({})", comm(*pid)),
            Use::Lock { kind, pid } if *pid > 0 => {
                let kind = match kind.as_str() {
                    "FLOCK" => "flock",
                    "POSIX" => "POSIX lock",
                    k => k,
                };
                write!(f, "{kind} held by pid {pid} ({})", comm(*pid))
            }
            Use::Lock { .. } => write!(f, "OFD lock held (the kernel does not name its holder)"),
        }
    }
}

/// A file a process holds open for writing (`O_WRONLY` or `O_RDWR`), on a watched device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenForWrite {
    /// The process.
    pub pid: i32,
    /// Its descriptor.
    pub fd: i32,
    /// The file's device.
    pub dev: u64,
    /// The file's inode.
    pub ino: u64,
    /// Where the file is, as the kernel names it (`/proc/PID/fd/N`).
    pub path: PathBuf,
}

/// Who uses which file, at one instant.
#[derive(Debug, Default)]
pub struct Snapshot {
    users: HashMap<(u64, u64), Vec<Use>>,
    /// Files held open for writing on the devices asked about ([`Snapshot::take_watching`]).
    pub writers: Vec<OpenForWrite>,
    /// Processes whose open files could not be read (permissions).
    pub unreadable_pids: usize,
    /// How long taking it took.
    pub micros: u64,
    taken: Option<Instant>,
}

impl Snapshot {
    /// Reads `/proc/*/fd` and `/proc/locks` now.
    pub fn take() -> Snapshot {
        Snapshot::take_watching(&HashSet::new())
    }

    /// Like [`Snapshot::take`], and records in [`Snapshot::writers`] the regular files on
    /// the devices `devs` that are open for writing: their `/proc/PID/fdinfo/N` flags are
    /// read (only for those devices: one more small read per such descriptor).
    pub fn take_watching(devs: &HashSet<u64>) -> Snapshot {
        let started = Instant::now();
        let mut s = Snapshot::default();
        let me = std::process::id() as i32;
        if let Ok(procs) = fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                    continue;
                };
                if pid == me {
                    continue; // our own descriptors are directories and the registry
                }
                let fd_dir = format!("/proc/{pid}/fd");
                let opened = rustix::fs::open(
                    &fd_dir,
                    rustix::fs::OFlags::RDONLY
                        | rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(std::io::Error::from)
                .and_then(|dir| fs::read_dir(&fd_dir).map(|list| (dir, list)));
                let (dir, list) = match opened {
                    Ok(x) => x,
                    // Not allowed to look: a blind spot. Gone meanwhile: nothing to see.
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        s.unreadable_pids += 1;
                        continue;
                    }
                    Err(_) => continue,
                };
                for fd in list.flatten() {
                    // stat through the magic link: the open file itself.
                    let Ok(st) = rustix::fs::statat(&dir, fd.file_name(), AtFlags::empty()) else {
                        continue;
                    };
                    if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
                        s.users
                            .entry((st.st_dev, st.st_ino))
                            .or_default()
                            .push(Use::Open { pid });
                        if devs.contains(&st.st_dev)
                            && let Some(w) = open_for_write(pid, &dir, &fd.file_name(), &st)
                        {
                            s.writers.push(w);
                        }
                    }
                }
            }
        }
        if let Ok(locks) = fs::read_to_string("/proc/locks") {
            for (dev, ino, u) in locks.lines().filter_map(parse_lock) {
                s.users.entry((dev, ino)).or_default().push(u);
            }
        }
        for v in s.users.values_mut() {
            v.dedup();
        }
        s.micros = started.elapsed().as_micros() as u64;
        s.taken = Some(Instant::now());
        s
    }

    /// How long ago it was taken.
    pub fn age(&self) -> std::time::Duration {
        self.taken
            .map(|t| t.elapsed())
            .unwrap_or(std::time::Duration::MAX)
    }

    /// What uses the file with this device and inode, if anything.
    pub fn users(&self, dev: u64, ino: u64) -> &[Use] {
        self.users
            .get(&(dev, ino))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Why this snapshot cannot vouch that a file is unused: processes it could not see.
    pub fn blind_spot(&self) -> Option<String> {
        (self.unreadable_pids > 0).then(|| {
            format!("the open files of {} processes could not be read (run as root, or grant CAP_SYS_PTRACE and CAP_LEASE)", self.unreadable_pids)
        })
    }

    /// The reason in words, if the file is in use.
    pub fn reason(&self, dev: u64, ino: u64) -> Option<String> {
        let u = self.users(dev, ino);
        (!u.is_empty()).then(|| {
            u.iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

/// The descriptor `name` of `pid` (its `/proc/PID/fd` directory is `dir`), if it is open
/// for writing: `flags` of `/proc/PID/fdinfo/N` (octal, proc(5)) has `O_WRONLY` or `O_RDWR`.
fn open_for_write(
    pid: i32,
    dir: &rustix::fd::OwnedFd,
    name: &std::ffi::OsStr,
    st: &rustix::fs::Stat,
) -> Option<OpenForWrite> {
    let fd: i32 = name.to_str()?.parse().ok()?;
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())?;
    let mode = flags & libc::O_ACCMODE as u32;
    if mode != libc::O_WRONLY as u32 && mode != libc::O_RDWR as u32 {
        return None;
    }
    let path = rustix::fs::readlinkat(dir, name, Vec::new()).ok()?;
    Some(OpenForWrite {
        pid,
        fd,
        dev: st.st_dev,
        ino: st.st_ino,
        path: PathBuf::from(std::ffi::OsString::from_vec(path.into_bytes())),
    })
}

/// Parses one `/proc/locks` line: `1: FLOCK  ADVISORY  WRITE 1234 08:01:131074 0 EOF`.
/// Lines of waiters (`1: -> FLOCK …`) are skipped: they hold nothing yet.
fn parse_lock(line: &str) -> Option<(u64, u64, Use)> {
    let mut f = line.split_whitespace().skip(1);
    let kind = f.next()?;
    if kind == "->" {
        return None;
    }
    let _advisory = f.next()?;
    let _rw = f.next()?;
    let pid: i32 = f.next()?.parse().ok()?;
    let mut dev_ino = f.next()?.split(':');
    let major = u32::from_str_radix(dev_ino.next()?, 16).ok()?;
    let minor = u32::from_str_radix(dev_ino.next()?, 16).ok()?;
    let ino: u64 = dev_ino.next()?.parse().ok()?;
    Some((
        rustix::fs::makedev(major, minor),
        ino,
        Use::Lock {
            kind: kind.to_string(),
            pid,
        },
    ))
}

/// One mount, from a line of a mountinfo file.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// The device of the filesystem mounted.
    pub dev: u64,
    /// The directory of that filesystem the mount shows (`/` unless a bind mount).
    pub root: PathBuf,
    /// Where it is mounted.
    pub point: PathBuf,
}

/// The mounts process `pid` sees (None: ours), from `/proc/PID/mountinfo`; none when it
/// cannot be read.
pub fn mounts(pid: Option<i32>) -> Vec<Mount> {
    let file = match pid {
        Some(p) => format!("/proc/{p}/mountinfo"),
        None => "/proc/self/mountinfo".into(),
    };
    fs::read_to_string(file)
        .map(|t| t.lines().filter_map(parse_mount).collect())
        .unwrap_or_default()
}

/// How long a mount table read is used again (the stream-writer check runs every few
/// seconds; a mount made since is seen within this).
const MOUNTS_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// At most this much of a mountinfo file is read (20,000 mounts are ~2.5 MB).
const MOUNTINFO_MAX: u64 = 8 << 20;
/// At most this many mounts of one device are kept per table (bind mounts of one
/// filesystem made by the thousand); the rest are not looked at.
const MOUNTS_KEPT: usize = 4096;
/// At most this many (namespace, device) tables are kept.
const TABLES_KEPT: usize = 64;

/// Mount tables by (mount namespace, device): when read, and the mounts of that device.
type Tables = HashMap<(PathBuf, u64), (Instant, std::sync::Arc<Vec<Mount>>)>;

static TABLES: std::sync::Mutex<Option<Tables>> = std::sync::Mutex::new(None);

/// The mounts of device `dev` that process `pid` sees (None: ours), read at most once per
/// [`MOUNTS_TTL`] per mount namespace — not once per process — and bounded in bytes read
/// and mounts kept: a user with a namespace of its own and 20,000 mounts, holding files
/// open in many processes, costs one bounded read every half minute. Empty when unreadable.
pub fn mounts_on(pid: Option<i32>, dev: u64) -> std::sync::Arc<Vec<Mount>> {
    let proc_dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".into(),
    };
    let Ok(ns) = fs::read_link(format!("{proc_dir}/ns/mnt")) else {
        return Default::default();
    };
    let key = (ns, dev);
    {
        let mut t = TABLES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, m)) = t.get_or_insert_with(HashMap::new).get(&key)
            && at.elapsed() < MOUNTS_TTL
        {
            return m.clone();
        }
    }
    let read = read_mounts(&format!("{proc_dir}/mountinfo"), dev);
    let mounts = std::sync::Arc::new(read);
    let mut t = TABLES.lock().unwrap_or_else(|p| p.into_inner());
    let t = t.get_or_insert_with(HashMap::new);
    if t.len() >= TABLES_KEPT {
        t.retain(|_, (at, _)| at.elapsed() < MOUNTS_TTL);
        if t.len() >= TABLES_KEPT
            && let Some(oldest) = t
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            t.remove(&oldest);
        }
    }
    t.insert(key, (Instant::now(), mounts.clone()));
    mounts
}

/// The mounts of device `dev` in mountinfo file `file`, bounded (see [`mounts_on`]).
fn read_mounts(file: &str, dev: u64) -> Vec<Mount> {
    use std::io::Read;
    let mut text = Vec::new();
    let Ok(f) = fs::File::open(file) else {
        return Vec::new();
    };
    if f.take(MOUNTINFO_MAX).read_to_end(&mut text).is_err() {
        return Vec::new();
    }
    if text.len() as u64 >= MOUNTINFO_MAX {
        // Cut at the last whole line.
        let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        text.truncate(end);
    }
    String::from_utf8_lossy(&text)
        .lines()
        .filter_map(parse_mount)
        .filter(|m| m.dev == dev)
        .take(MOUNTS_KEPT)
        .collect()
}

fn parse_mount(line: &str) -> Option<Mount> {
    let mut f = line.split(' ');
    let (_, _, majmin, root, point) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let (maj, min) = majmin.split_once(':')?;
    Some(Mount {
        dev: rustix::fs::makedev(maj.parse().ok()?, min.parse().ok()?),
        root: unescape(root),
        point: unescape(point),
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space); other bytes are kept as they are.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Whether process `pid` lives in another mount namespace than ours (a container): its
/// descriptors' paths are then its own, not ours.
pub fn other_mount_namespace(pid: i32) -> bool {
    match (
        fs::read_link(format!("/proc/{pid}/ns/mnt")),
        fs::read_link("/proc/self/ns/mnt"),
    ) {
        (Ok(a), Ok(b)) => a != b,
        _ => false,
    }
}

/// `path` on device `dev` as a process names it with its mounts `theirs` (a container's),
/// turned into the path our mounts `ours` show it at: through the mount holding it there,
/// to the directory of the filesystem it is, to where a mount of ours shows that directory.
/// None when none of ours does.
pub fn host_path(theirs: &[Mount], ours: &[Mount], dev: u64, path: &Path) -> Option<PathBuf> {
    let m = theirs
        .iter()
        .filter(|m| m.dev == dev && path.starts_with(&m.point))
        .max_by_key(|m| m.point.as_os_str().len())?;
    let in_fs = m.root.join(path.strip_prefix(&m.point).ok()?);
    let o = ours
        .iter()
        .filter(|o| o.dev == dev && in_fs.starts_with(&o.root))
        .max_by_key(|o| o.root.as_os_str().len())?;
    Some(o.point.join(in_fs.strip_prefix(&o.root).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/mnt/my\040disk"), Path::new("/mnt/my disk"));
        assert_eq!(unescape(r"/a\"), Path::new(r"/a\"));
    }

    #[test]
    fn a_containers_path_is_found_through_the_mounts() {
        let m = |dev, root: &str, point: &str| Mount {
            dev,
            root: root.into(),
            point: point.into(),
        };
        // The host has the disk at / and /srv/media on it; the container has the host's
        // /srv/media bound at /data.
        let ours = [m(1, "/", "/"), m(2, "/", "/boot")];
        let theirs = [m(9, "/", "/"), m(1, "/srv/media", "/data")];
        assert_eq!(
            host_path(&theirs, &ours, 1, Path::new("/data/rec/a.flv")),
            Some(PathBuf::from("/srv/media/rec/a.flv"))
        );
        assert_eq!(host_path(&theirs, &ours, 2, Path::new("/data/x")), None);
        // A disk the host mounts only at /mnt/disk shows it there.
        let ours = [m(1, "/", "/"), m(3, "/", "/mnt/disk")];
        let theirs = [m(3, "/rec", "/rec")];
        assert_eq!(
            host_path(&theirs, &ours, 3, Path::new("/rec/cam1/a.flv")),
            Some(PathBuf::from("/mnt/disk/rec/cam1/a.flv"))
        );
    }

    #[test]
    fn parses_proc_locks_lines() {
        let (dev, ino, u) =
            parse_lock("1: FLOCK  ADVISORY  WRITE 1234 08:01:131074 0 EOF").unwrap();
        assert_eq!((dev, ino), (rustix::fs::makedev(8, 1), 131074));
        assert_eq!(
            u,
            Use::Lock {
                kind: "FLOCK".into(),
                pid: 1234
            }
        );
        let (dev, _, _) = parse_lock("7: POSIX  ADVISORY  READ 99 fd:1a:5 0 100").unwrap();
        assert_eq!(dev, rustix::fs::makedev(0xfd, 0x1a));
        assert!(parse_lock("2: -> FLOCK  ADVISORY  WRITE 1235 08:01:131074 0 EOF").is_none());
    }

    #[test]
    fn sees_a_child_holding_a_file_open_and_a_flock() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("held.ts");
        fs::write(&f, b"x").unwrap();
        let md = fs::metadata(&f).unwrap();
        // A real other process holds it open and flocked until we kill it.
        // One process: it opens the file on fd 9, flocks it, and becomes `sleep`.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exec 9<\"$0\"; flock 9; exec sleep 30"])
            .arg(&f)
            .spawn()
            .expect("sh and flock(1) from util-linux");
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let s = Snapshot::take();
            let users = s.users(md.dev(), md.ino()).to_vec();
            if users.iter().any(|u| matches!(u, Use::Open { .. }))
                && users.iter().any(|u| matches!(u, Use::Lock { .. }))
            {
                let why = s.reason(md.dev(), md.ino()).unwrap();
                assert!(
                    why.contains("open by pid") && why.contains("flock held by pid"),
                    "{why}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the holder was never seen: {users:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            Snapshot::take().reason(md.dev(), md.ino()).is_none(),
            "released when the holder dies"
        );
    }
}
