//! The executor: for each planned file, the guard chain (pinned since the plan, leased,
//! listed by a live playlist, a writer's final name, its class changed, offload before
//! delete), then the deleter's own re-check and act — unlink the checked inode under the
//! kernel lease, verify it gone — then the intent, log and audit record. The pass, a dry
//! run and `plan` ask the same chain ([`Executor::refusal`]), so they agree.
//!
//! One file (about 650 lines of code) because the chain is one table read in one order:
//! the refusal of a dry run, of `plan` and of the pass, the durable intents before the
//! unlinks of a chunk and the hand-over to the recorder must stay side by side to stay in
//! step; the deleter's own system calls are in store/local/delete.rs, the recording of each
//! outcome in `ledger.rs` (shared with the S3 deletions of `remote.rs`).
//!
//! It sees only what it uses, borrowed from the engine by [`Executor`]: the running config
//! and stores, the registry (pins, writers' files, intents), the clock, the in-use state
//! (playlists; the leases through a function that reads them), the pin gate, the copy
//! checks of offload before delete ([`Offloader`]), the fleet (whose S3 stores this box
//! deletes in) and the pruning candidates; each guard sees only [`Guarded`]. Never the
//! whole engine.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::ledger::{Ledger, Recorded};
use super::offload::Offloader;
use super::{
    CHUNK, GcReport, Result, Runtime, SNAPSHOT_MAX_AGE, add_prune_candidates, dedupe, intent_of,
    remote, rm,
};
use crate::clock::Clock;
use crate::fleet::Fleet;
use crate::inuse::leases::LeaseSet;
use crate::inuse::{InUse, writers};
use crate::policy;
use crate::registry::{Intent, Lease, Registry};
use crate::store::local::{Expect, LocalStore};
use crate::store::{Outcome, Store as _};

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

/// What a guard sees besides the file: the running config, the store, what the chunk read
/// once (pins, leases, writers' files), who holds files open, and of the engine's state
/// only the clock, the live playlists, the registry (a duplicate's kept copy) and the copy
/// checks.
struct Guarded<'a, 'b> {
    rt: &'a Runtime,
    store: &'a LocalStore,
    checks: &'a Checks<'a>,
    in_use: &'b mut dyn FnMut(u64, u64) -> crate::store::local::Users,
    /// The file's class by the running config, derived once for the guards that ask.
    classified: Option<Option<&'a str>>,
    /// The time playlists and writers are judged by.
    clock: &'a dyn Clock,
    /// What live playlists list.
    inuse: &'a InUse,
    /// A duplicate's kept copy is looked up here.
    registry: &'a Mutex<Registry>,
    /// Offload before delete: the verified copy confirmed by its server.
    copies: &'a Offloader<'a>,
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
        let now = g.clock.now();
        let why = (g.inuse).playlist_reason(class, g.store.name(), &a.entry.path, now)?;
        Some(format!("in use: {why}"))
    }),
    ("writer", |g, a| {
        if g.checks.parts.is_empty() {
            return None; // no writer's temporary file in the registry
        }
        let class = g.class(a)?;
        let (parts, now) = (g.checks.parts, g.clock.now());
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
        dedupe::duplicate_guard(g.registry, g.store, a)
    }),
    ("offload", |g, a| g.copies.guard(g.rt, a)),
];

/// What one chunk of a pass checks files against (read once per chunk).
struct Checks<'a> {
    /// Paths pinned since the plan.
    pinned: &'a HashSet<PathBuf>,
    /// Active leases.
    leases: &'a LeaseSet,
    /// Writers' temporary files in the registry.
    parts: &'a HashSet<PathBuf>,
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

/// What the executor sees of the engine, borrowed for one run of deletions (a pass, a
/// pressure batch, an `rm`) or one dry run.
pub(super) struct Executor<'a> {
    /// The running config and stores the run was planned with.
    pub rt: &'a Runtime,
    /// Pins, writers' files, deletion intents.
    pub registry: &'a Mutex<Registry>,
    /// The time intents and guards are stamped and judged by.
    pub clock: &'a dyn Clock,
    /// The in-use signals' state (live playlists).
    pub inuse: &'a InUse,
    /// The active leases now (on the leases' own time).
    pub leases: Box<dyn Fn() -> Result<LeaseSet> + Sync + 'a>,
    /// Held while pins are re-checked and a chunk is deleted.
    pub pin_gate: &'a Mutex<()>,
    /// Offload before delete.
    pub copies: Offloader<'a>,
    /// Which S3 stores this box deletes in (a shared store's rules are its lease holder's).
    pub fleet: &'a Fleet,
    /// Directories that may be empty now (store, dir), tried at the end of each pass.
    pub prune: &'a Mutex<BTreeSet<(String, PathBuf)>>,
}

