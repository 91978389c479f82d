//! What a Prometheus scrape reads from the engine: the counters of [`crate::metrics`] and,
//! computed at scrape time, every gauge — volumes, classes' totals (cached; read again in
//! the background), the last pass, leases, the clock, S3 stores, the process — each family a
//! few lines of registration, about 400 in all (docs/metrics.md lists them). Serving the
//! answer is `control/metrics.rs`'; `status` (status.rs) is the same state for people.

use super::*;

impl Engine {
    /// Reads the class totals again (the registry's grouped query, on a connection of its
    /// own: passes and scrapes do not wait for it) for the metrics.
    pub fn refresh_totals(&self) {
        let last_scan = self.activity().last_scan_at;
        match crate::registry::Registry::totals_apart(&self.registry_path) {
            Ok(v) => self.metrics.set_totals(last_scan, v),
            Err(e) => tracing::warn!(error = %e, "cannot read the class totals for the metrics"),
        }
    }

    /// `GET /metrics`: the counters and, computed now, the gauges (see [`crate::metrics`]),
    /// in the Prometheus text exposition format, and whether the class totals it used are
    /// stale (the caller reads them again in the background: [`Engine::refresh_totals`]).
    /// Reads no file list.
    pub fn metrics_text(&self) -> Result<(String, bool)> {
        use crate::metrics::{StoreClass, VolumeLabel, VolumeState, class_label, gauge, gauges};
        use prometheus_client::registry::Unit;
        let rt = self.runtime();
        let now = self.now();
        let secs = |n: Nanos| n as f64 / 1e9;
        let mut reg = prometheus_client::registry::Registry::with_prefix("mediaretain");

        let (totals, stale) = self.metrics.totals(self.activity().last_scan_at, || {
            Ok::<_, EngineError>(self.reg().totals()?)
        })?;
        let sc = |t: &ClassTotals| StoreClass {
            store: t.store.clone(),
            class: class_label(t.class.as_deref().unwrap_or("")),
        };
        gauges(
            &mut reg,
            "files",
            "Files in the registry, per store and class",
            None,
            |f| {
                for t in &totals {
                    f.get_or_create(&sc(t)).set(t.files as f64);
                }
            },
        );
        gauges(
            &mut reg,
            "stored",
            "Bytes of the files in the registry, per store and class",
            Some(Unit::Bytes),
            |f| {
                for t in &totals {
                    f.get_or_create(&sc(t)).set(t.bytes as f64);
                }
            },
        );
        gauges(
            &mut reg,
            "retained_files",
            "Files retained (pinned), per store and class",
            None,
            |f| {
                for t in &totals {
                    f.get_or_create(&sc(t)).set(t.retained as f64);
                }
            },
        );
        gauges(
            &mut reg,
            "retained",
            "Bytes of the files retained (pinned), per store and class",
            Some(Unit::Bytes),
            |f| {
                for t in &totals {
                    f.get_or_create(&sc(t)).set(t.retained_bytes as f64);
                }
            },
        );
        gauges(
            &mut reg,
            "store_root_missing",
            "A local store's root: 0 there, 1 missing, 2 not mounted (the bare directory of an unmounted filesystem); nothing in a store that is not there is indexed or deleted until it is back",
            None,
            |f| {
                for st in rt.config.stores.iter().filter(|st| st.is_local()) {
                    let v = match rt.missing(&st.name).map(|m| &m.absent) {
                        None => 0.0,
                        Some(crate::store::local::RootAbsent::Missing(_)) => 1.0,
                        Some(crate::store::local::RootAbsent::NotMounted(_)) => 2.0,
                    };
                    f.get_or_create(&crate::metrics::StoreLabel {
                        store: st.name.clone(),
                    })
                    .set(v);
                }
            },
        );
        let in_use = self.metrics.in_use.lock().expect("in-use lock").clone();
        gauges(
            &mut reg,
            "in_use_files",
            "Files due for deletion that the last local pass kept because they are in use (open, locked, leased, listed by a live playlist, still being written by a recorder)",
            None,
            |f| {
                for (labels, n) in &in_use {
                    f.get_or_create(labels).set(*n as f64);
                }
            },
        );
        // Two writers on one stream: per class with `stream` (0 while none), never per
        // stream — stream names come from file names, an unbounded label set.
        let conflicts = self.stream_conflicts();
        gauges(
            &mut reg,
            "stream_writer_conflicts",
            "Streams written by two or more processes at once, per store and class (classes with stream set)",
            None,
            |f| {
                for c in rt.config.classes.iter().filter(|c| c.stream.is_some()) {
                    let n = conflicts
                        .iter()
                        .filter(|x| x.store == c.store && x.class == c.name)
                        .count();
                    f.get_or_create(&StoreClass {
                        store: c.store.clone(),
                        class: class_label(&c.name),
                    })
                    .set(n as f64);
                }
            },
        );
        // Endpoint failover: which endpoints of each S3 store are taken for reachable.
        gauges(
            &mut reg,
            "s3_endpoint_up",
            "1 while an endpoint of an S3 store is used, 0 while failover skips it as unreachable",
            None,
            |f| {
                for r in &rt.remotes {
                    for (endpoint, up) in r.endpoint_health() {
                        f.get_or_create(&crate::metrics::StoreEndpoint {
                            store: r.name().to_string(),
                            endpoint,
                        })
                        .set(if up { 1.0 } else { 0.0 });
                    }
                }
            },
        );
        let jump = self.clock_jump();
        gauge(
            &mut reg,
            "clock_jumped",
            "1 while the wall clock is found jumped and time-based deletions hold (see `status`)",
            None,
            if jump.is_some() { 1.0 } else { 0.0 },
        );
        gauge(
            &mut reg,
            "clock_skew",
            "How far the wall clock is from the time continued by CLOCK_BOOTTIME while held",
            Some(Unit::Seconds),
            jump.map_or(0.0, |j| j.skew() as f64 / 1e9),
        );
        let entries: u64 = totals.iter().map(|t| t.files).sum();
        gauge(
            &mut reg,
            "registry_entries",
            "Entries in the registry (files and objects)",
            None,
            entries as f64,
        );
        let lease_now = self.lease_now();
        let (db, leases, (backing_off, _)) = {
            let mut r = self.reg();
            let db = r.path().to_path_buf();
            (db, r.leases(lease_now)?.len(), r.backoff_census(now)?)
        };
        let on_disk: u64 = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| {
                let mut p = db.clone().into_os_string();
                p.push(s);
                std::fs::metadata(p).ok().map(|m| m.len())
            })
            .sum();
        gauge(
            &mut reg,
            "registry_size",
            "Size of the registry database on disk (with its WAL)",
            Some(Unit::Bytes),
            on_disk as f64,
        );
        gauge(
            &mut reg,
            "leases_active",
            "Leases in force",
            None,
            leases as f64,
        );
        gauge(
            &mut reg,
            "offload_backing_off_files",
            "Files whose offloads failed and wait before they are tried again",
            None,
            backing_off as f64,
        );

