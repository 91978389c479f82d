//! Identical copies (issue 16): the background hasher, the groups `dupes` lists, and the
//! executor's check that a duplicate's kept copy is still there and still trusted. Which
//! copy stays and which go is decided by the planner ([`crate::policy::dedupe`]), from
//! each copy's custody (owner, mode, the directories above it) that [`custody`] looks at
//! by descriptor here — when the groups are made and again right before the unlink.
//!
//! One file for identical copies as the engine sees them: hashing, grouping and the
//! executor's guard all judge custody the same way, by descriptor, with the same names.
//! It sees only what it uses — the runtime (config and stores), the registry, the time —
//! passed in by the engine's thin methods, never the whole [`Engine`] (the hasher thread
//! holds one to call [`Engine::hash_pending`] and ask for a pass).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, error, warn};

use super::{Engine, EngineError, Result, Runtime, known_class};
use crate::clock::Clock;
use crate::config::Class;
use crate::policy::dedupe::{self as pd, Custody, DirCustody, DupeOf, Group, Owner};
use crate::policy::{self, Rule, Verdict};
use crate::registry::{Entry, NewHash, Registry, RegistryError};
use crate::scan;
use crate::store::local::{Expect, LocalStore};
use crate::units::{ByteSize, Nanos};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Candidates read from the registry at a time.
const BATCH: usize = 64;
/// The hasher looks for work at least this often, and whenever a pass or scan wakes it.
const IDLE_WAKE: Duration = Duration::from_secs(60);
/// At most this many unreadable file versions are remembered (not retried, warned once).
const MAX_FAILED: usize = 10_000;

/// The identical files of `class` (none unless it has `dedupe`), each copy with its
/// custody looked at now.
pub(super) fn groups_in(
    rt: &Runtime,
    reg: &Registry,
    class: &Class,
) -> std::result::Result<Vec<Group>, RegistryError> {
    if class.dedupe.is_none() {
        return Ok(Vec::new());
    }
    let store = rt.store(&class.store);
    let mut names = Names::default();
    Ok(pd::groups(
        class,
        reg.hashed_in_class(&class.store, &class.name)?,
        |p| match store {
            Some(s) => custody(s, p, &mut names).0,
            None => Custody {
                unknown: Some(format!("{} is not a local store", class.store)),
                ..Default::default()
            },
        },
    ))
}

/// User names by uid, looked up once per use.
#[derive(Default)]
pub(crate) struct Names(HashMap<u32, Option<String>>);

impl Names {
    /// `uid` with its name.
    fn owner(&mut self, uid: u32) -> Owner {
        let name = self.0.entry(uid).or_insert_with(|| user_name(uid)).clone();
        Owner { uid, name }
    }
}

/// The user database's name for `uid`, if any.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: `passwd` is plain C data (integers and pointers); all zeroes is a valid value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `pw` and `buf` (sized as given) and sets `out` to
    // `&pw` or null; the name is copied out before they go.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// Who can change the file `rel` of `store` or put another under its name: the store root
/// and each directory down to it opened beneath the root by descriptor (`O_NOFOLLOW`, no
/// symlink followed), each `fstat`-ed, then the file `fstatat`-ed no-follow in its
/// directory. With the file's inode (0 when it could not be looked at).
pub(crate) fn custody(store: &LocalStore, rel: &Path, names: &mut Names) -> (Custody, u64) {
    match look_custody(store, rel, names) {
        Ok(c) => c,
        Err(why) => (
            Custody {
                unknown: Some(why),
                ..Default::default()
            },
            0,
        ),
    }
}

fn look_custody(
    store: &LocalStore,
    rel: &Path,
    names: &mut Names,
) -> std::result::Result<(Custody, u64), String> {
    let (Some(name), parent) = (rel.file_name(), rel.parent().unwrap_or(Path::new(""))) else {
        return Err("not a file path".into());
    };
    let mut fd = scan::open_root(store.root()).map_err(|e| format!("store root: {e}"))?;
    let mut dirs = Vec::new();
    let mut at = PathBuf::new();
    let mut note = |fd: &rustix::fd::OwnedFd, at: &Path, names: &mut Names| {
        let st = rustix::fs::fstat(fd).map_err(|e| format!("{}: {e}", crate::spell::show(at)))?;
        dirs.push(DirCustody {
            path: at.to_path_buf(),
            owner: names.owner(st.st_uid),
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
        });
        Ok::<_, String>(())
    };
    note(&fd, &at, names)?;
    for c in parent.components() {
        let std::path::Component::Normal(part) = c else {
            return Err("not a plain relative path".into());
        };
        at.push(part);
        fd = rustix::fs::openat(
            &fd,
            part,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            format!(
                "directory {}: {e} (a symlink is never followed)",
                crate::spell::show(&at)
            )
        })?;
        note(&fd, &at, names)?;
    }
    let st =
        rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| format!("{e}"))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err("not a regular file".into());
    }
    Ok((
        Custody {
            owner: names.owner(st.st_uid),
            mode: st.st_mode & 0o7777,
            dirs,
            unknown: None,
        },
        st.st_ino,
    ))
}

