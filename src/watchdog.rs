//! The disk-pressure watchdog's model: volumes, `statvfs` samples, a fill rate robust to
//! one-off spikes, the triggers (high watermark, free-byte and free-inode floors, forecast
//! time-to-full) and the per-volume state (ok / freeing / stuck).
//!
//! Everything here is pure given its samples and `now`, so the forecast is tested with a
//! manual clock; the engine runs the pressure passes and the daemon the sampling loop.
//!
//! One file for one concept, a volume under watch: about 600 lines of model (samples, the
//! median fill rate, triggers, state) and 240 of tests against a manual clock.

use std::collections::VecDeque;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Limits};
use crate::units::{ByteSize, Nanos, fmt_span};

const SEC: Nanos = 1_000_000_000;

/// Once triggered, a volume is freed until its floors are exceeded by this factor (the
/// floors' hysteresis, as `low` is the watermark's).
const FLOOR_MARGIN: f64 = 1.25;

/// The fill rate is the median of the growth rates of this many consecutive windows…
const RATE_WINDOWS: usize = 5;
/// …each this long (so a one-off copy moves one window, not the median)…
const RATE_WINDOW: Nanos = 60 * SEC;
/// …and needs at least this many complete windows before it forecasts anything.
const RATE_MIN_WINDOWS: usize = 3;

/// After a pass that could not reach its goal, the next one waits this long (unless the
/// volume falls below its triggers): the watchdog keeps watching without spinning, and
/// files that became deletable meanwhile (released, closed, older than `min_keep`) still
/// go within seconds. Such repeated passes log only what they delete.
pub const RETRY_AFTER: Nanos = 5 * SEC;

/// One `statvfs` reading of a volume.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Sample {
    /// When.
    #[serde(with = "crate::units::rfc3339")]
    pub at: Nanos,
    /// Bytes of the filesystem.
    pub total: u64,
    /// Bytes in use (as `df` counts them).
    pub used: u64,
    /// Bytes available to unprivileged writers.
    pub avail: u64,
    /// Inodes of the filesystem (0: it has no fixed inode count, like btrfs).
    pub inodes: u64,
    /// Inodes available to unprivileged writers.
    pub inodes_avail: u64,
}

impl Sample {
    /// Reads the volume holding `path` (microseconds).
    pub fn read(path: &Path, at: Nanos) -> std::io::Result<Sample> {
        let v = rustix::fs::statvfs(path)?;
        let total = v.f_blocks * v.f_frsize;
        let free = v.f_bfree * v.f_frsize;
        Ok(Sample {
            at,
            total,
            used: total.saturating_sub(free),
            avail: v.f_bavail * v.f_frsize,
            inodes: v.f_files,
            inodes_avail: v.f_favail,
        })
    }

    /// Used percentage as `df` shows it: used / (used + available).
    pub fn used_pct(&self) -> f64 {
        let d = self.used + self.avail;
        if d == 0 {
            0.0
        } else {
            self.used as f64 * 100.0 / d as f64
        }
    }

    /// Percentage of inodes free (None: the filesystem has no inode limit).
    pub fn inodes_free_pct(&self) -> Option<f64> {
        (self.inodes > 0).then(|| self.inodes_avail as f64 * 100.0 / self.inodes as f64)
    }

    /// Bytes that must go for usage to be at most `pct` (df's percentage).
    fn bytes_above(&self, pct: f64) -> u64 {
        let cap = (self.used + self.avail) as f64 * pct / 100.0;
        (self.used as f64 - cap).max(0.0).ceil() as u64
    }
}

