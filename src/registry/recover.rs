//! Backup, recovery and reset of the registry (issue 23 item 4; docs/registry.md).
//!
//! - [`backup`]: a consistent copy, `STATE_DIR/registry.backup.db`, made by `VACUUM INTO`
//!   on a read-only connection of its own (WAL: the daemon's writes go on meanwhile), into a
//!   temp file that is fsynced and renamed over the last one. It is as big as the live data
//!   (no free pages, no WAL), and never made from a registry that is not this directory's
//!   or that SQLite cannot read through: a bad registry never replaces a good backup.
//! - [`recover`]: a new registry built from what can be read of the current one (row by
//!   row, skipping past damaged pages) and, for what could not, the backup; the damaged
//!   files are renamed aside (`registry.db.damaged-STAMP`), never deleted; the report says
//!   per table what was read, what came from the backup, and where reading failed.
//! - [`reset`]: an empty registry with a new identity, on purpose; the old one is renamed
//!   aside (`registry.db.lost-STAMP`). Pins come back from the pins file either way.

use std::os::unix::ffi::OsStrExt;

use rusqlite::types::Value;

use super::identity::{self, Identity, sync_dir};
use super::*;

/// The backup's name in the state directory.
pub const BACKUP_FILE: &str = "registry.backup.db";
/// Where a new registry is built before it is renamed into place.
const BUILDING: &str = ".registry.building.db";
/// A damaged spot is skipped by probing ever further rowids; at most this many probes per
/// table (2^62 is reached in 62, so this is only a bound on pathological files).
const MAX_PROBES: u32 = 10_000;

/// What [`backup`] made.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The backup file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// How long it took.
    pub millis: u64,
}

/// One table's recovery.
#[derive(Debug, Clone, Default)]
pub struct TableReport {
    /// The table.
    pub table: String,
    /// Rows read from the damaged registry.
    pub from_registry: u64,
    /// Rows the backup added (those the damaged registry did not give).
    pub from_backup: u64,
    /// Where reading the damaged registry failed (and what was skipped).
    pub errors: Vec<String>,
}

/// What [`recover`] or [`reset`] did.
#[derive(Debug, Clone, Default)]
pub struct RecoverReport {
    /// Where the old registry files were put aside (none: there were none).
    pub kept_aside: Vec<PathBuf>,
    /// The backup used, and when it was made (None: none used).
    pub backup: Option<PathBuf>,
    /// When the backup was made (its mtime), ns since the epoch.
    pub backup_at: Option<Nanos>,
    /// Per table.
    pub tables: Vec<TableReport>,
    /// Rows dropped because what they refer to was lost (e.g. entries of a lost store row).
    pub orphans_dropped: u64,
    /// Pins in the new registry (from the pins file and the sources).
    pub pins: u64,
    /// Whether there was a registry to read from (not missing or empty).
    pub read_registry: bool,
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> RegistryError + '_ {
    move |source| RegistryError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn state_io(path: &Path) -> impl Fn(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::StateFile {
        path: path.to_path_buf(),
        source,
    }
}

fn size_of(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// A path as SQL text (VACUUM INTO and ATTACH take a file name as a string).
fn sql_path(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| RegistryError::StateFile {
        path: p.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the state directory's path is not UTF-8",
        ),
    })
}