        // Volumes: the watchdog's view and a statvfs reading now (microseconds each).
        let watch = self.watch.lock().expect("watch lock").clone();
        let vols: Vec<_> = rt
            .volumes
            .iter()
            .filter_map(|(v, l)| {
                let s = crate::watchdog::Sample::read(&v.probe, now).ok()?;
                let w = watch.get(&v.dev);
                let rate = w.and_then(|w| w.rate.rate());
                let ttf = crate::watchdog::time_to_full(&s, rate);
                let state =
                    crate::watchdog::shown_state(w.map(|w| w.state).unwrap_or_default(), l, &s);
                Some((
                    v.mount.display().to_string(),
                    l.clone(),
                    s,
                    rate,
                    ttf,
                    state,
                ))
            })
            .collect();
        drop(watch);
        let mounts: Vec<String> = vols.iter().map(|v| v.0.clone()).collect();
        self.metrics.touch(&rt.config, &mounts);
        let vl = |m: &String| VolumeLabel { volume: m.clone() };
        type V = (
            String,
            crate::config::Limits,
            crate::watchdog::Sample,
            Option<f64>,
            Option<f64>,
            crate::watchdog::State,
        );
        let per_volume = |reg: &mut prometheus_client::registry::Registry,
                          name: &str,
                          help: &str,
                          unit: Option<Unit>,
                          f: &dyn Fn(&V) -> Option<f64>| {
            gauges(reg, name, help, unit, |g| {
                for v in &vols {
                    if let Some(x) = f(v) {
                        g.get_or_create(&vl(&v.0)).set(x);
                    }
                }
            });
        };
        per_volume(
            &mut reg,
            "volume_size",
            "Size of a volume holding local stores",
            Some(Unit::Bytes),
            &|v| Some(v.2.total as f64),
        );
        per_volume(
            &mut reg,
            "volume_used",
            "Bytes used on a volume (as df counts them)",
            Some(Unit::Bytes),
            &|v| Some(v.2.used as f64),
        );
        per_volume(
            &mut reg,
            "volume_free",
            "Bytes available on a volume to unprivileged writers",
            Some(Unit::Bytes),
            &|v| Some(v.2.avail as f64),
        );
        per_volume(
            &mut reg,
            "volume_used_ratio",
            "Used share of a volume, 0 to 1 (as df counts it)",
            None,
            &|v| Some(v.2.used_pct() / 100.0),
        );
        per_volume(
            &mut reg,
            "volume_free_inodes",
            "Inodes available on a volume (absent: no fixed inode count)",
            None,
            &|v| (v.2.inodes > 0).then_some(v.2.inodes_avail as f64),
        );
        per_volume(
            &mut reg,
            "volume_high_watermark_ratio",
            "Usage at which the watchdog starts freeing, 0 to 1",
            None,
            &|v| v.1.enabled.then_some(v.1.high.0 / 100.0),
        );
        per_volume(
            &mut reg,
            "volume_low_watermark_ratio",
            "Usage the watchdog frees down to, 0 to 1",
            None,
            &|v| v.1.enabled.then_some(v.1.low.0 / 100.0),
        );
        per_volume(
            &mut reg,
            "volume_horizon_seconds",
            "The watchdog frees space when a volume is forecast full within this (absent: no forecast trigger)",
            None,
            &|v| (v.1.enabled && !v.1.horizon.0.is_zero()).then_some(v.1.horizon.0.as_secs_f64()),
        );
        per_volume(
            &mut reg,
            "volume_fill_rate_bytes_per_second",
            "How fast a volume fills, measured by the watchdog (absent: not enough history)",
            None,
            &|v| v.3,
        );
        per_volume(
            &mut reg,
            "volume_forecast_full_seconds",
            "Seconds until a volume is full at its fill rate (absent: not filling)",
            None,
            &|v| v.4,
        );
        per_volume(
            &mut reg,
            "volume_stuck",
            "1 while a volume is stuck: at a limit with nothing more the watchdog may delete",
            None,
            &|v| Some(f64::from(u8::from(v.5 == crate::watchdog::State::Stuck))),
        );
        gauges(
            &mut reg,
            "volume_state",
            "The watchdog's state of a volume: 1 for the state it is in (ok, freeing, stuck), 0 for the others",
            None,
            |g| {
                use crate::watchdog::State;
                for v in &vols {
                    for (s, word) in [
                        (State::Ok, "ok"),
                        (State::Freeing, "freeing"),
                        (State::Stuck, "stuck"),
                    ] {
                        g.get_or_create(&VolumeState {
                            volume: v.0.clone(),
                            state: word.into(),
                        })
                        .set(f64::from(u8::from(v.5 == s)));
                    }
                }
            },
        );

