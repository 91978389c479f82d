//! The disk-pressure pass: when a volume's watchdog triggers, free space in the order of
//! [`crate::policy::pressure`] through the same executor as every other deletion (in-use
//! and pins re-checked per file), re-reading `statvfs` between batches — deleted bytes are
//! not freed bytes while files are still open or hard-linked — until the goal is reached or
//! nothing more may go.
//!
//! One file for one pass: when to run (the watchdog's tick), what may go (the tiers'
//! candidates, read a page at a time), and the loop that frees until the goal — the
//! candidates' cursor and the loop share the volume's goal and the batch's outcome.

use std::cell::Cell;
use std::collections::VecDeque;

use super::*;
use crate::config::Limits;
use crate::policy::pressure::{Tier, class_tiers};
use crate::watchdog::{Kept, PressureReport, Sample, State, Trigger, Verdict, deficit};

/// Why and since when a pressure pass runs.
#[derive(Clone, Copy)]
struct Occasion<'a> {
    /// What put the volume under pressure.
    triggers: &'a [Trigger],
    /// Its fill rate.
    rate: Option<f64>,
    /// When the triggering sample was taken (for the reaction latency).
    since: Instant,
    /// It was stuck before this pass (repeated passes log only what they delete).
    was_stuck: bool,
}

/// Entries read from the registry per class at a time.
const PAGE: usize = 256;

impl Engine {
    /// Samples every watched volume and runs a pressure pass on each that needs one
    /// (blocking). True when something changed that the status line shows.
    pub fn watchdog_tick(&self) -> bool {
        let rt = self.runtime();
        let mut changed = false;
        for (v, limits) in &rt.volumes {
            let started = Instant::now();
            let sample = match Sample::read(&v.probe, self.now()) {
                Ok(s) => s,
                Err(e) => {
                    debug_unreadable(v, &e);
                    continue;
                }
            };
            let (verdict, rate, was_stuck) = {
                let mut watch = self.watch.lock().expect("watch lock");
                let w = watch.entry(v.dev).or_default();
                let verdict = w.observe(limits, sample);
                let was_stuck = w.state == State::Stuck;
                if let Verdict::Free(_) = verdict {
                    w.state = State::Freeing;
                }
                (verdict, w.rate.rate(), was_stuck)
            };
            match verdict {
                Verdict::Idle => {}
                Verdict::Recovered => {
                    changed = true;
                    info!(action = "pressure", volume = %v.mount.display(), used_pct = sample.used_pct(),
                        "volume {} is within its limits again ({:.1}% used)", v.mount.display(), sample.used_pct());
                }
                Verdict::Free(triggers) => {
                    changed = true;
                    let why = Occasion {
                        triggers: &triggers,
                        rate,
                        since: started,
                        was_stuck,
                    };
                    let report = match self.pressure(&rt, v, limits, &why) {
                        // Some registry write before the intents found the disk full:
                        // give back the reserve and run the pass again at once.
                        Err(EngineError::Registry(e))
                            if crate::reserve::is_disk_full(&e)
                                && self.reserve.release().is_some() =>
                        {
                            error!(action = "reserve", path = %self.reserve.path().display(), error = %e,
                                "the registry's disk is full: released the space reserve and run the pressure pass again");
                            self.pressure(&rt, v, limits, &why)
                        }
                        r => r,
                    };
                    let report = report
                        .unwrap_or_else(|e| {
                            error!(action = "pressure", volume = %v.mount.display(), error = %e, "pressure pass failed");
                            PressureReport {
                                at: self.now(),
                                triggers: triggers.iter().map(ToString::to_string).collect(),
                                before_pct: sample.used_pct(),
                                after_pct: sample.used_pct(),
                                error: Some(e.to_string()),
                                ..Default::default()
                            }
                        });
                    let mut watch = self.watch.lock().expect("watch lock");
                    let w = watch.entry(v.dev).or_default();
                    let kept = report.kept.clone().unwrap_or_default();
                    let cause = match (&report.error, &kept.failure) {
                        (Some(e), _) => format!("the pressure pass failed: {e}"),
                        (None, Some(f)) => format!("deletions failed: {f}"),
                        (None, None) => "nothing more may be deleted".to_string(),
                    };
                    let breakdown = match &report.kept {
                        Some(k) => format!(" ({k})"),
                        None => String::new(),
                    };
                    let hint = kept.hint();
                    let after = report.after_pct;
                    let now = Sample::read(&v.probe, self.now()).ok();
                    if w.after_pass(limits, report, now) {
                        error!(
                            target: crate::logging::ALARM,
                            action = "stuck",
                            volume = %v.mount.display(),
                            used_pct = after,
                            retained = kept.retained,
                            in_use = kept.in_use,
                            protected = kept.protected,
                            unmanaged = kept.unmanaged,
                            failed = kept.failed,
                            reason = %cause,
                            "volume {} is STUCK at {after:.1}% used: {cause}{breakdown}; {hint}",
                            v.mount.display()
                        );
                    }
                }
            }
        }
        self.keep_reserve();
        changed
    }

