//! Writers' temporary names: a recorder writes `X.part` (or `.tmp`, `.download`: the
//! class's `part_suffixes`) and renames it to `X` when done, so the final name `X` is in
//! use while its temporary file is quiet-period fresh or held open by someone.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{Class, Config};
use crate::registry::{Registry, Result};
use crate::store::local::{LocalStore, Users};
use crate::units::{Nanos, fmt_span};

/// The registry's files of `store` that carry a writer's temporary suffix of any class.
pub fn part_files(reg: &mut Registry, config: &Config, store: &str) -> Result<HashSet<PathBuf>> {
    let mut suffixes: Vec<&String> = config
        .classes
        .iter()
        .filter(|c| c.store == store)
        .flat_map(|c| &c.part_suffixes)
        .collect();
    suffixes.sort();
    suffixes.dedup();
    let mut parts = HashSet::new();
    for suf in suffixes {
        parts.extend(reg.paths_ending(store, suf)?);
    }
    Ok(parts)
}

/// Why the final name `path` (of `class`) is in use: a live writer is still writing `path`
/// + a temporary suffix (it is quiet-period fresh at `now`, or `users` names a holder).
pub fn writer_reason(
    class: &Class,
    store: &LocalStore,
    path: &Path,
    parts: &HashSet<PathBuf>,
    now: Nanos,
    users: &mut dyn FnMut(u64, u64) -> Users,
) -> Option<String> {
    for suf in &class.part_suffixes {
        let mut name = path.as_os_str().to_os_string();
        name.push(suf);
        let part = PathBuf::from(name);
        if !parts.contains(&part) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(store.root().join(&part)) else {
            continue;
        };
        let since = now.saturating_sub(md.mtime() * 1_000_000_000 + md.mtime_nsec());
        if since < class.quiet_period.as_nanos_i64() {
            return Some(format!(
                "its writer is still writing {} (modified {} ago)",
                crate::spell::show(&part),
                fmt_span(since)
            ));
        }
        if let Some(who) = users(md.dev(), md.ino()).who {
            return Some(format!(
                "its writer is still writing {} ({who})",
                crate::spell::show(&part)
            ));
        }
    }
    None
}
