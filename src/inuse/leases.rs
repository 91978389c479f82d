//! Leases: "I am using this" from any process (a thumbnailer, a packager), on a path or a
//! glob, persisted in the registry and expiring on their own. A [`LeaseSet`] is the active
//! leases as of one instant; the pass, a dry run, `plan` and `explain` all ask it.
//!
//! Compiling is the expensive part (a 1 KB alternation glob takes about a millisecond and
//! its regex keeps a lazy-DFA cache), so the compiled leases live in a [`LeaseCache`]:
//! rebuilt only when a lease is taken, renewed, released or expires, and a glob is compiled
//! once for as long as some lease has that pattern. A lease pattern is bounded
//! ([`check_pattern`]): at most [`MAX_PATTERN_BYTES`] bytes, [`MAX_BRANCHES`] alternatives
//! and [`MAX_NESTING`] nested `{}` groups, so the largest allowed lease set (1,000 per uid)
//! stays well under the unit's `MemoryMax` (see docs/leases.md for the figure).
//!
//! Non-root consumers' leases yield under disk pressure, root's never: see
//! [`Lease::yields`] and docs/leases.md.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::registry::Lease;
use crate::spell::unspell_path;
use crate::units::{Nanos, fmt_time};

/// Longest lease pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Most alternatives in one pattern, over all its `{…}` groups (`{a,b}{c,d}` has 4).
pub const MAX_BRANCHES: usize = 32;
/// Deepest nesting of `{…}` groups (`{a,{b,c}}` is 2).
pub const MAX_NESTING: usize = 2;

/// Why a lease pattern is refused: too big or too complex to match cheaply. The message
/// names the limit.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "lease pattern is {} bytes; the limit is {MAX_PATTERN_BYTES} bytes (max pattern bytes): lease a directory glob (hls/s1/**) instead of listing names",
            pattern.len()
        ));
    }
    let (mut depth, mut deepest, mut branches) = (0usize, 0usize, 0usize);
    let (mut escaped, mut in_class) = (false, false);
    for c in pattern.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            _ if in_class => {}
            '{' => {
                depth += 1;
                deepest = deepest.max(depth);
                branches += 1;
            }
            '}' => depth = depth.saturating_sub(1),
            ',' if depth > 0 => branches += 1,
            _ => {}
        }
    }
    if deepest > MAX_NESTING {
        return Err(format!(
            "lease pattern nests {{…}} groups {deepest} deep; the limit is {MAX_NESTING} (max alternation nesting)"
        ));
    }
    if branches > MAX_BRANCHES {
        return Err(format!(
            "lease pattern has {branches} alternatives; the limit is {MAX_BRANCHES} (max alternation branches): take one lease per group of names, or a broader glob"
        ));
    }
    Ok(())
}

impl Lease {
    /// Whether this lease gives way to disk pressure: taken by a socket client (a
    /// `socket_group` member), not by root or the daemon's own user (`daemon_uid`). A lease
    /// from before owners were recorded was root's.
    pub fn yields(&self, daemon_uid: u32) -> bool {
        self.owner.is_some_and(|u| u != 0 && u != daemon_uid)
    }

    /// "lease 7 by thumbs until … (uid 1001, on media:hls/**)".
    pub fn describe(&self) -> String {
        let uid = self.owner.unwrap_or(0);
        format!(
            "lease {} by {} until {} (uid {uid}, on {}:{})",
            self.id,
            self.holder,
            fmt_time(self.expires),
            self.store,
            self.pattern
        )
    }
}

/// A glob lease compiled: the literal text its matches start with, its index in the set,
/// its matcher.
type GlobLease = (Vec<u8>, usize, Option<Arc<globset::GlobSet>>);

/// One compiled lease set: every lease active when it was read, and their matchers.
struct Compiled {
    leases: Vec<Lease>,
    /// Per store: the glob leases, each with the literal text every path it matches starts
    /// with (a cheap test before the regex) and its matcher (None: it parses but does not
    /// compile; it matches its literal path only).
    globs: HashMap<String, Vec<GlobLease>>,
    /// Per store and exact path: the leases naming it literally (a glob's text too).
    exact: HashMap<(String, PathBuf), Vec<usize>>,
    /// The earliest expiry: the set is read again after it.
    next_expiry: Option<Nanos>,
    /// The cache generation it was read at.
    generation: u64,
}

/// Active leases as of one instant: a cheap view of the cached compiled set.
#[derive(Clone)]
pub struct LeaseSet {
    compiled: Arc<Compiled>,
    now: Nanos,
}

impl LeaseSet {
    /// Compiles `leases` (the active ones) without a cache (tests, one-off uses).
    pub fn new(leases: Vec<Lease>) -> LeaseSet {
        // Every lease given counts as active.
        let now = Nanos::MIN;
        let mut globs = HashMap::new();
        LeaseSet {
            compiled: Arc::new(compile(leases, &mut globs, 0, &AtomicU64::new(0))),
            now,
        }
    }

