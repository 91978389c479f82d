//! `mediaretain rm` and `POST /v1/rm`: delete named files and directories now, through the
//! one executor — a delete call a platform can trust, where ZLMediaKit's
//! `deleteRecordDirectory` answers code 0 while the MP4s stay on disk.
//!
//! Each argument is an absolute path inside a store root or STORE:KEY (the lossless
//! spelling); a bad one (outside every store, `..`, a NUL byte, an S3 store) refuses the
//! whole request before anything changes. A regular file is one action. A directory (only
//! with `recursive`) is walked by descriptor — never following a symlink, never leaving the
//! store — and each regular file in it is one action; whatever else is there (a symlink, a
//! socket, a FIFO, a device, a directory that cannot be read) is left in place with a
//! result saying what it is. The actions go through the same guards and deleter as a
//! lifecycle pass (`Executor::execute`; `Executor::would` for a dry run): leases,
//! playlists, writers, offload before delete, the kernel's exclusive lease (a file open in
//! another process is refused naming it), the trash rename with its inode check, verified
//! gone, a durable intent and an audit record (trigger `manual`) per file. A retained file
//! is refused unless `force_retained`, which unpins it first through the audited `unretain`
//! path; the last copy of content whose other copies went as its duplicates is refused
//! unless `force_last_copy` (issue 23). Then the directories emptied are removed bottom-up,
//! the named one included, never the store root. Before it answers, rm looks again by
//! descriptor at what is under the named directories and at each file said to be gone
//! (`still_there`): every file gets a true result, and `remaining` counts what is still
//! there: 0 means everything named is gone.
//!
//! One file for one request: resolving the arguments, walking the named directories, the
//! refusals of its own (retained, the last copy) and the look before the answer all serve
//! `rm`'s one report; the deletion itself is the executor's.

use super::*;
use crate::scan::Passed;
use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

/// The audit trigger of every `rm`.
pub const RM_TRIGGER: &str = "manual";
/// Why each file was selected, in its audit record.
const RM_REASON: &str = "requested by mediaretain rm";

/// What `rm` is asked (also the body of `POST /v1/rm`). Unknown fields are refused: a
/// misspelt `dry_run` must not delete.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RmRequest {
    /// Absolute paths inside store roots, or STORE:KEY.
    pub paths: Vec<String>,
    /// Delete what directories hold, then the directories emptied.
    #[serde(default)]
    pub recursive: bool,
    /// Check everything and say what would happen; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Unpin retained files (audited) and delete them too.
    #[serde(default)]
    pub force_retained: bool,
    /// Delete a file even when it is the last copy of content whose other copies were
    /// deleted as its duplicates.
    #[serde(default)]
    pub force_last_copy: bool,
}

/// A directory `rm` removed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RemovedDir {
    /// Store name.
    pub store: String,
    /// Relative path.
    #[serde(with = "crate::spell::serde_path")]
    pub path: PathBuf,
}

/// What `rm` did: a result per file (and per entry left in place), counts, and the
/// directories removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RmReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Regular files found under the paths given.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Deleted and verified gone.
    pub deleted_files: u64,
    /// Bytes of those.
    pub deleted_bytes: u64,
    /// Refused (or, in a dry run, would be refused), each with its reason; they stay.
    pub refused: u64,
    /// Attempted and failed: they may still be there.
    pub failed: u64,
    /// Named but not there (or gone before they were reached): nothing to do.
    pub gone: u64,
    /// Retained files unpinned by `force_retained`.
    pub unpinned: u64,
    /// What is still there when rm answers (looked at again): refused and failed files,
    /// entries left in place or found meanwhile, directories that could not be removed, files
    /// that cannot be proven gone. 0 when everything named is gone.
    pub remaining: u64,
    /// Per file and per entry left in place.
    pub results: Vec<FileResult>,
    /// Directories removed, deepest first.
    pub removed_dirs: Vec<RemovedDir>,
    /// Wall time.
    #[serde(rename = "took", with = "crate::units::millis")]
    pub millis: u64,
}

