//! The operations behind every command — scan, plan, gc, explain, ls, retain, status,
//! reload — over one registry and one running config. The daemon serves them on its
//! control socket; without a daemon the CLI calls them directly (holding the state lock),
//! so both paths print the same thing.

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
use crate::inuse::leases::LeaseSet;
use crate::policy::{self, ClassPlanner, Plan, Rule, Verdict};
use crate::registry::{
    AuditRecord, ClassTotals, Entry, Filter, Intent, Lease, Registry, RegistryError,
};
use crate::scan::{self, ScanStats};
use crate::store::local::{Expect, LocalStore, Pruned, Recovered};
use crate::store::{Outcome, Store as _, StoreError, is_confined};
use crate::units::{ByteSize, Nanos, fmt_span, fmt_time};
use crate::watchdog::{VolumeSpec, VolumeWatch};

mod executor;
mod offload;
mod pressure;
mod remote;

pub use executor::refusal_kind;

pub use remote::fetch;

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
}

impl EngineError {
    /// The sysexits code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::BadInput(_) => crate::exit::DATAERR,
            EngineError::Config(_) | EngineError::Reload(_) | EngineError::Classify(_) => {
                crate::exit::CONFIG
            }
            EngineError::Registry(_) | EngineError::Store(_) => crate::exit::IOERR,
            EngineError::Forbidden(_) => crate::exit::NOPERM,
            EngineError::TooMany(_) => crate::exit::TEMPFAIL,
        }
    }
}

type Result<T> = std::result::Result<T, EngineError>;

/// A config with its compiled classifier and opened stores.
pub struct Runtime {
    /// The validated config.
    pub config: Config,
    /// Path → class.
    pub classifier: Classifier,
    /// Opened local stores, in config order.
    pub stores: Vec<LocalStore>,
    /// The volumes holding them, with their watchdog limits.
    pub volumes: Vec<(VolumeSpec, crate::config::Limits)>,
    /// S3 stores, in config order.
    pub remotes: Vec<Arc<crate::store::s3::S3Store>>,
}

impl Runtime {
    /// Opens every store of `config`.
    pub fn new(config: Config) -> Result<Runtime> {
        let stores = config
            .stores
            .iter()
            .filter(|s| s.is_local())
            .map(|s| LocalStore::open(&s.name, &s.root))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let volumes = crate::watchdog::volumes(&config)
            .into_iter()
            .map(|v| {
                let l = crate::watchdog::limits_of(&config, &v).clone();
                (v, l)
            })
            .collect();
        let remotes = config
            .stores
            .iter()
            .filter_map(|s| s.s3.as_ref().map(|loc| remote::open(&s.name, loc)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Runtime {
            classifier: Classifier::new(&config)?,
            config,
            stores,
            volumes,
            remotes,
        })
    }

    fn store(&self, name: &str) -> Option<&LocalStore> {
        self.stores.iter().find(|s| s.name() == name)
    }

    /// Resolves a CLI/API path argument: an absolute path inside a store root, or
    /// `STORE:KEY`. Anything else — or anything with `..` — is refused.
    pub fn resolve(&self, arg: &str) -> Result<(String, PathBuf)> {
        // An overlong argument is named by its start only.
        let shown: String = arg.chars().take(200).collect();
        let refuse = |why: &str| {
            EngineError::BadInput(format!(
                "{shown:?}{} {why}; give an absolute path inside a store root or STORE:KEY (stores: {})",
                if shown.len() < arg.len() { "…" } else { "" },
                self.stores
                    .iter()
                    .map(|s| format!("{}={}", s.name(), s.root().display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        // No file can have such a name: bad input, not an I/O failure further down.
        if arg.contains('\0') {
            return Err(refuse("contains a NUL byte"));
        }
        if arg.len() > libc::PATH_MAX as usize {
            return Err(refuse(&format!(
                "is longer than {} bytes (PATH_MAX)",
                libc::PATH_MAX
            )));
        }
        if arg.split('/').any(|c| c.len() > 255) {
            return Err(refuse("has a name longer than 255 bytes (NAME_MAX)"));
        }
        let p = Path::new(arg);
        if p.is_absolute() {
            if p.components().any(|c| matches!(c, Component::ParentDir)) {
                return Err(refuse("contains '..'"));
            }
            let hit = self
                .stores
                .iter()
                .filter_map(|s| p.strip_prefix(s.root()).ok().map(|rel| (s, rel)))
                .max_by_key(|(s, _)| s.root().as_os_str().len());
            return match hit {
                Some((s, rel)) if is_confined(rel) => Ok((s.name().to_string(), canonical(rel))),
                _ => Err(refuse("is not inside any store root")),
            };
        }
        if let Some((store, key)) = arg.split_once(':') {
            if self.store(store).is_none() && !self.remotes.iter().any(|r| r.name() == store) {
                return Err(refuse(&format!("names unknown store {store:?}")));
            }
            if !is_confined(Path::new(key)) {
                return Err(refuse("has a key that is not a plain relative path"));
            }
            return Ok((store.to_string(), canonical(Path::new(key))));
        }
        Err(refuse("is neither absolute nor STORE:KEY"))
    }
}

/// The one spelling of a confined relative path the registry uses: `a//b/./c/` → `a/b/c`,
/// so a pin or tag given with a stray slash lands on the file's own entry.
fn canonical(rel: &Path) -> PathBuf {
    rel.components().collect()
}

/// One file's result in a pass.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileResult {
    /// Store name.
    pub store: String,
    /// Relative path.
    pub path: PathBuf,
    /// Class.
    pub class: String,
    /// The rule that selected it.
    pub rule: Rule,
    /// Its size.
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
    pub millis: u64,
    /// When the next kept file becomes due by a time rule.
    pub next_due: Option<Nanos>,
    /// Open-file/lock snapshots taken during the pass.
    pub snapshots: u64,
    /// The slowest of them, in microseconds.
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
    /// Segments deleted (logged at debug, summed up once a minute).
    #[serde(skip)]
    pub churn_files: u64,
    /// Their bytes.
    #[serde(skip)]
    pub churn_bytes: u64,
}

/// What `explain` says about one path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Explanation {
    /// Store name.
    pub store: String,
    /// Relative path.
    pub path: PathBuf,
    /// Is a regular file there now?
    pub on_disk: bool,
    /// The registry entry, if any.
    pub entry: Option<Entry>,
    /// The matching class and the glob that matched.
    pub class: Option<ClassInfo>,
    /// The policy's verdict now (for classified entries).
    pub verdict: Option<Verdict>,
    /// Latest audit records, newest first.
    pub history: Vec<AuditRecord>,
    /// What uses it right now (open files, locks); a deletion is refused while any does.
    pub in_use: Vec<String>,
    /// Whether the disk-pressure watchdog may free it (and in which tier), or why not.
    pub pressure: Option<String>,
    /// Its offloads keep failing: the last failure and when it is tried again.
    #[serde(default)]
    pub offload_backoff: Option<String>,
    /// The answer in one sentence.
    pub summary: String,
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

/// A class as explained.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassInfo {
    /// The glob that matched.
    pub pattern: String,
    /// The class as configured.
    #[serde(flatten)]
    pub rules: Class,
}

/// Every in-use signal at one instant, for explain and ls: leases, open files and locks,
/// writers' temporary files, and (from the file's mtime) a class's quiet period.
struct Signals {
    leases: LeaseSet,
    users: crate::inuse::Snapshot,
    parts: HashMap<String, std::collections::HashSet<PathBuf>>,
    now: Nanos,
}

/// Longest lease a single call grants (a holder renews for longer).
const MAX_LEASE: std::time::Duration = std::time::Duration::from_secs(30 * 86400);

/// What an operator changes on paths.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// Pin (true) or unpin (false).
    Retain(bool),
    /// Add and remove free labels such as `event=match-42`.
    Tags {
        /// Tags to add.
        add: Vec<String>,
        /// Tags to remove.
        remove: Vec<String>,
    },
}

/// Checks a tag: non-empty, at most 128 bytes, no whitespace or control characters.
pub fn check_tag(t: &str) -> std::result::Result<(), String> {
    if t.is_empty() || t.len() > 128 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "bad tag {t:?}: 1 to 128 characters, no spaces (like event=match-42)"
        ));
    }
    Ok(())
}