/// Makes `dir/registry.backup.db` from the registry, replacing the last one atomically.
/// Refused when the registry is missing, empty or not this directory's, when it cannot be
/// read through, and when the state directory's file system has not room for the copy
/// and some to spare (a backup must never be what fills the disk).
pub fn backup(dir: &Path) -> Result<BackupReport> {
    let started = std::time::Instant::now();
    let db = dir.join("registry.db");
    let Some(known) = identity::read(dir)? else {
        return Err(RegistryError::StateFile {
            path: dir.join(identity::ID_FILE),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no registry identity yet (the daemon writes it when it first opens the registry)",
            ),
        });
    };
    let live = size_of(&db) + size_of(&dir.join("registry.db-wal"));
    if size_of(&db) == 0 {
        return Err(RegistryError::Lost {
            path: db,
            what: "missing or empty (0 bytes)",
            id_file: dir.join(identity::ID_FILE),
        });
    }
    let st = rustix::fs::statvfs(dir).map_err(|e| state_io(dir)(e.into()))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let spare = 64 << 20;
    if free < live.saturating_add(spare) {
        return Err(RegistryError::StateFile {
            path: dir.join(BACKUP_FILE),
            source: std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!(
                    "not made: {free} bytes free, the registry is {live} bytes (and 64 MiB stay free)"
                ),
            ),
        });
    }
    let conn = connect_apart(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let inside = identity::stored(&conn).map_err(sqlite(&db))?;
    if inside.as_deref() != Some(known.id.as_str()) {
        return Err(RegistryError::Foreign {
            path: db,
            found: inside.unwrap_or_else(|| "none".into()),
            expected: known.id,
            id_file: dir.join(identity::ID_FILE),
        });
    }
    let tmp = dir.join(format!(".{BACKUP_FILE}.tmp"));
    let dest = dir.join(BACKUP_FILE);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(state_io(&tmp)(e)),
        _ => {}
    }
    // Made empty first, mode 0600 and not through a link (VACUUM INTO fills an empty
    // file and keeps its mode): the copy is never readable by others, whatever the umask.
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(state_io(&tmp))?;
    }
    // VACUUM INTO reads every table through: a damaged page fails it, and the last good
    // backup stays.
    let made = conn.execute("VACUUM INTO ?1", [sql_path(&tmp)?]);
    drop(conn);
    if let Err(e) = made {
        let _ = std::fs::remove_file(&tmp);
        return Err(sqlite(&db)(e));
    }
    (|| {
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &dest)?;
        sync_dir(dir)
    })()
    .map_err(state_io(&dest))?;
    Ok(BackupReport {
        bytes: size_of(&dest),
        path: dest,
        millis: started.elapsed().as_millis() as u64,
    })
}

/// A stamp for names of files put aside: `20261207T063000Z`.
fn stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

/// Renames `registry.db` and its `-wal`/`-shm` to `registry.db.<why>-STAMP…` (never
/// deletes them); returns the new names.
fn put_aside(dir: &Path, why: &str) -> Result<Vec<PathBuf>> {
    let stamp = stamp();
    let mut moved = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let from = dir.join(format!("registry.db{suffix}"));
        if std::fs::symlink_metadata(&from).is_err() {
            continue;
        }
        let to = dir.join(format!("registry.db.{why}-{stamp}{suffix}"));
        std::fs::rename(&from, &to).map_err(state_io(&from))?;
        moved.push(to);
    }
    sync_dir(dir).map_err(state_io(dir))?;
    Ok(moved)
}

/// A new, empty registry at `dir/.registry.building.db` with the current schema and no WAL
/// (it is renamed into place once complete).
fn build_new(dir: &Path) -> Result<(PathBuf, Connection)> {
    let path = dir.join(BUILDING);
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let p = dir.join(format!("{BUILDING}{suffix}"));
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(state_io(&p)(e)),
            _ => {}
        }
    }
    let conn = Connection::open(&path).map_err(sqlite(&path))?;
    conn.execute_batch(
        "PRAGMA page_size = 16384; PRAGMA journal_mode = DELETE; PRAGMA foreign_keys = OFF;",
    )
    .map_err(sqlite(&path))?;
    for sql in schema::MIGRATIONS {
        conn.execute_batch(sql).map_err(sqlite(&path))?;
    }
    conn.pragma_update(None, "user_version", schema::MIGRATIONS.len() as i64)
        .map_err(sqlite(&path))?;
    Ok((path, conn))
}

/// Closes the new registry, makes it durable, and renames it to `registry.db` (after the
/// old one was put aside).
fn install(dir: &Path, path: PathBuf, conn: Connection) -> Result<()> {
    conn.close().map_err(|(_, e)| sqlite(&path)(e))?;
    let db = dir.join("registry.db");
    (|| {
        std::fs::File::open(&path)?.sync_all()?;
        std::fs::rename(&path, &db)?;
        sync_dir(dir)
    })()
    .map_err(state_io(&db))
}