/// What is at a path, looked at without following any symlink.
enum At {
    Missing,
    File,
    Dir,
    /// A symlink, socket, FIFO, device.
    Other(FileType),
    /// A directory on its path is a symlink or not a directory.
    BadPath,
}

/// What is at `rel` of `store`: its parent opened beneath the root without following a
/// symlink, then the name `fstatat`-ed no-follow.
fn what_is(store: &LocalStore, rel: &Path) -> std::result::Result<At, Errno> {
    let (Some(name), parent) = (rel.file_name(), rel.parent().unwrap_or(Path::new(""))) else {
        return Ok(At::BadPath);
    };
    let root = scan::open_root(store.root())?;
    let dir = match scan::open_dir_beneath(&root, parent) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(At::Missing),
        Err(Errno::LOOP) | Err(Errno::NOTDIR) | Err(Errno::XDEV) => return Ok(At::BadPath),
        Err(e) => return Err(e),
    };
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => At::File,
            FileType::Directory => At::Dir,
            ft => At::Other(ft),
        }),
        Err(Errno::NOENT) => Ok(At::Missing),
        Err(e) => Err(e),
    }
}

/// Removes directory `rel` of `store` if it is empty (never the root, never through a
/// symlink). `Ok(false)`: not empty, or not there.
fn rmdir_if_empty(store: &LocalStore, rel: &Path) -> std::result::Result<bool, Errno> {
    let (Some(name), Some(parent)) = (rel.file_name(), rel.parent()) else {
        return Ok(false);
    };
    if !is_confined(rel) {
        return Ok(false);
    }
    let root = scan::open_root(store.root())?;
    let dir = scan::open_dir_beneath(&root, parent)?;
    match rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR) {
        Ok(()) => Ok(true),
        Err(Errno::NOTEMPTY) | Err(Errno::EXIST) | Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The words for an entry `rm` leaves in place.
fn left_in_place(ft: FileType) -> String {
    match ft {
        FileType::Symlink => "a symlink: never followed; left in place".into(),
        ft => format!("{}: not a regular file; left in place", scan::kind_of(ft)),
    }
}

/// Copies deleted as duplicates, by the kept copy they named (as the audit spells it):
/// (their path, when).
type Replaced = HashMap<String, Vec<(PathBuf, Nanos)>>;

/// The copies the audit says went as duplicates of another file of `store`, by that
/// file's spelling. A reason reads "duplicate of KEPT (same SIZE, blake3 …)"; a KEPT that
/// itself holds " (same " is filed under each way of reading it (a lookup by the exact
/// spelling then finds it).
fn replaced_in(reg: &Registry, store: &str) -> std::result::Result<Replaced, RegistryError> {
    const OF: &str = "duplicate of ";
    let mut out: Replaced = HashMap::new();
    for (path, at, reason) in reg.duplicates_deleted(store)? {
        let Some(rest) = reason.strip_prefix(OF) else {
            continue;
        };
        for (i, _) in rest.match_indices(" (same ") {
            out.entry(rest[..i].to_string())
                .or_default()
                .push((path.clone(), at));
        }
    }
    Ok(out)
}

/// Why `rm` must not delete `path` without `force_last_copy`: it stood for copies deleted
/// as its duplicates, and no other copy of its content is left (or its content is not
/// known any more). None when it may go.
fn last_copy_refusal(
    reg: &Registry,
    replaced: &Replaced,
    store: &str,
    path: &Path,
) -> std::result::Result<Option<String>, RegistryError> {
    let Some(gone) = replaced.get(&crate::spell::show(path).to_string()) else {
        return Ok(None);
    };
    if reg
        .other_copies(store, path)?
        .is_some_and(|o| !o.is_empty())
    {
        return Ok(None);
    }
    let mut names: Vec<String> = gone
        .iter()
        .rev()
        .take(3)
        .map(|(p, at)| {
            format!(
                "{} (deleted as its duplicate at {})",
                crate::spell::show(p),
                fmt_time(*at)
            )
        })
        .collect();
    if gone.len() > 3 {
        names.push(format!("{} more", gone.len() - 3));
    }
    Ok(Some(format!(
        "the last copy: it replaced {}; --force-last-copy (\"force_last_copy\": true) deletes it anyway",
        names.join(", ")
    )))
}

/// What `rm` found before it acted, for the last look.
struct Found<'a> {
    /// Every regular file found (named, or under a named directory).
    files: &'a std::collections::BTreeSet<(String, PathBuf)>,
    /// The inode of each file it found.
    ino_of: &'a HashMap<(String, PathBuf), u64>,
    /// The directories named, walked.
    named_dirs: &'a [(String, PathBuf)],
    /// What the first walk left in place (symlinks and the like).
    first_others: &'a std::collections::BTreeSet<(String, PathBuf)>,
}

