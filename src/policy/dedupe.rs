//! Identical copies (issue 16), pure: which hashed files of a dedupe class are copies of one
//! another, which copy stays, and which go as duplicates.
//!
//! - Files are identical when their size and BLAKE3 hash agree.
//! - Hard links (the same device and inode under several names, or an inode whose link
//!   count was above 1 when it was hashed) are one file, not copies: deleting one name frees
//!   nothing. Such a file may be the one kept, but it is never deleted as a duplicate.
//! - The kept copy is the oldest (`keep-oldest`) or the newest (`keep-newest`) by mtime,
//!   ties by path. A copy goes as a duplicate only while the kept one stays: when the rules
//!   delete the preferred copy anyway (its keep_for ran out, a budget), the next copy that
//!   the rules keep is kept instead, and if none is, no copy goes for being a duplicate —
//!   every copy goes (or stays) by its own rules. So dedupe never removes the last copy.
//! - A copy goes only in favour of a kept copy at least as trusted (issue 23): the kept
//!   copy is owned by the same uid as the duplicate or by root, is not writable by others
//!   unless the duplicate is too, and every directory from the store root down to it is
//!   owned by one of those uids and writable by no group and no other user. A copy's path
//!   and mtime are claims anyone who can write a directory of the store can make; its
//!   [`Custody`] (looked at by descriptor by the engine) is what decides. A copy the kept
//!   one may not stand for stays, and the group says why ([`Decided::held`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ClassPlanner, Rule, Verdict};
use crate::config::{Class, Dedupe};
use crate::registry::{Entry, Hashed};
use crate::units::{ByteSize, Nanos};

/// One file of a group: an inode and its names in the class.
#[derive(Debug, Clone, PartialEq)]
pub struct Copy {
    /// Entry ids of its names.
    pub ids: Vec<i64>,
    /// Its names (relative paths).
    pub paths: Vec<PathBuf>,
    /// Modification time.
    pub mtime: Nanos,
    /// Inode.
    pub ino: u64,
    /// The inode's change time when it was hashed.
    pub ctime: Nanos,
    /// Hard-linked: more than one name. Kept if preferred, never deleted as a duplicate.
    pub linked: bool,
    /// Pinned by an operator (any of its names).
    pub retained: bool,
    /// Who can change it or replace it under its first name.
    pub custody: Custody,
}

/// A uid, with its user name when it has one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    /// The uid.
    pub uid: u32,
    /// Its name in the user database.
    pub name: Option<String>,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "uid {} ({n})", self.uid),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// One directory on a copy's way from the store root: who owns it and its mode.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DirCustody {
    /// Relative to the store root ("" is the root).
    pub path: PathBuf,
    /// Its owner.
    pub owner: Owner,
    /// Its group id.
    pub gid: u32,
    /// Its permission bits.
    pub mode: u32,
}

/// Who can change a copy's content or put another file under its name: the file's owner
/// and mode, and each directory from the store root down to it (as the engine found them
/// by descriptor, no link followed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Custody {
    /// The file's owner.
    pub owner: Owner,
    /// The file's permission bits.
    pub mode: u32,
    /// The directories from the store root down to the file's, root first.
    pub dirs: Vec<DirCustody>,
    /// Why it could not be looked at (then no copy goes in its favour).
    pub unknown: Option<String>,
}

/// Group or other write permission.
const OTHERS_WRITE: u32 = 0o022;

