//! `status`: volumes against their watermarks, classes, activity — and its rendering.

use super::*;

/// `mediaretain status`.
pub(super) async fn status(b: &Backend, json: bool) -> Result<(), Failure> {
    let s: Status = b
        .ask(Method::GET, "/v1/status", NONE, |e| e.status())
        .await?;
    show(json, &s, || render_status(&s, system_now()))
}

/// `mediaretain status` from the config alone: the volumes of the configured stores, from
/// `statvfs`. With `no_registry`, the daemon is not running and the registry cannot be
/// opened here (why); without, whether the daemon runs is not known (its socket refused us).
pub(super) fn volumes_only(
    cfg: &Config,
    json: bool,
    no_registry: Option<&str>,
) -> Result<(), Failure> {
    let mut s = crate::engine::status_without_registry(cfg, system_now());
    // What this user may write says nothing of what the daemon's user may.
    s.unwritable_stores.clear();
    show(json, &s, || {
        let mut o = render_status(&s, system_now());
        match no_registry {
            Some(why) => {
                let why = why.lines().next().unwrap_or("");
                let _ = writeln!(
                    o,
                    "\n(files and classes are not shown: without the daemon they come from the registry, which cannot be opened here: {why})"
                );
            }
            None => {
                o = o.replacen(
                    "the daemon is not running",
                    "whether the daemon runs is not known (its socket refused us)",
                    1,
                );
            }
        }
        o
    })
}

fn render_status(s: &Status, now: Nanos) -> String {
    let mut o = String::new();
    let a = &s.activity;
    let who = if a.daemon {
        format!("daemon pid {}, up {}", a.pid, fmt_span(now - a.started_at))
    } else {
        "the daemon is not running".into()
    };
    let _ = writeln!(
        o,
        "mediaretain: {who}; config {}; state {}",
        crate::spell::show(&s.config),
        crate::spell::show(&s.state_dir)
    );
    if let Some(t) = a.last_scan_at {
        let files: u64 = a.last_scan.iter().map(|x| x.files).sum();
        let _ = writeln!(
            o,
            "last scan:  {} ({})",
            fmt_time(t),
            crate::units::plural(files, "file")
        );
    }
    if a.daemon {
        let _ = writeln!(
            o,
            "deleted:    {} ({}) since start",
            crate::units::plural(a.deleted_files, "file"),
            ByteSize(a.deleted_bytes)
        );
    }
    if let Some(p) = &a.last_pass {
        let _ = writeln!(
            o,
            "last pass:  {} ({}): {} deleted ({}), {} refused, {} failed",
            fmt_time(p.at),
            p.trigger,
            p.deleted_files,
            ByteSize(p.deleted_bytes),
            p.refused,
            p.failed
        );
        if let Some(g) = &p.guard {
            let _ = writeln!(o, "GUARD:      {g}");
        }
    }
    if let Some(j) = &s.clock_jumped {
        let _ = writeln!(
            o,
            "CLOCK JUMPED: {} (noticed {}); every time-based deletion (ttl, keep_for, offload after, audit pruning) holds until {}, or `mediaretain clock accept` if the clock is right; budgets and disk pressure go on",
            j.cause,
            fmt_time(j.noticed_at),
            fmt_time(j.resumes_at)
        );
    }
    for f in &s.fleet {
        if let Some(c) = &f.conflict {
            let _ = writeln!(o, "FLEET CONFLICT: {c}");
        }
        if let Some(held) = f.rules_lease_held {
            let _ = writeln!(
                o,
                "shared:     store {:?}: rules lease {} (epoch {})",
                f.store,
                if held {
                    "held by this box"
                } else {
                    "held by another box (or free)"
                },
                f.rules_lease_epoch
                    .map_or("unknown".into(), |e| e.to_string())
            );
        }
    }
    if let Some(t) = a.next_pass_at {
        let _ = writeln!(o, "next pass:  {}", fmt_time(t));
    }
    let b = &s.offload_backing_off;
    if let (1.., Some(next)) = (b.files, b.next) {
        let _ = writeln!(
            o,
            "offload:    {} file{} backing off after failures (next try {}; `explain` says why)",
            b.files,
            if b.files == 1 { "" } else { "s" },
            fmt_time(next)
        );
    }
    if let Some(r) = &a.last_reload {
        match &r.error {
            None => {
                let _ = writeln!(o, "reload:     {} ok", fmt_time(r.at));
            }
            Some(e) => {
                let _ = writeln!(
                    o,
                    "reload:     {} REFUSED, running config kept: {e}",
                    fmt_time(r.at)
                );
            }
        }
    }
    for m in &s.missing_stores {
        let _ = writeln!(
            o,
            "{}: store {} ({}): {}; its files are kept and nothing in it is indexed or deleted until it is back",
            match m.absent {
                crate::store::local::RootAbsent::Missing(_) => "MISSING",
                crate::store::local::RootAbsent::NotMounted(_) => "NOT MOUNTED",
            },
            m.store,
            crate::spell::show(&m.root),
            match &m.absent {
                crate::store::local::RootAbsent::Missing(w)
                | crate::store::local::RootAbsent::NotMounted(w) => w,
            }
        );
    }
    for u in &s.unwritable_stores {
        let _ = writeln!(
            o,
            "NOT WRITABLE: store {} ({}): {}; {}",
            u.store,
            crate::spell::show(&u.root),
            u.error,
            u.hint
        );
    }
    for c in &s.stream_writers {
        let _ = writeln!(
            o,
            "TWO WRITERS: stream {:?} (class {}, store {}) since {}: {}",
            c.stream,
            c.class,
            c.store,
            fmt_time(c.since),
            c.describe()
        );
    }
    for v in &s.volumes {
        render_volume(&mut o, v, now);
    }
    if s.classes.is_empty() && a.last_scan_at.is_none() {
        return o;
    }
    let _ = writeln!(
        o,
        "\n{:<12} {:<16} {:>9} {:>12} {:>9}",
        "STORE", "CLASS", "FILES", "BYTES", "RETAINED"
    );
    for c in &s.classes {
        let _ = writeln!(
            o,
            "{:<12} {:<16} {:>9} {:>12} {:>9}",
            c.store,
            c.class.as_deref().unwrap_or("(no class)"),
            c.files,
            ByteSize(c.bytes).to_string(),
            c.retained
        );
    }
    o
}

