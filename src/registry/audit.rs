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

/// What `history` asks of the audit: the filters SQL serves (class, outcome and trigger
/// have an index in time order, migration 11; rule walks the time order) and where a page
/// starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// Only records at or after this time.
    pub since: Option<Nanos>,
    /// Only records older than the one with this id (a page's cursor): before it in the
    /// walk's order (time, then id). A cursor whose record was pruned selects nothing: what
    /// was older went before it.
    pub before: Option<i64>,
    /// Only this store.
    pub store: Option<String>,
    /// Only this path exactly (of `store`).
    pub path: Option<PathBuf>,
    /// Only this class.
    pub class: Option<String>,
    /// Only this rule.
    pub rule: Option<String>,
    /// Only this trigger.
    pub trigger: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
}

/// What one walk of the audit cost, by SQLite's own counters of its statement: a walk
/// that an index serves in order has no full-scan steps and no sort.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkCost {
    /// Rows the statement returned to the walker.
    pub rows: u64,
    /// Virtual machine steps (grows with the rows SQLite looked at, matching or not).
    pub vm_steps: i64,
    /// Steps of a full table scan (0: an index or the rowid range served the walk).
    pub fullscan_steps: i64,
    /// Sorts (0: the rows came in index order).
    pub sorts: i64,
}

/// A column `history` may probe for a value ([`Registry::audit_knows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditColumn {
    /// The store (audit_path serves it).
    Store,
    /// The class (audit_class_at).
    Class,
    /// The rule (no index: probed by a walk).
    Rule,
    /// The trigger (audit_trigger_at).
    Trigger,
}

fn audit_sql(q: &AuditQuery, explain: bool) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut conds: Vec<&str> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(t) = q.since {
        conds.push("at >= ?");
        args.push(Value::Integer(t));
    }
    if let Some(id) = q.before {
        conds.push("(at, id) < ((SELECT at FROM audit WHERE id = ?), ?)");
        args.push(Value::Integer(id));
        args.push(Value::Integer(id));
    }
    match (&q.store, &q.path) {
        (Some(s), Some(p)) => {
            conds.push("store = ? AND path = ?");
            args.push(Value::Text(s.clone()));
            args.push(Value::Blob(path_bytes(p).to_vec()));
        }
        // `+`: not by audit_path, which would have to sort the store's every record; the
        // walk in time order stops after a page.
        (Some(s), None) => {
            conds.push("+store = ?");
            args.push(Value::Text(s.clone()));
        }
        _ => {}
    }
    // The partial indexes of migration 11 serve a query whose WHERE names their own
    // condition: it is added when the value asked for satisfies it.
    for (col, v, partial) in [
        ("class = ?", &q.class, None),
        ("rule = ?", &q.rule, None),
        (
            "outcome = ?",
            &q.outcome,
            Some(("deleted", "outcome <> 'deleted'")),
        ),
        (
            "trigger = ?",
            &q.trigger,
            Some(("schedule", "trigger <> 'schedule'")),
        ),
    ] {
        if let Some(v) = v {
            conds.push(col);
            args.push(Value::Text(v.clone()));
            if let Some((usual, cond)) = partial
                && v != usual
            {
                conds.push(cond);
            }
        }
    }
    let mut sql = String::from(if explain { "EXPLAIN QUERY PLAN " } else { "" });
    sql.push_str(
        "SELECT id, at, store, path, action, outcome, class, rule, reason, trigger, bytes FROM audit",
    );
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(" ORDER BY at DESC, id DESC");
    (sql, args)
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, AuditRecord)> {
    Ok((
        r.get(0)?,
        AuditRecord {
            at: r.get(1)?,
            store: r.get(2)?,
            path: bytes_path(r.get(3)?),
            action: r.get(4)?,
            outcome: r.get(5)?,
            class: r.get(6)?,
            rule: r.get(7)?,
            reason: r.get(8)?,
            trigger: r.get(9)?,
            bytes: r.get::<_, Option<i64>>(10)?.map(|b| b as u64),
        },
    ))
}

