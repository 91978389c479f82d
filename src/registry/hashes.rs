//! Dedupe hashes (issue 16): the BLAKE3 hash of one version (size, mtime, inode) of a file
//! of a dedupe class. A row counts only while its entry still has that version, so a file
//! changed after hashing is never judged by its old hash; it is hashed again.

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
    /// Up to `limit` entries of `class` in `store` to hash: not empty, modified before
    /// `quiet_before` (no longer being written), with a same-size sibling (another inode, also
    /// quiet) in the class, and no hash of their current version. Oldest first.
    pub fn hash_candidates(
        &self,
        store: &str,
        class: &str,
        quiet_before: Nanos,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let sql = format!(
            "SELECT {ENTRY_COLS} FROM {ENTRY_FROM}
             WHERE e.class = ?1 AND s.name = ?2 AND e.size > 0 AND e.mtime < ?3
               AND EXISTS (SELECT 1 FROM entries o WHERE o.class = e.class
                   AND o.store_id = e.store_id AND o.size = e.size AND o.ino <> e.ino
                   AND o.mtime < ?3)
               AND NOT EXISTS (SELECT 1 FROM hashes h WHERE h.store_id = e.store_id
                   AND h.path = e.path AND h.size = e.size AND h.mtime = e.mtime
                   AND h.ino = e.ino)
             ORDER BY e.mtime, e.id LIMIT ?4"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = st
            .query_map(params![class, store, quiet_before, limit as i64], row_entry)
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Records a hash (replacing the row of an older version of the same path).
    pub fn put_hash(&mut self, h: &NewHash) -> Result<()> {
        let sid = self.store_id(&h.store)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO hashes(store_id, path, size, mtime, ino, dev, nlink, blake3, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    sid,
                    path_bytes(&h.path),
                    h.size as i64,
                    h.mtime,
                    h.ino as i64,
                    h.dev as i64,
                    h.nlink as i64,
                    &h.blake3[..],
                    h.at
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Every entry of `class` in `store` whose current version is hashed, by size and hash
    /// (so identical files are adjacent).
    pub fn hashed_in_class(&self, store: &str, class: &str) -> Result<Vec<Hashed>> {
        let sql = format!(
            "SELECT {ENTRY_COLS}, h.dev, h.nlink, h.blake3 FROM {ENTRY_FROM} {HASH_JOIN}
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
                    blake3,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Forgets hashes of versions no entry has any more (changed or deleted files).
    pub fn prune_hashes(&mut self) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM hashes WHERE NOT EXISTS (SELECT 1 FROM entries e
                     WHERE e.store_id = hashes.store_id AND e.path = hashes.path
                       AND e.size = hashes.size AND e.mtime = hashes.mtime AND e.ino = hashes.ino)",
                [],
            )
            .map_err(self.err())
    }
}
