//! [`Store`] for [`LocalStore`]: the same confinement as deletion (every path resolved
//! beneath the root's descriptor, no symlink followed), blocking work on tokio's blocking
//! pool. An upload is a hidden temporary file beside its final name, completed by a
//! rename and aborted by removing it — the local analogue of a multipart upload.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::Stream;
use md5::{Digest, Md5};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::checksum::hex;
use super::local::{Expect, LocalStore, Users, split, stat_mtime};
use super::{
    ObjectInfo, Outcome, Store, StoreError, UploadId, Verified, is_confined, is_plain_key,
};

/// Suffix of an upload's temporary file: `.NAME.ID.upload`.
const UPLOAD_SUFFIX: &str = ".upload";
/// Copy buffer; also the memory one transfer holds.
const BUF: usize = 256 * 1024;
/// An expectation no regular file meets.
const NO_FILE: Expect = Expect {
    size: u64::MAX,
    mtime: i64::MIN,
    ino: 0,
    ctime: None,
};
/// Listed entries waiting for the consumer (bounds memory whatever the tree size).
const LIST_QUEUE: usize = 1024;

impl LocalStore {
    /// `key` as a confined relative path, or the refusal.
    fn rel<'k>(&self, key: &'k str) -> Result<&'k Path, StoreError> {
        let rel = Path::new(key);
        if is_plain_key(key) && is_confined(rel) {
            Ok(rel)
        } else {
            Err(StoreError::Outside {
                store: self.name().into(),
                path: rel.into(),
            })
        }
    }

    fn io_err(&self, key: &str) -> impl Fn(Errno) -> StoreError + '_ {
        let key = key.to_string();
        move |e| StoreError::io(self.name(), &key, e)
    }

    /// Runs blocking `f` with a handle of its own on this store.
    async fn blocking<T: Send + 'static>(
        &self,
        key: &str,
        f: impl FnOnce(LocalStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.try_clone().map_err(self.io_err(key))?;
        let key = key.to_string();
        let name = self.name().to_string();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .unwrap_or_else(|e| Err(StoreError::io(&name, key, std::io::Error::other(e))))
    }
}

/// The temporary name of upload `id` of final name `name`.
fn upload_name(name: &OsStr, id: &UploadId) -> OsString {
    let mut s = OsString::from(".");
    s.push(name);
    s.push(".");
    s.push(&id.0);
    s.push(UPLOAD_SUFFIX);
    s
}