/// Refuses to replace a registry that opens fine unless `force`; returns whether the
/// current one is another directory's (then nothing is read from it).
fn refuse_if_healthy(dir: &Path, force: bool, what: &str) -> Result<bool> {
    match Registry::open(dir) {
        Ok(_) if force => Ok(false),
        Ok(_) => Err(RegistryError::StateFile {
            path: dir.join("registry.db"),
            source: std::io::Error::other(format!(
                "the registry is healthy: nothing to {what} (give --force to {what} it anyway; the current one is kept aside)"
            )),
        }),
        Err(RegistryError::Foreign { .. }) => Ok(true),
        Err(e) if e.needs_operator() || force => Ok(false),
        Err(e) => Err(e),
    }
}

/// Starts over with an empty registry and a new identity; the old registry files are put
/// aside (`registry.db.lost-STAMP`), the pins come back from the pins file. Refused while
/// the registry opens fine, unless `force`. The caller holds the state lock.
pub fn reset(dir: &Path, force: bool) -> Result<RecoverReport> {
    refuse_if_healthy(dir, force, "reset")?;
    let (path, conn) = build_new(dir)?;
    let id = Identity::new().map_err(state_io(&dir.join(identity::ID_FILE)))?;
    identity::store(&conn, &id).map_err(sqlite(&path))?;
    // The new id first: a crash before the rename leaves the old registry refused as
    // foreign (reset again), never an old registry accepted as new.
    identity::write(dir, &id)?;
    let kept_aside = put_aside(dir, "lost")?;
    install(dir, path, conn)?;
    let mut reg = Registry::open(dir)?;
    Ok(RecoverReport {
        kept_aside,
        pins: reg.count_pins()?,
        ..Default::default()
    })
}

