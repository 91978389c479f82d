//! The registry: every known file of every store, its class, pins and tags, and the audit
//! trail of every action — in one embedded SQLite database (WAL) under the state directory.
//!
//! Writes come in batches inside one transaction each, so a burst of thousands of
//! filesystem events costs a few commits. WAL with `synchronous=NORMAL` survives `kill -9`
//! of the daemon without losing committed batches.
//!
//! This file holds the shared types (errors, entries, audit records, intents), the SQL
//! they share, and the writes of entries (upsert, forget, sweep, roots, reclassify): about
//! 850 lines, each statement with its reason beside it. Opening, the integrity check and
//! migrations are in open.rs (the schema itself in schema.rs), reading entries in query.rs,
//! pins, tags, leases and facts in [`marks`](self) (marks.rs), the audit trail and intents
//! in audit.rs, offload bookkeeping in offload.rs, dedupe hashes in hashes.rs, a full
//! scan's reconciliation (what changed written, the unchanged only noted) in scanned.rs.
//! What keeps a lost or damaged registry from starting over silently: its identity
//! (identity.rs), the pins file (pinfile.rs), backup and recovery (recover.rs; see
//! docs/registry.md).

mod audit;
mod hashes;
pub mod identity;
mod marks;
mod offload;
mod open;
use open::connect_apart;
pub mod pinfile;
mod query;
pub mod recover;
mod scanned;
mod schema;

pub use audit::{AuditColumn, AuditQuery, WalkCost};
pub use hashes::{Hashed, NewHash};
pub use open::Checkpointer;
pub use scanned::StoreScan;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::types::{Null, ToSqlOutput};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::config::AgeFrom;
use crate::units::Nanos;

/// Registry failures; every variant names the database file.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// SQLite refused an operation.
    #[error("registry {}: {source}{}", path.display(), damage_advice(source))]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer mediaretain.
    #[error("registry {}: schema version {found} is newer than this mediaretain understands ({known}); upgrade mediaretain", path.display())]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// The state directory had a registry, and this one is missing or empty.
    #[error("registry {} is {what}, but this state directory had one ({} says so): refusing to start over with an empty registry, which would forget every pin, lease and the audit. To go back to the last backup and what can be read, run `mediaretain registry recover`; to start over on purpose, run `mediaretain registry reset` (pins are kept from {}). See docs/registry.md", path.display(), id_file.display(), path.with_file_name(pinfile::PINS_FILE).display())]
    Lost {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        what: &'static str,
        /// The identity file that says there was one.
        id_file: PathBuf,
    },
    /// The registry is not this state directory's (another box's, or an old copy).
    #[error("registry {} is not this state directory's (its id is {found}, {} says {expected}): a registry restored from elsewhere is refused. Run `mediaretain registry recover --from FILE` to take over a registry on purpose, or `mediaretain registry reset` to start over. See docs/registry.md", path.display(), id_file.display())]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// The id it carries ("none": none).
        found: String,
        /// The id the state directory knows.
        expected: String,
        /// The identity file.
        id_file: PathBuf,
    },
    /// The registry failed its integrity check.
    #[error("registry {} is damaged ({detail}): stop here and run `mediaretain registry recover` (it keeps the damaged file aside and rebuilds the registry from what can be read and the last backup). See docs/registry.md", path.display())]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What the check found first.
        detail: String,
    },
    /// A file beside the registry (its identity, the pins, a backup) could not be read or
    /// written.
    #[error("{}: {source}", path.display())]
    StateFile {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl RegistryError {
    /// Whether only an operator can go on from here (`registry recover` or `reset`):
    /// restarting would fail the same way, so the daemon exits with a status its unit
    /// does not restart.
    pub fn needs_operator(&self) -> bool {
        match self {
            RegistryError::Lost { .. }
            | RegistryError::Foreign { .. }
            | RegistryError::Damaged { .. } => true,
            RegistryError::Sqlite { source, .. } => is_damage(source),
            _ => false,
        }
    }
}

/// Whether SQLite says the database file itself is damaged.
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// What to run when SQLite says the file is damaged ("database disk image is malformed").
fn damage_advice(e: &rusqlite::Error) -> &'static str {
    if is_damage(e) {
        "; the registry is damaged: run `mediaretain registry recover` (see docs/registry.md)"
    } else {
        ""
    }
}

/// What registry operations return.
pub type Result<T> = std::result::Result<T, RegistryError>;

/// What a scan or event saw of one file.
#[derive(Debug, Clone)]
pub struct FileMeta {
    /// Relative to the store root.
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime: Nanos,
    /// Inode number.
    pub ino: u64,
}

/// One file in the registry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Row id.
    #[serde(skip)]
    pub id: i64,
    /// Store name.
    pub store: String,
    /// Relative to the store root.
    #[serde(with = "crate::spell::serde_path")]
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// Modification time.
    #[serde(with = "crate::units::rfc3339")]
    pub mtime: Nanos,
    /// Inode number.
    pub ino: u64,
    /// When mediaretain first saw it.
    #[serde(with = "crate::units::rfc3339")]
    pub first_seen: Nanos,
    /// Its class, if any matches.
    pub class: Option<String>,
    /// Pinned by an operator.
    pub retained: bool,
    /// Its verified remote copy (`archive:rec/x.mp4`), for offloaded local files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
    /// When a media server announced this version complete (a webhook): no quiet period
    /// is waited out for it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::units::rfc3339_opt"
    )]
    pub complete: Option<Nanos>,
    /// Free labels.
    pub tags: Vec<String>,
    /// Why it is in use right now (filled by `ls --in-use`; never stored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_use: Vec<String>,
}

