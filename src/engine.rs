//! The operations behind every command — scan, plan, gc, explain, ls, retain, status,
//! reload — over one registry and one running config. The daemon serves them on its
//! control socket; without a daemon the CLI calls them directly (holding the state lock),
//! so both paths print the same thing.
//!
//! This file is the engine's state ([`Engine`], its errors and reports), the pass itself
//! (`gc_scoped`: scan, plan, execute, prune) and the thin methods that hand the executor,
//! the ledger, offload, remote and dedupe only the state each uses (`executor`, `ledger`,
//! `offloader`, …), about 950 lines; each other operation lives in its own file under
//! engine/ (the map is the `mod` list below).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::access::Caller;
use crate::classify::Classifier;
use crate::clock::Clock;
use crate::config::{AgeFrom, Class, Config, ConfigError};
use crate::inuse::InUse;
use crate::inuse::leases::LeaseSet;
use crate::policy::{self, Plan, Rule, Verdict};
use crate::registry::{
    AuditRecord, ClassTotals, Entry, FileMeta, Filter, Intent, Lease, Registry, RegistryError,
};
use crate::scan::{self, ScanStats};
use crate::store::local::{LocalStore, Pruned, Recovered};
use crate::store::s3::S3Store;
use crate::store::{Outcome, Store as _, StoreError, is_confined};
use crate::units::{ByteSize, Nanos, fmt_span, fmt_time};
use crate::watchdog::{VolumeSpec, VolumeWatch};

mod clockwatch;
mod dedupe;
mod executor;
mod explain;
mod facts;
mod failing;
mod fleet;
mod history;
mod index;
mod ledger;
mod marks;
mod offload;
mod pressure;
mod recover;
mod remote;
mod rm;
mod roots;
mod runtime;
mod s3io;
mod scrape;
mod status;
mod streams;

pub use executor::refusal_kind;

pub use dedupe::{DupeCopy, DupeGroup, Dupes, HashStats, Hasher};
pub use explain::{ClassInfo, Explanation};
pub use facts::{Announced, Claim, fact_tag};
pub use history::{History, HistoryRequest};
pub use index::ChangeEffect;
pub use marks::{Mark, MarkResult, check_tag};
pub use remote::{fetch, open as open_s3};
pub use rm::{RM_TRIGGER, RemovedDir, RmReport, RmRequest};
pub use runtime::{MissingStore, Runtime};
pub use s3io::io as s3_io;
pub use status::{
    Activity, FleetFacts, OffloadBackoff, Reload, Status, UnwritableStore, Volume,
    status_without_registry, unwritable_stores,
};

/// Failures of an operation; each maps to a sysexits code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad input: a path outside every store, a malformed tag.
    #[error("{0}")]
    BadInput(String),
    /// A reload was refused; the running config stays.
    #[error("reload refused, the running config stays: {0}")]
    Reload(String),
    /// The new config is invalid; the running config stays.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The caller may not do this (a socket client and another uid's lease).
    #[error("{0}")]
    Forbidden(String),
    /// The caller holds too much already (a socket client's lease limit).
    #[error("{0}")]
    TooMany(String),
    /// Class globs that cannot be compiled.
    #[error(transparent)]
    Classify(#[from] crate::classify::ClassifyError),
    /// The path is in a local store whose root is missing or not mounted.
    #[error("{0}")]
    StoreAbsent(String),
}

impl EngineError {
    /// The sysexits code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::BadInput(_) => crate::exit::DATAERR,
            EngineError::Config(_) | EngineError::Reload(_) | EngineError::Classify(_) => {
                crate::exit::CONFIG
            }
            // Lost, foreign or damaged: a restart fails the same way; an operator runs
            // `registry recover` or `reset` (the unit does not restart on DATAERR).
            EngineError::Registry(e) if e.needs_operator() => crate::exit::DATAERR,
            EngineError::Registry(_) | EngineError::Store(_) => crate::exit::IOERR,
            EngineError::Forbidden(_) => crate::exit::NOPERM,
            EngineError::TooMany(_) => crate::exit::TEMPFAIL,
            EngineError::StoreAbsent(_) => crate::exit::UNAVAILABLE,
        }
    }
}

type Result<T> = std::result::Result<T, EngineError>;

