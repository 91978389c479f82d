//! Prometheus metrics: `GET /metrics` on the control socket and, with `[metrics] listen`,
//! on a TCP address. The text exposition format (0.0.4) is written by `prometheus-client`.
//!
//! Counters live in [`Metrics`], held by the engine and incremented where outcomes are
//! accounted (the executor, the pressure pass, offloads, S3 requests, reloads). Gauges are
//! computed at scrape time from what the daemon already holds: the registry's class totals
//! (one grouped query, cached for [`TOTALS_MAX_AGE`] so that frequent scrapers do not scan
//! the registry), the watchdog's view of each volume, the last pass, and the process itself
//! (`sysinfo`). Labels are bounded: store, class, rule, trigger, refusal kind, volume mount,
//! S3 operation — never a file or a path inside a store.
//!
//! One file: the families' label types, the counters the engine bumps and the helpers that
//! build gauges at scrape time are declared once, here; what fills the gauges is the
//! engine's (`engine/scrape.rs`), serving them `control/metrics.rs`'.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The content type of the text exposition format the engine renders.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Class totals older than this (or older than the last full scan) are read again from the
/// registry — in the background, after the scrape that found them stale was answered with
/// them: the grouped query costs ~80 ms at 100k entries (BENCHMARKS.md), so a scrape never
/// waits for it (only the very first one does) and the registry is read at most once a
/// minute however often Prometheus scrapes.
pub const TOTALS_MAX_AGE: Duration = Duration::from_secs(60);

/// The refusal kinds that mean "in use" (see `executor::refusal_kind`).
pub const IN_USE_KINDS: &[&str] = &["lease", "open", "lock", "playlist", "writer"];

/// The S3 operations whose failures are counted.
pub const S3_OPS: &[&str] = &["list", "upload", "delete", "check", "probe"];

/// A float gauge.
type FGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Labels of a deletion.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Deleted {
    /// Store.
    pub store: String,
    /// Class ("unclassified" for `rm` of a file no class matches).
    pub class: String,
    /// The rule that selected it.
    pub rule: String,
    /// What started the pass (bounded: see [`trigger_label`]).
    pub trigger: String,
}

/// Labels of a refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Refused {
    /// Store.
    pub store: String,
    /// Class.
    pub class: String,
    /// The refusal kind (the engine's `refusal_kind`).
    pub kind: String,
}

/// Store and class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreClass {
    /// Store.
    pub store: String,
    /// Class.
    pub class: String,
}

/// One endpoint of an S3 store (its URL as configured: a bounded set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreEndpoint {
    /// Store.
    pub store: String,
    /// Endpoint URL.
    pub endpoint: String,
}

/// One store.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabel {
    /// Store.
    pub store: String,
}

/// One volume, by mount point.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VolumeLabel {
    /// Mount point.
    pub volume: String,
}

/// One volume's state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VolumeState {
    /// Mount point.
    pub volume: String,
    /// ok, freeing or stuck.
    pub state: String,
}

/// An S3 request that failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct S3Error {
    /// The S3 store.
    pub store: String,
    /// list, upload, delete, check, probe.
    pub op: String,
}

/// A pass, by what it covered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassLabel {
    /// local, remote, all (lifecycle passes) or pressure.
    pub kind: String,
}

/// A reload's result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// success or failure.
    pub result: String,
}

