//! The space reserve: a few MiB the daemon preallocates (`fallocate`) in its state directory
//! and gives back when the registry's disk is full (`SQLITE_FULL`). On the usual small box
//! the state directory shares the media's volume; when a writer fills it to 100%, the
//! deletion intents — durable before the first unlink, so that every deletion is audited
//! also across kill -9 — could not be written, and nothing would ever be freed. Released,
//! the reserve makes room for them; it is made again once the volume has room (see
//! [`Reserve::ensure`]). A writer may race us for the freed blocks: then the next pass
//! finds the reserve gone and the intent write fails again, loudly (the volume is STUCK
//! with the cause), never silently.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// The reserve's file name in the state directory.
pub const RESERVE_FILE: &str = "space-reserve";

/// Its size: room for many chunks' intents and audit records (16 KiB pages, WAL).
pub const RESERVE_BYTES: u64 = 8 << 20;

/// It is made again only once the volume has this many times its size available, so that
/// making it never brings a nearly full volume to its limit.
const ROOM_FACTOR: u64 = 4;

/// What can go wrong with the reserve (never fatal: the daemon runs without one).
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    /// A system call on the reserve file failed.
    #[error("space reserve {}: {source}", path.display())]
    Io {
        /// The reserve file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Something that is not our regular file is at its name.
    #[error("space reserve {}: not a regular file of ours; remove it", path.display())]
    NotOurs {
        /// The reserve file.
        path: PathBuf,
    },
}

/// The reserve of one state directory.
#[derive(Debug)]
pub struct Reserve {
    dir: PathBuf,
    path: PathBuf,
    bytes: u64,
    /// Kept by this process (made at start, made again after a release).
    enabled: bool,
    /// The file is in place at its full size (as far as we know).
    held: AtomicBool,
}

impl Reserve {
    /// The reserve in `state_dir`; `enabled`: this process keeps one (the daemon), else it
    /// only gives back one it finds.
    pub fn new(state_dir: &Path, enabled: bool) -> Reserve {
        Reserve::sized(state_dir, enabled, RESERVE_BYTES)
    }

    /// Like [`Reserve::new`], of `bytes`.
    pub fn sized(state_dir: &Path, enabled: bool, bytes: u64) -> Reserve {
        Reserve {
            dir: state_dir.to_path_buf(),
            path: state_dir.join(RESERVE_FILE),
            bytes,
            enabled,
            held: AtomicBool::new(false),
        }
    }

    /// The reserve file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the reserve is in place (as far as this process knows).
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    fn io(&self) -> impl Fn(Errno) -> ReserveError + '_ {
        |e| ReserveError::Io {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    /// Makes the reserve when it is missing or short and the volume has room for it
    /// ([`ROOM_FACTOR`] times its size available); true when it is in place. Free when it
    /// is held already (no system call): called at every watchdog tick.
    pub fn ensure(&self) -> Result<bool, ReserveError> {
        if !self.enabled {
            return Ok(false);
        }
        if self.is_held() {
            return Ok(true);
        }
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd: OwnedFd = rustix::fs::open(&self.path, flags, Mode::from_raw_mode(0o600)).map_err(
            |e| match e {
                Errno::LOOP => ReserveError::NotOurs {
                    path: self.path.clone(),
                },
                e => self.io()(e),
            },
        )?;
        let st = rustix::fs::fstat(&fd).map_err(self.io())?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || st.st_uid != rustix::process::geteuid().as_raw()
        {
            return Err(ReserveError::NotOurs {
                path: self.path.clone(),
            });
        }
        let allocated = (st.st_blocks as u64).saturating_mul(512);
        if allocated < self.bytes {
            let v = rustix::fs::fstatvfs(&fd).map_err(self.io())?;
            let avail = v.f_bavail.saturating_mul(v.f_frsize);
            if avail < self.bytes.saturating_mul(ROOM_FACTOR) {
                return Ok(false);
            }
            if let Err(e) =
                rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, self.bytes)
            {
                // Never leave a part of it that nobody counts on.
                let _ = rustix::fs::unlink(&self.path);
                return Err(self.io()(e));
            }
            rustix::fs::fsync(&fd).map_err(self.io())?;
            tracing::debug!(path = %self.path.display(), bytes = self.bytes, "space reserve made");
        }
        self.held.store(true, Ordering::Relaxed);
        Ok(true)
    }

    /// Gives the reserve's space back to the volume: the bytes released (None when there
    /// was none to release).
    pub fn release(&self) -> Option<u64> {
        let st = rustix::fs::lstat(&self.path).ok()?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return None;
        }
        rustix::fs::unlink(&self.path).ok()?;
        self.held.store(false, Ordering::Relaxed);
        let freed = (st.st_blocks as u64).saturating_mul(512);
        (freed > 0).then_some(freed)
    }

    /// The state directory it lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Whether `e` is SQLite's "database or disk is full" (`SQLITE_FULL`: ENOSPC on a write).
pub fn is_disk_full(e: &crate::registry::RegistryError) -> bool {
    match e {
        crate::registry::RegistryError::Sqlite { source, .. } => {
            source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_preallocated_released_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reserve::sized(dir.path(), true, 1 << 20);
        assert!(r.ensure().unwrap());
        let md = std::fs::metadata(r.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert!(
            md.blocks() * 512 >= 1 << 20,
            "preallocated: {}",
            md.blocks()
        );
        assert_eq!(md.mode() & 0o777, 0o600);
        assert!(r.release().unwrap() >= 1 << 20);
        assert!(!r.path().exists());
        assert_eq!(r.release(), None);
        assert!(r.ensure().unwrap());
        // A one-shot command never makes one.
        let other = tempfile::tempdir().unwrap();
        assert!(!Reserve::new(other.path(), false).ensure().unwrap());
        assert!(!other.path().join(RESERVE_FILE).exists());
        // A symlink at its name is never followed.
        let r = Reserve::sized(other.path(), true, 1 << 20);
        std::os::unix::fs::symlink(dir.path().join("x"), r.path()).unwrap();
        assert!(matches!(r.ensure(), Err(ReserveError::NotOurs { .. })));
        assert!(!dir.path().join("x").exists());
    }
}
