//! The recorder's side of a deletion, shared by the executor's local chunks and the bulk
//! deletions of S3 stores (`remote.rs`): each file's outcome counted in the pass's report,
//! logged (once per episode, a bulk pass's first few), bumped in the metrics, its failure
//! backing off ([`Failing`]) and its audit record and entry to forget handed on; and the
//! registry write that gives back the space reserve on a full disk.
//!
//! It sees only what it uses — the registry, the running config (a class's lifecycle), the
//! metrics, the progress, the failing files, the reserve, the clock — borrowed from the
//! engine by [`Ledger`], never the whole engine.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use tracing::{debug, error, info};

use super::failing::{self, Failing};
use super::{GcReport, Runtime, file_result, refusal_kind};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::policy;
use crate::progress::Progress;
use crate::registry::{AuditRecord, Registry};
use crate::reserve::Reserve;
use crate::store::Outcome;
use crate::units::ByteSize;

/// What a chunk of deletions hands the recorder: entries gone, audit records.
pub(super) type Recorded = (Vec<(i64, PathBuf)>, Vec<AuditRecord>);

/// Where the outcomes of one run of deletions (a pass, a pressure batch, an `rm`) are
/// written down, and by what `trigger`; `detail`: the report lists every file.
pub(super) struct Ledger<'a> {
    /// The registry: a refusal's last record (same episode?), intents, records.
    pub registry: &'a Mutex<Registry>,
    /// Given back when the registry's disk is full (see [`Ledger::write`]).
    pub reserve: &'a Reserve,
    /// The running config, read per file as it is then (a segment's deletion is churn).
    pub runtime: &'a RwLock<Arc<Runtime>>,
    /// Deletions, refusals, failures and S3 errors counted.
    pub metrics: &'a Metrics,
    /// One step per file.
    pub progress: &'a Progress,
    /// Files whose deletion failed, backing off.
    pub failing: &'a Mutex<Failing>,
    /// When each record happened.
    pub clock: &'a dyn Clock,
    /// What started the deletions (`gc`, `pressure`, `rm`, …).
    pub trigger: &'a str,
    /// Every file's result goes in the report.
    pub detail: bool,
}

impl Ledger<'_> {
    /// The registry, locked.
    pub fn reg(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("registry lock")
    }

    /// Runs registry write `f` (`what` it writes); when the registry's disk is full, gives
    /// back the space reserve and tries once more: the intents a pass writes before its
    /// first unlink must be written on a volume filled to 100% that holds the registry.
    pub fn write<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut Registry) -> crate::registry::Result<T>,
    ) -> crate::registry::Result<T> {
        let first = f(&mut self.reg());
        match first {
            Err(e) if crate::reserve::is_disk_full(&e) => match self.reserve.release() {
                Some(bytes) => {
                    error!(action = "reserve", path = %self.reserve.path().display(), bytes, error = %e,
                        "the registry's disk is full: released the space reserve ({}) to write the {what}", ByteSize(bytes));
                    f(&mut self.reg())
                }
                None => Err(e),
            },
            r => r,
        }
    }

    /// Counts, logs and audits one file's outcome: `gone` gets its entry if the file is
    /// gone, `records` its audit record if it is worth one.
    pub(super) fn account(
        &self,
        a: &policy::Action,
        outcome: Outcome,
        report: &mut GcReport,
        gone: &mut Vec<(i64, PathBuf)>,
        records: &mut Vec<AuditRecord>,
    ) {
        let (trigger, detail) = (self.trigger, self.detail);
        self.progress.add(1);
        // A refusal is audited and logged when its episode starts or its kind changes, not
        // on every pass while it lasts (a file in use is normal; the journal and the audit
        // must grow with what changed, not with the number of passes).
        let churn = (self.runtime.read().expect("runtime lock"))
            .config
            .class(&a.class_name)
            .is_some_and(|c| c.lifecycle == crate::config::Lifecycle::Segment);
        if let Outcome::Refused(why) = &outcome {
            let kind = refusal_kind(why);
            if why.contains(crate::inuse::playlist::READ_AGAIN) {
                report.playlist_waits += 1;
            }
            // A segment being written (open, growing), listed by its playlist or in its
            // removal grace is the ordinary life of a live stream (with keep_for 0s every
            // segment goes through it): `explain` shows it live; the journal and the audit
            // are not told.
            let routine = churn && matches!(kind, "open" | "playlist" | "writer" | "changed");
            let same = routine
                || self
                    .reg()
                    .history(&a.entry.store, &a.entry.path, 1)
                    .ok()
                    .and_then(|h| h.into_iter().next())
                    .is_some_and(|h| {
                        h.action == "delete"
                            && h.outcome == "refused"
                            && refusal_kind(&h.reason) == kind
                    });
            report.refused += 1;
            report.refused_bytes += a.entry.size;
            if crate::metrics::IN_USE_KINDS.contains(&kind) {
                *report
                    .in_use
                    .entry((a.entry.store.clone(), a.class_name.clone()))
                    .or_default() += 1;
            }
            if same {
                debug!(action = "refuse", path = %format!("{}:{}", a.entry.store, crate::spell::show(&a.entry.path)), reason = %why, "still refused");
                if detail {
                    report.results.push(file_result(a, outcome));
                }
                return;
            }
            report.refusals_started += 1;
            self.metrics.refused(&a.entry.store, &a.class_name, kind);
        }
        // A failure is logged when its episode starts (then the file backs off); a bulk
        // pass logs its first files and sums up the rest (every file is in the audit).
        let loud = match &outcome {
            Outcome::Failed(err) => {
                let (episode, wait) = self.failing.lock().expect("failing lock").failed(
                    &a.entry.store,
                    &a.entry.path,
                    err,
                    Instant::now(),
                );
                report.failures_started += (episode == failing::Episode::Started) as u64;
                debug!(path = %format!("{}:{}", a.entry.store, crate::spell::show(&a.entry.path)), wait = ?wait, "deletion failed; backing off");
                episode == failing::Episode::Started && report.failures_started <= DETAIL_PER_PASS
            }
            Outcome::Deleted | Outcome::Vanished => {
                let was = (self.failing.lock().expect("failing lock"))
                    .cleared(&a.entry.store, &a.entry.path);
                if was > 0 {
                    info!(path = %format!("{}:{}", a.entry.store, crate::spell::show(&a.entry.path)), failures = was, "deleted after {was} failed attempts");
                }
                report.deleted_files + report.vanished - report.churn_files < DETAIL_PER_PASS
            }
            _ => true,
        };
        log_outcome(a, &outcome, trigger, churn, !loud);
        match &outcome {
            Outcome::Deleted => {
                report.first_unlink.get_or_insert_with(Instant::now);
                report.deleted_files += 1;
                report.deleted_bytes += a.entry.size;
                let rule = a.rule.to_string();
                self.metrics
                    .deleted(&a.entry.store, &a.class_name, &rule, trigger, a.entry.size);
                if churn {
                    report.churn_files += 1;
                    report.churn_bytes += a.entry.size;
                }
                gone.push((a.entry.id, a.entry.path.clone()));
            }
            Outcome::Vanished => {
                report.vanished += 1;
                gone.push((a.entry.id, a.entry.path.clone()));
            }
            Outcome::Refused(_) => {} // counted above
            Outcome::Failed(why) => {
                report.failed += 1;
                report.failed_bytes += a.entry.size;
                report.first_failure.get_or_insert_with(|| why.clone());
                self.metrics.failed(&a.entry.store, &a.class_name);
            }
            Outcome::WouldDelete => {} // dry runs never get here
        }
        records.push(AuditRecord {
            at: self.clock.now(),
            store: a.entry.store.clone(),
            path: a.entry.path.clone(),
            action: "delete".into(),
            outcome: outcome.word().into(),
            class: (!a.class_name.is_empty()).then(|| a.class_name.clone()),
            rule: Some(a.rule.to_string()),
            reason: match outcome.detail() {
                Some(d) => format!("{}; {d}", a.reason),
                None => a.reason.clone(),
            },
            trigger: trigger.into(),
            bytes: Some(a.entry.size),
        });
        if detail {
            report.results.push(file_result(a, outcome));
        }
    }
}