/// Why a volume is under pressure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// Usage at or above the high watermark.
    High {
        /// Used percentage.
        used_pct: f64,
        /// The watermark.
        high: f64,
    },
    /// Fewer free bytes than `min_free`.
    MinFree {
        /// Available bytes.
        avail: u64,
        /// The floor.
        min_free: u64,
    },
    /// Fewer free inodes than `min_free_inodes`.
    Inodes {
        /// Percentage of inodes free.
        free_pct: f64,
        /// The floor.
        floor: f64,
    },
    /// Forecast to be full within the horizon at the current fill rate.
    Forecast {
        /// Seconds until full.
        secs: f64,
        /// Bytes per second.
        rate: f64,
    },
}

impl Trigger {
    /// A hard trigger means the volume is at a limit now (not only forecast to be).
    pub fn is_hard(&self) -> bool {
        !matches!(self, Trigger::Forecast { .. })
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::High { used_pct, high } => {
                write!(f, "{used_pct:.1}% used ≥ high {high}%")
            }
            Trigger::MinFree { avail, min_free } => write!(
                f,
                "{} free < min_free {}",
                ByteSize(*avail),
                ByteSize(*min_free)
            ),
            Trigger::Inodes { free_pct, floor } => {
                write!(f, "{free_pct:.1}% inodes free < min_free_inodes {floor}%")
            }
            Trigger::Forecast { secs, rate } => write!(
                f,
                "forecast full in {} at {}/s",
                fmt_span((*secs * 1e9) as Nanos),
                ByteSize(*rate as u64)
            ),
        }
    }
}

/// The volume's fill rate: the median growth rate over [`RATE_WINDOWS`] windows of one
/// minute, counting bytes we deleted ourselves as if still there (our freeing is not the
/// writers slowing down).
#[derive(Debug, Clone, Default)]
pub struct FillRate {
    /// (when, used + bytes we freed so far), at least a second apart.
    hist: VecDeque<(Nanos, f64)>,
    freed: u64,
}

impl FillRate {
    /// Records a sample.
    pub fn push(&mut self, s: &Sample) {
        let v = s.used as f64 + self.freed as f64;
        let n = self.hist.len();
        if self.hist.back().is_some_and(|&(t, _)| s.at < t) {
            return; // a clock step backwards: keep what we have
        }
        if n >= 2 && self.hist[n - 1].0 - self.hist[n - 2].0 < SEC {
            // Points stay a second apart: a newer sample replaces the provisional newest one
            // (burst samples refine it instead of crowding the history).
            self.hist[n - 1] = (s.at, v);
        } else {
            self.hist.push_back((s.at, v));
        }
        let keep = RATE_WINDOW * (RATE_WINDOWS as Nanos + 1);
        while self.hist.front().is_some_and(|&(t, _)| s.at - t > keep) {
            self.hist.pop_front();
        }
    }

    /// Notes bytes we freed (measured by `statvfs` around a deletion batch).
    pub fn note_freed(&mut self, bytes: u64) {
        self.freed += bytes;
    }

    /// Bytes per second (negative when shrinking); None until enough history.
    pub fn rate(&self) -> Option<f64> {
        let &(now, _) = self.hist.back()?;
        let mut rates = Vec::with_capacity(RATE_WINDOWS);
        for k in 0..RATE_WINDOWS as Nanos {
            let (end, start) = (now - k * RATE_WINDOW, now - (k + 1) * RATE_WINDOW);
            let (Some(a), Some(b)) = (self.at(start), self.at(end)) else {
                break;
            };
            rates.push((b - a) / ((RATE_WINDOW as f64) / 1e9));
        }
        if rates.len() < RATE_MIN_WINDOWS {
            return None;
        }
        rates.sort_by(f64::total_cmp);
        let n = rates.len();
        Some(if n % 2 == 1 {
            rates[n / 2]
        } else {
            (rates[n / 2 - 1] + rates[n / 2]) / 2.0
        })
    }