/// Whether `kept` (at `kept_path`) may stand for `gone`, the copy deleted in its favour:
/// `Err` says why not ("kept copy rec/upload/clip.flv is owned by uid 999 (mr-attacker),
/// not by 0/1000").
pub fn stands_for(kept_path: &Path, kept: &Custody, gone: &Custody) -> Result<(), String> {
    let kp = crate::spell::show(kept_path);
    if let Some(why) = &kept.unknown {
        return Err(format!("kept copy {kp} cannot be checked: {why}"));
    }
    if let Some(why) = &gone.unknown {
        return Err(format!("cannot be checked: {why}"));
    }
    let trusted = |uid: u32| uid == 0 || uid == gone.owner.uid;
    let allowed = if gone.owner.uid == 0 {
        "root (0)".to_string()
    } else {
        format!("0/{}", gone.owner.uid)
    };
    if !trusted(kept.owner.uid) {
        return Err(format!(
            "kept copy {kp} is owned by {}, not by {allowed}",
            kept.owner
        ));
    }
    if kept.mode & OTHERS_WRITE & !gone.mode != 0 {
        return Err(format!(
            "kept copy {kp} is writable by its group or by others (mode {:04o}); this copy is not",
            kept.mode & 0o7777
        ));
    }
    for d in &kept.dirs {
        let dp = if d.path.as_os_str().is_empty() {
            "the store root".to_string()
        } else {
            format!("directory {}", crate::spell::show(&d.path))
        };
        if !trusted(d.owner.uid) {
            return Err(format!(
                "{dp} of kept copy {kp} is owned by {}, not by {allowed}: that user could replace the kept copy",
                d.owner
            ));
        }
        if d.mode & 0o002 != 0 {
            return Err(format!(
                "{dp} of kept copy {kp} is writable by every user (mode {:04o})",
                d.mode & 0o7777
            ));
        }
        if d.mode & 0o020 != 0 {
            return Err(format!(
                "{dp} of kept copy {kp} is writable by group {} (mode {:04o})",
                d.gid,
                d.mode & 0o7777
            ));
        }
    }
    Ok(())
}

/// Identical files of one class: same size, same hash; copies in the order of preference
/// (the first is kept unless the rules delete it anyway).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Bytes of each copy.
    pub size: u64,
    /// Their BLAKE3 hash.
    pub blake3: [u8; 32],
    /// The copies, preferred first.
    pub copies: Vec<Copy>,
}

impl Group {
    /// The hash in hex.
    pub fn hex(&self) -> String {
        hex(&self.blake3)
    }
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a duplicate duplicates: the kept copy (the version that was hashed) and the hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DupeOf {
    /// The kept copy.
    #[serde(with = "crate::spell::serde_path")]
    pub kept: PathBuf,
    /// Its inode, size and mtime when hashed: the executor refuses when it changed or went.
    pub kept_ino: u64,
    /// Its size.
    pub kept_size: u64,
    /// Its mtime.
    #[serde(with = "crate::units::rfc3339")]
    pub kept_mtime: Nanos,
    /// Its change time when hashed (the executor compares it: a rewrite in place with the
    /// mtime restored still moves it).
    #[serde(skip)]
    pub kept_ctime: Nanos,
    /// The duplicate's own change time when it was hashed, likewise.
    #[serde(skip)]
    pub ctime: Nanos,
    /// The BLAKE3 hash both have (hex).
    pub blake3: String,
    /// The kept copy's entry ids (a duplicate never goes in a plan that deletes them).
    #[serde(skip)]
    pub kept_ids: Vec<i64>,
}

impl DupeOf {
    /// "duplicate of rec/a.flv (same 734 MiB, blake3 3f2a9c1e…)".
    pub fn reason(&self) -> String {
        format!(
            "duplicate of {} (same {}, blake3 {}…)",
            crate::spell::show(&self.kept),
            ByteSize(self.kept_size),
            &self.blake3[..self.blake3.len().min(16)]
        )
    }
}

/// The groups of identical files among `hashed` (entries of `class`, as the registry
/// returns them: by size and hash), copies in `class.dedupe`'s order of preference;
/// `custody_of` looks at each copy (its first name) of a group.
pub fn groups(
    class: &Class,
    hashed: Vec<Hashed>,
    mut custody_of: impl FnMut(&Path) -> Custody,
) -> Vec<Group> {
    let Some(mode) = class.dedupe else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < hashed.len() {
        let (size, hash) = (hashed[i].entry.size, hashed[i].blake3);
        let mut j = i;
        let mut by_inode: HashMap<(u64, u64), Copy> = HashMap::new();
        while j < hashed.len() && hashed[j].entry.size == size && hashed[j].blake3 == hash {
            let h = &hashed[j];
            let c = by_inode
                .entry((h.dev, h.entry.ino))
                .or_insert_with(|| Copy {
                    ids: Vec::new(),
                    paths: Vec::new(),
                    mtime: h.entry.mtime,
                    ino: h.entry.ino,
                    ctime: h.ctime,
                    linked: false,
                    retained: false,
                    custody: Custody::default(),
                });
            c.ids.push(h.entry.id);
            c.paths.push(h.entry.path.clone());
            c.linked |= h.nlink > 1 || c.ids.len() > 1;
            c.retained |= h.entry.retained;
            j += 1;
        }
        i = j;
        if by_inode.len() < 2 {
            continue;
        }
        let mut copies: Vec<Copy> = by_inode.into_values().collect();
        for c in &mut copies {
            c.paths.sort();
            c.custody = custody_of(&c.paths[0]);
        }
        copies.sort_by(|a, b| {
            let t = match mode {
                Dedupe::KeepOldest => a.mtime.cmp(&b.mtime),
                Dedupe::KeepNewest => b.mtime.cmp(&a.mtime),
            };
            t.then_with(|| a.paths.cmp(&b.paths))
        });
        out.push(Group {
            size,
            blake3: hash,
            copies,
        });
    }
    out
}

/// The duplicates to delete when copy `kept[g]` of each group `g` stays (None: the group
/// deletes nothing): entry id → what it duplicates; and the copies that stay because the
/// kept one may not stand for them, with why.
fn victims(
    groups: &[Group],
    kept: &[Option<usize>],
) -> (HashMap<i64, DupeOf>, HashMap<i64, String>) {
    let mut out = HashMap::new();
    let mut held = HashMap::new();
    for (g, k) in groups.iter().zip(kept) {
        let Some(k) = *k else { continue };
        let keep = &g.copies[k];
        let of = DupeOf {
            kept: keep.paths[0].clone(),
            kept_ino: keep.ino,
            kept_size: g.size,
            kept_mtime: keep.mtime,
            kept_ctime: keep.ctime,
            ctime: 0,
            blake3: g.hex(),
            kept_ids: keep.ids.clone(),
        };
        for (i, c) in g.copies.iter().enumerate() {
            if i != k && !c.linked {
                if let Err(why) = stands_for(&keep.paths[0], &keep.custody, &c.custody) {
                    for id in &c.ids {
                        held.insert(*id, why.clone());
                    }
                    continue;
                }
                let of = DupeOf {
                    ctime: c.ctime,
                    ..of.clone()
                };
                out.insert(c.ids[0], of);
            }
        }
    }
    (out, held)
}

/// What [`decide_class`] decided besides the verdicts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decided {
    /// Copies not deleted as duplicates because the kept copy may not stand for them
    /// (entry id → why; see [`stands_for`]).
    pub held: HashMap<i64, String>,
}