/// How many times the named directories are looked at again when the tree is unsteady (a
/// directory replaced by a symlink meanwhile, a new symlink): what any look sees counts.
const LOOKS: usize = 4;

/// Whether a file said to be gone is gone: its directory opened beneath the root by
/// descriptor (no symlink followed) and the name not in it; `Err` says why that cannot be
/// said (then it counts as still there), `Ok(Some(ino))` that it is there.
fn look_gone(
    store: &LocalStore,
    rel: &Path,
    removed: &[RemovedDir],
) -> std::result::Result<Option<u64>, String> {
    let (Some(name), parent) = (rel.file_name(), rel.parent().unwrap_or(Path::new(""))) else {
        return Ok(None);
    };
    let root = scan::open_root(store.root()).map_err(|e| format!("store root: {e}"))?;
    match scan::open_dir_beneath(&root, parent) {
        Ok(dir) => match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st.st_ino)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(format!("cannot look at it: {e}")),
        },
        // Its directory is gone: proven empty only if rm removed it (rmdir takes only an
        // empty directory), else it may have been moved away with the file in it.
        Err(Errno::NOENT)
            if removed
                .iter()
                .any(|d| d.store == store.name() && parent.starts_with(&d.path)) =>
        {
            Ok(None)
        }
        Err(Errno::NOENT) => Err(format!(
            "cannot verify it is gone: its directory {} is not there now (moved while rm ran?)",
            crate::spell::show(parent)
        )),
        Err(Errno::LOOP) | Err(Errno::NOTDIR) | Err(Errno::XDEV) => Err(format!(
            "cannot verify it is gone: a directory on its path ({}) is a symlink or not a directory now; symlinks are never followed",
            crate::spell::show(parent)
        )),
        Err(e) => Err(format!("cannot verify it is gone: {e}")),
    }
}