    /// The value at `t`, linearly interpolated; None before the history starts.
    fn at(&self, t: Nanos) -> Option<f64> {
        let i = self.hist.partition_point(|&(x, _)| x < t);
        let &(t1, v1) = self.hist.get(i)?;
        if t1 == t {
            return Some(v1);
        }
        let &(t0, v0) = self.hist.get(i.checked_sub(1)?)?;
        Some(v0 + (v1 - v0) * (t - t0) as f64 / (t1 - t0) as f64)
    }
}

/// Within this many percentage points of `high` a volume is near its trigger…
const NEAR_POINTS: f64 = 5.0;
/// …and sampled this many times per interval, so a crossing made by writes the watcher
/// cannot see (outside the stores) is caught within a fraction of the interval.
pub const NEAR_SPEEDUP: u32 = 5;

/// Whether `s` is close to a trigger of `l` (within [`NEAR_POINTS`] of high, or within
/// twice a floor).
pub fn near(l: &Limits, s: &Sample) -> bool {
    l.enabled
        && (s.used_pct() >= l.high.0 - NEAR_POINTS
            || l.min_free.is_some_and(|m| s.avail < m.0.saturating_mul(2))
            || s.inodes_free_pct()
                .is_some_and(|p| p < 2.0 * l.min_free_inodes.0))
}

/// Seconds until `s` is full at `rate` (None: not filling).
pub fn time_to_full(s: &Sample, rate: Option<f64>) -> Option<f64> {
    rate.filter(|r| *r > 0.0).map(|r| s.avail as f64 / r)
}

/// What puts the volume under pressure now.
pub fn triggers(l: &Limits, s: &Sample, rate: Option<f64>) -> Vec<Trigger> {
    let mut t = Vec::new();
    let used_pct = s.used_pct();
    if used_pct >= l.high.0 {
        t.push(Trigger::High {
            used_pct,
            high: l.high.0,
        });
    }
    if let Some(m) = l.min_free.filter(|m| s.avail < m.0) {
        t.push(Trigger::MinFree {
            avail: s.avail,
            min_free: m.0,
        });
    }
    if let Some(free_pct) = s.inodes_free_pct().filter(|p| *p < l.min_free_inodes.0) {
        t.push(Trigger::Inodes {
            free_pct,
            floor: l.min_free_inodes.0,
        });
    }
    if let Some(secs) = time_to_full(s, rate).filter(|secs| *secs <= l.horizon.0.as_secs_f64()) {
        t.push(Trigger::Forecast {
            secs,
            rate: rate.unwrap_or(0.0),
        });
    }
    t
}

/// What still has to go to reach the goal of a triggered volume: usage at most `low`,
/// floors exceeded by [`FLOOR_MARGIN`], and (filling) room for `horizon` of writes.
/// (0, 0) when the goal is reached.
pub fn deficit(l: &Limits, s: &Sample, rate: Option<f64>) -> (u64, u64) {
    let mut bytes = s.bytes_above(l.low.0);
    let mut want_free = l.min_free.map_or(0.0, |m| m.0 as f64 * FLOOR_MARGIN);
    if let Some(r) = rate.filter(|r| *r > 0.0 && !l.horizon.0.is_zero()) {
        want_free = want_free.max(r * l.horizon.0.as_secs_f64() * FLOOR_MARGIN);
    }
    bytes = bytes.max((want_free - s.avail as f64).max(0.0).ceil() as u64);
    let inodes = if s.inodes > 0 {
        let want = s.inodes as f64 * l.min_free_inodes.0 / 100.0 * FLOOR_MARGIN;
        (want - s.inodes_avail as f64).max(0.0).ceil() as u64
    } else {
        0
    };
    (bytes, inodes)
}

/// The state of a watched volume.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Below every trigger.
    #[default]
    Ok,
    /// A pressure pass is freeing space.
    Freeing,
    /// At a limit, and the last pass could not get below it: nothing more may be deleted,
    /// deletions failed, or the pass itself failed (the report says which).
    Stuck,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Ok => "ok",
            State::Freeing => "freeing",
            State::Stuck => "STUCK",
        })
    }
}

