//! Keeping the registry in step with the stores: full scans (local stores walked, S3
//! stores listed) and the watcher's batches of changed paths, with what each batch means
//! for the schedule.

use super::*;

impl Engine {
    /// Full reconciliation of every store.
    pub fn scan_all(&self) -> Result<Vec<ScanStats>> {
        let mut out = self.scan_local()?;
        out.extend(self.scan_remotes());
        Ok(out)
    }

    /// Full reconciliation of the local stores (no network: the daemon's loop waits for it).
    pub fn scan_local(&self) -> Result<Vec<ScanStats>> {
        // Serialized with passes and reloads: a scan classifying with the old config must
        // not write its labels after a reload re-classified everything.
        let pass = self.pass.lock().expect("pass lock");
        let rt = self.runtime();
        let now = self.now();
        let mut out = Vec::new();
        for s in &rt.stores {
            // A root unmounted since the store was opened leads to another directory: it
            // is looked at again (check_roots) before anything is indexed from it.
            if s.root_moved() {
                self.roots_changed
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                continue;
            }
            self.progress
                .start(format!("scanning {}", s.name()), None, false);
            let mut st = scan::scan_store(
                s.name(),
                s.root(),
                &self.registry,
                &rt.classifier,
                now,
                &self.progress,
                &|| !s.root_moved(),
            )?;
            self.add_prune_candidates(&rt, s.name(), std::mem::take(&mut st.empty_dirs));
            out.push(st);
        }
        drop(pass);
        let names: Vec<&str> = rt
            .stores
            .iter()
            .map(|s| s.name())
            .chain(rt.remotes.iter().map(|r| r.name()))
            // A store whose root is missing is still configured: nothing of it is forgotten.
            .chain(rt.missing.iter().map(|m| m.store.as_str()))
            .collect();
        self.reg().forget_stores_except(&names)?;
        let mut a = self.activity.lock().expect("activity lock");
        a.last_scan_at = Some(self.now());
        // The remote stores' last listings stay until they are listed again.
        a.last_scan.retain(|s| {
            rt.store(&s.store).is_none() && rt.remotes.iter().any(|r| r.name() == s.store)
        });
        a.last_scan.splice(0..0, out.iter().cloned());
        Ok(out)
    }

    /// Lists every S3 store into the registry. Listings wait on the network (a server that
    /// is down: retry_timeout): never under the pass lock, which a disk-pressure pass must
    /// always get quickly, and in the daemon never in its main loop. A label written with a
    /// config replaced meanwhile never decides anything: each deletion derives its class
    /// again from the running config.
    pub fn scan_remotes(&self) -> Vec<ScanStats> {
        let rt = self.runtime();
        if rt.remotes.is_empty() {
            return Vec::new();
        }
        let now = self.now();
        let _remote = self.remote_pass.lock().expect("remote pass lock");
        let out: Vec<ScanStats> = rt
            .remotes
            .iter()
            .map(|r| self.scan_remote(&rt, r, now))
            .collect();
        let mut a = self.activity.lock().expect("activity lock");
        a.last_scan
            .retain(|s| !out.iter().any(|o| o.store == s.store));
        a.last_scan.extend(out.iter().cloned());
        out
    }

    /// Applies watched changes: each path is looked at again (no-follow) and recorded or
    /// forgotten; a new directory is walked. One transaction per store.
    pub fn apply_changes(&self, changes: &[crate::watch::Change]) -> Result<ChangeEffect> {
        let rt = self.runtime();
        let now = self.now();
        let mut by_store: std::collections::BTreeMap<&str, std::collections::BTreeSet<&Path>> =
            Default::default();
        for (s, p) in changes {
            by_store.entry(s).or_default().insert(p);
        }
        let mut effect = ChangeEffect::default();
        for (store, paths) in by_store {
            let Some(local) = rt.store(store) else {
                continue;
            };
            let class_of = |p: &Path| rt.classifier.classify(store, p).map(str::to_string);
            let (mut seen, mut gone) = (Vec::new(), Vec::new());
            for rel in paths {
                match local.stat(rel)? {
                    Some(meta) => seen.push(meta),
                    None if std::fs::symlink_metadata(local.root().join(rel))
                        .is_ok_and(|m| m.is_dir()) =>
                    {
                        scan::walk(local.root(), rel, |b| seen.extend(b), &mut Vec::new());
                    }
                    None => gone.push(rel.to_path_buf()),
                }
            }
            effect.paths += seen.len() + gone.len();
            for f in &seen {
                let Some(class) = rt
                    .classifier
                    .classify(store, &f.path)
                    .and_then(|c| rt.config.class(c))
                else {
                    continue;
                };
                // A file growing in place moves a size budget slowly (gc_interval covers it);
                // a new file can push a class past its budget now, and so can one whose
                // mtime was set back (`touch -d`, a copy keeping times): it may now be the
                // oldest, and no longer quiet.
                if (class.max_count.is_some() || class.max_total.is_some()) && !effect.budget {
                    effect.budget = self
                        .reg()
                        .mtime_of(store, &f.path)?
                        .is_none_or(|old| f.mtime < old);
                }
                if let Some((_, limit)) = policy::time_limit(class) {
                    // A file first seen now is due `limit` from now; one seen before was
                    // already counted by the last plan's next_due.
                    let age_ref = match class.age_from {
                        AgeFrom::Mtime => f.mtime,
                        AgeFrom::FirstSeen => now,
                    };
                    let due = age_ref.saturating_add(limit.as_nanos_i64());
                    effect.due = Some(effect.due.map_or(due, |d: Nanos| d.min(due)));
                }
            }
            let mut reg = self.reg();
            reg.upsert(store, &seen, now, &class_of)?;
            reg.forget(store, &gone)?;
            drop(reg);
            // A new playlist must protect its segments from the next chunk on: a segment
            // it lists may arrive in the same burst.
            let m3u8 = |p: &Path| p.extension().is_some_and(|x| x == "m3u8" || x == "mpd");
            if seen.iter().any(|f| m3u8(&f.path)) {
                self.inuse.playlist_changed();
            }
        }
        Ok(effect)
    }
}

/// What a batch of watched changes means for the schedule: arrivals only make a pass
/// necessary when they fall due or push a class past a budget.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChangeEffect {
    /// Paths looked at.
    pub paths: usize,
    /// The earliest time a changed file becomes due by its class's time rule.
    pub due: Option<Nanos>,
    /// A new file arrived in a class with a count or size budget.
    pub budget: bool,
}