/// Rebuilds the registry from what can be read of it and from the backup (`from`, else
/// `dir/registry.backup.db` if there is one); the damaged files are put aside
/// (`registry.db.damaged-STAMP`). Refused while the registry opens fine, unless `force`.
/// The caller holds the state lock.
pub fn recover(dir: &Path, from: Option<&Path>, force: bool) -> Result<RecoverReport> {
    let foreign = refuse_if_healthy(dir, force, "recover")?;
    let db = dir.join("registry.db");
    let backup = match from {
        Some(f) => Some(f.to_path_buf()),
        None => Some(dir.join(BACKUP_FILE)).filter(|b| size_of(b) > 0),
    };
    // Another directory's registry (a bad restore) is put aside unread: recovering means
    // going back to this directory's backup (`--from` takes another registry on purpose).
    let damaged = !foreign && (size_of(&db) > 0 || size_of(&dir.join("registry.db-wal")) > 0);
    if !damaged && backup.is_none() {
        return Err(RegistryError::StateFile {
            path: db,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "nothing to recover from: the registry is missing, empty or another directory's, and there is no backup ({}); `mediaretain registry reset` starts over (pins are kept)",
                    dir.join(BACKUP_FILE).display()
                ),
            ),
        });
    }
    let (path, conn) = build_new(dir)?;
    // The pins file is the newest word on pins (rewritten with every change); when it
    // exists, pins come from it alone (at open), not from an older backup.
    let pins_from_file = pinfile::read(dir)?.is_some();
    let mut report = RecoverReport {
        read_registry: damaged,
        ..Default::default()
    };
    let tables = [
        "stores",
        "entries",
        "pins",
        "tags",
        "audit",
        "leases",
        "copies",
        "uploads",
        "offload_backoff",
        "intents",
        "facts",
        "hashes",
        // What each store root was when last used: without it, the bare directory of an
        // unmounted disk could be taken for the store after a recovery.
        "store_roots",
    ];
    let mut by_table: Vec<TableReport> = tables
        .iter()
        .map(|t| TableReport {
            table: t.to_string(),
            ..Default::default()
        })
        .collect();
    let building = path.clone();
    let tx_err = sqlite(&building);
    conn.execute_batch("BEGIN").map_err(&tx_err)?;
    if damaged {
        match open_source(&db) {
            Ok(src) => {
                for (t, rep) in tables.iter().zip(by_table.iter_mut()) {
                    if *t == "pins" && pins_from_file {
                        continue;
                    }
                    let (n, errs) = copy_table(&src, &conn, t).map_err(&tx_err)?;
                    rep.from_registry = n;
                    rep.errors = errs;
                }
            }
            Err(e) => {
                for rep in by_table.iter_mut() {
                    rep.errors = vec![format!("unreadable: {e}")];
                }
            }
        }
    }
    if let Some(b) = &backup {
        let src = open_source(b).map_err(sqlite(b))?;
        for (t, rep) in tables.iter().zip(by_table.iter_mut()) {
            // Deletion intents and hashes describe a moment and a file version: from an
            // older copy they could be wrong (an intent reconciled meanwhile would be
            // audited twice); hashes are computed again.
            if matches!(*t, "intents" | "hashes") || (*t == "pins" && pins_from_file) {
                continue;
            }
            let (n, errs) = copy_table(&src, &conn, t).map_err(&tx_err)?;
            rep.from_backup = n;
            rep.errors
                .extend(errs.into_iter().map(|e| format!("backup: {e}")));
        }
        report.backup_at = std::fs::metadata(b)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as Nanos);
        report.backup = Some(b.clone());
    }
    // What refers to rows that were lost goes too (the next scan finds the files again).
    let mut orphans = 0;
    for sql in [
        "DELETE FROM entries WHERE store_id NOT IN (SELECT id FROM stores)",
        "DELETE FROM tags WHERE entry_id NOT IN (SELECT id FROM entries)",
        "DELETE FROM copies WHERE store_id NOT IN (SELECT id FROM stores)",
        "DELETE FROM offload_backoff WHERE store_id NOT IN (SELECT id FROM stores)",
        "DELETE FROM facts WHERE store_id NOT IN (SELECT id FROM stores)",
        "DELETE FROM hashes WHERE store_id NOT IN (SELECT id FROM stores)",
        "DELETE FROM store_roots WHERE store_id NOT IN (SELECT id FROM stores)",
    ] {
        orphans += conn.execute(sql, []).map_err(&tx_err)? as u64;
    }
    report.orphans_dropped = orphans;
    // This directory's identity (a registry taken over with --from becomes this one's).
    let id = match identity::read(dir)? {
        Some(id) => id,
        None => Identity::new().map_err(state_io(&dir.join(identity::ID_FILE)))?,
    };
    conn.execute_batch("COMMIT").map_err(&tx_err)?;
    identity::store(&conn, &id).map_err(&tx_err)?;
    let check: String = conn
        .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
        .map_err(&tx_err)?;
    if check != "ok" {
        return Err(RegistryError::Damaged {
            path: path.clone(),
            detail: format!("the rebuilt registry failed its check: {check}"),
        });
    }
    identity::write(dir, &id)?;
    report.kept_aside = put_aside(dir, if foreign { "foreign" } else { "damaged" })?;
    install(dir, path, conn)?;
    let mut reg = Registry::open(dir)?;
    report.pins = reg.count_pins()?;
    report.tables = by_table;
    Ok(report)
}

/// A read-only connection to a registry that may be damaged.
fn open_source(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Reading on past what it can: no page is written, so this cannot do more damage.
    conn.execute_batch("PRAGMA writable_schema = ON;").ok();
    Ok(conn)
}

/// The columns of `table` on `conn`.
fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    st.query_map([], |r| r.get::<_, String>(1))?.collect()
}

