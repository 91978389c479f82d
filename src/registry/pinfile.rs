//! Pins outside the registry (issue 23 item 4): every pin is also kept in `STATE_DIR/pins`,
//! so that the loss of the registry never takes the operator's pins along: a pinned file is
//! never deleted after `registry reset` or `recover`.
//!
//! The file is JSON lines: `{"pin":{"store":…,"path":…,"at":…}}` or
//! `{"unpin":{"store":…,"path":…}}`, read in order. A pin or unpin appends its line and
//! fsyncs it inside the registry transaction that makes the change (if the line cannot be
//! written, the pin is not changed), so a glob pinning 20,000 files costs 20,000 appends,
//! not 20,000 rewrites. At open — also after a reset or a recovery — the file's pins and
//! the registry's become one set (a pin only in the file is put back, one only in the
//! registry is written to the file) and the file is rewritten, atomically (temp, fsync,
//! rename), as that set; it is rewritten the same way when its log of changes outgrows the
//! pins. A torn last line (a crash in the middle of an append, before the commit) is
//! ignored.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};

use super::identity::write_atomic;
use super::*;

/// The pins file's name in the state directory.
pub const PINS_FILE: &str = "pins";

/// Appended changes beyond which the file is rewritten (also at least the pins' count).
const COMPACT_AFTER: usize = if cfg!(test) { 64 } else { 1024 };

/// One pin as the file keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Store name.
    pub store: String,
    /// Relative to the store root (the lossless spelling).
    #[serde(with = "crate::spell::serde_path")]
    pub path: PathBuf,
    /// When it was pinned, ns since the epoch (exact: the file and the registry compare).
    pub at: Nanos,
}

/// A pin removed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Unpin {
    store: String,
    #[serde(with = "crate::spell::serde_path")]
    path: PathBuf,
}

/// One line of the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Pin(Pin),
    Unpin(Unpin),
}

fn line(l: &Line) -> String {
    let mut t = serde_json::to_string(l).expect("a pin serializes");
    t.push('\n');
    t
}

/// The pins in `dir/pins`, in order; None when there is no such file.
pub fn read(dir: &Path) -> Result<Option<Vec<Pin>>> {
    let path = dir.join(PINS_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RegistryError::StateFile { path, source }),
    };
    let mut pins: std::collections::BTreeMap<(String, PathBuf), Nanos> = Default::default();
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let complete = lines.len() - 1; // after the last '\n': empty, or a torn line
    for (i, l) in lines.iter().enumerate().take(complete) {
        match serde_json::from_slice::<Line>(l) {
            Ok(Line::Pin(p)) => {
                pins.entry((p.store, p.path)).or_insert(p.at);
            }
            Ok(Line::Unpin(u)) => {
                pins.remove(&(u.store, u.path));
            }
            // A torn line (a crash mid-append, the next append after it) costs that one
            // change, which was never committed; the rest still counts.
            Err(e) => {
                tracing::error!(path = %path.display(), line = i + 1, error = %e, "pins file: a line that cannot be read is skipped");
            }
        }
    }
    Ok(Some(
        pins.into_iter()
            .map(|((store, path), at)| Pin { store, path, at })
            .collect(),
    ))
}

/// Replaces `dir/pins` with `pins`, atomically.
pub fn write(dir: &Path, pins: &[Pin]) -> Result<()> {
    let text: String = pins.iter().map(|p| line(&Line::Pin(p.clone()))).collect();
    write_atomic(dir, PINS_FILE, text.as_bytes())
}

/// Appends one change to `dir/pins` (made durable by [`Registry::sync_pins`], once for a
/// whole command: an fsync per pin cost 4 ms, 80 s for a glob of 20,000 files). A failed
/// write (a full disk) is cut off again, so that the next line does not continue a torn one.
fn append(dir: &Path, l: &Line) -> Result<()> {
    let path = dir.join(PINS_FILE);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|source| RegistryError::StateFile {
            path: path.clone(),
            source,
        })?;
    let before = f.metadata().map(|m| m.len());
    // After a torn line, a line of its own.
    let mut text = line(l);
    if let Ok(len @ 1..) = before {
        let mut last = [0u8];
        if std::os::unix::fs::FileExt::read_at(&f, &mut last, len - 1).is_ok() && last[0] != b'\n' {
            text.insert(0, '\n');
        }
    }
    let r = f.write_all(text.as_bytes());
    if let (Err(_), Ok(len)) = (&r, before) {
        let _ = f.set_len(len);
    }
    r.map_err(|source| RegistryError::StateFile { path, source })
}

