//! `status`: volumes against their marks, classes, activity (passes, reloads, next pass),
//! offload backoff — what the daemon has been doing, in one answer.

use super::*;

impl Engine {
    /// Volumes, classes and activity.
    pub fn status(&self) -> Result<Status> {
        let rt = self.runtime();
        let now = self.now();
        let watch = self.watch.lock().expect("watch lock");
        let volumes = rt
            .volumes
            .iter()
            .filter_map(|(v, limits)| {
                let w = watch.get(&v.dev);
                let mut vol = volume_now(v, limits, now, w.and_then(|w| w.rate.rate()))?;
                vol.state = w.map(|w| crate::watchdog::shown_state(w.state, limits, &vol.sample));
                vol.last_pass = w.and_then(|w| w.last_pass.clone());
                vol.stuck_since = w.and_then(|w| w.stuck_since);
                Some(vol)
            })
            .collect();
        drop(watch);
        let (files, next) = self.reg().backoff_census(now)?;
        let mut unwritable_stores = unwritable_stores(&rt.config);
        unwritable_stores.retain(|u| rt.missing(&u.store).is_none());
        // Before the registry's lock is taken below: a resume corrects the registry.
        let clock_jumped = self.clock_jump();
        Ok(Status {
            config: rt.config.path.clone(),
            state_dir: rt.config.daemon.state_dir.clone(),
            activity: self.activity.lock().expect("activity lock").clone(),
            classes: self.reg().totals()?,
            volumes,
            offload_backing_off: OffloadBackoff { files, next },
            unwritable_stores,
            missing_stores: rt.missing.clone(),
            stream_writers: self.stream_conflicts(),
            clock_jumped,
            leases: self.inuse.lease_stats(self.lease_now()),
            fleet: self.fleet.report(),
        })
    }