        self.metrics.register(&mut reg);
        // The last lifecycle pass and the process.
        let a = self.activity();
        if let Some(p) = &a.last_pass {
            gauge(
                &mut reg,
                "last_pass_timestamp_seconds",
                "When the last local lifecycle pass was planned (Unix time)",
                None,
                secs(p.at),
            );
            gauge(
                &mut reg,
                "last_pass_planned_files",
                "Files the last local lifecycle pass planned to delete",
                None,
                p.planned_files as f64,
            );
            gauge(
                &mut reg,
                "last_pass_deleted_files",
                "Files the last local lifecycle pass deleted",
                None,
                p.deleted_files as f64,
            );
            gauge(
                &mut reg,
                "last_pass_refused_files",
                "Files the last local lifecycle pass refused to delete",
                None,
                p.refused as f64,
            );
        }
        if let Some(at) = a.last_scan_at {
            gauge(
                &mut reg,
                "last_scan_timestamp_seconds",
                "When the last full scan of the local stores finished (Unix time)",
                None,
                secs(at),
            );
        }
        gauge(
            &mut reg,
            "start_time_seconds",
            "When the daemon started (Unix time)",
            None,
            secs(a.started_at),
        );
        if let Some((rss, cpu, fds)) = self.metrics.process() {
            gauge(
                &mut reg,
                "process_resident_memory",
                "The daemon's resident memory",
                Some(Unit::Bytes),
                rss as f64,
            );
            let c = prometheus_client::metrics::counter::Counter::<f64, std::sync::atomic::AtomicU64>::default();
            c.inc_by(cpu);
            reg.register_with_unit(
                "process_cpu",
                "CPU time the daemon used (user and system)",
                Unit::Seconds,
                c,
            );
            if let Some(n) = fds {
                gauge(
                    &mut reg,
                    "process_open_fds",
                    "Descriptors the daemon has open",
                    None,
                    n as f64,
                );
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &reg)
            .map_err(|e| EngineError::BadInput(format!("cannot encode the metrics: {e}")))?;
        Ok((out, stale))
    }
}