/// What one pressure pass did on one volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PressureReport {
    /// Started at.
    #[serde(with = "crate::units::rfc3339")]
    pub at: Nanos,
    /// Why it ran.
    pub triggers: Vec<String>,
    /// Usage before, percent.
    pub before_pct: f64,
    /// Usage after, percent.
    pub after_pct: f64,
    /// Bytes the volume gained back (statvfs, not the sum of deleted sizes).
    pub freed_bytes: u64,
    /// Files deleted.
    pub deleted_files: u64,
    /// Their size.
    pub deleted_bytes: u64,
    /// Files refused at the last check (in use, pinned meanwhile…).
    pub refused: u64,
    /// Deletions that failed.
    pub failed: u64,
    /// Batches (each followed by a statvfs reading).
    pub batches: u64,
    /// The goal was reached.
    pub goal_met: bool,
    /// Nothing more was deletable.
    pub exhausted: bool,
    /// From the first trigger sample to the first unlink, microseconds.
    #[serde(rename = "first_unlink_after", with = "crate::units::micros_opt")]
    pub first_unlink_us: Option<u64>,
    /// Why the rest stays (when the goal was not reached).
    pub kept: Option<Kept>,
    /// Why the pass could not run or finish (an error, e.g. the registry's disk is full).
    #[serde(default)]
    pub error: Option<String>,
    /// Socket clients' leases that gave way: files they covered were deleted because
    /// nothing else was left to free (root's leases never give way).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases_gave_way: Vec<crate::inuse::leases::LeaseHeld>,
    /// Wall time.
    #[serde(rename = "took", with = "crate::units::millis")]
    pub millis: u64,
}

/// What stays on a volume that cannot be freed further.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Kept {
    /// Bytes pinned by operators.
    pub retained: u64,
    /// Bytes in use (refused at the last check, or still being written).
    pub in_use: u64,
    /// Bytes of classes not freed under pressure (recordings without `min_keep`) or too
    /// young for their class's `min_keep`.
    pub protected: u64,
    /// Bytes on the volume that no class of ours manages.
    pub unmanaged: u64,
    /// Bytes whose deletion was attempted and failed (never counted as protected).
    #[serde(default)]
    pub failed: u64,
    /// Why the first of those failed.
    #[serde(default)]
    pub failure: Option<String>,
    /// The leases keeping files of `in_use` (holder, uid, pattern, what they keep).
    #[serde(default)]
    pub leases: Vec<crate::inuse::leases::LeaseHeld>,
}

impl Kept {
    /// What an operator can do about what stays, for the parts that hold space.
    pub fn hint(&self) -> String {
        let mut h = Vec::new();
        if self.failed > 0 {
            h.push("fix what makes deletions fail".to_string());
        }
        if self.retained > 0 {
            h.push("unpin files".into());
        }
        if self.in_use > 0 {
            h.push("close or release the files in use".into());
        }
        if self.protected > 0 {
            h.push("give recording classes a min_keep".into());
        }
        h.push("free space by hand".into());
        h.join(", ")
    }
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} retained, {} in use, {} protected by class rules (min_keep), {} not managed by mediaretain",
            ByteSize(self.retained),
            ByteSize(self.in_use),
            ByteSize(self.protected),
            ByteSize(self.unmanaged)
        )?;
        if self.failed > 0 {
            write!(
                f,
                ", {} whose deletion FAILED ({})",
                ByteSize(self.failed),
                self.failure.as_deref().unwrap_or("no cause recorded")
            )?;
        }
        for (i, l) in self.leases.iter().enumerate() {
            f.write_str(if i == 0 { "; in use by " } else { ", " })?;
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

/// A volume holding one or more local stores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeSpec {
    /// Device number.
    pub dev: u64,
    /// Where it is mounted (from /proc/self/mountinfo; a store root when unknown).
    pub mount: PathBuf,
    /// A path to sample it by (the first store's root).
    pub probe: PathBuf,
    /// The local stores on it.
    pub stores: Vec<String>,
}

