//! S3 stores in the engine — the stores themselves, not the copying of local files to them
//! (that is `offload.rs`): opening them, listing into the registry (aborting uploads a
//! crash left), verified bulk deletion with durable intents settled by the next listing
//! after a crash, fetch, and the start-up capability probe.
//!
//! The engine is synchronous (its callers run on blocking threads); S3 calls run to
//! completion on one small I/O runtime of their own (`s3io.rs`).
//!
//! It sees only what it uses, passed in by the engine's thin methods: the running config
//! and its stores ([`Runtime`]), the registry, the metrics, the fleet's claims and leases;
//! a deletion also the [`Ledger`] it is recorded in and the pins and leases read under the
//! pin gate by the executor. Never the whole engine.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::StreamExt;
use tracing::{debug, info, warn};

use super::fleet::{delete_fenced, forget_through_siblings, is_shared};
use super::ledger::{Ledger, Recorded};
use super::s3io::{MIN_ATTEMPT, io, log_capabilities};
use super::{EngineError, GcReport, Result, Runtime, intent_of};
use crate::config::{Config, S3Location};
use crate::fleet::Fleet;
use crate::inuse::leases::LeaseSet;
use crate::metrics::Metrics;
use crate::policy;
use crate::registry::{AuditRecord, FileMeta, Intent, Registry};
use crate::scan::ScanStats;
use crate::store::newfile::{self, NewFile, NewFileError};
use crate::store::s3::{CredentialSource, Credentials, S3Settings, S3Store};
use crate::store::{Outcome, Store, StoreError, Verified};
use crate::units::Nanos;

/// Keys per bulk deletion call: eight DeleteObjects requests of 1000, which the store
/// sends concurrently (one request at a time took 93 s for 100k objects on Garage).
pub const DELETE_CHUNK: usize = 8000;
/// A deletion intent a crash left for an object that is still there is dropped once it
/// is this old: by then the server has carried out or dropped any DeleteObjects request
/// the dead process sent (10 minutes; one request's deadline is at most a few).
const SETTLE_GRACE: Nanos = 600_000_000_000;

/// The intents of local stores (and of stores no longer configured) among `all`: those of
/// S3 stores are settled by asking their server, at their next listing ([`scan`]), never
/// at start-up without it.
pub(super) fn local_only(rt: &Runtime, all: Vec<Intent>) -> Vec<Intent> {
    all.into_iter()
        .filter(|i| !rt.remotes.iter().any(|r| r.name() == i.store))
        .collect()
}

/// Listed objects are recorded this many at a time.
const LIST_BATCH: usize = 8192;

/// Opens S3 store `name` at `loc`, with credentials from its file or the environment.
pub fn open(name: &str, loc: &S3Location) -> Result<Arc<S3Store>> {
    let source = match &loc.credentials_file {
        Some(f) => CredentialSource::File(f.clone()),
        None => CredentialSource::Env,
    };
    let credentials = Credentials::load(name, &source).map_err(StoreError::from)?;
    let mut settings = S3Settings::new(name, &loc.endpoint, &loc.region, &loc.bucket, credentials);
    // The root: `PREFIX/NODE` for a node-prefixed store (validated config).
    settings.prefix = loc.root.clone();
    settings.more_endpoints = loc.more_endpoints.clone();
    settings.virtual_hosted = loc.virtual_hosted;
    settings.allow_http = loc.allow_http;
    settings.retry.retry_timeout = loc.retry_timeout.0;
    settings.retry.max_backoff = settings.retry.max_backoff.min(loc.retry_timeout.0 / 4);
    settings.retry.connect_timeout = settings.retry.connect_timeout.min(loc.retry_timeout.0);
    // One attempt never outlasts the retry budget — but gets at least MIN_ATTEMPT, which a
    // 16 MiB part or the completion of a large upload may need even when retry_timeout is
    // short. Every call thus ends within retry_timeout + max(retry_timeout, MIN_ATTEMPT).
    settings.retry.request_timeout = settings
        .retry
        .request_timeout
        .min(loc.retry_timeout.0.max(MIN_ATTEMPT));
    Ok(Arc::new(S3Store::new(settings).map_err(StoreError::from)?))
}

/// An entity tag as a stand-in inode: an object rewritten under the same key is a new one.
pub(super) fn etag_ino(tag: Option<&str>) -> u64 {
    tag.map_or(0, |t| {
        let d = md5::Md5::digest(t.as_bytes());
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    })
}