/// Before `rm` answers: what is still under the named directories (walked again by
/// descriptor), and whether each file said to be gone is (see [`look_gone`]). Each result
/// is made true — a file still there is never "vanished" — each entry found that no result
/// names gets one, and `remaining` counts everything still there (an inode seen at two
/// names while a directory was being moved counts once).
fn still_there(rt: &Runtime, found: &Found<'_>, report: &mut RmReport) {
    type Key = (String, PathBuf);
    let mut present: std::collections::BTreeMap<Key, String> = Default::default();
    let mut inos: std::collections::HashSet<(String, u64)> = Default::default();
    for (s, rel) in found.named_dirs {
        let Some(store) = rt.store(s) else { continue };
        let key = (s.clone(), rel.clone());
        for _ in 0..LOOKS {
            match what_is(store, rel) {
                Ok(At::Dir) => {}
                Ok(At::Missing) => break,
                Ok(At::File) => {
                    present.insert(key.clone(), "a file where the directory was".into());
                    break;
                }
                Ok(At::Other(ft)) => {
                    present.insert(key.clone(), left_in_place(ft));
                    break;
                }
                Ok(At::BadPath) => {
                    present.insert(
                        key.clone(),
                        "a directory on its path is a symlink or not a directory now".into(),
                    );
                    break;
                }
                Err(e) => {
                    present.insert(key.clone(), format!("cannot look at it: {e}"));
                    break;
                }
            }
            let (mut passed, mut empty) = (Passed::default(), Vec::new());
            scan::walk_noting(
                store.root(),
                rel,
                |batch| {
                    for f in batch {
                        if inos.insert((s.clone(), f.ino)) {
                            present.insert((s.clone(), f.path), "a file".into());
                        }
                    }
                },
                &mut empty,
                Some(&mut passed),
            );
            let mut unsteady = false;
            for (p, what) in passed.others {
                let k = (s.clone(), p);
                if what == scan::MOVED_AWAY {
                    // What it held may be under a name this walk had passed: look again.
                    unsteady = true;
                    continue;
                }
                unsteady |= what.starts_with("a directory replaced")
                    || (what == "a symlink" && !found.first_others.contains(&k));
                present.entry(k).or_insert_with(|| what.to_string());
            }
            for d in empty {
                present
                    .entry((s.clone(), d))
                    .or_insert_with(|| "an empty directory".into());
            }
            if passed.more > 0 {
                present.insert(
                    key.clone(),
                    format!(
                        "{} more directories and entries than one look lists",
                        passed.more
                    ),
                );
            }
            if !unsteady {
                break;
            }
        }
    }
    let mut counted: std::collections::BTreeSet<Key> = present.keys().cloned().collect();
    // Each result made true.
    let mut named: std::collections::HashSet<Key> = Default::default();
    let mut again: std::collections::HashSet<Key> = Default::default();
    for r in &mut report.results {
        let k = (r.store.clone(), r.path.clone());
        named.insert(k.clone());
        match &r.result {
            Outcome::Refused(_) | Outcome::Failed(_) => {
                // Once per file: the walk may have met the same inode under another name.
                let ino = found.ino_of.get(&k).copied();
                if present.contains_key(&k) || ino.is_none_or(|i| inos.insert((r.store.clone(), i)))
                {
                    counted.insert(k);
                }
            }
            Outcome::Vanished if found.files.contains(&k) => {
                let Some(store) = rt.store(&r.store) else {
                    continue;
                };
                let (why, ino) = match look_gone(store, &r.path, &report.removed_dirs) {
                    Ok(None) => continue,
                    Ok(Some(ino)) => (
                        "not deleted: it is still there (the path to it changed while rm ran?)"
                            .to_string(),
                        Some(ino),
                    ),
                    Err(why) => (why, found.ino_of.get(&k).copied()),
                };
                report.gone = report.gone.saturating_sub(1);
                report.failed += 1;
                r.result = Outcome::Failed(why);
                // The same file found by the walk (or a result) under another name counts
                // once.
                if present.contains_key(&k) || ino.is_none_or(|i| inos.insert((r.store.clone(), i)))
                {
                    counted.insert(k);
                }
            }
            Outcome::Deleted if present.contains_key(&k) => {
                // Another file at the name now (the one deleted was verified gone).
                named.remove(&k);
                again.insert(k);
            }
            _ => {}
        }
    }
    // Entries still there that no result names.
    for ((s, p), what) in present {
        if named.contains(&(s.clone(), p.clone())) {
            continue;
        }
        let how = if again.contains(&(s.clone(), p.clone())) {
            "at this name again after the file rm deleted there"
        } else {
            "not listed when rm walked the directory (moved, replaced or created while rm ran)"
        };
        report.refused += 1;
        report.results.push(result_at(
            &s,
            &p,
            Outcome::Refused(format!("still there: {what}; {how}; left in place")),
            RM_REASON,
        ));
    }
    report.remaining = counted.len() as u64;
}

/// A result for a path that is not (or no longer) a planned file.
fn result_at(store: &str, path: &Path, result: Outcome, reason: &str) -> FileResult {
    FileResult {
        store: store.to_string(),
        path: path.to_path_buf(),
        class: None,
        rule: Rule::Manual,
        bytes: 0,
        result,
        reason: reason.into(),
    }
}

