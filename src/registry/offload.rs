//! Offload bookkeeping: each local file's verified remote copy (of one version), the
//! multipart uploads in flight (to abort after a crash), and per-file backoff after
//! failures.

use super::*;

impl Registry {
    /// Records the verified remote copy `remote:key` (server checksum `checksum`) of the
    /// version (`size`, `mtime`) of local file `path` of `store`.
    #[allow(clippy::too_many_arguments)]
    pub fn set_copy(
        &mut self,
        store: &str,
        path: &Path,
        size: u64,
        mtime: Nanos,
        remote: &str,
        key: &str,
        checksum: &str,
        at: Nanos,
    ) -> Result<()> {
        let sid = self.store_id(store)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO copies(store_id, path, size, mtime, remote, key, checksum, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![sid, path_bytes(path), size as i64, mtime, remote, key.as_bytes(), checksum, at],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The recorded copy of `path` of `store`: (remote, key, size, checksum).
    pub fn copy_of(
        &mut self,
        store: &str,
        path: &Path,
    ) -> Result<Option<(String, String, u64, String)>> {
        let sid = self.store_id(store)?;
        self.conn
            .query_row(
                "SELECT remote, CAST(key AS TEXT), size, checksum FROM copies WHERE store_id = ?1 AND path = ?2",
                params![sid, path_bytes(path)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64, r.get(3)?)),
            )
            .optional()
            .map_err(self.err())
    }

    /// Forgets the recorded copy of `path` of `store` (it is gone or changed on its
    /// server): the file is an offload candidate again.
    pub fn forget_copy(&mut self, store: &str, path: &Path) -> Result<()> {
        let sid = self.store_id(store)?;
        self.conn
            .execute(
                "DELETE FROM copies WHERE store_id = ?1 AND path = ?2",
                params![sid, path_bytes(path)],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// How many entries S3 store `remote` has and how many verified copies name it: what
    /// was recorded under its root (fleet start-up: a root that moved would orphan them).
    pub fn remote_footprint(&self, remote: &str) -> Result<(u64, u64)> {
        let q = |sql: &str| {
            self.conn
                .query_row(sql, params![remote], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(self.err())
        };
        Ok((
            q(
                "SELECT COUNT(*) FROM entries e JOIN stores s ON s.id = e.store_id WHERE s.name = ?1",
            )?,
            q("SELECT COUNT(*) FROM copies WHERE remote = ?1")?,
        ))
    }

    /// Forgets the verified copies recorded at `remote:key` for each of `keys`: the object
    /// was deleted (through another store spanning the same keys), so no local file may go
    /// on the strength of it. Returns how many were forgotten.
    pub fn forget_copies_at(&mut self, remote: &str, keys: &[String]) -> Result<usize> {
        let path = self.path.clone();
        let err = |source| RegistryError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut n = 0;
        {
            let mut st = tx
                .prepare("DELETE FROM copies WHERE remote = ?1 AND key = ?2")
                .map_err(err)?;
            for k in keys {
                n += st.execute(params![remote, k.as_bytes()]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(n)
    }

    /// The offload backoff of local file `path` of `store`: (failures in a row, not tried
    /// again before, the last failure in words).
    pub fn backoff_of(&mut self, store: &str, path: &Path) -> Result<Option<(u32, Nanos, String)>> {
        let sid = self.store_id(store)?;
        self.conn
            .query_row(
                "SELECT failures, next_at, last FROM offload_backoff WHERE store_id = ?1 AND path = ?2",
                params![sid, path_bytes(path)],
                |r| Ok((r.get::<_, i64>(0)? as u32, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.err())
    }

    /// Sets the offload backoff of `path` of `store`.
    pub fn set_backoff(
        &mut self,
        store: &str,
        path: &Path,
        failures: u32,
        next_at: Nanos,
        last: &str,
    ) -> Result<()> {
        let sid = self.store_id(store)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO offload_backoff(store_id, path, failures, next_at, last)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![sid, path_bytes(path), failures as i64, next_at, last],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Forgets the offload backoff of `path` of `store` (its offload succeeded).
    pub fn clear_backoff(&mut self, store: &str, path: &Path) -> Result<()> {
        let sid = self.store_id(store)?;
        self.conn
            .execute(
                "DELETE FROM offload_backoff WHERE store_id = ?1 AND path = ?2",
                params![sid, path_bytes(path)],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Files whose offload is backing off at `now`, and the earliest time one is tried again.
    pub fn backoff_census(&self, now: Nanos) -> Result<(u64, Option<Nanos>)> {
        self.conn
            .query_row(
                "SELECT COUNT(*), MIN(next_at) FROM offload_backoff WHERE next_at > ?1",
                [now],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .map_err(self.err())
    }

    /// Drops backoffs that ran out before `before` (their files are tried as usual; a row
    /// of a file that went away does not stay for ever).
    pub fn prune_backoff(&mut self, before: Nanos) -> Result<usize> {
        self.conn
            .execute("DELETE FROM offload_backoff WHERE next_at < ?1", [before])
            .map_err(self.err())
    }

    /// Notes a multipart upload about to start (found again after a crash); its row id.
    pub fn add_upload(
        &mut self,
        remote: &str,
        key: &str,
        upload_id: &str,
        at: Nanos,
    ) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO uploads(remote, key, upload_id, started) VALUES (?1, ?2, ?3, ?4)",
                params![remote, key.as_bytes(), upload_id, at],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Notes the server's id of upload row `row` (noted before the upload was started).
    pub fn set_upload_id(&mut self, row: i64, upload_id: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE uploads SET upload_id = ?2 WHERE id = ?1",
                params![row, upload_id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Forgets upload row `id` (completed or aborted).
    pub fn remove_upload(&mut self, id: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM uploads WHERE id = ?1", [id])
            .map_err(self.err())?;
        Ok(())
    }

    /// The uploads noted for `remote`: (row id, key, upload id).
    pub fn uploads(&self, remote: &str) -> Result<Vec<(i64, String, String)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, CAST(key AS TEXT), upload_id FROM uploads WHERE remote = ?1",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([remote], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }
}