use md5::Digest as _;

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry.lock().expect("registry lock")
}

/// The file or object at `path` of `store` now (local: no symlink followed).
pub(super) fn stat(rt: &Runtime, store: &str, path: &Path) -> Result<Option<FileMeta>> {
    if let Some(local) = rt.store(store) {
        return Ok(local.stat(path)?);
    }
    let Some(remote) = rt.remotes.iter().find(|r| r.name() == store) else {
        return Ok(None);
    };
    let key = path.to_string_lossy();
    Ok(io(remote.stat(&key))?.map(|o| FileMeta {
        path: path.to_path_buf(),
        size: o.size,
        mtime: o.last_modified,
        ino: etag_ino(o.e_tag.as_deref()),
    }))
}

/// Lists S3 store `remote` into the registry (streamed: memory bounded whatever the
/// object count) and forgets objects no longer there — unless the listing failed. Then
/// aborts multipart uploads left by a crash (noted ids) or older than
/// `abort_uploads_after` under the prefix.
pub(super) fn scan(
    registry: &Mutex<Registry>,
    metrics: &Metrics,
    fleet: &Fleet,
    rt: &Runtime,
    remote: &S3Store,
    now: Nanos,
) -> ScanStats {
    let started = Instant::now();
    let name = remote.name().to_string();
    // A shared store is listed by the holder of its rules lease only.
    if !fleet.applies_rules(&name, is_shared(rt, &name)) {
        debug!(store = %name, "shared store not listed: this box does not hold its rules lease");
        return ScanStats {
            store: name,
            ..Default::default()
        };
    }
    let generation = lock(registry).begin_scan();
    let class_of = |p: &Path| rt.classifier.classify(&name, p).map(str::to_string);
    let mut stats = ScanStats {
        store: name.clone(),
        ..Default::default()
    };
    // Deletions a crash interrupted: the listing says which of their objects are gone.
    let pending = match lock(registry).intents_of(&name) {
        Ok(p) => p,
        Err(e) => {
            warn!(store = %name, error = %e, "cannot read deletion intents; nothing is forgotten by this listing");
            stats.unreadable = 1;
            abort_leftover_uploads(registry, rt, remote, now);
            stats.millis = started.elapsed().as_millis() as u64;
            return stats;
        }
    };
    let mut watched: HashMap<String, Option<u64>> = pending
        .iter()
        .map(|i| (i.path.to_string_lossy().into_owned(), None))
        .collect();
    let lease = fleet.lease(&name);
    let token = lease.as_ref().map(|l| l.listing());
    let listed: std::result::Result<(), EngineError> = io(async {
        let mut objects = std::pin::pin!(remote.list());
        let mut batch = Vec::with_capacity(LIST_BATCH);
        loop {
            let next = objects.next().await;
            let flush = next.is_none() || batch.len() >= LIST_BATCH;
            if flush && !batch.is_empty() {
                let b: Vec<FileMeta> = std::mem::take(&mut batch);
                stats.files += b.len() as u64;
                stats.bytes += b.iter().map(|f| f.size).sum::<u64>();
                lock(registry).upsert(&name, &b, now, &class_of)?;
            }
            let Some(o) = next else { break };
            let o = o?;
            if let Some(seen) = watched.get_mut(&o.key) {
                *seen = Some(etag_ino(o.e_tag.as_deref()));
            }
            batch.push(FileMeta {
                path: PathBuf::from(&o.key),
                size: o.size,
                mtime: o.last_modified,
                ino: etag_ino(o.e_tag.as_deref()),
            });
        }
        Ok(())
    });
    // Settled before the sweep: an object gone since the crash is audited, never just
    // forgotten.
    let listed = listed.and_then(|()| {
        settle_intents(registry, &name, pending, |k| watched.get(k).copied(), now)?;
        Ok(())
    });
    match listed {
        Ok(()) => match lock(registry).sweep(&name, generation) {
            Ok(n) => {
                if let (Some(l), Some(t)) = (&lease, token) {
                    l.listed(t);
                }
                metrics.s3_listed(&name, stats.files, stats.bytes);
                stats.forgotten = n as u64
            }
            Err(e) => warn!(store = %name, error = %e, "cannot forget vanished objects"),
        },
        Err(e) => {
            // Nothing is forgotten on a failed listing: an unreachable server is not an
            // empty bucket.
            stats.unreadable = 1;
            metrics.s3_error(&name, "list");
            warn!(store = %name, error = %e, "listing failed; the registry keeps what it knew");
        }
    }
    abort_leftover_uploads(registry, rt, remote, now);
    stats.millis = started.elapsed().as_millis() as u64;
    stats
}