    /// The leases covering `path` of `store`, active at this set's instant.
    pub fn covering(&self, store: &str, path: &Path) -> Vec<&Lease> {
        let c = &*self.compiled;
        let mut hit: Vec<usize> = c
            .exact
            .get(&(store.to_string(), path.to_path_buf()))
            .cloned()
            .unwrap_or_default();
        if let Some(globs) = c.globs.get(store) {
            let bytes = path.as_os_str().as_bytes();
            for (prefix, i, m) in globs {
                if bytes.starts_with(prefix) && m.as_ref().is_some_and(|m| m.is_match(path)) {
                    hit.push(*i);
                }
            }
        }
        hit.sort_unstable();
        hit.dedup();
        hit.into_iter()
            .map(|i| &c.leases[i])
            .filter(|l| l.expires > self.now)
            .collect()
    }

    /// The leases covering `path` of `store`, in words ("lease 7 by thumbnailer until …
    /// (uid 1001, on media:hls/**)").
    pub fn holders(&self, store: &str, path: &Path) -> Vec<String> {
        let daemon_uid = rustix::process::geteuid().as_raw();
        self.covering(store, path)
            .into_iter()
            .map(|l| match l.yields(daemon_uid) {
                true => format!("{}, gives way to a full disk", l.describe()),
                false => l.describe(),
            })
            .collect()
    }

    /// The earliest expiry, if any lease is active.
    pub fn next_expiry(&self) -> Option<Nanos> {
        self.active().map(|l| l.expires).min()
    }

    /// The active leases.
    pub fn active(&self) -> impl Iterator<Item = &Lease> {
        self.compiled
            .leases
            .iter()
            .filter(move |l| l.expires > self.now)
    }
}

/// The literal text every path matched by glob `pattern` starts with (up to its first
/// special character).
fn literal_prefix(pattern: &str) -> Vec<u8> {
    let end = pattern
        .find(['*', '?', '[', '{', '\\'])
        .unwrap_or(pattern.len());
    pattern.as_bytes()[..end].to_vec()
}

/// Compiles `leases`, reusing and filling `globs` (pattern → matcher); counts the globs it
/// compiles in `compiled`.
fn compile(
    leases: Vec<Lease>,
    globs: &mut HashMap<String, Option<Arc<globset::GlobSet>>>,
    generation: u64,
    compiled: &AtomicU64,
) -> Compiled {
    let mut by_store: HashMap<String, Vec<GlobLease>> = HashMap::new();
    let mut exact: HashMap<(String, PathBuf), Vec<usize>> = HashMap::new();
    for (i, l) in leases.iter().enumerate() {
        exact
            .entry((l.store.clone(), unspell_path(&l.pattern).into_owned()))
            .or_default()
            .push(i);
        if !l.glob {
            continue;
        }
        // Never Glob::compile_matcher: it panics on a glob that parses but does not
        // compile. Such a lease matches its literal path only.
        let m = globs
            .entry(l.pattern.clone())
            .or_insert_with(|| {
                compiled.fetch_add(1, Ordering::Relaxed);
                crate::config::glob_set(std::slice::from_ref(&l.pattern))
                    .ok()
                    .map(Arc::new)
            })
            .clone();
        by_store
            .entry(l.store.clone())
            .or_default()
            .push((literal_prefix(&l.pattern), i, m));
    }
    // Patterns no lease has any more are dropped (their regex caches with them).
    globs.retain(|p, _| leases.iter().any(|l| l.glob && l.pattern == *p));
    Compiled {
        next_expiry: leases.iter().map(|l| l.expires).min(),
        leases,
        globs: by_store,
        exact,
        generation,
    }
}

/// The compiled lease set, kept between passes and rebuilt only when the leases change.
#[derive(Default)]
pub struct LeaseCache {
    /// Bumped by every change to the lease table (take, renew, release).
    generation: AtomicU64,
    state: Mutex<CacheState>,
    /// Times the lease set was read and rebuilt.
    rebuilds: AtomicU64,
    /// Globs compiled.
    globs_compiled: AtomicU64,
}

#[derive(Default)]
struct CacheState {
    current: Option<Arc<Compiled>>,
    globs: HashMap<String, Option<Arc<globset::GlobSet>>>,
}

/// How often the lease set was compiled (for `status --json`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct LeaseStats {
    /// Active leases.
    pub active: u64,
    /// Times the lease set was rebuilt (a lease taken, renewed, released or expired).
    pub rebuilds: u64,
    /// Globs compiled (each distinct pattern once while some lease has it).
    pub globs_compiled: u64,
}

impl LeaseCache {
    /// The lease table changed: the next [`LeaseCache::get`] reads it again. Called after
    /// the change is committed, under the same gate as the change.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The active leases as of `now`: the cached set, or, after a change or an expiry, the
    /// set `read` returns, compiled (only the globs not compiled yet).
    pub fn get<E>(
        &self,
        now: Nanos,
        read: impl FnOnce() -> Result<Vec<Lease>, E>,
    ) -> Result<LeaseSet, E> {
        // Taken before the read: a change landing during it makes the next call read again.
        let generation = self.generation.load(Ordering::SeqCst);
        {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = &st.current
                && c.generation == generation
                && c.next_expiry.is_none_or(|e| now < e)
            {
                return Ok(LeaseSet {
                    compiled: c.clone(),
                    now,
                });
            }
        }
        // Read without holding the cache's lock: it is a leaf lock (a caller holding the
        // registry's may ask for the counters), never held while the registry is taken.
        let leases = read()?;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(compile(
            leases,
            &mut st.globs,
            generation,
            &self.globs_compiled,
        ));
        st.current = Some(c.clone());
        Ok(LeaseSet { compiled: c, now })
    }