/// Where the filesystem of device `dev` holding `root` is mounted, as the operator sees it:
/// in PID 1's mount table (`init`) the mount of the whole filesystem (its root `/`) — under
/// systemd's sandbox our own table shows a store root as a bind mount of itself
/// (`ReadWritePaths=`), which is no volume's name; else, in our table (`ours`), the deepest
/// mount above `root`; else `root` itself.
fn mount_point(
    dev: u64,
    root: &Path,
    ours: &[crate::inuse::procfs::Mount],
    init: &[crate::inuse::procfs::Mount],
) -> PathBuf {
    let whole = |m: &&crate::inuse::procfs::Mount| m.dev == dev && m.root == Path::new("/");
    let deepest = |t: &[crate::inuse::procfs::Mount], whole_only: bool| {
        t.iter()
            .filter(|m| m.dev == dev && root.starts_with(&m.point))
            .filter(|m| !whole_only || whole(m))
            .map(|m| m.point.clone())
            .max_by_key(|p| p.as_os_str().len())
    };
    deepest(init, true)
        .or_else(|| {
            // Mounted elsewhere than above `root` (we see it through a bind mount).
            init.iter()
                .filter(whole)
                .map(|m| m.point.clone())
                .min_by_key(|p| p.as_os_str().len())
        })
        .or_else(|| deepest(ours, false))
        .unwrap_or_else(|| root.to_path_buf())
}

/// Groups the local stores of `config` by volume.
pub fn volumes(config: &Config) -> Vec<VolumeSpec> {
    let mounts = crate::inuse::procfs::mounts(None);
    // PID 1's table is readable to root (and to the unit's CAP_SYS_PTRACE); when it is not,
    // or PID 1 shares our namespace, ours answers.
    let init = match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(a), Ok(b)) if a != b => crate::inuse::procfs::mounts(Some(1)),
        _ => Vec::new(),
    };
    let mut out: Vec<VolumeSpec> = Vec::new();
    for s in config.stores.iter().filter(|s| s.is_local()) {
        let Ok(md) = std::fs::metadata(&s.root) else {
            continue;
        };
        if let Some(v) = out.iter_mut().find(|v| v.dev == md.dev()) {
            v.stores.push(s.name.clone());
            continue;
        }
        let mount = mount_point(md.dev(), &s.root, &mounts, &init);
        out.push(VolumeSpec {
            dev: md.dev(),
            mount,
            probe: s.root.clone(),
            stores: vec![s.name.clone()],
        });
    }
    out
}

/// The limits of `v` under `config`.
pub fn limits_of<'a>(config: &'a Config, v: &VolumeSpec) -> &'a Limits {
    config
        .watchdog
        .limits_for(v.dev, |p| std::fs::metadata(p).ok().map(|m| m.dev()))
}

/// One watched volume: its samples, rate and state.
#[derive(Debug, Clone, Default)]
pub struct VolumeWatch {
    /// The newest sample.
    pub last: Option<Sample>,
    /// Its fill rate.
    pub rate: FillRate,
    /// Its state.
    pub state: State,
    /// No pass before this (after one that could not reach its goal).
    pub retry_at: Option<Nanos>,
    /// The newest pressure pass.
    pub last_pass: Option<PressureReport>,
    /// Since when it is stuck.
    pub stuck_since: Option<Nanos>,
}

/// The state shown for a volume in watchdog state `state` whose sample now is `s`: at a
/// hard limit it is never "ok" (between two watchdog ticks a pass is due: "freeing").
pub fn shown_state(state: State, l: &Limits, s: &Sample) -> State {
    let hard = l.enabled && triggers(l, s, None).iter().any(Trigger::is_hard);
    match state {
        State::Ok if hard => State::Freeing,
        st => st,
    }
}