/// One volume: usage bar with the low (':') and high ('|') marks, fill rate, time to full,
/// watchdog state and the last pressure pass.
fn render_volume(o: &mut String, v: &crate::engine::Volume, now: Nanos) {
    let l = &v.limits;
    let state = match v.state {
        Some(st) => st.to_string(),
        None => "not watched (no daemon)".into(),
    };
    let state = if l.enabled {
        state
    } else {
        "watchdog off".into()
    };
    let _ = writeln!(
        o,
        "\nvolume {} (stores: {}): {state}",
        crate::spell::show(&v.mount),
        v.stores.join(", ")
    );
    let _ = writeln!(
        o,
        "  [{}] {:.1}% used, {} free of {}  (low {} ':', high {} '|')",
        bar(v.used_pct, l.low.0, l.high.0),
        v.used_pct,
        ByteSize(v.sample.avail),
        ByteSize(v.sample.used + v.sample.avail),
        l.low,
        l.high
    );
    let rate = match (v.rate, v.time_to_full) {
        (Some(r), Some(t)) => format!(
            "filling at {}/s, full in {}",
            ByteSize(r as u64),
            fmt_span(t.as_nanos_i64())
        ),
        (Some(r), None) if r < 0.0 => format!("shrinking at {}/s", ByteSize((-r) as u64)),
        (Some(_), None) => "not filling".into(),
        (None, _) => "fill rate not known yet".into(),
    };
    let inodes = v
        .inodes_free_pct
        .map(|p| format!("{p:.1}% inodes free"))
        .unwrap_or_else(|| "no inode limit".into());
    let _ = writeln!(o, "  {rate}; {inodes}");
    if !v.triggers.is_empty() {
        let _ = writeln!(o, "  PRESSURE: {}", v.triggers.join(", "));
    }
    if let Some(p) = &v.last_pass {
        let _ = writeln!(
            o,
            "  last pressure pass {} ago: {:.1}% → {:.1}% used, {} deleted ({}), {} freed, {} refused",
            fmt_span(now.saturating_sub(p.at)),
            p.before_pct,
            p.after_pct,
            crate::units::plural(p.deleted_files, "file"),
            ByteSize(p.deleted_bytes),
            ByteSize(p.freed_bytes),
            p.refused
        );
        match (v.stuck_since, &p.error, &p.kept) {
            (Some(since), Some(e), _) => {
                let _ = writeln!(
                    o,
                    "  STUCK since {}: the pressure pass failed: {e}",
                    fmt_time(since)
                );
            }
            (Some(since), None, Some(k)) => {
                let _ = writeln!(
                    o,
                    "  STUCK since {}: nothing more may be deleted: {k}",
                    fmt_time(since)
                );
            }
            _ => {}
        }
        for l in &p.leases_gave_way {
            let _ = writeln!(o, "  GAVE WAY under pressure: {l}");
        }
    }
}

fn bar(pct: f64, low: f64, high: f64) -> String {
    const W: usize = 40;
    let pos = |p: f64| ((p / 100.0) * W as f64).round().clamp(0.0, W as f64) as usize;
    let (u, l, h) = (pos(pct), pos(low), pos(high));
    (0..W)
        .map(|i| match i {
            _ if i == h => '|',
            _ if i == l => ':',
            _ if i < u => '#',
            _ => '.',
        })
        .collect()
}