/// Decides every entry of `class` (fed newest first by `entries_of`, as for the planner)
/// with the duplicates of `groups` as one more rule, calling `on` with each entry, its
/// verdict and, for a duplicate, what it duplicates. A kept copy the rules delete anyway
/// hands its role to the next copy the rules keep (a few rounds at most; each is one more
/// walk of the class, and only classes with identical files take any).
pub fn decide_class<E>(
    class: &Class,
    now: Nanos,
    groups: &[Group],
    entries_of: impl FnMut(&mut dyn FnMut(Entry)) -> Result<(), E>,
    on: impl FnMut(Entry, Verdict, Option<&DupeOf>),
) -> Result<Decided, E> {
    decide_class_held(class, now, None, groups, entries_of, on)
}

/// [`decide_class`] with the time rules held for `hold` (why, in words), as while the wall
/// clock is found jumped (see [`ClassPlanner::holding_time`]).
pub fn decide_class_held<E>(
    class: &Class,
    now: Nanos,
    hold: Option<&str>,
    groups: &[Group],
    mut entries_of: impl FnMut(&mut dyn FnMut(Entry)) -> Result<(), E>,
    mut on: impl FnMut(Entry, Verdict, Option<&DupeOf>),
) -> Result<Decided, E> {
    const ROUNDS: usize = 4;
    let mut kept: Vec<Option<usize>> = groups.iter().map(|_| Some(0)).collect();
    if !groups.is_empty() {
        for round in 0..=ROUNDS {
            let (dupes, _) = victims(groups, &kept);
            // Entries the rules delete for another reason than being a duplicate.
            let mut gone: HashSet<i64> = HashSet::new();
            let mut planner = ClassPlanner::new(class, now)
                .with_dupes(&dupes)
                .holding_time(hold);
            entries_of(&mut |e: Entry| {
                if let Verdict::Delete { rule, .. } = planner.decide(&e)
                    && rule != Rule::Duplicate
                {
                    gone.insert(e.id);
                }
            })?;
            let mut changed = false;
            for (g, k) in groups.iter().zip(kept.iter_mut()) {
                let Some(cur) = *k else { continue };
                if !g.copies[cur].ids.iter().any(|id| gone.contains(id)) {
                    continue;
                }
                changed = true;
                // The next copy in order of preference that the rules keep; after the last
                // round, none: this group deletes nothing.
                *k = (round < ROUNDS)
                    .then(|| {
                        (0..g.copies.len()).find(|&i| {
                            i > cur && !g.copies[i].ids.iter().any(|id| gone.contains(id))
                        })
                    })
                    .flatten();
            }
            if !changed {
                break;
            }
        }
    }
    let (dupes, held) = victims(groups, &kept);
    let mut planner = ClassPlanner::new(class, now)
        .with_dupes(&dupes)
        .holding_time(hold);
    entries_of(&mut |e: Entry| {
        let v = planner.decide(&e);
        let of = match &v {
            Verdict::Delete {
                rule: Rule::Duplicate,
                ..
            } => dupes.get(&e.id),
            _ => None,
        };
        on(e, v, of);
    })?;
    Ok(Decided { held })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Lifecycle;

    const S: i64 = 1_000_000_000;

    fn class(mode: Dedupe) -> Class {
        Class {
            dedupe: Some(mode),
            ..super::super::tests::class(Lifecycle::Recording)
        }
    }

    fn hashed(id: i64, path: &str, mtime: Nanos, ino: u64, hash: u8) -> Hashed {
        Hashed {
            entry: Entry {
                id,
                ino,
                ..super::super::tests::entry(path, 10, mtime)
            },
            dev: 1,
            nlink: 1,
            ctime: mtime,
            blake3: [hash; 32],
        }
    }

    fn run(c: &Class, now: Nanos, hs: Vec<Hashed>) -> Vec<(String, Option<String>)> {
        let mut entries: Vec<Entry> = hs.iter().map(|h| h.entry.clone()).collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.mtime));
        let gs = groups(c, hs, |_| Custody::default());
        let mut out = Vec::new();
        decide_class::<()>(
            c,
            now,
            &gs,
            |sink| {
                entries.iter().cloned().for_each(&mut *sink);
                Ok(())
            },
            |e, v, of| {
                let what = match v {
                    Verdict::Delete { rule, .. } => Some(format!(
                        "{rule}{}",
                        of.map(|o| format!(" of {}", o.kept.display()))
                            .unwrap_or_default()
                    )),
                    Verdict::Keep { .. } => None,
                };
                out.push((e.path.display().to_string(), what));
            },
        )
        .unwrap();
        out.sort();
        out
    }

    #[test]
    fn keeps_the_oldest_or_newest_and_skips_hard_links_and_other_content() {
        let hs = || {
            let mut l = hashed(4, "d/link", 30 * S, 3, 7);
            l.nlink = 2;
            vec![
                hashed(1, "a", 10 * S, 1, 7),
                hashed(2, "b/a", 20 * S, 2, 7),
                l,
                hashed(5, "other", 5 * S, 5, 9),
            ]
        };
        let old = run(&class(Dedupe::KeepOldest), 100 * S, hs());
        assert_eq!(
            old,
            vec![
                ("a".into(), None),
                ("b/a".into(), Some("duplicate of a".into())),
                ("d/link".into(), None),
                ("other".into(), None),
            ]
        );
        let new = run(&class(Dedupe::KeepNewest), 100 * S, hs());
        // The newest is hard-linked: it is kept (it may be), and both others go.
        assert_eq!(
            new,
            vec![
                ("a".into(), Some("duplicate of d/link".into())),
                ("b/a".into(), Some("duplicate of d/link".into())),
                ("d/link".into(), None),
                ("other".into(), None),
            ]
        );
    }

    #[test]
    fn a_kept_copy_going_by_its_own_rule_hands_over_and_the_last_copy_stays() {
        let mut c = class(Dedupe::KeepOldest);
        c.keep_for = Some("50s".parse().unwrap());
        // a is past keep_for: it goes by keep_for, so b is kept and c goes as its duplicate.
        let r = run(
            &c,
            100 * S,
            vec![
                hashed(1, "a", 10 * S, 1, 7),
                hashed(2, "b", 60 * S, 2, 7),
                hashed(3, "c", 70 * S, 3, 7),
            ],
        );
        assert_eq!(
            r,
            vec![
                ("a".into(), Some("keep_for".into())),
                ("b".into(), None),
                ("c".into(), Some("duplicate of b".into())),
            ]
        );
        // Every copy past keep_for: each goes by keep_for, none as a duplicate.
        let r = run(
            &c,
            1000 * S,
            vec![hashed(1, "a", 10 * S, 1, 7), hashed(2, "b", 60 * S, 2, 7)],
        );
        assert_eq!(
            r,
            vec![
                ("a".into(), Some("keep_for".into())),
                ("b".into(), Some("keep_for".into())),
            ]
        );
    }

    #[test]
    fn a_kept_copy_stands_only_for_copies_it_is_at_least_as_trusted_as() {
        let owner = |uid| Owner { uid, name: None };
        let dir = |path: &str, uid, mode| DirCustody {
            path: path.into(),
            owner: owner(uid),
            gid: uid,
            mode,
        };
        let at = |uid, dirs: Vec<DirCustody>| Custody {
            owner: owner(uid),
            mode: 0o644,
            dirs,
            unknown: None,
        };
        let safe = vec![dir("", 0, 0o755), dir("rec", 1000, 0o755)];
        let me = at(1000, safe.clone());
        let kp = Path::new("rec/up/clip.flv");
        assert_eq!(stands_for(kp, &at(1000, safe.clone()), &me), Ok(()));
        assert_eq!(stands_for(kp, &at(0, safe.clone()), &me), Ok(()));
        assert_eq!(
            stands_for(kp, &at(999, safe.clone()), &me),
            Err("kept copy rec/up/clip.flv is owned by uid 999, not by 0/1000".into())
        );
        // Root's copy does not stand for root's file when a user owns a directory above it.
        let root_file = at(0, safe.clone());
        assert!(
            stands_for(kp, &at(0, safe.clone()), &root_file)
                .unwrap_err()
                .contains("directory rec of kept copy rec/up/clip.flv is owned by uid 1000, not by root (0)")
        );
        for (mode, word) in [(0o775, "group 1000"), (0o1777, "every user")] {
            let mut dirs = safe.clone();
            dirs.push(dir("rec/up", 1000, mode));
            let why = stands_for(kp, &at(1000, dirs), &me).unwrap_err();
            assert!(why.contains(word), "{why}");
        }
        let mut open = at(1000, safe.clone());
        open.mode = 0o666;
        assert!(stands_for(kp, &open, &me).is_err());
        let mut both = me.clone();
        both.mode = 0o666;
        assert_eq!(stands_for(kp, &open, &both), Ok(()));
        let unknown = Custody {
            unknown: Some("ELOOP".into()),
            ..Default::default()
        };
        assert!(stands_for(kp, &unknown, &me).is_err());

        // In a group: the planted oldest copy is preferred but deletes nothing; hard links
        // and the rest of the plan are as before.
        let c = class(Dedupe::KeepOldest);
        let hs = vec![
            hashed(1, "rec/cam/a", 50 * S, 1, 7),
            hashed(2, "rec/up/clip", 10 * S, 2, 7),
        ];
        let entries: Vec<Entry> = hs.iter().map(|h| h.entry.clone()).collect();
        let gs = groups(&c, hs, |p| {
            if p.starts_with("rec/up") {
                at(999, safe.clone())
            } else {
                at(1000, safe.clone())
            }
        });
        let mut deleted = Vec::new();
        let decided = decide_class::<()>(
            &c,
            100 * S,
            &gs,
            |sink| {
                entries.iter().cloned().for_each(&mut *sink);
                Ok(())
            },
            |e, v, _| {
                if matches!(v, Verdict::Delete { .. }) {
                    deleted.push(e.id);
                }
            },
        )
        .unwrap();
        assert!(deleted.is_empty(), "{deleted:?}");
        assert!(decided.held[&1].contains("owned by uid 999"), "{decided:?}");
    }

    #[test]
    fn budgets_never_take_the_kept_copy_with_its_duplicates() {
        // max_count 1, keep-oldest: the budget would delete the oldest (the preferred kept
        // copy); the newest is kept instead and the older copy goes.
        let mut c = class(Dedupe::KeepOldest);
        c.max_count = Some(1);
        let r = run(
            &c,
            100 * S,
            vec![hashed(1, "a", 10 * S, 1, 7), hashed(2, "b", 20 * S, 2, 7)],
        );
        let kept: Vec<_> = r.iter().filter(|(_, v)| v.is_none()).collect();
        assert_eq!(kept.len(), 1, "{r:?}");
    }
}