/// The result of retain/unretain/tag for one path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MarkResult {
    /// The argument as given.
    pub arg: String,
    /// Resolved store.
    pub store: Option<String>,
    /// Resolved path.
    pub path: Option<PathBuf>,
    /// Whether anything changed.
    pub changed: bool,
    /// Set when the path was refused.
    pub error: Option<String>,
}

/// One volume holding local stores, in `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    /// Mount point.
    pub mount: PathBuf,
    /// The stores on it.
    pub stores: Vec<String>,
    /// Its `statvfs` now.
    pub sample: crate::watchdog::Sample,
    /// Used percentage (as `df`).
    pub used_pct: f64,
    /// Free inodes, percent (None: no inode limit).
    pub inodes_free_pct: Option<f64>,
    /// Its watchdog limits.
    pub limits: crate::config::Limits,
    /// Fill rate, bytes per second (a daemon's watchdog measures it).
    pub rate: Option<f64>,
    /// Seconds until full at that rate.
    pub time_to_full: Option<f64>,
    /// The watchdog's state (None: no daemon watching).
    pub state: Option<crate::watchdog::State>,
    /// What puts it under pressure now.
    pub triggers: Vec<String>,
    /// The newest pressure pass.
    pub last_pass: Option<crate::watchdog::PressureReport>,
    /// Stuck since.
    pub stuck_since: Option<Nanos>,
}

/// What the daemon (or a one-shot command) has been doing.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Activity {
    /// Running as a daemon.
    pub daemon: bool,
    /// Its pid.
    pub pid: u32,
    /// Since.
    pub started_at: Nanos,
    /// The last full scan finished at.
    pub last_scan_at: Option<Nanos>,
    /// What it found.
    pub last_scan: Vec<ScanStats>,
    /// The last lifecycle pass (without per-file results).
    pub last_pass: Option<GcReport>,
    /// Files deleted since start.
    pub deleted_files: u64,
    /// Bytes deleted since start.
    pub deleted_bytes: u64,
    /// The next scheduled pass.
    pub next_pass_at: Option<Nanos>,
    /// The last reload: (at, error if it was refused).
    pub last_reload: Option<(Nanos, Option<String>)>,
}

/// `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// The config file.
    pub config: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Activity.
    pub activity: Activity,
    /// Per store and class.
    pub classes: Vec<ClassTotals>,
    /// Per store volume.
    pub volumes: Vec<Volume>,
    /// Files whose offloads keep failing and wait before they are tried again.
    #[serde(default)]
    pub offload_backing_off: OffloadBackoff,
}

