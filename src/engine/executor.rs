//! The executor: for each planned file, the guard chain (pinned since the plan, leased,
//! listed by a live playlist, a writer's final name, its class changed, offload before
//! delete), then the deleter's own re-check and act — unlink the checked inode under the
//! kernel lease, verify it gone — then the intent, log and audit record. The pass, a dry
//! run and `plan` ask the same chain ([`Engine::refusal`]), so they agree.
//!
//! One file (about 820 lines of code) because the chain is one table read in one order:
//! the refusal of a dry run, of `plan` and of the pass, the durable intents before the
//! unlinks of a chunk and the hand-over to the recorder must stay side by side to stay in
//! step; the deleter's own system calls are in store/local/delete.rs.

use super::*;
use crate::inuse::writers;

/// What a deletion re-checks against: the version that was planned.
/// A duplicate must also be the very content that was hashed (its change time).
fn expect_of(a: &policy::Action) -> Expect {
    Expect {
        size: a.entry.size,
        mtime: a.entry.mtime,
        ino: a.entry.ino,
        ctime: a
            .dupe_of
            .as_ref()
            .filter(|_| a.rule == policy::Rule::Duplicate)
            .map(|d| d.ctime),
    }
}

/// What a guard sees besides the file: the engine, the running config, the store, what
/// the chunk read once (pins, leases, writers' files) and who holds files open.
struct Guarded<'a, 'b> {
    engine: &'a Engine,
    rt: &'a Runtime,
    store: &'a LocalStore,
    checks: &'a Checks<'a>,
    in_use: &'b mut dyn FnMut(u64, u64) -> crate::store::local::Users,
    /// The file's class by the running config, derived once for the guards that ask.
    classified: Option<Option<&'a str>>,
}

impl<'a> Guarded<'a, '_> {
    /// The name of the class the running config gives the file now.
    fn class_name(&mut self, a: &policy::Action) -> Option<&'a str> {
        if self.classified.is_none() {
            let (rt, store) = (self.rt, self.store);
            self.classified = Some(rt.classifier.classify(store.name(), &a.entry.path));
        }
        self.classified.flatten()
    }

    /// The class the running config gives the file now.
    fn class(&mut self, a: &policy::Action) -> Option<&'a crate::config::Class> {
        let rt = self.rt;
        self.class_name(a).and_then(|c| rt.config.class(c))
    }
}

/// One small check before a deletion: why the file may not go, if it may not.
type Guard = fn(&mut Guarded<'_, '_>, &policy::Action) -> Option<String>;

/// The guard chain, in order; a new in-use signal (a webhook fact, a duplicate, a remote
/// lease) is one more entry here. The names are the refusal kinds.
const GUARDS: &[(&str, Guard)] = &[
    ("retained", |g, a| {
        g.checks
            .pinned
            .contains(&a.entry.path)
            .then(|| "retained (pinned after the plan was made)".into())
    }),
    ("lease", |g, a| {
        let covering = g.checks.leases.covering(g.store.name(), &a.entry.path);
        let mut hit = g.checks.lease_hit.borrow_mut();
        let c = g.checks;
        let (yielded, kept): (Vec<&Lease>, Vec<&Lease>) = covering
            .into_iter()
            .partition(|l| c.yielding && l.yields(c.daemon_uid));
        if !kept.is_empty() {
            *hit = (kept.iter().map(|l| l.id).collect(), false);
            let words: Vec<String> = kept.into_iter().map(Lease::describe).collect();
            return Some(format!("in use: {}", words.join(", ")));
        }
        // Only socket clients' leases cover it, and they give way to this pass.
        *hit = (yielded.iter().map(|l| l.id).collect(), true);
        None
    }),
    ("playlist", |g, a| {
        let class = g.class(a)?;
        let now = g.engine.now();
        let why = (g.engine.inuse).playlist_reason(class, g.store.name(), &a.entry.path, now)?;
        Some(format!("in use: {why}"))
    }),
    ("writer", |g, a| {
        if g.checks.parts.is_empty() {
            return None; // no writer's temporary file in the registry
        }
        let class = g.class(a)?;
        let (parts, now) = (g.checks.parts, g.engine.now());
        let why = writers::writer_reason(class, g.store, &a.entry.path, parts, now, g.in_use)?;
        Some(format!("in use: {why}"))
    }),
    // The class is derived again from the running config: an entry labelled under an
    // older config never decides a deletion. Only `rm` names unclassified files (class
    // ""): for it, "still no class" is the same class; a pass never plans one.
    ("reclassified", |g, a| {
        let now = g.class_name(a);
        let unclassified = a.rule == policy::Rule::Manual && a.class_name.is_empty();
        let same = match now {
            Some(c) => c == a.class_name,
            None => unclassified,
        };
        (!same).then(|| {
            format!(
                "its class is now {}; it is re-evaluated on the next pass",
                now.unwrap_or("none")
            )
        })
    }),
    ("duplicate", |g, a| {
        dedupe::duplicate_guard(&g.engine.registry, g.store, a)
    }),
    ("offload", |g, a| g.engine.offload_guard(g.rt, a)),
];

