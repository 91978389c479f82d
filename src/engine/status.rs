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

    /// Records the outcome of a reload attempt (for `status`).
    pub fn note_reload(&self, at: Nanos, error: Option<String>) {
        if let Some(e) = &error {
            error!(action = "reload", reason = %e, "reload refused; the running config stays");
        }
        self.activity.lock().expect("activity lock").last_reload = Some((at, error));
    }
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
}

/// Offloads backing off after failures, in `status`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct OffloadBackoff {
    /// Files waiting.
    pub files: u64,
    /// The earliest time one is tried again.
    pub next: Option<Nanos>,
}
