//! Store roots that are missing or not mounted: an unplugged disk or an NFS share not
//! mounted yet stops nothing but its own store. Such a store is left out of the running
//! config's opened stores (nothing of it indexed, planned, deleted or forgotten), reported
//! (status, a metric, one err line) and looked at again every few seconds; when its root
//! is back the running config is rebuilt with it (docs/missing-roots.md).

use super::*;
use crate::store::local::{RootAbsent, RootFound};

/// The roots of `config`'s local stores as they were when last used.
pub(super) fn last_roots(
    reg: &mut Registry,
    config: &Config,
) -> Result<HashMap<String, RootFound>> {
    let mut out = HashMap::new();
    for s in config.stores.iter().filter(|s| s.is_local()) {
        if let Some(f) = reg.root_of(&s.name)? {
            out.insert(s.name.clone(), f);
        }
    }
    Ok(out)
}

/// Records the roots `rt` opened, so that a later start or check can tell the bare
/// directory of an unmounted filesystem from the store. A write that fails (the state
/// directory's disk is full) stops nothing: what was remembered before stays.
pub(super) fn remember(reg: &mut Registry, rt: &Runtime, now: Nanos) {
    for (store, f) in &rt.found {
        if let Err(e) = reg.remember_root(store, *f, now) {
            warn!(store = %store, error = %e, "cannot record the store's root in the registry");
        }
    }
}

/// Says what changed between `old` (None: at start) and `new`: a store that went missing
/// at err (once: not on every check), one that is back at info.
pub(super) fn log_changes(old: Option<&Runtime>, new: &Runtime) {
    for m in &new.missing {
        if old.and_then(|o| o.missing(&m.store)) == Some(m) {
            continue;
        }
        let (state, why) = match &m.absent {
            RootAbsent::Missing(w) => ("missing", w),
            RootAbsent::NotMounted(w) => ("not mounted", w),
        };
        error!(
            action = "store-root",
            store = %m.store,
            root = %crate::spell::show(&m.root),
            state,
            reason = %why,
            "store {} is {state}: root {} ({why}); its files stay in the registry and nothing in it is indexed or deleted until it is back; the other stores run",
            m.store,
            crate::spell::show(&m.root)
        );
    }
    if let Some(old) = old {
        for m in &old.missing {
            if new.missing(&m.store).is_none() && new.store(&m.store).is_some() {
                info!(action = "store-root", store = %m.store, root = %crate::spell::show(&m.root), "store {} is back: root {}; indexing it", m.store, crate::spell::show(&m.root));
            }
        }
    }
}

impl Engine {
    /// Looks at every local store's root again (cheap: a few `stat`s per store): one that
    /// went missing or was unmounted is left out, one that is back is opened. True when the
    /// running config was rebuilt (the daemon then restarts its watches and rescans).
    pub fn check_roots(&self) -> Result<bool> {
        let rt = self.runtime();
        let flagged = self
            .roots_changed
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        let moved = flagged || rt.stores.iter().any(|s| s.root_moved());
        if !moved && rt.missing.is_empty() {
            return Ok(false);
        }
        let last = last_roots(&mut self.reg(), &rt.config)?;
        let changed = moved
            || rt.missing.iter().any(|m| {
                let s = rt.config.store(&m.store);
                let now = crate::store::local::find_root(
                    &m.root,
                    s.and_then(|s| s.require_mount),
                    last.get(&m.store).copied(),
                );
                now.as_ref().err() != Some(&m.absent)
            });
        if !changed {
            return Ok(false);
        }
        let _pass = self.pass.lock().expect("pass lock");
        // A reload may have swapped the config meanwhile: rebuild from the running one.
        let cur = self.runtime();
        let new = Arc::new(Runtime::new(cur.config.clone(), &last)?);
        log_changes(Some(&cur), &new);
        remember(&mut self.reg(), &new, self.now());
        let rebuilt = new.missing != cur.missing
            || new.stores.len() != cur.stores.len()
            || cur.stores.iter().any(|s| s.root_moved());
        let back = cur.missing.iter().any(|m| new.store(&m.store).is_some());
        *self.runtime.write().expect("runtime lock") = new.clone();
        if back {
            // A crash's leftovers in a store that was missing at start were kept for it:
            // settled now, under the pass lock (no local deletion is under way).
            if let Err(e) = recover::reconcile_after_crash(&new, &mut self.reg(), self.now()) {
                warn!(error = %e, "cannot settle the deletions a crash interrupted; tried again at the next start");
            }
        }
        Ok(rebuilt)
    }
}
