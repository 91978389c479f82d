//! `plan` and `gc`: what a lifecycle pass would do and doing it — and their rendering.

use super::*;

/// `mediaretain plan`.
pub(super) async fn plan(b: &Backend, json: bool, at: Option<String>) -> Result<(), Failure> {
    let at = at.map(|a| parse_at(&a, system_now())).transpose()?;
    let uri = match at {
        // RFC 3339 (digits, "-", ":", "T", ".", "Z": nothing to escape in a query).
        Some(t) => format!("/v1/plan?at={}", crate::units::fmt_time_json(t)),
        None => "/v1/plan".into(),
    };
    let p: Plan = b
        .ask(Method::GET, &uri, NONE, move |e| {
            e.plan_checked(at.unwrap_or_else(|| e.now()))
        })
        .await?;
    show(json, &p, || render_plan(&p))
}

/// `mediaretain gc`.
pub(super) async fn gc(b: &Backend, dry_run: bool, json: bool) -> Result<(), Failure> {
    let bar = b.progress();
    let r: GcReport = b
        .ask(
            Method::POST,
            "/v1/gc",
            Some(&GcRequest {
                dry_run,
                trigger: Some("cli".into()),
            }),
            move |e| e.gc(dry_run, "cli", true),
        )
        .await?;
    drop(bar);
    if json {
        print_json(&r)?;
    } else {
        say_all(&render_gc(&r));
    }
    if r.failed > 0 {
        return Err(Failure::new(
            exit::IOERR,
            format!(
                "{} of {} could not be deleted",
                r.failed,
                crate::units::plural(r.results.len() as u64, "file")
            ),
        ));
    }
    Ok(())
}

fn render_plan(p: &Plan) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "plan at {}", fmt_time(p.at));
    for f in &p.offloads {
        let _ = writeln!(
            o,
            "offload {:<48} {:>10}  {:<14} to {}:{}",
            loc(&f.entry.store, &f.entry.path),
            ByteSize(f.entry.size).to_string(),
            f.entry.class.as_deref().unwrap_or(""),
            f.to,
            crate::spell::show(&f.entry.path)
        );
    }
    for a in &p.actions {
        let (word, why) = match &a.would_refuse {
            Some(why) => ("refuse", format!("{}; would refuse now: {why}", a.reason)),
            None => ("delete", a.reason.clone()),
        };
        let _ = writeln!(
            o,
            "{word:<7} {:<48} {:>10}  {:<14} {:<9} {why}",
            loc(&a.entry.store, &a.entry.path),
            ByteSize(a.entry.size).to_string(),
            a.entry.class.as_deref().unwrap_or(""),
            a.rule.to_string(),
        );
    }
    let _ = writeln!(
        o,
        "{:<16} {:<10} {:>8} {:>12} {:>8} {:>12} {:>9}",
        "CLASS", "STORE", "FILES", "BYTES", "DELETE", "FREES", "RETAINED"
    );
    for c in &p.classes {
        let _ = writeln!(
            o,
            "{:<16} {:<10} {:>8} {:>12} {:>8} {:>12} {:>9}",
            c.class,
            c.store,
            c.files,
            ByteSize(c.bytes).to_string(),
            c.delete_files,
            ByteSize(c.delete_bytes).to_string(),
            c.retained
        );
    }
    let refused: Vec<&crate::policy::Action> = p
        .actions
        .iter()
        .filter(|a| a.would_refuse.is_some())
        .collect();
    let _ = writeln!(
        o,
        "total: {} to delete ({}){}",
        crate::units::plural((p.actions.len() - refused.len()) as u64, "file"),
        ByteSize(p.delete_bytes() - refused.iter().map(|a| a.entry.size).sum::<u64>()),
        match refused.len() {
            0 => String::new(),
            n => format!("; {n} more due but refused now (in use, retained, no copy…)"),
        }
    );
    if let Some(t) = p.next_due {
        let _ = writeln!(o, "next file becomes due at {}", fmt_time(t));
    }
    o
}

fn render_gc(r: &GcReport) -> String {
    let mut o = String::new();
    for f in &r.results {
        let word = match (&f.result, r.dry_run) {
            (Outcome::Refused(_), true) => "would refuse",
            (_, true) => "would delete",
            (o, false) => o.word(),
        };
        let detail = match &f.result {
            Outcome::Refused(d) | Outcome::Failed(d) => d.clone(),
            _ => f.reason.clone(),
        };
        let _ = writeln!(
            o,
            "{word:<12} {:<48} {:>10}  {:<14} {}",
            loc(&f.store, &f.path),
            ByteSize(f.bytes).to_string(),
            f.class.as_deref().unwrap_or("-"),
            detail
        );
    }
    if let Some(g) = &r.guard {
        let _ = writeln!(o, "STOPPED: {g}");
    }
    if r.planned_offloads > 0 {
        let _ = writeln!(
            o,
            "offload: {} due, {} copied and verified ({}), {} put off (in use or changed), {} failed, {} backing off after failures",
            r.planned_offloads,
            r.offloaded_files,
            ByteSize(r.offloaded_bytes),
            r.offload_refused,
            r.offload_failed,
            r.offload_backing_off
        );
    }
    if r.dry_run {
        let _ = writeln!(
            o,
            "dry run: {} ({}) would be deleted; nothing was changed",
            crate::units::plural(r.results.len() as u64, "file"),
            ByteSize(r.results.iter().map(|f| f.bytes).sum())
        );
    } else {
        let _ = writeln!(
            o,
            "{} deleted ({}), {} refused, {} failed, {} already gone; {} removed; {} ms",
            r.deleted_files,
            ByteSize(r.deleted_bytes),
            r.refused,
            r.failed,
            r.vanished,
            crate::units::plural(r.pruned_dirs, "empty directory"),
            r.millis
        );
    }
    o
}
