//! Is a file in use? Every signal that can keep a file on disk lives here, and
//! [`InUse`] is the one view the executor, `explain`, `ls` and `plan` ask:
//!
//! - [`leases`]: leases taken by consumers (`mediaretain lease`), persisted in the registry;
//! - [`procfs`]: files held open by any process, and flock/POSIX/OFD locks (`/proc`); the
//!   deleter's kernel lease decides at the unlink itself, the snapshot names the holder;
//! - [`playlist`]: segments listed by a live HLS playlist, with the RFC 8216 grace, or named
//!   by a DASH MPD (read by mpd.rs), with the ISO/IEC 23009-1 §5.3.9.5.3 availability window;
//! - [`writers`]: a final name whose writer is still writing its temporary (`.part`) file;
//! - [`streams`]: not an in-use signal but an alarm from the same sources: two processes
//!   writing files of one stream (a class's `stream`) at once;
//! - a class's quiet period (from the file's mtime; the planner applies it too).
//!
//! A new signal (a webhook fact, a duplicate alarm) is one more module here, one more
//! reason in [`InUse::reasons`] and one more guard in the executor's table.

mod hls;
pub mod leases;
mod mpd;
pub mod playlist;
pub mod procfs;
pub mod streams;
pub mod writers;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub use procfs::{Snapshot, Use};

use crate::config::{Class, Config};
use crate::registry::{Registry, Result};
use crate::store::local::{LocalStore, Users};
use crate::units::{Nanos, fmt_span};
use leases::LeaseSet;

/// The in-use state the daemon keeps between passes (what live playlists listed), and the
/// questions every part of it asks.
#[derive(Default)]
pub struct InUse {
    /// What live playlists referenced, remembered for their grace period.
    playlists: Mutex<playlist::Memory>,
    /// A playlist arrived or changed through the watcher since playlists were last read:
    /// the next refresh reads them again, not up to a second later.
    playlists_dirty: AtomicBool,
    /// What media servers said about their streams (webhooks), by stream: the store, the
    /// playlists it names (matched when read, so a playlist written after `on_publish`
    /// counts too), live or stopped, and since when. Kept in memory: after a restart,
    /// playlists are judged by reading them.
    streams: Mutex<HashMap<String, StreamWord>>,
    /// The compiled leases, rebuilt only when they change (not per chunk, plan or
    /// explain).
    leases: leases::LeaseCache,
}

/// A media server's last word about one stream.
struct StreamWord {
    store: String,
    playlists: std::sync::Arc<globset::GlobSet>,
    live: bool,
    at: Nanos,
}

/// At most this many streams' words are remembered (stopped streams' first, the oldest
/// first; only authenticated servers are heard): each playlist read is matched against them.
const MAX_STREAM_STATES: usize = 1_000;

/// Every in-use signal at one instant, for `explain` and `ls`.
pub struct Signals {
    leases: LeaseSet,
    users: Snapshot,
    parts: HashMap<String, HashSet<PathBuf>>,
    now: Nanos,
}

