//! The state directory and its single-writer lock.
//!
//! Whoever holds an exclusive `flock` on `STATE_DIR/lock` — the daemon, or a one-shot CLI
//! command when no daemon runs — is the only writer of the registry. The holder's pid is
//! written into the file so a refused second instance can name it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

/// State-directory failures.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory could not be created or the lock file opened.
    #[error("state directory {}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Another process holds the lock.
    #[error("another mediaretain (pid {pid}) already holds {}", path.display())]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid as it wrote it ("?" if unreadable).
        pid: String,
    },
}

/// The held lock; released when dropped (or when the process dies, even by `kill -9`).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Creates `dir` if needed (mode 0700), takes its lock without waiting, and makes sure
    /// the directory and the registry files are not open to other users (see [`secure`]).
    pub fn acquire(dir: &Path) -> Result<StateLock, StateError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io(&path))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim().to_string();
                return Err(StateError::Busy {
                    path,
                    pid: if pid.is_empty() { "?".into() } else { pid },
                });
            }
            Err(e) => {
                return Err(StateError::Io {
                    path,
                    source: e.into(),
                });
            }
        }
        file.set_len(0).map_err(io(&path))?;
        file.rewind().map_err(io(&path))?;
        writeln!(file, "{}", std::process::id()).map_err(io(&path))?;
        secure(dir).map_err(io(dir))?;
        Ok(StateLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes group write and every "other" permission except search from the state directory
/// (a socket inside it must stay reachable by `socket_group`) — unless it is a shared
/// directory (sticky, like /tmp) or not ours, which is left alone — and every group and other
/// permission from `registry.db`, its `-wal`/`-shm` files, `registry.id`, `pins`, the
/// backup and the lock; creates
/// `registry.db` with mode 0600 if missing (SQLite gives its `-wal`/`-shm` the database's
/// mode). Nothing is followed: a symlink in place of one of them is an error.
pub fn secure(dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags, fchmod, fstat, open, openat};
    let dfd = open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let narrow = |fd: &std::os::fd::OwnedFd, keep: u32, what: &Path| -> std::io::Result<()> {
        let st = fstat(fd)?;
        let mode = st.st_mode & 0o7777;
        if mode & !keep != 0 {
            fchmod(fd, Mode::from_raw_mode(mode & keep))?;
            tracing::info!(path = %what.display(), old_mode = format!("{mode:o}"), new_mode = format!("{:o}", mode & keep), "narrowed permissions");
        }
        Ok(())
    };
    let st = fstat(&dfd)?;
    if st.st_mode & 0o1000 != 0 || st.st_uid != rustix::process::geteuid().as_raw() {
        // A shared directory (sticky, like /tmp) or somebody else's: not ours to change.
        tracing::warn!(path = %dir.display(), mode = format!("{:o}", st.st_mode & 0o7777), owner = st.st_uid, "state_dir is a shared directory or not ours; give mediaretain a directory of its own");
    } else {
        narrow(&dfd, 0o0751, dir)?;
    }
    for (name, create) in [
        ("registry.db", true),
        ("registry.db-wal", false),
        ("registry.db-shm", false),
        // What keeps a lost registry from starting over (docs/registry.md).
        ("registry.id", false),
        ("pins", false),
        ("registry.backup.db", false),
        ("lock", false),
    ] {
        let mut flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        if create {
            flags |= OFlags::CREATE;
        }
        match openat(&dfd, name, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => narrow(&fd, 0o0600, &dir.join(name))?,
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::Error::from(e).kind(),
                    format!("{}: {e}", dir.join(name).display()),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        StateLock::acquire(dir.path()).unwrap();
    }
}
