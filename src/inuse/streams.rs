//! Two writers on one stream: two recorder processes writing files of the same stream at
//! the same time (a second detection loop started by a config edit, a supervisor that
//! restarted a recorder without stopping the first) race on renames and fill the disk with
//! copies. A class that names the stream of its paths (`stream = "rec/{stream}/**"`, see
//! [`crate::config::template`]) is watched for it; nothing is ever deleted for it, the
//! operator is told.
//!
//! Seen two ways, each pass, always between files of one stream and one kind (extension:
//! a remuxer writing the last recording's `.mp4` beside the recorder's `.flv` is not a
//! second recorder):
//! - **open for writing**: the `/proc` snapshot lists the files on the stores' devices
//!   that processes hold open for writing ([`Snapshot::take_watching`]); two *different
//!   writers* holding files of one stream is a conflict;
//! - **fresh temporary files**: two `.part` files (the class's `part_suffixes`) of one
//!   stream, both modified within the class's `quiet_period`, written at the same time
//!   (their lives, birth to last write, overlap by more than a second: a recorder's previous
//!   part, closed before it began the next, does not count) and not both held by one writer
//!   — this catches writers that open, append and close (never seen holding the file) and
//!   writers in processes the snapshot cannot read.
//!
//! A recorder in a container names its files by its own mounts: a writer in another mount
//! namespace has its path turned into ours through both mount tables
//! ([`procfs::host_path`]), and the file is checked to be the very inode it holds.
//!
//! Who is one writer: a process, with all its threads (`/proc` lists processes; threads
//! share the descriptor table). Processes that share an *open file description* of a file
//! of the stream — a parent and the child it forked with the descriptor inherited, like
//! `sh -c 'recorder >> out.flv'` where both the shell and the recorder hold `out.flv` — are
//! one writer too: one description means one file offset and one stream of writes, not two
//! recorders. That is asked of the kernel with `kcmp(2)` (`KCMP_FILE`); where kcmp is not
//! available, a parent and its child holding the same file on the same descriptor number
//! are taken to share it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::procfs::{self, OpenForWrite, Snapshot};
use crate::classify::Classifier;
use crate::config::{Class, Config};
use crate::store::local::LocalStore;
use crate::units::Nanos;

/// How a conflict was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    /// Different processes hold files of the stream open for writing.
    OpenForWriting,
    /// Two or more fresh temporary (`.part`) files of the stream, not held by one writer.
    FreshParts,
}

/// One writer of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamWriter {
    /// Its processes (several: a parent and child sharing the files' descriptions); empty
    /// when no process was seen holding the files (they are opened and closed per write,
    /// or the snapshot could not read the process).
    pub pids: Vec<i32>,
    /// The first process's command line (`/proc/PID/cmdline`, arguments spelled as in
    /// [`crate::spell`], shortened); empty when no process was seen.
    pub cmdline: String,
    /// The files of the stream it writes, relative to the store root.
    pub files: Vec<String>,
}

/// Two or more writers on one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConflict {
    /// The store.
    pub store: String,
    /// The class whose `stream` names the stream.
    pub class: String,
    /// The stream (`app/stream` when the pattern names an app).
    pub stream: String,
    /// How it was seen.
    pub seen: Seen,
    /// Since when (the pass that first saw it).
    #[serde(with = "crate::units::rfc3339")]
    pub since: Nanos,
    /// The writers, two or more.
    pub writers: Vec<StreamWriter>,
}

