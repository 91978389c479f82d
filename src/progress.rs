//! How far long one-shot work has come (a scan of 100k files, a pass, a fetch): the engine
//! counts, the CLI shows it with `indicatif` when stderr is a terminal (see
//! [`crate::cli`]). Counting costs one atomic add per batch or file.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What is being done, and how much of it is done.
#[derive(Debug, Default)]
pub struct Progress {
    phase: Mutex<Phase>,
    done: AtomicU64,
}

/// One stretch of work.
#[derive(Debug, Default, Clone)]
pub struct Phase {
    /// "scanning media", "deleting", "fetching archive:x.mp4".
    pub what: String,
    /// How many units in all, when known.
    pub total: Option<u64>,
    /// Bytes (else files).
    pub bytes: bool,
    /// A file whose size is the progress (a download being written).
    #[doc(hidden)]
    pub file: Option<std::sync::Arc<std::fs::File>>,
}

impl Progress {
    /// Starts a new stretch of work: nothing of it done yet.
    pub fn start(&self, what: impl Into<String>, total: Option<u64>, bytes: bool) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase {
            what: what.into(),
            total,
            bytes,
            file: None,
        };
        self.done.store(0, Ordering::Relaxed);
    }

    /// Counts the size of `file` as what is done (a download written into it).
    pub fn follow(&self, what: impl Into<String>, file: std::fs::File) {
        self.start(what, None, true);
        self.phase.lock().unwrap_or_else(|e| e.into_inner()).file = Some(file.into());
    }

    /// `n` more units done.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// The current stretch and how much of it is done.
    pub fn now(&self) -> (Phase, u64) {
        let phase = self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let done = match &phase.file {
            Some(f) => f.metadata().map(|m| m.len()).unwrap_or(0),
            None => self.done.load(Ordering::Relaxed),
        };
        (phase, done)
    }
}