/// What one chunk of a pass checks files against (read once per chunk).
struct Checks<'a> {
    /// Paths pinned since the plan.
    pinned: &'a std::collections::HashSet<PathBuf>,
    /// Active leases.
    leases: &'a LeaseSet,
    /// Writers' temporary files in the registry.
    parts: &'a std::collections::HashSet<PathBuf>,
    /// Socket clients' leases give way (a pressure pass that would otherwise be stuck).
    yielding: bool,
    /// The daemon's own uid (its leases, like root's, never give way).
    daemon_uid: u32,
    /// The leases that covered the file just checked, and whether they gave way.
    lease_hit: std::cell::RefCell<(Vec<i64>, bool)>,
}

/// The leases that covered one file when it was checked, and whether they gave way.
type LeaseHit = (Vec<i64>, bool);

impl Checks<'_> {
    /// The leases that covered the file just checked (taken: the next file starts afresh).
    fn take_hit(&self) -> LeaseHit {
        std::mem::take(&mut *self.lease_hit.borrow_mut())
    }
}

/// After a file's outcome: the leases that kept it, or that gave way to its deletion
/// (`hit`), counted in `report`.
fn tally((ids, gave_way): LeaseHit, outcome: &Outcome, size: u64, report: &mut GcReport) {
    let to = match (outcome, gave_way) {
        (Outcome::Deleted, true) => &mut report.leases_gave_way,
        (Outcome::Refused(why), false) if refusal_kind(why) == "lease" => &mut report.leases_kept,
        _ => return,
    };
    for id in ids {
        let t = to.entry(id).or_default();
        t.0 += 1;
        t.1 += size;
    }
}

/// A deleted chunk to settle: its actions, each one's outcome and lease hit
/// (in chunk order), its intents' ids, and the caller's note on it.
type Settled<'a> = (
    &'a [&'a policy::Action],
    Vec<Option<(Outcome, LeaseHit)>>,
    Option<(i64, i64)>,
    Option<String>,
);

/// At most this many threads delete one chunk's files (each its own directories).
const MAX_WORKERS: usize = 4;
/// A chunk smaller than this is deleted by the pass's own thread (a routine pass of a few
/// files is not worth a thread).
const PARALLEL_MIN: usize = 64;

/// How many threads delete a chunk's files: one per core, at most [`MAX_WORKERS`].
fn workers() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WORKERS)
    })
}

/// Splits a chunk's files among at most `n` workers by directory, each directory wholly to
/// one worker (the kernel serialises changes to one directory, not to different ones), the
/// biggest first to the least loaded: each worker's indices into `chunk`, in chunk order.
/// Fewer than two directories (or a small chunk): one worker.
fn by_directory(chunk: &[&policy::Action], n: usize) -> Vec<Vec<usize>> {
    let dirs: Vec<&Path> = chunk
        .iter()
        .map(|a| a.entry.path.parent().unwrap_or(Path::new("")))
        .collect();
    split_dirs(&dirs, n)
}