impl Signals {
    /// The active leases.
    pub fn leases(&self) -> &LeaseSet {
        &self.leases
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding it leaves data that is still whole (every update is
    // one assignment); keep answering rather than take the daemon down.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl InUse {
    /// The active leases as of `now`, from the cache (read and compiled again only after
    /// a change or an expiry).
    pub fn lease_set(&self, reg: &Mutex<Registry>, now: Nanos) -> Result<LeaseSet> {
        self.leases.get(now, || lock(reg).leases(now))
    }

    /// A lease was taken, renewed or released (call it under the gate of the change).
    pub fn leases_changed(&self) {
        self.leases.changed();
    }

    /// How often the lease set was compiled, and how many leases are active.
    pub fn lease_stats(&self, now: Nanos) -> leases::LeaseStats {
        self.leases.stats(now)
    }

    /// A playlist arrived or changed (a watcher event): the next refresh reads playlists.
    pub fn playlist_changed(&self) {
        self.playlists_dirty.store(true, Ordering::SeqCst);
    }

    /// A media server said stream `key` (dialect, app, stream), whose live playlists in
    /// `store` match `playlists`, started (`live`) or stopped at `at`.
    pub fn stream_state(
        &self,
        key: String,
        store: &str,
        playlists: std::sync::Arc<globset::GlobSet>,
        live: bool,
        at: Nanos,
    ) {
        let mut s = lock(&self.streams);
        if s.len() >= MAX_STREAM_STATES
            && !s.contains_key(&key)
            && let Some(k) = s
                .iter()
                .min_by_key(|(_, v)| (v.live, v.at))
                .map(|(k, _)| k.clone())
        {
            s.remove(&k);
        }
        let word = StreamWord {
            store: store.to_string(),
            playlists,
            live,
            at,
        };
        s.insert(key, word);
        drop(s);
        self.playlist_changed();
    }

    /// What a media server last said about the stream of `playlist`: (live, since) — the
    /// latest word of any stream whose playlists it matches.
    pub fn stream_of(&self, store: &str, playlist: &Path) -> Option<(bool, Nanos)> {
        lock(&self.streams)
            .values()
            .filter(|w| w.store == store && w.playlists.is_match(playlist))
            .max_by_key(|w| w.at)
            .map(|w| (w.live, w.at))
    }

    /// A pass starts: playlists changed meanwhile are read again, up to a budget per pass.
    pub fn start_pass(&self) {
        lock(&self.playlists).start_pass();
    }

    /// Re-reads the media playlists of stores whose classes protect playlist references,
    /// if any of them changed since the last reading. `dirs` are directories (store, path)
    /// about to lose files: their playlists are found on disk too, so one the registry has
    /// not heard of yet (its event is still queued, or the start-up walk missed it) protects
    /// what it lists all the same.
    pub fn refresh_playlists(
        &self,
        reg: &Mutex<Registry>,
        config: &Config,
        stores: &[LocalStore],
        dirs: &[(&str, &Path)],
        now: Nanos,
    ) -> Result<()> {
        // Taken before the registry is read: a playlist registered after this is either
        // read now or marks the next refresh.
        let dirty = self.playlists_dirty.swap(false, Ordering::SeqCst);
        for store in stores {
            let protects = config
                .classes
                .iter()
                .any(|c| c.store == store.name() && c.protect_playlist_refs);
            if !protects {
                continue;
            }
            // HLS playlists beside the segments; DASH MPDs beside them or one level up
            // (SRS writes `[stream].mpd` beside the directory of its fragments).
            let mut on_disk: Vec<PathBuf> = dirs
                .iter()
                .filter(|(s, _)| *s == store.name())
                .flat_map(|(_, d)| {
                    let up = d.parent().map(|u| store.names_ending(u, ".mpd"));
                    let mut v = store.names_ending(d, ".m3u8");
                    v.extend(store.names_ending(d, ".mpd"));
                    v.extend(up.into_iter().flatten());
                    v
                })
                .collect();
            on_disk.sort();
            on_disk.dedup();
            if !dirty && lock(&self.playlists).fresh(store, &on_disk, now) {
                continue;
            }
            let mut lists = lock(reg).paths_ending_either(store.name(), ".m3u8", ".mpd")?;
            lists.extend(on_disk);
            lists.sort();
            lists.dedup();
            let said = |pl: &Path| self.stream_of(store.name(), pl);
            let first: Vec<&Path> = dirs
                .iter()
                .filter(|(s, _)| *s == store.name())
                .map(|(_, d)| *d)
                .collect();
            lock(&self.playlists).refresh_first(store, lists, &first, now, &said);
        }
        Ok(())
    }

    /// Why a playlist keeps `path` of `store` (of `class`) in use, as of the last refresh.
    pub fn playlist_reason(
        &self,
        class: &Class,
        store: &str,
        path: &Path,
        now: Nanos,
    ) -> Option<String> {
        if !class.protect_playlist_refs {
            return None;
        }
        lock(&self.playlists).reason(store, path, now)
    }

    /// Reads every signal now (playlists refreshed if stale); leases as of `lease_now`,
    /// the time they run on (see `Engine::lease_now`: a jumped wall clock never ends one).
    pub fn signals(
        &self,
        reg: &Mutex<Registry>,
        config: &Config,
        stores: &[LocalStore],
        now: Nanos,
        lease_now: Nanos,
    ) -> Result<Signals> {
        self.refresh_playlists(reg, config, stores, &[], now)?;
        let mut parts = HashMap::new();
        for st in stores {
            let p = writers::part_files(&mut lock(reg), config, st.name())?;
            parts.insert(st.name().to_string(), p);
        }
        let leases = self.lease_set(reg, lease_now)?;
        Ok(Signals {
            leases,
            users: Snapshot::take(),
            parts,
            now,
        })
    }

    /// Why `path` of `store` (of `class`, if it has one) is in use, in words (empty: it is
    /// not), by the signals read in `sig`. `complete`: its server announced it complete
    /// (a webhook), so a recent mtime does not mean it is still being written.
    pub fn reasons(
        &self,
        sig: &Signals,
        class: Option<&Class>,
        store: &LocalStore,
        path: &Path,
        complete: bool,
    ) -> Vec<String> {
        let name = store.name();
        let mut why = sig.leases.holders(name, path);
        if let Ok(md) = std::fs::symlink_metadata(store.root().join(path)) {
            why.extend(
                sig.users
                    .users(md.dev(), md.ino())
                    .iter()
                    .map(|u| u.to_string()),
            );
            let since = sig
                .now
                .saturating_sub(md.mtime() * 1_000_000_000 + md.mtime_nsec());
            if let Some(q) = class
                .map(|c| c.quiet_period)
                .filter(|q| !complete && since < q.as_nanos_i64())
            {
                why.push(format!(
                    "still being written (modified {} ago, within quiet_period {q})",
                    fmt_span(since)
                ));
            }
        }
        let Some(class) = class else {
            return why;
        };
        why.extend(self.playlist_reason(class, name, path, sig.now));
        if let Some(parts) = sig.parts.get(name) {
            let names = &mut |d, i| Users {
                who: sig.users.reason(d, i),
                blind_spot: None,
            };
            why.extend(writers::writer_reason(
                class, store, path, parts, sig.now, names,
            ));
        }
        why
    }
}

#[cfg(test)]
mod stream_state_tests {
    use super::*;

    /// At the cap, a stopped stream's word goes before any live one's, however old.
    #[test]
    fn live_streams_outlast_stopped_ones_at_the_cap() {
        let u = InUse::default();
        let set = |p: &str| {
            let mut b = globset::GlobSetBuilder::new();
            b.add(globset::Glob::new(p).unwrap());
            std::sync::Arc::new(b.build().unwrap())
        };
        u.stream_state("live".into(), "m", set("hls/live.m3u8"), true, 1);
        for i in 0..MAX_STREAM_STATES as i64 + 10 {
            let name = format!("hls/s{i}.m3u8");
            u.stream_state(format!("s{i}"), "m", set(&name), false, 2 + i);
        }
        assert_eq!(
            u.stream_of("m", Path::new("hls/live.m3u8")),
            Some((true, 1))
        );
        assert_eq!(lock(&u.streams).len(), MAX_STREAM_STATES);
    }
}
