//! What operators, consumers and media servers put on files: pins (which outlive an
//! entry; they are set in pinfile.rs, which keeps them in a file too), tags, leases (with
//! their owner uid), and servers' "complete" facts.

use super::*;

impl Registry {
    /// Records that the version (`size`, `mtime`) of `path` is complete, as `source` said
    /// at `at`. A later version of the file does not inherit it.
    pub fn set_complete(
        &mut self,
        store: &str,
        path: &Path,
        size: u64,
        mtime: Nanos,
        at: Nanos,
        source: &str,
    ) -> Result<()> {
        let sid = self.store_id(store)?;
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO facts(store_id, path, size, mtime, at, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![sid, path_bytes(path), size as i64, mtime, at, source],
            )?;
            Ok(())
        })
    }

    /// Adds and removes tags of the entry at `path`; `None` when there is no such entry,
    /// else whether anything changed.
    pub fn set_tags(
        &mut self,
        store: &str,
        path: &Path,
        add: &[String],
        remove: &[String],
    ) -> Result<Option<bool>> {
        let sid = self.store_id(store)?;
        self.write(|tx| {
            let id: Option<i64> = tx
                .query_row(
                    "SELECT id FROM entries WHERE store_id = ?1 AND path = ?2",
                    params![sid, path_bytes(path)],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = id else { return Ok(None) };
            let mut n = 0;
            for t in add {
                n += tx.execute(
                    "INSERT OR IGNORE INTO tags(entry_id, tag) VALUES (?1, ?2)",
                    params![id, t],
                )?;
            }
            for t in remove {
                n += tx.execute(
                    "DELETE FROM tags WHERE entry_id = ?1 AND tag = ?2",
                    params![id, t],
                )?;
            }
            Ok(Some(n > 0))
        })
    }

    /// The pinned paths of `store` (pins are few: an operator sets each one).
    pub fn pinned_paths(&mut self, store: &str) -> Result<std::collections::HashSet<PathBuf>> {
        let sid = self.store_id(store)?;
        let mut st = self
            .conn
            .prepare_cached("SELECT path FROM pins WHERE store_id = ?1")
            .map_err(self.err())?;
        st.query_map([sid], |r| r.get(0).map(bytes_path))
            .map_err(self.err())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.err())
    }

    /// Records a new lease; returns it with its id.
    pub fn add_lease(&mut self, mut lease: Lease) -> Result<Lease> {
        self.conn
            .execute(
                "INSERT INTO leases(store, pattern, glob, holder, created, expires, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![lease.store, lease.pattern.as_bytes(), lease.glob, lease.holder, lease.created, lease.expires, lease.owner],
            )
            .map_err(self.err())?;
        lease.id = self.conn.last_insert_rowid();
        Ok(lease)
    }

    /// Moves an unexpired lease's expiry; `None` when there is no such lease (any more).
    pub fn renew_lease(&mut self, id: i64, expires: Nanos, now: Nanos) -> Result<Option<Lease>> {
        let n = self
            .conn
            .execute(
                "UPDATE leases SET expires = ?2 WHERE id = ?1 AND expires > ?3",
                params![id, expires, now],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Ok(None);
        }
        Ok(self.leases(now)?.into_iter().find(|l| l.id == id))
    }

    /// Unexpired leases owned by `uid`.
    pub fn count_leases(&mut self, uid: u32, now: Nanos) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM leases WHERE owner = ?1 AND expires > ?2",
                params![uid, now],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.err())
    }

    /// The owner of unexpired lease `id`: None when there is no such lease, Some(None)
    /// for a lease from before owners were recorded.
    pub fn lease_owner(&mut self, id: i64, now: Nanos) -> Result<Option<Option<u32>>> {
        self.conn
            .query_row(
                "SELECT owner FROM leases WHERE id = ?1 AND expires > ?2",
                params![id, now],
                |r| r.get::<_, Option<u32>>(0),
            )
            .optional()
            .map_err(self.err())
    }

    /// Ends a lease; whether it existed.
    pub fn release_lease(&mut self, id: i64) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM leases WHERE id = ?1", [id])
            .map_err(self.err())?;
        Ok(n > 0)
    }

    /// Unexpired leases, oldest first; expired ones are dropped on the way.
    pub fn leases(&mut self, now: Nanos) -> Result<Vec<Lease>> {
        self.conn
            .execute("DELETE FROM leases WHERE expires <= ?1", [now])
            .map_err(self.err())?;
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, store, pattern, glob, holder, created, expires, owner FROM leases ORDER BY id",
            )
            .map_err(self.err())?;
        st.query_map([], |r| {
            Ok(Lease {
                id: r.get(0)?,
                store: r.get(1)?,
                pattern: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(2)?).into_owned(),
                glob: r.get(3)?,
                holder: r.get(4)?,
                created: r.get(5)?,
                expires: r.get(6)?,
                owner: r.get(7)?,
            })
        })
        .map_err(self.err())?
        .collect::<rusqlite::Result<_>>()
        .map_err(self.err())
    }
}