/// Offloads backing off after failures, in `status`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct OffloadBackoff {
    /// Files waiting.
    pub files: u64,
    /// The earliest time one is tried again.
    pub next: Option<Nanos>,
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
    pass: Mutex<()>,
    clock: Arc<dyn Clock>,
    activity: Mutex<Activity>,
    /// Held while pins are re-checked and a chunk is deleted, and while a pin is written.
    pin_gate: Mutex<()>,
    /// What live playlists referenced, remembered for their grace period.
    playlists: Mutex<crate::inuse::playlist::Memory>,
    /// A playlist arrived or changed through the watcher since playlists were last read:
    /// the next chunk reads them again, not up to a second later.
    playlists_dirty: std::sync::atomic::AtomicBool,
    /// Directories that may be empty: (store, dir), tried at the end of each pass.
    prune_candidates: Mutex<std::collections::BTreeSet<(String, PathBuf)>>,
    /// The watchdog's view of each volume, by device (filled by a daemon's watchdog).
    watch: Mutex<HashMap<u64, VolumeWatch>>,
    /// Segment deletions since the last summary: (since, files, bytes).
    churn: Mutex<(Instant, u64, u64)>,
    /// Asks the daemon for a lifecycle pass soon (a copy was found lost: copy it again).
    pass_soon: Arc<tokio::sync::Notify>,
    /// Held while a batch of offloads runs (outside the pass lock).
    offloading: Mutex<()>,
    /// Held while S3 stores are listed or their objects deleted (outside the pass lock).
    remote_pass: Mutex<()>,
    /// S3 stores that failed a copy check: when, and why.
    unanswered: Mutex<HashMap<String, (Instant, String)>>,
}

/// At most this many pruning candidates are remembered (the rest wait for a scan).
const MAX_PRUNE_CANDIDATES: usize = 100_000;

const CHUNK: usize = 512;
/// Segment deletions are summed up in one info line at most this often.
const CHURN_SUMMARY: std::time::Duration = std::time::Duration::from_secs(60);
/// A batch re-reads open files and locks when its snapshot is older than this.
const SNAPSHOT_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(50);

impl Engine {
    /// Opens the registry of `config` (the caller holds the state lock).
    pub fn open(config: Config, clock: Arc<dyn Clock>, daemon: bool) -> Result<Engine> {
        let mut registry = Registry::open(&config.daemon.state_dir)?;
        remote::sweep_staging(&config.daemon.state_dir.join("staging"));
        let runtime = Runtime::new(config)?;
        reconcile_after_crash(&runtime, &mut registry, clock.now())?;
        let activity = Activity {
            daemon,
            pid: std::process::id(),
            started_at: clock.now(),
            ..Default::default()
        };
        Ok(Engine {
            runtime: RwLock::new(Arc::new(runtime)),
            registry: Mutex::new(registry),
            pass: Mutex::new(()),
            clock,
            activity: Mutex::new(activity),
            pin_gate: Mutex::new(()),
            playlists: Mutex::new(Default::default()),
            playlists_dirty: std::sync::atomic::AtomicBool::new(false),
            prune_candidates: Mutex::new(Default::default()),
            watch: Mutex::new(HashMap::new()),
            pass_soon: Arc::new(tokio::sync::Notify::new()),
            churn: Mutex::new((Instant::now(), 0, 0)),
            offloading: Mutex::new(()),
            remote_pass: Mutex::new(()),
            unanswered: Mutex::new(HashMap::new()),
        })
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
            let mut st = scan::scan_store(s.name(), s.root(), &self.registry, &rt.classifier, now)?;
            self.add_prune_candidates(&rt, s.name(), std::mem::take(&mut st.empty_dirs));
            out.push(st);
        }
        drop(pass);
        let names: Vec<&str> = rt
            .stores
            .iter()
            .map(|s| s.name())
            .chain(rt.remotes.iter().map(|r| r.name()))
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