/// The daemon's counters (and the few gauges set where things happen).
#[derive(Debug)]
pub struct Metrics {
    pub(crate) deleted_files: Family<Deleted, Counter>,
    pub(crate) deleted_bytes: Family<Deleted, Counter>,
    pub(crate) refused: Family<Refused, Counter>,
    pub(crate) failed: Family<StoreClass, Counter>,
    pub(crate) pressure_passes: Family<VolumeLabel, Counter>,
    pub(crate) pressure_freed: Family<VolumeLabel, Counter>,
    pub(crate) offloaded_files: Family<StoreClass, Counter>,
    pub(crate) offloaded_bytes: Family<StoreClass, Counter>,
    pub(crate) offload_failed: Family<StoreLabel, Counter>,
    pub(crate) s3_errors: Family<S3Error, Counter>,
    pub(crate) s3_listed_at: Family<StoreLabel, FGauge>,
    pub(crate) s3_objects: Family<StoreLabel, Gauge>,
    pub(crate) s3_bytes: Family<StoreLabel, Gauge>,
    /// 1 while another writer of a store's claim marker was found (fleet).
    pub(crate) fleet_claim_conflict: Family<StoreLabel, Gauge>,
    /// 1 while this box holds a shared store's rules lease.
    pub(crate) fleet_rules_lease: Family<StoreLabel, Gauge>,
    pub(crate) offload_backlog_files: Gauge,
    pub(crate) offload_backlog_bytes: Gauge,
    pub(crate) pass_seconds: Family<PassLabel, Histogram>,
    pub(crate) reloads: Family<ReloadLabel, Counter>,
    pub(crate) config_loaded_at: FGauge,
    /// Jumps of the wall clock found (each holds time-based deletions).
    pub(crate) clock_jumps: Counter,
    /// Files due for deletion that the last local pass kept because they are in use, per
    /// store and class (every local class, zero or not), replaced whole after each pass.
    pub(crate) in_use: Mutex<Vec<(StoreClass, u64)>>,
    /// The class totals of the last read: when, and the last full scan it followed.
    #[allow(clippy::type_complexity)]
    totals: Mutex<Option<(Instant, Option<i64>, Vec<crate::registry::ClassTotals>)>>,
    /// A background read of the class totals is under way.
    totals_reading: std::sync::atomic::AtomicBool,
    /// The process's own figures (one `sysinfo` handle, refreshed for our pid only).
    sys: Mutex<Option<sysinfo::System>>,
}

fn pass_histogram() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 4.0, 9,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            deleted_files: Family::default(),
            deleted_bytes: Family::default(),
            refused: Family::default(),
            failed: Family::default(),
            pressure_passes: Family::default(),
            pressure_freed: Family::default(),
            offloaded_files: Family::default(),
            offloaded_bytes: Family::default(),
            offload_failed: Family::default(),
            s3_errors: Family::default(),
            s3_listed_at: Family::default(),
            s3_objects: Family::default(),
            s3_bytes: Family::default(),
            fleet_claim_conflict: Family::default(),
            fleet_rules_lease: Family::default(),
            offload_backlog_files: Gauge::default(),
            offload_backlog_bytes: Gauge::default(),
            pass_seconds: Family::new_with_constructor(pass_histogram as fn() -> Histogram),
            reloads: Family::default(),
            config_loaded_at: FGauge::default(),
            clock_jumps: Counter::default(),
            in_use: Mutex::new(Vec::new()),
            totals: Mutex::new(None),
            totals_reading: std::sync::atomic::AtomicBool::new(false),
            sys: Mutex::new(None),
        };
        m.config_loaded_at.set(unix_now());
        // Both results exist from the start, so that rate() and increase() see the first.
        for r in ["success", "failure"] {
            let _ = m.reloads.get_or_create(&ReloadLabel { result: r.into() });
        }
        m
    }
}

/// Seconds since the epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The trigger as a label: the daemon's own words and `manual` as they are; any word a
/// client chose (unbounded in principle) as `api`.
pub fn trigger_label(trigger: &str) -> String {
    const KNOWN: &[&str] = &[
        "schedule", "pressure", "watchdog", "startup", "reload", "manual", "api",
    ];
    if KNOWN.contains(&trigger) {
        trigger.into()
    } else {
        "api".into()
    }
}

/// A class name as a label.
pub fn class_label(class: &str) -> String {
    if class.is_empty() {
        "unclassified".into()
    } else {
        class.into()
    }
}

impl Metrics {
    /// A file deleted and verified gone.
    pub fn deleted(&self, store: &str, class: &str, rule: &str, trigger: &str, bytes: u64) {
        let l = Deleted {
            store: store.into(),
            class: class_label(class),
            rule: rule.into(),
            trigger: trigger_label(trigger),
        };
        self.deleted_files.get_or_create(&l).inc();
        self.deleted_bytes.get_or_create(&l).inc_by(bytes);
    }

