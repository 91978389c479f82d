//! The audit trail (every action taken or refused, pruned by age and count) and deletion
//! intents (durable before any unlink or DeleteObjects, replaced by their outcomes in one
//! transaction, settled after a crash).

use super::*;

impl Registry {
    /// Applies the outcome of a batch of actions in one transaction: removes the entries
    /// that are gone and appends every record to the audit trail.
    pub fn record(&mut self, gone: &[(i64, PathBuf)], records: &[AuditRecord]) -> Result<()> {
        self.write(|tx| record_in(tx, gone, records))
    }

    /// Makes the intents of one chunk of deletions durable, in one transaction, before any
    /// of them is attempted; returns the range of their ids for [`Registry::record_chunk`].
    pub fn intend(&mut self, intents: &[Intent]) -> Result<Option<(i64, i64)>> {
        let ids = self.intend_each(intents)?;
        Ok(ids
            .iter()
            .min()
            .zip(ids.iter().max())
            .map(|(a, b)| (*a, *b)))
    }

    /// Like [`Registry::intend`], returning the id of each intent in order (for
    /// [`Registry::settle_intents`], which drops the ones whose outcome is known).
    pub fn intend_each(&mut self, intents: &[Intent]) -> Result<Vec<i64>> {
        if intents.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|tx| {
            let mut ins = tx.prepare_cached(
                "INSERT INTO intents(at, store, path, entry_id, ino, size, mtime, class, rule, reason, trigger)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut ids = Vec::with_capacity(intents.len());
            for i in intents {
                ins.execute(params![
                    i.at,
                    i.store,
                    path_bytes(&i.path),
                    i.entry_id,
                    i.ino as i64,
                    i.size as i64,
                    i.mtime,
                    i.class,
                    i.rule,
                    i.reason,
                    i.trigger
                ])?;
                ids.push(tx.last_insert_rowid());
            }
            Ok(ids)
        })
    }

    /// Like [`Registry::record`], and in the same transaction drops the chunk's intents
    /// (ids `intents.0..=intents.1`): their outcomes are recorded now.
    pub fn record_chunk(
        &mut self,
        gone: &[(i64, PathBuf)],
        records: &[AuditRecord],
        intents: Option<(i64, i64)>,
    ) -> Result<()> {
        self.write(|tx| {
            record_in(tx, gone, records)?;
            if let Some((a, b)) = intents {
                tx.execute(
                    "DELETE FROM intents WHERE id BETWEEN ?1 AND ?2",
                    params![a, b],
                )?;
            }
            Ok(())
        })
    }

    /// Intents left by a pass that never finished (a crash), oldest first.
    pub fn intents(&self) -> Result<Vec<Intent>> {
        self.intents_where(None)
    }

    /// The intents of store `store` only, oldest first.
    pub fn intents_of(&self, store: &str) -> Result<Vec<Intent>> {
        self.intents_where(Some(store))
    }

    fn intents_where(&self, store: Option<&str>) -> Result<Vec<Intent>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, at, store, path, entry_id, ino, size, mtime, class, rule, reason, trigger
                 FROM intents WHERE ?1 IS NULL OR store = ?1 ORDER BY id",
            )
            .map_err(self.err())?;
        st.query_map([store], |r| {
            Ok(Intent {
                id: r.get(0)?,
                at: r.get(1)?,
                store: r.get(2)?,
                path: bytes_path(r.get(3)?),
                entry_id: r.get(4)?,
                ino: r.get::<_, i64>(5)? as u64,
                size: r.get::<_, i64>(6)? as u64,
                mtime: r.get(7)?,
                class: r.get(8)?,
                rule: r.get(9)?,
                reason: r.get(10)?,
                trigger: r.get(11)?,
            })
        })
        .map_err(self.err())?
        .collect::<rusqlite::Result<_>>()
        .map_err(self.err())
    }

    /// Settles intents in one transaction: the files in `gone` are forgotten, `records`
    /// appended to the audit trail, and every intent in `settled` dropped.
    pub fn settle_intents(
        &mut self,
        settled: &[i64],
        gone: &[(i64, PathBuf)],
        records: &[AuditRecord],
    ) -> Result<()> {
        self.write(|tx| {
            record_in(tx, gone, records)?;
            let mut del = tx.prepare_cached("DELETE FROM intents WHERE id = ?1")?;
            for id in settled {
                del.execute([id])?;
            }
            Ok(())
        })
    }

    /// The newest audit records for a path, newest first.
    pub fn history(&self, store: &str, path: &Path, limit: usize) -> Result<Vec<AuditRecord>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT at, store, path, action, outcome, class, rule, reason, trigger, bytes
                 FROM audit WHERE store = ?1 AND path = ?2 ORDER BY at DESC, id DESC LIMIT ?3",
            )
            .map_err(self.err())?;
        st.query_map(params![store, path_bytes(path), limit as i64], |r| {
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
        .map_err(self.err())?
        .collect::<rusqlite::Result<_>>()
        .map_err(self.err())
    }

    /// The newest time the registry holds (of an audit record, a first sight, a lease
    /// taken): a wall clock found behind it at start has gone back.
    pub fn newest_stamp(&self) -> Result<Option<Nanos>> {
        self.conn
            .query_row(
                "SELECT MAX(t) FROM (SELECT MAX(at) AS t FROM audit
                   UNION ALL SELECT MAX(first_seen) FROM entries
                   UNION ALL SELECT MAX(created) FROM leases)",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())
    }

    /// The wall clock moved by `skew` and is now taken as true (at `now`), in one
    /// transaction: leases keep the time they had left (their times move with it), and
    /// first sights stamped ahead of `now` (under a clock that was ahead) become `now`, so
    /// that no file is kept by a stamp no clock will reach soon. Returns (leases moved,
    /// stamps corrected).
    pub fn clock_moved(&mut self, skew: i64, now: Nanos) -> Result<(usize, usize)> {
        self.write(|tx| {
            let leases = match skew {
                0 => 0,
                _ => tx.execute(
                    "UPDATE leases SET created = created + ?1, expires = expires + ?1",
                    [skew],
                )?,
            };
            let stamps = tx.execute(
                "UPDATE entries SET first_seen = ?1 WHERE first_seen > ?1",
                [now],
            )?;
            Ok((leases, stamps))
        })
    }

    /// Drops audit records older than `before`, and the oldest beyond `max` records.
    pub fn prune_audit(&mut self, before: Nanos, max: u64) -> Result<usize> {
        let old = self
            .conn
            .execute("DELETE FROM audit WHERE at < ?1", [before])
            .map_err(self.err())?;
        let over = self
            .conn
            .execute(
                // Ids only grow and records only go oldest first, so the newest `max` are
                // those above MAX(id) - max: two index look-ups, not a count.
                "DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?1",
                [max as i64],
            )
            .map_err(self.err())?;
        // Servers' facts about files no longer in the registry, a day after they were said
        // (here, with the audit's pruning, not on every hook).
        self.conn
            .execute(
                "DELETE FROM facts WHERE at < ?1 AND NOT EXISTS
                   (SELECT 1 FROM entries e WHERE e.store_id = facts.store_id AND e.path = facts.path)",
                [before.min(crate::clock::system_now().saturating_sub(86_400_000_000_000))],
            )
            .map_err(self.err())?;
        Ok(old + over)
    }
}