    /// How often it was rebuilt, and what it holds now.
    pub fn stats(&self, now: Nanos) -> LeaseStats {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        LeaseStats {
            active: st.current.as_ref().map_or(0, |c| {
                c.leases.iter().filter(|l| l.expires > now).count() as u64
            }),
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
            globs_compiled: self.globs_compiled.load(Ordering::Relaxed),
        }
    }
}

/// A lease that kept space on a volume, or gave way there (in `status`, the STUCK alarm).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseHeld {
    /// Its id.
    pub id: i64,
    /// Who holds it.
    pub holder: String,
    /// The uid that took it (0: root's, or from before owners were recorded).
    pub uid: u32,
    /// `STORE:PATTERN`.
    pub pattern: String,
    /// Files it kept (or that went although it covered them).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl LeaseHeld {
    /// The lease, with nothing counted yet.
    pub fn of(l: &Lease) -> LeaseHeld {
        LeaseHeld {
            id: l.id,
            holder: l.holder.clone(),
            uid: l.owner.unwrap_or(0),
            pattern: format!("{}:{}", l.store, l.pattern),
            files: 0,
            bytes: 0,
        }
    }
}

impl std::fmt::Display for LeaseHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lease {} by {} (uid {}) on {}: {} ({})",
            self.id,
            self.holder,
            self.uid,
            self.pattern,
            crate::units::plural(self.files, "file"),
            crate::units::ByteSize(self.bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_capped_by_size_branches_and_nesting() {
        assert!(check_pattern("hls/s1/**").is_ok());
        assert!(check_pattern("hls/{a,b,c}/{x,y}/*.ts").is_ok());
        let long = format!("hls/{}", "a".repeat(MAX_PATTERN_BYTES));
        assert!(
            check_pattern(&long)
                .unwrap_err()
                .contains("max pattern bytes")
        );
        let many = format!(
            "hls/{{{}}}",
            (0..=MAX_BRANCHES)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(
            check_pattern(&many)
                .unwrap_err()
                .contains("max alternation branches")
        );
        assert!(
            check_pattern("{a,{b,{c,d}}}")
                .unwrap_err()
                .contains("nesting")
        );
        // Inside a class or escaped, braces and commas are literal.
        assert!(check_pattern(r"x/[{,,,]\{\,").is_ok());
    }

    fn lease(id: i64, pattern: &str, expires: Nanos) -> Lease {
        Lease {
            id,
            store: "media".into(),
            pattern: pattern.into(),
            glob: pattern.contains(['*', '{', '?', '[']),
            holder: "t".into(),
            created: 0,
            expires,
            owner: Some(1001),
        }
    }

    #[test]
    fn cache_compiles_once_per_change_and_filters_expired() {
        let cache = LeaseCache::default();
        let mut table = vec![lease(1, "hls/s1/**", 100), lease(2, "rec/a.mp4", 50)];
        let read = |t: &Vec<Lease>| Ok::<_, ()>(t.clone());
        for now in [1, 2, 3] {
            let s = cache.get(now, || read(&table)).unwrap();
            assert_eq!(s.covering("media", Path::new("hls/s1/x/0.ts")).len(), 1);
            assert_eq!(s.covering("media", Path::new("rec/a.mp4")).len(), 1);
            assert!(s.covering("other", Path::new("rec/a.mp4")).is_empty());
        }
        assert_eq!(cache.stats(3).rebuilds, 1);
        assert_eq!(cache.stats(3).globs_compiled, 1);
        // An expiry rebuilds (the registry drops it); the glob is not compiled again.
        table.retain(|l| l.expires > 60);
        let s = cache.get(60, || read(&table)).unwrap();
        assert!(s.covering("media", Path::new("rec/a.mp4")).is_empty());
        assert_eq!(cache.stats(60).rebuilds, 2);
        assert_eq!(cache.stats(60).globs_compiled, 1);
        // A change rebuilds.
        table.push(lease(3, "hls/{a,b}/*.ts", 100));
        cache.changed();
        let s = cache.get(61, || read(&table)).unwrap();
        assert_eq!(s.covering("media", Path::new("hls/b/1.ts")).len(), 1);
        assert!(s.covering("media", Path::new("hls/c/1.ts")).is_empty());
        assert_eq!(cache.stats(61).globs_compiled, 2);
    }

    #[test]
    fn root_and_daemon_leases_do_not_yield() {
        let mut l = lease(1, "x", 1);
        assert!(l.yields(0));
        assert!(!l.yields(1001));
        l.owner = Some(0);
        assert!(!l.yields(0));
        l.owner = None;
        assert!(!l.yields(0));
    }
}