/// Every pin in the registry, in order.
pub(super) fn all(conn: &Connection) -> rusqlite::Result<Vec<Pin>> {
    let mut st = conn.prepare_cached(
        "SELECT s.name, p.path, p.at FROM pins p JOIN stores s ON s.id = p.store_id
         ORDER BY s.name, p.path",
    )?;
    st.query_map([], |r| {
        Ok(Pin {
            store: r.get(0)?,
            path: bytes_path(r.get(1)?),
            at: r.get(2)?,
        })
    })?
    .collect()
}

/// Adds `pins` to the registry (those already there keep their time); how many were new.
pub(super) fn insert(conn: &Connection, pins: &[Pin]) -> rusqlite::Result<usize> {
    let mut n = 0;
    for p in pins {
        conn.execute("INSERT OR IGNORE INTO stores(name) VALUES (?1)", [&p.store])?;
        n += conn.execute(
            "INSERT OR IGNORE INTO pins(store_id, path, at)
             SELECT id, ?2, ?3 FROM stores WHERE name = ?1",
            params![p.store, path_bytes(&p.path), p.at],
        )?;
    }
    Ok(n)
}

impl Registry {
    /// The state directory (where the registry and its companion files live).
    pub(super) fn state_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// At open: the pins of the file and of the registry become one set, in both (the file
    /// rewritten as that set). Returns how many pins the file put back.
    pub(super) fn merge_pin_file(&mut self) -> Result<usize> {
        let dir = self.state_dir();
        let from_file = read(&dir)?;
        let db = self.path.clone();
        let e = |source| RegistryError::Sqlite {
            path: db.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(e)?;
        let added = match &from_file {
            Some(p) => insert(&tx, p).map_err(e)?,
            None => 0,
        };
        let merged = all(&tx).map_err(e)?;
        tx.commit().map_err(e)?;
        // Rewritten only when it is not already the set; a failure (a full disk holding
        // the state directory) must not stop the daemon: the registry has every pin, and
        // the file as it is stays readable.
        let canonical: String = merged.iter().map(|p| line(&Line::Pin(p.clone()))).collect();
        let same = std::fs::read(dir.join(PINS_FILE)).is_ok_and(|t| t == canonical.as_bytes());
        if !same {
            match write_atomic(&dir, PINS_FILE, canonical.as_bytes()) {
                Ok(()) => self.pin_log = 0,
                Err(err) => {
                    tracing::error!(error = %err, "cannot rewrite the pins file; the registry keeps the pins, the file stays as it was");
                    self.pin_log = usize::MAX / 2;
                }
            }
        } else {
            self.pin_log = 0;
        }
        if added > 0 {
            tracing::warn!(pins = added, file = %dir.join(PINS_FILE).display(), "pins missing from the registry were put back from the pins file");
        }
        Ok(added)
    }

    /// Pins or unpins a path; returns whether it changed. The change is appended to the
    /// pins file inside the transaction: when it cannot be written, nothing changes.
    pub fn set_retained(
        &mut self,
        store: &str,
        path: &Path,
        retained: bool,
        now: Nanos,
    ) -> Result<bool> {
        let sid = self.store_id(store)?;
        let dir = self.state_dir();
        let db = self.path.clone();
        let e = |source| RegistryError::Sqlite {
            path: db.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(e)?;
        let n = if retained {
            tx.execute(
                "INSERT OR IGNORE INTO pins(store_id, path, at) VALUES (?1, ?2, ?3)",
                params![sid, path_bytes(path), now],
            )
        } else {
            tx.execute(
                "DELETE FROM pins WHERE store_id = ?1 AND path = ?2",
                params![sid, path_bytes(path)],
            )
        }
        .map_err(e)?;
        if n > 0 {
            let (store, path) = (store.to_string(), path.to_path_buf());
            append(
                &dir,
                &if retained {
                    Line::Pin(Pin {
                        store,
                        path,
                        at: now,
                    })
                } else {
                    Line::Unpin(Unpin { store, path })
                },
            )?;
            self.pin_log += 1;
            self.pins_unsynced = true;
        }
        // The log outgrew the pins: rewritten as the set (in the transaction, so a failed
        // rewrite changes nothing either; the appended line is then only a repeat).
        let compact = self.pin_log > COMPACT_AFTER && {
            let pins: i64 = tx
                .query_row("SELECT COUNT(*) FROM pins", [], |r| r.get(0))
                .map_err(e)?;
            self.pin_log > pins as usize
        };
        if compact {
            write(&dir, &all(&tx).map_err(e)?)?;
        }
        tx.commit().map_err(e)?;
        if compact {
            self.pin_log = 0;
        }
        Ok(n > 0)
    }

    /// Makes the pin changes appended so far durable (one fsync), before a command that
    /// pinned or unpinned answers.
    pub fn sync_pins(&mut self) -> Result<()> {
        if !self.pins_unsynced {
            return Ok(());
        }
        let path = self.state_dir().join(PINS_FILE);
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .and_then(|f| f.sync_data())
            .map_err(|source| RegistryError::StateFile { path, source })?;
        self.pins_unsynced = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_follow_the_file_and_come_back_after_the_registry_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let odd = PathBuf::from(OsStr::from_bytes(b"rec/caf\xe9.mp4"));
        assert!(r.set_retained("media", &odd, true, 5).unwrap());
        assert!(
            r.set_retained("media", Path::new("rec/b.mp4"), true, 6)
                .unwrap()
        );
        assert!(
            r.set_retained("media", Path::new("rec/b.mp4"), false, 7)
                .unwrap()
        );
        let pins = read(dir.path()).unwrap().unwrap();
        assert_eq!(
            pins,
            vec![Pin {
                store: "media".into(),
                path: odd.clone(),
                at: 5
            }]
        );
        drop(r);
        // The registry is gone (and its identity with it, as after `registry reset`).
        for f in [
            "registry.db",
            "registry.db-wal",
            "registry.db-shm",
            "registry.id",
        ] {
            let _ = std::fs::remove_file(dir.path().join(f));
        }
        let mut r = Registry::open(dir.path()).unwrap();
        assert_eq!(
            r.pinned_paths("media").unwrap(),
            [odd.clone()].into_iter().collect()
        );
        drop(r);
        // A torn last line (a crash in the middle of an append) is ignored, and the file
        // is rewritten whole at the next open.
        let file = dir.path().join(PINS_FILE);
        let mut text = std::fs::read(&file).unwrap();
        text.extend_from_slice(b"{\"pin\":{\"store\":\"media\",\"pa");
        std::fs::write(&file, &text).unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        assert_eq!(r.pinned_paths("media").unwrap().len(), 1);
        assert!(std::fs::read(&file).unwrap().ends_with(b"\n"));
        // Torn while the registry is open (no rewrite in between): the next change goes on
        // a line of its own, and the torn one costs only itself.
        let mut text = std::fs::read(&file).unwrap();
        text.extend_from_slice(b"{\"unpin\":{\"sto");
        std::fs::write(&file, &text).unwrap();
        r.set_retained("media", Path::new("rec/c.mp4"), true, 8)
            .unwrap();
        let pins = read(dir.path()).unwrap().unwrap();
        assert_eq!(pins.len(), 2, "{pins:?}");
    }

    #[test]
    fn many_pins_are_appended_and_the_log_is_rewritten_when_it_outgrows_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let t = std::time::Instant::now();
        for i in 0..300 {
            let p = PathBuf::from(format!("rec/{i:05}.mp4"));
            r.set_retained("media", &p, true, i).unwrap();
            if i % 2 == 1 {
                r.set_retained("media", &p, false, i).unwrap();
            }
        }
        r.sync_pins().unwrap();
        eprintln!("450 pin changes: {:?}", t.elapsed());
        let lines = std::fs::read_to_string(dir.path().join(PINS_FILE))
            .unwrap()
            .lines()
            .count();
        assert!(lines < 2 * 150 + COMPACT_AFTER, "{lines} lines");
        assert_eq!(read(dir.path()).unwrap().unwrap().len(), 150);
        drop(r);
        for f in [
            "registry.db",
            "registry.db-wal",
            "registry.db-shm",
            "registry.id",
        ] {
            let _ = std::fs::remove_file(dir.path().join(f));
        }
        let mut r = Registry::open(dir.path()).unwrap();
        assert_eq!(r.pinned_paths("media").unwrap().len(), 150);
    }
}
