//! `mediaretain registry recover|reset|backup`: the operator's way on when the registry was
//! lost or damaged (the daemon refuses to start over by itself; docs/registry.md).

use super::*;
use crate::registry::recover::{self, RecoverReport};

/// Runs one `registry` action.
pub(super) async fn run(path: &Path, action: RegistryAction) -> Result<(), Failure> {
    let cfg = Config::load(path)?;
    let dir = cfg.daemon.state_dir.clone();
    if let RegistryAction::Backup = action {
        // A read-only connection of its own: fine beside a running daemon.
        let r = tokio::task::spawn_blocking(move || recover::backup(&dir))
            .await
            .expect("backup task")
            .map_err(registry_failure)?;
        say!(
            "backup {} ({}) in {} ms",
            r.path.display(),
            ByteSize(r.bytes),
            r.millis
        );
        return Ok(());
    }
    let lock = StateLock::acquire(&dir).map_err(|e| match e {
        StateError::Busy { pid, .. } => Failure::new(
            exit::UNAVAILABLE,
            format!("mediaretain (pid {pid}) holds the state directory: stop the daemon first (systemctl stop mediaretain)"),
        ),
        e => Failure::new(exit::CANTCREAT, e.to_string()),
    })?;
    let report = tokio::task::spawn_blocking(move || match action {
        RegistryAction::Reset { force } => recover::reset(&dir, force).map(|r| ("reset", r)),
        RegistryAction::Recover { from, force } => {
            recover::recover(&dir, from.as_deref(), force).map(|r| ("recovered", r))
        }
        RegistryAction::Backup => unreachable!("handled above"),
    })
    .await
    .expect("registry task")
    .map_err(registry_failure)?;
    drop(lock);
    show(report.0, &report.1);
    Ok(())
}

fn registry_failure(e: crate::registry::RegistryError) -> Failure {
    let code = if e.needs_operator() {
        exit::DATAERR
    } else {
        exit::IOERR
    };
    Failure::new(code, e.to_string())
}

/// What was done, what was lost, and what was kept aside.
fn show(what: &str, r: &RecoverReport) {
    say!(
        "registry {what}; {} (the pins file's and the registry's)",
        crate::units::plural(r.pins, "pin")
    );
    for p in &r.kept_aside {
        say!("kept aside: {}", p.display());
    }
    if let Some(b) = &r.backup {
        let at = r.backup_at.map(fmt_time).unwrap_or_else(|| "?".into());
        say!("backup used: {} (made {at})", b.display());
    }
    if r.tables.is_empty() {
        if what == "reset" {
            say!(
                "lost: every entry (the next scan finds the files again), lease, audit record and offload record; pins are kept"
            );
        }
        return;
    }
    let mut lost = false;
    for t in &r.tables {
        if t.from_registry + t.from_backup == 0 && t.errors.is_empty() {
            continue;
        }
        say!(
            "  {:<16} {:>8} read from the registry, {:>8} from the backup",
            t.table,
            t.from_registry,
            t.from_backup
        );
        for e in &t.errors {
            lost = true;
            say!("    unreadable: {e}");
        }
    }
    if r.orphans_dropped > 0 {
        say!(
            "dropped {} that referred to lost rows",
            crate::units::plural(r.orphans_dropped, "row")
        );
    }
    if !r.read_registry {
        say!(
            "lost: everything after the backup (the registry was missing, empty or another directory's); entries come back with the next scan"
        );
    } else if lost {
        say!(
            "lost: what the unreadable rows above held and the backup did not (changes after the backup in them are gone); entries come back with the next scan"
        );
    } else {
        say!("nothing unreadable: no rows lost");
    }
}