    /// A refusal episode started (a file newly refused, or refused for another kind).
    pub fn refused(&self, store: &str, class: &str, kind: &str) {
        self.refused
            .get_or_create(&Refused {
                store: store.into(),
                class: class_label(class),
                kind: kind.into(),
            })
            .inc();
    }

    /// A deletion that failed.
    pub fn failed(&self, store: &str, class: &str) {
        self.failed
            .get_or_create(&StoreClass {
                store: store.into(),
                class: class_label(class),
            })
            .inc();
    }

    /// A pressure pass on `volume` that gave back `freed` bytes.
    pub fn pressure_pass(&self, volume: &str, freed: u64, seconds: f64) {
        let l = VolumeLabel {
            volume: volume.into(),
        };
        self.pressure_passes.get_or_create(&l).inc();
        self.pressure_freed.get_or_create(&l).inc_by(freed);
        self.pass(PassKind::Pressure, seconds);
    }

    /// A lifecycle or pressure pass took `seconds`.
    pub fn pass(&self, kind: PassKind, seconds: f64) {
        self.pass_seconds
            .get_or_create(&PassLabel {
                kind: kind.word().into(),
            })
            .observe(seconds);
    }

    /// A file copied to S3 store `store` and verified.
    pub fn offloaded(&self, store: &str, class: &str, bytes: u64) {
        let l = StoreClass {
            store: store.into(),
            class: class_label(class),
        };
        self.offloaded_files.get_or_create(&l).inc();
        self.offloaded_bytes.get_or_create(&l).inc_by(bytes);
    }

    /// An offload to `store` that failed.
    pub fn offload_failed(&self, store: &str) {
        self.offload_failed
            .get_or_create(&StoreLabel {
                store: store.into(),
            })
            .inc();
    }

