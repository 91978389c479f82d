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
