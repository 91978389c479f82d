//! Reading entries: one entry, paths by name, a class's entries in age order or by
//! window (the planner's input), censuses and per-class totals. Every query says beside
//! it which index it reads.

use super::*;

impl Registry {
    /// The entry at `path` of `store`, with its tags.
    pub fn get(&mut self, store: &str, path: &Path) -> Result<Option<Entry>> {
        let sid = self.store_id(store)?;
        let sql = format!(
            "SELECT {ENTRY_COLS} FROM {ENTRY_FROM}
             WHERE e.store_id = ?1 AND e.path = ?2"
        );
        let mut entry = self
            .conn
            .query_row(&sql, params![sid, path_bytes(path)], row_entry)
            .optional()
            .map_err(self.err())?;
        if let Some(en) = entry.as_mut() {
            let mut st = self
                .conn
                .prepare_cached("SELECT tag FROM tags WHERE entry_id = ?1 ORDER BY tag")
                .map_err(self.err())?;
            en.tags = st
                .query_map([en.id], |r| r.get(0))
                .map_err(self.err())?
                .collect::<rusqlite::Result<_>>()
                .map_err(self.err())?;
        }
        Ok(entry)
    }

    /// The paths of `store` ending in `suffix` (e.g. every `.m3u8` playlist).
    pub fn paths_ending(&mut self, store: &str, suffix: &str) -> Result<Vec<PathBuf>> {
        let sid = self.store_id(store)?;
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path FROM entries WHERE store_id = ?1 AND substr(path, -?2) = ?3",
            )
            .map_err(self.err())?;
        st.query_map(params![sid, suffix.len() as i64, suffix.as_bytes()], |r| {
            r.get(0).map(bytes_path)
        })
        .map_err(self.err())?
        .collect::<rusqlite::Result<_>>()
        .map_err(self.err())
    }

    /// The paths of `store` ending in `a` or `b` (the HLS playlists and DASH manifests), in
    /// one walk of the store's entries rather than two.
    pub fn paths_ending_either(&mut self, store: &str, a: &str, b: &str) -> Result<Vec<PathBuf>> {
        let sid = self.store_id(store)?;
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT path FROM entries WHERE store_id = ?1 \
                 AND (substr(path, -?2) = ?3 OR substr(path, -?4) = ?5)",
            )
            .map_err(self.err())?;
        let args = params![
            sid,
            a.len() as i64,
            a.as_bytes(),
            b.len() as i64,
            b.as_bytes()
        ];
        st.query_map(args, |r| r.get(0).map(bytes_path))
            .map_err(self.err())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.err())
    }

    /// Every path of `store` (for expanding an operator's glob).
    pub fn paths(&mut self, store: &str) -> Result<Vec<PathBuf>> {
        let sid = self.store_id(store)?;
        let mut st = self
            .conn
            .prepare_cached("SELECT path FROM entries WHERE store_id = ?1 ORDER BY path")
            .map_err(self.err())?;
        st.query_map(params![sid], |r| r.get(0).map(bytes_path))
            .map_err(self.err())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.err())
    }

    /// The recorded mtime of `path` in `store`, if it is known.
    pub fn mtime_of(&mut self, store: &str, path: &Path) -> Result<Option<Nanos>> {
        let sid = self.store_id(store)?;
        let mut st = self
            .conn
            .prepare_cached("SELECT mtime FROM entries WHERE store_id = ?1 AND path = ?2")
            .map_err(self.err())?;
        st.query_row(params![sid, path_bytes(path)], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    /// Calls `f` on every entry of `class` in `store`, newest first by `age_from`
    /// (ties broken by path, so the order is deterministic).
    pub fn for_each_in_class(
        &self,
        store: &str,
        class: &str,
        age_from: AgeFrom,
        mut f: impl FnMut(Entry),
    ) -> Result<()> {
        let col = match age_from {
            AgeFrom::Mtime => "e.mtime",
            AgeFrom::FirstSeen => "e.first_seen",
        };
        let sql = format!(
            "SELECT {ENTRY_COLS} FROM {ENTRY_FROM}
             WHERE e.class = ?1 AND s.name = ?2 ORDER BY {col} DESC, e.path DESC"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let mut rows = st.query(params![class, store]).map_err(self.err())?;
        while let Some(r) = rows.next().map_err(self.err())? {
            f(row_entry(r).map_err(self.err())?);
        }
        Ok(())
    }

    /// The entries of `class` in `store` in `window` ([`crate::policy::Window`]: all of
    /// them newest first by `age_from`, or by mtime those at or before a time, newest
    /// first, or after one, oldest first until `f` returns false). The windows walk
    /// `entries_class_mtime` from where they start, so a window costs its own rows.
    pub fn for_each_in_window(
        &self,
        store: &str,
        class: &str,
        age_from: AgeFrom,
        window: crate::policy::Window,
        mut f: impl FnMut(Entry) -> bool,
    ) -> Result<()> {
        use crate::policy::Window;
        let (cond, order, at) = match window {
            Window::All => {
                return self.for_each_in_class(store, class, age_from, |e| {
                    f(e);
                });
            }
            Window::Upto(t) => ("e.mtime <= ?3", "e.mtime DESC, e.path DESC", t),
            Window::After(t) => ("e.mtime > ?3", "e.mtime", t),
        };
        let sql = format!(
            "SELECT {ENTRY_COLS} FROM {ENTRY_FROM}
             WHERE e.class = ?1 AND e.store_id = (SELECT id FROM stores WHERE name = ?2) AND {cond}
             ORDER BY {order}"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let mut rows = st.query(params![class, store, at]).map_err(self.err())?;
        while let Some(r) = rows.next().map_err(self.err())? {
            if !f(row_entry(r).map_err(self.err())?) {
                break;
            }
        }
        Ok(())
    }

    /// The entries of `class` in `store` counted: files, bytes and retained files (the
    /// planner's [`crate::policy::Census`]). The count and sum read the covering index
    /// `(class, store_id, size)`, never the table; the retained ones go by the pins.
    pub fn class_census(&self, store: &str, class: &str) -> Result<crate::policy::Census> {
        let (files, bytes) = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries
                 WHERE class = ?1 AND store_id = (SELECT id FROM stores WHERE name = ?2)",
            )
            .and_then(|mut st| {
                st.query_row(params![class, store], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                })
            })
            .map_err(self.err())?;
        let retained = self
            .conn
            .prepare_cached(
                // CROSS JOIN: the pins lead (a few), each entry looked up by its key —
                // not every entry of the class looked up in the pins.
                "SELECT COUNT(*) FROM pins p CROSS JOIN entries e ON e.store_id = p.store_id AND e.path = p.path
                 WHERE e.class = ?1 AND p.store_id = (SELECT id FROM stores WHERE name = ?2)",
            )
            .and_then(|mut st| st.query_row(params![class, store], |r| r.get::<_, i64>(0)))
            .map_err(self.err())? as u64;
        Ok(crate::policy::Census {
            files,
            bytes,
            retained,
        })
    }

    /// Up to `limit` unpinned entries of `class` in `store` whose age reference lies in
    /// `[lo, hi)` (with `copied`, only those with a verified remote copy), oldest first (ties
    /// by id), after the cursor `after` = (age ref, id).
    #[allow(clippy::too_many_arguments)]
    pub fn oldest(
        &self,
        store: &str,
        class: &str,
        age_from: AgeFrom,
        (lo, hi): (Nanos, Nanos),
        copied: bool,
        after: Option<(Nanos, i64)>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let col = match age_from {
            AgeFrom::Mtime => "e.mtime",
            AgeFrom::FirstSeen => "e.first_seen",
        };
        let sql = format!(
            "SELECT {ENTRY_COLS} FROM {ENTRY_FROM}
             WHERE e.class = ?1 AND e.store_id = (SELECT id FROM stores WHERE name = ?2)
               AND {col} >= ?3 AND {col} < ?4 AND ({col}, e.id) > (?5, ?6)
               AND p.store_id IS NULL AND (?8 = 0 OR copy IS NOT NULL)
             ORDER BY {col}, e.id LIMIT ?7"
        );
        let (ca, ci) = after.unwrap_or((i64::MIN, i64::MIN));
        let mut st = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = st
            .query_map(
                params![class, store, lo, hi, ca, ci, limit as i64, copied as i64],
                row_entry,
            )
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// (bytes of classified entries, of those the pinned ones) in `store`.
    pub fn census(&self, store: &str) -> Result<(u64, u64)> {
        self.conn
            .query_row(
                &format!(
                    "SELECT COALESCE(SUM(e.size), 0),
                            COALESCE(SUM(CASE WHEN p.store_id IS NOT NULL THEN e.size END), 0)
                     FROM {ENTRY_FROM} WHERE s.name = ?1 AND e.class IS NOT NULL"
                ),
                params![store],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.err())
    }

    /// Entries for `ls`, ordered by store and path.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Entry>> {
        let sql = format!(
            "SELECT {ENTRY_COLS}, (SELECT group_concat(tag, char(10)) FROM tags t WHERE t.entry_id = e.id)
             FROM {ENTRY_FROM}
             WHERE (?1 IS NULL OR e.class = ?1) AND (?2 = 0 OR p.store_id IS NOT NULL)
               AND (?4 IS NULL OR EXISTS (SELECT 1 FROM tags t WHERE t.entry_id = e.id AND t.tag = ?4))
             ORDER BY s.name, e.path LIMIT ?3"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let limit = filter.limit.map(|l| l as i64).unwrap_or(-1);
        st.query_map(
            params![filter.class, filter.retained as i64, limit, filter.tag],
            |r| {
                let mut e = row_entry(r)?;
                let tags: Option<String> = r.get(11)?;
                e.tags = tags
                    .map(|t| t.split('\n').map(str::to_string).collect())
                    .unwrap_or_default();
                e.tags.sort();
                Ok(e)
            },
        )
        .map_err(self.err())?
        .collect::<rusqlite::Result<_>>()
        .map_err(self.err())
    }

    /// Totals per store and class.
    pub fn totals(&self) -> Result<Vec<ClassTotals>> {
        totals_on(&self.conn).map_err(self.err())
    }

    /// The per-class totals read on a connection of its own (read-only; the database is in
    /// WAL mode, so this reader neither waits for the daemon's writes nor holds them up,
    /// and nobody waits on the registry's mutex while the grouped query runs).
    pub fn totals_apart(path: &Path) -> Result<Vec<ClassTotals>> {
        let conn = connect_apart(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        totals_on(&conn).map_err(|source| RegistryError::Sqlite {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The per-class totals: files and bytes by one grouped walk of the covering index
/// `(class, store_id, size)` (the table is never read: 0.15 s for 1M entries, where one
/// grouped query joining the pins and the store names to every row took 4 s of CPU), and
/// the retained ones by the pins (a few).
fn totals_on(conn: &Connection) -> rusqlite::Result<Vec<ClassTotals>> {
    let names: HashMap<i64, String> = conn
        .prepare("SELECT id, name FROM stores")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut by: std::collections::BTreeMap<(String, Option<String>), ClassTotals> =
        Default::default();
    fn put<'m>(
        by: &'m mut std::collections::BTreeMap<(String, Option<String>), ClassTotals>,
        names: &HashMap<i64, String>,
        store_id: i64,
        class: Option<String>,
    ) -> &'m mut ClassTotals {
        let store = names.get(&store_id).cloned().unwrap_or_default();
        by.entry((store.clone(), class.clone()))
            .or_insert_with(|| ClassTotals {
                class,
                store,
                files: 0,
                bytes: 0,
                retained: 0,
                retained_bytes: 0,
            })
    }
    let mut st = conn.prepare(
        "SELECT store_id, class, COUNT(*), COALESCE(SUM(size), 0) FROM entries
         GROUP BY class, store_id",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let t = put(&mut by, &names, r.get(0)?, r.get(1)?);
        t.files = r.get::<_, i64>(2)? as u64;
        t.bytes = r.get::<_, i64>(3)? as u64;
    }
    let mut st = conn.prepare(
        "SELECT e.store_id, e.class, COUNT(*), COALESCE(SUM(e.size), 0)
         FROM pins p CROSS JOIN entries e ON e.store_id = p.store_id AND e.path = p.path
         GROUP BY e.store_id, e.class",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let t = put(&mut by, &names, r.get(0)?, r.get(1)?);
        t.retained = r.get::<_, i64>(2)? as u64;
        t.retained_bytes = r.get::<_, i64>(3)? as u64;
    }
    // Ordered by store name, then class (NULL first), as the one query was.
    Ok(by.into_values().collect())
}