/// What [`VolumeWatch::observe`] asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing to do.
    Idle,
    /// Run a pressure pass for these triggers.
    Free(Vec<Trigger>),
    /// It left the stuck state (usage fell below every trigger).
    Recovered,
}

impl VolumeWatch {
    /// Takes a sample and says whether a pressure pass should run now.
    pub fn observe(&mut self, l: &Limits, s: Sample) -> Verdict {
        self.rate.push(&s);
        self.last = Some(s);
        if !l.enabled {
            return Verdict::Idle;
        }
        let t = triggers(l, &s, self.rate.rate());
        if t.is_empty() {
            self.retry_at = None;
            if self.state == State::Stuck {
                self.state = State::Ok;
                self.stuck_since = None;
                return Verdict::Recovered;
            }
            return Verdict::Idle;
        }
        if self.retry_at.is_some_and(|r| s.at < r) {
            return Verdict::Idle;
        }
        Verdict::Free(t)
    }

    /// Records a pass and the sample taken after it; returns true when this pass made the
    /// volume stuck (it was not).
    pub fn after_pass(&mut self, l: &Limits, r: PressureReport, after: Option<Sample>) -> bool {
        self.rate.note_freed(r.freed_bytes);
        if let Some(s) = after {
            self.rate.push(&s);
            self.last = Some(s);
        }
        let now = self.last.map_or(r.at, |s| s.at);
        let was_stuck = self.state == State::Stuck;
        if r.goal_met {
            self.state = State::Ok;
            self.retry_at = None;
            self.stuck_since = None;
        } else {
            self.retry_at = Some(now + RETRY_AFTER);
            // Stuck means at a limit now, whatever stopped the pass (nothing more may go,
            // deletions failed, or the pass itself failed): never "ok" at or above `high`.
            // A forecast that cannot be met is only warned of.
            let hard = self
                .last
                .as_ref()
                .is_some_and(|s| triggers(l, s, None).iter().any(Trigger::is_hard));
            if hard {
                self.state = State::Stuck;
                self.stuck_since.get_or_insert(now);
            } else {
                self.state = State::Ok;
            }
        }
        self.last_pass = Some(r);
        self.state == State::Stuck && !was_stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Dur, Percent};

    #[test]
    fn a_sandboxed_store_root_is_named_by_the_real_mount_point() {
        let m = |dev: u64, root: &str, point: &str| crate::inuse::procfs::Mount {
            dev,
            root: root.into(),
            point: point.into(),
        };
        let root = Path::new("/srv/media");
        // Under ProtectSystem=strict + ReadWritePaths=: our table shows the root bound on
        // itself; PID 1's shows the filesystem on /.
        let ours = [m(7, "/", "/"), m(7, "/srv/media", "/srv/media")];
        let init = [m(7, "/", "/"), m(9, "/", "/boot")];
        assert_eq!(mount_point(7, root, &ours, &init), Path::new("/"));
        // A disk mounted at /mnt/usb, the store a bind mount of a directory of it.
        let init = [
            m(7, "/", "/"),
            m(8, "/", "/mnt/usb"),
            m(8, "/rec", "/srv/media"),
        ];
        assert_eq!(mount_point(8, root, &ours, &init), Path::new("/mnt/usb"));
        // PID 1's table unreadable or ours: our deepest mount above the root.
        assert_eq!(mount_point(7, root, &ours, &[]), Path::new("/srv/media"));
        assert_eq!(mount_point(5, root, &[], &[]), root);
    }

    const GB: u64 = 1_000_000_000;

    fn limits(horizon: &str) -> Limits {
        Limits {
            enabled: true,
            high: Percent(90.0),
            low: Percent(80.0),
            horizon: horizon.parse::<Dur>().unwrap(),
            min_free: None,
            min_free_inodes: Percent(5.0),
        }
    }

