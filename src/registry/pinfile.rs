//! Pins outside the registry (issue 23 item 4): every pin is also kept in `STATE_DIR/pins`,
//! a small JSON file rewritten atomically whenever a pin is set or removed (in the same
//! transaction: if the file cannot be written, the pin is not changed). At open — also
//! after `registry reset` or `recover` — the file's pins are merged into the registry, so
//! that the loss of the registry never takes the operator's pins along: a pinned file is
//! never deleted after a reset. Pins are few (an operator sets each one), so the whole
//! file is rewritten each time.

use serde::{Deserialize, Serialize};

use super::identity::write_atomic;
use super::*;

/// The pins file's name in the state directory.
pub const PINS_FILE: &str = "pins";

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

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinsFile {
    pins: Vec<Pin>,
}

/// The pins in `dir/pins`; None when there is no such file.
pub fn read(dir: &Path) -> Result<Option<Vec<Pin>>> {
    let path = dir.join(PINS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RegistryError::StateFile { path, source }),
    };
    serde_json::from_str::<PinsFile>(&text)
        .map(|f| Some(f.pins))
        .map_err(|e| RegistryError::StateFile {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
}

/// Replaces `dir/pins` with `pins`, atomically.
pub fn write(dir: &Path, pins: &[Pin]) -> Result<()> {
    let mut text = serde_json::to_string_pretty(&PinsFile {
        pins: pins.to_vec(),
    })
    .expect("pins serialize");
    text.push('\n');
    write_atomic(dir, PINS_FILE, text.as_bytes())
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

    /// At open: the pins of the file and of the registry become one set, in both. A pin
    /// only in the file (the registry was lost or reset) is put back with its time; a pin
    /// only in the registry (a registry from before the file, or the file lost) is written
    /// to the file. Returns how many pins the file put back.
    pub(super) fn merge_pin_file(&mut self) -> Result<usize> {
        let dir = self.state_dir();
        let from_file = read(&dir)?;
        let tx = self
            .conn
            .transaction()
            .map_err(|source| RegistryError::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        let e = |source| RegistryError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let added = match &from_file {
            Some(p) => insert(&tx, p).map_err(e)?,
            None => 0,
        };
        let merged = all(&tx).map_err(e)?;
        let mut file_sorted = from_file.clone().unwrap_or_default();
        file_sorted.sort();
        if from_file.is_none() || file_sorted != merged {
            write(&dir, &merged)?;
        }
        tx.commit().map_err(e)?;
        if added > 0 {
            tracing::warn!(pins = added, file = %dir.join(PINS_FILE).display(), "pins missing from the registry were put back from the pins file");
        }
        Ok(added)
    }

    /// Pins or unpins a path; returns whether it changed. The pins file is rewritten
    /// inside the transaction: when it cannot be written, nothing changes.
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
            write(&dir, &all(&tx).map_err(e)?)?;
        }
        tx.commit().map_err(e)?;
        Ok(n > 0)
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
            [odd].into_iter().collect()
        );
    }
}
