//! The operator's housekeeping: `scan`, `reload` (through the daemon), `check-config` and
//! `fetch` (no registry needed).

use super::unit;
use super::*;

/// `mediaretain scan`.
pub(super) async fn scan(b: &Backend, json: bool) -> Result<(), Failure> {
    let bar = b.progress();
    let st: Vec<ScanStats> = b
        .ask(Method::POST, "/v1/scan", NONE, |e| e.scan_all())
        .await?;
    drop(bar);
    if json {
        return print_json(&st);
    }
    for s in &st {
        say!(
            "{}: {} ({}) in {}, {} forgotten, {} unreadable, {} ms",
            s.store,
            crate::units::plural(s.files, "file"),
            ByteSize(s.bytes),
            crate::units::plural(s.dirs, "directory"),
            s.forgotten,
            s.unreadable,
            s.millis
        );
    }
    Ok(())
}

/// `mediaretain reload`.
pub(super) async fn reload(b: &Backend) -> Result<(), Failure> {
    let r: ReloadResponse = b
        .ask(Method::POST, "/v1/reload", NONE, |_| {
            Err(EngineError::Reload("no daemon runs".into()))
        })
        .await?;
    say!(
        "reloaded; {} changed class",
        crate::units::plural(r.reclassified as u64, "entry")
    );
    Ok(())
}

/// What `mediaretain clock` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockAction {
    /// Take the wall clock as true now: time-based deletions held by a jump resume.
    Accept,
}

/// `mediaretain clock accept`.
pub(super) async fn clock(b: &Backend, action: ClockAction, json: bool) -> Result<(), Failure> {
    let ClockAction::Accept = action;
    let was: Option<crate::clock::ClockJump> = b
        .ask(Method::POST, "/v1/clock/accept", NONE, |e| e.clock_accept())
        .await?;
    if json {
        return print_json(&was);
    }
    match was {
        Some(j) => say!(
            "the wall clock ({}) is taken as true; it was held since {}: {}; time-based deletions resume",
            crate::units::fmt_time(system_now()),
            crate::units::fmt_time(j.noticed_at),
            j.cause
        ),
        None => say!("the wall clock was not found jumped; nothing was held"),
    }
    Ok(())
}

/// `mediaretain check-config`.
pub(super) fn check_config(
    path: &Path,
    unit: Option<&Path>,
    store_roots: bool,
    strict: bool,
) -> Result<(), Failure> {
    let cfg = Config::load(path)?;
    if store_roots {
        // For postrm purge (which no longer has the config): a root with a newline in its
        // name cannot be told apart from two, and is left out.
        for s in cfg.stores.iter().filter(|s| s.is_local()) {
            let root = s.root.to_string_lossy();
            if !root.contains('\n') {
                println!("{root}");
            }
        }
        return Ok(());
    }
    check_unit(&cfg, path, unit, strict)?;
    let drop_ins: Vec<String> = cfg
        .drop_ins
        .iter()
        .map(|p| format!(" + {}", p.display()))
        .collect();
    say!(
        "{}{}: ok ({}, {}; state_dir {}, socket {})",
        path.display(),
        drop_ins.concat(),
        crate::units::plural(cfg.stores.len() as u64, "store"),
        crate::units::plural(cfg.classes.len() as u64, "class"),
        cfg.daemon.state_dir.display(),
        cfg.daemon.socket.display()
    );
    // Not an error (an unplugged disk must not stop the other stores), but worth a word.
    for st in cfg.stores.iter().filter(|s| s.is_local()) {
        if let Err(absent) = crate::store::local::find_root(&st.root, st.require_mount, None) {
            eprintln!(
                "mediaretain: warning: store {:?}: root {} is {absent}; the daemon runs the other stores and takes this one up when it is there (docs/missing-roots.md)",
                st.name,
                crate::spell::show(&st.root)
            );
        }
    }
    Ok(())
}

/// Warns where the unit (`--unit`, or the installed one when its `ExecStart=` runs this
/// config) would keep the daemon from what `cfg` needs. Warnings, not errors: the unit may
/// be changed at run time (`systemctl set-property`), a path may appear later, and the
/// config may be meant for a daemon run some other way. With `strict` (the package's
/// postinst, before it restarts the daemon), what would keep the daemon from starting, or
/// take away the network it uses, is an error.
fn check_unit(cfg: &Config, path: &Path, unit: Option<&Path>, strict: bool) -> Result<(), Failure> {
    let sandbox = match unit {
        Some(u) => unit::Sandbox::read(u).map_err(|e| {
            Failure::new(
                exit::CONFIG,
                format!("{}: cannot read unit: {e}", u.display()),
            )
        })?,
        None => {
            let Some(u) = unit::installed() else {
                return Ok(());
            };
            let Ok(sb) = unit::Sandbox::read(&u) else {
                return Ok(());
            };
            let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            };
            if !sb.config.as_deref().is_some_and(|c| same(c, path)) {
                return Ok(());
            }
            sb
        }
    };
    let files: Vec<String> = sandbox
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let mut fatal = 0;
    for (stops, w) in sandbox.warnings(cfg) {
        let kind = if strict && stops {
            fatal += 1;
            "error"
        } else {
            "warning"
        };
        eprintln!("{kind}: {}: {w} [{}]", path.display(), files.join(" + "));
    }
    if fatal > 0 {
        return Err(Failure::new(
            exit::CONFIG,
            format!(
                "{}: the unit would keep the daemon from starting or from the network it uses ({fatal} above)",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// `mediaretain fetch`.
pub(super) async fn fetch(
    path: &Path,
    src: String,
    dest: PathBuf,
    force: bool,
) -> Result<(), Failure> {
    // No registry needed: it works beside a running daemon.
    let cfg = Config::load(path)?;
    let (s, d) = (src.clone(), dest.clone());
    let progress = Arc::new(crate::progress::Progress::default());
    let bar = Bar::show(progress.clone());
    let v =
        tokio::task::spawn_blocking(move || crate::engine::fetch(&cfg, &s, &d, force, &progress))
            .await
            .expect("fetch task")?;
    drop(bar);
    say!(
        "fetched {src} to {}: {} bytes, etag {} (verified)",
        dest.display(),
        v.size,
        v.checksum
    );
    Ok(())
}