/// A fresh upload id: unique within this process and, by pid and clock, across processes.
fn new_upload_id() -> UploadId {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    UploadId(format!(
        "{:x}-{nanos:x}-{:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Copies `from` into `to` with a fixed buffer, returning (bytes, hex MD5).
fn copy_hashing(mut from: impl Read, mut to: impl Write) -> std::io::Result<(u64, String)> {
    let mut buf = vec![0u8; BUF];
    let (mut n, mut md5) = (0u64, Md5::new());
    loop {
        let k = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        md5.update(&buf[..k]);
        to.write_all(&buf[..k])?;
        n += k as u64;
    }
    to.flush()?;
    Ok((n, hex(&md5.finalize())))
}

/// Opens regular file `name` in `dir` for reading, never through a symlink.
fn open_file(dir: &OwnedFd, name: &OsStr) -> Result<File, Errno> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(Errno::INVAL);
    }
    Ok(File::from(fd))
}

impl LocalStore {
    /// Completes upload `id` of `rel` from `src` (blocking).
    fn finish_upload_now(
        &self,
        rel: &Path,
        id: &UploadId,
        src: &Path,
    ) -> Result<Verified, StoreError> {
        let key = rel.to_string_lossy();
        let (parent, name) = split(rel);
        let tmp = upload_name(name, id);
        let no_upload = || StoreError::NoUpload {
            store: self.name().into(),
            key: key.to_string(),
            upload_id: id.0.clone(),
        };
        let dir = self.open_dir(parent).map_err(|_| no_upload())?;
        let flags = OFlags::WRONLY | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let out = match rustix::fs::openat(&dir, &tmp, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::NOENT) => return Err(no_upload()),
            Err(e) => return Err(self.io_err(&key)(e)),
        };
        let input = File::open(src).map_err(|e| StoreError::io(self.name(), src, e))?;
        let expected = input
            .metadata()
            .map_err(|e| StoreError::io(self.name(), src, e))?
            .len();
        let (n, md5) =
            copy_hashing(&input, &out).map_err(|e| StoreError::io(self.name(), &*key, e))?;
        out.sync_all()
            .map_err(|e| StoreError::io(self.name(), &*key, e))?;
        let written = out
            .metadata()
            .map_err(|e| StoreError::io(self.name(), &*key, e))?
            .len();
        if n != expected || written != n {
            return Err(StoreError::Verify {
                store: self.name().into(),
                key: key.into(),
                detail: format!(
                    "source had {expected} bytes, read {n}, stored {written}: changed while copying"
                ),
            });
        }
        rustix::fs::renameat(&dir, &tmp, &dir, name).map_err(self.io_err(&key))?;
        Ok(Verified {
            size: written,
            checksum: md5,
        })
    }

    /// Copies `rel` to `dest` through `dest.part` and a rename (blocking).
    fn fetch_now(&self, rel: &Path, dest: &Path) -> Result<Verified, StoreError> {
        let key = rel.to_string_lossy();
        let (parent, name) = split(rel);
        let dir = self.open_dir(parent).map_err(self.io_err(&key))?;
        let input = open_file(&dir, name).map_err(self.io_err(&key))?;
        let size = input
            .metadata()
            .map_err(|e| StoreError::io(self.name(), &*key, e))?
            .len();
        write_verified(self.name(), &key, dest, size, None, |out| {
            copy_hashing(&input, out)
        })
    }

    /// Walks the tree beneath the root, sending every regular file to `tx` (blocking).
    fn walk_into(&self, tx: &tokio::sync::mpsc::Sender<Result<ObjectInfo, StoreError>>) {
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = match self.open_beneath(&rel, OFlags::RDONLY | OFlags::DIRECTORY) {
                Ok(d) => d,
                // Gone or replaced by a symlink since it was seen: nothing to list there.
                Err(Errno::NOENT) | Err(Errno::LOOP) | Err(Errno::NOTDIR) | Err(Errno::XDEV) => {
                    continue;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(StoreError::io(self.name(), &rel, e)));
                    continue;
                }
            };
            let entries = match rustix::fs::Dir::read_from(&dir) {
                Ok(d) => d,
                Err(e) => {
                    let _ = tx.blocking_send(Err(StoreError::io(self.name(), &rel, e)));
                    continue;
                }
            };
            for ent in entries {
                let ent = match ent {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(StoreError::io(self.name(), &rel, e)));
                        break;
                    }
                };
                let name = OsStr::from_bytes(ent.file_name().to_bytes());
                if name == "." || name == ".." {
                    continue;
                }
                if rel.as_os_str().is_empty() && name == super::local::TRASH_DIR {
                    continue; // files on their way out are not the store's
                }
                let st = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(_) => continue, // removed while listing
                };
                let child = rel.join(name);
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => stack.push(child),
                    FileType::RegularFile => {
                        let info = ObjectInfo {
                            key: child.to_string_lossy().into_owned(),
                            size: st.st_size as u64,
                            last_modified: stat_mtime(&st),
                            e_tag: None,
                        };
                        if tx.blocking_send(Ok(info)).is_err() {
                            return; // the consumer stopped listening
                        }
                    }
                    _ => {} // symlinks, sockets, devices: never store content
                }
            }
        }
    }
}

/// Writes `dest` through a fresh partial file beside it (see [`super::newfile`]): `fill`
/// streams the content into it and returns (bytes, hex MD5); the result must be `size`
/// bytes (and match `md5` when given) before it is synced and renamed into place. A failed
/// copy leaves no partial file; nothing is written through a link.
pub(super) fn write_verified(
    store: &str,
    key: &str,
    dest: &Path,
    size: u64,
    md5: Option<&str>,
    fill: impl FnOnce(&mut File) -> std::io::Result<(u64, String)>,
) -> Result<Verified, StoreError> {
    let local = |e: super::newfile::NewFileError| StoreError::io(store, dest, e);
    let tmp = super::newfile::tmp_name("part");
    let mut out = super::newfile::NewFile::create(dest, None, &tmp, true).map_err(local)?;
    let (n, got) = fill(out.file()).map_err(|e| StoreError::io(store, key, e))?;
    check_copy(store, key, size, md5, n, &got)?;
    out.commit(super::newfile::umask_mode()).map_err(local)?;
    Ok(Verified {
        size: n,
        checksum: got,
    })
}

