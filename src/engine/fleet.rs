//! The fleet in the engine (issue 28; the objects themselves are [`crate::fleet`]): at a
//! daemon's start each S3 root is checked against the registry, probed, claimed (a node
//! root) or given its rules lease (a shared store); every tick the claims beat and the
//! leases renew; a shared store's deletions are fenced by its lease, and what they delete
//! leaves this box's own store at once.

use super::s3io::{MIN_ATTEMPT, io, log_capabilities};
use super::*;
use crate::store::s3::S3Store;

/// Whether S3 store `name` is a shared store (`shared = true`).
pub(super) fn is_shared(rt: &Runtime, name: &str) -> bool {
    rt.config
        .store(name)
        .and_then(|s| s.s3.as_ref())
        .is_some_and(|l| l.shared)
}

use crate::node::ROOTS_FILE;

/// Start-up work on one S3 store's fleet state took longer than this: it goes on in the
/// background (a store that does not answer never holds the daemon's start).
const FLEET_START_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why one store's fleet state could not be set up.
enum Setup {
    /// The configuration or another box forbids it: the daemon does not start.
    Refused(String),
    /// The store did not answer: tried again at the next fleet tick.
    Later(String),
}

impl Engine {
    /// The daemon's fleet state (claims, leases).
    pub fn fleet(&self) -> &crate::fleet::Fleet {
        &self.fleet
    }