impl Entry {
    /// Whether it may still be being written at `now`: modified within `quiet` ns, and no
    /// media server has announced this version complete.
    pub fn being_written(&self, quiet: Nanos, now: Nanos) -> bool {
        self.complete.is_none() && now.saturating_sub(self.mtime) < quiet
    }

    /// The time its age is counted from under `age_from`.
    pub fn age_ref(&self, age_from: AgeFrom) -> Nanos {
        match age_from {
            AgeFrom::Mtime => self.mtime,
            AgeFrom::FirstSeen => self.first_seen,
        }
    }
}

/// One audit record: an action taken (or refused) on a path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    /// When.
    #[serde(with = "crate::units::rfc3339")]
    pub at: Nanos,
    /// Store name.
    pub store: String,
    /// Relative to the store root.
    #[serde(with = "crate::spell::serde_path")]
    pub path: PathBuf,
    /// delete, retain, unretain.
    pub action: String,
    /// deleted, refused, failed, vanished, done.
    pub outcome: String,
    /// The class at the time.
    pub class: Option<String>,
    /// The rule that fired (ttl, keep_for, max_count, max_total).
    pub rule: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// What started it: schedule, gc, cli, api.
    pub trigger: String,
    /// The file's size (`size`, as every file object says it).
    #[serde(rename = "size")]
    pub bytes: Option<u64>,
}

/// A deletion about to happen, made durable before the unlink (see [`Registry::intend`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    /// Row id (0 until written).
    pub id: i64,
    /// When the deletion was decided.
    pub at: Nanos,
    /// Store name.
    pub store: String,
    /// Relative to the store root.
    pub path: PathBuf,
    /// The registry entry of the file.
    pub entry_id: i64,
    /// The checked file: inode, size, mtime.
    pub ino: u64,
    /// Bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime: Nanos,
    /// The class at the time.
    pub class: Option<String>,
    /// The rule that fired.
    pub rule: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// What started it.
    pub trigger: String,
}

/// A lease: a holder uses `pattern` (a path, or a glob) of `store` until `expires`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    /// Its id.
    pub id: i64,
    /// Store name.
    pub store: String,
    /// A path relative to the store root in the lossless spelling of [`crate::spell`]
    /// (exact, whatever its bytes), or a glob (UTF-8 text for globset).
    pub pattern: String,
    /// Whether `pattern` is a glob.
    pub glob: bool,
    /// Who holds it.
    pub holder: String,
    /// Since.
    #[serde(with = "crate::units::rfc3339")]
    pub created: Nanos,
    /// Until.
    #[serde(with = "crate::units::rfc3339")]
    pub expires: Nanos,
    /// The uid that took it (None: taken before owners were recorded, as root).
    #[serde(default)]
    pub owner: Option<u32>,
}

/// Per-class totals.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ClassTotals {
    /// Class name (None: unclassified).
    pub class: Option<String>,
    /// Store name.
    pub store: String,
    /// Files.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
    /// Pinned files.
    pub retained: u64,
    /// Bytes of the pinned files.
    #[serde(default)]
    pub retained_bytes: u64,
}

/// Selects entries for `ls`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this class.
    pub class: Option<String>,
    /// Only retained entries.
    pub retained: bool,
    /// Only entries with this tag.
    pub tag: Option<String>,
    /// At most this many.
    pub limit: Option<u64>,
}

/// The registry database.
pub struct Registry {
    conn: Connection,
    path: PathBuf,
    store_ids: HashMap<String, i64>,
    generation: i64,
    /// Changes appended to the pins file since it was last rewritten (pinfile.rs).
    pin_log: usize,
    /// Whether appended pin changes still wait for [`Registry::sync_pins`].
    pins_unsynced: bool,
}

/// Column 9 names the verified remote copy of this very version (same size and mtime) —
/// only while the remote object is still in the registry with that size; column 10 is when
/// a media server announced this very version complete. Queries that add columns start at 11.
const ENTRY_COLS: &str = "e.id, s.name, e.path, e.size, e.mtime, e.first_seen, e.class, (p.store_id IS NOT NULL), e.ino,
     (SELECT c.remote || ':' || CAST(c.key AS TEXT) FROM copies c
        JOIN stores rs ON rs.name = c.remote
        JOIN entries re ON re.store_id = rs.id AND re.path = c.key AND re.size = c.size
      WHERE c.store_id = e.store_id AND c.path = e.path AND c.size = e.size AND c.mtime = e.mtime) AS copy,
     (SELECT f.at FROM facts f
      WHERE f.store_id = e.store_id AND f.path = e.path AND f.size = e.size AND f.mtime = e.mtime) AS complete";
const ENTRY_FROM: &str = "entries e JOIN stores s ON s.id = e.store_id
     LEFT JOIN pins p ON p.store_id = e.store_id AND p.path = e.path";

fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// New files inserted by one statement of a first index.
const INSERT_CHUNK: usize = 32;

/// An insert of [`INSERT_CHUNK`] entries that skips those known already. `OR IGNORE`, not
/// `ON CONFLICT DO NOTHING`: with the latter (and with foreign keys checked) a multi-row
/// insert may abort half-way, and SQLite journals each page it changes to a temporary
/// file. Nothing else is ignored: no value bound to a NOT NULL column is ever NULL.
static INSERT_MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT OR IGNORE INTO entries(store_id, path, size, mtime, ino, first_seen, class, seen_gen)
         VALUES {}",
        vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; INSERT_CHUNK].join(", ")
    )
});