impl Executor<'_> {
    fn reg(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("registry lock")
    }

    /// Re-reads the playlists that changed (and those found in `dirs`), see
    /// [`InUse::refresh_playlists`].
    fn refresh_playlists(&self, dirs: &[(&str, &Path)]) -> Result<()> {
        let (rt, now) = (self.rt, self.clock.now());
        Ok(self
            .inuse
            .refresh_playlists(self.registry, &rt.config, &rt.stores, dirs, now)?)
    }

    /// Deletes `actions` store by store in chunks, recorded in `ledger`. File work and
    /// registry writes overlap: the deleting thread hands each finished chunk to a recorder
    /// thread. `after_chunk`, if given, runs when a chunk's files are done; what it returns
    /// is added to each of their audit reasons (the pressure pass's volume usage before and
    /// after). `yielding`: socket clients' leases give way (root's and the daemon user's
    /// never do) — the pressure pass's last resort before STUCK.
    pub fn execute(
        &self,
        ledger: &Ledger<'_>,
        actions: &[policy::Action],
        report: &mut GcReport,
        after_chunk: Option<&dyn Fn() -> String>,
        yielding: bool,
    ) -> Result<()> {
        let (rt, trigger) = (self.rt, ledger.trigger);
        let daemon_uid = rustix::process::geteuid().as_raw();
        // Playlists changed meanwhile are read again, up to a budget per pass.
        self.inuse.start_pass();
        // A file whose deletion failed is not tried again until its backoff ran out (an
        // operator's `rm` always tries).
        let waiting = {
            let mut f = ledger.failing.lock().expect("failing lock");
            let now = Instant::now();
            f.prune(now);
            let mut waiting = HashSet::new();
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
            let (tx, rx) = std::sync::mpsc::sync_channel::<(Recorded, Option<(i64, i64)>)>(2);
            let recorder = scope.spawn(move || -> Result<()> {
                for ((gone, records), intents) in rx {
                    ledger.write("audit records", |r| {
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
                 -> (Recorded, Option<(i64, i64)>) {
                    let mut gone = Vec::new();
                    let mut records = Vec::with_capacity(chunk.len());
                    for (a, d) in chunk.iter().zip(done) {
                        let (outcome, hit) = d.expect("every file of the chunk has an outcome");
                        tally(hit, &outcome, a.entry.size, report);
                        ledger.account(a, outcome, report, &mut gone, &mut records);
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
                let mut pending: Option<(Recorded, Option<(i64, i64)>)> = None;
                for chunk in mine.chunks(CHUNK) {
                    // No pin can land between this re-check and the chunk's unlinks (retain
                    // waits for the gate): a pin set since the plan wins.
                    let _gate = self.pin_gate.lock().expect("pin gate");
                    let prepared = (|| -> Result<_> {
                        let pinned = self.reg().pinned_paths(store.name())?;
                        let leases = (self.leases)()?;
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
                        self.refresh_playlists(&dirs)?;
                        // Durable before any unlink of the chunk: a kill -9 from here on
                        // leaves intents that the next start reconciles into audit records.
                        let now = self.clock.now();
                        let intents: Vec<Intent> =
                            chunk.iter().map(|a| intent_of(a, now, trigger)).collect();
                        let intents = ledger.write("deletion intents", |r| r.intend(&intents))?;
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
                            let outcome = match self.refusal(store, a, &checks, &mut in_use) {
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
                add_prune_candidates(self.prune, rt, store.name(), touched);
            }
            for remote in &rt.remotes {
                // A shared store's rules are the lease holder's alone.
                if !self
                    .fleet
                    .deletes_in(remote.name(), super::fleet::is_shared(rt, remote.name()))
                {
                    continue;
                }
                let mine: Vec<&policy::Action> = actions
                    .iter()
                    .filter(|a| a.entry.store == remote.name())
                    .filter(due)
                    .collect();
                for chunk in mine.chunks(remote::DELETE_CHUNK) {
                    let (gone, records) = {
                        // Held through the request: a pin set meanwhile waits and is
                        // honoured next pass.
                        let _gate = self.pin_gate.lock().expect("pin gate");
                        let pinned = self.reg().pinned_paths(remote.name())?;
                        let leases = (self.leases)()?;
                        let kept = (&pinned, &leases);
                        remote::delete(ledger, self.fleet, rt, remote, chunk, kept, report)?
                    };
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
        store: &LocalStore,
        a: &policy::Action,
        c: &Checks<'_>,
        in_use: &mut dyn FnMut(u64, u64) -> crate::store::local::Users,
    ) -> Option<String> {
        let mut g = Guarded {
            rt: self.rt,
            store,
            checks: c,
            in_use,
            classified: None,
            clock: self.clock,
            inuse: self.inuse,
            registry: self.registry,
            copies: &self.copies,
        };
        GUARDS.iter().find_map(|(_, guard)| guard(&mut g, a))
    }

    /// What the pass would do with each of `actions` now, changing nothing: the same checks
    /// in the same order, then the deleter's own (the planned version, not open by anyone
    /// by the `/proc` snapshot). S3 objects: `WouldDelete` unless pinned or leased.
    pub fn would(&self, actions: &[policy::Action]) -> Result<Vec<Outcome>> {
        self.would_unpinned(actions, &Default::default())
    }

    /// [`Executor::would`] as if the files in `unpin` (store, path) were not pinned: what
    /// `rm --force-retained --dry-run` says (the real run unpins them first).
    pub fn would_unpinned(
        &self,
        actions: &[policy::Action],
        unpin: &HashSet<(String, PathBuf)>,
    ) -> Result<Vec<Outcome>> {
        let rt = self.rt;
        let leases = (self.leases)()?;
        let mut users: Option<crate::inuse::Snapshot> = None;
        let mut in_use = |dev: u64, ino: u64| {
            let u = users.get_or_insert_with(crate::inuse::Snapshot::take);
            crate::store::local::Users {
                who: u.reason(dev, ino),
                blind_spot: u.blind_spot(),
            }
        };
        let mut per_store: HashMap<String, (HashSet<PathBuf>, HashSet<PathBuf>)> = HashMap::new();
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
        self.refresh_playlists(&dirs)?;
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
            out.push(match self.refusal(store, a, &checks, &mut in_use) {
                Some(why) => Outcome::Refused(why),
                None => store.would_delete(&a.entry.path, expect_of(a), &mut in_use),
            });
        }
        Ok(out)
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