/// What one round of hashing did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HashStats {
    /// Files hashed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files that changed or went while being hashed (hashed again later).
    pub changed: u64,
    /// Files that could not be read.
    pub failed: u64,
}

/// `mediaretain dupes`: the groups of identical files.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Dupes {
    /// Groups, by class then by bytes wasted (most first).
    pub groups: Vec<DupeGroup>,
    /// Bytes all copies beyond one take, over every group.
    pub wasted_bytes: u64,
}

/// Identical files of one class.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DupeGroup {
    /// Class.
    pub class: String,
    /// Store.
    pub store: String,
    /// Bytes of each copy.
    pub size: u64,
    /// Their BLAKE3 hash (hex).
    pub blake3: String,
    /// The copy that stays (None: the rules delete every copy anyway).
    pub kept: Option<DupeCopy>,
    /// The other copies.
    pub copies: Vec<DupeCopy>,
    /// Bytes the copies beyond one take.
    pub wasted_bytes: u64,
}

/// One copy in a group.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DupeCopy {
    /// Its name (the first, for a hard-linked file).
    #[serde(with = "crate::spell::serde_path")]
    pub path: PathBuf,
    /// Its other names (hard links).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Modification time.
    #[serde(with = "crate::units::rfc3339")]
    pub mtime: Nanos,
    /// What the plan does with it: "kept", "duplicate", or why it stays or goes otherwise.
    pub fate: String,
}

/// Reads at most `rate` bytes per second on average; stops with an error once `stop` is set.
struct Paced<'a, R> {
    inner: R,
    rate: Option<u64>,
    started: Instant,
    read: u64,
    stop: &'a AtomicBool,
}

impl<R: Read> Read for Paced<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("stopping"));
        }
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64(self.read as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Hashes the planned version of `e` (opened beneath the store root, no link followed):
/// `Ok(None)` when it is not that version any more, or changed while being read.
pub fn hash_file(
    store: &LocalStore,
    e: &Entry,
    rate: Option<u64>,
    stop: &AtomicBool,
    now: Nanos,
) -> std::result::Result<Option<NewHash>, String> {
    let want = Expect {
        size: e.size,
        mtime: e.mtime,
        ino: e.ino,
        ctime: None,
    };
    let Some(file) = store
        .open_version(&e.path, &want)
        .map_err(|x| x.to_string())?
    else {
        return Ok(None);
    };
    let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
    let before = file.metadata().map_err(|x| x.to_string())?;
    let mut h = blake3::Hasher::new();
    h.update_reader(Paced {
        inner: &file,
        rate,
        started: Instant::now(),
        read: 0,
        stop,
    })
    .map_err(|x| x.to_string())?;
    let after = file.metadata().map_err(|x| x.to_string())?;
    let mtime = |m: &std::fs::Metadata| m.mtime() * 1_000_000_000 + m.mtime_nsec();
    // A write while we read moves the change time even if the writer restores the mtime.
    if after.len() != e.size
        || mtime(&after) != e.mtime
        || mtime(&before) != e.mtime
        || ctime(&after) != ctime(&before)
    {
        return Ok(None);
    }
    Ok(Some(NewHash {
        store: store.name().to_string(),
        path: e.path.clone(),
        size: e.size,
        mtime: e.mtime,
        ino: e.ino,
        ctime: ctime(&after),
        dev: after.dev(),
        nlink: after.nlink(),
        blake3: *h.finalize().as_bytes(),
        at: now,
    }))
}

/// The inode's change time in ns: set by the kernel on every write, chmod, link or
/// rename, and by no one to a chosen value.
pub(crate) fn ctime(m: &std::fs::Metadata) -> Nanos {
    m.ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.ctime_nsec())
}

/// File versions the hasher could not read — (store, path, size, mtime) — not tried again
/// (at most [`MAX_FAILED`]; each warned once).
#[derive(Default)]
pub(super) struct Unreadable(Mutex<HashSet<(String, PathBuf, u64, Nanos)>>);