/// [`by_directory`] of files in directories `dirs`.
fn split_dirs(dirs: &[&Path], n: usize) -> Vec<Vec<usize>> {
    let all = || vec![(0..dirs.len()).collect()];
    if n < 2 || dirs.len() < PARALLEL_MIN {
        return all();
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut of_dir: HashMap<&Path, usize> = HashMap::new();
    for (i, &dir) in dirs.iter().enumerate() {
        let g = *of_dir.entry(dir).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    if groups.len() < 2 {
        return all();
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n.min(groups.len())];
    for g in groups {
        let least = (0..out.len())
            .min_by_key(|&w| out[w].len())
            .expect("n >= 2");
        out[least].extend(g);
    }
    for w in &mut out {
        w.sort_unstable();
    }
    out
}

/// The `/proc` snapshot a chunk's workers share: taken only when the kernel says a file is
/// busy (or cannot say), reused while younger than [`SNAPSHOT_MAX_AGE`]; with how many
/// were taken since the last [`SharedUsers::taken`] and the slowest (µs).
#[derive(Default)]
struct SharedUsers(Mutex<(Option<crate::inuse::Snapshot>, u64, u64)>);

impl SharedUsers {
    /// Who has (`dev`, `ino`) open, by a snapshot young enough.
    fn users(&self, dev: u64, ino: u64) -> crate::store::local::Users {
        let mut g = self.0.lock().expect("snapshot lock");
        if g.0.as_ref().is_none_or(|u| u.age() > SNAPSHOT_MAX_AGE) {
            let snap = crate::inuse::Snapshot::take();
            g.1 += 1;
            g.2 = g.2.max(snap.micros);
            g.0 = Some(snap);
        }
        let u = g.0.as_ref().expect("taken above");
        crate::store::local::Users {
            who: u.reason(dev, ino),
            blind_spot: u.blind_spot(),
        }
    }

    /// (snapshots taken since the last call, the slowest so far in µs).
    fn taken(&self) -> (u64, u64) {
        let mut g = self.0.lock().expect("snapshot lock");
        (std::mem::take(&mut g.1), g.2)
    }
}

impl Engine {
    /// Deletes `actions` store by store in chunks. File work and registry writes overlap:
    /// the deleting thread hands each finished chunk to a recorder thread.
    /// `after_chunk`, if given, runs when a chunk's files are done; what it returns is added
    /// to each of their audit reasons (the pressure pass's volume usage before and after).
    pub(super) fn execute(
        &self,
        rt: &Runtime,
        actions: &[policy::Action],
        trigger: &str,
        detail: bool,
        report: &mut GcReport,
        after_chunk: Option<&dyn Fn() -> String>,
    ) -> Result<()> {
        self.execute_with(rt, actions, trigger, detail, report, after_chunk, false)
    }

    /// [`Engine::execute`]; `yielding`: socket clients' leases give way (root's and the
    /// daemon user's never do) — the pressure pass's last resort before STUCK.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn execute_with(
        &self,
        rt: &Runtime,
        actions: &[policy::Action],
        trigger: &str,
        detail: bool,
        report: &mut GcReport,
        after_chunk: Option<&dyn Fn() -> String>,
        yielding: bool,
    ) -> Result<()> {
        let daemon_uid = rustix::process::geteuid().as_raw();
        // Playlists changed meanwhile are read again, up to a budget per pass.
        self.inuse.start_pass();
        // A file whose deletion failed is not tried again until its backoff ran out (an
        // operator's `rm` always tries).
        let waiting = {
            let mut f = self.failing.lock().expect("failing lock");
            let now = Instant::now();
            f.prune(now);
            let mut waiting = std::collections::HashSet::new();
            if !f.is_empty() && trigger != rm::RM_TRIGGER {
                for a in actions {
                    if let Some((_, why)) = f.waiting(&a.entry.store, &a.entry.path, now) {
                        waiting.insert(a.entry.id);
                        // Still failing: what a pressure pass's STUCK names as failed,
                        // never as protected.
                        report.failed_bytes += a.entry.size;
                        report.first_failure.get_or_insert_with(|| why.to_string());
                    }
                }
            }
            waiting
        };
        report.backing_off += waiting.len() as u64;
        let due = |a: &&policy::Action| !waiting.contains(&a.entry.id);
        std::thread::scope(|scope| -> Result<()> {
            // With each chunk's results, the ids of its intents (local chunks), which the
            // same transaction drops.
            let (tx, rx) =
                std::sync::mpsc::sync_channel::<(remote::Recorded, Option<(i64, i64)>)>(2);
            let recorder = scope.spawn(move || -> Result<()> {
                for ((gone, records), intents) in rx {
                    self.write_or_release("audit records", |r| {
                        r.record_chunk(&gone, &records, intents)
                    })?;
                }
                Ok(())
            });
            let users = SharedUsers::default();
            'stores: for store in &rt.stores {
                let mine: Vec<&policy::Action> = actions
                    .iter()
                    .filter(|a| a.entry.store == store.name())
                    .filter(due)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                // One deletion session per worker (each keeps its own trash descriptor).
                let mut dels: Vec<_> = (0..workers()).map(|_| store.deleter()).collect();
                // Writers' temporary files, once per store and pass (a full registry scan).
                let parts = writers::part_files(&mut self.reg(), &rt.config, store.name())?;
                // Counts, logs and audits a deleted chunk's outcomes in its order: what the
                // recorder gets.
                let settle = |(chunk, done, intents, note): Settled<'_>,
                              report: &mut GcReport|
                 -> (remote::Recorded, Option<(i64, i64)>) {
                    let mut gone = Vec::new();
                    let mut records = Vec::with_capacity(chunk.len());
                    for (a, d) in chunk.iter().zip(done) {
                        let (outcome, hit) = d.expect("every file of the chunk has an outcome");
                        tally(hit, &outcome, a.entry.size, report);
                        self.account(a, outcome, trigger, detail, report, &mut gone, &mut records);
                    }
                    if let Some(note) = note {
                        for r in &mut records {
                            r.reason = format!("{}; {note}", r.reason);
                        }
                    }
                    ((gone, records), intents)
                };
                // The chunk deleted last, handed to the recorder only once the next chunk's
                // intents are written: the recorder then has the registry while that
                // chunk's files go, instead of while its intents wait.
                let mut pending: Option<(remote::Recorded, Option<(i64, i64)>)> = None;
                for chunk in mine.chunks(CHUNK) {
                    // No pin can land between this re-check and the chunk's unlinks (retain
                    // waits for the gate): a pin set since the plan wins.
                    let _gate = self.pin_gate.lock().expect("pin gate");
                    let prepared = (|| -> Result<_> {
                        let pinned = self.reg().pinned_paths(store.name())?;
                        let leases = self.lease_set()?;
                        let mut dirs: Vec<(&str, &Path)> = chunk
                            .iter()
                            .filter(|a| {
                                rt.config
                                    .class(&a.class_name)
                                    .is_some_and(|c| c.protect_playlist_refs)
                            })
                            .map(|a| (store.name(), a.entry.path.parent().unwrap_or(Path::new(""))))
                            .collect();
                        dirs.sort();
                        dirs.dedup();
                        self.refresh_playlists(rt, &dirs)?;
                        // Durable before any unlink of the chunk: a kill -9 from here on
                        // leaves intents that the next start reconciles into audit records.
                        let now = self.now();
                        let intents: Vec<Intent> =
                            chunk.iter().map(|a| intent_of(a, now, trigger)).collect();
                        let intents =
                            self.write_or_release("deletion intents", |r| r.intend(&intents))?;
                        Ok((pinned, leases, intents))
                    })();
                    // Whatever happened to this chunk, the one before is recorded.
                    if let Some(last) = pending.take()
                        && tx.send(last).is_err()
                    {
                        // The recorder failed (e.g. the registry's disk is full): stop the
                        // whole pass rather than delete without an audit trail.
                        break 'stores;
                    }
                    let (pinned, leases, intents) = prepared?;
                    // Each file through the guard chain and the deleter, on the worker that
                    // owns its directory.
                    let work = |mine: &[usize], del: &mut crate::store::local::Deleter<'_>| {
                        let mut in_use = |dev: u64, ino: u64| users.users(dev, ino);
                        let mut out = Vec::with_capacity(mine.len());
                        for &i in mine {
                            let a = chunk[i];
                            let checks = Checks {
                                pinned: &pinned,
                                leases: &leases,
                                parts: &parts,
                                yielding,
                                daemon_uid,
                                lease_hit: Default::default(),
                            };
                            let outcome = match self.refusal(rt, store, a, &checks, &mut in_use) {
                                Some(why) => Outcome::Refused(why),
                                None => del.delete(&a.entry.path, expect_of(a), &mut in_use),
                            };
                            out.push((i, outcome, checks.take_hit()));
                        }
                        out
                    };
                    let split = by_directory(chunk, dels.len());
                    // This thread takes the first share itself; a thread each for the others.
                    let mut done: Vec<Option<(Outcome, LeaseHit)>> =
                        (0..chunk.len()).map(|_| None).collect();
                    let Some((own, others)) = dels.split_first_mut() else {
                        break 'stores; // no worker: never (workers() >= 1)
                    };
                    let results = std::thread::scope(|s| {
                        let workers: Vec<_> = split[1..]
                            .iter()
                            .zip(others.iter_mut())
                            .map(|(mine, del)| s.spawn(|| work(mine, del)))
                            .collect();
                        let mut all = vec![work(&split[0], own)];
                        for w in workers {
                            all.push(w.join().expect("deleting worker panicked"));
                        }
                        all
                    });
                    for (i, o, hit) in results.into_iter().flatten() {
                        done[i] = Some((o, hit));
                    }
                    let (taken, slowest) = users.taken();
                    report.snapshots += taken;
                    report.snapshot_max_us = report.snapshot_max_us.max(slowest);
                    // What the caller notes once a chunk's files are done (before the next
                    // chunk starts).
                    let note = after_chunk.map(|f| f());
                    pending = Some(settle((chunk, done, intents, note), report));
                }
                if let Some(last) = pending.take()
                    && tx.send(last).is_err()
                {
                    break 'stores;
                }
                let mut touched: Vec<PathBuf> = dels.into_iter().flat_map(|d| d.finish()).collect();
                touched.sort();
                touched.dedup();
                self.add_prune_candidates(rt, store.name(), touched);
            }
            for remote in &rt.remotes {
                // A shared store's rules are the lease holder's alone.
                if !self
                    .fleet()
                    .deletes_in(remote.name(), fleet::is_shared(rt, remote.name()))
                {
                    continue;
                }
                let mine: Vec<&policy::Action> = actions
                    .iter()
                    .filter(|a| a.entry.store == remote.name())
                    .filter(due)
                    .collect();
                for chunk in mine.chunks(remote::DELETE_CHUNK) {
                    let (gone, records) =
                        self.delete_remote(rt, remote, chunk, trigger, detail, report)?;
                    if tx.send(((gone, records), None)).is_err() {
                        break;
                    }
                }
            }
            drop(tx);
            recorder.join().expect("recorder thread panicked")
        })
    }

    /// Why local file `a` of `store` may not go now, by every check the pass makes before
    /// the deleter's own, in [`GUARDS`] order (the first that refuses answers). The pass, a
    /// dry run and `plan` all ask this one function.
    fn refusal(
        &self,
        rt: &Runtime,
        store: &LocalStore,
        a: &policy::Action,
        c: &Checks<'_>,
        in_use: &mut dyn FnMut(u64, u64) -> crate::store::local::Users,
    ) -> Option<String> {
        let mut g = Guarded {
            engine: self,
            rt,
            store,
            checks: c,
            in_use,
            classified: None,
        };
        GUARDS.iter().find_map(|(_, guard)| guard(&mut g, a))
    }

    /// What the pass would do with each of `actions` now, changing nothing: the same checks
    /// in the same order, then the deleter's own (the planned version, not open by anyone
    /// by the `/proc` snapshot). S3 objects: `WouldDelete` unless pinned or leased.
    pub(super) fn would(&self, rt: &Runtime, actions: &[policy::Action]) -> Result<Vec<Outcome>> {
        self.would_unpinned(rt, actions, &Default::default())
    }

    /// [`Engine::would`] as if the files in `unpin` (store, path) were not pinned: what
    /// `rm --force-retained --dry-run` says (the real run unpins them first).
    pub(super) fn would_unpinned(
        &self,
        rt: &Runtime,
        actions: &[policy::Action],
        unpin: &std::collections::HashSet<(String, PathBuf)>,
    ) -> Result<Vec<Outcome>> {
        let leases = self.lease_set()?;
        let mut users: Option<crate::inuse::Snapshot> = None;
        let mut in_use = |dev: u64, ino: u64| {
            let u = users.get_or_insert_with(crate::inuse::Snapshot::take);
            crate::store::local::Users {
                who: u.reason(dev, ino),
                blind_spot: u.blind_spot(),
            }
        };
        let mut per_store: HashMap<
            String,
            (
                std::collections::HashSet<PathBuf>,
                std::collections::HashSet<PathBuf>,
            ),
        > = HashMap::new();
        let mut dirs: Vec<(&str, &Path)> = actions
            .iter()
            .map(|a| {
                (
                    a.entry.store.as_str(),
                    a.entry.path.parent().unwrap_or(Path::new("")),
                )
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        self.refresh_playlists(rt, &dirs)?;
        let mut out = Vec::with_capacity(actions.len());
        for a in actions {
            let Some(store) = rt.store(&a.entry.store) else {
                let pinned = self
                    .reg()
                    .pinned_paths(&a.entry.store)?
                    .contains(&a.entry.path);
                let leased = leases.holders(&a.entry.store, &a.entry.path);
                out.push(match (pinned, leased.is_empty()) {
                    (true, _) => {
                        Outcome::Refused("retained (pinned after the plan was made)".into())
                    }
                    (_, false) => Outcome::Refused(format!("in use: {}", leased.join(", "))),
                    _ => Outcome::WouldDelete,
                });
                continue;
            };
            if !per_store.contains_key(store.name()) {
                let mut pinned = self.reg().pinned_paths(store.name())?;
                pinned.retain(|p| !unpin.contains(&(store.name().to_string(), p.clone())));
                let parts = writers::part_files(&mut self.reg(), &rt.config, store.name())?;
                per_store.insert(store.name().to_string(), (pinned, parts));
            }
            let (pinned, parts) = &per_store[store.name()];
            let checks = Checks {
                pinned,
                leases: &leases,
                parts,
                yielding: false,
                daemon_uid: 0,
                lease_hit: Default::default(),
            };
            out.push(match self.refusal(rt, store, a, &checks, &mut in_use) {
                Some(why) => Outcome::Refused(why),
                None => store.would_delete(&a.entry.path, expect_of(a), &mut in_use),
            });
        }
        Ok(out)
    }

    /// The plan at `at`, each action saying whether the pass would refuse it now (what
    /// `plan` prints: the same answer as `gc --dry-run` and the pass).
    pub fn plan_checked(&self, at: Nanos) -> Result<Plan> {
        // Read-only, and it may ask S3 servers (copies): not under the pass lock, which a
        // disk-pressure pass must always get quickly.
        let rt = self.runtime();
        let mut plan = self.plan(at)?;
        let outcomes = self.would(&rt, &plan.actions)?;
        for (a, o) in plan.actions.iter_mut().zip(outcomes) {
            if let Outcome::Refused(why) = o {
                a.would_refuse = Some(why);
            }
        }
        Ok(plan)
    }

    /// Counts, logs and audits one file's outcome.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn account(
        &self,
        a: &policy::Action,
        outcome: Outcome,
        trigger: &str,
        detail: bool,
        report: &mut GcReport,
        gone: &mut Vec<(i64, PathBuf)>,
        records: &mut Vec<AuditRecord>,
    ) {
        self.progress.add(1);
        // A refusal is audited and logged when its episode starts or its kind changes, not
        // on every pass while it lasts (a file in use is normal; the journal and the audit
        // must grow with what changed, not with the number of passes).
        let churn = self
            .runtime()
            .config
            .class(&a.class_name)
            .is_some_and(|c| c.lifecycle == crate::config::Lifecycle::Segment);
        if let Outcome::Refused(why) = &outcome {
            let kind = refusal_kind(why);
            if why.contains(crate::inuse::playlist::READ_AGAIN) {
                report.playlist_waits += 1;
            }
            // A segment being written (open, growing), listed by its playlist or in its
            // removal grace is the ordinary life of a live stream (with keep_for 0s every
            // segment goes through it): `explain` shows it live; the journal and the audit
            // are not told.
            let routine = churn && matches!(kind, "open" | "playlist" | "writer" | "changed");
            let same = routine
                || self
                    .reg()
                    .history(&a.entry.store, &a.entry.path, 1)
                    .ok()
                    .and_then(|h| h.into_iter().next())
                    .is_some_and(|h| {
                        h.action == "delete"
                            && h.outcome == "refused"
                            && refusal_kind(&h.reason) == kind
                    });
            report.refused += 1;
            report.refused_bytes += a.entry.size;
            if crate::metrics::IN_USE_KINDS.contains(&kind) {
                *report
                    .in_use
                    .entry((a.entry.store.clone(), a.class_name.clone()))
                    .or_default() += 1;
            }
            if same {
                debug!(action = "refuse", path = %format!("{}:{}", a.entry.store, crate::spell::show(&a.entry.path)), reason = %why, "still refused");
                if detail {
                    report.results.push(file_result(a, outcome));
                }
                return;
            }
            report.refusals_started += 1;
            self.metrics.refused(&a.entry.store, &a.class_name, kind);
        }
        // A failure is logged when its episode starts (then the file backs off); a bulk
        // pass logs its first files and sums up the rest (every file is in the audit).
        let loud = match &outcome {
            Outcome::Failed(err) => {
                let (episode, wait) = self.failing.lock().expect("failing lock").failed(
                    &a.entry.store,
                    &a.entry.path,
                    err,
                    Instant::now(),
                );
                report.failures_started += (episode == failing::Episode::Started) as u64;
                debug!(path = %format!("{}:{}", a.entry.store, crate::spell::show(&a.entry.path)), wait = ?wait, "deletion failed; backing off");
                episode == failing::Episode::Started && report.failures_started <= DETAIL_PER_PASS
            }
            Outcome::Deleted | Outcome::Vanished => {
                let was = (self.failing.lock().expect("failing lock"))
                    .cleared(&a.entry.store, &a.entry.path);
                if was > 0 {
                    info!(path = %format!("{}:{}", a.entry.store, crate::spell::show(&a.entry.path)), failures = was, "deleted after {was} failed attempts");
                }
                report.deleted_files + report.vanished - report.churn_files < DETAIL_PER_PASS
            }
            _ => true,
        };
        log_outcome(a, &outcome, trigger, churn, !loud);
        match &outcome {
            Outcome::Deleted => {
                report.first_unlink.get_or_insert_with(Instant::now);
                report.deleted_files += 1;
                report.deleted_bytes += a.entry.size;
                let rule = a.rule.to_string();
                self.metrics
                    .deleted(&a.entry.store, &a.class_name, &rule, trigger, a.entry.size);
                if churn {
                    report.churn_files += 1;
                    report.churn_bytes += a.entry.size;
                }
                gone.push((a.entry.id, a.entry.path.clone()));
            }
            Outcome::Vanished => {
                report.vanished += 1;
                gone.push((a.entry.id, a.entry.path.clone()));
            }
            Outcome::Refused(_) => {} // counted above
            Outcome::Failed(why) => {
                report.failed += 1;
                report.failed_bytes += a.entry.size;
                report.first_failure.get_or_insert_with(|| why.clone());
                self.metrics.failed(&a.entry.store, &a.class_name);
            }
            Outcome::WouldDelete => {} // dry runs never get here
        }
        records.push(AuditRecord {
            at: self.now(),
            store: a.entry.store.clone(),
            path: a.entry.path.clone(),
            action: "delete".into(),
            outcome: outcome.word().into(),
            class: (!a.class_name.is_empty()).then(|| a.class_name.clone()),
            rule: Some(a.rule.to_string()),
            reason: match outcome.detail() {
                Some(d) => format!("{}; {d}", a.reason),
                None => a.reason.clone(),
            },
            trigger: trigger.into(),
            bytes: Some(a.entry.size),
        });
        if detail {
            report.results.push(file_result(a, outcome));
        }
    }
}

