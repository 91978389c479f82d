//! The state directory and its single-writer lock.
//!
//! Whoever holds an exclusive `flock` on `STATE_DIR/lock` — the daemon, or a one-shot CLI
//! command when no daemon runs — is the only writer of the registry. The holder's pid is
//! written into the file so a refused second instance can name it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
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
    /// Creates `dir` if needed and takes its lock without waiting.
    pub fn acquire(dir: &Path) -> Result<StateLock, StateError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
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
        Ok(StateLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
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
