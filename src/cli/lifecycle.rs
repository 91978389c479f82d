//! `mediaretain lifecycle plan|apply|check STORE`: the bucket's native lifecycle rules as a
//! backstop for an S3 store's remote rules ([`crate::fleet::lifecycle`]). Needs the config
//! and the store's credentials, not the registry: it works beside a running daemon. Pins are
//! read from the state directory's pins file.

use std::time::Duration;

use super::*;
use crate::fleet::lifecycle::{self as native, Compiled, Drift, LifecycleError, Pinned};

/// `mediaretain lifecycle …`.
#[derive(Debug, Subcommand)]
pub enum LifecycleAction {
    /// Print the bucket lifecycle rules that STORE's config implies (expiry by prefix in
    /// whole days, rounded up; abort of incomplete uploads) and what stays mediaretain's
    /// alone, with the reason; warn about pinned objects a rule would expire. Changes nothing.
    Plan {
        /// An S3 store of the config.
        store: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write those rules into the bucket's lifecycle configuration: only this store's
    /// `mediaretain:` rules are replaced, every other rule (other boxes', other tools') is
    /// kept; then read it back and check it. Refused while a pinned object lies under a
    /// rule (the store cannot pin) unless --expire-pinned.
    Apply {
        /// An S3 store of the config.
        store: String,
        /// Write the rules even though the store would expire pinned objects under them
        /// (or the pins are not known: no registry of the state directory here).
        #[arg(long)]
        expire_pinned: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Compare the bucket's rules with what the config implies: exit 0 when they agree,
    /// 1 on drift (a mediaretain rule missing, different or left over), naming each.
    Check {
        /// An S3 store of the config.
        store: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// What a `lifecycle` command found (docs/json.md).
#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    compiled: Compiled,
    /// Pinned objects a compiled rule would expire.
    pinned: Vec<Pinned>,
    /// Why the pins are not known (None: they were read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pins_unknown: Option<String>,
    /// The bucket's rules that are not this store's (check, apply).
    #[serde(skip_serializing_if = "Option::is_none")]
    other_rules: Option<usize>,
    /// check: how the bucket differs; apply: what it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    drift: Option<Vec<Drift>>,
    /// apply: whether the configuration was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    written: Option<bool>,
}

/// No lifecycle request waits longer than this (each is one small XML document).
const DEADLINE: Duration = Duration::from_secs(120);

fn failed(e: LifecycleError) -> Failure {
    match e {
        LifecycleError::BadStore(m) => Failure::new(exit::DATAERR, m),
        LifecycleError::Store(e) => EngineError::from(e).into(),
        e @ LifecycleError::Answer { .. } => Failure::new(exit::IOERR, e.to_string()),
    }
}

async fn within<T>(
    store: &str,
    f: impl std::future::Future<Output = Result<T, LifecycleError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(r) => r.map_err(failed),
        Err(_) => Err(Failure::new(
            exit::UNAVAILABLE,
            format!(
                "store {store:?}: no answer to a lifecycle request within {}s",
                DEADLINE.as_secs()
            ),
        )),
    }
}

/// Runs `mediaretain lifecycle ACTION`.
pub(super) async fn run(path: &Path, action: LifecycleAction) -> Result<(), Failure> {
    let cfg = Config::load(path)?;
    let (store, json) = match &action {
        LifecycleAction::Plan { store, json }
        | LifecycleAction::Apply { store, json, .. }
        | LifecycleAction::Check { store, json } => (store.clone(), *json),
    };
    let compiled = native::compile(&cfg, &store).map_err(failed)?;
    // Every open of a registry writes the pins file (empty when nothing is pinned): none
    // means no registry of this state directory here (another machine, a box never
    // started), so the pins are unknown — not absent.
    let dir = &cfg.daemon.state_dir;
    let (keys, pins_unknown) = match crate::registry::pinfile::read(dir) {
        Ok(Some(pins)) => (
            pins.into_iter()
                .filter(|p| p.store == store)
                .map(|p| crate::spell::path(&p.path).into_owned())
                .collect::<Vec<_>>(),
            None,
        ),
        Ok(None) => (
            Vec::new(),
            Some(format!(
                "no {} here: no registry of this state directory on this machine; run it on the box",
                dir.join(crate::registry::pinfile::PINS_FILE).display()
            )),
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let pinned = compiled.pinned(keys.iter().map(String::as_str));
    let mut report = Report {
        compiled,
        pinned,
        pins_unknown,
        other_rules: None,
        drift: None,
        written: None,
    };
    if let LifecycleAction::Plan { .. } = action {
        return show(json, &report, || render(&report, "plan"));
    }
    let loc = cfg
        .store(&store)
        .and_then(|s| s.s3.as_ref())
        .expect("compile checked it is an S3 store");
    let s3 = crate::engine::open_s3(&store, loc)?;
    let bucket = within(&store, native::read(&s3)).await?;
    let drift = report.compiled.drift(&bucket);
    report.other_rules = Some(bucket.iter().filter(|r| !report.compiled.owns(r)).count());
    match action {
        LifecycleAction::Plan { .. } => unreachable!("answered above"),
        LifecycleAction::Check { .. } => {
            let n = drift.len();
            report.drift = Some(drift);
            show(json, &report, || render(&report, "check"))?;
            if n > 0 {
                let ids: Vec<_> = report
                    .drift
                    .iter()
                    .flatten()
                    .map(|d| format!("{} ({})", d.id, word(d)))
                    .collect();
                return Err(Failure::new(
                    1,
                    format!(
                        "store {store:?}: the bucket's lifecycle rules drift from the config: {}; `mediaretain lifecycle apply {store}` writes them",
                        ids.join(", ")
                    ),
                ));
            }
            Ok(())
        }
        LifecycleAction::Apply { expire_pinned, .. } => {
            if !expire_pinned && (!report.pinned.is_empty() || report.pins_unknown.is_some()) {
                let why = match &report.pins_unknown {
                    Some(e) => format!("the pins are not known ({e})"),
                    None => format!(
                        "the store would expire {} pinned object{} (native rules cannot pin): {}",
                        report.pinned.len(),
                        if report.pinned.len() == 1 { "" } else { "s" },
                        report
                            .pinned
                            .iter()
                            .take(10)
                            .map(|p| format!("{store}:{} (rule {})", p.key, p.rule))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                return Err(Failure::new(
                    exit::DATAERR,
                    format!(
                        "store {store:?}: refused: {why}; unpin them, narrow the class, or give --expire-pinned"
                    ),
                ));
            }
            let xml = report.compiled.merged(&bucket);
            let total = report.other_rules.unwrap_or(0) + report.compiled.rules.len();
            if total > native::MAX_RULES {
                return Err(Failure::new(
                    exit::DATAERR,
                    format!(
                        "store {store:?}: refused: the bucket would hold {total} lifecycle rules, more than the {} a configuration may have on AWS S3",
                        native::MAX_RULES
                    ),
                ));
            }
            let changed = !drift.is_empty();
            if changed {
                within(&store, native::write(&s3, xml.as_deref())).await?;
                tracing::info!(store, bucket = %report.compiled.bucket, changes = drift.len(), "bucket lifecycle written");
                // Read back: a store that dropped or rewrote a rule (or another box's apply
                // at the same instant) shows here, not at the next check.
                let after = within(&store, native::read(&s3)).await?;
                let left = report.compiled.drift(&after);
                if !left.is_empty() {
                    let ids: Vec<_> = left
                        .iter()
                        .map(|d| format!("{} ({})", d.id, word(d)))
                        .collect();
                    return Err(Failure::new(
                        exit::IOERR,
                        format!(
                            "store {store:?}: the bucket's lifecycle was written but reads back otherwise: {}",
                            ids.join(", ")
                        ),
                    ));
                }
            }
            report.drift = Some(drift);
            report.written = Some(changed);
            show(json, &report, || render(&report, "apply"))
        }
    }
}

fn word(d: &Drift) -> &'static str {
    match d.kind {
        native::DriftKind::Missing => "missing",
        native::DriftKind::Different => "different",
        native::DriftKind::Extra => "extra",
    }
}

/// The human rendering of a report of `what` (plan, check, apply).
fn render(r: &Report, what: &str) -> String {
    let c = &r.compiled;
    let mut s = String::new();
    let root = if c.root.is_empty() {
        "the whole bucket".to_string()
    } else {
        format!("{:?}", c.root)
    };
    let _ = writeln!(
        s,
        "store {}: bucket {}, root {root}, rule ids {}{}:…",
        c.store,
        c.bucket,
        crate::fleet::lifecycle::ID_PREFIX,
        c.owner
    );
    let _ = writeln!(s, "compiled ({}):", c.rules.len());
    for rule in &c.rules {
        let _ = writeln!(
            s,
            "  {}: {} under {:?} ({}{})",
            rule.id,
            rule.action,
            rule.prefix,
            rule.class
                .as_ref()
                .map(|c| format!("class {c}: "))
                .unwrap_or_default(),
            rule.from
        );
    }
    if !c.not_compiled.is_empty() {
        let _ = writeln!(
            s,
            "not compiled ({}), mediaretain's alone:",
            c.not_compiled.len()
        );
        for n in &c.not_compiled {
            let _ = writeln!(s, "  class {}: {}: {}", n.class, n.limit, n.reason);
        }
    }
    for p in &r.pinned {
        let _ = writeln!(
            s,
            "warning: {}:{} is pinned, but rule {} would expire it (native rules cannot pin)",
            c.store, p.key, p.rule
        );
    }
    if let Some(e) = &r.pins_unknown {
        let _ = writeln!(
            s,
            "warning: the pins are not known ({e}): a rule may expire pinned objects"
        );
    }
    if let Some(n) = r.other_rules {
        let _ = writeln!(s, "other rules in the bucket (kept): {n}");
    }
    if let Some(drift) = &r.drift {
        let lead = if what == "apply" { "changed" } else { "drift" };
        if drift.is_empty() {
            let _ = writeln!(
                s,
                "{}",
                if what == "apply" {
                    "unchanged: the bucket already has these rules"
                } else {
                    "in sync: the bucket has these rules"
                }
            );
        }
        for d in drift {
            let _ = write!(s, "{lead}: {} {}", word(d), d.id);
            if let Some(w) = &d.want {
                let _ = write!(s, "; wanted: {w}");
            }
            if let Some(f) = &d.found {
                let _ = write!(s, "; bucket had: {f}");
            }
            s.push('\n');
        }
    }
    s
}
