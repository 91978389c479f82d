//! Leases: "I am using this" from any process (a thumbnailer, a packager), on a path or a
//! glob, persisted in the registry and expiring on their own. A [`LeaseSet`] is the active
//! leases compiled for matching at one instant; the pass, a dry run, `plan` and `explain`
//! all ask it.

use std::path::Path;
use std::sync::Arc;

use crate::registry::Lease;
use crate::spell::unspell_path;
use crate::units::{Nanos, fmt_time};

/// Active leases compiled for matching, as of one instant.
pub struct LeaseSet {
    leases: Vec<(Lease, Option<Arc<globset::GlobSet>>)>,
}

impl LeaseSet {
    /// Compiles `leases` (the active ones).
    pub fn new(leases: Vec<Lease>) -> LeaseSet {
        // Each distinct pattern is compiled once and shared (a compiled glob takes about
        // 2 KB: 48k leases on a few patterns took the daemon past 256 MB, see BENCHMARKS).
        let mut compiled: std::collections::HashMap<String, Option<Arc<globset::GlobSet>>> =
            Default::default();
        let leases = leases
            .into_iter()
            .map(|l| {
                // Never Glob::compile_matcher: it panics on a glob that parses but does
                // not compile. Such a lease matches its literal path only.
                let m = match l.glob {
                    true => compiled
                        .entry(l.pattern.clone())
                        .or_insert_with(|| {
                            crate::config::glob_set(std::slice::from_ref(&l.pattern))
                                .ok()
                                .map(Arc::new)
                        })
                        .clone(),
                    false => None,
                };
                (l, m)
            })
            .collect();
        LeaseSet { leases }
    }

    /// The leases covering `path` of `store`, in words ("lease 7 by thumbnailer until …").
    pub fn holders(&self, store: &str, path: &Path) -> Vec<String> {
        self.leases
            .iter()
            .filter(|(l, m)| {
                l.store == store
                    && match m {
                        Some(m) => m.is_match(path) || *unspell_path(&l.pattern) == *path,
                        None => *unspell_path(&l.pattern) == *path,
                    }
            })
            .map(|(l, _)| {
                format!(
                    "lease {} by {} until {}",
                    l.id,
                    l.holder,
                    fmt_time(l.expires)
                )
            })
            .collect()
    }

    /// The earliest expiry, if any lease is active.
    pub fn next_expiry(&self) -> Option<Nanos> {
        self.leases.iter().map(|(l, _)| l.expires).min()
    }
}
