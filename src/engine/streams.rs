//! Two writers on one stream (see [`crate::inuse::streams`]): checked after each of the
//! daemon's local passes, announced once when a conflict starts (priority err) and once
//! when it ends (info), shown in `status` and as the gauge
//! `mediaretain_stream_writer_conflicts`. Nothing is deleted for it.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::inuse::streams::{self, StreamConflict};

impl Engine {
    /// Looks for two writers on one stream now (classes with `stream` only; nothing is read
    /// when no class has one; at most every [`streams::CHECK_MIN_GAP`]), and announces what
    /// started and what ended.
    pub fn check_stream_writers(&self) -> Result<()> {
        if !self
            .stream_alarms
            .lock()
            .expect("stream alarms lock")
            .check_due()
        {
            return Ok(());
        }
        let rt = self.runtime();
        let now = self.now();
        let started = std::time::Instant::now();
        let watched: Vec<&LocalStore> = rt
            .stores
            .iter()
            .filter(|s| {
                rt.config
                    .classes
                    .iter()
                    .any(|c| c.store == s.name() && c.stream.is_some())
            })
            .collect();
        let found = if watched.is_empty() {
            Vec::new()
        } else {
            let devs: HashSet<u64> = watched
                .iter()
                .filter_map(|s| std::fs::metadata(s.root()).ok().map(|m| m.dev()))
                .collect();
            let mut parts = HashMap::new();
            for st in &watched {
                let mut sufs: Vec<&String> = rt
                    .config
                    .classes
                    .iter()
                    .filter(|c| c.store == st.name() && c.stream.is_some())
                    .flat_map(|c| &c.part_suffixes)
                    .collect();
                sufs.sort();
                sufs.dedup();
                let mut list = Vec::new();
                for suf in sufs {
                    list.extend(self.reg().paths_ending(st.name(), suf)?);
                }
                parts.insert(st.name().to_string(), list);
            }
            let snap = crate::inuse::Snapshot::take_watching(&devs);
            let found = streams::detect(&rt.config, &rt.classifier, &rt.stores, &snap, &parts, now);
            debug!(
                micros = started.elapsed().as_micros() as u64,
                snapshot_micros = snap.micros,
                open_for_writing = snap.writers.len(),
                conflicts = found.len(),
                "looked for two writers on one stream"
            );
            found
        };
        let hold = |class: &str| {
            rt.config
                .class(class)
                .map(|c| c.quiet_period.as_nanos_i64())
                .unwrap_or(0)
        };
        let (started, resolved) = self
            .stream_alarms
            .lock()
            .expect("stream alarms lock")
            .update(found, now, hold);
        for c in &started {
            let pids = c
                .pids()
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            error!(action = "stream_writers", store = %c.store, class = %c.class, stream = %c.stream, pids = %pids, "two writers on stream {:?} (class {}, store {}): {}; {}. Nothing is deleted for it: stop one of the recorders", c.stream, c.class, c.store, c.describe(), seen_words(c));
        }
        for c in &resolved {
            info!(action = "stream_writers_resolved", store = %c.store, class = %c.class, stream = %c.stream, "resolved: stream {:?} (class {}, store {}) has one writer again (two since {})", c.stream, c.class, c.store, fmt_time(c.since));
        }
        Ok(())
    }

    /// The conflicts in force (for `status` and the metrics).
    pub fn stream_conflicts(&self) -> Vec<StreamConflict> {
        self.stream_alarms
            .lock()
            .expect("stream alarms lock")
            .active()
    }
}

fn seen_words(c: &StreamConflict) -> &'static str {
    match c.seen {
        streams::Seen::OpenForWriting => "each holds its file open for writing",
        streams::Seen::FreshParts => {
            "their temporary files are written at the same time (within the class's quiet_period)"
        }
    }
}
