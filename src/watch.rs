//! Real-time changes: inotify (via `notify`) → a bounded channel → batched registry writes.
//!
//! The channel never blocks the notify thread: when it is full, or when the kernel queue
//! overflowed, a rescan is requested instead — a missed event costs a scan, never a silent
//! miss.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, warn};

/// Capacity of the event channel.
pub const CHANNEL: usize = 16_384;

/// A changed path: (store name, path relative to its root).
pub type Change = (Arc<str>, PathBuf);

/// Watches the roots of local stores. Dropping it stops every watch.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
}

/// Shared between the watch thread and the daemon.
#[derive(Default)]
pub struct Signals {
    /// Events were lost; a full rescan is needed.
    pub overflow: AtomicBool,
    /// Wakes the daemon when `overflow` is set.
    pub wake: Notify,
}

impl Watch {
    /// Starts watching `roots` (store name, root). Changes go to `tx`.
    pub fn start(
        roots: &[(String, PathBuf)],
        tx: mpsc::Sender<Change>,
        signals: Arc<Signals>,
    ) -> notify::Result<Watch> {
        let map: Vec<(Arc<str>, PathBuf)> = roots
            .iter()
            .map(|(n, r)| (Arc::from(n.as_str()), r.clone()))
            .collect();
        let sig = signals.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let lost = || {
                sig.overflow.store(true, Ordering::SeqCst);
                sig.wake.notify_one();
            };
            let ev = match res {
                Ok(ev) => ev,
                Err(e) => {
                    warn!(error = %e, "watch error; scheduling a rescan");
                    return lost();
                }
            };
            if ev.need_rescan() {
                return lost();
            }
            if matches!(ev.kind, EventKind::Access(_)) {
                return;
            }
            for p in ev.paths {
                let Some((store, rel)) = relative(&map, &p) else {
                    continue;
                };
                if tx.try_send((store, rel)).is_err() {
                    return lost();
                }
            }
        };
        // Never follow symlinks: a link to / inside a store must not make us watch the disk.
        let cfg = notify::Config::default().with_follow_symlinks(false);
        let mut watcher = notify::RecommendedWatcher::new(handler, cfg)?;
        for (name, root) in roots {
            watcher.watch(root, RecursiveMode::Recursive)?;
            debug!(store = %name, root = %root.display(), "watching");
        }
        Ok(Watch { _watcher: watcher })
    }
}

fn relative(map: &[(Arc<str>, PathBuf)], p: &Path) -> Option<Change> {
    map.iter()
        .filter_map(|(s, root)| {
            p.strip_prefix(root)
                .ok()
                .map(|rel| (s.clone(), rel.to_path_buf()))
        })
        .filter(|(_, rel)| !rel.as_os_str().is_empty())
        // Files on their way out through our trash directory are not the store's.
        .filter(|(_, rel)| !rel.starts_with(crate::store::local::TRASH_DIR))
        .max_by_key(|(_, rel)| std::cmp::Reverse(rel.components().count()))
}