/// The BLOB range `[dir/, dir0)` holding exactly the paths below directory `dir`.
fn prefix_range(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut lo = path_bytes(dir).to_vec();
    lo.push(b'/');
    let mut hi = lo.clone();
    *hi.last_mut().expect("not empty") = b'/' + 1;
    (lo, hi)
}

fn bytes_path(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&b))
}

fn row_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        store: r.get(1)?,
        path: bytes_path(r.get(2)?),
        size: r.get::<_, i64>(3)? as u64,
        mtime: r.get(4)?,
        first_seen: r.get(5)?,
        class: r.get(6)?,
        retained: r.get::<_, i64>(7)? != 0,
        ino: r.get::<_, i64>(8)? as u64,
        copy: r.get(9)?,
        complete: r.get(10)?,
        tags: Vec::new(),
        in_use: Vec::new(),
    })
}

/// Removes the entries that are gone and appends every record to the audit trail.
fn record_in(
    tx: &rusqlite::Transaction<'_>,
    gone: &[(i64, PathBuf)],
    records: &[AuditRecord],
) -> rusqlite::Result<()> {
    // By id *and* path: a rowid freed meanwhile may already name another file.
    let mut del = tx.prepare_cached("DELETE FROM entries WHERE id = ?1 AND path = ?2")?;
    for (id, path) in gone {
        del.execute(params![id, path_bytes(path)])?;
    }
    // AUDIT_ROWS records per statement: a statement's own cost (its cursors on the table
    // and each index, its start and end) is paid once per group, not once per file.
    let mut rows = records.chunks_exact(AUDIT_ROWS);
    if rows.len() > 0 {
        let mut ins = tx.prepare_cached(audit_insert(AUDIT_ROWS))?;
        for group in &mut rows {
            for (i, a) in group.iter().enumerate() {
                bind_audit(&mut ins, i * AUDIT_COLS, a)?;
            }
            ins.raw_execute()?;
        }
    }
    let rest = rows.remainder();
    if !rest.is_empty() {
        let mut ins = tx.prepare_cached(audit_insert(1))?;
        for a in rest {
            bind_audit(&mut ins, 0, a)?;
            ins.raw_execute()?;
        }
    }
    Ok(())
}

/// Audit records written by one multi-row INSERT (10 columns each: 320 parameters,
/// well below SQLite's limit of 32,766).
const AUDIT_ROWS: usize = 32;
const AUDIT_COLS: usize = 10;

/// `INSERT INTO audit … VALUES (…), (…)` for 1 or AUDIT_ROWS records (made once).
fn audit_insert(rows: usize) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; 2] = [const { std::sync::OnceLock::new() }; 2];
    SQL[usize::from(rows > 1)].get_or_init(|| {
        multi_insert(
            "INSERT INTO audit(at, store, path, action, outcome, class, rule, reason, trigger, bytes)",
            AUDIT_COLS,
            rows,
        )
    })
}