impl Engine {
    /// Deletes the files and directories `req` names now; see the module doc. Errors only
    /// for bad input (nothing changed then) and registry or store failures.
    pub fn rm(&self, req: &RmRequest) -> Result<RmReport> {
        let started = Instant::now();
        let rt = self.runtime();
        if req.paths.is_empty() {
            return Err(EngineError::BadInput(
                "rm: give at least one path (absolute inside a store root, or STORE:KEY)".into(),
            ));
        }
        // Every argument first: a bad one refuses the request before anything changes.
        let mut targets: Vec<(String, PathBuf)> = Vec::with_capacity(req.paths.len());
        for arg in &req.paths {
            let (store, rel) = rt.resolve(arg)?;
            if rt.store(&store).is_none() {
                return Err(EngineError::BadInput(format!(
                    "{store}:{}: {store} is an S3 store; rm works on local stores",
                    crate::spell::show(&rel)
                )));
            }
            if !targets.contains(&(store.clone(), rel.clone())) {
                targets.push((store, rel));
            }
        }
        // One deletion at a time, like a pass (a pass and rm never race for a file).
        let _pass = self.pass.lock().expect("pass lock");
        let mut report = RmReport {
            dry_run: req.dry_run,
            ..Default::default()
        };
        let mut files: std::collections::BTreeSet<(String, PathBuf)> = Default::default();
        let mut missing: Vec<(String, PathBuf)> = Vec::new();
        // Entries left in place, by path (a directory named twice is walked twice).
        let mut others: std::collections::BTreeMap<(String, PathBuf), Outcome> = Default::default();
        // Directories walked, to be removed once emptied.
        let mut walked: Vec<(String, PathBuf)> = Vec::new();
        // The directories named (with `recursive`): looked at again before rm answers.
        let mut named_dirs: Vec<(String, PathBuf)> = Vec::new();
        // The inode of each file the walks found.
        let mut walk_ino: HashMap<(String, PathBuf), u64> = HashMap::new();
        for (store_name, rel) in &targets {
            let Some(store) = rt.store(store_name) else {
                continue; // checked above
            };
            let key = (store_name.clone(), rel.clone());
            if rel.starts_with(crate::store::local::TRASH_DIR) {
                others.insert(
                    key,
                    Outcome::Refused(
                        "mediaretain's own trash directory (files on their way out): never named"
                            .into(),
                    ),
                );
                continue;
            }
            match what_is(store, rel) {
                Err(e) => {
                    others.insert(key, Outcome::Failed(format!("cannot look at it: {e}")));
                }
                Ok(At::Missing) => missing.push(key),
                Ok(At::BadPath) => {
                    others.insert(
                        key,
                        Outcome::Refused(
                            "a directory on its path is a symlink or not a directory; symlinks are never followed"
                                .into(),
                        ),
                    );
                }
                Ok(At::File) => {
                    files.insert(key);
                }
                Ok(At::Other(ft)) => {
                    others.insert(key, Outcome::Refused(left_in_place(ft)));
                }
                Ok(At::Dir) if !req.recursive => {
                    others.insert(
                        key,
                        Outcome::Refused(
                            "is a directory: give --recursive (\"recursive\": true) to delete what it holds"
                                .into(),
                        ),
                    );
                }
                Ok(At::Dir) => {
                    named_dirs.push(key.clone());
                    let mut passed = Passed::default();
                    scan::walk_noting(
                        store.root(),
                        rel,
                        |batch| {
                            for f in batch {
                                let k = (store_name.clone(), f.path);
                                walk_ino.insert(k.clone(), f.ino);
                                files.insert(k);
                            }
                        },
                        &mut Vec::new(),
                        Some(&mut passed),
                    );
                    for (p, what) in passed.others {
                        if what == scan::MOVED_AWAY {
                            // Gone from here: what it held is found (and counted) by the
                            // look before rm answers.
                            continue;
                        }
                        let why = match what {
                            "a symlink" => left_in_place(FileType::Symlink),
                            w if w.starts_with("a directory") || w.starts_with("an entry") => {
                                format!("{w}; what it holds is left in place")
                            }
                            w => format!("{w}: not a regular file; left in place"),
                        };
                        others.insert((store_name.clone(), p), Outcome::Refused(why));
                    }
                    if passed.more > 0 {
                        others.insert(
                            key,
                            Outcome::Refused(format!(
                                "{} more directories and entries than one rm lists ({} of each); run it again",
                                passed.more,
                                scan::MAX_PASSED
                            )),
                        );
                    }
                    walked.extend(passed.dirs.into_iter().map(|d| (store_name.clone(), d)));
                }
            }
        }
        // Registered (or forgotten) as they are now: every action deletes a known version.
        let changes: Vec<crate::watch::Change> = files
            .iter()
            .chain(&missing)
            .map(|(s, p)| (Arc::<str>::from(s.as_str()), p.clone()))
            .collect();
        for chunk in changes.chunks(8192) {
            self.apply_changes(chunk)?;
        }
        for (s, p) in &missing {
            report.gone += 1;
            report.results.push(result_at(
                s,
                p,
                Outcome::Vanished,
                "no such file or directory in the store",
            ));
        }
        let mut actions = Vec::with_capacity(files.len());
        let mut retained: Vec<policy::Action> = Vec::new();
        let mut audit: Vec<AuditRecord> = Vec::new();
        let now = self.now();
        // What each store's audit says went as duplicates (only read when a file is named).
        let mut replaced: HashMap<String, Replaced> = HashMap::new();
        for (store, path) in &files {
            let Some(entry) = self.reg().get(store, path)? else {
                report.gone += 1;
                report.results.push(result_at(
                    store,
                    path,
                    Outcome::Vanished,
                    "gone before it could be deleted",
                ));
                continue;
            };
            report.files += 1;
            report.bytes += entry.size;
            let a = policy::Action {
                class_name: rt
                    .classifier
                    .classify(store, path)
                    .unwrap_or_default()
                    .to_string(),
                rule: Rule::Manual,
                reason: RM_REASON.into(),
                age_ref: entry.mtime,
                would_refuse: None,
                dupe_of: None,
                entry,
            };
            let why = if a.entry.retained && !req.force_retained {
                Some(
                    "retained: pinned by an operator; --force-retained unpins and deletes it"
                        .to_string(),
                )
            } else if req.force_last_copy
                || rt
                    .config
                    .class(&a.class_name)
                    .is_none_or(|c| c.dedupe.is_none())
            {
                // Only a dedupe class deletes copies as duplicates: the audit is read
                // (once per store) only for its files.
                None
            } else {
                let reg = self.reg();
                if !replaced.contains_key(store) {
                    replaced.insert(store.clone(), replaced_in(&reg, store)?);
                }
                last_copy_refusal(&reg, &replaced[store], store, path)?
            };
            if let Some(why) = why {
                if !req.dry_run {
                    info!(action = "refuse", path = %format!("{store}:{}", crate::spell::show(path)), reason = %why, trigger = RM_TRIGGER, "refused to delete {store}:{}: {why}", crate::spell::show(path));
                    audit.push(AuditRecord {
                        at: now,
                        store: store.clone(),
                        path: path.clone(),
                        action: "delete".into(),
                        outcome: "refused".into(),
                        class: (!a.class_name.is_empty()).then(|| a.class_name.clone()),
                        rule: Some(Rule::Manual.to_string()),
                        reason: format!("{RM_REASON}; {why}"),
                        trigger: RM_TRIGGER.into(),
                        bytes: Some(a.entry.size),
                    });
                }
                report.refused += 1;
                report.results.push(file_result(&a, Outcome::Refused(why)));
                continue;
            }
            if a.entry.retained {
                retained.push(a.clone());
            }
            actions.push(a);
        }
        if !audit.is_empty() {
            self.reg().record(&[], &audit)?;
        }
        // --force-retained: unpinned through `unretain` (audited), then deleted like the rest.
        if !retained.is_empty() && !req.dry_run {
            let args: Vec<String> = retained
                .iter()
                .map(|a| format!("{}:{}", a.entry.store, crate::spell::path(&a.entry.path)))
                .collect();
            let marked = self.mark(&args, &Mark::Retain(false), RM_TRIGGER)?;
            for (a, m) in retained.iter().zip(marked) {
                match m.error {
                    Some(err) => {
                        actions.retain(|x| x.entry.id != a.entry.id);
                        report.refused += 1;
                        report.results.push(file_result(
                            a,
                            Outcome::Refused(format!("retained, and could not be unpinned: {err}")),
                        ));
                    }
                    None => report.unpinned += u64::from(m.changed),
                }
            }
        }
        // The inode of each file found, to know it again wherever it is at the end.
        let mut ino_of = walk_ino;
        ino_of.extend(
            actions
                .iter()
                .map(|a| ((a.entry.store.clone(), a.entry.path.clone()), a.entry.ino)),
        );
        if req.dry_run {
            let unpin = retained
                .iter()
                .map(|a| (a.entry.store.clone(), a.entry.path.clone()))
                .collect();
            let outcomes = self.executor(&rt).would_unpinned(&actions, &unpin)?;
            for (a, o) in actions.iter().zip(outcomes) {
                if matches!(o, Outcome::Refused(_)) {
                    report.refused += 1;
                }
                report.results.push(file_result(a, o));
            }
        } else if !actions.is_empty() {
            let mut pass = GcReport::default();
            let ledger = self.ledger(RM_TRIGGER, true);
            (self.executor(&rt)).execute(&ledger, &actions, &mut pass, None, false)?;
            report.deleted_files += pass.deleted_files;
            report.deleted_bytes += pass.deleted_bytes;
            report.refused += pass.refused;
            report.failed += pass.failed;
            report.gone += pass.vanished;
            report.results.extend(pass.results);
            let mut a = self.activity.lock().expect("activity lock");
            a.deleted_files += pass.deleted_files;
            a.deleted_bytes += pass.deleted_bytes;
        }
        let first_others: std::collections::BTreeSet<(String, PathBuf)> =
            others.keys().cloned().collect();
        for ((s, p), o) in others {
            match o {
                Outcome::Failed(_) => report.failed += 1,
                _ => report.refused += 1,
            }
            report.results.push(result_at(&s, &p, o, RM_REASON));
        }
        // The directories emptied, deepest first; one still holding anything stays.
        if req.recursive && !req.dry_run {
            walked.sort_by_key(|(s, d)| (std::cmp::Reverse(d.components().count()), s.clone()));
            walked.dedup();
            for (s, d) in walked {
                let Some(store) = rt.store(&s) else { continue };
                match rmdir_if_empty(store, &d) {
                    Ok(true) => {
                        info!(action = "rmdir", store = %s, path = %crate::spell::show(&d), trigger = RM_TRIGGER, "removed emptied directory");
                        report.removed_dirs.push(RemovedDir { store: s, path: d });
                    }
                    Ok(false) => {}
                    Err(e) => {
                        report.failed += 1;
                        report.results.push(result_at(
                            &s,
                            &d,
                            Outcome::Failed(format!("cannot remove the emptied directory: {e}")),
                            RM_REASON,
                        ));
                    }
                }
            }
        }
        if req.dry_run {
            report.remaining = report.refused + report.failed;
        } else {
            let found = Found {
                files: &files,
                ino_of: &ino_of,
                named_dirs: &named_dirs,
                first_others: &first_others,
            };
            still_there(&rt, &found, &mut report);
        }
        report.millis = started.elapsed().as_millis() as u64;
        if !req.dry_run {
            info!(
                action = "rm",
                trigger = RM_TRIGGER,
                deleted = report.deleted_files,
                bytes = report.deleted_bytes,
                remaining = report.remaining,
                "rm: {} deleted ({}), {} refused, {} failed, {} already gone, {} removed",
                report.deleted_files,
                ByteSize(report.deleted_bytes),
                report.refused,
                report.failed,
                report.gone,
                crate::units::plural(report.removed_dirs.len() as u64, "directory")
            );
        }
        Ok(report)
    }
}