    fn sample(at: Nanos, used: u64) -> Sample {
        Sample {
            at,
            total: 100 * GB,
            used,
            avail: 100 * GB - used,
            inodes: 1000,
            inodes_avail: 900,
        }
    }

    /// A steady fill fed by a manual clock: the forecast fires when the volume would be
    /// full within the horizon — well below the high watermark — and not earlier.
    #[test]
    fn a_steady_fill_triggers_at_the_horizon_not_at_the_watermark() {
        let l = limits("15m");
        let mut w = VolumeWatch::default();
        let rate = 20_000_000u64; // 20 MB/s: 18 GB in 15 minutes
        let mut used = 50 * GB;
        let mut fired = None;
        for sec in 0..4000 {
            let at = sec * SEC;
            if let Verdict::Free(t) = w.observe(&l, sample(at, used)) {
                fired = Some((sec, used, t));
                break;
            }
            used += rate;
        }
        let (sec, used, t) = fired.expect("the forecast fires");
        assert!(matches!(t.as_slice(), [Trigger::Forecast { .. }]), "{t:?}");
        let free = 100 * GB - used;
        // Full in ≤ 15 min at 20 MB/s means ≤ 18 GB free: fired at 18 GB free, ±1 s of writes.
        assert!(
            (18 * GB - rate..=18 * GB).contains(&free),
            "fired with {free} free at {sec}s"
        );
        assert!(sample(0, used).used_pct() < 90.0);
        // Once triggered, the goal leaves room for the horizon's writes with margin.
        let (need, _) = deficit(&l, &sample(0, used), w.rate.rate());
        assert!(need >= (18 * GB) / 4, "{need}");
    }

    #[test]
    fn no_forecast_without_three_minutes_of_history_or_without_growth() {
        let l = limits("15m");
        let mut w = VolumeWatch::default();
        // 170 s of a fast fill: watermark-free, but too little history to forecast.
        for sec in 0..170 {
            let v = w.observe(&l, sample(sec * SEC, 50 * GB + sec as u64 * 100_000_000));
            assert_eq!(v, Verdict::Idle, "at {sec}s");
        }
        let mut w = VolumeWatch::default();
        for sec in 0..600 {
            assert_eq!(w.observe(&l, sample(sec * SEC, 85 * GB)), Verdict::Idle);
        }
        assert_eq!(w.rate.rate(), Some(0.0));
    }

    /// A one-off 10 GB copy moves one one-minute window; the median ignores it.
    #[test]
    fn a_one_off_spike_does_not_make_a_forecast() {
        let l = limits("15m");
        let mut w = VolumeWatch::default();
        let mut used = 60 * GB;
        for sec in 0..600 {
            if sec == 400 {
                used += 10 * GB;
            }
            used += 1_000_000; // 1 MB/s: years to full
            assert_eq!(
                w.observe(&l, sample(sec * SEC, used)),
                Verdict::Idle,
                "at {sec}s"
            );
        }
        let r = w.rate.rate().unwrap();
        assert!((900_000.0..1_100_000.0).contains(&r), "{r}");
    }

    /// Bytes we freed ourselves do not read as writers slowing down.
    #[test]
    fn our_own_freeing_does_not_lower_the_rate() {
        let mut f = FillRate::default();
        let mut used = 50 * GB;
        for sec in 0..400 {
            if sec % 60 == 30 {
                used -= 2 * GB;
                f.note_freed(2 * GB);
            }
            used += 10_000_000;
            f.push(&sample(sec * SEC, used));
        }
        let r = f.rate().unwrap();
        assert!((9_000_000.0..11_000_000.0).contains(&r), "{r}");
    }