/// Hashes every file of a dedupe class that has a same-size sibling and no hash of its
/// current version, at the configured rate, until done or `stop` is set. It reads and
/// writes the registry on a connection of its own, so it never takes the registry's
/// mutex: at nice 19 it could hold it long, and a pass or a pressure pass would wait.
pub(super) fn hash_pending(
    rt: &Runtime,
    registry_path: &Path,
    unreadable: &Unreadable,
    clock: &dyn Clock,
    stop: &AtomicBool,
) -> Result<HashStats> {
    let mut stats = HashStats::default();
    let classes: Vec<&Class> = rt
        .config
        .classes
        .iter()
        .filter(|c| c.dedupe.is_some())
        .collect();
    if classes.is_empty() {
        return Ok(stats);
    }
    let mut reg = Registry::open_apart(registry_path)?;
    let rate = rt.config.dedupe.rate;
    for c in classes {
        let Some(store) = rt.store(&c.store) else {
            continue;
        };
        // Pages through the candidates oldest first: one that cannot be read or
        // changed meanwhile is passed over, never read again in this round.
        let mut from: (Nanos, i64) = (Nanos::MIN, i64::MIN);
        let quiet_before = clock.now().saturating_sub(c.quiet_period.as_nanos_i64());
        loop {
            let cands = reg.hash_candidates(&c.store, &c.name, quiet_before, from, BATCH)?;
            let Some(last) = cands.last() else { break };
            from = (last.mtime, last.id);
            for e in cands {
                if stop.load(Ordering::Relaxed) {
                    return Ok(stats);
                }
                let key = (c.store.clone(), e.path.clone(), e.size, e.mtime);
                if unreadable.0.lock().expect("unreadable lock").contains(&key) {
                    continue;
                }
                match hash_file(store, &e, rate, stop, clock.now()) {
                    Ok(Some(h)) if reg.put_hash(&h)? => {
                        stats.files += 1;
                        stats.bytes += e.size;
                    }
                    Ok(_) => stats.changed += 1,
                    Err(_) if stop.load(Ordering::Relaxed) => return Ok(stats),
                    Err(why) => {
                        stats.failed += 1;
                        let mut failed = unreadable.0.lock().expect("unreadable lock");
                        if failed.len() < MAX_FAILED {
                            warn!(action = "hash", path = %format!("{}:{}", c.store, crate::spell::show(&e.path)), error = %why,
                                    "cannot hash {}:{} to look for identical copies: {why}", c.store, crate::spell::show(&e.path));
                            failed.insert(key);
                        }
                    }
                }
            }
        }
    }
    if stats.files > 0 {
        debug!(
            action = "hash",
            files = stats.files,
            bytes = stats.bytes,
            "hashed {} files ({}) to look for identical copies",
            stats.files,
            ByteSize(stats.bytes)
        );
    }
    Ok(stats)
}