/// Aborts the uploads a crashed offload left behind, and stale ones under the prefix.
fn abort_leftover_uploads(registry: &Mutex<Registry>, rt: &Runtime, remote: &S3Store, now: Nanos) {
    let name = remote.name();
    let noted = match lock(registry).uploads(name) {
        Ok(n) => n,
        Err(e) => {
            warn!(store = %name, error = %e, "cannot read noted uploads");
            return;
        }
    };
    let mut listed: Option<Vec<crate::store::s3::PendingUpload>> = None;
    for (row, key, id) in noted {
        // No id: it crashed between noting and the server's answer; whatever the server
        // lists for the key is ours.
        let ids = if id.is_empty() {
            let all = match &listed {
                Some(l) => l,
                None => match io(remote.list_uploads()) {
                    Ok(l) => listed.insert(l),
                    Err(e) => {
                        warn!(store = %name, key = %key, error = %e, "cannot list uploads to abort a leftover one; retrying at the next scan");
                        continue;
                    }
                },
            };
            all.iter()
                .filter(|u| u.key == key)
                .map(|u| u.upload_id.clone())
                .collect()
        } else {
            vec![crate::store::UploadId(id)]
        };
        let mut all_done = true;
        for id in ids {
            match io(remote.abort_upload(&key, &id)) {
                Ok(()) => {
                    info!(action = "abort_upload", store = %name, key = %key, upload_id = %id.0, "aborted an upload an earlier run left unfinished")
                }
                Err(e) => {
                    all_done = false;
                    warn!(store = %name, key = %key, error = %e, "cannot abort a leftover upload; retrying at the next scan");
                }
            }
        }
        if all_done {
            let _ = lock(registry).remove_upload(row);
        }
    }
    let Some(age) = rt
        .config
        .store(name)
        .and_then(|s| s.s3.as_ref())
        .map(|l| l.abort_uploads_after.as_nanos_i64())
    else {
        return;
    };
    let Ok(pending) = io(remote.list_uploads()) else {
        return; // a backend without ListMultipartUploads: the noted ids cover our own
    };
    for u in pending {
        let started = humantime::parse_rfc3339_weak(&u.initiated)
            .ok()
            .map(crate::clock::to_nanos);
        if started.is_some_and(|t| now.saturating_sub(t) > age) {
            match io(remote.abort_upload(&u.key, &u.upload_id)) {
                Ok(()) => {
                    info!(action = "abort_upload", store = %name, key = %u.key, initiated = %u.initiated, "aborted an incomplete multipart upload older than abort_uploads_after")
                }
                Err(e) => {
                    warn!(store = %name, key = %u.key, error = %e, "cannot abort a stale upload")
                }
            }
        }
    }
}