/// The kind of a refusal, whatever pid, lease id or time its words name: the same kind on
/// the next pass continues the same episode.
pub fn refusal_kind(reason: &str) -> &'static str {
    const KINDS: &[(&str, &str)] = &[
        ("retained", "retained"),
        ("in use: lease", "lease"),
        ("playlist", "playlist"),
        (" MPD ", "playlist"), // a DASH manifest (inuse/mpd.rs)
        ("its writer is still writing", "writer"),
        ("lock held", "lock"),
        ("open by", "open"),
        ("exclusive access", "open"),
        ("cannot verify it is unused", "unverifiable"),
        ("changed since it was planned", "changed"),
        ("changed while being checked", "changed"),
        ("since it was hashed", "changed"),
        ("its class is now", "reclassified"),
        ("its kept copy", "duplicate"),
        ("not deduped", "duplicate"),
        ("offload before delete", "offload"),
        ("its copy", "offload"),
        ("no verified remote copy", "offload"),
        ("symlink", "link"),
        ("not a regular file", "not-a-file"),
    ];
    KINDS
        .iter()
        .find(|(needle, _)| reason.contains(needle))
        .map_or("other", |(_, kind)| kind)
}

/// Files of one pass logged one by one at info (deletions, and failures that start an
/// episode); the rest go at debug, summed up by the pass's line (every file is audited).
const DETAIL_PER_PASS: u64 = 10;