/// The groups of identical files (of `class`, or of every dedupe class), each copy with
/// what the plan does with it now.
pub(super) fn dupes(
    rt: &Runtime,
    registry: &Mutex<Registry>,
    now: Nanos,
    class: Option<&str>,
) -> Result<Dupes> {
    if let Some(c) = class
        && known_class(&rt.config, c)?.dedupe.is_none()
    {
        return Err(EngineError::BadInput(format!(
            "class {c:?} has no dedupe setting: its identical files are not looked for"
        )));
    }
    let mut out = Dupes::default();
    for c in rt
        .config
        .classes
        .iter()
        .filter(|k| k.dedupe.is_some() && class.is_none_or(|n| n == k.name))
    {
        let reg = registry.lock().expect("registry lock");
        let groups = groups_in(rt, &reg, c)?;
        if groups.is_empty() {
            continue;
        }
        let members: HashSet<i64> = groups
            .iter()
            .flat_map(|g| g.copies.iter().flat_map(|x| x.ids.iter().copied()))
            .collect();
        let mut fates: HashMap<i64, (Verdict, Option<DupeOf>)> = HashMap::new();
        let decided = pd::decide_class(
            c,
            now,
            &groups,
            |sink| reg.for_each_in_class(&c.store, &c.name, c.age_from, &mut *sink),
            |e, v, of| {
                if members.contains(&e.id) {
                    fates.insert(e.id, (v, of.cloned()));
                }
            },
        )?;
        drop(reg);
        for g in &groups {
            let kept_path = g
                .copies
                .iter()
                .flat_map(|x| &x.ids)
                .find_map(|id| fates.get(id).and_then(|(_, of)| of.as_ref()))
                .map(|of| of.kept.clone())
                // No copy goes as a duplicate (the others are hard-linked, say): the
                // preferred copy the rules keep is the kept one.
                .or_else(|| {
                    g.copies
                        .iter()
                        .find(|x| matches!(fates.get(&x.ids[0]), Some((Verdict::Keep { .. }, _))))
                        .map(|x| x.paths[0].clone())
                });
            let mut group = DupeGroup {
                class: c.name.clone(),
                store: c.store.clone(),
                size: g.size,
                blake3: g.hex(),
                wasted_bytes: g.size * (g.copies.len() as u64 - 1),
                ..Default::default()
            };
            for x in &g.copies {
                let fate = match fates.get(&x.ids[0]) {
                        _ if kept_path.as_ref() == Some(&x.paths[0]) => "kept".to_string(),
                        Some((Verdict::Delete { rule, .. }, _)) if *rule == Rule::Duplicate => {
                            "duplicate".to_string()
                        }
                        Some((Verdict::Delete { rule, reason }, _)) => {
                            format!("goes by {rule}: {reason}")
                        }
                        _ if decided.held.contains_key(&x.ids[0]) => {
                            format!("not deduped: {}", decided.held[&x.ids[0]])
                        }
                        _ if x.linked => {
                            "hard-linked: another name of one file, not a copy (deleting it frees nothing); never deleted as a duplicate".to_string()
                        }
                        Some((Verdict::Keep { reason, .. }, _)) => format!("stays: {reason}"),
                        None => "not in the plan".to_string(),
                    };
                let copy = DupeCopy {
                    path: x.paths[0].clone(),
                    links: x.paths[1..]
                        .iter()
                        .map(|p| crate::spell::show(p).to_string())
                        .collect(),
                    mtime: x.mtime,
                    fate,
                };
                if copy.fate == "kept" {
                    group.kept = Some(copy);
                } else {
                    group.copies.push(copy);
                }
            }
            out.wasted_bytes += group.wasted_bytes;
            out.groups.push(group);
        }
    }
    out.groups.sort_by(|a, b| {
        (&a.class, std::cmp::Reverse(a.wasted_bytes), &a.blake3).cmp(&(
            &b.class,
            std::cmp::Reverse(b.wasted_bytes),
            &b.blake3,
        ))
    });
    Ok(out)
}

/// The duplicates the plan deletes now in the dedupe classes of `stores` (what a
/// pressure pass frees first in the recordings tier).
pub(super) fn duplicate_actions(
    rt: &Runtime,
    reg: &Registry,
    now: Nanos,
    stores: &[String],
) -> Result<Vec<policy::Action>> {
    let plan = policy::plan_classes(
        &rt.config,
        now,
        |c| c.dedupe.is_some() && stores.contains(&c.store),
        |class, sink| reg.for_each_in_class(&class.store, &class.name, class.age_from, &mut *sink),
        |class| groups_in(rt, reg, class),
    )?;
    Ok(plan
        .actions
        .into_iter()
        .filter(|a| a.rule == Rule::Duplicate)
        .collect())
}

