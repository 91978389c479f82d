//! Dedupe hashes (issue 16): the BLAKE3 hash of one version (size, mtime, inode) of a file
//! of a dedupe class. A row counts only while its entry still has that version (triggers
//! drop it when the entry changes or goes), so a file changed after hashing is never judged
//! by its old hash; it is hashed again. The row also keeps the inode's change time, which
//! the executor compares before deleting: a rewrite that restored the mtime still moves it.

use super::*;

/// A hashed file of a dedupe class: its entry and what hashing found.
#[derive(Debug, Clone)]
pub struct Hashed {
    /// The entry (of the hashed version).
    pub entry: Entry,
    /// The device it lies on (hard links share dev and inode).
    pub dev: u64,
    /// Its names when it was hashed (above 1: hard-linked).
    pub nlink: u64,
    /// The inode's change time (ns) when it was hashed.
    pub ctime: Nanos,
    /// Its BLAKE3 hash.
    pub blake3: [u8; 32],
}

/// A hash to record.
#[derive(Debug, Clone)]
pub struct NewHash {
    /// Store name.
    pub store: String,
    /// Relative path.
    pub path: PathBuf,
    /// The version hashed: size, mtime, inode, device.
    pub size: u64,
    /// Modification time (ns).
    pub mtime: Nanos,
    /// Inode number.
    pub ino: u64,
    /// The inode's change time (ns).
    pub ctime: Nanos,
    /// Device number.
    pub dev: u64,
    /// Names of the inode.
    pub nlink: u64,
    /// The hash.
    pub blake3: [u8; 32],
    /// When it was hashed.
    pub at: Nanos,
}

/// A row is valid only for the version of the entry it was computed from.
const HASH_JOIN: &str = "JOIN hashes h ON h.store_id = e.store_id AND h.path = e.path
     AND h.size = e.size AND h.mtime = e.mtime AND h.ino = e.ino";

impl Registry {
    /// Up to `limit` entries of `class` in `store` to hash, after `from` (mtime, id) in
    /// that order: not empty, modified before `quiet_before` (no longer being written),
    /// with a same-size sibling (another inode, also quiet) in the class, and no hash of
    /// their current version. Oldest first; the caller pages on with the last one's key,
    /// so files it skips (unreadable) never hold up the rest.
    pub fn hash_candidates(
        &self,
        store: &str,
        class: &str,
        quiet_before: Nanos,
        from: (Nanos, i64),
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let sql = format!(
            "SELECT {ENTRY_COLS} FROM {ENTRY_FROM}
             WHERE e.class = ?1 AND s.name = ?2 AND e.size > 0 AND e.mtime < ?3
               AND (e.mtime, e.id) > (?4, ?5)
               AND EXISTS (SELECT 1 FROM entries o WHERE o.class = e.class
                   AND o.store_id = e.store_id AND o.size = e.size AND o.ino <> e.ino
                   AND o.mtime < ?3)
               AND NOT EXISTS (SELECT 1 FROM hashes h WHERE h.store_id = e.store_id
                   AND h.path = e.path AND h.size = e.size AND h.mtime = e.mtime
                   AND h.ino = e.ino)
             ORDER BY e.mtime, e.id LIMIT ?6"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = st
            .query_map(
                params![class, store, quiet_before, from.0, from.1, limit as i64],
                row_entry,
            )
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Records a hash (replacing the row of an older version of the same path), only if
    /// the entry still has the version hashed: one that changed or went meanwhile gets no
    /// row (its triggers already ran). False when nothing was recorded.
    pub fn put_hash(&mut self, h: &NewHash) -> Result<bool> {
        let sid = self.store_id(&h.store)?;
        let n = self
            .conn
            .execute(
                "INSERT OR REPLACE INTO hashes(store_id, path, size, mtime, ino, ctime, dev, nlink, blake3, at)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE EXISTS (SELECT 1 FROM entries
                     WHERE store_id = ?1 AND path = ?2 AND size = ?3 AND mtime = ?4 AND ino = ?5)",
                params![
                    sid,
                    path_bytes(&h.path),
                    h.size as i64,
                    h.mtime,
                    h.ino as i64,
                    h.ctime,
                    h.dev as i64,
                    h.nlink as i64,
                    &h.blake3[..],
                    h.at
                ],
            )
            .map_err(self.err())?;
        Ok(n > 0)
    }

    /// Forgets the hash of `path` (found stale: it is hashed again).
    pub fn forget_hash(&mut self, store: &str, path: &Path) -> Result<()> {
        let sid = self.store_id(store)?;
        self.conn
            .execute(
                "DELETE FROM hashes WHERE store_id = ?1 AND path = ?2",
                params![sid, path_bytes(path)],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Every entry of `class` in `store` whose current version is hashed, by size and hash
    /// (so identical files are adjacent).
    pub fn hashed_in_class(&self, store: &str, class: &str) -> Result<Vec<Hashed>> {
        let sql = format!(
            "SELECT {ENTRY_COLS}, h.dev, h.nlink, h.blake3, h.ctime FROM {ENTRY_FROM} {HASH_JOIN}
             WHERE e.class = ?1 AND s.name = ?2
             ORDER BY e.size, h.blake3, e.path"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = st
            .query_map(params![class, store], |r| {
                let raw: Vec<u8> = r.get(13)?;
                let mut blake3 = [0u8; 32];
                if raw.len() == 32 {
                    blake3.copy_from_slice(&raw);
                }
                Ok(Hashed {
                    entry: row_entry(r)?,
                    dev: r.get::<_, i64>(11)? as u64,
                    nlink: r.get::<_, i64>(12)? as u64,
                    ctime: r.get(14)?,
                    blake3,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Files of `store` deleted as duplicates, as the audit remembers them: (path, when,
    /// the reason, which names the kept copy). Oldest first. `rm` asks before it deletes
    /// a file that stood for such copies.
    pub fn duplicates_deleted(&self, store: &str) -> Result<Vec<(PathBuf, Nanos, String)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path, at, reason FROM audit
                 WHERE store = ?1 AND rule = 'duplicate' AND outcome = 'deleted'
                 ORDER BY at, id",
            )
            .map_err(self.err())?;
        st.query_map(params![store], |r| {
            Ok((bytes_path(r.get(0)?), r.get(1)?, r.get(2)?))
        })
        .map_err(self.err())?
        .collect::<rusqlite::Result<_>>()
        .map_err(self.err())
    }

    /// Other files of `store` with the same content as `path` (same size and hash, each
    /// of its current version), by name: an inode's other names count. None when `path`
    /// has no hash of its current version (its content is not known).
    pub fn other_copies(&self, store: &str, path: &Path) -> Result<Option<Vec<PathBuf>>> {
        let sql = format!(
            "SELECT h.size, h.blake3 FROM {ENTRY_FROM} {HASH_JOIN}
             WHERE s.name = ?1 AND e.path = ?2"
        );
        let mine: Option<(i64, Vec<u8>)> = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err())?
            .query_row(params![store, path_bytes(path)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(self.err())?;
        let Some((size, blake3)) = mine else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT e.path FROM {ENTRY_FROM} {HASH_JOIN}
             WHERE s.name = ?1 AND h.size = ?2 AND h.blake3 = ?3 AND e.path <> ?4"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = st
            .query_map(params![store, size, blake3, path_bytes(path)], |r| {
                Ok(bytes_path(r.get(0)?))
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map(Some)
            .map_err(self.err())
    }
}
