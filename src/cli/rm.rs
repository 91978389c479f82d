//! `rm`: explicit deletion through the one executor, per-file results — and its rendering.

use super::*;

/// What `rm` is told to delete anyway.
pub(super) struct Force {
    /// `--force-retained`.
    pub retained: bool,
    /// `--force-last-copy`.
    pub last_copy: bool,
}

/// `mediaretain rm`.
pub(super) async fn rm(
    b: &Backend,
    paths: Vec<String>,
    recursive: bool,
    dry_run: bool,
    force: Force,
    json: bool,
) -> Result<(), Failure> {
    let req = RmRequest {
        paths,
        recursive,
        dry_run,
        force_retained: force.retained,
        force_last_copy: force.last_copy,
    };
    let local = req.clone();
    let r: RmReport = b
        .ask(Method::POST, "/v1/rm", Some(&req), move |e| e.rm(&local))
        .await?;
    if json {
        print_json(&r)?;
    } else {
        say_all(&render_rm(&r));
    }
    if r.remaining > 0 {
        return Err(Failure::new(
            exit::IOERR,
            format!(
                "{} {} {}; each result says why",
                r.remaining,
                if r.remaining == 1 { "entry" } else { "entries" },
                match (r.remaining, r.dry_run) {
                    (1, false) => "remains",
                    (_, false) => "remain",
                    (_, true) => "would remain (dry run)",
                },
            ),
        ));
    }
    Ok(())
}

fn render_rm(r: &RmReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "rm: {} ({}) named{}",
        crate::units::plural(r.files, "file"),
        ByteSize(r.bytes),
        if r.dry_run {
            "; dry run, nothing is changed"
        } else {
            ""
        }
    );
    for f in &r.results {
        let word = match (&f.result, r.dry_run) {
            (Outcome::Refused(_), true) => "would refuse",
            (Outcome::WouldDelete, _) => "would delete",
            (Outcome::Vanished, _) => "not there",
            (o, _) => o.word(),
        };
        let detail = match &f.result {
            Outcome::Refused(d) | Outcome::Failed(d) => d.clone(),
            _ => f.reason.clone(),
        };
        let class = f.class.as_deref().unwrap_or("-");
        let _ = writeln!(
            o,
            "{word:<12} {:<48} {:>10}  {class:<14} {detail}",
            loc(&f.store, &f.path),
            ByteSize(f.bytes).to_string(),
        );
    }
    for d in &r.removed_dirs {
        let _ = writeln!(o, "{:<12} {}/", "rmdir", loc(&d.store, &d.path));
    }
    if r.dry_run {
        let _ = writeln!(
            o,
            "dry run: {} would be deleted, {} would remain; nothing was changed",
            r.results
                .iter()
                .filter(|f| f.result == Outcome::WouldDelete)
                .count(),
            r.remaining
        );
    } else {
        let _ = writeln!(
            o,
            "{} deleted ({}), {} refused, {} failed, {} not there; {} removed{}; {} remaining; {} ms",
            r.deleted_files,
            ByteSize(r.deleted_bytes),
            r.refused,
            r.failed,
            r.gone,
            crate::units::plural(r.removed_dirs.len() as u64, "directory"),
            match r.unpinned {
                0 => String::new(),
                n => format!("; {n} unpinned"),
            },
            r.remaining,
            r.millis
        );
    }
    o
}