/// Copies the readable rows of `table` from `src` into `dst` (rows `dst` has already keep
/// theirs); returns how many were added and where reading failed. A rowid table is read in
/// rowid order; after a failure, ever further rowids are probed (doubling the step) until
/// reading works again, so one damaged page costs its rows, not the rest of the table.
fn copy_table(
    src: &Connection,
    dst: &Connection,
    table: &str,
) -> rusqlite::Result<(u64, Vec<String>)> {
    let mut errors = Vec::new();
    let theirs = match columns(src, table) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => return Ok((0, vec![format!("{table}: not in this registry")])),
        Err(e) => return Ok((0, vec![format!("{table}: unreadable: {e}")])),
    };
    let cols: Vec<String> = columns(dst, table)?
        .into_iter()
        .filter(|c| theirs.contains(c))
        .collect();
    let list = cols.join(", ");
    let marks = vec!["?"; cols.len()].join(", ");
    let mut ins = dst.prepare(&format!(
        "INSERT OR IGNORE INTO {table}({list}) VALUES ({marks})"
    ))?;
    let mut added = 0u64;
    let ncols = cols.len();
    let mut put = |row: &rusqlite::Row<'_>, skip: usize| -> rusqlite::Result<u64> {
        let vals: Vec<Value> = (0..ncols)
            .map(|i| row.get::<_, Value>(i + skip))
            .collect::<rusqlite::Result<_>>()?;
        Ok(ins.execute(rusqlite::params_from_iter(vals))? as u64)
    };
    let rowid_table = src
        .prepare(&format!("SELECT rowid FROM {table} LIMIT 0"))
        .is_ok();
    if !rowid_table {
        let r = (|| {
            let mut st = src.prepare(&format!("SELECT {list} FROM {table}"))?;
            let mut rows = st.query([])?;
            while let Some(row) = rows.next()? {
                added += put(row, 0)?;
            }
            Ok::<_, rusqlite::Error>(())
        })();
        if let Err(e) = r {
            errors.push(format!("{table}: read stopped after {added} rows: {e}"));
        }
        return Ok((added, errors));
    }
    let mut st = src.prepare(&format!(
        "SELECT rowid, {list} FROM {table} WHERE rowid > ?1 ORDER BY rowid"
    ))?;
    let mut after = i64::MIN;
    let mut probes = 0u32;
    loop {
        // Read on from `after` until the end or a failure.
        let failed = (|| {
            let mut rows = st.query([after])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                added += put(row, 1)?;
                after = id;
            }
            Ok::<_, rusqlite::Error>(())
        })();
        let Err(e) = failed else { break };
        // Skip ahead: the first rowid beyond `after + step` that reads again.
        let mut step: i64 = 1;
        let resumed = loop {
            probes += 1;
            if probes > MAX_PROBES || step > (1 << 62) {
                break None;
            }
            let probe = after.saturating_add(step);
            let ok = (|| {
                let mut rows = st.query([probe])?;
                rows.next().map(|_| ())
            })();
            if ok.is_ok() {
                break Some(probe);
            }
            step = step.saturating_mul(2);
        };
        match resumed {
            Some(probe) => {
                errors.push(format!(
                    "{table}: rows with rowid {}..={probe} unreadable ({e})",
                    after.saturating_add(1)
                ));
                after = probe;
            }
            None => {
                errors.push(format!(
                    "{table}: rows after rowid {after} unreadable ({e})"
                ));
                break;
            }
        }
    }
    Ok((added, errors))
}

impl Registry {
    /// How many pins there are.
    pub fn count_pins(&mut self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM pins", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.err())
    }
}