/// Deletes one chunk of planned deletions of S3 store `remote`, recorded in `ledger`:
/// `pinned` and `leases` (read under the pin gate, which the caller holds through the
/// request: a pin set meanwhile waits and is honoured next pass) and the class are
/// re-checked, then one verified bulk deletion with a result per key; a shared store's
/// fenced by its rules lease in `fleet`.
pub(super) fn delete(
    ledger: &Ledger<'_>,
    fleet: &Fleet,
    rt: &Runtime,
    remote: &S3Store,
    chunk: &[&policy::Action],
    (pinned, leases): (&HashSet<PathBuf>, &LeaseSet),
    report: &mut GcReport,
) -> Result<Recorded> {
    let (mut gone, mut records) = (Vec::new(), Vec::new());
    let trigger = ledger.trigger;
    let mut todo = Vec::with_capacity(chunk.len());
    for a in chunk {
        let class_now = rt.classifier.classify(remote.name(), &a.entry.path);
        let leased = leases.holders(remote.name(), &a.entry.path);
        let refused = if pinned.contains(&a.entry.path) {
            Some("retained (pinned after the plan was made)".to_string())
        } else if !leased.is_empty() {
            Some(format!("in use: {}", leased.join(", ")))
        } else if class_now != Some(a.class_name.as_str()) {
            Some(format!(
                "its class is now {}; it is re-evaluated on the next pass",
                class_now.unwrap_or("none")
            ))
        } else {
            None
        };
        match refused {
            Some(why) => ledger.account(a, Outcome::Refused(why), report, &mut gone, &mut records),
            None => todo.push(*a),
        }
    }
    let keys: Vec<String> = todo
        .iter()
        .map(|a| a.entry.path.to_string_lossy().into_owned())
        .collect();
    if keys.is_empty() {
        return Ok((gone, records));
    }
    // Durable before the server hears of it: a kill -9 from here on leaves intents
    // that the next listing settles (`settle_intents`). This chunk's own are dropped
    // with its records below, before the next chunk starts — so every intent of this
    // store found here was left by a crash (or by a deletion that failed).
    let now = ledger.clock.now();
    let intents: Vec<Intent> = todo.iter().map(|a| intent_of(a, now, trigger)).collect();
    let mut earlier: HashMap<PathBuf, Vec<i64>> = HashMap::new();
    {
        let wanted: HashSet<&Path> = todo.iter().map(|a| a.entry.path.as_path()).collect();
        for i in ledger.reg().intents_of(remote.name())? {
            if wanted.contains(i.path.as_path()) {
                earlier.entry(i.path).or_default().push(i.id);
            }
        }
    }
    let ids = ledger.reg().intend_each(&intents)?;
    let lease = fleet.lease(remote.name());
    let results = match &lease {
        Some(l) => delete_fenced(remote, l, &keys),
        None => io(remote.delete_many(&keys)),
    };
    if lease.is_some() {
        let deleted: Vec<String> = results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Deleted | Outcome::Vanished))
            .map(|(k, _)| k.clone())
            .collect();
        forget_through_siblings(ledger.registry, rt, remote, &deleted);
    }
    // Each key's intents go with its record, in one transaction: the earlier ones
    // too, since this outcome is the one recorded. A failed deletion keeps its new
    // intent (the request may have reached the server all the same: the next listing
    // settles it) and only that one.
    let mut settled = Vec::with_capacity(ids.len());
    for ((a, (_, outcome)), id) in todo.iter().zip(results).zip(ids) {
        settled.extend(earlier.remove(&a.entry.path).unwrap_or_default());
        if !matches!(outcome, Outcome::Failed(_)) {
            settled.push(id);
        } else {
            ledger.metrics.s3_error(remote.name(), "delete");
        }
        ledger.account(a, outcome, report, &mut gone, &mut records);
    }
    // Recorded here rather than by the pass's recorder thread: the next chunk's look
    // for earlier intents must not find these.
    ledger.reg().settle_intents(&settled, &gone, &records)?;
    Ok((Vec::new(), Vec::new()))
}

/// Settles the deletion intents of S3 store `store` that a crash (kill -9, power cut)
/// left between a DeleteObjects call and its audit records, by what the server says of
/// each key now: `seen(key)` is `None` if unknown (the intent stays, settled later —
/// never guessed), `Some(None)` if the key is absent, `Some(Some(ino))` if an object
/// with that etag-inode is there. An object that is gone is audited as deleted (and
/// forgotten); one still there is dropped from the intents once [`SETTLE_GRACE`] has
/// passed (until then the server may still be carrying out the dead process's request,
/// and the next pass that deletes it records it instead). Returns how many were
/// audited.
fn settle_intents(
    registry: &Mutex<Registry>,
    store: &str,
    pending: Vec<Intent>,
    seen: impl Fn(&str) -> Option<Option<u64>>,
    now: Nanos,
) -> Result<usize> {
    // A key may have two intents (a deletion that failed, then a crash while deleting
    // it again): one record for the key, every intent settled with it.
    let mut by_key: std::collections::BTreeMap<String, Vec<Intent>> = Default::default();
    for i in pending {
        by_key
            .entry(i.path.to_string_lossy().into_owned())
            .or_default()
            .push(i);
    }
    let (mut settled, mut gone, mut records) = (Vec::new(), Vec::new(), Vec::new());
    for (key, mut all) in by_key {
        let Some(now_there) = seen(&key) else {
            continue;
        };
        let ids = all.iter().map(|i| i.id);
        let why = match now_there {
            Some(ino) if all.iter().any(|i| i.ino == ino) => {
                if all.iter().all(|i| now.saturating_sub(i.at) > SETTLE_GRACE) {
                    settled.extend(ids);
                }
                continue;
            }
            None => "gone from the server at the next listing",
            // Its entry now describes the newcomer: not forgotten.
            Some(_) => "gone from the server at the next listing (another object has its key now)",
        };
        settled.extend(ids);
        let i = all.swap_remove(0);
        if now_there.is_none() {
            gone.push((i.entry_id, i.path.clone()));
        }
        debug!(action = "delete", store, key = %key, "reconciled an S3 deletion interrupted by a crash");
        records.push(AuditRecord {
                at: now,
                store: store.to_string(),
                path: i.path,
                action: "delete".into(),
                outcome: "deleted".into(),
                class: i.class,
                rule: i.rule,
                reason: format!(
                    "{}; reconciled after a crash or a failed request: {why}, its deletion was under way",
                    i.reason
                ),
                trigger: i.trigger,
                bytes: Some(i.size),
            });
    }
    if !records.is_empty() {
        info!(
            action = "delete",
            store,
            objects = records.len(),
            "reconciled {} S3 deletions interrupted by a crash: the objects are gone, audited now",
            records.len()
        );
    }
    if !settled.is_empty() {
        lock(registry).settle_intents(&settled, &gone, &records)?;
    }
    Ok(records.len())
}

