//! Start-up recovery: what a crash (kill -9, power cut) interrupted is settled from what is
//! on disk, never guessed — files left in a store's trash directory, local deletion intents
//! without an outcome. (S3 deletion intents are settled by the next listing, in remote.rs.)

use super::*;

/// Settles what a crash (kill -9, power cut) interrupted: files left in a store's trash
/// directory and deletion intents without an outcome. A file an intent names that is gone
/// (or is no longer the inode that was checked) is audited as deleted; one still there is
/// dropped from the intents, and the next pass decides about it again.
pub(super) fn reconcile_after_crash(rt: &Runtime, reg: &mut Registry, now: Nanos) -> Result<()> {
    let intents = remote::local_only(rt, reg.intents()?);
    for store in &rt.stores {
        let mut checked = |rel: &Path, st: &rustix::fs::Stat| {
            let mtime = st
                .st_mtime
                .saturating_mul(1_000_000_000)
                .saturating_add(st.st_mtime_nsec as i64);
            intents.iter().any(|i| {
                i.store == store.name()
                    && i.path == rel
                    && i.ino == st.st_ino
                    && i.size == st.st_size as u64
                    && i.mtime == mtime
            })
        };
        match store.recover_trash(&mut checked) {
            Ok(done) => {
                for r in done {
                    match r {
                        Recovered::Deleted(p) => {
                            info!(action = "delete", store = store.name(), path = %crate::spell::show(&p), "removed the checked file an interrupted deletion had moved to the trash")
                        }
                        Recovered::Restored(p) => {
                            info!(action = "restore", store = store.name(), path = %crate::spell::show(&p), "put back a file an interrupted deletion had moved to the trash")
                        }
                        Recovered::Kept(p, name, why) => {
                            warn!(action = "trash", store = store.name(), path = ?p, trash = %name, reason = %why, "a file in the store's trash directory was left there; move it back by hand")
                        }
                    }
                }
            }
            Err(why) => {
                warn!(store = store.name(), reason = %why, "cannot check the store's trash directory")
            }
        }
    }
    if intents.is_empty() {
        return Ok(());
    }
    let (mut settled, mut gone, mut records) = (Vec::new(), Vec::new(), Vec::new());
    for i in intents {
        if rt.missing(&i.store).is_some() {
            // Its root is missing or not mounted: settled when it is back (next start).
            continue;
        }
        let Some(local) = rt.store(&i.store) else {
            // The store left the config: nothing to look at any more.
            settled.push(i.id);
            continue;
        };
        let still_there = match local.stat(&i.path) {
            Ok(m) => m.is_some_and(|m| m.ino == i.ino),
            Err(e) => {
                warn!(store = %i.store, path = %crate::spell::show(&i.path), error = %e, "cannot check a deletion interrupted by a crash; it is checked again at the next start");
                continue;
            }
        };
        settled.push(i.id);
        if still_there {
            continue;
        }
        // The first few one by one; a crash in a bulk pass leaves hundreds: summed up.
        if gone.len() < RECONCILED_SHOWN {
            info!(action = "delete", store = %i.store, path = %crate::spell::show(&i.path), "reconciled a deletion interrupted by a crash");
        } else {
            debug!(action = "delete", store = %i.store, path = %crate::spell::show(&i.path), "reconciled a deletion interrupted by a crash");
        }
        gone.push((i.entry_id, i.path.clone()));
        records.push(AuditRecord {
            at: now,
            store: i.store,
            path: i.path,
            action: "delete".into(),
            outcome: "deleted".into(),
            class: i.class,
            rule: i.rule,
            reason: format!(
                "{}; reconciled after a crash: gone at the restart, its deletion was under way",
                i.reason
            ),
            trigger: i.trigger,
            bytes: Some(i.size),
        });
    }
    if gone.len() > RECONCILED_SHOWN {
        info!(
            action = "reconcile",
            files = gone.len(),
            "reconciled {} deletions interrupted by a crash (the first {RECONCILED_SHOWN} named above; every one is in the audit: mediaretain history)",
            gone.len()
        );
    }
    reg.settle_intents(&settled, &gone, &records)?;
    Ok(())
}

/// Reconciled deletions named one by one at start; the rest are summed up in one line.
const RECONCILED_SHOWN: usize = 10;