    /// The plan at `at`.
    pub fn plan(&self, at: Nanos) -> Result<Plan> {
        let rt = self.runtime();
        let reg = self.reg();
        Ok(policy::plan(&rt.config, at, |class, sink| {
            reg.for_each_in_class(&class.store, &class.name, class.age_from, &mut *sink)
        })?)
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
        let rt = self.runtime();
        let now = self.now();
        // Copies first, so that a file whose copy is verified now may go in this pass. They
        // run outside the pass lock — an upload of gigabytes must never hold up a disk-
        // pressure pass — under a lock of their own (one offload batch at a time).
        let mut offloads = GcReport::default();
        let mut planned_offloads = 0;
        if remote_part && !dry_run && rt.config.classes.iter().any(|c| c.offload.is_some()) {
            let _one = self.offloading.lock().expect("offload lock");
            // Only the offload classes: the pass plans everything again under its lock.
            let due = {
                let reg = self.reg();
                policy::plan_classes(
                    &rt.config,
                    now,
                    |c| c.offload.is_some(),
                    |class, sink| {
                        reg.for_each_in_class(&class.store, &class.name, class.age_from, &mut *sink)
                    },
                )?
                .offloads
            };
            planned_offloads = due.len() as u64;
            self.offload(&rt, &due, trigger, &mut offloads)?;
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
            planned_bytes: plan.delete_bytes(),
            // A lease running out may free a file the rules already selected.
            next_due: match (plan.next_due, self.lease_set()?.next_expiry()) {
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
                "blast-radius guard: the plan selects {} files ({}), more than max_delete_per_pass allows ({} files, {}); this pass stops after {} files — check the config, or raise the limit if this is expected",
                plan.actions.len(),
                ByteSize(report.planned_bytes),
                d.max_delete_files,
                d.max_delete_bytes,
                take
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
        if dry_run {
            let outcomes = self.would(&rt, actions)?;
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
        let (remote, local): (Vec<_>, Vec<_>) = actions
            .iter()
            .filter(|a| {
                let is_local = rt.store(&a.entry.store).is_some();
                (is_local && local_part) || (!is_local && remote_part)
            })
            .cloned()
            .partition(|a| rt.store(&a.entry.store).is_none());
        if local_part {
            self.execute(&rt, &local, trigger, detail, &mut report, None)?;
            report.pruned_dirs = self.prune(&rt, now);
        }
        drop(_pass);
        if !remote.is_empty() {
            let _remote = self.remote_pass.lock().expect("remote pass lock");
            self.execute(&rt, &remote, trigger, detail, &mut report, None)?;
        }
        let retention = rt.config.daemon.audit_retention.as_nanos_i64();
        let max = rt.config.daemon.audit_max_records;
        self.reg().prune_audit(now.saturating_sub(retention), max)?;
        // A backoff that ran out a day ago belongs to a file that is gone or fine again.
        self.reg()
            .prune_backoff(now.saturating_sub(86_400_000_000_000))?;
        report.millis = started.elapsed().as_millis() as u64;
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
        let notable = report.deleted_files > report.churn_files
            || report.failed > 0
            || report.refusals_started > 0;
        if report.planned_files > 0 && notable {
            info!(
                action = "pass",
                trigger,
                deleted = report.deleted_files,
                bytes = report.deleted_bytes,
                refused = report.refused,
                failed = report.failed,
                vanished = report.vanished,
                millis = report.millis,
                "lifecycle pass: {} deleted ({}), {} refused, {} failed, {} vanished",
                report.deleted_files,
                ByteSize(report.deleted_bytes),
                report.refused,
                report.failed,
                report.vanished
            );
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
        if rt
            .config
            .store(store)
            .is_some_and(|s| s.prune_empty_dirs.is_some())
        {
            let mut c = self.prune_candidates.lock().expect("prune lock");
            for d in dirs
                .into_iter()
                .take(MAX_PRUNE_CANDIDATES.saturating_sub(c.len()))
            {
                c.insert((store.to_string(), d));
            }
        }
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
                        info!(action = "rmdir", store = %store, path = %d.display(), "removed empty directory");
                    }
                    removed += dirs.len() as u64;
                    false
                }
            }
        });
        removed
    }

    /// Why `arg` is kept or when it goes; for a deleted path, when and why it went.
    pub fn explain(&self, arg: &str) -> Result<Explanation> {
        let rt = self.runtime();
        let (store, path) = rt.resolve(arg)?;
        let now = self.now();
        let on_disk = self.stat_any(&rt, &store, &path)?;
        let mut entry = self.reg().get(&store, &path)?;
        if let (None, Some(meta)) = (&entry, &on_disk) {
            // On disk but not yet seen (a scan or event is on its way): record it now.
            let class_of = |p: &Path| rt.classifier.classify(&store, p).map(str::to_string);
            self.reg()
                .upsert(&store, std::slice::from_ref(meta), now, &class_of)?;
            entry = self.reg().get(&store, &path)?;
        }
        let history = self.reg().history(&store, &path, 10)?;
        let m = rt.classifier.explain(&store, &path);
        let class = m
            .as_ref()
            .and_then(|m| rt.config.class(m.class))
            .map(|c| ClassInfo {
                pattern: m
                    .as_ref()
                    .map(|m| m.pattern.to_string())
                    .unwrap_or_default(),
                rules: c.clone(),
            });
        let mut pressure = None;
        let verdict = match (&entry, m.as_ref().and_then(|m| rt.config.class(m.class))) {
            (Some(e), Some(c)) => {
                pressure = Some(match policy::pressure::eligibility(c, e, now) {
                    Ok(tier) => {
                        format!("eligible in {tier}, oldest first; never while in use or retained")
                    }
                    Err(why) => why,
                });
                let mut planner = ClassPlanner::new(c, now);
                let mut found = None;
                self.reg()
                    .for_each_in_class(&store, &c.name, c.age_from, |x| {
                        if found.is_none() {
                            let v = planner.decide(&x);
                            if x.id == e.id {
                                found = Some(v);
                            }
                        }
                    })?;
                found
            }
            _ => None,
        };
        let in_use = match (&on_disk, rt.store(&store)) {
            (Some(_), Some(local)) => self.in_use_reasons(&rt, &self.signals(&rt)?, local, &path),
            // An object: only a lease says it is in use.
            (Some(_), None) => self.lease_set()?.holders(&store, &path),
            (None, _) => Vec::new(),
        };
        let mut summary = summarize(
            &store,
            &entry,
            &class,
            &verdict,
            &history,
            on_disk.is_some(),
            now,
        );
        if !in_use.is_empty() {
            summary = format!(
                "IN USE ({}): the next pass refuses to delete it while it is in use. By the rules alone: {}",
                in_use.join(", "),
                summary.trim_end_matches("; the next pass deletes it unless it is in use then")
            );
        }
        let offload_backoff = self
            .backing_off(&store, &path)
            .map(|b| format!("{} (at {})", b.last, fmt_time(b.next)));
        Ok(Explanation {
            store,
            path,
            on_disk: on_disk.is_some(),
            entry,
            class,
            verdict,
            history,
            in_use,
            pressure,
            offload_backoff,
            summary,
        })
    }

    /// Reads every in-use signal now (playlists refreshed if stale).
    fn signals(&self, rt: &Runtime) -> Result<Signals> {
        self.refresh_playlists(rt, &[])?;
        let parts = rt
            .stores
            .iter()
            .map(|st| Ok((st.name().to_string(), self.part_files(rt, st.name())?)))
            .collect::<Result<_>>()?;
        Ok(Signals {
            leases: self.lease_set()?,
            users: crate::inuse::Snapshot::take(),
            parts,
            now: self.now(),
        })
    }

    /// Why `path` of `store` is in use now, in words (empty: it is not).
    fn in_use_reasons(
        &self,
        rt: &Runtime,
        sig: &Signals,
        store: &LocalStore,
        path: &Path,
    ) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        let name = store.name();
        let mut why = sig.leases.holders(name, path);
        if let Ok(md) = std::fs::symlink_metadata(store.root().join(path)) {
            why.extend(
                sig.users
                    .users(md.dev(), md.ino())
                    .iter()
                    .map(|u| u.to_string()),
            );
            let quiet = rt
                .classifier
                .classify(name, path)
                .and_then(|c| rt.config.class(c))
                .map(|c| c.quiet_period);
            let since = sig
                .now
                .saturating_sub(md.mtime() * 1_000_000_000 + md.mtime_nsec());
            if let Some(q) = quiet.filter(|q| since < q.as_nanos_i64()) {
                why.push(format!(
                    "still being written (modified {} ago, within quiet_period {q})",
                    fmt_span(since)
                ));
            }
        }
        why.extend(self.playlist_reason(rt, name, path));
        if let Some(parts) = sig.parts.get(name) {
            let names = &mut |d, i| crate::store::local::Users {
                who: sig.users.reason(d, i),
                blind_spot: None,
            };
            why.extend(self.writer_reason(rt, store, path, parts, names));
        }
        why
    }

    /// Re-reads the media playlists of stores whose classes protect playlist references,
    /// if any of them changed since the last reading or that reading is older than a second.
    /// (A reading kept for a second regardless once let a pass delete the segments a muxer
    /// had listed since.)
    /// `dirs` are directories (store, path) about to lose files: their playlists are found
    /// on disk too, so one the registry has not heard of yet (its event is still queued, or
    /// the start-up walk missed it) protects what it lists all the same.
    fn refresh_playlists(&self, rt: &Runtime, dirs: &[(&str, &Path)]) -> Result<()> {
        let now = self.now();
        // Taken before the registry is read: a playlist registered after this is either
        // read now or marks the next refresh.
        let dirty = self
            .playlists_dirty
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        for store in &rt.stores {
            let protects = rt
                .config
                .classes
                .iter()
                .any(|c| c.store == store.name() && c.protect_playlist_refs);
            if !protects {
                continue;
            }
            let mut on_disk: Vec<PathBuf> = dirs
                .iter()
                .filter(|(s, _)| *s == store.name())
                .flat_map(|(_, d)| store.names_ending(d, ".m3u8"))
                .collect();
            on_disk.sort();
            on_disk.dedup();
            let fresh = !dirty
                && self
                    .playlists
                    .lock()
                    .expect("playlists")
                    .fresh(store, &on_disk, now);
            if fresh {
                continue;
            }
            let mut lists = self.reg().paths_ending(store.name(), ".m3u8")?;
            lists.extend(on_disk);
            lists.sort();
            lists.dedup();
            self.playlists
                .lock()
                .expect("playlists")
                .refresh(store, lists, now);
        }
        Ok(())
    }

    /// The registry's files of `store` that carry a writer's temporary suffix of any class.
    fn part_files(&self, rt: &Runtime, store: &str) -> Result<std::collections::HashSet<PathBuf>> {
        let mut suffixes: Vec<&String> = rt
            .config
            .classes
            .iter()
            .filter(|c| c.store == store)
            .flat_map(|c| &c.part_suffixes)
            .collect();
        suffixes.sort();
        suffixes.dedup();
        let mut parts = std::collections::HashSet::new();
        for suf in suffixes {
            parts.extend(self.reg().paths_ending(store, suf)?);
        }
        Ok(parts)
    }

    /// Why the final name `path` is in use: a live writer is still writing `path` + a
    /// temporary suffix (it is quiet-period fresh, or `users` names a holder of it).
    fn writer_reason(
        &self,
        rt: &Runtime,
        store: &LocalStore,
        path: &Path,
        parts: &std::collections::HashSet<PathBuf>,
        users: &mut dyn FnMut(u64, u64) -> crate::store::local::Users,
    ) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let class = rt
            .classifier
            .classify(store.name(), path)
            .and_then(|c| rt.config.class(c))?;
        for suf in &class.part_suffixes {
            let mut name = path.as_os_str().to_os_string();
            name.push(suf);
            let part = PathBuf::from(name);
            if !parts.contains(&part) {
                continue;
            }
            let Ok(md) = std::fs::symlink_metadata(store.root().join(&part)) else {
                continue;
            };
            let since = self
                .now()
                .saturating_sub(md.mtime() * 1_000_000_000 + md.mtime_nsec());
            if since < class.quiet_period.as_nanos_i64() {
                return Some(format!(
                    "its writer is still writing {} (modified {} ago)",
                    part.display(),
                    fmt_span(since)
                ));
            }
            if let Some(who) = users(md.dev(), md.ino()).who {
                return Some(format!(
                    "its writer is still writing {} ({who})",
                    part.display()
                ));
            }
        }
        None
    }

    /// Why a playlist keeps `path` of `store` in use (for classes that protect references).
    fn playlist_reason(&self, rt: &Runtime, store: &str, path: &Path) -> Option<String> {
        let class = rt
            .classifier
            .classify(store, path)
            .and_then(|c| rt.config.class(c))?;
        if !class.protect_playlist_refs {
            return None;
        }
        self.playlists
            .lock()
            .expect("playlists")
            .reason(store, path, self.now())
    }

    /// The active leases, compiled.
    pub fn lease_set(&self) -> Result<LeaseSet> {
        let now = self.now();
        Ok(LeaseSet::new(self.reg().leases(now)?))
    }

    /// Takes a lease on a path or glob (`STORE:hls/s1/**`, `/abs/root/hls/s1/*.ts`) for `ttl`.
    /// A glob covers files that appear later too.
    /// A socket client (`Caller::Client`) holds at most `max_leases_per_uid` at a time.
    pub fn lease(
        &self,
        arg: &str,
        ttl: crate::units::Dur,
        holder: &str,
        caller: Caller,
    ) -> Result<Lease> {
        if ttl.0.is_zero() || ttl.0 > MAX_LEASE {
            return Err(EngineError::BadInput(format!(
                "lease ttl {ttl} must be above 0s and at most 30d (renew for longer)"
            )));
        }
        if holder.is_empty() || holder.len() > 64 || holder.chars().any(char::is_control) {
            return Err(EngineError::BadInput(
                "lease holder must be 1 to 64 printable characters".into(),
            ));
        }
        let rt = self.runtime();
        let glob = arg.contains(['*', '?', '[', '{']);
        let (store, rel) = rt.resolve(arg)?;
        let pattern = rel.to_string_lossy().into_owned();
        if glob {
            crate::config::glob_set(std::slice::from_ref(&pattern)).map_err(|e| {
                EngineError::BadInput(format!("bad glob {pattern:?}: {}", e.kind()))
            })?;
        }
        let now = self.now();
        // Like a pin: no chunk is between its re-check and its unlinks while a lease lands.
        let _gate = self.pin_gate.lock().expect("pin gate");
        if let Caller::Client(uid) = caller {
            let max = u64::from(rt.config.daemon.max_leases_per_uid);
            if self.reg().count_leases(uid, now)? >= max {
                return Err(EngineError::TooMany(format!(
                    "uid {uid} already holds {max} active leases (max_leases_per_uid); release some first"
                )));
            }
        }
        let lease = self.reg().add_lease(Lease {
            id: 0,
            store: store.clone(),
            pattern,
            glob,
            holder: holder.to_string(),
            created: now,
            expires: now.saturating_add(ttl.as_nanos_i64()),
            owner: Some(caller.owner_uid()),
        })?;
        info!(action = "lease", owner = caller.owner_uid(), store = %store, path = %lease.pattern, holder, lease = lease.id, "lease {} on {store}:{} by {holder} until {}", lease.id, lease.pattern, fmt_time(lease.expires));
        Ok(lease)
    }

    /// Extends lease `id` to `ttl` from now.
    pub fn renew(&self, id: i64, ttl: crate::units::Dur, caller: Caller) -> Result<Lease> {
        if ttl.0.is_zero() || ttl.0 > MAX_LEASE {
            return Err(EngineError::BadInput(format!(
                "lease ttl {ttl} must be above 0s and at most 30d"
            )));
        }
        let now = self.now();
        self.check_lease_owner(id, now, caller)?;
        self.reg()
            .renew_lease(id, now.saturating_add(ttl.as_nanos_i64()), now)?
            .ok_or_else(|| {
                EngineError::BadInput(format!("no active lease {id} (expired or released)"))
            })
    }

    /// Ends lease `id`.
    pub fn release(&self, id: i64, caller: Caller) -> Result<()> {
        self.check_lease_owner(id, self.now(), caller)?;
        if !self.reg().release_lease(id)? {
            return Err(EngineError::BadInput(format!(
                "no active lease {id} (expired or released)"
            )));
        }
        info!(action = "release", lease = id, "lease {id} released");
        Ok(())
    }

    /// A socket client may renew and release only the leases it took.
    fn check_lease_owner(&self, id: i64, now: Nanos, caller: Caller) -> Result<()> {
        let Caller::Client(uid) = caller else {
            return Ok(());
        };
        match self.reg().lease_owner(id, now)? {
            Some(owner) if owner != Some(uid) => Err(EngineError::Forbidden(format!(
                "lease {id} was taken by another user; uid {uid} may renew and release only its own leases"
            ))),
            _ => Ok(()),
        }
    }

    /// Active leases.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let now = self.now();
        Ok(self.reg().leases(now)?)
    }

    /// Entries for `ls`; with `in_use`, only those in use now, each with its reasons.
    pub fn ls(&self, filter: &Filter, in_use: bool) -> Result<Vec<Entry>> {
        // With --in-use the limit applies to what is in use, not to what is looked at.
        let unlimited = Filter {
            limit: None,
            ..filter.clone()
        };
        let mut entries = self.reg().list(if in_use { &unlimited } else { filter })?;
        if in_use {
            let rt = self.runtime();
            let signals = self.signals(&rt)?;
            entries.retain_mut(|e| {
                let Some(local) = rt.store(&e.store) else {
                    return false;
                };
                e.in_use = self.in_use_reasons(&rt, &signals, local, &e.path);
                !e.in_use.is_empty()
            });
            entries.truncate(filter.limit.map_or(usize::MAX, |l| l as usize));
        }
        Ok(entries)
    }

    /// Pins, unpins or tags each path; every argument gets its own result.
    pub fn mark(&self, args: &[String], mark: &Mark, trigger: &str) -> Result<Vec<MarkResult>> {
        let rt = self.runtime();
        let now = self.now();
        if let Mark::Tags { add, remove } = mark
            && let Some(bad) = add.iter().chain(remove).find_map(|t| check_tag(t).err())
        {
            return Err(EngineError::BadInput(bad));
        }
        let mut out = Vec::new();
        for arg in args {
            let result = |store: Option<String>,
                          path: Option<PathBuf>,
                          changed,
                          error: Option<String>| MarkResult {
                arg: arg.clone(),
                store,
                path,
                changed,
                error,
            };
            let (store, path) = match rt.resolve(arg) {
                Ok(x) => x,
                Err(e) => {
                    out.push(result(None, None, false, Some(e.to_string())));
                    continue;
                }
            };
            let on_disk = self.stat_any(&rt, &store, &path)?;
            let known = self.reg().get(&store, &path)?.is_some();
            let unpinning = matches!(mark, Mark::Retain(false));
            if !known && !unpinning {
                // Marks need the file: record it now if it is on disk but not yet seen.
                let Some(meta) = on_disk else {
                    out.push(result(
                        Some(store),
                        Some(path),
                        false,
                        Some("no such file in the store".into()),
                    ));
                    continue;
                };
                let class_of = |p: &Path| rt.classifier.classify(&store, p).map(str::to_string);
                self.reg()
                    .upsert(&store, std::slice::from_ref(&meta), now, &class_of)?;
            }
            let (changed, action, reason) = match mark {
                Mark::Retain(pin) => {
                    let _gate = self.pin_gate.lock().expect("pin gate");
                    // Looked at again under the gate: a pass may have deleted it meanwhile.
                    if *pin && self.stat_any(&rt, &store, &path)?.is_none() {
                        let why =
                            "no such file in the store (see `explain` if it was just deleted)";
                        out.push(result(Some(store), Some(path), false, Some(why.into())));
                        continue;
                    }
                    let changed = self.reg().set_retained(&store, &path, *pin, now)?;
                    if *pin {
                        (changed, "retain", "pinned by an operator".to_string())
                    } else {
                        (
                            changed,
                            "unretain",
                            "pin removed by an operator".to_string(),
                        )
                    }
                }
                Mark::Tags { add, remove } => {
                    let changed = self
                        .reg()
                        .set_tags(&store, &path, add, remove)?
                        .unwrap_or(false);
                    (
                        changed,
                        "tag",
                        format!("tags +[{}] -[{}]", add.join(" "), remove.join(" ")),
                    )
                }
            };
            if changed {
                info!(action, store = %store, path = %path.display(), reason = %reason, trigger, "{action} {store}:{}", path.display());
                let rec = AuditRecord {
                    at: now,
                    store: store.clone(),
                    path: path.clone(),
                    action: action.into(),
                    outcome: "done".into(),
                    class: rt.classifier.classify(&store, &path).map(str::to_string),
                    rule: None,
                    reason,
                    trigger: trigger.into(),
                    bytes: None,
                };
                self.reg().record(&[], &[rec])?;
            }
            out.push(result(Some(store), Some(path), changed, None));
        }
        Ok(out)
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
            let m3u8 = |p: &Path| p.extension().is_some_and(|x| x == "m3u8");
            if seen.iter().any(|f| m3u8(&f.path)) {
                self.playlists_dirty
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        Ok(effect)
    }

    /// Volumes, classes and activity.
    pub fn status(&self) -> Result<Status> {
        let rt = self.runtime();
        let now = self.now();
        let watch = self.watch.lock().expect("watch lock");
        let volumes = rt
            .volumes
            .iter()
            .filter_map(|(v, limits)| {
                let sample = crate::watchdog::Sample::read(&v.probe, now).ok()?;
                let w = watch.get(&v.dev);
                let rate = w.and_then(|w| w.rate.rate());
                Some(Volume {
                    mount: v.mount.clone(),
                    stores: v.stores.clone(),
                    used_pct: sample.used_pct(),
                    inodes_free_pct: sample.inodes_free_pct(),
                    limits: limits.clone(),
                    rate,
                    time_to_full: crate::watchdog::time_to_full(&sample, rate),
                    state: w.map(|w| w.state),
                    triggers: crate::watchdog::triggers(limits, &sample, rate)
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    last_pass: w.and_then(|w| w.last_pass.clone()),
                    stuck_since: w.and_then(|w| w.stuck_since),
                    sample,
                })
            })
            .collect();
        drop(watch);
        let (files, next) = self.reg().backoff_census(now)?;
        Ok(Status {
            config: rt.config.path.clone(),
            state_dir: rt.config.daemon.state_dir.clone(),
            activity: self.activity.lock().expect("activity lock").clone(),
            classes: self.reg().totals()?,
            volumes,
            offload_backing_off: OffloadBackoff { files, next },
        })
    }

    /// What the engine has been doing.
    pub fn activity(&self) -> Activity {
        self.activity.lock().expect("activity lock").clone()
    }

    /// Records when the next pass is due (for `status`).
    pub fn set_next_pass(&self, at: Option<Nanos>) {
        self.activity.lock().expect("activity lock").next_pass_at = at;
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
            let rt = Arc::new(Runtime::new(config)?);
            let _pass = self.pass.lock().expect("pass lock");
            *self.runtime.write().expect("runtime lock") = rt.clone();
            let changed = self
                .reg()
                .reclassify(&|s, p| rt.classifier.classify(s, p).map(str::to_string))?;
            Ok(changed)
        })();
        self.note_reload(now, outcome.as_ref().err().map(|e| e.to_string()));
        outcome
    }

    /// Records the outcome of a reload attempt (for `status`).
    pub fn note_reload(&self, at: Nanos, error: Option<String>) {
        if let Some(e) = &error {
            error!(action = "reload", reason = %e, "reload refused; the running config stays");
        }
        self.activity.lock().expect("activity lock").last_reload = Some((at, error));
    }
}