/// One file's result in a pass.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileResult {
    /// Store name.
    pub store: String,
    /// Relative path.
    #[serde(with = "crate::spell::serde_path")]
    pub path: PathBuf,
    /// Its class (None: no class matches, a file named by `rm`).
    pub class: Option<String>,
    /// The rule that selected it.
    pub rule: Rule,
    /// Its size (`size`, as every file object says it).
    #[serde(rename = "size")]
    pub bytes: u64,
    /// What happened.
    pub result: Outcome,
    /// Why it was selected.
    pub reason: String,
}

/// The report of one lifecycle pass.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct GcReport {
    /// Planned at.
    #[serde(with = "crate::units::rfc3339")]
    pub at: Nanos,
    /// Nothing was changed.
    pub dry_run: bool,
    /// What started it.
    pub trigger: String,
    /// Files the plan selected.
    pub planned_files: u64,
    /// Bytes the plan selected.
    pub planned_bytes: u64,
    /// Deleted and verified gone.
    pub deleted_files: u64,
    /// Bytes of those.
    pub deleted_bytes: u64,
    /// Refused with a reason.
    pub refused: u64,
    /// Bytes of those.
    pub refused_bytes: u64,
    /// Attempted and failed.
    pub failed: u64,
    /// Gone before we acted.
    pub vanished: u64,
    /// Set when the blast-radius guard stopped the pass.
    pub guard: Option<String>,
    /// Empty directories removed.
    pub pruned_dirs: u64,
    /// Wall time.
    #[serde(rename = "took", with = "crate::units::millis")]
    pub millis: u64,
    /// When the next kept file becomes due by a time rule.
    #[serde(with = "crate::units::rfc3339_opt")]
    pub next_due: Option<Nanos>,
    /// Open-file/lock snapshots taken during the pass.
    pub snapshots: u64,
    /// The slowest of them, in microseconds.
    #[serde(rename = "snapshot_max", with = "crate::units::micros")]
    pub snapshot_max_us: u64,
    /// Per file (empty in summaries).
    pub results: Vec<FileResult>,
    /// When the first file was unlinked.
    #[serde(skip)]
    pub first_unlink: Option<Instant>,
    /// Offloads the plan selected.
    #[serde(default)]
    pub planned_offloads: u64,
    /// Files copied to an S3 store and verified.
    #[serde(default)]
    pub offloaded_files: u64,
    /// Their bytes.
    #[serde(default)]
    pub offloaded_bytes: u64,
    /// Offloads that failed (the local file stays).
    #[serde(default)]
    pub offload_failed: u64,
    /// Offloads put off (in use, changed).
    #[serde(default)]
    pub offload_refused: u64,
    /// Offloads not tried this pass: their file's earlier offloads failed (backing off).
    #[serde(default)]
    pub offload_backing_off: u64,
    /// Refusals that started (or changed kind) this pass; the others continue an episode.
    #[serde(default)]
    pub refusals_started: u64,
    /// Registry entries the plan read (a pass with nothing due reads a few per class that
    /// only its time limit thins, whatever their size: the cost check counts it).
    #[serde(default)]
    pub entries_read: u64,
    /// Bytes of the deletions that failed (the pressure pass's STUCK breakdown).
    #[serde(skip)]
    pub failed_bytes: u64,
    /// Why the first deletion that failed failed (the cause a STUCK alarm names).
    #[serde(skip)]
    pub first_failure: Option<String>,
    /// Refused because in use, by (store, class): the `in_use_files` metric.
    #[serde(skip)]
    pub in_use: std::collections::HashMap<(String, String), u64>,
    /// Per lease id, the (files, bytes) its lease kept (refused for it alone or with
    /// others): what STUCK names.
    #[serde(skip)]
    pub leases_kept: std::collections::BTreeMap<i64, (u64, u64)>,
    /// Per lease id, the (files, bytes) deleted although it covered them (a socket
    /// client's lease giving way to disk pressure).
    #[serde(skip)]
    pub leases_gave_way: std::collections::BTreeMap<i64, (u64, u64)>,
    /// Failures that started (or changed error) this pass; the others continue an episode.
    #[serde(default)]
    pub failures_started: u64,
    /// Deletions not tried this pass: their file's earlier deletions failed (backing off).
    #[serde(default)]
    pub backing_off: u64,
    /// Refused because their directory's playlist changed and this pass's budget left it
    /// unread: another pass is asked for within seconds.
    #[serde(skip)]
    pub playlist_waits: u64,
    /// Segments deleted (logged at debug, summed up once a minute).
    #[serde(skip)]
    pub churn_files: u64,
    /// Their bytes.
    #[serde(skip)]
    pub churn_bytes: u64,
}