/// Probes every S3 store's capabilities and logs them (the daemon's start-up).
pub(super) fn probe(rt: &Runtime, fleet: &Fleet, metrics: &Metrics) {
    for r in &rt.remotes {
        // Probed at the daemon's start already (the fleet's setup logged it).
        if fleet
            .probed
            .lock()
            .expect("fleet probed")
            .contains(r.name())
        {
            continue;
        }
        match io(r.probe()) {
            Ok(c) => log_capabilities(r.name(), &c),
            Err(e) => {
                metrics.s3_error(r.name(), "probe");
                warn!(store = %r.name(), error = %e, "cannot probe S3 store; it is retried at every pass")
            }
        }
    }
}

/// `mediaretain fetch STORE:KEY DEST`: streams an object to `dest` through a partial file
/// in `state_dir/staging` (memory flat for any size), verified, then moved into place.
/// Partial files of processes that died are removed first.
pub fn fetch(
    config: &Config,
    arg: &str,
    dest: &Path,
    force: bool,
    progress: &crate::progress::Progress,
) -> Result<Verified> {
    let (store, key) = arg
        .split_once(':')
        .filter(|(s, k)| !s.is_empty() && crate::store::is_plain_key(k))
        .ok_or_else(|| EngineError::BadInput(format!("{arg:?}: give STORE:KEY of an S3 store")))?;
    let loc = config
        .store(store)
        .and_then(|s| s.s3.as_ref())
        .ok_or_else(|| {
            EngineError::BadInput(format!("{store:?} is not an S3 store of this config"))
        })?;
    let remote = open(store, loc)?;
    let staging = config.daemon.state_dir.join("staging");
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&staging)
            .map_err(|e| StoreError::io(store, &staging, e))?;
    }
    sweep_staging(&staging);
    // Staged in our staging directory when DEST is on its filesystem, else beside DEST;
    // created O_EXCL|O_NOFOLLOW and renamed within directory descriptors (never through a
    // path a user who writes DEST's directory could redirect).
    let mut out = NewFile::create(dest, Some(&staging), &newfile::tmp_name("fetch"), force)
        .map_err(|e| match e {
            e @ (NewFileError::Exists { .. }
            | NewFileError::NotAFile { .. }
            | NewFileError::BadPath { .. }) => EngineError::BadInput(e.to_string()),
            e => StoreError::io(store, dest, e).into(),
        })?;
    let file = out
        .file()
        .try_clone()
        .map_err(|e| StoreError::io(store, dest, e))?;
    if let Ok(f) = file.try_clone() {
        progress.follow(format!("fetching {arg}"), f);
    }
    let v = io(remote.fetch_into(key, file, dest))?;
    out.commit(newfile::umask_mode()).map_err(|e| match e {
        e @ NewFileError::Exists { .. } => EngineError::BadInput(e.to_string()),
        e => StoreError::io(store, dest, e).into(),
    })?;
    Ok(v)
}

/// Removes staging files (`PID-…`) whose process is gone: the partial files of a fetch that
/// crashed are temporary and never outlive it.
pub fn sweep_staging(staging: &Path) {
    let Ok(dir) = std::fs::read_dir(staging) else {
        return;
    };
    for f in dir.flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive && std::fs::remove_file(f.path()).is_ok() {
            info!(action = "delete", path = %f.path().display(), "removed the partial file of an interrupted fetch");
        }
    }
}