/// The names `put_aside` would give, for the docs and tests: `registry.db.<why>-*`.
pub fn is_aside(name: &std::ffi::OsStr, why: &str) -> bool {
    name.as_bytes()
        .starts_with(format!("registry.db.{why}-").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(p: &str) -> FileMeta {
        FileMeta {
            path: PathBuf::from(p),
            size: 1,
            mtime: 1,
            ino: 1,
        }
    }

    /// A registry with `n` audit records, a pin, and a backup taken.
    fn filled(dir: &Path, n: usize) {
        let mut r = Registry::open(dir).unwrap();
        r.begin_scan();
        r.upsert("media", &[meta("a.mp4"), meta("b.mp4")], 1, &|_| None)
            .unwrap();
        r.set_retained("media", Path::new("a.mp4"), true, 1)
            .unwrap();
        let recs: Vec<AuditRecord> = (0..n)
            .map(|i| AuditRecord {
                at: i as i64,
                store: "media".into(),
                path: PathBuf::from(format!("rec/{i:06}-{}.mp4", "x".repeat(200))),
                action: "delete".into(),
                outcome: "deleted".into(),
                class: None,
                rule: None,
                reason: format!("reason-{i:06}"),
                trigger: "gc".into(),
                bytes: Some(1),
            })
            .collect();
        r.record(&[], &recs).unwrap();
        drop(r);
    }

    /// Overwrites the page of `db` that holds `needle` (a row of a table: the reason is
    /// in no index) with garbage.
    fn damage_page_with(db: &Path, needle: &[u8]) {
        let mut bytes = std::fs::read(db).unwrap();
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("the row is in the file (checkpointed)");
        let page = 16384;
        let start = at / page * page;
        bytes[start..start + page].fill(0xA5);
        std::fs::write(db, &bytes).unwrap();
    }

    fn audit_count(dir: &Path) -> i64 {
        let c = Connection::open(dir.join("registry.db")).unwrap();
        c.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_damaged_page_is_skipped_and_the_rest_recovered_with_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 2000);
        backup(dir.path()).unwrap();
        // Checkpointed at close: the data is in registry.db; damage one page in the middle
        // (audit rows: 2000 rows of ~250 bytes fill ~30 pages of 16 KiB).
        let db = dir.path().join("registry.db");
        let len = size_of(&db);
        damage_page_with(&db, b"reason-001000");
        let e = Registry::open(dir.path())
            .err()
            .expect("damaged is refused");
        assert!(e.needs_operator(), "{e}");
        assert!(e.to_string().contains("registry recover"), "{e}");
        let rep = recover(dir.path(), None, false).unwrap();
        assert_eq!(rep.pins, 1);
        assert_eq!(audit_count(dir.path()), 2000, "{rep:?}");
        assert!(
            rep.kept_aside[0]
                .to_string_lossy()
                .contains("registry.db.damaged-")
        );
        assert_eq!(
            size_of(&rep.kept_aside[0]),
            len,
            "the damaged file is kept aside"
        );
        // And the recovered registry opens as this directory's.
        Registry::open(dir.path()).unwrap();
    }

    #[test]
    fn without_a_backup_the_readable_rows_are_kept_and_the_loss_is_named() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 2000);
        damage_page_with(&dir.path().join("registry.db"), b"reason-001000");
        let rep = recover(dir.path(), None, false).unwrap();
        let n = audit_count(dir.path());
        assert!(n > 1000 && n < 2000, "{n} of 2000 read; {rep:?}");
        let audit = rep.tables.iter().find(|t| t.table == "audit").unwrap();
        assert!(!audit.errors.is_empty(), "{rep:?}");
    }

    #[test]
    fn a_foreign_registry_is_put_aside_unread_and_the_backup_taken() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        filled(a.path(), 5);
        filled(b.path(), 7);
        backup(b.path()).unwrap();
        std::fs::copy(a.path().join("registry.db"), b.path().join("registry.db")).unwrap();
        let rep = recover(b.path(), None, false).unwrap();
        assert!(!rep.read_registry);
        assert!(
            rep.kept_aside[0]
                .to_string_lossy()
                .contains("registry.db.foreign-")
        );
        assert_eq!(audit_count(b.path()), 7, "{rep:?}");
    }

    #[test]
    fn reset_keeps_the_pins_and_puts_the_old_registry_aside() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 10);
        let old = identity::read(dir.path()).unwrap().unwrap();
        // A healthy registry is not reset by accident.
        assert!(reset(dir.path(), false).is_err());
        std::fs::write(dir.path().join("registry.db"), b"").unwrap();
        let rep = reset(dir.path(), false).unwrap();
        assert_eq!(rep.pins, 1);
        assert_ne!(identity::read(dir.path()).unwrap().unwrap(), old);
        assert!(
            rep.kept_aside
                .iter()
                .any(|p| p.file_name().is_some_and(|n| is_aside(n, "lost")))
        );
        let mut r = Registry::open(dir.path()).unwrap();
        assert!(
            r.pinned_paths("media")
                .unwrap()
                .contains(Path::new("a.mp4"))
        );
    }
}