    #[test]
    fn watermark_floors_and_goal() {
        let mut l = limits("0s");
        l.min_free = Some(ByteSize(5 * GB));
        let s = sample(0, 92 * GB);
        let t = triggers(&l, &s, None);
        assert!(matches!(t[0], Trigger::High { .. }), "{t:?}");
        // To 80%: 12 GB.
        assert_eq!(deficit(&l, &s, None).0, 12 * GB);
        // min_free 5 GB at 96 GB used: a trigger, and the goal is 6.25 GB free.
        let s = sample(0, 96 * GB);
        assert!(
            triggers(&l, &s, None)
                .iter()
                .any(|t| matches!(t, Trigger::MinFree { .. }))
        );
        assert_eq!(deficit(&l, &s, None).0, 16 * GB); // low wins
        l.low = Percent(95.0);
        l.high = Percent(99.0);
        assert_eq!(deficit(&l, &s, None).0, 2_250_000_000);
        // Inodes: 1000 total, 3% free < 5%: 62.5 → 63 must be freed up to 6.25%… minus 30 free.
        let s = Sample {
            inodes_avail: 30,
            ..sample(0, 10 * GB)
        };
        assert!(
            triggers(&l, &s, None)
                .iter()
                .any(|t| matches!(t, Trigger::Inodes { .. }))
        );
        assert_eq!(deficit(&l, &s, None).1, 33);
        // No inode limit (btrfs): never an inode trigger.
        let s = Sample {
            inodes: 0,
            inodes_avail: 0,
            ..sample(0, 10 * GB)
        };
        assert!(triggers(&l, &s, None).is_empty());
    }

    #[test]
    fn stuck_then_recovered_without_spinning() {
        let l = limits("0s");
        let mut w = VolumeWatch::default();
        assert!(matches!(
            w.observe(&l, sample(0, 95 * GB)),
            Verdict::Free(_)
        ));
        let r = PressureReport {
            exhausted: true,
            ..Default::default()
        };
        // Freed a little, but nothing more may go and it is still above high: stuck.
        assert!(w.after_pass(&l, r.clone(), Some(sample(0, 93 * GB))));
        assert_eq!(w.state, State::Stuck);
        // Still full: no new pass before RETRY_AFTER.
        assert_eq!(w.observe(&l, sample(SEC, 95 * GB)), Verdict::Idle);
        assert!(matches!(
            w.observe(&l, sample(RETRY_AFTER, 95 * GB)),
            Verdict::Free(_)
        ));
        let again = Some(sample(RETRY_AFTER, 95 * GB));
        assert!(!w.after_pass(&l, r.clone(), again), "stuck already");
        assert_eq!(
            w.observe(&l, sample(RETRY_AFTER + SEC, 70 * GB)),
            Verdict::Recovered
        );
        assert_eq!(w.state, State::Ok);
        // A pass that ran out of candidates below high (not at low yet) is not stuck.
        let mut w = VolumeWatch::default();
        assert!(matches!(
            w.observe(&l, sample(0, 91 * GB)),
            Verdict::Free(_)
        ));
        assert!(!w.after_pass(&l, r, Some(sample(SEC, 85 * GB))));
        assert_eq!(w.state, State::Ok);
        // A pass that failed (the registry's disk full) at or above high: never ok.
        let mut w = VolumeWatch::default();
        assert!(matches!(
            w.observe(&l, sample(0, 100 * GB)),
            Verdict::Free(_)
        ));
        let failed = PressureReport {
            error: Some("database or disk is full".into()),
            ..Default::default()
        };
        assert!(w.after_pass(&l, failed, Some(sample(SEC, 100 * GB))));
        assert_eq!(w.state, State::Stuck);
    }

    #[test]
    fn failed_deletions_are_named_never_protected() {
        let k = Kept {
            failed: 5 << 20,
            failure: Some("cannot move it into .mediaretain-trash: Permission denied".into()),
            ..Default::default()
        };
        let text = k.to_string();
        assert!(
            text.contains("5 MiB whose deletion FAILED (cannot move"),
            "{text}"
        );
        assert!(!k.hint().contains("min_keep"), "{}", k.hint());
    }
}
