//! A full scan's reconciliation of one local store with its entries: new files inserted,
//! changed ones updated, unchanged ones only noted (their ids, in memory), and at the end
//! what the walk did not see forgotten.
//!
//! Why unchanged files are not written: a rescan finds nearly every file unchanged, and
//! writing each one's generation dirtied every page of the table (375 M instructions and a
//! WAL frame per page for 20k unchanged files). Here 32 files are looked up by one
//! read-only statement, and the sweep forgets an entry only if it is neither of this
//! generation (written by this scan or by a watched change meanwhile) nor noted unchanged.
//! The watcher's own upserts ([`Registry::upsert`]) still write the generation: a file it
//! records during a scan must not be forgotten by that scan's sweep.

use super::*;

/// New files inserted by one statement of a scan.
const CHUNK: usize = INSERT_CHUNK;

/// Rows of a range read that match no file of the batch before the read is given up and
/// started again at the next file (a seek): a batch whose paths interleave with many
/// entries it does not hold costs at most this many wasted rows per file.
const MAX_MISSES: usize = 64;

/// One full scan of one store in progress: its generation, whether the store was empty
/// when it began, and the entries it found unchanged.
#[derive(Debug)]
pub struct StoreScan {
    sid: i64,
    generation: i64,
    /// The store had no entries when the scan began: nothing can be gone at its end.
    fresh: bool,
    /// Ids of the entries found unchanged (not written); sorted before they are searched.
    unchanged: Vec<i64>,
    /// The last chunk was all new files: the next is tried as one insert first.
    new_first: bool,
}

impl StoreScan {
    /// The scan's generation (what its new and changed entries are marked with).
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// Whether the store had no entries when the scan began.
    pub fn fresh(&self) -> bool {
        self.fresh
    }

    fn settle(&mut self) {
        self.unchanged.sort_unstable();
        self.unchanged.dedup();
    }

    /// Whether entry `id`, not marked with this generation, was seen by the scan.
    fn saw(&self, id: i64) -> bool {
        self.unchanged.binary_search(&id).is_ok()
    }
}

/// What the registry holds of one file of a chunk.
struct Known {
    id: i64,
    unchanged: bool,
}

impl Registry {
    /// Starts a full scan of local store `store` (a new generation).
    pub fn begin_store_scan(&mut self, store: &str) -> Result<StoreScan> {
        let sid = self.store_id(store)?;
        let any: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM entries WHERE store_id = ?1)",
                [sid],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(StoreScan {
            sid,
            generation: self.begin_scan(),
            fresh: !any,
            unchanged: Vec::new(),
            new_first: !any,
        })
    }

    /// Records a batch of the scan's files (`classes[i]` is `files[i]`'s class), in one
    /// transaction. Sorted batches (by path bytes) touch the index in order.
    pub fn record_scanned(
        &mut self,
        scan: &mut StoreScan,
        files: &[FileMeta],
        classes: &[Option<String>],
        now: Nanos,
    ) -> Result<()> {
        assert_eq!(files.len(), classes.len(), "one class per file");
        // Foreign keys unchecked, as for upsert_classified (a checked multi-row INSERT
        // journals its pages to a temporary file).
        self.conn
            .execute_batch("PRAGMA foreign_keys = OFF")
            .map_err(self.err())?;
        let done = self.write(|tx| record_in_chunks(tx, scan, files, classes, now));
        self.conn
            .execute_batch("PRAGMA foreign_keys = ON")
            .map_err(self.err())?;
        done
    }

    /// After a complete walk: forgets the store's entries that the scan did not see. A
    /// store that was empty when the scan began has nothing to forget (not even read).
    pub fn sweep_scanned(&mut self, scan: &mut StoreScan) -> Result<usize> {
        if scan.fresh {
            return Ok(0);
        }
        scan.settle();
        let scan = &*scan;
        self.write(|tx| {
            // Ids read and deleted in one transaction: none can be freed and reused between.
            let gone = gone_ids(tx, scan)?;
            // One statement per entry: a multi-row DELETE fires hashes_entry_gone and
            // the cascade into tags, and would journal every page it changes.
            let mut del = tx.prepare_cached("DELETE FROM entries WHERE id = ?1")?;
            for id in &gone {
                del.execute([id])?;
            }
            Ok(gone.len())
        })
    }

    /// After a partial walk: the entries of the store that the scan did not see, at most
    /// `limit`.
    pub fn unseen_scanned(
        &mut self,
        scan: &mut StoreScan,
        limit: usize,
    ) -> Result<Vec<(i64, PathBuf)>> {
        scan.settle();
        let mut st = self
            .conn
            .prepare_cached("SELECT id, path FROM entries WHERE store_id = ?1 AND seen_gen < ?2")
            .map_err(self.err())?;
        let mut rows = st
            .query(params![scan.sid, scan.generation])
            .map_err(self.err())?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(r) = rows.next().map_err(self.err())? else {
                break;
            };
            let id = r.get(0).map_err(self.err())?;
            if !scan.saw(id) {
                out.push((id, bytes_path(r.get(1).map_err(self.err())?)));
            }
        }
        Ok(out)
    }
}

