//! The registry's identity (issue 23 item 4): a state directory that has held a registry
//! knows it. On first creation a random id is stored in the registry (table `identity`) and,
//! once that is committed, in `STATE_DIR/registry.id` beside it — written once, atomically
//! (temp file, fsync, rename, fsync of the directory). From then on a registry that is
//! missing, empty (0 bytes, no tables) or carries another id is refused at open: an empty
//! registry is a claim (a full disk at the wrong moment, a bad restore), not a fresh start.
//! Only `mediaretain registry reset` or `recover` go on from there.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};

use super::*;

/// The identity file's name in the state directory.
pub const ID_FILE: &str = "registry.id";

/// What `registry.id` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// 128 random bits, hex.
    pub id: String,
    /// When the registry was created, ns since the epoch.
    pub created: Nanos,
}

impl Identity {
    /// A new random identity.
    pub fn new() -> std::io::Result<Identity> {
        use std::io::Read;
        let mut b = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        Ok(Identity {
            id: b.iter().map(|x| format!("{x:02x}")).collect(),
            created: now(),
        })
    }
}

/// Now, ns since the epoch (the registry's own stamps; not a deletion's clock).
pub(super) fn now() -> Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as Nanos)
        .unwrap_or(0)
}

/// Reads `dir/registry.id`: None when there is none.
pub fn read(dir: &Path) -> Result<Option<Identity>> {
    let path = dir.join(ID_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RegistryError::StateFile { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| RegistryError::StateFile {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
}

/// Writes `dir/registry.id` (replacing it atomically).
pub fn write(dir: &Path, id: &Identity) -> Result<()> {
    let mut text = serde_json::to_string_pretty(id).expect("identity serializes");
    text.push('\n');
    write_atomic(dir, ID_FILE, text.as_bytes())
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old or the new content,
/// never a torn one: a temp file (mode 0600, not following a link), fsync, rename, fsync
/// of the directory.
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let io = |source| RegistryError::StateFile {
        path: path.clone(),
        source,
    };
    (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        sync_dir(dir)
    })()
    .map_err(io)
}

/// fsync of a directory: a rename in it is durable after this.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The id stored in the registry, if any.
pub(super) fn stored(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT id FROM identity LIMIT 1", [], |r| r.get(0))
        .optional()
}

/// Stores `id` in the registry (replacing any).
pub(super) fn store(conn: &Connection, id: &Identity) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE; DELETE FROM identity;")?;
    let r = conn.execute(
        "INSERT INTO identity(id, created) VALUES (?1, ?2)",
        params![id.id, id.created],
    );
    match r {
        Ok(_) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

impl Registry {
    /// After the migrations: the registry and `registry.id` agree, or the registry is
    /// refused. A registry without an id and no id file (a fresh one, or one made before
    /// ids) gets one; an id file lost beside a registry that has its id is written again
    /// (the registry itself is the stronger evidence).
    pub(super) fn settle_identity(&mut self, dir: &Path, known: Option<Identity>) -> Result<()> {
        let inside = stored(&self.conn).map_err(self.err())?;
        match (known, inside) {
            (None, None) => {
                let id = Identity::new().map_err(|source| RegistryError::StateFile {
                    path: dir.join(ID_FILE),
                    source,
                })?;
                // The registry first: a crash before the file is written leaves the case
                // below, which writes it again; the other order would refuse to start.
                store(&self.conn, &id).map_err(self.err())?;
                // Not written (a full disk): written at the next open, from the registry.
                match write(dir, &id) {
                    Ok(()) => {
                        tracing::info!(path = %self.path.display(), id = %id.id, "registry identity recorded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write the registry's identity file; trying again at the next start")
                    }
                }
            }
            (None, Some(inside)) => {
                let created = self
                    .conn
                    .query_row("SELECT created FROM identity LIMIT 1", [], |r| r.get(0))
                    .map_err(self.err())?;
                let id = Identity {
                    id: inside.clone(),
                    created,
                };
                match write(dir, &id) {
                    Ok(()) => {
                        tracing::info!(path = %dir.join(ID_FILE).display(), id = %inside, "registry identity file was missing; written again from the registry")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write the registry's identity file; trying again at the next start")
                    }
                }
            }
            (Some(k), Some(inside)) if k.id == inside => {}
            (Some(k), inside) => {
                return Err(RegistryError::Foreign {
                    path: self.path.clone(),
                    found: inside.unwrap_or_else(|| "none".into()),
                    expected: k.id,
                    id_file: dir.join(ID_FILE),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_directory_starts_and_an_emptied_registry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Registry::open(dir.path()).unwrap());
        let id = read(dir.path()).unwrap().expect("written at creation");
        assert_eq!(id.id.len(), 32);
        // Reopened: the same id, accepted.
        drop(Registry::open(dir.path()).unwrap());
        assert_eq!(read(dir.path()).unwrap().unwrap(), id);
        // Emptied (0 bytes): refused, and nothing is created in its place.
        std::fs::write(dir.path().join("registry.db"), b"").unwrap();
        let e = Registry::open(dir.path()).err().expect("refused");
        assert!(matches!(e, RegistryError::Lost { .. }), "{e}");
        assert!(e.needs_operator());
        assert!(e.to_string().contains("registry reset"), "{e}");
        assert_eq!(
            std::fs::metadata(dir.path().join("registry.db"))
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn another_directorys_registry_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        drop(Registry::open(a.path()).unwrap());
        drop(Registry::open(b.path()).unwrap());
        std::fs::copy(a.path().join("registry.db"), b.path().join("registry.db")).unwrap();
        let e = Registry::open(b.path()).err().expect("refused");
        assert!(matches!(e, RegistryError::Foreign { .. }), "{e}");
    }

    #[test]
    fn a_lost_id_file_is_written_again_from_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        drop(Registry::open(dir.path()).unwrap());
        let id = read(dir.path()).unwrap().unwrap();
        std::fs::remove_file(dir.path().join(ID_FILE)).unwrap();
        drop(Registry::open(dir.path()).unwrap());
        assert_eq!(read(dir.path()).unwrap().unwrap(), id);
    }
}