/// Which part of a lifecycle pass to run (see [`Engine::gc_scoped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Offloads, local deletions, S3 deletions.
    All,
    /// Local deletions only: nothing waits on the network.
    Local,
    /// Offloads and S3 deletions only.
    Remote,
}

/// The engine: registry + running config + activity.
pub struct Engine {
    runtime: RwLock<Arc<Runtime>>,
    registry: Mutex<Registry>,
    /// The registry's database file, for the connections of their own that the hasher
    /// and the metrics' totals open (without taking the mutex to ask for it).
    registry_path: PathBuf,
    pass: Mutex<()>,
    clock: Arc<dyn Clock>,
    /// The wall clock watched against `CLOCK_BOOTTIME`: time-based deletions hold while it
    /// is found jumped.
    clock_watch: clockwatch::Watch,
    activity: Mutex<Activity>,
    /// Held while pins are re-checked and a chunk is deleted, and while a pin is written.
    pin_gate: Mutex<()>,
    /// Every in-use signal's state between passes (what live playlists listed).
    inuse: InUse,
    /// Directories that may be empty: (store, dir), tried at the end of each pass.
    prune_candidates: Mutex<std::collections::BTreeSet<(String, PathBuf)>>,
    /// The watchdog's view of each volume, by device (filled by a daemon's watchdog).
    watch: Mutex<HashMap<u64, VolumeWatch>>,
    /// Segment deletions since the last summary: (since, files, bytes).
    churn: Mutex<(Instant, u64, u64)>,
    /// Asks the daemon for a lifecycle pass soon (a copy was found lost: copy it again).
    pass_soon: Arc<tokio::sync::Notify>,
    /// Offloading's own state: one batch at a time, the stores that did not answer.
    offload: offload::State,
    /// Held while S3 stores are listed or their objects deleted (outside the pass lock).
    remote_pass: Mutex<()>,
    /// Prometheus counters (see [`crate::metrics`]).
    metrics: crate::metrics::Metrics,
    /// How far the current scan or pass has come (shown by one-shot commands).
    progress: Arc<crate::progress::Progress>,
    /// Two writers on one stream: the conflicts in force.
    stream_alarms: Mutex<crate::inuse::streams::Alarms>,
    /// File versions the hasher could not read; not retried.
    unreadable: dedupe::Unreadable,
    /// Space kept in the state directory, given back when the registry's disk is full.
    reserve: crate::reserve::Reserve,
    /// Files whose deletion failed, backing off (see [`failing`]).
    failing: Mutex<failing::Failing>,
    /// A scan found a store's root moved (unmounted): [`Engine::check_roots`] rebuilds.
    roots_changed: std::sync::atomic::AtomicBool,
    /// Each S3 store's claim and each shared store's rules lease (a daemon's; see
    /// [`crate::fleet`]).
    fleet: crate::fleet::Fleet,
}

/// At most this many pruning candidates are remembered (the rest wait for a scan).
const MAX_PRUNE_CANDIDATES: usize = 100_000;

const CHUNK: usize = 512;
/// Segment deletions are summed up in one info line at most this often.
const CHURN_SUMMARY: std::time::Duration = std::time::Duration::from_secs(60);
/// A batch re-reads open files and locks when its snapshot is older than this.
const SNAPSHOT_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(50);

/// Class `c` of `config`, or a 4xx error naming the classes there are (and the nearest).
pub(crate) fn known_class<'c>(config: &'c Config, c: &str) -> Result<&'c Class> {
    config.class(c).ok_or_else(|| {
        let names = config.classes.iter().map(|k| k.name.as_str());
        let hint = crate::config::did_you_mean(c, names.clone())
            .map(|k| format!("; did you mean {k:?}?"))
            .unwrap_or_default();
        let all: Vec<&str> = names.collect();
        EngineError::BadInput(format!(
            "unknown class {c:?}{hint} (classes: {})",
            all.join(", ")
        ))
    })
}

