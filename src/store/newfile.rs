//! Creating a file at a path another user may be able to change (a restore directory the
//! media server's user writes): nothing is ever written through a link.
//!
//! The destination's directory is opened once, `O_DIRECTORY|O_NOFOLLOW`; the content goes
//! into a fresh file made `O_CREAT|O_EXCL|O_NOFOLLOW` (mode 0600) in a staging directory on
//! the same filesystem — ours, when it is, else the destination's directory itself — and
//! is renamed onto the destination's name within those descriptors. A rename replaces the
//! name, never what a planted symlink points at; no existing file's mode is ever changed.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

/// Failures, each naming the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum NewFileError {
    /// The destination is not a plain file name in a directory.
    #[error("{}: not a file path", path.display())]
    BadPath {
        /// The destination.
        path: PathBuf,
    },
    /// The destination is a symbolic link (or another non-file): never written through.
    #[error("{}: is a {kind}; refusing to write through it", path.display())]
    NotAFile {
        /// The destination.
        path: PathBuf,
        /// What is there.
        kind: &'static str,
    },
    /// The destination exists and replacing it was not asked for.
    #[error("{} exists; give --force to replace it", path.display())]
    Exists {
        /// The destination.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl From<NewFileError> for std::io::Error {
    fn from(e: NewFileError) -> Self {
        use std::io::ErrorKind;
        match e {
            NewFileError::Io { source, .. } => source,
            NewFileError::Exists { .. } => std::io::Error::new(ErrorKind::AlreadyExists, e),
            e => std::io::Error::new(ErrorKind::InvalidInput, e),
        }
    }
}

fn io(path: &Path) -> impl Fn(Errno) -> NewFileError + '_ {
    move |e| NewFileError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd, NewFileError> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io(path))
}

fn kind(t: FileType) -> &'static str {
    match t {
        FileType::Symlink => "symbolic link",
        FileType::Directory => "directory",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice | FileType::BlockDevice => "device",
        _ => "special file",
    }
}

/// A file being written for `dest`; [`NewFile::commit`] puts it in place, dropping it
/// without commit removes it.
#[derive(Debug)]
pub struct NewFile {
    dest: PathBuf,
    dest_dir: OwnedFd,
    name: OsString,
    stage_dir: Option<OwnedFd>,
    tmp: OsString,
    file: Option<File>,
    replace: bool,
}

impl NewFile {
    /// Creates the partial file for `dest`: in `staging` (a directory of ours, opened
    /// without following links) when it is on `dest`'s filesystem, else beside `dest`.
    /// `dest` must not be a symlink or non-file; an existing file is refused unless
    /// `replace`.
    pub fn create(
        dest: &Path,
        staging: Option<&Path>,
        tmp_name: &str,
        replace: bool,
    ) -> Result<NewFile, NewFileError> {
        let bad = || NewFileError::BadPath {
            path: dest.to_path_buf(),
        };
        let name = dest.file_name().ok_or_else(bad)?.to_os_string();
        if name.as_bytes() == b"." || name.as_bytes() == b".." {
            return Err(bad());
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dest_dir = open_dir(parent)?;
        match rustix::fs::statat(&dest_dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let t = FileType::from_raw_mode(st.st_mode);
                if t != FileType::RegularFile {
                    return Err(NewFileError::NotAFile {
                        path: dest.to_path_buf(),
                        kind: kind(t),
                    });
                }
                if !replace {
                    return Err(NewFileError::Exists {
                        path: dest.to_path_buf(),
                    });
                }
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(io(dest)(e)),
        }
        let dev = rustix::fs::fstat(&dest_dir).map_err(io(parent))?.st_dev;
        let stage_dir = match staging {
            Some(s) => {
                let fd = open_dir(s)?;
                let st = rustix::fs::fstat(&fd).map_err(io(s))?;
                (st.st_dev == dev).then_some(fd)
            }
            None => None,
        };
        let tmp = match stage_dir {
            Some(_) => OsString::from(tmp_name),
            None => {
                // Hidden beside the destination; never a name a reader expects.
                let mut t = OsString::from(".");
                t.push(&name);
                t.push(".");
                t.push(tmp_name);
                t
            }
        };
        let fd = rustix::fs::openat(
            stage_dir.as_ref().unwrap_or(&dest_dir),
            tmp.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io(dest))?;
        Ok(NewFile {
            dest: dest.to_path_buf(),
            dest_dir,
            name,
            stage_dir,
            tmp,
            file: Some(File::from(fd)),
            replace,
        })
    }

    /// The open partial file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("present until commit")
    }

    /// Where the partial file is, for messages.
    pub fn partial(&self) -> PathBuf {
        match self.stage_dir {
            Some(_) => PathBuf::from(&self.tmp),
            None => self.dest.parent().unwrap_or(Path::new(".")).join(&self.tmp),
        }
    }

    /// Syncs the file, gives it `mode` (our new file: no existing file's mode is touched)
    /// and renames it onto the destination's name.
    pub fn commit(mut self, mode: u32) -> Result<(), NewFileError> {
        let dest = self.dest.clone();
        let file = self.file.take().expect("present until commit");
        file.sync_all().map_err(|source| NewFileError::Io {
            path: self.partial(),
            source,
        })?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o777)).map_err(io(&dest))?;
        drop(file);
        let flags = if self.replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        let from = self.stage_dir.as_ref().unwrap_or(&self.dest_dir);
        match rustix::fs::renameat_with(
            from,
            self.tmp.as_os_str(),
            &self.dest_dir,
            self.name.as_os_str(),
            flags,
        ) {
            Ok(()) => {}
            Err(Errno::EXIST) => return Err(NewFileError::Exists { path: dest }),
            Err(e) => return Err(io(&dest)(e)),
        }
        self.tmp.clear();
        let _ = rustix::fs::fsync(&self.dest_dir);
        Ok(())
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.tmp.is_empty() {
            let dir = self.stage_dir.as_ref().unwrap_or(&self.dest_dir);
            let _ = rustix::fs::unlinkat(dir, self.tmp.as_os_str(), AtFlags::empty());
        }
    }
}

/// The mode a new file gets from this process's umask (0666 & !umask; 0644 if unknown).
pub fn umask_mode() -> u32 {
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    0o666 & !umask
}

/// A name unique to this process and moment, for partial files (`PID-NANOS.SUFFIX`).
pub fn tmp_name(suffix: &str) -> String {
    format!(
        "{}-{}.{suffix}",
        std::process::id(),
        crate::clock::system_now()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_and_renames_never_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"secret").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dest = d.path().join("out");
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        let e = NewFile::create(&dest, None, "t", true).unwrap_err();
        assert!(matches!(e, NewFileError::NotAFile { .. }), "{e}");
        std::fs::remove_file(&dest).unwrap();
        let mut f = NewFile::create(&dest, None, "t", false).unwrap();
        f.file().write_all(b"new").unwrap();
        // Swapped for a symlink after the check: the rename replaces the link itself.
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        assert!(matches!(
            NewFile::create(&dest, None, "u", false),
            Err(NewFileError::NotAFile { .. })
        ));
        assert!(matches!(f.commit(0o640), Err(NewFileError::Exists { .. })));
        assert_eq!(std::fs::read(&victim).unwrap(), b"secret");
        assert_eq!(
            std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Nothing left behind.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