/// Checks a copy of `n` bytes with MD5 `got` against the expected size and MD5.
pub(super) fn check_copy(
    store: &str,
    key: &str,
    size: u64,
    md5: Option<&str>,
    n: u64,
    got: &str,
) -> Result<(), StoreError> {
    let detail = if n != size {
        format!("expected {size} bytes, received {n}")
    } else if md5.is_some_and(|m| m != got) {
        format!(
            "checksum mismatch: the store says {}, received {got}",
            md5.unwrap_or("")
        )
    } else {
        return Ok(());
    };
    Err(StoreError::Verify {
        store: store.into(),
        key: key.into(),
        detail,
    })
}

impl Store for LocalStore {
    fn name(&self) -> &str {
        LocalStore::name(self)
    }

    fn list(&self) -> impl Stream<Item = Result<ObjectInfo, StoreError>> + Send + '_ {
        let (tx, rx) = tokio::sync::mpsc::channel(LIST_QUEUE);
        match self.try_clone() {
            Ok(me) => {
                tokio::task::spawn_blocking(move || me.walk_into(&tx));
            }
            Err(e) => {
                let _ = tx.try_send(Err(StoreError::io(self.name(), "", e)));
            }
        }
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
    }

    async fn stat(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let rel = self.rel(key)?;
        Ok(LocalStore::stat(self, rel)?.map(|m| ObjectInfo {
            key: key.into(),
            size: m.size,
            last_modified: m.mtime,
            e_tag: None,
        }))
    }

    async fn start_upload(&self, key: &str) -> Result<UploadId, StoreError> {
        let rel = self.rel(key)?;
        let (parent, name) = split(rel);
        let dir = self.make_dirs(parent).map_err(self.io_err(key))?;
        let id = new_upload_id();
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        rustix::fs::openat(
            &dir,
            upload_name(name, &id),
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(self.io_err(key))?;
        Ok(id)
    }

    async fn finish_upload(
        &self,
        key: &str,
        id: &UploadId,
        src: &Path,
    ) -> Result<Verified, StoreError> {
        let rel = self.rel(key)?.to_path_buf();
        let (id, src) = (id.clone(), src.to_path_buf());
        self.blocking(key, move |me| me.finish_upload_now(&rel, &id, &src))
            .await
    }

    async fn abort_upload(&self, key: &str, id: &UploadId) -> Result<(), StoreError> {
        let rel = self.rel(key)?;
        let (parent, name) = split(rel);
        let dir = match self.open_dir(parent) {
            Ok(d) => d,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(self.io_err(key)(e)),
        };
        match rustix::fs::unlinkat(&dir, upload_name(name, id), AtFlags::empty()) {
            // Aborting twice is not an error: the upload is gone either way.
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.io_err(key)(e)),
        }
    }

    async fn fetch(&self, key: &str, dest: &Path) -> Result<Verified, StoreError> {
        let rel = self.rel(key)?.to_path_buf();
        let dest = dest.to_path_buf();
        self.blocking(key, move |me| me.fetch_now(&rel, &dest))
            .await
    }

    async fn delete_many(&self, keys: &[String]) -> Vec<(String, Outcome)> {
        let mut deleter = self.deleter();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let outcome = match self
                .rel(key)
                .and_then(|rel| Ok((rel, LocalStore::stat(self, rel)?)))
            {
                Err(e) => Outcome::Refused(e.to_string()),
                // The file as it is now is the file planned: the deleter still re-checks
                // it, takes the kernel's word on other users and observes it gone. When
                // no regular file is there, it tells "gone" (vanished) from "a symlink or
                // directory" (refused); an expectation no file meets keeps it from unlinking.
                Ok((rel, m)) => {
                    let expect = m.map_or(NO_FILE, |m| Expect {
                        size: m.size,
                        mtime: m.mtime,
                        ino: m.ino,
                        ctime: None,
                    });
                    deleter.delete(rel, expect, &mut |_, _| Users::default())
                }
            };
            out.push((key.clone(), outcome));
        }
        out
    }
}