/// Settles what a crash (kill -9, power cut) interrupted: files left in a store's trash
/// directory and deletion intents without an outcome. A file an intent names that is gone
/// (or is no longer the inode that was checked) is audited as deleted; one still there is
/// dropped from the intents, and the next pass decides about it again.
fn reconcile_after_crash(rt: &Runtime, reg: &mut Registry, now: Nanos) -> Result<()> {
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
                            info!(action = "delete", store = store.name(), path = %p.display(), "removed the checked file an interrupted deletion had moved to the trash")
                        }
                        Recovered::Restored(p) => {
                            info!(action = "restore", store = store.name(), path = %p.display(), "put back a file an interrupted deletion had moved to the trash")
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
        let Some(local) = rt.store(&i.store) else {
            // The store left the config: nothing to look at any more.
            settled.push(i.id);
            continue;
        };
        let still_there = match local.stat(&i.path) {
            Ok(m) => m.is_some_and(|m| m.ino == i.ino),
            Err(e) => {
                warn!(store = %i.store, path = %i.path.display(), error = %e, "cannot check a deletion interrupted by a crash; it is checked again at the next start");
                continue;
            }
        };
        settled.push(i.id);
        if still_there {
            continue;
        }
        info!(action = "delete", store = %i.store, path = %i.path.display(), "reconciled a deletion interrupted by a crash");
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
    reg.settle_intents(&settled, &gone, &records)?;
    Ok(())
}