    /// A daemon's start: for every S3 store, checks that its root did not move under the
    /// registry's entries and copies, probes whether it honours conditional writes, claims
    /// a node root ([`crate::fleet::claim`]) and sets up a shared store's rules lease.
    /// Err: why the daemon must not start (another live box has this root; a shared store
    /// with rules but neither conditional writes nor `remote_rules_node`; a moved root).
    pub fn fleet_start(&self) -> std::result::Result<(), String> {
        let rt = self.runtime();
        let daemon = &rt.config.daemon;
        let path = daemon.state_dir.join(ROOTS_FILE);
        let mut roots: std::collections::BTreeMap<String, String> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for r in &rt.remotes {
            let Some(loc) = rt.config.store(r.name()).and_then(|s| s.s3.as_ref()) else {
                continue;
            };
            let recorded = roots
                .get(r.name())
                .cloned()
                .unwrap_or_else(|| loc.prefix.trim_matches('/').to_string());
            if recorded != loc.root {
                let (entries, copies) = self
                    .reg()
                    .remote_footprint(r.name())
                    .map_err(|e| e.to_string())?;
                if entries + copies > 0 {
                    return Err(format!(
                        "store {:?}: the registry holds {entries} objects and {copies} verified copies listed under its root {recorded:?}, but its root is now {:?} ([daemon] node {:?} with node_prefix on): those copies would be orphaned. Set node_prefix = false on this store to keep the old layout (or move the objects under the new root and run `mediaretain registry reset`)",
                        r.name(),
                        loc.root,
                        daemon.node
                    ));
                }
            }
            roots.insert(r.name().to_string(), loc.root.clone());
        }
        let tmp = daemon.state_dir.join(format!("{ROOTS_FILE}.tmp"));
        let written = std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&roots).expect("roots serialize"),
        )
        .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            return Err(format!("{}: {e}", path.display()));
        }
        self.fleet
            .active
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut later = Vec::new();
        for r in &rt.remotes {
            match self.fleet_setup(&rt, r, true) {
                Ok(()) => {}
                Err(Setup::Refused(why)) => return Err(why),
                Err(Setup::Later(why)) => {
                    warn!(store = %r.name(), error = %why, "cannot claim the store's root or set up its rules lease yet; offloads to it (and its shared rules) wait, retried every heartbeat");
                    later.push(r.name().to_string());
                }
            }
        }
        *self.fleet.pending.lock().expect("fleet pending") = later;
        Ok(())
    }

    /// Sets up the fleet state of S3 store `r` (see [`Engine::fleet_start`]).
    fn fleet_setup(
        &self,
        rt: &Runtime,
        r: &Arc<S3Store>,
        start: bool,
    ) -> std::result::Result<(), Setup> {
        use crate::fleet::{Identity, claim, lease};
        let Some(loc) = rt.config.store(r.name()).and_then(|s| s.s3.clone()) else {
            return Ok(());
        };
        let daemon = &rt.config.daemon;
        let me = Identity::own(&daemon.node);
        let limit = FLEET_START_LIMIT.min(loc.retry_timeout.0.max(MIN_ATTEMPT));
        let bounded = |f| async move {
            tokio::time::timeout(limit, f)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
        };
        let caps = io(bounded(async {
            r.probe().await.map_err(|e| e.to_string())
        }))
        .map_err(Setup::Later)?;
        log_capabilities(r.name(), &caps);
        self.fleet
            .probed
            .lock()
            .expect("fleet probed")
            .insert(r.name().to_string());
        if loc.shared {
            let has_rules = rt.config.classes.iter().any(|c| c.store == r.name());
            let mode = match (caps.conditional_create, &loc.remote_rules_node) {
                (true, _) => lease::Mode::Conditional,
                (false, Some(n)) => lease::Mode::Fixed(*n == daemon.node),
                (false, None) if has_rules => {
                    return Err(Setup::Refused(format!(
                        "store {:?} is shared and has remote classes, but it ignores conditional writes (the start-up probe wrote one key twice with If-None-Match: * and the second write succeeded), so no rules lease can be held on it safely: set remote_rules_node = \"NODE\" on this store to name the one node that applies its rules",
                        r.name()
                    )));
                }
                (false, None) => lease::Mode::Fixed(false),
            };
            info!(store = %r.name(), mode = ?mode, "shared store: its rules are applied by {}", match mode {
                lease::Mode::Conditional => "the holder of its rules lease".to_string(),
                lease::Mode::Fixed(_) => format!("node {:?} only (remote_rules_node)", loc.remote_rules_node.as_deref().unwrap_or("none")),
            });
            self.fleet.leases.lock().expect("fleet leases").insert(
                r.name().to_string(),
                Arc::new(lease::Lease::new(
                    r.name(),
                    &loc.root,
                    loc.rules_lease.0,
                    mode,
                )),
            );
            return Ok(());
        }
        let heartbeat = daemon.fleet_heartbeat.0;
        // The watch of a foreign marker takes up to 2.5 heartbeats: bounded by that too.
        let wait = limit + claim::watch_time(heartbeat);
        let taken = io(async {
            tokio::time::timeout(
                wait,
                claim::take(r, &loc.root, &me, caps.conditional_create, heartbeat),
            )
            .await
        });
        match taken {
            Ok(Ok(c)) => {
                info!(store = %r.name(), root = %loc.root, node = %daemon.node, conditional = c.conditional, "claimed the store's root");
                self.metrics.fleet_conflict(r.name(), false);
                self.fleet
                    .claims
                    .lock()
                    .expect("fleet claims")
                    .insert(r.name().to_string(), c);
                Ok(())
            }
            Ok(Err(e @ claim::ClaimError::Taken { .. })) if start => {
                Err(Setup::Refused(e.to_string()))
            }
            Ok(Err(e @ claim::ClaimError::Taken { .. })) => {
                let first =
                    (self.fleet.taken.lock().expect("fleet taken")).insert(r.name().to_string());
                if first {
                    error!(store = %r.name(), error = %e, "cannot claim the store's root: another box has it; nothing is offloaded there (tried again every heartbeat)");
                }
                self.metrics.fleet_conflict(r.name(), true);
                Err(Setup::Later(e.to_string()))
            }
            Ok(Err(e)) => Err(Setup::Later(e.to_string())),
            Err(_) => Err(Setup::Later(format!("no answer within {wait:?}"))),
        }
    }

    /// One step of the fleet's background work (a daemon calls it every quarter second):
    /// heartbeats of the claim markers, renewals or takeovers of rules leases, and another
    /// try at stores whose setup failed.
    pub fn fleet_tick(&self) {
        use crate::fleet::{Identity, claim};
        let rt = self.runtime();
        let me = Identity::own(&rt.config.daemon.node);
        let mut pending = std::mem::take(&mut *self.fleet.pending.lock().expect("fleet pending"));
        // Stores a reload added: set up like those of the start.
        {
            let claims = self.fleet.claims.lock().expect("fleet claims");
            let leases = self.fleet.leases.lock().expect("fleet leases");
            for r in &rt.remotes {
                let n = r.name();
                if !claims.contains_key(n)
                    && !leases.contains_key(n)
                    && !pending.iter().any(|p| p == n)
                {
                    pending.push(n.to_string());
                }
            }
        }
        let mut still = Vec::new();
        for name in pending {
            let due = self
                .fleet
                .retry_at
                .lock()
                .expect("fleet retry")
                .is_none_or(|t| t.elapsed() >= rt.config.daemon.fleet_heartbeat.0);
            let Some(r) = rt.remotes.iter().find(|r| r.name() == name) else {
                continue;
            };
            if !due {
                still.push(name);
                continue;
            }
            if let Err(Setup::Refused(why) | Setup::Later(why)) = self.fleet_setup(&rt, r, false) {
                debug!(store = %name, error = %why, "fleet setup still pending");
                still.push(name);
            }
        }
        if !still.is_empty() {
            *self.fleet.retry_at.lock().expect("fleet retry") = Some(Instant::now());
        }
        self.fleet
            .pending
            .lock()
            .expect("fleet pending")
            .extend(still);
        for r in &rt.remotes {
            if let Some(l) = self.fleet.lease(r.name()) {
                if l.due() {
                    io(l.tick(r, &me));
                }
                self.metrics.fleet_lease(r.name(), l.may_act());
                continue;
            }
            let due = {
                let mut beats = self.fleet.beat_at.lock().expect("fleet beats");
                let last = beats
                    .entry(r.name().to_string())
                    .or_insert_with(Instant::now);
                if last.elapsed() >= rt.config.daemon.fleet_heartbeat.0 {
                    *last = Instant::now();
                    true
                } else {
                    false
                }
            };
            if !due {
                continue;
            }
            let Some(mut c) = self
                .fleet
                .claims
                .lock()
                .expect("fleet claims")
                .get(r.name())
                .cloned()
            else {
                continue;
            };
            let beat = io(claim::beat(r, &me, &mut c));
            let was_failing = std::mem::replace(&mut c.beat_failing, beat.is_err());
            match beat {
                Ok(Some(conflict)) => {
                    error!(store = %r.name(), root = %c.root, "{conflict}");
                    self.metrics.fleet_conflict(r.name(), true);
                }
                Ok(None) if was_failing => {
                    info!(store = %r.name(), root = %c.root, "the claim marker's heartbeat is written again")
                }
                Ok(None) => {}
                // Once, not at every heartbeat while the store is unreachable.
                Err(e) if !was_failing => {
                    warn!(store = %r.name(), error = %e, "cannot write the claim marker's heartbeat; tried again every heartbeat")
                }
                Err(_) => {}
            }
            self.fleet
                .claims
                .lock()
                .expect("fleet claims")
                .insert(r.name().to_string(), c);
        }
    }
}

