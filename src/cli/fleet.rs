//! `mediaretain fleet`: every box writing into one S3 store's bucket and prefix, from
//! their status objects (src/fleet/status.rs) — read straight from the bucket with the
//! config's credentials, so it works without a running daemon and on any machine.

use super::*;
use crate::fleet::status::{Fleet, FleetBox, read_fleet};

/// `mediaretain fleet [--json] [STORE]`.
pub(super) async fn fleet(path: &Path, store: Option<String>, json: bool) -> Result<(), Failure> {
    // No registry and no state directory: only the store's location and credentials.
    let cfg = Config::load_with(path, false)?;
    let s3: Vec<_> = cfg
        .stores
        .iter()
        .filter_map(|s| s.s3.as_ref().map(|l| (s.name.as_str(), l)))
        .collect();
    let names = || {
        s3.iter()
            .map(|(n, _)| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (name, loc) = match (&store, s3.as_slice()) {
        (Some(want), _) => *s3.iter().find(|(n, _)| n == want).ok_or_else(|| {
            Failure::new(
                exit::USAGE,
                format!(
                    "no S3 store {want:?} in {} (its S3 stores: {})",
                    path.display(),
                    names()
                ),
            )
        })?,
        (None, [only]) => *only,
        (None, []) => {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "{} has no S3 store: a fleet is read from one",
                    path.display()
                ),
            ));
        }
        (None, _) => {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "several S3 stores ({}): name one, `mediaretain fleet STORE`",
                    names()
                ),
            ));
        }
    };
    let remote = crate::engine::open_s3(name, loc)?;
    let beat = cfg.daemon.fleet_heartbeat.0;
    let fleet = tokio::task::spawn_blocking(move || {
        crate::engine::s3_io(async { read_fleet(&remote, system_now(), beat).await })
    })
    .await
    .expect("fleet task")
    .map_err(|e| Failure::new(exit::UNAVAILABLE, e.to_string()))?;
    if json {
        return print_json(&fleet);
    }
    say_all(&render(&fleet));
    Ok(())
}

/// The human table: one line per box, then the stale ones named.
fn render(f: &Fleet) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fleet of store {:?} (bucket {:?}, prefix {:?}): {}",
        f.store,
        f.bucket,
        f.prefix,
        crate::units::plural(f.boxes.len() as u64, "box")
    );
    if f.boxes.is_empty() {
        out.push_str("  no status object yet (a daemon writes one every fleet_heartbeat)\n");
        return out;
    }
    let _ = writeln!(
        out,
        "  {:<20} {:<16} {:<10} {:>8}  {:<22} {:<18} CLOCK",
        "NODE", "HOST", "VERSION", "AGE", "LAST PASS", "BACKLOG"
    );
    for b in &f.boxes {
        let _ = writeln!(out, "  {}", line(b));
    }
    if !f.stale.is_empty() {
        let _ = writeln!(
            out,
            "stale (no status for over 3 heartbeats): {}",
            f.stale.join(", ")
        );
    }
    out
}

fn line(b: &FleetBox) -> String {
    let age = b.age.to_string();
    let Some(s) = &b.status else {
        return format!(
            "{:<20} unreadable ({}): {}",
            b.name(),
            b.key,
            b.error.as_deref().unwrap_or("?")
        );
    };
    let pass = s.last_pass.as_ref().map_or("none yet".to_string(), |p| {
        format!("{} at {}", p.outcome, fmt_time(p.at))
    });
    let backlog = format!(
        "{} to offload, {} due",
        s.backlog.offload_files, s.backlog.files_due
    );
    let mut clock = s.clock.state.clone();
    if !s.stuck_volumes.is_empty() {
        clock.push_str(&format!(
            "; STUCK: {}",
            s.stuck_volumes
                .iter()
                .map(|v| v.mount.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let dead: Vec<&str> = s
        .endpoints
        .iter()
        .filter(|e| !e.reachable)
        .map(|e| e.url.as_str())
        .collect();
    if !dead.is_empty() {
        clock.push_str(&format!("; endpoints down: {}", dead.join(", ")));
    }
    format!(
        "{:<20} {:<16} {:<10} {:>8}  {:<22} {:<18} {}{}",
        b.name(),
        s.host,
        s.version,
        age,
        pass,
        backlog,
        clock,
        if b.stale { "  STALE" } else { "" }
    )
}