    /// What the last offload batch left waiting.
    pub fn offload_backlog(&self, files: u64, bytes: u64) {
        self.offload_backlog_files
            .set(i64::try_from(files).unwrap_or(i64::MAX));
        self.offload_backlog_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A request to S3 store `store` failed (`op`: list, upload, delete, check, probe).
    pub fn s3_error(&self, store: &str, op: &str) {
        self.s3_errors
            .get_or_create(&S3Error {
                store: store.into(),
                op: op.into(),
            })
            .inc();
    }

    /// S3 store `store` was listed: `objects` objects, `bytes` bytes.
    pub fn s3_listed(&self, store: &str, objects: u64, bytes: u64) {
        let l = StoreLabel {
            store: store.into(),
        };
        self.s3_listed_at.get_or_create(&l).set(unix_now());
        self.s3_objects
            .get_or_create(&l)
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
        self.s3_bytes
            .get_or_create(&l)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Whether another writer of store `store`'s claim marker was found.
    pub fn fleet_conflict(&self, store: &str, conflict: bool) {
        self.fleet_claim_conflict
            .get_or_create(&StoreLabel {
                store: store.into(),
            })
            .set(i64::from(conflict));
    }

    /// Whether this box holds shared store `store`'s rules lease.
    pub fn fleet_lease(&self, store: &str, held: bool) {
        self.fleet_rules_lease
            .get_or_create(&StoreLabel {
                store: store.into(),
            })
            .set(i64::from(held));
    }

    /// A jump of the wall clock was found.
    pub fn clock_jumped(&self) {
        self.clock_jumps.inc();
    }

    /// A reload attempt.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads
            .get_or_create(&ReloadLabel {
                result: result.into(),
            })
            .inc();
        if ok {
            self.config_loaded_at.set(unix_now());
        }
    }

    /// The class totals last read, and whether they are stale (older than
    /// [`TOTALS_MAX_AGE`], or a full scan finished — `last_scan` — since). Only when none
    /// were ever read are they read here, by `read`.
    pub(crate) fn totals<E>(
        &self,
        last_scan: Option<i64>,
        read: impl FnOnce() -> Result<Vec<crate::registry::ClassTotals>, E>,
    ) -> Result<(Vec<crate::registry::ClassTotals>, bool), E> {
        let cached = self.totals.lock().expect("totals lock").clone();
        match cached {
            Some((at, scan, v)) => Ok((v, at.elapsed() >= TOTALS_MAX_AGE || scan != last_scan)),
            None => {
                let v = read()?;
                self.set_totals(last_scan, v.clone());
                Ok((v, false))
            }
        }
    }

    /// Stores freshly read class totals.
    pub(crate) fn set_totals(&self, last_scan: Option<i64>, v: Vec<crate::registry::ClassTotals>) {
        *self.totals.lock().expect("totals lock") = Some((Instant::now(), last_scan, v));
    }

    /// Claims the one background read of the class totals (false: one is under way).
    pub(crate) fn start_totals_read(&self) -> bool {
        !self
            .totals_reading
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// The background read is over.
    pub(crate) fn end_totals_read(&self) {
        self.totals_reading
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// After a local pass: per store and class, the files due for deletion that it kept
    /// because they are in use (`counts`); every local class gets a series, zero or not.
    pub fn in_use_after_pass(
        &self,
        config: &crate::config::Config,
        counts: &std::collections::HashMap<(String, String), u64>,
    ) {
        let mut all: Vec<(StoreClass, u64)> = config
            .classes
            .iter()
            .filter(|c| config.store(&c.store).is_some_and(|s| s.is_local()))
            .map(|c| {
                let n = counts
                    .get(&(c.store.clone(), c.name.clone()))
                    .copied()
                    .unwrap_or(0);
                let labels = StoreClass {
                    store: c.store.clone(),
                    class: class_label(&c.name),
                };
                (labels, n)
            })
            .collect();
        all.sort_by(|a, b| (&a.0.store, &a.0.class).cmp(&(&b.0.store, &b.0.class)));
        *self.in_use.lock().expect("in-use lock") = all;
    }

    /// Creates the zero series of every bounded label set the running config implies
    /// (failures per class, offloads per offload class, S3 errors per store and operation,
    /// pressure per volume), so that they exist before their first event: `increase()`
    /// and alerts then see the first one.
    pub(crate) fn touch(&self, config: &crate::config::Config, volumes: &[String]) {
        for c in &config.classes {
            let sc = StoreClass {
                store: c.store.clone(),
                class: class_label(&c.name),
            };
            let _ = self.failed.get_or_create(&sc);
            if let Some(o) = &c.offload {
                let to = StoreClass {
                    store: o.to.clone(),
                    class: class_label(&c.name),
                };
                let _ = self.offloaded_files.get_or_create(&to);
                let _ = self.offloaded_bytes.get_or_create(&to);
            }
        }
        for s in config.stores.iter().filter(|s| !s.is_local()) {
            let store = s.name.clone();
            let _ = self.offload_failed.get_or_create(&StoreLabel {
                store: store.clone(),
            });
            for op in S3_OPS {
                let _ = self.s3_errors.get_or_create(&S3Error {
                    store: store.clone(),
                    op: (*op).into(),
                });
            }
        }
        for v in volumes {
            let l = VolumeLabel { volume: v.clone() };
            let _ = self.pressure_passes.get_or_create(&l);
            let _ = self.pressure_freed.get_or_create(&l);
        }
    }

    /// Registers the counters (shared, not copied) in `reg`.
    pub(crate) fn register(&self, reg: &mut Registry) {
        reg.register(
            "deleted_files",
            "Files deleted and verified gone",
            self.deleted_files.clone(),
        );
        reg.register_with_unit(
            "deleted",
            "Bytes of the files deleted and verified gone",
            Unit::Bytes,
            self.deleted_bytes.clone(),
        );
        reg.register(
            "refused",
            "Refusal episodes started: a planned deletion refused (or refused for another kind) where it was not before; kind says why (lease, open, lock, playlist, writer, retained, offload…)",
            self.refused.clone(),
        );
        reg.register(
            "failed_deletions",
            "Deletions attempted that failed",
            self.failed.clone(),
        );
        reg.register(
            "pressure_passes",
            "Disk-pressure passes run on a volume",
            self.pressure_passes.clone(),
        );
        reg.register_with_unit(
            "pressure_freed",
            "Bytes a volume gained back in pressure passes (statvfs)",
            Unit::Bytes,
            self.pressure_freed.clone(),
        );
        reg.register(
            "offloaded_files",
            "Files copied to an S3 store and verified",
            self.offloaded_files.clone(),
        );
        reg.register_with_unit(
            "offload_uploaded",
            "Bytes of the files copied to an S3 store and verified",
            Unit::Bytes,
            self.offloaded_bytes.clone(),
        );
        reg.register(
            "offload_failures",
            "Offloads that failed (the local file stays)",
            self.offload_failed.clone(),
        );
        reg.register(
            "s3_request_errors",
            "Requests to an S3 store that failed, by operation",
            self.s3_errors.clone(),
        );
        reg.register(
            "s3_last_listing_timestamp_seconds",
            "When an S3 store was last listed successfully (Unix time)",
            self.s3_listed_at.clone(),
        );
        reg.register(
            "s3_objects",
            "Objects of an S3 store at its last listing",
            self.s3_objects.clone(),
        );
        reg.register_with_unit(
            "s3",
            "Bytes of an S3 store at its last listing",
            Unit::Bytes,
            self.s3_bytes.clone(),
        );
        reg.register(
            "fleet_claim_conflict",
            "1 while another box was found writing this box's claim marker of an S3 store (offloads there stop)",
            self.fleet_claim_conflict.clone(),
        );
        reg.register(
            "fleet_rules_lease_held",
            "1 while this box holds the rules lease of a shared S3 store",
            self.fleet_rules_lease.clone(),
        );
        reg.register(
            "offload_backlog_files",
            "Files due for offload that the last offload batch left waiting",
            self.offload_backlog_files.clone(),
        );
        reg.register_with_unit(
            "offload_backlog",
            "Bytes of the files due for offload that the last offload batch left waiting",
            Unit::Bytes,
            self.offload_backlog_bytes.clone(),
        );
        reg.register_with_unit(
            "pass_duration",
            "Wall time of passes: local, remote and all (lifecycle), pressure",
            Unit::Seconds,
            self.pass_seconds.clone(),
        );
        reg.register(
            "reloads",
            "Reload attempts, by result",
            self.reloads.clone(),
        );
        reg.register(
            "clock_jumps",
            "Jumps of the wall clock against CLOCK_BOOTTIME found (each holds time-based deletions)",
            self.clock_jumps.clone(),
        );
        reg.register(
            "config_last_load_timestamp_seconds",
            "When the running config was loaded (Unix time)",
            self.config_loaded_at.clone(),
        );
    }

    /// The process's resident memory (bytes), CPU time (seconds) and open descriptors.
    pub(crate) fn process(&self) -> Option<(u64, f64, Option<usize>)> {
        use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
        let pid = Pid::from_u32(std::process::id());
        let mut sys = self.sys.lock().expect("sysinfo lock");
        if sys.is_none() {
            *sys = System::new().ok();
        }
        let sys = sys.as_mut()?;
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
        let p = sys.process(pid)?;
        Some((
            p.memory(),
            p.accumulated_cpu_time() as f64 / 1000.0,
            p.open_files(),
        ))
    }
}

/// What a pass covered, as the `kind` label of the pass histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// Local deletions only.
    Local,
    /// Offloads and S3 deletions.
    Remote,
    /// Everything (`gc` on demand).
    All,
    /// A disk-pressure pass.
    Pressure,
}

impl PassKind {
    fn word(self) -> &'static str {
        match self {
            PassKind::Local => "local",
            PassKind::Remote => "remote",
            PassKind::All => "all",
            PassKind::Pressure => "pressure",
        }
    }
}

/// Adds a gauge family `name` built by `fill` to `reg`.
pub(crate) fn gauges<L, F>(reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>, fill: F)
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    F: FnOnce(&Family<L, FGauge>),
{
    let f: Family<L, FGauge> = Family::default();
    fill(&f);
    match unit {
        Some(u) => reg.register_with_unit(name, help, u, f),
        None => reg.register(name, help, f),
    }
}

/// Adds one unlabelled gauge.
pub(crate) fn gauge(reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>, v: f64) {
    let g = FGauge::default();
    g.set(v);
    match unit {
        Some(u) => reg.register_with_unit(name, help, u, g),
        None => reg.register(name, help, g),
    }
}