fn file_result(a: &policy::Action, result: Outcome) -> FileResult {
    FileResult {
        store: a.entry.store.clone(),
        path: a.entry.path.clone(),
        class: a.class_name.clone(),
        rule: a.rule,
        bytes: a.entry.size,
        result,
        reason: a.reason.clone(),
    }
}

fn summarize(
    store: &str,
    entry: &Option<Entry>,
    class: &Option<ClassInfo>,
    verdict: &Option<Verdict>,
    history: &[AuditRecord],
    on_disk: bool,
    now: Nanos,
) -> String {
    let deleted = history
        .iter()
        .find(|h| h.action == "delete" && h.outcome == "deleted");
    if !on_disk {
        return match deleted {
            Some(h) => format!(
                "deleted at {} by class {}, rule {} (trigger: {}): {}",
                fmt_time(h.at),
                h.class.as_deref().unwrap_or("?"),
                h.rule.as_deref().unwrap_or("?"),
                h.trigger,
                h.reason
            ),
            None if entry.is_some() => {
                "in the registry but no longer on disk; the next scan forgets it".into()
            }
            None => "not on disk, and mediaretain never deleted it".into(),
        };
    }
    let Some(class) = class else {
        return format!("matches no class of store {store:?}: mediaretain never touches it");
    };
    match verdict {
        Some(Verdict::Delete { rule, reason }) => {
            format!(
                "eligible now (class {}, {rule}): {reason}; the next pass deletes it unless it is in use then",
                class.rules.name
            )
        }
        Some(Verdict::Keep {
            reason,
            eligible_at: Some(t),
        }) => format!(
            "kept (class {}): {reason}; becomes eligible at {} (in {})",
            class.rules.name,
            fmt_time(*t),
            fmt_span(t - now)
        ),
        Some(Verdict::Keep {
            reason,
            eligible_at: None,
        }) => {
            let retained = entry.as_ref().is_some_and(|e| e.retained);
            if retained {
                format!(
                    "kept (class {}): {reason}; never deleted automatically until unretained",
                    class.rules.name
                )
            } else {
                format!(
                    "kept (class {}): {reason}; no time rule applies, it goes only when newer files push it past a budget",
                    class.rules.name
                )
            }
        }
        None => format!("class {}; not yet in the registry", class.rules.name),
    }
}