/// Files of one pass logged one by one at info (deletions, and failures that start an
/// episode); the rest go at debug, summed up by the pass's line (every file is audited).
const DETAIL_PER_PASS: u64 = 10;

/// Logs one file's outcome. Deletions of segments (`churn`: a live stream makes one a
/// second) go at debug, summed up at info once a minute; so do deletions and failures
/// beyond a pass's first few and failures that continue an episode (`quiet`: summed up by
/// the pass). A refusal is an ordinary event (a file in use): info, once per episode.
fn log_outcome(a: &policy::Action, o: &Outcome, trigger: &str, churn: bool, quiet: bool) {
    // The common case of a bulk pass (a deletion at debug, debug off) formats nothing: the
    // path's spelling was a tenth of the deleting thread's work per file.
    let at_debug = match o {
        Outcome::Deleted => churn || quiet,
        Outcome::Vanished | Outcome::Failed(_) => quiet,
        Outcome::WouldDelete => return,
        Outcome::Refused(_) => false,
    };
    if at_debug && !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let path = format!("{}:{}", a.entry.store, crate::spell::show(&a.entry.path));
    match o {
        Outcome::Deleted if churn || quiet => debug!(
            action = "delete", path = %path, class = %a.class_name, rule = %a.rule,
            reason = %a.reason, bytes = a.entry.size, trigger, "deleted {path}: {}", a.reason
        ),
        Outcome::Deleted => info!(
            action = "delete", path = %path, class = %a.class_name, rule = %a.rule,
            reason = %a.reason, bytes = a.entry.size, trigger, "deleted {path}: {}", a.reason
        ),
        Outcome::Vanished if quiet => debug!(
            action = "vanished", path = %path, class = %a.class_name, trigger,
            "{path} was already gone"
        ),
        Outcome::Vanished => info!(
            action = "vanished", path = %path, class = %a.class_name, trigger,
            "{path} was already gone"
        ),
        Outcome::WouldDelete => {}
        Outcome::Refused(why) => info!(
            action = "refuse", path = %path, class = %a.class_name, reason = %why, trigger,
            "refused to delete {path}: {why}"
        ),
        Outcome::Failed(err) if quiet => debug!(
            action = "fail", path = %path, class = %a.class_name, reason = %err, trigger,
            "failed to delete {path}: {err}"
        ),
        Outcome::Failed(err) => error!(
            action = "fail", path = %path, class = %a.class_name, reason = %err, trigger,
            "failed to delete {path}: {err}"
        ),
    }
}