/// The executor's check for a duplicate: both it and the copy it duplicates are still
/// the very versions that were hashed — same inode, size, mtime and change time (a
/// rewrite in place that restored the mtime still moves the change time, and so does a
/// new hard link). Else it is not deleted, and the stale hashes are dropped: they are
/// hashed again and the next pass decides anew.
pub(super) fn duplicate_guard(
    registry: &Mutex<Registry>,
    store: &LocalStore,
    a: &policy::Action,
) -> Option<String> {
    let d = match (&a.dupe_of, a.rule) {
        (Some(d), Rule::Duplicate) => d,
        (None, Rule::Duplicate) => return Some("its kept copy is not known".into()),
        _ => return None,
    };
    let kept = Expect {
        size: d.kept_size,
        mtime: d.kept_mtime,
        ino: d.kept_ino,
        ctime: Some(d.kept_ctime),
    };
    let me = Expect {
        size: a.entry.size,
        mtime: a.entry.mtime,
        ino: a.entry.ino,
        ctime: Some(d.ctime),
    };
    // What changed: None, or Some("changed") / Some("went"). A duplicate that is gone
    // is left to the deleter, which reports it vanished.
    let look = |path: &Path, want: &Expect, is_kept: bool| match store.stat_full(path) {
        Ok(Some(st)) if want.matches(&st) => Ok(None),
        Ok(Some(_)) => Ok(Some("changed")),
        Ok(None) if is_kept => Ok(Some("went")),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    let (kept_now, me_now) = match (look(&d.kept, &kept, true), look(&a.entry.path, &me, false)) {
        (Err(e), _) => {
            return Some(format!(
                "its kept copy {} cannot be checked: {e}",
                crate::spell::show(&d.kept)
            ));
        }
        (_, Err(e)) => return Some(format!("cannot be checked: {e}")),
        (Ok(k), Ok(m)) => (k, m),
    };
    let mut why = Vec::new();
    for (what, path, label) in [
        (kept_now, &d.kept, "its kept copy "),
        (me_now, &a.entry.path, ""),
    ] {
        let Some(what) = what else { continue };
        if let Err(e) = registry
            .lock()
            .expect("registry lock")
            .forget_hash(store.name(), path)
        {
            warn!(error = %e, "cannot drop a stale hash; the duplicate stays refused until it is hashed again");
        }
        why.push(format!("{label}{} {what}", crate::spell::show(path)));
    }
    // The daemon wakes the hasher after every pass.
    if !why.is_empty() {
        return Some(format!(
            "{} since it was hashed (the content may differ now); it is hashed and compared again first",
            why.join(" and ")
        ));
    }
    // Still trusted now: who owns the kept copy and can write its directories, looked
    // at again by descriptor (a chmod or a swapped directory since the plan counts).
    let mut names = Names::default();
    let (kept_custody, kept_ino) = custody(store, &d.kept, &mut names);
    let (my_custody, my_ino) = custody(store, &a.entry.path, &mut names);
    if kept_custody.unknown.is_none() && kept_ino != d.kept_ino {
        return Some(format!(
            "its kept copy {} is another file now; it is hashed and compared again first",
            crate::spell::show(&d.kept)
        ));
    }
    if my_custody.unknown.is_none() && my_ino != a.entry.ino {
        return None; // the deleter's own re-check refuses another file
    }
    if my_custody.unknown.is_some() && matches!(store.stat_full(&a.entry.path), Ok(None)) {
        return None; // gone: the deleter reports it vanished
    }
    pd::stands_for(&d.kept, &kept_custody, &my_custody)
        .err()
        .map(|why| format!("not deduped: {why}"))
}

/// The background hasher: one low-priority thread (nice 19, idle I/O class) that hashes
/// what [`Engine::hash_pending`] finds whenever it is woken (after passes and scans) and at
/// least every minute, and asks for a pass when it found something new.
pub struct Hasher {
    wake: Mutex<bool>,
    cv: Condvar,
    stop: AtomicBool,
}

impl Hasher {
    /// Starts the thread. It runs whether or not a class has `dedupe` (a reload may add
    /// one); without one, a wake costs nothing but the wake.
    pub fn spawn(engine: Arc<Engine>) -> Arc<Hasher> {
        let h = Arc::new(Hasher {
            wake: Mutex::new(true),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let me = h.clone();
        let spawned = std::thread::Builder::new()
            .name("hasher".into())
            .spawn(move || {
                lower_priority();
                loop {
                    {
                        let w = me.wake.lock().expect("hasher lock");
                        let (mut w, _) = me
                            .cv
                            .wait_timeout_while(w, IDLE_WAKE, |w| {
                                !*w && !me.stop.load(Ordering::Relaxed)
                            })
                            .expect("hasher lock");
                        *w = false;
                    }
                    if me.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match engine.hash_pending(&me.stop) {
                        Ok(s) if s.files > 0 => engine.pass_soon().notify_one(),
                        Ok(_) => {}
                        Err(e) => error!(error = %e, "hashing for identical copies failed; retrying later"),
                    }
                }
            });
        if let Err(e) = spawned {
            error!(error = %e, "cannot start the hasher thread: identical copies are not looked for");
        }
        h
    }

    /// Asks for a round of hashing.
    pub fn wake(&self) {
        *self.wake.lock().expect("hasher lock") = true;
        self.cv.notify_one();
    }

    /// Stops the thread (between two reads).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cv.notify_one();
    }
}

/// This thread only: nice 19 and the idle I/O class, so a recorder never waits on us.
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 19) != 0 {
            debug!("hasher: cannot lower its CPU priority");
        }
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        const IOPRIO_CLASS_IDLE: libc::c_long = 3;
        if libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            tid as libc::c_long,
            IOPRIO_CLASS_IDLE << 13,
        ) != 0
        {
            debug!("hasher: cannot set the idle I/O class");
        }
    }
}
