//! Deletions that fail (a read-only or immutable directory, an I/O error): each failing
//! file backs off — tried again after 10 s, then 20 s, 40 s, … up to an hour — and is logged
//! when its episode starts (the first failure, or a different error), not on every pass;
//! later attempts go to debug and the audit. Kept in memory: a restart tries every file
//! once more (and logs it once more), which is what a restart after a fix should do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The first wait after a failure; it doubles with every failure in a row.
pub const FIRST: Duration = Duration::from_secs(10);
/// The longest wait.
pub const MAX: Duration = Duration::from_secs(3600);
/// At most this many failing files are remembered (beyond it, the oldest-due are forgotten:
/// they are tried, and logged, once more).
const MAX_FILES: usize = 100_000;

/// One failing file.
#[derive(Debug)]
struct File {
    /// Failures in a row.
    failures: u32,
    /// Not tried before this.
    next: Instant,
    /// The last error, to tell a new episode (a different error) from the same one.
    error: String,
}

/// Whether a failure starts an episode (worth an error line) or continues one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Episode {
    /// The first failure of this file, or a different error than the last one.
    Started,
    /// The same error again, after a backoff.
    Continues,
}

/// The failing files, by (store, path).
#[derive(Debug, Default)]
pub struct Failing {
    files: HashMap<(String, PathBuf), File>,
}

impl Failing {
    /// When `store:path` may be tried again and why it last failed, if it is backing off.
    pub fn waiting(&self, store: &str, path: &Path, now: Instant) -> Option<(Instant, &str)> {
        // A lookup without allocating the key would need a borrowed pair; the map is small
        // in the normal case (empty), so build it.
        self.files
            .get(&(store.to_string(), path.to_path_buf()))
            .filter(|f| f.next > now)
            .map(|f| (f.next, f.error.as_str()))
    }

    /// Forgets files whose wait ran out more than [`MAX`] ago: not planned since (gone, or
    /// no longer due), or tried and fine. One that fails again starts a new episode.
    pub fn prune(&mut self, now: Instant) {
        self.files.retain(|_, f| f.next + MAX > now);
    }

    /// Whether any file is backing off (the pass skips the lookup when none is).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Notes one more failure of `store:path` with `error` at `now`: whether it starts an
    /// episode, and how long the file now waits.
    pub fn failed(
        &mut self,
        store: &str,
        path: &Path,
        error: &str,
        now: Instant,
    ) -> (Episode, Duration) {
        if self.files.len() >= MAX_FILES {
            self.forget_oldest(now);
        }
        let f = self
            .files
            .entry((store.to_string(), path.to_path_buf()))
            .or_insert_with(|| File {
                failures: 0,
                next: now,
                error: String::new(),
            });
        let episode = if f.failures == 0 || f.error != error {
            Episode::Started
        } else {
            Episode::Continues
        };
        f.failures = f.failures.saturating_add(1);
        let wait = FIRST.saturating_mul(1 << (f.failures - 1).min(20)).min(MAX);
        f.next = now + wait;
        f.error = error.to_string();
        (episode, wait)
    }

    /// `store:path` went (deleted, or gone): it fails no more. Failures in a row it had.
    pub fn cleared(&mut self, store: &str, path: &Path) -> u32 {
        if self.files.is_empty() {
            return 0;
        }
        self.files
            .remove(&(store.to_string(), path.to_path_buf()))
            .map_or(0, |f| f.failures)
    }

    /// Forgets the files whose wait ran out longest ago (gone meanwhile, most of them).
    fn forget_oldest(&mut self, now: Instant) {
        let mut due: Vec<Instant> = self.files.values().map(|f| f.next).collect();
        due.sort();
        let cut = due[due.len() / 10];
        self.files.retain(|_, f| f.next > cut || f.next > now);
        if self.files.len() >= MAX_FILES {
            // All still waiting: drop the tenth due first.
            self.files.retain(|_, f| f.next > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_file_backs_off_exponentially_up_to_an_hour_and_logs_once_per_episode() {
        let mut f = Failing::default();
        let p = Path::new("rec/a.mp4");
        let t0 = Instant::now();
        let (e, w) = f.failed("media", p, "Permission denied", t0);
        assert_eq!((e, w), (Episode::Started, FIRST));
        assert!(f.waiting("media", p, t0 + FIRST / 2).is_some());
        assert!(f.waiting("media", p, t0 + FIRST).is_none());
        let mut now = t0 + FIRST;
        let mut waits = vec![];
        for _ in 0..12 {
            let (e, w) = f.failed("media", p, "Permission denied", now);
            assert_eq!(e, Episode::Continues);
            waits.push(w.as_secs());
            now += w;
        }
        assert_eq!(&waits[..4], &[20, 40, 80, 160]);
        assert_eq!(*waits.last().unwrap(), 3600);
        // Another error is another episode; a deletion ends it.
        assert_eq!(
            f.failed("media", p, "Read-only file system", now).0,
            Episode::Started
        );
        assert_eq!(f.cleared("media", p), 14);
        assert!(f.is_empty());
        // A file not planned again (gone meanwhile) is forgotten an hour after its wait.
        f.failed("media", p, "Permission denied", now);
        f.prune(now + FIRST + MAX / 2);
        assert!(!f.is_empty());
        f.prune(now + FIRST + MAX);
        assert!(f.is_empty());
    }
}
