//! Offload of local files to S3 stores: the streamed, verified copy (its upload id noted
//! first, so a crash leaves something to abort), the free key for each version, backoff of
//! files whose copies keep failing, and the copy checks that guard every local deletion of
//! an offload class ("offload before delete").
//!
//! It sees only what it uses: its own [`State`] (the stores that did not answer a check,
//! the one-batch-at-a-time lock), and through [`Offloader`] the registry (copies, backoffs,
//! noted uploads, audit), the clock, the metrics and the engine's "pass soon" signal; the
//! leases and the fleet's refusal are handed to [`Offloader::run`]. Never the whole engine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tracing::{debug, error, info, warn};

use super::remote::etag_ino;
use super::s3io::io;
use super::{GcReport, Result, Runtime};
use crate::clock::Clock;
use crate::inuse::leases::LeaseSet;
use crate::metrics::Metrics;
use crate::policy::{self, OffloadAction, Rule};
use crate::registry::{AuditRecord, Entry, FileMeta, Registry};
use crate::store::local::{Expect, LocalStore};
use crate::store::s3::S3Store;
use crate::store::{Store as _, StoreError, Verified};
use crate::units::{Nanos, fmt_span};

/// A copy check before an unlink gives up after this long…
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// …and a store that failed one is not asked again for this long.
const CHECK_BACKOFF: std::time::Duration = std::time::Duration::from_secs(60);

/// A file whose offload failed is tried again after this long, doubling with each failure
/// in a row…
const BACKOFF_FIRST: Nanos = 30_000_000_000;
/// …up to this long.
const BACKOFF_MAX: Nanos = 3_600_000_000_000;

/// A file whose offloads keep failing: when it is tried again, and the last failure in
/// words, with how often in a row (shown by `explain`).
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Not tried again before this time.
    pub next: Nanos,
    /// The last failure, with when it is tried again.
    pub last: String,
}

/// Deletes object `key` of `remote` (within the copy-check deadline): the words for it.
fn remove_object(remote: &S3Store, key: &str) -> String {
    let gone = io(async { tokio::time::timeout(CHECK_TIMEOUT, remote.delete(key)).await });
    match gone {
        Ok(crate::store::Outcome::Deleted | crate::store::Outcome::Vanished) => {
            format!("its object {}:{key} was removed", remote.name())
        }
        Ok(o) => format!(
            "its object {}:{key} could not be removed ({}); the next offload replaces it",
            remote.name(),
            o.detail().unwrap_or(o.word())
        ),
        Err(_) => format!(
            "its object {}:{key} could not be removed (no answer within 5 s); the next offload replaces it",
            remote.name()
        ),
    }
}

/// What offloading keeps between passes (a field of the engine).
#[derive(Default)]
pub(super) struct State {
    /// Held while a batch of offloads runs (outside the pass lock): one batch at a time.
    batch: Mutex<()>,
    /// S3 stores that failed a copy check: when, and why.
    unanswered: Mutex<HashMap<String, (Instant, String)>>,
}

impl State {
    /// Waits for the batch of offloads under way, if any; the next one runs while the
    /// guard is held.
    pub fn one_batch(&self) -> MutexGuard<'_, ()> {
        self.batch.lock().expect("offload lock")
    }
}

/// What offloads and copy checks see of the engine, borrowed for one call.
pub(super) struct Offloader<'a> {
    /// Copies, backoffs, noted uploads, the offload audit.
    pub registry: &'a Mutex<Registry>,
    /// The stores that did not answer.
    pub state: &'a State,
    /// When (backoffs, records).
    pub clock: &'a dyn Clock,
    /// Offloads and S3 errors counted.
    pub metrics: &'a Metrics,
    /// Asks the daemon for a pass soon (a copy found lost is copied again at once).
    pub pass_soon: &'a tokio::sync::Notify,
}