/// `head VALUES (?1, …), (…)`: `rows` groups of `cols` numbered parameters.
fn multi_insert(head: &str, cols: usize, rows: usize) -> String {
    let mut sql = format!("{head} VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("?{}", r * cols + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// Binds record `a` to parameters `at + 1 ..= at + AUDIT_COLS` of an [`audit_insert`].
fn bind_audit(
    st: &mut rusqlite::CachedStatement<'_>,
    at: usize,
    a: &AuditRecord,
) -> rusqlite::Result<()> {
    st.raw_bind_parameter(at + 1, a.at)?;
    st.raw_bind_parameter(at + 2, &a.store)?;
    st.raw_bind_parameter(at + 3, path_bytes(&a.path))?;
    st.raw_bind_parameter(at + 4, &a.action)?;
    st.raw_bind_parameter(at + 5, &a.outcome)?;
    st.raw_bind_parameter(at + 6, &a.class)?;
    st.raw_bind_parameter(at + 7, &a.rule)?;
    st.raw_bind_parameter(at + 8, &a.reason)?;
    st.raw_bind_parameter(at + 9, &a.trigger)?;
    st.raw_bind_parameter(at + 10, a.bytes.map(|b| b as i64))
}

impl Registry {
    /// Runs `f` in one transaction and commits it; any error rolls it back.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let path = self.path.clone();
        let e = |source| RegistryError::Sqlite { path, source };
        (|| {
            let tx = self.conn.transaction()?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })()
        .map_err(e)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> RegistryError + '_ {
        |source| RegistryError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn store_id(&mut self, name: &str) -> Result<i64> {
        if let Some(id) = self.store_ids.get(name) {
            return Ok(*id);
        }
        self.conn
            .execute("INSERT OR IGNORE INTO stores(name) VALUES (?1)", [name])
            .map_err(self.err())?;
        let id: i64 = self
            .conn
            .query_row("SELECT id FROM stores WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .map_err(self.err())?;
        self.store_ids.insert(name.to_string(), id);
        Ok(id)
    }

    /// Starts a new scan generation; files seen from now on are marked with it.
    pub fn begin_scan(&mut self) -> i64 {
        self.generation += 1;
        self.generation
    }

    /// Records what was seen of `files` in `store`, classifying each with `class_of`.
    ///
    /// Not one `INSERT … ON CONFLICT DO UPDATE`: an upsert that may set size, mtime or
    /// ino fires `hashes_entry_changed`, and a statement with a trigger inside a
    /// transaction keeps a statement journal of every page it touches — four b-trees of
    /// 16 KiB pages, past SQLite's 64 KiB in-memory spill, so each row wrote ~8 times to a
    /// temporary file (856,874 `pwrite64` for a first index of 100k files; 4,155 now). A new
    /// file is a plain insert, an unchanged one only gets its generation: neither has a
    /// trigger to fire; only a file that changed pays for the update that fires it.
    pub fn upsert(
        &mut self,
        store: &str,
        files: &[FileMeta],
        now: Nanos,
        class_of: &dyn Fn(&Path) -> Option<String>,
    ) -> Result<()> {
        let classes: Vec<_> = files.iter().map(|f| class_of(&f.path)).collect();
        self.upsert_classified(store, files, &classes, now)
    }

    /// [`Registry::upsert`] of files already classified: `classes[i]` is `files[i]`'s.
    pub fn upsert_classified(
        &mut self,
        store: &str,
        files: &[FileMeta],
        classes: &[Option<String>],
        now: Nanos,
    ) -> Result<()> {
        assert_eq!(files.len(), classes.len(), "one class per file");
        let sid = self.store_id(store)?;
        let generation = self.generation;
        // No foreign-key check in this transaction (store_id is the id just looked up, and
        // nothing else writes meanwhile): a checked multi-row INSERT may abort half-way,
        // so SQLite journals its pages to a temporary file, 57,287 `pwrite64` for 100k
        // files. (A no-op inside a transaction: set before it, restored after.)
        self.conn
            .execute_batch("PRAGMA foreign_keys = OFF")
            .map_err(self.err())?;
        let done = self.upsert_unchecked(sid, generation, files, classes, now);
        self.conn
            .execute_batch("PRAGMA foreign_keys = ON")
            .map_err(self.err())?;
        done
    }

    fn upsert_unchecked(
        &mut self,
        sid: i64,
        generation: i64,
        files: &[FileMeta],
        classes: &[Option<String>],
        now: Nanos,
    ) -> Result<()> {
        self.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO entries(store_id, path, size, mtime, ino, first_seen, class, seen_gen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(store_id, path) DO NOTHING",
            )?;
            let mut seen = tx.prepare_cached(
                "UPDATE entries SET seen_gen = ?8
                 WHERE store_id = ?1 AND path = ?2 AND size = ?3 AND mtime = ?4 AND ino = ?5
                   AND class IS ?7",
            )?;
            let mut changed = tx.prepare_cached(
                "UPDATE entries SET
                   first_seen = CASE WHEN ino = ?5 THEN first_seen ELSE ?6 END,
                   size = ?3, mtime = ?4, ino = ?5, class = ?7, seen_gen = ?8
                 WHERE store_id = ?1 AND path = ?2",
            )?;
            let mut many = tx.prepare_cached(&INSERT_MANY)?;
            // A first index is all inserts, a rescan all unchanged files: whichever the
            // last file was is tried first, so a file costs one statement either way.
            let mut new_first = true;
            let mut one = |f: &FileMeta, class: &Option<String>, new_first: &mut bool| {
                let row = params![
                    sid,
                    path_bytes(&f.path),
                    f.size as i64,
                    f.mtime,
                    f.ino as i64,
                    now,
                    class,
                    generation
                ];
                let (a, b) = if *new_first {
                    (&mut insert, &mut seen)
                } else {
                    (&mut seen, &mut insert)
                };
                if a.execute(row)? == 1 {
                    return Ok(());
                }
                if b.execute(row)? == 1 {
                    *new_first = !*new_first;
                    return Ok(());
                }
                changed.execute(row).map(drop)
            };
            let mut i = 0;
            while i < files.len() {
                let end = i + INSERT_CHUNK;
                if !new_first || end > files.len() {
                    one(&files[i], &classes[i], &mut new_first)?;
                    i += 1;
                    continue;
                }
                // New files, INSERT_CHUNK to a statement: SQLite's per-statement work
                // (cursors opened and closed, the halt) once per chunk, not per file.
                let vals = insert_values(sid, &files[i..end], &classes[i..end], now, generation);
                if many.execute(rusqlite::params_from_iter(&vals))? < INSERT_CHUNK {
                    // Some were known: each of the chunk again, one at a time (those
                    // just inserted are unchanged now); a rescan goes on file by file.
                    new_first = false;
                    for (f, class) in files[i..end].iter().zip(&classes[i..end]) {
                        one(f, class, &mut new_first)?;
                    }
                }
                i = end;
            }
            Ok(())
        })
    }

    /// Forgets `paths` of `store` and everything below them (they are gone from disk; a
    /// removed directory takes its files along), in one transaction.
    pub fn forget(&mut self, store: &str, paths: &[PathBuf]) -> Result<()> {
        let sid = self.store_id(store)?;
        self.write(|tx| {
            let mut exact =
                tx.prepare_cached("DELETE FROM entries WHERE store_id = ?1 AND path = ?2")?;
            let mut under = tx.prepare_cached(
                "DELETE FROM entries WHERE store_id = ?1 AND path >= ?2 AND path < ?3",
            )?;
            for p in paths {
                exact.execute(params![sid, path_bytes(p)])?;
                let (lo, hi) = prefix_range(p);
                under.execute(params![sid, lo, hi])?;
            }
            Ok(())
        })
    }

    /// After a full scan of `store` with generation `generation`: forgets what it did not see.
    pub fn sweep(&mut self, store: &str, generation: i64) -> Result<usize> {
        let sid = self.store_id(store)?;
        self.conn
            .execute(
                "DELETE FROM entries WHERE store_id = ?1 AND seen_gen < ?2",
                params![sid, generation],
            )
            .map_err(self.err())
    }

    /// The entries of `store` that the scan of `generation` did not see, at most `limit`.
    pub fn unseen(
        &mut self,
        store: &str,
        generation: i64,
        limit: usize,
    ) -> Result<Vec<(i64, PathBuf)>> {
        let sid = self.store_id(store)?;
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, path FROM entries WHERE store_id = ?1 AND seen_gen < ?2 LIMIT ?3",
            )
            .map_err(self.err())?;
        st.query_map(params![sid, generation, limit as i64], |r| {
            Ok((r.get(0)?, bytes_path(r.get(1)?)))
        })
        .map_err(self.err())?
        .collect::<rusqlite::Result<_>>()
        .map_err(self.err())
    }

    /// Forgets the entries `gone` (by id and path), in one transaction.
    pub fn forget_entries(&mut self, gone: &[(i64, PathBuf)]) -> Result<usize> {
        self.write(|tx| {
            let mut del = tx.prepare_cached("DELETE FROM entries WHERE id = ?1 AND path = ?2")?;
            let mut n = 0;
            for (id, path) in gone {
                n += del.execute(params![id, path_bytes(path)])?;
            }
            Ok(n)
        })
    }

    /// Store `store`'s root as it was when last used (None: never recorded).
    pub fn root_of(&mut self, store: &str) -> Result<Option<RootFound>> {
        let sid = self.store_id(store)?;
        self.conn
            .query_row(
                "SELECT dev, mount_point FROM store_roots WHERE store_id = ?1",
                [sid],
                |r| {
                    Ok(RootFound {
                        dev: r.get::<_, i64>(0)? as u64,
                        mount_point: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    /// Records store `store`'s root as found now (when it changed).
    pub fn remember_root(&mut self, store: &str, found: RootFound, now: Nanos) -> Result<()> {
        let sid = self.store_id(store)?;
        self.conn
            .execute(
                "INSERT INTO store_roots(store_id, dev, mount_point, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(store_id) DO UPDATE SET dev = ?2, mount_point = ?3, at = ?4
                 WHERE dev <> ?2 OR mount_point <> ?3",
                params![sid, found.dev as i64, found.mount_point, now],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Forgets every entry of stores not in `keep` (a store was removed from the config).
    pub fn forget_stores_except(&mut self, keep: &[&str]) -> Result<usize> {
        let names: Vec<String> = {
            let mut st = self
                .conn
                .prepare("SELECT name FROM stores")
                .map_err(self.err())?;
            st.query_map([], |r| r.get(0))
                .map_err(self.err())?
                .collect::<rusqlite::Result<_>>()
                .map_err(self.err())?
        };
        let mut n = 0;
        for name in names.iter().filter(|n| !keep.contains(&n.as_str())) {
            let sid = self.store_id(name)?;
            n += self
                .conn
                .execute("DELETE FROM entries WHERE store_id = ?1", [sid])
                .map_err(self.err())?;
        }
        Ok(n)
    }

    /// Re-derives every entry's class (after a reload changed the classes).
    pub fn reclassify(
        &mut self,
        class_of: &dyn Fn(&str, &Path) -> Option<String>,
    ) -> Result<usize> {
        self.write(|tx| {
            let mut read = tx.prepare(
                "SELECT e.id, s.name, e.path, e.class FROM entries e JOIN stores s ON s.id = e.store_id",
            )?;
            let mut write = tx.prepare("UPDATE entries SET class = ?2 WHERE id = ?1")?;
            let mut rows = read.query([])?;
            let mut changed = 0;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                let store: String = r.get(1)?;
                let new = class_of(&store, &bytes_path(r.get(2)?));
                if new != r.get::<_, Option<String>>(3)? {
                    write.execute(params![id, new])?;
                    changed += 1;
                }
            }
            Ok(changed)
        })
    }
}

/// The bound values of [`INSERT_MANY`] for `files` (of store `sid`, with their `classes`),
/// seen at `now` by scan `generation`: eight per file, in the statement's column order.
pub(crate) fn insert_values<'a>(
    sid: i64,
    files: &'a [FileMeta],
    classes: &'a [Option<String>],
    now: Nanos,
    generation: i64,
) -> Vec<ToSqlOutput<'a>> {
    let mut vals = Vec::with_capacity(8 * files.len());
    for (f, class) in files.iter().zip(classes) {
        vals.extend([
            ToSqlOutput::from(sid),
            ToSqlOutput::from(path_bytes(&f.path)),
            ToSqlOutput::from(f.size as i64),
            ToSqlOutput::from(f.mtime),
            ToSqlOutput::from(f.ino as i64),
            ToSqlOutput::from(now),
            class
                .as_deref()
                .map_or(ToSqlOutput::from(Null), ToSqlOutput::from),
            ToSqlOutput::from(generation),
        ]);
    }
    vals
}

/// A store root as found on this machine: its device, and whether it is a mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootFound {
    /// `st_dev` of the root directory.
    pub dev: u64,
    /// The root is the root of a mounted filesystem.
    pub mount_point: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(p: &str, size: u64, mtime: Nanos) -> FileMeta {
        FileMeta {
            ino: 1,
            path: p.into(),
            size,
            mtime,
        }
    }

    /// Records go in groups of AUDIT_ROWS per statement: every one of them lands, in order,
    /// with its own values (NULLs included), whatever the remainder.
    #[test]
    fn record_writes_every_audit_record_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        for n in [0, 1, AUDIT_ROWS - 1, AUDIT_ROWS, 2 * AUDIT_ROWS + 5] {
            r.conn.execute("DELETE FROM audit", []).unwrap();
            let recs: Vec<AuditRecord> = (0..n)
                .map(|i| AuditRecord {
                    at: 1000 + i as i64,
                    store: format!("s{}", i % 3),
                    path: format!("d/f{i}").into(),
                    action: "delete".into(),
                    outcome: if i.is_multiple_of(5) {
                        "refused"
                    } else {
                        "deleted"
                    }
                    .into(),
                    class: i.is_multiple_of(2).then(|| format!("c{i}")),
                    rule: (!i.is_multiple_of(4)).then(|| "ttl".into()),
                    reason: format!("why {i}"),
                    trigger: "gc".into(),
                    bytes: (!i.is_multiple_of(3)).then_some(i as u64),
                })
                .collect();
            r.record(&[], &recs).unwrap();
            let mut st = r
                .conn
                .prepare(
                    "SELECT at, store, path, action, outcome, class, rule, reason, trigger, bytes
                     FROM audit ORDER BY id",
                )
                .unwrap();
            let back: Vec<AuditRecord> = st
                .query_map([], |r| {
                    Ok(AuditRecord {
                        at: r.get(0)?,
                        store: r.get(1)?,
                        path: bytes_path(r.get(2)?),
                        action: r.get(3)?,
                        outcome: r.get(4)?,
                        class: r.get(5)?,
                        rule: r.get(6)?,
                        reason: r.get(7)?,
                        trigger: r.get(8)?,
                        bytes: r.get::<_, Option<i64>>(9)?.map(|b| b as u64),
                    })
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert_eq!(back, recs, "{n} records");
        }
    }

    /// The range `intend` returns holds exactly the chunk's intents (each as written, in
    /// order), and `record_chunk` drops exactly those (the recorder relies on both).
    #[test]
    fn intend_covers_exactly_its_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let intent = |i: usize| Intent {
            id: 0,
            at: 10 + i as i64,
            store: "media".into(),
            path: format!("d/f{i}").into(),
            entry_id: i as i64,
            ino: 100 + i as u64,
            size: i as u64,
            mtime: 7,
            class: i.is_multiple_of(2).then(|| "c".into()),
            rule: Some("ttl".into()),
            reason: format!("why {i}"),
            trigger: "gc".into(),
        };
        assert_eq!(r.intend(&[]).unwrap(), None);
        let before: Vec<Intent> = (0..3).map(intent).collect();
        r.intend_each(&before).unwrap();
        for n in [1, 31, 32, 75] {
            let chunk: Vec<Intent> = (0..n).map(intent).collect();
            let (a, b) = r.intend(&chunk).unwrap().unwrap();
            let mut got = r.intents().unwrap();
            got.retain(|i| (a..=b).contains(&i.id));
            assert_eq!(got.len(), n, "{n} intents");
            for (g, want) in got.iter_mut().zip(&chunk) {
                g.id = 0;
                assert_eq!(g, want);
            }
            r.record_chunk(&[], &[], Some((a, b))).unwrap();
            assert_eq!(r.intents().unwrap().len(), 3, "only the chunk's went");
        }
    }

    /// The migration making tags a rowid table keeps every tag, still refuses a duplicate
    /// quietly, and a deleted entry still takes its tags with it.
    #[test]
    fn tags_survive_their_migration_and_go_with_their_entry() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        // Found by what it does: its number may change when branches merge.
        let at = (schema::MIGRATIONS.iter())
            .position(|m| m.contains("tags_new"))
            .unwrap();
        for sql in &schema::MIGRATIONS[..at] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO stores(id, name) VALUES (1, 'media');
             INSERT INTO entries(id, store_id, path, size, mtime, ino, first_seen, seen_gen)
               VALUES (1, 1, X'61', 0, 0, 1, 0, 1), (2, 1, X'62', 0, 0, 2, 0, 1);
             INSERT INTO tags(entry_id, tag) VALUES (1, 'x'), (1, 'y'), (2, 'x');",
        )
        .unwrap();
        conn.execute_batch(schema::MIGRATIONS[at]).unwrap();
        let tags = |c: &Connection| -> Vec<(i64, String)> {
            c.prepare("SELECT entry_id, tag FROM tags ORDER BY entry_id, tag")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let all = vec![(1, "x".into()), (1, "y".into()), (2, "x".into())];
        assert_eq!(tags(&conn), all);
        let n = conn
            .execute(
                "INSERT OR IGNORE INTO tags(entry_id, tag) VALUES (1, 'x')",
                [],
            )
            .unwrap();
        assert_eq!(n, 0, "a tag is held once");
        assert!(
            conn.execute("INSERT INTO tags(entry_id, tag) VALUES (9, 'x')", [])
                .is_err(),
            "a tag of no entry is refused"
        );
        conn.execute("DELETE FROM entries WHERE id = 1", [])
            .unwrap();
        assert_eq!(tags(&conn), vec![(2, "x".into())]);
    }

    #[test]
    fn upsert_of_new_unchanged_and_changed_files_mixed_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let g1 = r.begin_scan();
        let a = |c: &str| Some(c.to_string());
        r.upsert_classified(
            "m",
            &[meta("a", 1, 1), meta("b", 1, 1), meta("c", 1, 1)],
            &[a("x"), a("x"), a("x")],
            100,
        )
        .unwrap();
        let g2 = r.begin_scan();
        // New, unchanged, class changed, new, size changed: each kind after each other.
        let batch = [
            meta("0", 1, 1),
            meta("a", 1, 1),
            meta("b", 1, 1),
            meta("d", 1, 1),
            meta("c", 2, 1),
        ];
        let classes = [a("x"), a("x"), a("y"), a("x"), a("x")];
        r.upsert_classified("m", &batch, &classes, 200).unwrap();
        for (p, class, size, first_seen) in [
            ("0", "x", 1, 200),
            ("a", "x", 1, 100),
            ("b", "y", 1, 100),
            ("c", "x", 2, 100),
            ("d", "x", 1, 200),
        ] {
            let e = r.get("m", Path::new(p)).unwrap().unwrap();
            assert_eq!(
                (e.class.as_deref(), e.size, e.first_seen),
                (Some(class), size, first_seen),
                "{p}"
            );
        }
        assert!(g2 > g1);
        assert_eq!(r.sweep("m", g2).unwrap(), 0, "every file was seen by g2");
    }

    #[test]
    fn upsert_in_chunks_settles_known_files_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        r.begin_scan();
        let x = || Some("x".to_string());
        r.upsert_classified(
            "m",
            &[meta("k05", 1, 1), meta("k20", 1, 1)],
            &[x(), x()],
            100,
        )
        .unwrap();
        let g = r.begin_scan();
        // A first chunk with two known files (one changed) among new ones, then a second
        // chunk of new files only, then a tail shorter than a chunk.
        let n = 2 * INSERT_CHUNK + 5;
        let files: Vec<FileMeta> = (0..n)
            .map(|i| match i {
                5 => meta("k05", 1, 1),
                20 => meta("k20", 2, 1),
                i => meta(&format!("n{i:03}"), 1, 1),
            })
            .collect();
        let classes = vec![x(); n];
        r.upsert_classified("m", &files, &classes, 200).unwrap();
        for f in &files {
            let e = r.get("m", &f.path).unwrap().unwrap();
            let first_seen = if f.path.to_str().unwrap().starts_with('k') {
                100
            } else {
                200
            };
            assert_eq!((e.size, e.first_seen), (f.size, first_seen), "{f:?}");
        }
        assert_eq!(r.sweep("m", g).unwrap(), 0, "every file was seen");
        let fk: i64 = r
            .conn
            .query_row("PRAGMA foreign_keys", [], |x| x.get(0))
            .unwrap();
        assert_eq!(fk, 1, "foreign keys are checked again after the upsert");
    }

    /// The class totals by the covering index and the pins are what the one grouped query
    /// (joining pins and stores to every entry) gave: per store and class, NULL class
    /// included, in its order.
    #[test]
    fn class_totals_are_the_grouped_querys() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let cls = |p: &Path| match p.extension().and_then(|x| x.to_str()) {
            Some("ts") => Some("seg".to_string()),
            Some("mp4") => Some("rec".to_string()),
            _ => None,
        };
        for (store, n) in [("zeta", 40), ("alpha", 25)] {
            r.begin_scan();
            let files: Vec<FileMeta> = (0..n)
                .map(|i| {
                    let ext = ["ts", "mp4", "txt"][i % 3];
                    meta(&format!("d/{i}.{ext}"), i as u64 * 7 + 1, i as i64)
                })
                .collect();
            r.upsert(store, &files, 1, &cls).unwrap();
        }
        r.conn
            .execute_batch(
                "INSERT INTO pins(store_id, path, at) SELECT store_id, path, 1 FROM entries WHERE id % 4 = 0;
                 INSERT INTO pins(store_id, path, at) VALUES (1, CAST('gone' AS BLOB), 1);",
            )
            .unwrap();
        let old: Vec<ClassTotals> = r
            .conn
            .prepare(
                "SELECT e.class, s.name, COUNT(*), COALESCE(SUM(e.size), 0), COUNT(p.store_id),
                        COALESCE(SUM(CASE WHEN p.store_id IS NULL THEN 0 ELSE e.size END), 0)
                 FROM entries e JOIN stores s ON s.id = e.store_id
                 LEFT JOIN pins p ON p.store_id = e.store_id AND p.path = e.path
                 GROUP BY s.name, e.class ORDER BY s.name, e.class",
            )
            .unwrap()
            .query_map([], |r| {
                Ok(ClassTotals {
                    class: r.get(0)?,
                    store: r.get(1)?,
                    files: r.get::<_, i64>(2)? as u64,
                    bytes: r.get::<_, i64>(3)? as u64,
                    retained: r.get::<_, i64>(4)? as u64,
                    retained_bytes: r.get::<_, i64>(5)? as u64,
                })
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(old.len(), 6);
        assert!(old.iter().any(|t| t.retained > 0 && t.class.is_none()));
        assert_eq!(r.totals().unwrap(), old);
    }

    #[test]
    fn upsert_sweep_and_audit_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut r = Registry::open(dir.path()).unwrap();
            let g = r.begin_scan();
            let cls = |p: &Path| p.starts_with("tmp").then(|| "tmp".to_string());
            r.upsert(
                "media",
                &[meta("tmp/a", 1, 10), meta("keep/b", 2, 20)],
                100,
                &cls,
            )
            .unwrap();
            assert_eq!(r.sweep("media", g).unwrap(), 0);
            let g2 = r.begin_scan();
            r.upsert("media", &[meta("tmp/a", 5, 11)], 200, &cls)
                .unwrap();
            assert_eq!(
                r.sweep("media", g2).unwrap(),
                1,
                "keep/b was not seen again"
            );
            let e = r.get("media", Path::new("tmp/a")).unwrap().unwrap();
            assert!(!e.retained);
            assert_eq!(
                (e.size, e.mtime, e.first_seen),
                (5, 11, 100),
                "first_seen is kept"
            );
            assert_eq!(e.class.as_deref(), Some("tmp"));
            assert!(
                r.set_retained("media", Path::new("tmp/a"), true, 250)
                    .unwrap()
            );
            assert!(
                !r.set_retained("media", Path::new("tmp/a"), true, 250)
                    .unwrap()
            );
            assert!(
                r.get("media", Path::new("tmp/a"))
                    .unwrap()
                    .unwrap()
                    .retained
            );
            let rec = AuditRecord {
                at: 300,
                store: "media".into(),
                path: "tmp/a".into(),
                action: "delete".into(),
                outcome: "deleted".into(),
                class: Some("tmp".into()),
                rule: Some("ttl".into()),
                reason: "expired".into(),
                trigger: "gc".into(),
                bytes: Some(5),
            };
            r.record(&[(e.id, e.path.clone())], &[rec]).unwrap();
        }
        let mut r = Registry::open(dir.path()).unwrap();
        assert!(r.get("media", Path::new("tmp/a")).unwrap().is_none());
        // The pin outlives the entry: a file reappearing under that name is still pinned.
        r.begin_scan();
        r.upsert("media", &[meta("tmp/a", 1, 1)], 400, &|_| None)
            .unwrap();
        assert!(
            r.get("media", Path::new("tmp/a"))
                .unwrap()
                .unwrap()
                .retained
        );
        let h = r.history("media", Path::new("tmp/a"), 5).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].rule.as_deref(), Some("ttl"));
        drop(r);
        // A reopened registry continues above every generation already recorded.
        let mut r = Registry::open(dir.path()).unwrap();
        let g = r.begin_scan();
        assert_eq!(
            r.sweep("media", g).unwrap(),
            1,
            "the row from the older generation is swept"
        );
    }

    #[test]
    fn forget_takes_a_directory_along_prefix_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        r.begin_scan();
        let none = |_: &Path| None;
        r.upsert(
            "m",
            &[meta("a/x", 1, 1), meta("a/y/z", 1, 1), meta("ab/x", 1, 1)],
            1,
            &none,
        )
        .unwrap();
        r.forget("m", &[PathBuf::from("a")]).unwrap();
        assert!(r.get("m", Path::new("a/x")).unwrap().is_none());
        assert!(r.get("m", Path::new("a/y/z")).unwrap().is_none());
        assert!(r.get("m", Path::new("ab/x")).unwrap().is_some());
    }

    #[test]
    fn a_new_inode_under_an_old_name_is_first_seen_anew() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        r.begin_scan();
        let none = |_: &Path| None;
        r.upsert("m", &[meta("seg.ts", 1, 1)], 100, &none).unwrap();
        r.upsert("m", &[meta("seg.ts", 2, 2)], 200, &none).unwrap();
        assert_eq!(
            r.get("m", Path::new("seg.ts")).unwrap().unwrap().first_seen,
            100,
            "same inode"
        );
        let renamed_over = FileMeta {
            ino: 2,
            ..meta("seg.ts", 3, 3)
        };
        r.upsert("m", &[renamed_over], 300, &none).unwrap();
        assert_eq!(
            r.get("m", Path::new("seg.ts")).unwrap().unwrap().first_seen,
            300,
            "new inode"
        );
    }

    #[test]
    fn hash_candidates_page_on_and_hashes_follow_their_entry_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        r.begin_scan();
        let rec = |_: &Path| Some("rec".to_string());
        let files: Vec<FileMeta> = (0..150)
            .map(|i| FileMeta {
                ino: 1000 + i,
                ..meta(&format!("rec/{i:03}.flv"), 10, 100 + (i as i64 % 7))
            })
            .collect();
        r.upsert("m", &files, 1, &rec).unwrap();
        // Paged by (mtime, id), 64 at a time: every candidate once, whatever the caller
        // skips (an unreadable file never holds up the rest).
        let mut seen = std::collections::HashSet::new();
        let mut from = (Nanos::MIN, i64::MIN);
        loop {
            let page = r.hash_candidates("m", "rec", 1_000, from, 64).unwrap();
            let Some(last) = page.last() else { break };
            from = (last.mtime, last.id);
            for e in page {
                assert!(seen.insert(e.path), "listed twice");
            }
        }
        assert_eq!(seen.len(), 150);
        let hash = |path: &str, mtime: Nanos| NewHash {
            store: "m".into(),
            path: path.into(),
            size: 10,
            mtime,
            ino: 1000,
            ctime: 5,
            dev: 1,
            nlink: 1,
            blake3: [7; 32],
            at: 2,
        };
        // Only the version the entry has is recorded.
        assert!(
            !r.put_hash(&hash("rec/000.flv", 99)).unwrap(),
            "stale version"
        );
        assert!(r.put_hash(&hash("rec/000.flv", 100)).unwrap());
        let hashed = |r: &Registry| {
            r.conn
                .query_row("SELECT COUNT(*) FROM hashes", [], |x| x.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!(hashed(&r), 1);
        assert_eq!(r.hashed_in_class("m", "rec").unwrap()[0].ctime, 5);
        // Seen again unchanged: kept. Changed: dropped by the trigger. Gone: dropped.
        r.upsert("m", &files[..1], 2, &rec).unwrap();
        assert_eq!(hashed(&r), 1);
        let changed = FileMeta {
            mtime: 101,
            ..files[0].clone()
        };
        r.upsert("m", &[changed], 3, &rec).unwrap();
        assert_eq!(hashed(&r), 0);
        assert!(r.put_hash(&hash("rec/000.flv", 101)).unwrap());
        r.forget("m", &[PathBuf::from("rec/000.flv")]).unwrap();
        assert_eq!(hashed(&r), 0);
    }
}