impl Registry {
    /// Walks the audit of the registry at `path` newest first (time, then id), on a
    /// read-only connection of its own (WAL: the daemon's writes neither wait for it nor
    /// are held up), handing each record that `q` selects, with its id, to `f` until `f`
    /// says stop (false). The walk is in index order: it costs the rows it reads.
    pub fn walk_audit_apart(
        path: &Path,
        q: &AuditQuery,
        f: impl FnMut(i64, AuditRecord) -> bool,
    ) -> Result<WalkCost> {
        let conn = connect_apart(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        walk_audit_on(&conn, q, f).map_err(|source| RegistryError::Sqlite {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Like [`Registry::walk_audit_apart`], on this connection (tests, one-shot tools).
    pub fn walk_audit(
        &self,
        q: &AuditQuery,
        f: impl FnMut(i64, AuditRecord) -> bool,
    ) -> Result<WalkCost> {
        walk_audit_on(&self.conn, q, f).map_err(self.err())
    }

    /// SQLite's plan for the walk of `q` (EXPLAIN QUERY PLAN, one line per step).
    pub fn audit_query_plan(&self, q: &AuditQuery) -> Result<Vec<String>> {
        let (sql, args) = audit_sql(q, true);
        let mut st = self.conn.prepare(&sql).map_err(self.err())?;
        st.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .map_err(self.err())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.err())
    }

    /// Whether any audit record has `value` in `col` (one index probe), on a read-only
    /// connection of its own to the registry at `path`: a class or store no longer
    /// configured still has its history.
    pub fn audit_knows_apart(path: &Path, col: AuditColumn, value: &str) -> Result<bool> {
        let conn = connect_apart(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let sql = match col {
            AuditColumn::Store => "SELECT 1 FROM audit WHERE store = ?1 LIMIT 1",
            AuditColumn::Class => "SELECT 1 FROM audit WHERE class = ?1 LIMIT 1",
            AuditColumn::Rule => "SELECT 1 FROM audit WHERE rule = ?1 LIMIT 1",
            AuditColumn::Trigger => "SELECT 1 FROM audit WHERE trigger = ?1 LIMIT 1",
        };
        conn.query_row(sql, [value], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(|source| RegistryError::Sqlite {
                path: path.to_path_buf(),
                source,
            })
    }
}

fn walk_audit_on(
    conn: &Connection,
    q: &AuditQuery,
    mut f: impl FnMut(i64, AuditRecord) -> bool,
) -> rusqlite::Result<WalkCost> {
    use rusqlite::StatementStatus;
    let (sql, args) = audit_sql(q, false);
    let mut st = conn.prepare(&sql)?;
    let mut cost = WalkCost::default();
    {
        let mut rows = st.query(rusqlite::params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            cost.rows += 1;
            let (id, rec) = audit_row(r)?;
            if !f(id, rec) {
                break;
            }
        }
    }
    cost.vm_steps = st.get_status(StatementStatus::VmStep) as i64;
    cost.fullscan_steps = st.get_status(StatementStatus::FullscanStep) as i64;
    cost.sorts = st.get_status(StatementStatus::Sort) as i64;
    Ok(cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: i64, class: &str, rule: &str, outcome: &str, trigger: &str) -> AuditRecord {
        AuditRecord {
            at: 1_000_000_000 * i,
            store: if i % 7 == 0 { "archive" } else { "media" }.into(),
            path: format!("hls/s{}/seg{i}.ts", i % 10).into(),
            action: "delete".into(),
            outcome: outcome.into(),
            class: Some(class.into()),
            rule: Some(rule.into()),
            reason: "past keep_for".into(),
            trigger: trigger.into(),
            bytes: Some(1000),
        }
    }

    /// 50,000 segment deletions by keep_for, and among them every 5,000th a refusal by
    /// max_total of class rec from the CLI: each filter's page (class, outcome, trigger)
    /// reads its own rows through its index, in order — no full-scan step, no sort, and a
    /// number of VM steps that does not grow with the audit (the old schema had no index
    /// on class, outcome or trigger: the same walk stepped through all 50,000 rows). A
    /// rule walks the audit in time order (no index: every deletion would pay for it).
    #[test]
    fn history_filters_walk_their_index_not_the_audit() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        const N: i64 = 50_000;
        let all: Vec<AuditRecord> = (1..=N)
            .map(|i| match i % 5_000 {
                0 => rec(i, "rec", "max_total", "refused", "cli"),
                _ => rec(i, "hls", "keep_for", "deleted", "schedule"),
            })
            .collect();
        for chunk in all.chunks(5_000) {
            r.record(&[], chunk).unwrap();
        }
        let rare = |q: AuditQuery| {
            let mut got = Vec::new();
            let cost = r
                .walk_audit(&q, |id, rec| {
                    got.push((id, rec));
                    true
                })
                .unwrap();
            let plan = r.audit_query_plan(&q).unwrap().join(" | ");
            (got, cost, plan)
        };
        for (q, index) in [
            (
                AuditQuery {
                    class: Some("rec".into()),
                    ..Default::default()
                },
                "audit_class_at",
            ),
            (
                AuditQuery {
                    outcome: Some("refused".into()),
                    ..Default::default()
                },
                "audit_outcome_at",
            ),
            (
                AuditQuery {
                    trigger: Some("cli".into()),
                    store: Some("media".into()),
                    ..Default::default()
                },
                "audit_trigger_at",
            ),
        ] {
            let (got, cost, plan) = rare(q.clone());
            assert!(plan.contains(index), "{q:?}: plan {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{q:?}: sorts: {plan}");
            assert_eq!(cost.fullscan_steps, 0, "{q:?}: {cost:?}, plan {plan}");
            assert_eq!(cost.sorts, 0, "{q:?}: {cost:?}");
            // 10 rare records (fewer for media only): a few dozen steps each, never 50,000.
            assert!(cost.vm_steps < 1_000, "{q:?}: {cost:?}, plan {plan}");
            assert!(!got.is_empty() && got.len() <= 10, "{q:?}: {}", got.len());
            // Newest first.
            assert!(got.windows(2).all(|w| w[0].1.at > w[1].1.at), "{q:?}");
        }

        // A rule: the same records, in time order, without a sort.
        let (got, cost, plan) = rare(AuditQuery {
            rule: Some("max_total".into()),
            ..Default::default()
        });
        assert_eq!(got.len(), 10, "{plan}");
        assert_eq!(cost.sorts, 0, "{cost:?}, plan {plan}");
        assert!(got.iter().all(|(_, r)| r.outcome == "refused"));

        // The last hour, no filter: audit_at, the hour's rows only.
        let q = AuditQuery {
            since: Some(1_000_000_000 * (N - 3_600)),
            ..Default::default()
        };
        let (got, cost, plan) = rare(q);
        assert_eq!(got.len(), 3_601);
        assert!(plan.contains("audit_at"), "{plan}");
        assert_eq!((cost.fullscan_steps, cost.sorts), (0, 0), "{cost:?}");

        // A page of 100, then the next from its last record's cursor, while 10 newer
        // records arrive: no record twice, none skipped.
        let mut first = Vec::new();
        let q = AuditQuery::default();
        let cost = r
            .walk_audit(&q, |id, rec| {
                first.push((id, rec.at));
                first.len() < 100
            })
            .unwrap();
        assert!(cost.vm_steps < 5_000, "{cost:?}");
        let extra: Vec<AuditRecord> = (N + 1..=N + 10)
            .map(|i| rec(i, "hls", "keep_for", "deleted", "schedule"))
            .collect();
        r.record(&[], &extra).unwrap();
        let (last_id, _) = *first.last().unwrap();
        let mut second = Vec::new();
        let q = AuditQuery {
            before: Some(last_id),
            ..Default::default()
        };
        let cost = r
            .walk_audit(&q, |id, rec| {
                second.push((id, rec.at));
                second.len() < 100
            })
            .unwrap();
        let plan = r.audit_query_plan(&q).unwrap().join(" | ");
        assert_eq!(cost.fullscan_steps, 0, "{cost:?} {plan}");
        assert!(cost.vm_steps < 5_000, "{cost:?} {plan}");
        assert_eq!(second.first().unwrap().0, last_id - 1);
        assert_eq!(first.first().unwrap().0, N);
    }
}