    /// Makes the space reserve again once its volume has room (nothing to do, and no
    /// system call, while it is in place).
    fn keep_reserve(&self) {
        if self.reserve.is_held() {
            return;
        }
        match self.reserve.ensure() {
            Ok(true) => {
                info!(action = "reserve", path = %self.reserve.path().display(), "space reserve for the registry made again")
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "cannot make the space reserve"),
        }
    }

    /// Whether any watched volume is near a trigger (sampled more often then).
    pub fn watch_near(&self) -> bool {
        let rt = self.runtime();
        let watch = self.watch.lock().expect("watch lock");
        rt.volumes.iter().any(|(v, l)| {
            watch
                .get(&v.dev)
                .and_then(|w| w.last)
                .is_some_and(|s| crate::watchdog::near(l, &s))
        })
    }

    /// One line on volumes that are freeing or stuck (for the sd_notify STATUS).
    pub fn watch_summary(&self) -> Option<String> {
        let rt = self.runtime();
        let watch = self.watch.lock().expect("watch lock");
        let parts: Vec<String> = rt
            .volumes
            .iter()
            .filter_map(|(v, _)| {
                let w = watch.get(&v.dev)?;
                let pct = w.last.map(|s| s.used_pct()).unwrap_or(0.0);
                match w.state {
                    State::Ok => None,
                    State::Freeing => Some(format!("freeing {} ({pct:.1}%)", v.mount.display())),
                    State::Stuck => Some(format!(
                        "STUCK {} at {pct:.1}% ({})",
                        v.mount.display(),
                        match w.last_pass.as_ref() {
                            Some(p) if p.error.is_some() => "the pressure pass fails".to_string(),
                            Some(p) => p
                                .kept
                                .as_ref()
                                .map(|k| {
                                    let mut s = format!(
                                        "{} retained, {} in use",
                                        ByteSize(k.retained),
                                        ByteSize(k.in_use)
                                    );
                                    if let Some(l) = k.leases.first() {
                                        s += &format!(
                                            ", most by lease {} of {} (uid {})",
                                            l.id, l.holder, l.uid
                                        );
                                    }
                                    if k.failed > 0 {
                                        s += &format!(", {} failing", ByteSize(k.failed));
                                    }
                                    s
                                })
                                .unwrap_or_default(),
                            None => String::new(),
                        }
                    )),
                }
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Frees volume `v` until its goal is met or nothing more may go.
    fn pressure(
        &self,
        rt: &Runtime,
        v: &VolumeSpec,
        limits: &Limits,
        why: &Occasion,
    ) -> Result<PressureReport> {
        let Occasion {
            triggers,
            rate,
            since,
            was_stuck,
        } = *why;
        let _pass = self.pass.lock().expect("pass lock");
        let started = Instant::now();
        let now = self.now();
        let io = |e: std::io::Error| {
            EngineError::Store(StoreError::Io {
                store: v.stores.join(","),
                path: v.mount.clone(),
                source: e,
            })
        };
        let mut sample = Sample::read(&v.probe, now).map_err(io)?;
        let why = triggers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if !was_stuck {
            warn!(action = "pressure", volume = %v.mount.display(), used_pct = sample.used_pct(),
                "disk pressure on {}: {why}; freeing down to {}", v.mount.display(), limits.low);
        }
        let mut report = PressureReport {
            at: now,
            triggers: triggers.iter().map(ToString::to_string).collect(),
            before_pct: sample.used_pct(),
            ..Default::default()
        };
        let mut cands = Candidates::new(
            rt,
            v,
            now,
            format!("disk pressure on {} ({why})", v.mount.display()),
        );
        let mut gc = GcReport {
            at: now,
            trigger: "pressure".into(),
            ..Default::default()
        };
        // Set once nothing else is left at a hard limit: socket clients' leases give way.
        let mut yielding = false;
        // What the first round refused (its files are met again in the second).
        let mut refused_before = (0, 0);
        loop {
            let (bytes, inodes) = deficit(limits, &sample, rate);
            if bytes == 0 && inodes == 0 {
                report.goal_met = true;
                break;
            }
            let mut batch = cands.batch(&self.registry, bytes, inodes)?;
            if batch.is_empty() && cands.wants_dupes() {
                // Reached the recordings tier: identical copies go first there.
                let dupes = dedupe::duplicate_actions(rt, &self.reg(), self.now(), &v.stores)?;
                cands.load_dupes(dupes);
                batch = cands.batch(&self.registry, bytes, inodes)?;
            }
            if batch.is_empty() && !yielding && self.leases_may_yield(limits, &sample, &gc)? {
                // A socket client's lease must not keep a full disk: go through the
                // candidates once more, its leases giving way (root's never do).
                yielding = true;
                refused_before = (gc.refused, gc.refused_bytes);
                gc.leases_kept.clear();
                cands = Candidates::new(
                    rt,
                    v,
                    now,
                    format!(
                        "disk pressure on {} ({why}), nothing else left: socket clients' leases give way",
                        v.mount.display()
                    ),
                );
                continue;
            }
            if batch.is_empty() {
                report.exhausted = true;
                break;
            }
            let before = Cell::new(sample.used_pct());
            let note = || {
                let after = Sample::read(&v.probe, 0).map_or(f64::NAN, |s| s.used_pct());
                let n = format!(
                    "volume {} at {:.1}% before this batch, {after:.1}% after",
                    v.mount.display(),
                    before.get()
                );
                before.set(after);
                n
            };
            let ledger = self.ledger("pressure", false);
            (self.executor(rt)).execute(&ledger, &batch, &mut gc, Some(&note), yielding)?;
            report.batches += 1;
            let next = Sample::read(&v.probe, self.now()).map_err(io)?;
            report.freed_bytes += sample.used.saturating_sub(next.used);
            sample = next;
        }
        report.after_pct = sample.used_pct();
        report.deleted_files = gc.deleted_files;
        report.deleted_bytes = gc.deleted_bytes;
        report.refused = gc.refused - refused_before.0;
        report.failed = gc.failed;
        report.first_unlink_us = gc
            .first_unlink
            .map(|t| t.saturating_duration_since(since).as_micros() as u64);
        if !report.goal_met {
            let in_use = gc.refused_bytes - refused_before.1 + cands.in_use_bytes;
            let (mut classified, mut retained) = (0, 0);
            for s in &v.stores {
                let (c, r) = self.reg().census(s)?;
                classified += c;
                retained += r;
            }
            // A deletion that failed is counted as such with its cause, never as protected.
            let failed = gc.failed_bytes;
            report.kept = Some(Kept {
                retained,
                in_use,
                protected: classified.saturating_sub(retained + in_use + failed),
                unmanaged: sample.used.saturating_sub(classified),
                failed,
                failure: gc.first_failure.clone(),
                leases: self.leases_held(&gc.leases_kept)?,
            });
        }
        report.leases_gave_way = self.leases_held(&gc.leases_gave_way)?;
        for l in &report.leases_gave_way {
            error!(
                target: crate::logging::ALARM,
                action = "lease_gave_way",
                volume = %v.mount.display(),
                lease = l.id,
                holder = %l.holder,
                uid = l.uid,
                pattern = %l.pattern,
                files = l.files,
                bytes = l.bytes,
                "{l} gave way: deleted under disk pressure on {} (at a hard limit with nothing else left to free); a socket client's lease cannot keep a full disk — give the consumer its own space or take the lease as root",
                v.mount.display()
            );
        }
        report.millis = started.elapsed().as_millis() as u64;
        let volume = v.mount.display().to_string();
        let seconds = started.elapsed().as_secs_f64();
        self.metrics
            .pressure_pass(&volume, report.freed_bytes, seconds);
        if was_stuck && report.deleted_files == 0 && !report.goal_met {
            // Still stuck and nothing changed: the alarm was raised once already.
            return Ok(report);
        }
        info!(
            action = "pressure",
            volume = %v.mount.display(),
            deleted = report.deleted_files,
            bytes = report.deleted_bytes,
            freed = report.freed_bytes,
            refused = report.refused,
            millis = report.millis,
            "pressure pass on {}: {:.1}% → {:.1}% used; {} deleted ({}), {} freed, {} refused{}",
            v.mount.display(),
            report.before_pct,
            report.after_pct,
            crate::units::plural(report.deleted_files, "file"),
            ByteSize(report.deleted_bytes),
            ByteSize(report.freed_bytes),
            report.refused,
            if report.goal_met { "" } else { "; goal not reached" }
        );
        let mut a = self.activity.lock().expect("activity lock");
        a.deleted_files += report.deleted_files;
        a.deleted_bytes += report.deleted_bytes;
        Ok(report)
    }
}

impl Engine {
    /// Whether socket clients' leases should give way now: the volume is at a hard limit
    /// (not only a forecast) and such a lease kept files in this pass.
    fn leases_may_yield(&self, limits: &Limits, sample: &Sample, gc: &GcReport) -> Result<bool> {
        let hard = crate::watchdog::triggers(limits, sample, None)
            .iter()
            .any(Trigger::is_hard);
        if !hard || gc.leases_kept.is_empty() {
            return Ok(false);
        }
        let uid = rustix::process::geteuid().as_raw();
        let leases = self.lease_set()?;
        Ok(leases
            .active()
            .any(|l| l.yields(uid) && gc.leases_kept.contains_key(&l.id)))
    }

    /// The leases of `tally` (id → files, bytes), named, most bytes first.
    fn leases_held(
        &self,
        tally: &std::collections::BTreeMap<i64, (u64, u64)>,
    ) -> Result<Vec<crate::inuse::leases::LeaseHeld>> {
        if tally.is_empty() {
            return Ok(Vec::new());
        }
        let set = self.lease_set()?;
        let mut out: Vec<_> = tally
            .iter()
            .map(|(id, (files, bytes))| {
                let mut h = set
                    .active()
                    .find(|l| l.id == *id)
                    .map(crate::inuse::leases::LeaseHeld::of)
                    .unwrap_or_else(|| crate::inuse::leases::LeaseHeld {
                        id: *id,
                        holder: "(released)".into(),
                        uid: 0,
                        pattern: String::new(),
                        files: 0,
                        bytes: 0,
                    });
                h.files = *files;
                h.bytes = *bytes;
                h
            })
            .collect();
        out.sort_by_key(|h| std::cmp::Reverse(h.bytes));
        Ok(out)
    }
}

/// A failing `statvfs` (a store's disk unmounted) is seen again at the next scan; keep the
/// journal quiet about it at every tick.
fn debug_unreadable(v: &VolumeSpec, e: &std::io::Error) {
    tracing::debug!(volume = %v.mount.display(), error = %e, "cannot sample volume");
}

/// One class's candidates within one tier, read a page at a time, oldest first.
struct Cursor {
    store: String,
    class: String,
    age_from: AgeFrom,
    quiet: Nanos,
    lo: Nanos,
    hi: Nanos,
    /// Only files with a verified remote copy.
    copied: bool,
    /// Files of an offload class taken without a copy (`free_uncopied_under_pressure`).
    uncopied: bool,
    after: Option<(Nanos, i64)>,
    buf: VecDeque<Entry>,
    done: bool,
}

/// The classes of one tier and priority, merged oldest first.
struct Group {
    tier: Tier,
    priority: i64,
    cursors: Vec<Cursor>,
}

/// Every file disk pressure may free on one volume, lazily, in pressure order.
struct Candidates {
    groups: Vec<Group>,
    at: usize,
    now: Nanos,
    /// Bytes passed over because they are still being written.
    in_use_bytes: u64,
    why: String,
    /// Duplicates (dedupe classes), served first in the recordings tier: None until that
    /// tier is reached (they are planned only then), then what is left of them.
    dupes: Option<VecDeque<policy::Action>>,
    /// The entries served as duplicates (not served again by a tier).
    dupe_ids: std::collections::HashSet<i64>,
    /// The recordings tier is reached and the duplicates are not planned yet.
    want_dupes: bool,
}

impl Candidates {
    fn new(rt: &Runtime, v: &VolumeSpec, now: Nanos, why: String) -> Candidates {
        let mut groups: Vec<Group> = Vec::new();
        for c in rt
            .config
            .classes
            .iter()
            .filter(|c| v.stores.contains(&c.store))
        {
            for (tier, lo, hi, copied) in class_tiers(c, now) {
                if lo >= hi {
                    continue;
                }
                let cursor = Cursor {
                    store: c.store.clone(),
                    class: c.name.clone(),
                    age_from: c.age_from,
                    quiet: c.quiet_period.as_nanos_i64(),
                    lo,
                    hi,
                    copied,
                    uncopied: c.offload.is_some() && !copied,
                    after: None,
                    buf: VecDeque::new(),
                    done: false,
                };
                match groups
                    .iter_mut()
                    .find(|g| g.tier == tier && g.priority == c.pressure_priority)
                {
                    Some(g) => g.cursors.push(cursor),
                    None => groups.push(Group {
                        tier,
                        priority: c.pressure_priority,
                        cursors: vec![cursor],
                    }),
                }
            }
        }
        groups.sort_by_key(|g| (g.tier, g.priority));
        Candidates {
            groups,
            at: 0,
            now,
            in_use_bytes: 0,
            why,
            dupes: None,
            dupe_ids: Default::default(),
            want_dupes: false,
        }
    }

    /// Whether the duplicates are wanted now (the recordings tier is reached).
    fn wants_dupes(&self) -> bool {
        self.want_dupes && self.dupes.is_none()
    }

    /// The duplicates to serve first in the recordings tier.
    fn load_dupes(&mut self, dupes: Vec<policy::Action>) {
        self.dupe_ids = dupes.iter().map(|a| a.entry.id).collect();
        self.dupes = Some(
            dupes
                .into_iter()
                .map(|mut a| {
                    a.reason = format!(
                        "{}: {}, duplicates first: {}",
                        self.why,
                        Tier::Recording,
                        a.reason
                    );
                    a
                })
                .collect(),
        );
    }

    /// The next candidate in pressure order.
    fn next(&mut self, reg: &Mutex<Registry>) -> Result<Option<policy::Action>> {
        loop {
            if self
                .groups
                .get(self.at)
                .is_none_or(|g| g.tier >= Tier::Recording)
            {
                match self.dupes.as_mut() {
                    None => {
                        self.want_dupes = true;
                        return Ok(None);
                    }
                    Some(q) => {
                        if let Some(a) = q.pop_front() {
                            return Ok(Some(a));
                        }
                    }
                }
            }
            let Some(g) = self.groups.get_mut(self.at) else {
                break;
            };
            for c in g.cursors.iter_mut().filter(|c| c.buf.is_empty() && !c.done) {
                let page = reg.lock().expect("registry lock").oldest(
                    &c.store,
                    &c.class,
                    c.age_from,
                    (c.lo, c.hi),
                    c.copied,
                    c.after,
                    PAGE,
                )?;
                c.done = page.len() < PAGE;
                if let Some(last) = page.last() {
                    c.after = Some((last.age_ref(c.age_from), last.id));
                }
                c.buf.extend(page);
            }
            let oldest = g
                .cursors
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.buf.front().map(|e| ((e.age_ref(c.age_from), e.id), i)))
                .min();
            let Some((_, i)) = oldest else {
                self.at += 1;
                continue;
            };
            let c = &mut g.cursors[i];
            let e = c.buf.pop_front().expect("a front entry");
            if self.dupe_ids.contains(&e.id) {
                continue;
            }
            if e.being_written(c.quiet, self.now) {
                self.in_use_bytes += e.size;
                continue;
            }
            return Ok(Some(policy::Action {
                age_ref: e.age_ref(c.age_from),
                class_name: c.class.clone(),
                rule: Rule::Pressure,
                reason: match c.uncopied && e.copy.is_none() {
                    true => format!(
                        "{}: {}, oldest first; WITHOUT a remote copy (free_uncopied_under_pressure = true)",
                        self.why, g.tier
                    ),
                    false => format!("{}: {}, oldest first", self.why, g.tier),
                },
                entry: e,
                would_refuse: None,
                dupe_of: None,
            }));
        }
        Ok(None)
    }

    /// Candidates worth at least `bytes` and `inodes` (at most one chunk).
    fn batch(
        &mut self,
        reg: &Mutex<Registry>,
        bytes: u64,
        inodes: u64,
    ) -> Result<Vec<policy::Action>> {
        let mut out = Vec::new();
        let mut sum = 0u64;
        while out.len() < CHUNK && (sum < bytes || (out.len() as u64) < inodes) {
            match self.next(reg)? {
                Some(a) => {
                    sum += a.entry.size;
                    out.push(a);
                }
                None => break,
            }
        }
        Ok(out)
    }
}