    /// What a box's fleet status object says (src/fleet/status.rs): the few parts of
    /// `status` that cost no registry scan — no class totals, no statvfs — so a heartbeat
    /// holds the registry's lock for one small query only.
    pub fn fleet_facts(&self) -> Result<FleetFacts> {
        let now = self.now();
        let rt = self.runtime();
        let watch = self.watch.lock().expect("watch lock");
        let stuck_volumes = rt
            .volumes
            .iter()
            .filter_map(|(v, _)| {
                let since = watch.get(&v.dev)?.stuck_since?;
                Some((v.mount.clone(), since))
            })
            .collect();
        drop(watch);
        let clock_jumped = self.clock_jump();
        let (offload_backing_off, _) = self.reg().backoff_census(now)?;
        Ok(FleetFacts {
            activity: self.activity(),
            offload_backlog: (
                self.metrics.offload_backlog_files.get().max(0) as u64,
                self.metrics.offload_backlog_bytes.get().max(0) as u64,
            ),
            offload_backing_off,
            stuck_volumes,
            clock_jumped,
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

    /// Records the outcome of a reload attempt (for `status`).
    pub fn note_reload(&self, at: Nanos, error: Option<String>) {
        self.metrics.reload(error.is_none());
        if let Some(e) = &error {
            // The reason in the MESSAGE itself: a plain `journalctl -u mediaretain` shows
            // fields of no entry, and the reason (FILE:LINE:COL) is what the operator needs.
            error!(action = "reload", reason = %e, "reload refused; the running config stays: {e}");
        }
        self.activity.lock().expect("activity lock").last_reload = Some(Reload { at, error });
    }
}

/// What a box's fleet status object says, from [`Engine::fleet_facts`].
#[derive(Debug, Clone)]
pub struct FleetFacts {
    /// What the daemon has been doing.
    pub activity: Activity,
    /// What the last offload batch left waiting: files and bytes.
    pub offload_backlog: (u64, u64),
    /// Files whose offloads failed and wait before they are tried again.
    pub offload_backing_off: u64,
    /// Stuck volumes: mount point and since when.
    pub stuck_volumes: Vec<(PathBuf, Nanos)>,
    /// The wall clock's jump in force.
    pub clock_jumped: Option<crate::clock::ClockJump>,
}

/// Volume `v` as `statvfs` has it now (None: it cannot be read), at fill `rate`; nothing
/// of a watchdog's state.
fn volume_now(
    v: &crate::watchdog::VolumeSpec,
    limits: &crate::config::Limits,
    now: Nanos,
    rate: Option<f64>,
) -> Option<Volume> {
    let sample = crate::watchdog::Sample::read(&v.probe, now).ok()?;
    Some(Volume {
        mount: v.mount.clone(),
        stores: v.stores.clone(),
        used_pct: sample.used_pct(),
        inodes_free_pct: sample.inodes_free_pct(),
        limits: limits.clone(),
        rate,
        time_to_full: crate::watchdog::time_to_full(&sample, rate).map(|secs| {
            crate::units::Dur(std::time::Duration::from_secs(secs.max(0.0).round() as u64))
        }),
        state: None,
        triggers: crate::watchdog::triggers(limits, &sample, rate)
            .iter()
            .map(ToString::to_string)
            .collect(),
        last_pass: None,
        stuck_since: None,
        sample,
    })
}

/// `status` from the config alone, for when there is no daemon and the registry cannot be
/// opened here (another user's state directory): the volumes of the configured stores and
/// the roots that cannot be written; no classes, no activity.
pub fn status_without_registry(config: &crate::config::Config, now: Nanos) -> Status {
    let volumes = crate::watchdog::volumes(config)
        .iter()
        .filter_map(|v| volume_now(v, crate::watchdog::limits_of(config, v), now, None))
        .collect();
    Status {
        config: config.path.clone(),
        state_dir: config.daemon.state_dir.clone(),
        activity: Activity::default(),
        classes: Vec::new(),
        volumes,
        offload_backing_off: OffloadBackoff::default(),
        unwritable_stores: unwritable_stores(config),
        // Without the registry, what a root was when last used is not known.
        missing_stores: config
            .stores
            .iter()
            .filter(|s| s.is_local())
            .filter_map(|s| {
                crate::store::local::find_root(&s.root, s.require_mount, None)
                    .err()
                    .map(|absent| super::MissingStore {
                        store: s.name.clone(),
                        root: s.root.clone(),
                        absent,
                    })
            })
            .collect(),
        stream_writers: Vec::new(),
        clock_jumped: None,
        leases: Default::default(),
        fleet: Vec::new(),
    }
}

/// The local stores of `config` whose roots this process cannot write.
pub fn unwritable_stores(config: &crate::config::Config) -> Vec<UnwritableStore> {
    config
        .stores
        .iter()
        .filter(|s| s.is_local())
        // A root that is not there is a missing store, said as such.
        .filter(|s| s.root.exists())
        .filter_map(|s| {
            crate::store::local::unwritable(&s.root).map(|u| UnwritableStore {
                store: s.name.clone(),
                root: s.root.clone(),
                error: u.error,
                hint: u.hint,
            })
        })
        .collect()
}

/// A local store whose root the daemon (or a one-shot command) cannot write: nothing in
/// it can be deleted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnwritableStore {
    /// The store.
    pub store: String,
    /// Its root.
    #[serde(with = "crate::spell::serde_path")]
    pub root: PathBuf,
    /// The error ("Read-only file system").
    pub error: String,
    /// What to do (names `ReadWritePaths=`).
    pub hint: String,
}

/// One volume holding local stores, in `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    /// Mount point.
    #[serde(with = "crate::spell::serde_path")]
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
    /// How long until full at that rate, to the second ("3h 20m 5s").
    pub time_to_full: Option<crate::units::Dur>,
    /// The watchdog's state (None: no daemon watching).
    pub state: Option<crate::watchdog::State>,
    /// What puts it under pressure now.
    pub triggers: Vec<String>,
    /// The newest pressure pass.
    pub last_pass: Option<crate::watchdog::PressureReport>,
    /// Stuck since.
    #[serde(with = "crate::units::rfc3339_opt")]
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
    #[serde(with = "crate::units::rfc3339")]
    pub started_at: Nanos,
    /// The last full scan finished at.
    #[serde(with = "crate::units::rfc3339_opt")]
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
    #[serde(with = "crate::units::rfc3339_opt")]
    pub next_pass_at: Option<Nanos>,
    /// The last reload attempt.
    pub last_reload: Option<Reload>,
}

/// A reload attempt, in `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reload {
    /// When.
    #[serde(with = "crate::units::rfc3339")]
    pub at: Nanos,
    /// Why it was refused (None: the new config runs).
    pub error: Option<String>,
}

/// `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// The config file.
    #[serde(with = "crate::spell::serde_path")]
    pub config: PathBuf,
    /// The state directory.
    #[serde(with = "crate::spell::serde_path")]
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
    /// Local stores whose roots cannot be written (nothing in them can be deleted).
    #[serde(default)]
    pub unwritable_stores: Vec<UnwritableStore>,
    /// Local stores whose roots are missing or not mounted (left alone until they are back).
    #[serde(default)]
    pub missing_stores: Vec<super::MissingStore>,
    /// Streams written by two or more writers at once (classes with `stream`).
    #[serde(default)]
    pub stream_writers: Vec<crate::inuse::streams::StreamConflict>,
    /// The wall clock found jumped: time-based deletions hold (None: it is steady).
    #[serde(default)]
    pub clock_jumped: Option<crate::clock::ClockJump>,
    /// Active leases, and how often their set was compiled (once per change, not per
    /// pass or chunk).
    #[serde(default)]
    pub leases: crate::inuse::leases::LeaseStats,
    /// Each S3 store's place in a fleet: its claim (and any conflict found), a shared
    /// store's rules lease (a daemon's; empty for one-shot commands).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fleet: Vec<crate::fleet::StoreFleet>,
}

/// Offloads backing off after failures, in `status`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct OffloadBackoff {
    /// Files waiting.
    pub files: u64,
    /// The earliest time one is tried again.
    #[serde(with = "crate::units::rfc3339_opt")]
    pub next: Option<Nanos>,
}