impl Engine {
    /// Opens the registry of `config` (the caller holds the state lock).
    pub fn open(config: Config, clock: Arc<dyn Clock>, daemon: bool) -> Result<Engine> {
        let reserve = crate::reserve::Reserve::new(&config.daemon.state_dir, daemon);
        // A start on a full disk: the reserve makes room for the registry's first writes.
        let mut registry = match Registry::open(&config.daemon.state_dir) {
            Err(e) if crate::reserve::is_disk_full(&e) && reserve.release().is_some() => {
                error!(action = "reserve", path = %reserve.path().display(), error = %e,
                    "the registry's disk is full: released the space reserve to open it");
                Registry::open(&config.daemon.state_dir)?
            }
            r => r?,
        };
        remote::sweep_staging(&config.daemon.state_dir.join("staging"));
        let last = roots::last_roots(&mut registry, &config)?;
        let runtime = Runtime::new(config, &last)?;
        roots::log_changes(None, &runtime);
        roots::remember(&mut registry, &runtime, clock.now());
        // Before anything is decided by the clock (the crash leftovers' records included).
        let (clock_watch, jumped) = clockwatch::Watch::open(&runtime.config, &registry, &*clock)?;
        recover::reconcile_after_crash(&runtime, &mut registry, clock.now())?;
        if let Err(e) = reserve.ensure() {
            warn!(action = "reserve", error = %e, "cannot keep a space reserve for the registry; on a full disk its writes may fail");
        }
        let activity = Activity {
            daemon,
            pid: std::process::id(),
            started_at: clock.now(),
            ..Default::default()
        };
        let engine = Engine {
            runtime: RwLock::new(Arc::new(runtime)),
            registry_path: registry.path().to_path_buf(),
            registry: Mutex::new(registry),
            pass: Mutex::new(()),
            clock,
            clock_watch,
            activity: Mutex::new(activity),
            pin_gate: Mutex::new(()),
            inuse: InUse::default(),
            prune_candidates: Mutex::new(Default::default()),
            watch: Mutex::new(HashMap::new()),
            pass_soon: Arc::new(tokio::sync::Notify::new()),
            churn: Mutex::new((Instant::now(), 0, 0)),
            offload: Default::default(),
            remote_pass: Mutex::new(()),
            metrics: Default::default(),
            progress: Default::default(),
            stream_alarms: Mutex::new(Default::default()),
            unreadable: Default::default(),
            reserve,
            failing: Mutex::new(Default::default()),
            roots_changed: Default::default(),
            fleet: Default::default(),
        };
        if let Some(ev) = jumped {
            engine.clock_event(ev, engine.now(), "daemon");
        }
        Ok(engine)
    }

    /// How far the current scan or pass has come.
    pub fn progress(&self) -> Arc<crate::progress::Progress> {
        self.progress.clone()
    }