impl Offloader<'_> {
    fn reg(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("registry lock")
    }

    fn now(&self) -> Nanos {
        self.clock.now()
    }

    /// Offload before delete, on every path (any rule, budget, pressure tier): why local
    /// file `a` of an offload class may not go now — no verified copy of this version is
    /// recorded, or its server does not confirm it right now. `None` for other classes, and
    /// for a pressure deletion of a class with `free_uncopied_under_pressure` (its audit
    /// reason says so).
    pub fn guard(&self, rt: &Runtime, a: &policy::Action) -> Option<String> {
        let o = rt.config.class(&a.class_name)?.offload.as_ref()?;
        if a.entry.copy.is_none() {
            if a.rule == Rule::Pressure && o.free_uncopied_under_pressure {
                return None;
            }
            return Some(format!(
                "offload before delete: no verified copy of this version in {}",
                o.to
            ));
        }
        self.copy_problem(rt, &a.entry)
    }

    /// Why the verified remote copy of local entry `e` cannot be relied on now (it is gone
    /// or differs from what was verified): checked right before the local file goes.
    fn copy_problem(&self, rt: &Runtime, e: &Entry) -> Option<String> {
        let copy = match self.reg().copy_of(&e.store, &e.path) {
            Ok(Some(c)) => c,
            Ok(None) => return Some("no verified remote copy is recorded".into()),
            Err(err) => return Some(format!("cannot read its copy record: {err}")),
        };
        let (remote, key, size, checksum) = copy;
        let Some(r) = rt.remotes.iter().find(|r| r.name() == remote) else {
            return Some(format!(
                "its copy is in store {remote:?}, which is no longer configured"
            ));
        };
        // Quick or not at all: this runs under the pass lock, also for disk pressure, which
        // must not wait out a dead server's retries file by file. A store that failed a
        // check is not asked again for a while; its files stay, refused with the reason.
        let mut down = self.state.unanswered.lock().expect("unanswered lock");
        if let Some((at, why)) = down
            .get(&remote)
            .filter(|(at, _)| at.elapsed() < CHECK_BACKOFF)
        {
            return Some(format!(
                "cannot check its copy {remote}:{key}: the store failed a check {}s ago ({why})",
                at.elapsed().as_secs()
            ));
        }
        let checked = io(async {
            tokio::time::timeout(CHECK_TIMEOUT, r.stat(&key))
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::io(
                        &remote,
                        &e.path,
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 5 s"),
                    ))
                })
        });
        match &checked {
            Err(err) => {
                self.metrics.s3_error(&remote, "check");
                down.insert(remote.clone(), (Instant::now(), err.to_string()));
            }
            Ok(_) => {
                down.remove(&remote);
            }
        }
        drop(down);
        let confirmed = matches!(&checked, Ok(Some(o)) if o.size == size && o.e_tag.as_deref() == Some(checksum.as_str()));
        if !confirmed && checked.is_ok() {
            // The server answered: the copy is gone or another object. Forget it, so the
            // file is offloaded again; until then no rule may delete it.
            if let Err(err) = self.reg().forget_copy(&e.store, &e.path) {
                error!(error = %err, "cannot forget a lost copy");
            }
            // Copied again by the next pass, not at gc_interval: disk pressure may be
            // waiting for that copy.
            self.pass_soon.notify_one();
            warn!(action = "copy-lost", path = %format!("{}:{}", e.store, e.path.display()), key = %key, "the remote copy {remote}:{key} of {}:{} is gone or changed: the local file is kept and offloaded again", e.store, e.path.display());
        }
        match checked {
            _ if confirmed => None,
            Ok(Some(o)) => Some(format!(
                "its copy {remote}:{key} changed ({} bytes, etag {:?}; verified {size} bytes, {checksum}); it will be offloaded again",
                o.size, o.e_tag
            )),
            Ok(None) => Some(format!(
                "its copy {remote}:{key} is gone; it will be offloaded again"
            )),
            Err(err) => Some(format!("cannot check its copy {remote}:{key}: {err}")),
        }
    }

    /// Copies each due file to its S3 store: still the planned version and not in use
    /// (leases, open or locked by any process), streamed with a noted upload id, verified
    /// by the server's checksum, then recorded as the file's copy. `leases`: the active
    /// leases now; `fleet`: whether a root is ours to write.
    pub fn run(
        &self,
        rt: &Runtime,
        due: &[OffloadAction],
        trigger: &str,
        report: &mut GcReport,
        leases: &dyn Fn() -> Result<LeaseSet>,
        fleet: &crate::fleet::Fleet,
    ) -> Result<()> {
        let mut users: Option<crate::inuse::Snapshot> = None;
        let before = (report.offloaded_files, report.offloaded_bytes);
        let due_bytes: u64 = due.iter().map(|o| o.entry.size).sum();
        for o in due {
            let e = &o.entry;
            let (Some(local), Some(remote), Some(key)) = (
                rt.store(&e.store),
                rt.remotes.iter().find(|r| r.name() == o.to),
                crate::store::offload_key(&e.store, &e.path),
            ) else {
                continue; // the planner never plans a name that has no key
            };
            // A file that keeps failing, or a store that did not answer a moment ago, waits:
            // a dead server costs one try per pass, not one per file.
            if self.backing_off(&e.store, &e.path).is_some() || self.unreachable(remote.name()) {
                report.offload_backing_off += 1;
                continue;
            }
            // A root not (or no longer only) ours: nothing is written there.
            if let Some(why) = fleet.offload_refusal(remote.name()) {
                debug!(store = %e.store, path = %e.path.display(), to = %remote.name(), reason = %why, "offload held");
                report.offload_backing_off += 1;
                continue;
            }
            let leased = leases()?.holders(&e.store, &e.path);
            let want = Expect {
                size: e.size,
                mtime: e.mtime,
                ino: e.ino,
                ctime: None,
            };
            // Every byte uploaded comes from this descriptor: opened beneath the root with
            // no link followed, and checked to be the planned version.
            let file = match leased.is_empty() {
                true => local.open_version(&e.path, &want)?,
                false => None,
            };
            let busy = if !leased.is_empty() {
                Some(format!("in use: {}", leased.join(", ")))
            } else if let Some(f) = &file {
                let snap = users.get_or_insert_with(crate::inuse::Snapshot::take);
                if snap.age() > std::time::Duration::from_millis(50) {
                    *snap = crate::inuse::Snapshot::take();
                }
                use std::os::unix::fs::MetadataExt;
                f.metadata()
                    .ok()
                    .and_then(|m| snap.reason(m.dev(), m.ino()))
                    .map(|who| format!("in use: {who}"))
            } else {
                Some("changed or gone since it was planned; the next pass looks again".into())
            };
            let Some(file) = file.filter(|_| busy.is_none()) else {
                let why = busy.unwrap_or_default();
                self.note_offload(o, &key, "refused", &why, trigger, report);
                continue;
            };
            // Never over another object: an earlier version of this path (a recorder that
            // reuses names, a file rewritten) keeps its copy, this version gets a key of its own.
            let key = match self.free_key(remote, &key, e.mtime) {
                Ok(k) => k,
                Err(why) => {
                    let why = self.back_off(&e.store, &e.path, why);
                    self.note_offload(o, &key, "failed", &why, trigger, report);
                    continue;
                }
            };
            // Noted before the server hears of it, so a crash at any point leaves a row: the
            // next listing aborts the upload it names — or, if the id never came back, every
            // upload the server lists for that key.
            let row = self.reg().add_upload(remote.name(), &key, "", self.now())?;
            let src = local.root().join(&e.path);
            let (copied, settled) = io(async {
                let id = match remote.start_upload(&key).await {
                    Ok(id) => id,
                    // Nothing started, as far as we know (abort_uploads_after covers a lost
                    // answer).
                    Err(e) => {
                        self.state
                            .unanswered
                            .lock()
                            .expect("unanswered lock")
                            .insert(remote.name().to_string(), (Instant::now(), e.to_string()));
                        return (Err(e), true);
                    }
                };
                let _ = self.reg().set_upload_id(row, &id.0);
                let file = tokio::fs::File::from_std(file);
                let done = remote.upload_from(&key, &id, file, &src).await;
                let settled = done.is_ok() || remote.abort_upload(&key, &id).await.is_ok();
                (done, settled)
            });
            if settled {
                self.reg().remove_upload(row)?;
            }
            if copied.is_err() {
                self.metrics.s3_error(remote.name(), "upload");
            }
            let failure = match copied {
                Ok(v) => self.record_copy(rt, o, local, remote, &key, &v, trigger, report)?,
                // Completed but not what was sent (a server that lies about the ETag, a
                // short object): the object must not stay looking like a copy. (A source
                // that changed before completion is an I/O error: the key was not touched.)
                Err(err @ StoreError::Verify { .. }) => {
                    Some(format!("{err}; {}", remove_object(remote, &key)))
                }
                Err(err) => Some(err.to_string()),
            };
            match failure {
                None => self.clear_backoff(&e.store, &e.path),
                Some(why) => {
                    let why = self.back_off(&e.store, &e.path, why);
                    self.note_offload(o, &key, "failed", &why, trigger, report);
                }
            }
        }
        let done = (
            report.offloaded_files - before.0,
            report.offloaded_bytes - before.1,
        );
        self.metrics.offload_backlog(
            (due.len() as u64).saturating_sub(done.0),
            due_bytes.saturating_sub(done.1),
        );
        Ok(())
    }

    /// The key to upload the version of a file modified at `mtime` to: `base` if nothing
    /// is stored there, else the first free [`version_key`](crate::store::version_key).
    fn free_key(
        &self,
        remote: &S3Store,
        base: &str,
        mtime: Nanos,
    ) -> std::result::Result<String, String> {
        const TRIES: u32 = 16;
        io(async {
            for n in 0..=TRIES {
                let key = match n {
                    0 => base.to_string(),
                    n => crate::store::version_key(base, mtime, n),
                };
                match tokio::time::timeout(CHECK_TIMEOUT, remote.stat(&key)).await {
                    Ok(Ok(None)) => return Ok(key),
                    Ok(Ok(Some(_))) => continue,
                    Ok(Err(err)) => {
                        self.state
                            .unanswered
                            .lock()
                            .expect("unanswered lock")
                            .insert(remote.name().to_string(), (Instant::now(), err.to_string()));
                        return Err(format!("cannot check whether {key} is free: {err}"));
                    }
                    Err(_) => {
                        return Err(format!(
                            "cannot check whether {key} is free: no answer within 5 s"
                        ));
                    }
                }
            }
            Err(format!(
                "{base} and {TRIES} version keys of it are all taken in {}; nothing is overwritten",
                remote.name()
            ))
        })
    }

    /// Whether S3 store `remote` failed a request within the last minute.
    fn unreachable(&self, remote: &str) -> bool {
        let down = self.state.unanswered.lock().expect("unanswered lock");
        down.get(remote)
            .is_some_and(|(at, _)| at.elapsed() < CHECK_BACKOFF)
    }

    /// When the next offload of `store:path` may be tried, if it is backing off.
    pub fn backing_off(&self, store: &str, path: &Path) -> Option<Backoff> {
        let now = self.now();
        match self.reg().backoff_of(store, path) {
            Ok(Some((_, next, last))) if next > now => Some(Backoff { next, last }),
            Ok(_) => None,
            Err(err) => {
                // Unreadable: try the offload (it is bounded per pass anyway).
                error!(error = %err, "cannot read an offload backoff");
                None
            }
        }
    }

    /// Notes one more failed offload of `store:path` in the registry (so a restart or a
    /// one-shot `gc` keeps backing off); `why` with when it is tried again.
    fn back_off(&self, store: &str, path: &Path, why: String) -> String {
        let now = self.now();
        let mut reg = self.reg();
        let failures = match reg.backoff_of(store, path) {
            Ok(b) => b.map_or(0, |(f, _, _)| f).saturating_add(1),
            Err(_) => 1,
        };
        let wait = BACKOFF_FIRST
            .saturating_mul(1 << (failures - 1).min(20))
            .min(BACKOFF_MAX);
        let next = now.saturating_add(wait);
        let last = format!(
            "{why}; failure {failures} in a row, tried again in {}",
            fmt_span(wait)
        );
        if let Err(err) = reg.set_backoff(store, path, failures, next, &last) {
            error!(error = %err, "cannot record an offload backoff");
        }
        last
    }

    fn clear_backoff(&self, store: &str, path: &Path) {
        if let Err(err) = self.reg().clear_backoff(store, path) {
            error!(error = %err, "cannot clear an offload backoff");
        }
    }

    /// Records a verified copy — if the local file is still the version that was read.
    #[allow(clippy::too_many_arguments)]
    fn record_copy(
        &self,
        rt: &Runtime,
        o: &OffloadAction,
        local: &LocalStore,
        remote: &S3Store,
        key: &str,
        v: &Verified,
        trigger: &str,
        report: &mut GcReport,
    ) -> Result<Option<String>> {
        let e = &o.entry;
        let unchanged = local
            .stat(&e.path)?
            .is_some_and(|m| m.size == e.size && m.mtime == e.mtime && m.ino == e.ino);
        if !unchanged || v.size != e.size {
            // What was read is no version we keep: the object must not pass for a copy.
            return Ok(Some(format!(
                "the file changed while it was copied; {}; it is copied again once quiet",
                remove_object(remote, key)
            )));
        }
        let now = self.now();
        let mut reg = self.reg();
        reg.set_copy(
            &e.store,
            &e.path,
            e.size,
            e.mtime,
            remote.name(),
            key,
            &v.checksum,
            now,
        )?;
        let class_of = |p: &Path| rt.classifier.classify(remote.name(), p).map(str::to_string);
        let meta = FileMeta {
            path: PathBuf::from(key),
            size: v.size,
            mtime: now,
            ino: etag_ino(Some(&v.checksum)),
        };
        reg.upsert(remote.name(), std::slice::from_ref(&meta), now, &class_of)?;
        drop(reg);
        report.offloaded_files += 1;
        report.offloaded_bytes += v.size;
        let why = format!(
            "copied to {}:{key}, verified: {} bytes, etag {}",
            remote.name(),
            v.size,
            v.checksum
        );
        self.note_offload(o, key, "done", &why, trigger, report);
        Ok(None)
    }

    /// Logs and audits one offload's outcome.
    fn note_offload(
        &self,
        o: &OffloadAction,
        key: &str,
        outcome: &str,
        why: &str,
        trigger: &str,
        report: &mut GcReport,
    ) {
        let path = format!("{}:{}", o.entry.store, o.entry.path.display());
        match outcome {
            "done" => {
                self.metrics.offloaded(&o.to, &o.class_name, o.entry.size);
                info!(action = "offload", path = %path, to = %o.to, key, bytes = o.entry.size, class = %o.class_name, trigger, "offloaded {path}: {why}")
            }
            "refused" => {
                // Retried every pass while it lasts: logged, not audited (explain names the
                // holder anyway).
                report.offload_refused += 1;
                tracing::debug!(action = "offload", path = %path, reason = why, "not offloaded yet {path}: {why}");
                return;
            }
            _ => {
                report.offload_failed += 1;
                self.metrics.offload_failed(&o.to);
                warn!(action = "offload", path = %path, to = %o.to, reason = why, "offload of {path} failed: {why}");
            }
        }
        let record = AuditRecord {
            at: self.now(),
            store: o.entry.store.clone(),
            path: o.entry.path.clone(),
            action: "offload".into(),
            outcome: outcome.into(),
            class: Some(o.class_name.clone()),
            rule: None,
            reason: why.into(),
            trigger: trigger.into(),
            bytes: Some(o.entry.size),
        };
        if let Err(e) = self.reg().record(&[], std::slice::from_ref(&record)) {
            error!(error = %e, "cannot audit an offload");
        }
    }
}
