//! Opening the registry: the identity and damage checks before SQLite may create a file,
//! the integrity check, the migrations, and read-only connections beside the main one.

use super::*;

impl Registry {
    /// Opens (creating and migrating as needed) `state_dir/registry.db`. A state
    /// directory that has held a registry (`registry.id`) refuses a missing, empty, foreign
    /// or damaged one (see identity.rs); the pins file is merged in (pinfile.rs).
    pub fn open(state_dir: &Path) -> Result<Registry> {
        let path = state_dir.join("registry.db");
        let known = identity::read(state_dir)?;
        let lost = |what| RegistryError::Lost {
            path: path.clone(),
            what,
            id_file: state_dir.join(identity::ID_FILE),
        };
        // Checked before SQLite opens it: an empty file would become a new database.
        // (The state lock's `secure` creates a missing registry.db with 0 bytes.)
        if known.is_some() && std::fs::metadata(&path).map_or(0, |m| m.len()) == 0 {
            return Err(lost("missing or empty (0 bytes)"));
        }
        let mut reg = Registry::connect(&path)?;
        let version: i64 = reg
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(reg.err())?;
        if known.is_some() && version == 0 {
            return Err(lost("empty (it has no tables)"));
        }
        if version > 0 {
            reg.check_integrity()?;
        }
        reg.migrate()?;
        reg.settle_identity(state_dir, known)?;
        reg.merge_pin_file()?;
        reg.generation = reg
            .conn
            .query_row("SELECT COALESCE(MAX(seen_gen), 0) FROM entries", [], |r| {
                r.get(0)
            })
            .map_err(reg.err())?;
        Ok(reg)
    }

    /// The daemon's connection to the database at `path` (made if missing), configured;
    /// nothing checked or migrated yet.
    fn connect(path: &Path) -> Result<Registry> {
        let e = |source| RegistryError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(e)?;
        conn.execute_batch(
            "PRAGMA page_size = 16384;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA cache_size = -8000;
             PRAGMA temp_store = FILE;",
        )
        .map_err(e)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(e)?;
        Ok(Registry::on(conn, path))
    }

    /// A registry on connection `conn` to the database at `path`, before any scan.
    fn on(conn: Connection, path: &Path) -> Registry {
        Registry {
            conn,
            path: path.to_path_buf(),
            store_ids: HashMap::new(),
            generation: 0,
            pin_log: 0,
            pins_unsynced: false,
        }
    }

    /// SQLite's quick check of every page (not of index contents): a damaged registry is
    /// refused at open, with what to run, rather than failing pass after pass.
    fn check_integrity(&mut self) -> Result<()> {
        let mut st = self
            .conn
            .prepare("PRAGMA quick_check(1)")
            .map_err(self.err())?;
        let first: String = st.query_row([], |r| r.get(0)).map_err(self.err())?;
        if first != "ok" {
            // One line (a journal entry each): SQLite's report spans lines.
            let detail = first.replace("*** in database main ***", "");
            return Err(RegistryError::Damaged {
                path: self.path.clone(),
                detail: detail.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }
        Ok(())
    }

    /// A second connection to the registry at `path`, which [`Registry::open`] made and
    /// migrated (WAL: its reads neither wait for the daemon's writes nor hold them up). For
    /// a thread that must never take the registry's mutex: the low-priority hasher.
    pub fn open_apart(path: &Path) -> Result<Registry> {
        let conn = connect_apart(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -2000;")
            .map_err(|source| RegistryError::Sqlite {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Registry::on(conn, path))
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(self.err())?;
        let known = schema::MIGRATIONS.len() as i64;
        if version > known {
            return Err(RegistryError::TooNew {
                path: self.path.clone(),
                found: version,
                known,
            });
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            self.write(|tx| {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", i as i64 + 1)
            })?;
        }
        Ok(())
    }
}

/// A connection of its own that copies the registry's log (WAL) into the database while
/// a scan's writer goes on, so that the writer never stops for a checkpoint and its
/// `fsync`s itself (a first index of 100k files stopped once for about 60 ms half-way,
/// and its close copied the rest).
pub struct Checkpointer(Registry);

impl Checkpointer {
    /// Copies what it can now: PASSIVE, it neither waits for the writer nor holds it up.
    /// A failure only leaves the work to the next checkpoint (or to the close).
    pub fn checkpoint(&self) {
        let Checkpointer(reg) = self;
        if let Err(e) = reg
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::debug!(path = %crate::spell::show(&reg.path), error = %e, "checkpoint beside the scan failed; left to the next");
        }
    }
}

impl Registry {
    /// A [`Checkpointer`] on this registry's database (a connection apart).
    pub fn checkpointer(&self) -> Result<Checkpointer> {
        Registry::open_apart(&self.path).map(Checkpointer)
    }

    /// Whether this connection's commits checkpoint the log themselves once it holds
    /// 1,000 pages (SQLite's default; off while a [`Checkpointer`] does it beside them).
    pub fn set_auto_checkpoint(&mut self, on: bool) -> Result<()> {
        let pages = if on { 1000 } else { 0 };
        self.conn
            .execute_batch(&format!("PRAGMA wal_autocheckpoint = {pages}"))
            .map_err(self.err())
    }
}

/// Another connection to the registry database at `path` (made and migrated by
/// [`Registry::open`]), waiting up to 5 s for a lock like the first.
pub(super) fn connect_apart(path: &Path, mode: rusqlite::OpenFlags) -> Result<Connection> {
    let e = |source| RegistryError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, mode | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(e)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(e)?;
    Ok(conn)
}