/// Logs one file's outcome. Deletions of segments (`churn`: a live stream makes one a
/// second) go at debug, summed up at info once a minute; so do deletions and failures
/// beyond a pass's first few and failures that continue an episode (`quiet`: summed up by
/// the pass). A refusal is an ordinary event (a file in use): info, once per episode.
fn log_outcome(a: &policy::Action, o: &Outcome, trigger: &str, churn: bool, quiet: bool) {
    // The common case of a bulk pass (a deletion at debug, debug off) formats nothing: the
    // path's spelling was a tenth of the deleting thread's work per file.
    let at_debug = match o {
        Outcome::Deleted => churn || quiet,
        Outcome::Vanished | Outcome::Failed(_) => quiet,
        Outcome::WouldDelete => return,
        Outcome::Refused(_) => false,
    };
    if at_debug && !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let path = format!("{}:{}", a.entry.store, crate::spell::show(&a.entry.path));
    match o {
        Outcome::Deleted if churn || quiet => debug!(
            action = "delete", path = %path, class = %a.class_name, rule = %a.rule,
            reason = %a.reason, bytes = a.entry.size, trigger, "deleted {path}: {}", a.reason
        ),
        Outcome::Deleted => info!(
            action = "delete", path = %path, class = %a.class_name, rule = %a.rule,
            reason = %a.reason, bytes = a.entry.size, trigger, "deleted {path}: {}", a.reason
        ),
        Outcome::Vanished if quiet => debug!(
            action = "vanished", path = %path, class = %a.class_name, trigger,
            "{path} was already gone"
        ),
        Outcome::Vanished => info!(
            action = "vanished", path = %path, class = %a.class_name, trigger,
            "{path} was already gone"
        ),
        Outcome::WouldDelete => {}
        Outcome::Refused(why) => info!(
            action = "refuse", path = %path, class = %a.class_name, reason = %why, trigger,
            "refused to delete {path}: {why}"
        ),
        Outcome::Failed(err) if quiet => debug!(
            action = "fail", path = %path, class = %a.class_name, reason = %err, trigger,
            "failed to delete {path}: {err}"
        ),
        Outcome::Failed(err) => error!(
            action = "fail", path = %path, class = %a.class_name, reason = %err, trigger,
            "failed to delete {path}: {err}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_split_by_whole_directories_balanced_and_in_order() {
        // 100 files in a/, 60 in b/, 40 in c/ (interleaved), 2 workers: a alone, b and c.
        let dirs: Vec<&Path> = (0..200)
            .map(|i| match i % 5 {
                0 | 1 => Path::new("a"),
                2 if i % 10 == 2 => Path::new("c"),
                2 | 3 => Path::new("b"),
                _ => Path::new(if i % 10 < 5 { "a" } else { "c" }),
            })
            .collect();
        let split = split_dirs(&dirs, 2);
        assert_eq!(split.len(), 2);
        let mut seen = vec![0; dirs.len()];
        for w in &split {
            assert!(w.windows(2).all(|p| p[0] < p[1]), "in chunk order");
            for &i in w {
                seen[i] += 1;
            }
            let mine: std::collections::HashSet<&Path> = w.iter().map(|&i| dirs[i]).collect();
            for other in split.iter().filter(|o| !std::ptr::eq(*o, w)) {
                assert!(
                    other.iter().all(|&i| !mine.contains(dirs[i])),
                    "a directory is one worker's"
                );
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "every file exactly once");
        let (a, b) = (split[0].len(), split[1].len());
        assert!(a.abs_diff(b) <= 40, "balanced: {a} and {b}");
        // One directory, or a small chunk: one worker.
        assert_eq!(split_dirs(&[Path::new("a"); 200], 2).len(), 1);
        assert_eq!(split_dirs(&dirs[..10], 2).len(), 1);
        assert_eq!(split_dirs(&dirs, 1).len(), 1);
    }
}