/// The ids of the store's entries that the scan neither marked nor found unchanged.
///
/// The unchanged ids come in long runs (a directory's files were inserted together, in
/// the order the walk visits them again), so only the rowid ranges between runs are read:
/// an unchanged store costs a few seeks, not a row per entry. Ids scattered too finely
/// (more than one run per 16 ids) are checked by reading the whole table once instead.
fn gone_ids(tx: &rusqlite::Transaction<'_>, scan: &StoreScan) -> rusqlite::Result<Vec<i64>> {
    let ids = &scan.unchanged;
    // The inclusive id ranges between runs of consecutive unchanged ids.
    let mut gaps: Vec<(i64, i64)> = Vec::new();
    let mut from = Some(i64::MIN);
    for (k, &id) in ids.iter().enumerate() {
        // Sorted and distinct: ids[k - 1] < id, so its + 1 cannot overflow.
        if (k == 0 || id != ids[k - 1] + 1)
            && let Some(from) = from.filter(|&f| f < id)
        {
            gaps.push((from, id - 1));
        }
        from = id.checked_add(1);
    }
    if let Some(from) = from {
        gaps.push((from, i64::MAX));
    }
    let mut gone = Vec::new();
    if gaps.len() > ids.len() / 16 + 16 {
        // The whole table in rowid order, not the store's range of the path index with a
        // seek into the table per entry.
        let mut st = tx.prepare_cached(
            "SELECT id FROM entries NOT INDEXED WHERE store_id = ?1 AND seen_gen < ?2",
        )?;
        let mut rows = st.query(params![scan.sid, scan.generation])?;
        while let Some(r) = rows.next()? {
            let id = r.get(0)?;
            if !scan.saw(id) {
                gone.push(id);
            }
        }
        return Ok(gone);
    }
    // `+store_id`: by the rowid range, not the store's whole range of the path index.
    let mut st = tx.prepare_cached(
        "SELECT id FROM entries
         WHERE id BETWEEN ?1 AND ?2 AND +store_id = ?3 AND seen_gen < ?4",
    )?;
    for (lo, hi) in gaps {
        let mut rows = st.query(params![lo, hi, scan.sid, scan.generation])?;
        while let Some(r) = rows.next()? {
            gone.push(r.get(0)?);
        }
    }
    Ok(gone)
}

/// [`Registry::record_scanned`]'s transaction.
fn record_in_chunks(
    tx: &rusqlite::Transaction<'_>,
    scan: &mut StoreScan,
    files: &[FileMeta],
    classes: &[Option<String>],
    now: Nanos,
) -> rusqlite::Result<()> {
    let (sid, generation) = (scan.sid, scan.generation);
    let mut many = tx.prepare_cached(&INSERT_MANY)?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO entries(store_id, path, size, mtime, ino, first_seen, class, seen_gen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(store_id, path) DO NOTHING",
    )?;
    let mut changed = tx.prepare_cached(
        "UPDATE entries SET
           first_seen = CASE WHEN ino = ?5 THEN first_seen ELSE ?6 END,
           size = ?3, mtime = ?4, ino = ?5, class = ?7, seen_gen = ?8
         WHERE store_id = ?1 AND path = ?2",
    )?;
    // New files, CHUNK to a statement: SQLite's per-statement work (cursors opened and
    // closed, the halt) once per chunk, not per file.
    let mut insert_many = |files: &[FileMeta], classes: &[Option<String>]| {
        let vals = insert_values(sid, files, classes, now, generation);
        many.execute(rusqlite::params_from_iter(&vals))
    };
    let mut from = 0;
    // A first index (the store was empty): every chunk inserted at once, until one
    // holds a file known already (one a watched change recorded meanwhile).
    while scan.new_first && from + CHUNK <= files.len() {
        let end = from + CHUNK;
        if insert_many(&files[from..end], &classes[from..end])? < CHUNK {
            // The chunk is looked up below with the rest (those just inserted are
            // found unchanged).
            scan.new_first = false;
            break;
        }
        from = end;
    }
    let (files, classes) = (&files[from..], &classes[from..]);
    if files.is_empty() {
        return Ok(());
    }
    let known = look_up(tx, sid, files, classes)?;
    let mut at = 0;
    for (files, known) in files.chunks(CHUNK).zip(known.chunks(CHUNK)) {
        let classes = &classes[at..at + files.len()];
        at += files.len();
        let new = known.iter().all(Option::is_none);
        if new && files.len() == CHUNK {
            insert_many(files, classes)?;
            continue;
        }
        for ((f, class), k) in files.iter().zip(classes).zip(known) {
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
            match k {
                Some(k) if k.unchanged => scan.unchanged.push(k.id),
                // Only a file that changed fires hashes_entry_changed.
                Some(_) => drop(changed.execute(row)?),
                None => drop(insert.execute(row)?),
            }
        }
    }
    // A batch that ended in new files (a new directory, or a first index that met one
    // known file) tries its next chunks as inserts first.
    scan.new_first = known.iter().rev().take(CHUNK).all(Option::is_none);
    Ok(())
}