impl StreamConflict {
    /// The writers in words: `pid 12 (recorder --room 5) writing rec/5/a.flv; pid 13 (…) …`.
    pub fn describe(&self) -> String {
        self.writers
            .iter()
            .map(|w| {
                let who = match w.pids.as_slice() {
                    [] => "a writer not seen holding it".to_string(),
                    [p] => format!("pid {p} ({})", w.cmdline),
                    [p, rest @ ..] => format!(
                        "pid {p} ({}) with pid {} sharing its file",
                        w.cmdline,
                        rest.iter()
                            .map(|r| r.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                format!("{who} writing {}", w.files.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Every pid named, in order.
    pub fn pids(&self) -> Vec<i32> {
        self.writers.iter().flat_map(|w| w.pids.clone()).collect()
    }

    fn key(&self) -> (String, String, String) {
        (self.store.clone(), self.class.clone(), self.stream.clone())
    }
}

/// The class and stream of `rel` in `store`: by its own class's `stream`, or — for a
/// writer's temporary name `X.part` — by the class of `X`.
pub fn stream_of<'c>(
    config: &'c Config,
    classifier: &Classifier,
    store: &str,
    rel: &Path,
) -> Option<(&'c Class, String)> {
    let class_of = |p: &Path| classifier.classify(store, p).and_then(|c| config.class(c));
    if let Some(c) = class_of(rel)
        && let Some(s) = c.stream.as_ref().and_then(|sp| sp.stream_of(rel))
    {
        return Some((c, s));
    }
    let bytes = rel.as_os_str().as_bytes();
    config
        .classes
        .iter()
        .filter(|c| c.store == store && c.stream.is_some())
        .find_map(|c| {
            c.part_suffixes.iter().find_map(|suf| {
                let stem = bytes.strip_suffix(suf.as_bytes())?;
                let fin = Path::new(std::ffi::OsStr::from_bytes(stem));
                let fc = class_of(fin).filter(|fc| fc.name == c.name)?;
                Some((fc, fc.stream.as_ref()?.stream_of(fin)?))
            })
        })
}

/// The conflicts in `snap` (taken with the devices of `stores` watched) and in the
/// temporary files `parts` (per store, from the registry) at `now`. `since` of each is
/// `now`: [`Alarms::update`] keeps the first.
pub fn detect(
    config: &Config,
    classifier: &Classifier,
    stores: &[LocalStore],
    snap: &Snapshot,
    parts: &HashMap<String, Vec<PathBuf>>,
    now: Nanos,
) -> Vec<StreamConflict> {
    type Key = (String, String, String);
    type Writing<'a> = Vec<(&'a OpenForWrite, PathBuf)>;
    // Writers by stream and kind of file (see [`kind`]): (pid, fd, dev, ino, rel).
    let mut by_stream: BTreeMap<(Key, Vec<u8>), Writing> = BTreeMap::new();
    let within = |path: &Path| {
        stores
            .iter()
            .filter_map(|s| {
                path.strip_prefix(s.root())
                    .ok()
                    .map(|r| (s, r.to_path_buf()))
            })
            .max_by_key(|(s, _)| s.root().as_os_str().len())
    };
    // A recorder in a container names its files by its own mounts: its paths are turned
    // into ours (the mounts of the file's device, read once per mount namespace and
    // cached: many processes in one namespace with thousands of mounts cost one read).
    let mut other_ns: HashMap<i32, bool> = HashMap::new();
    for w in &snap.writers {
        let located = within(&w.path).or_else(|| {
            let other = *other_ns
                .entry(w.pid)
                .or_insert_with(|| procfs::other_mount_namespace(w.pid));
            if !other {
                return None;
            }
            let theirs = procfs::mounts_on(Some(w.pid), w.dev);
            let ours = procfs::mounts_on(None, w.dev);
            within(&procfs::host_path(&theirs, &ours, w.dev, &w.path)?)
        });
        let Some((store, rel)) = located else {
            continue;
        };
        let rel = rel.as_path();
        // Still the file the descriptor holds (not deleted, not renamed over meanwhile).
        let same = std::fs::symlink_metadata(store.root().join(rel))
            .is_ok_and(|m| m.dev() == w.dev && m.ino() == w.ino);
        if !same {
            continue;
        }
        if let Some((class, stream)) = stream_of(config, classifier, store.name(), rel) {
            let key = (store.name().to_string(), class.name.clone(), stream);
            by_stream
                .entry((key, kind(class, rel)))
                .or_default()
                .push((w, rel.to_path_buf()));
        }
    }
    let mut found = Vec::new();
    // Writer groups per stream: pid → its group's first pid.
    let mut groups_of: HashMap<Key, HashMap<i32, i32>> = HashMap::new();
    for ((key, _), ws) in &by_stream {
        let groups = writer_groups(ws.iter().map(|(w, _)| *w));
        let mut writers: BTreeMap<i32, StreamWriter> = BTreeMap::new();
        for (w, rel) in ws {
            let g = groups.get(&w.pid).copied().unwrap_or(w.pid);
            let sw = writers.entry(g).or_insert_with(|| StreamWriter {
                pids: Vec::new(),
                cmdline: String::new(),
                files: Vec::new(),
            });
            if !sw.pids.contains(&w.pid) {
                sw.pids.push(w.pid);
            }
            let f = crate::spell::path(rel).into_owned();
            if !sw.files.contains(&f) {
                sw.files.push(f);
            }
        }
        if writers.len() >= 2 && !found.iter().any(|c: &StreamConflict| &c.key() == key) {
            let writers = writers
                .into_values()
                .map(|mut w| {
                    w.pids.sort_unstable();
                    w.files.sort();
                    w.cmdline = cmdline(w.pids[0]);
                    w
                })
                .collect();
            found.push(StreamConflict {
                store: key.0.clone(),
                class: key.1.clone(),
                stream: key.2.clone(),
                seen: Seen::OpenForWriting,
                since: now,
                writers,
            });
        }
        groups_of.entry(key.clone()).or_default().extend(groups);
    }
    // Fresh temporary files by stream and kind: (rel, dev, ino, written from, to).
    type Part = (PathBuf, u64, u64, Option<Nanos>, Nanos);
    let mut fresh: BTreeMap<(Key, Vec<u8>), Vec<Part>> = BTreeMap::new();
    for store in stores {
        for rel in parts.get(store.name()).into_iter().flatten() {
            let Some((class, stream)) = stream_of(config, classifier, store.name(), rel) else {
                continue;
            };
            let Ok(md) = std::fs::symlink_metadata(store.root().join(rel)) else {
                continue;
            };
            let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
            let born = md.created().ok().map(crate::clock::to_nanos);
            if md.is_file() && now.saturating_sub(mtime) < class.quiet_period.as_nanos_i64() {
                let key = (store.name().to_string(), class.name.clone(), stream);
                fresh.entry((key, kind(class, rel))).or_default().push((
                    rel.clone(),
                    md.dev(),
                    md.ino(),
                    born,
                    mtime,
                ));
            }
        }
    }
    for ((key, _), ps) in fresh {
        if ps.len() < 2 || found.iter().any(|c: &StreamConflict| c.key() == key) {
            continue;
        }
        let groups = groups_of.get(&key);
        let group = |pid: i32| groups.and_then(|g| g.get(&pid)).copied().unwrap_or(pid);
        // Each part's writer group, if a process is seen holding it.
        let holders: Vec<Vec<i32>> = ps
            .iter()
            .map(|(_, dev, ino, _, _)| {
                let mut pids: Vec<i32> = snap
                    .writers
                    .iter()
                    .filter(|w| (w.dev, w.ino) == (*dev, *ino))
                    .map(|w| w.pid)
                    .collect();
                pids.sort_unstable();
                pids.dedup();
                pids
            })
            .collect();
        // Two parts are two writers when they were written at the same time — their
        // lives (birth to last write) overlap by more than OVERLAP — and are not both held
        // by one writer. A recorder's previous part, closed before it began the next, is
        // not a second writer. Without birth times, every pair of fresh parts counts.
        let one_writer = |a: usize, b: usize| {
            let g = |h: &Vec<i32>| h.first().map(|p| group(*p));
            !holders[a].is_empty() && g(&holders[a]) == g(&holders[b])
        };
        let together = |a: &Part, b: &Part| match (a.3, b.3) {
            (Some(ba), Some(bb)) => a.4.min(b.4) - ba.max(bb) > OVERLAP,
            _ => true,
        };
        let mut involved = vec![false; ps.len()];
        for a in 0..ps.len() {
            for b in a + 1..ps.len() {
                if !one_writer(a, b) && together(&ps[a], &ps[b]) {
                    involved[a] = true;
                    involved[b] = true;
                }
            }
        }
        if !involved.contains(&true) {
            continue;
        }
        let writers = ps
            .iter()
            .zip(holders)
            .zip(involved)
            .filter(|(_, inv)| *inv)
            .map(|(((rel, ..), pids), _)| StreamWriter {
                cmdline: pids.first().map(|p| cmdline(*p)).unwrap_or_default(),
                pids,
                files: vec![crate::spell::path(rel).into_owned()],
            })
            .collect();
        found.push(StreamConflict {
            store: key.0,
            class: key.1,
            stream: key.2,
            seen: Seen::FreshParts,
            since: now,
            writers,
        });
    }
    found
}

/// How long two temporary files must have been written at the same time to be two writers'
/// (a recorder may open its next part a moment before it closes the last).
const OVERLAP: Nanos = 1_000_000_000;

/// The kind of file `rel` is: its final name's extension (a writer's temporary suffix
/// taken off). Two writers of one stream conflict only when they write the same kind: a
/// recorder writing `.flv` and a remuxer turning the last recording into `.mp4` (nginx-rtmp's
/// `exec_record_done`) are not two recorders.
fn kind(class: &Class, rel: &Path) -> Vec<u8> {
    let b = rel.as_os_str().as_bytes();
    let fin = class
        .part_suffixes
        .iter()
        .find_map(|s| b.strip_suffix(s.as_bytes()))
        .unwrap_or(b);
    Path::new(std::ffi::OsStr::from_bytes(fin))
        .extension()
        .map(|e| e.as_bytes().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Groups the processes of `ws` into writers: pid → the smallest pid of its group.
/// Processes sharing an open file description of one file are one group.
fn writer_groups<'a>(ws: impl Iterator<Item = &'a OpenForWrite>) -> HashMap<i32, i32> {
    let ws: Vec<&OpenForWrite> = ws.collect();
    let mut parent: HashMap<i32, i32> = ws.iter().map(|w| (w.pid, w.pid)).collect();
    fn root(parent: &HashMap<i32, i32>, mut p: i32) -> i32 {
        while let Some(&q) = parent.get(&p) {
            if q == p {
                break;
            }
            p = q;
        }
        p
    }
    for (i, a) in ws.iter().enumerate() {
        for b in &ws[i + 1..] {
            if a.pid == b.pid || (a.dev, a.ino) != (b.dev, b.ino) {
                continue;
            }
            let (ra, rb) = (root(&parent, a.pid), root(&parent, b.pid));
            if ra != rb && shared(a, b) {
                let (lo, hi) = (ra.min(rb), ra.max(rb));
                parent.insert(hi, lo);
            }
        }
    }
    let pids: Vec<i32> = parent.keys().copied().collect();
    pids.into_iter().map(|p| (p, root(&parent, p))).collect()
}

/// Whether descriptors `a.fd` of `a.pid` and `b.fd` of `b.pid` are one open file
/// description (`kcmp(2)`, `KCMP_FILE`); without kcmp, whether one process is the other's
/// parent and holds the file on the same descriptor number.
fn shared(a: &OpenForWrite, b: &OpenForWrite) -> bool {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: kcmp takes plain integers and reads nothing of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(a.pid),
            libc::c_long::from(b.pid),
            KCMP_FILE,
            libc::c_long::from(a.fd),
            libc::c_long::from(b.fd),
        )
    };
    match r {
        0 => true,
        1..=3 => false,
        _ => a.fd == b.fd && (ppid(a.pid) == Some(b.pid) || ppid(b.pid) == Some(a.pid)),
    }
}

/// The parent of `pid` (`PPid:` of `/proc/PID/status`).
fn ppid(pid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// At most this many characters of a command line are shown.
const CMDLINE_MAX: usize = 300;

/// The command line of `pid`, its arguments spelled losslessly and joined by spaces,
/// shortened to [`CMDLINE_MAX`] characters; `[comm]` when it has none (a kernel thread, a
/// zombie), `?` when it is gone.
pub fn cmdline(pid: i32) -> String {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return "?".into();
    };
    let line = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| crate::spell::spell(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        return std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| format!("[{}]", c.trim()))
            .unwrap_or_else(|_| "?".into());
    }
    match line.char_indices().nth(CMDLINE_MAX) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

/// At most this many conflicts are remembered (each needs two writing processes).
const MAX_ALARMS: usize = 1_000;

/// The conflicts in force, between passes: each is announced once when it starts and once
/// when it ends.
#[derive(Debug, Default)]
pub struct Alarms {
    /// By (store, class, stream): the conflict as last seen, and when.
    active: BTreeMap<(String, String, String), (StreamConflict, Nanos)>,
    /// When the last check started.
    last_check: Option<std::time::Instant>,
}

/// Checks are at least this far apart, however often passes run (a check reads `/proc` and
/// scans the registry for temporary names: BENCHMARKS.md).
pub const CHECK_MIN_GAP: std::time::Duration = std::time::Duration::from_secs(5);

impl Alarms {
    /// Whether a check is due now (none for [`CHECK_MIN_GAP`]); if so, it starts now.
    pub fn check_due(&mut self) -> bool {
        let due = self.last_check.is_none_or(|t| t.elapsed() >= CHECK_MIN_GAP);
        if due {
            self.last_check = Some(std::time::Instant::now());
        }
        due
    }

    /// Takes this pass's findings at `now`: returns the conflicts that started, and those
    /// that ended — not seen for `hold(class)` (the class's quiet period: a writer that
    /// opens and closes per write is not seen by every snapshot, and must not make the
    /// alarm flap).
    pub fn update(
        &mut self,
        found: Vec<StreamConflict>,
        now: Nanos,
        hold: impl Fn(&str) -> Nanos,
    ) -> (Vec<StreamConflict>, Vec<StreamConflict>) {
        let mut started = Vec::new();
        let mut seen = HashSet::new();
        for mut c in found {
            let key = c.key();
            seen.insert(key.clone());
            let room = self.active.len() < MAX_ALARMS;
            match self.active.get_mut(&key) {
                Some((old, at)) => {
                    c.since = old.since;
                    *old = c;
                    *at = now;
                }
                None if room => {
                    c.since = now;
                    started.push(c.clone());
                    self.active.insert(key, (c, now));
                }
                None => {}
            }
        }
        let ended: Vec<_> = self
            .active
            .iter()
            .filter(|(k, (_, at))| !seen.contains(*k) && now.saturating_sub(*at) >= hold(&k.1))
            .map(|(k, _)| k.clone())
            .collect();
        let resolved = ended
            .into_iter()
            .filter_map(|k| self.active.remove(&k).map(|(c, _)| c))
            .collect();
        (started, resolved)
    }

    /// The conflicts in force.
    pub fn active(&self) -> Vec<StreamConflict> {
        self.active.values().map(|(c, _)| c.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict(stream: &str) -> StreamConflict {
        StreamConflict {
            store: "m".into(),
            class: "rec".into(),
            stream: stream.into(),
            seen: Seen::OpenForWriting,
            since: 0,
            writers: vec![],
        }
    }

    #[test]
    fn alarms_start_once_and_end_after_the_hold() {
        let mut a = Alarms::default();
        let (s, r) = a.update(vec![conflict("x")], 10, |_| 5);
        assert_eq!((s.len(), r.len()), (1, 0));
        let (s, r) = a.update(vec![conflict("x")], 20, |_| 5);
        assert_eq!((s.len(), r.len()), (0, 0), "no repetition");
        assert_eq!(a.active()[0].since, 10, "since the first sighting");
        let (s, r) = a.update(vec![], 22, |_| 5);
        assert_eq!((s.len(), r.len()), (0, 0), "held: not seen for 2 < 5");
        let (s, r) = a.update(vec![], 25, |_| 5);
        assert_eq!((s.len(), r.len()), (0, 1));
        assert!(a.active().is_empty());
    }

    #[test]
    fn a_forked_child_sharing_the_description_is_one_writer() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out.flv");
        // The shell opens out.flv on fd 9, then forks a child that inherits it; both hold
        // one description. A second, separate open of the same file is another writer.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exec 9>>\"$0\"; sleep 30 & exec 8>>\"$0\"; wait"])
            .arg(&f)
            .spawn()
            .unwrap();
        let md = || std::fs::metadata(&f).ok();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let ws = loop {
            if let Some(m) = md() {
                let devs = HashSet::from([m.dev()]);
                let s = Snapshot::take_watching(&devs);
                let ws: Vec<OpenForWrite> =
                    s.writers.into_iter().filter(|w| w.ino == m.ino()).collect();
                // sh: fds 8 and 9; sleep: fd 9 (8 is opened after the fork).
                if ws.len() == 3 {
                    break ws;
                }
            }
            assert!(std::time::Instant::now() < deadline, "writers never seen");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let g = writer_groups(ws.iter());
        let roots: HashSet<i32> = g.values().copied().collect();
        assert_eq!(roots.len(), 1, "one writer: {ws:?} {g:?}");
        for w in &ws {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(w.pid).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
        child.wait().unwrap();
    }
}