    /// The Prometheus counters.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The running config.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.read().expect("runtime lock").clone()
    }

    /// Notified when the engine wants a lifecycle pass soon (the daemon waits on it; a
    /// released lease notifies it too).
    pub fn pass_soon(&self) -> Arc<tokio::sync::Notify> {
        self.pass_soon.clone()
    }

    /// The registry (for the watch applier).
    pub fn registry(&self) -> &Mutex<Registry> {
        &self.registry
    }

    /// Now, by the engine's clock.
    pub fn now(&self) -> Nanos {
        self.clock.now()
    }

    fn reg(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().expect("registry lock")
    }

    /// Hashes the files of dedupe classes that have a same-size sibling and no hash of
    /// their current version, until done or `stop` is set (see [`dedupe::hash_pending`]).
    pub fn hash_pending(&self, stop: &std::sync::atomic::AtomicBool) -> Result<HashStats> {
        let rt = self.runtime();
        dedupe::hash_pending(
            &rt,
            &self.registry_path,
            &self.unreadable,
            &*self.clock,
            stop,
        )
    }

    /// The groups of identical files (of `class`, or of every dedupe class), each copy with
    /// what the plan does with it now.
    pub fn dupes(&self, class: Option<&str>) -> Result<Dupes> {
        dedupe::dupes(&self.runtime(), &self.registry, self.now(), class)
    }

    /// What the executor sees of the engine, for deletions (or a dry run) under `rt`.
    fn executor<'a>(&'a self, rt: &'a Runtime) -> executor::Executor<'a> {
        executor::Executor {
            rt,
            registry: &self.registry,
            clock: &*self.clock,
            inuse: &self.inuse,
            leases: Box::new(|| self.lease_set()),
            pin_gate: &self.pin_gate,
            copies: self.offloader(),
            fleet: &self.fleet,
            prune: &self.prune_candidates,
        }
    }

    /// Where deletions started by `trigger` are recorded (`detail`: every file in the
    /// report).
    fn ledger<'a>(&'a self, trigger: &'a str, detail: bool) -> ledger::Ledger<'a> {
        ledger::Ledger {
            registry: &self.registry,
            reserve: &self.reserve,
            runtime: &self.runtime,
            metrics: &self.metrics,
            progress: &self.progress,
            failing: &self.failing,
            clock: &*self.clock,
            trigger,
            detail,
        }
    }

    /// What offloads and copy checks see of the engine.
    fn offloader(&self) -> offload::Offloader<'_> {
        offload::Offloader {
            registry: &self.registry,
            state: &self.offload,
            clock: &*self.clock,
            metrics: &self.metrics,
            pass_soon: &self.pass_soon,
        }
    }

    /// When the next offload of `store:path` may be tried, if it is backing off.
    fn backing_off(&self, store: &str, path: &Path) -> Option<offload::Backoff> {
        self.offloader().backing_off(store, path)
    }

    /// The file or object at `path` of `store` now (local: no symlink followed).
    fn stat_any(&self, rt: &Runtime, store: &str, path: &Path) -> Result<Option<FileMeta>> {
        remote::stat(rt, store, path)
    }

    /// Lists S3 store `remote` into the registry (see [`remote::scan`]).
    fn scan_remote(&self, rt: &Runtime, remote: &S3Store, now: Nanos) -> ScanStats {
        remote::scan(&self.registry, &self.metrics, &self.fleet, rt, remote, now)
    }

    /// Probes every S3 store's capabilities and logs them (the daemon's start-up).
    pub fn probe_remotes(&self) {
        remote::probe(&self.runtime(), &self.fleet, &self.metrics)
    }

    /// The plan at `at` (time rules held while the wall clock is found jumped).
    pub fn plan(&self, at: Nanos) -> Result<Plan> {
        let hold = self.time_hold();
        let rt = self.runtime();
        let reg = self.reg();
        // By windows: a class that only its time limit can thin reads the entries past
        // the limit and a few younger ones, not all of them (policy::plan_windowed).
        Ok(policy::plan_windowed(
            &rt.config,
            at,
            hold.as_deref(),
            // A store whose root is missing or not mounted: nothing of it is decided.
            |c| rt.missing(&c.store).is_none(),
            |class, window, sink| {
                reg.for_each_in_window(&class.store, &class.name, class.age_from, window, sink)
            },
            |class| reg.class_census(&class.store, &class.name),
            |class| dedupe::groups_in(&rt, &reg, class),
        )?)
    }

    /// The plan at `at`, each action saying whether the pass would refuse it now (what
    /// `plan` prints: the same answer as `gc --dry-run` and the pass).
    pub fn plan_checked(&self, at: Nanos) -> Result<Plan> {
        // Read-only, and it may ask S3 servers (copies): not under the pass lock, which a
        // disk-pressure pass must always get quickly.
        let rt = self.runtime();
        let mut plan = self.plan(at)?;
        let outcomes = self.executor(&rt).would(&plan.actions)?;
        for (a, o) in plan.actions.iter_mut().zip(outcomes) {
            if let Outcome::Refused(why) = o {
                a.would_refuse = Some(why);
            }
        }
        Ok(plan)
    }

    /// One lifecycle pass now: plan, then for each selected file re-check, delete, verify
    /// and audit. At most the blast-radius guard's worth of files and bytes. With `detail`
    /// the report lists every file's result (the audit trail and log always do).
    pub fn gc(&self, dry_run: bool, trigger: &str, detail: bool) -> Result<GcReport> {
        self.gc_scoped(dry_run, trigger, detail, Scope::All)
    }

    /// [`Engine::gc`] limited to `scope`: the daemon runs the local part in its loop and
    /// the network part (offloads, S3 deletions) beside it, so that a hung server never
    /// holds up a local pass.
    pub fn gc_scoped(
        &self,
        dry_run: bool,
        trigger: &str,
        detail: bool,
        scope: Scope,
    ) -> Result<GcReport> {
        let (local_part, remote_part) = match scope {
            Scope::All => (true, true),
            Scope::Local => (true, false),
            Scope::Remote => (false, true),
        };
        let started = Instant::now();
        self.progress.start("planning", None, false);
        let rt = self.runtime();
        let now = self.now();
        // Copies first, so that a file whose copy is verified now may go in this pass. They
        // run outside the pass lock — an upload of gigabytes must never hold up a disk-
        // pressure pass — under a lock of their own (one offload batch at a time).
        let mut offloads = GcReport::default();
        let mut planned_offloads = 0;
        if remote_part && !dry_run && rt.config.classes.iter().any(|c| c.offload.is_some()) {
            let _one = self.offload.one_batch();
            // Only the offload classes: the pass plans everything again under its lock.
            let hold = self.time_hold();
            let due = {
                let reg = self.reg();
                policy::plan_classes_held(
                    &rt.config,
                    now,
                    hold.as_deref(),
                    |c| c.offload.is_some() && rt.missing(&c.store).is_none(),
                    |class, sink| {
                        reg.for_each_in_class(&class.store, &class.name, class.age_from, &mut *sink)
                    },
                    |_| Ok(Vec::new()),
                )?
                .offloads
            };
            planned_offloads = due.len() as u64;
            let leases = || self.lease_set();
            (self.offloader()).run(&rt, &due, trigger, &mut offloads, &leases, &self.fleet)?;
        }
        let _pass = self.pass.lock().expect("pass lock");
        let plan = self.plan(self.now())?;
        if dry_run {
            planned_offloads = plan.offloads.len() as u64;
        }
        let mut report = GcReport {
            at: now,
            dry_run,
            trigger: trigger.into(),
            planned_offloads,
            offloaded_files: offloads.offloaded_files,
            offloaded_bytes: offloads.offloaded_bytes,
            offload_failed: offloads.offload_failed,
            offload_refused: offloads.offload_refused,
            offload_backing_off: offloads.offload_backing_off,
            planned_files: plan.actions.len() as u64,
            entries_read: plan.read,
            planned_bytes: plan.delete_bytes(),
            // A lease running out may free a file the rules already selected (its expiry
            // is on the leases' time: said on the wall clock's, which the daemon waits by).
            next_due: match (
                plan.next_due,
                self.lease_set()?
                    .next_expiry()
                    .map(|t| t.saturating_add(self.now().saturating_sub(self.lease_now()))),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            ..Default::default()
        };
        let d = &rt.config.daemon;
        let (mut take, mut bytes) = (0usize, 0u64);
        for a in &plan.actions {
            if take as u64 >= d.max_delete_files || bytes + a.entry.size > d.max_delete_bytes.0 {
                break;
            }
            take += 1;
            bytes += a.entry.size;
        }
        if take < plan.actions.len() {
            let msg = format!(
                "blast-radius guard: the plan selects {} ({}), more than max_delete_per_pass allows ({}, {}); this pass stops after {} — check the config, or raise the limit if this is expected",
                crate::units::plural(plan.actions.len() as u64, "file"),
                ByteSize(report.planned_bytes),
                crate::units::plural(d.max_delete_files, "file"),
                d.max_delete_bytes,
                crate::units::plural(take as u64, "file")
            );
            warn!(
                action = "guard",
                planned = plan.actions.len(),
                limit = d.max_delete_files,
                "{msg}"
            );
            report.guard = Some(msg);
        }
        let actions = &plan.actions[..take];
        self.progress.start(
            if dry_run { "checking" } else { "deleting" },
            Some(take as u64),
            false,
        );
        if dry_run {
            let outcomes = self.executor(&rt).would(actions)?;
            report.results = actions
                .iter()
                .zip(outcomes)
                .map(|(a, o)| {
                    if matches!(o, Outcome::Refused(_)) {
                        report.refused += 1;
                        report.refused_bytes += a.entry.size;
                    }
                    file_result(a, o)
                })
                .collect();
            report.millis = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        // Local files under the pass lock; objects after it, under a lock of their own, so
        // that a slow or unreachable S3 server never holds up a disk-pressure pass.
        // A pass of local files only (the usual one) hands its actions over as planned: a
        // copy of each planned action was held beside the plan for the whole pass.
        let all_local = actions.iter().all(|a| rt.store(&a.entry.store).is_some());
        let (remote, local_copy): (Vec<_>, Vec<_>) = if all_local {
            (Vec::new(), Vec::new())
        } else {
            actions
                .iter()
                .filter(|a| {
                    let is_local = rt.store(&a.entry.store).is_some();
                    (is_local && local_part) || (!is_local && remote_part)
                })
                .cloned()
                .partition(|a| rt.store(&a.entry.store).is_none())
        };
        let local: &[policy::Action] = match (all_local, local_part) {
            (true, true) => actions,
            (true, false) => &[],
            (false, _) => &local_copy,
        };
        // Empty directories go by age too: not while the clock is held.
        let held = self.time_hold();
        if local_part {
            let ledger = self.ledger(trigger, detail);
            (self.executor(&rt)).execute(&ledger, local, &mut report, None, false)?;
            if held.is_none() {
                report.pruned_dirs = self.prune(&rt, now);
            }
            self.metrics.in_use_after_pass(&rt.config, &report.in_use);
        }
        drop(_pass);
        if !remote.is_empty() {
            let _remote = self.remote_pass.lock().expect("remote pass lock");
            let ledger = self.ledger(trigger, detail);
            (self.executor(&rt)).execute(&ledger, &remote, &mut report, None, false)?;
        }
        let retention = rt.config.daemon.audit_retention.as_nanos_i64();
        let max = rt.config.daemon.audit_max_records;
        // By age only by a clock that is not found jumped (the history of what was
        // deleted before a jump is what an operator needs); by count always.
        let before = match held {
            None => now.saturating_sub(retention),
            Some(_) => Nanos::MIN,
        };
        self.reg().prune_audit(before, max)?;
        if held.is_none() {
            // A backoff that ran out a day ago belongs to a file that is gone or fine again.
            self.reg()
                .prune_backoff(now.saturating_sub(86_400_000_000_000))?;
        }
        report.millis = started.elapsed().as_millis() as u64;
        self.metrics
            .pass(scope.into(), started.elapsed().as_secs_f64());
        // Segment churn is summed up once a minute; a pass is worth an info line only when
        // it did something beyond that (deleted other files, failed, a refusal started).
        let minute = {
            let mut c = self.churn.lock().expect("churn lock");
            c.1 += report.churn_files;
            c.2 += report.churn_bytes;
            (c.1 > 0 && c.0.elapsed() >= CHURN_SUMMARY).then(|| {
                let done = (c.0.elapsed(), c.1, c.2);
                *c = (Instant::now(), 0, 0);
                done
            })
        };
        if let Some((over, files, bytes)) = minute {
            info!(
                action = "delete-segments",
                files,
                bytes,
                "deleted {files} segments ({}) in the last {}s",
                ByteSize(bytes),
                over.as_secs()
            );
        }
        // A failure that continues its episode (the same error after a backoff) was said.
        let notable = report.deleted_files > report.churn_files
            || report.failures_started > 0
            || report.refusals_started > 0;
        if report.planned_files > 0 && notable {
            info!(
                action = "pass",
                trigger,
                deleted = report.deleted_files,
                bytes = report.deleted_bytes,
                refused = report.refused,
                failed = report.failed,
                backing_off = report.backing_off,
                vanished = report.vanished,
                millis = report.millis,
                "lifecycle pass: {} deleted ({}), {} refused, {} failed, {} vanished{}",
                report.deleted_files,
                ByteSize(report.deleted_bytes),
                report.refused,
                report.failed,
                report.vanished,
                match report.backing_off {
                    0 => String::new(),
                    n => format!(", {n} backing off after failures"),
                }
            );
        }
        // A playlist the budget left unread protects its whole directory: a refused file
        // there is decided by another pass in seconds, not at gc_interval.
        if local_part && report.playlist_waits > 0 {
            debug!("playlists left unread by this pass's budget; another pass soon");
            self.pass_soon.notify_one();
        }
        let results = std::mem::take(&mut report.results);
        let summary = report.clone();
        report.results = results;
        let mut a = self.activity.lock().expect("activity lock");
        a.deleted_files += report.deleted_files;
        a.deleted_bytes += report.deleted_bytes;
        if local_part {
            a.last_pass = Some(summary);
        }
        Ok(report)
    }

    fn add_prune_candidates(&self, rt: &Runtime, store: &str, dirs: Vec<PathBuf>) {
        add_prune_candidates(&self.prune_candidates, rt, store, dirs);
    }

    /// Removes candidate directories that are empty and past their store's grace period.
    fn prune(&self, rt: &Runtime, now: Nanos) -> u64 {
        let mut removed = 0;
        let mut cands = self.prune_candidates.lock().expect("prune lock");
        cands.retain(|(store, dir)| {
            let (Some(local), Some(grace)) = (rt.store(store), rt.config.store(store).and_then(|s| s.prune_empty_dirs))
            else {
                return false;
            };
            match local.prune(dir, now.saturating_sub(grace.as_nanos_i64())) {
                Pruned::TooYoung => true,
                Pruned::Done => false,
                Pruned::Removed(dirs) => {
                    for d in &dirs {
                        info!(action = "rmdir", store = %store, path = %crate::spell::show(d), "removed empty directory");
                    }
                    removed += dirs.len() as u64;
                    false
                }
            }
        });
        removed
    }

    /// Every in-use signal now, for `explain` and `ls`.
    fn signals(&self, rt: &Runtime) -> Result<crate::inuse::Signals> {
        // Leases on their own time: a jumped wall clock never ends one. Playlists and
        // writers compare with files' times, which the kernel stamps by the wall clock.
        let lease_now = self.lease_now();
        let now = self.now();
        Ok(self
            .inuse
            .signals(&self.registry, &rt.config, &rt.stores, now, lease_now)?)
    }

    /// Swaps in `config` after validating what cannot change at runtime; re-classifies
    /// every entry. On error the running config stays.
    pub fn reload(&self, config: Config) -> Result<usize> {
        let now = self.now();
        let outcome = (|| {
            let cur = self.runtime();
            if config.daemon.state_dir != cur.config.daemon.state_dir {
                return Err(EngineError::Reload(
                    "state_dir cannot change while running; restart the service".into(),
                ));
            }
            if config.daemon.socket != cur.config.daemon.socket {
                return Err(EngineError::Reload(
                    "socket cannot change while running; restart the service".into(),
                ));
            }
            if config.daemon.socket_group != cur.config.daemon.socket_group {
                return Err(EngineError::Reload(
                    "socket_group cannot change while running; restart the service".into(),
                ));
            }
            // The receiver's socket is bound at start: a reload that moved it (or dropped
            // its token while it listens beyond loopback) would leave the old socket open
            // under the new rules.
            let listen = |c: &Config| c.hooks.as_ref().map(|h| h.listen);
            if listen(&config) != listen(&cur.config) {
                return Err(EngineError::Reload(
                    "[hooks] listen cannot change (nor [hooks] come or go) while running; restart the service".into(),
                ));
            }
            let last = roots::last_roots(&mut self.reg(), &config)?;
            let rt = Arc::new(Runtime::new(config, &last)?);
            let _pass = self.pass.lock().expect("pass lock");
            roots::log_changes(Some(&cur), &rt);
            roots::remember(&mut self.reg(), &rt, now);
            *self.runtime.write().expect("runtime lock") = rt.clone();
            let changed = self
                .reg()
                .reclassify(&|s, p| rt.classifier.classify(s, p).map(str::to_string))?;
            Ok(changed)
        })();
        self.note_reload(now, outcome.as_ref().err().map(reload_reason));
        outcome
    }
}

/// Why a reload was refused, without the "reload refused" its error message begins with
/// (the log line, `status` and the client say that themselves).
pub fn reload_reason(e: &EngineError) -> String {
    match e {
        EngineError::Reload(m) => m.clone(),
        e => e.to_string(),
    }
}

/// Remembers `dirs` of `store` among the pruning candidates `cands` if its empty
/// directories are pruned (at most [`MAX_PRUNE_CANDIDATES`]).
fn add_prune_candidates(
    cands: &Mutex<std::collections::BTreeSet<(String, PathBuf)>>,
    rt: &Runtime,
    store: &str,
    dirs: Vec<PathBuf>,
) {
    if rt
        .config
        .store(store)
        .is_some_and(|s| s.prune_empty_dirs.is_some())
    {
        let mut c = cands.lock().expect("prune lock");
        for d in dirs
            .into_iter()
            .take(MAX_PRUNE_CANDIDATES.saturating_sub(c.len()))
        {
            c.insert((store.to_string(), d));
        }
    }
}

/// The intent of deleting planned file or object `a`, made durable before the unlink or the
/// DeleteObjects call.
fn intent_of(a: &policy::Action, now: Nanos, trigger: &str) -> Intent {
    Intent {
        id: 0,
        at: now,
        store: a.entry.store.clone(),
        path: a.entry.path.clone(),
        entry_id: a.entry.id,
        ino: a.entry.ino,
        size: a.entry.size,
        mtime: a.entry.mtime,
        class: (!a.class_name.is_empty()).then(|| a.class_name.clone()),
        rule: Some(a.rule.to_string()),
        reason: a.reason.clone(),
        trigger: trigger.into(),
    }
}

/// One planned file's result in a report.
fn file_result(a: &policy::Action, result: Outcome) -> FileResult {
    FileResult {
        store: a.entry.store.clone(),
        path: a.entry.path.clone(),
        class: (!a.class_name.is_empty()).then(|| a.class_name.clone()),
        rule: a.rule,
        bytes: a.entry.size,
        result,
        reason: a.reason.clone(),
    }
}

impl From<Scope> for crate::metrics::PassKind {
    fn from(s: Scope) -> Self {
        use crate::metrics::PassKind;
        match s {
            Scope::Local => PassKind::Local,
            Scope::Remote => PassKind::Remote,
            Scope::All => PassKind::All,
        }
    }
}