/// What the registry holds of each of `files` (None: not known), read by a merge of the
/// batch in path order with the (store_id, path) index: one range read for the batch,
/// started again (a seek) only where the index holds more than [`MAX_MISSES`] entries
/// between two of its files — no statement per file.
fn look_up(
    tx: &rusqlite::Transaction<'_>,
    sid: i64,
    files: &[FileMeta],
    classes: &[Option<String>],
) -> rusqlite::Result<Vec<Option<Known>>> {
    let mut known: Vec<Option<Known>> = Vec::with_capacity(files.len());
    known.resize_with(files.len(), || None);
    // The scan's batches come sorted by bytes; any other caller's are sorted here.
    let mut order: Vec<usize> = (0..files.len()).collect();
    let bytes = |i: usize| path_bytes(&files[i].path);
    if !files.is_sorted_by(|a, b| path_bytes(&a.path) < path_bytes(&b.path)) {
        order.sort_unstable_by(|&a, &b| bytes(a).cmp(bytes(b)));
    }
    let last = bytes(*order.last().expect("not empty"));
    let mut range = tx.prepare_cached(
        "SELECT id, path, size, mtime, ino, class FROM entries
         WHERE store_id = ?1 AND path >= ?2 AND path <= ?3 ORDER BY path",
    )?;
    let mut next = 0;
    while next < order.len() {
        range.raw_bind_parameter(1, sid)?;
        range.raw_bind_parameter(2, bytes(order[next]))?;
        range.raw_bind_parameter(3, last)?;
        let mut rows = range.raw_query();
        let mut misses = 0;
        let mut ended = true;
        while let Some(r) = rows.next()? {
            let path = r.get_ref(1)?.as_blob()?;
            // Files before this row are not in the registry.
            while next < order.len() && bytes(order[next]) < path {
                next += 1;
            }
            let Some(&i) = order.get(next).filter(|&&i| bytes(i) == path) else {
                misses += 1;
                if misses > MAX_MISSES {
                    ended = false;
                    break;
                }
                continue;
            };
            misses = 0;
            next += 1;
            let f = &files[i];
            let class = match r.get_ref(5)? {
                rusqlite::types::ValueRef::Null => None,
                v => Some(v.as_str()?),
            };
            known[i] = Some(Known {
                id: r.get(0)?,
                unchanged: r.get::<_, i64>(2)? == f.size as i64
                    && r.get::<_, i64>(3)? == f.mtime
                    && r.get::<_, i64>(4)? == f.ino as i64
                    && class == classes[i].as_deref(),
            });
        }
        if ended {
            break;
        }
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(p: &str, size: u64) -> FileMeta {
        FileMeta {
            ino: 1,
            path: p.into(),
            size,
            mtime: 1,
        }
    }

    fn x() -> Option<String> {
        Some("x".into())
    }

    fn seen_gen(r: &Registry, p: &str) -> i64 {
        r.conn
            .query_row(
                "SELECT seen_gen FROM entries WHERE path = ?1",
                [p.as_bytes()],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn scan(r: &mut Registry, files: &[FileMeta], now: Nanos) -> (StoreScan, usize) {
        let mut s = r.begin_store_scan("m").unwrap();
        let classes = vec![x(); files.len()];
        r.record_scanned(&mut s, files, &classes, now).unwrap();
        let gone = r.sweep_scanned(&mut s).unwrap();
        (s, gone)
    }

    fn count(r: &Registry) -> i64 {
        r.conn
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .unwrap()
    }

    /// A rescan writes new and changed files only; the unchanged keep their old generation
    /// (not written) and are not forgotten; what it did not see is.
    #[test]
    fn a_rescan_writes_only_what_changed_and_forgets_what_it_did_not_see() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let n = 3 * CHUNK + 7;
        let files: Vec<FileMeta> = (0..n).map(|i| meta(&format!("f{i:04}"), 1)).collect();
        let (first, gone) = scan(&mut r, &files, 100);
        assert!(first.fresh());
        assert_eq!((gone, count(&r)), (0, n as i64));

        // f0000 changed size, f0001 changed class, f0002..f0009 gone, two new files, the
        // rest unchanged; given out of order.
        let mut again: Vec<FileMeta> = files[10..].to_vec();
        again.push(meta("f0000", 2));
        again.push(meta("f0001", 1));
        again.push(meta("a-new", 1));
        again.push(meta("z-new", 1));
        again.reverse();
        let mut classes = vec![x(); again.len()];
        let f1 = again.iter().position(|f| f.path == Path::new("f0001"));
        classes[f1.unwrap()] = Some("y".into());
        let mut s = r.begin_store_scan("m").unwrap();
        assert!(!s.fresh());
        r.record_scanned(&mut s, &again, &classes, 200).unwrap();
        assert_eq!(r.sweep_scanned(&mut s).unwrap(), 8, "f0002..f0009");
        assert_eq!(count(&r), (n - 8 + 2) as i64);
        let g = s.generation();
        assert_eq!(
            seen_gen(&r, "f0050"),
            first.generation(),
            "unchanged: not written"
        );
        for p in ["f0000", "f0001", "a-new", "z-new"] {
            assert_eq!(seen_gen(&r, p), g, "{p}");
        }
        let e = r.get("m", Path::new("f0000")).unwrap().unwrap();
        assert_eq!((e.size, e.first_seen), (2, 100));
        let e = r.get("m", Path::new("f0001")).unwrap().unwrap();
        assert_eq!(e.class.as_deref(), Some("y"));
        let e = r.get("m", Path::new("z-new")).unwrap().unwrap();
        assert_eq!(e.first_seen, 200);

        // A third scan that sees everything forgets nothing, though most entries carry the
        // first scan's generation.
        let mut s = r.begin_store_scan("m").unwrap();
        r.record_scanned(&mut s, &again, &classes, 300).unwrap();
        assert_eq!(r.sweep_scanned(&mut s).unwrap(), 0);
        assert_eq!(count(&r), (n - 8 + 2) as i64);
    }

    /// A file the watcher records while the scan runs (after the walk passed its
    /// directory) is not forgotten by that scan's sweep.
    #[test]
    fn a_watched_change_during_a_scan_is_not_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let files = [meta("a", 1), meta("b", 1), meta("w", 1)];
        scan(&mut r, &files, 100);
        let mut s = r.begin_store_scan("m").unwrap();
        r.record_scanned(&mut s, &files[..2], &[x(), x()], 200)
            .unwrap();
        // "w" moved away and back while its directory was walked: the walk missed it,
        // the watcher recorded it (unchanged) during the scan.
        r.upsert("m", &files[2..], 200, &|_| x()).unwrap();
        assert_eq!(r.sweep_scanned(&mut s).unwrap(), 0);
        assert!(r.get("m", Path::new("w")).unwrap().is_some());
    }

    /// Batches whose files lie far apart in the index (the read starts again past
    /// MAX_MISSES other entries), and unchanged ids so scattered that the sweep reads the
    /// whole table: every file is still found, nothing is inserted twice, the rest swept.
    #[test]
    fn sparse_batches_are_found_and_the_rest_swept() {
        for step in [2, 100] {
            let dir = tempfile::tempdir().unwrap();
            let mut r = Registry::open(dir.path()).unwrap();
            let all: Vec<FileMeta> = (0..1000).map(|i| meta(&format!("p{i:04}"), 1)).collect();
            scan(&mut r, &all, 100);
            let some: Vec<FileMeta> = all.iter().step_by(step).cloned().collect();
            let (s, gone) = scan(&mut r, &some, 200);
            assert_eq!(gone, 1000 - some.len(), "step {step}");
            assert_eq!(count(&r), some.len() as i64, "step {step}");
            for f in &some {
                let e = r.get("m", &f.path).unwrap().unwrap();
                assert_eq!(e.first_seen, 100, "{f:?} found, not inserted anew");
            }
            assert!(!s.fresh());
        }
    }

    /// After a partial walk, the unseen entries are exactly those neither written nor
    /// found unchanged.
    #[test]
    fn unseen_after_a_partial_walk_is_what_was_not_seen() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let files: Vec<FileMeta> = (0..100).map(|i| meta(&format!("f{i:03}"), 1)).collect();
        scan(&mut r, &files, 100);
        let mut s = r.begin_store_scan("m").unwrap();
        let mut seen = files[..90].to_vec();
        seen[0].size = 5;
        r.record_scanned(&mut s, &seen, &vec![x(); 90], 200)
            .unwrap();
        let unseen: Vec<PathBuf> = r
            .unseen_scanned(&mut s, 100)
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let want: Vec<PathBuf> = files[90..].iter().map(|f| f.path.clone()).collect();
        assert_eq!(unseen, want);
        assert_eq!(r.unseen_scanned(&mut s, 3).unwrap().len(), 3, "limit");
    }
}