/// Before deleting `keys` of shared store `remote`: one DeleteObjects batch (at most
/// 1000 keys) at a time, each preceded in this thread by the lease's fence. Keys not
/// sent are refused with the reason.
pub(super) fn delete_fenced(
    remote: &S3Store,
    lease: &crate::fleet::lease::Lease,
    keys: &[String],
) -> Vec<(String, crate::store::Outcome)> {
    // Batches of contiguous key ranges (as delete_many makes them), the outcomes put
    // back in the order of `keys`.
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
    let mut out: Vec<Option<crate::store::Outcome>> = vec![None; keys.len()];
    let mut fenced: Option<String> = None;
    for batch in order.chunks(1000) {
        if fenced.is_none()
            && let Err(why) = io(lease.fence(remote))
        {
            warn!(store = %remote.name(), keys = batch.len(), reason = %why, "shared store: not deleting, the rules lease is not ours");
            fenced = Some(why);
        }
        match &fenced {
            Some(why) => {
                for &i in batch {
                    out[i] = Some(crate::store::Outcome::Refused(format!(
                        "not deleted: {why}"
                    )));
                }
            }
            None => {
                let these: Vec<String> = batch.iter().map(|&i| keys[i].clone()).collect();
                for (&i, (_, o)) in batch.iter().zip(io(remote.delete_many(&these))) {
                    out[i] = Some(o);
                }
            }
        }
    }
    keys.iter()
        .cloned()
        .zip(
            out.into_iter()
                .map(|o| o.expect("every key has an outcome")),
        )
        .collect()
}

/// Objects deleted through shared store `remote` (`keys` relative to its root) may be
/// recorded under another S3 store of the same bucket whose root lies inside it — this
/// box's own node-prefixed store: their entries and verified-copy records go too, so
/// that no local file is freed on the strength of a copy the shared rule expired.
/// (The registry alone: called by the S3 deletion, `remote::delete`.)
pub(super) fn forget_through_siblings(
    registry: &Mutex<Registry>,
    rt: &Runtime,
    remote: &S3Store,
    keys: &[String],
) {
    let Some(shared) = rt.config.store(remote.name()).and_then(|s| s.s3.as_ref()) else {
        return;
    };
    for s in &rt.config.stores {
        let Some(l) = s.s3.as_ref().filter(|l| {
            !l.shared
                && l.bucket == shared.bucket
                && l.endpoint.trim_end_matches('/') == shared.endpoint.trim_end_matches('/')
        }) else {
            continue;
        };
        let full = |k: &str| {
            if shared.root.is_empty() {
                k.to_string()
            } else {
                format!("{}/{k}", shared.root)
            }
        };
        let inner: Vec<String> = keys
            .iter()
            .filter_map(|k| {
                let f = full(k);
                if l.root.is_empty() {
                    Some(f)
                } else {
                    f.strip_prefix(&format!("{}/", l.root)).map(str::to_string)
                }
            })
            .collect();
        if inner.is_empty() {
            continue;
        }
        let paths: Vec<PathBuf> = inner.iter().map(PathBuf::from).collect();
        let forgot = {
            let mut reg = registry.lock().expect("registry lock");
            reg.forget(&s.name, &paths)
                .and_then(|()| reg.forget_copies_at(&s.name, &inner))
        };
        match forgot {
            Ok(copies) => {
                info!(store = %remote.name(), own = %s.name, objects = inner.len(), copies, "objects the shared rules deleted were also this box's: forgotten in its own store, their copy records dropped")
            }
            Err(e) => {
                warn!(store = %s.name, error = %e, "cannot forget objects the shared rules deleted")
            }
        }
    }
}
