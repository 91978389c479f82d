//! `ls` and `explain`: what the registry knows about files and why each is kept or goes —
//! and their rendering.

use super::*;

/// `mediaretain ls`.
pub(super) async fn ls(
    b: &Backend,
    class: Option<String>,
    retained: bool,
    tag: Option<String>,
    in_use: bool,
    limit: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    let req = LsRequest {
        class: class.clone(),
        retained,
        tag: tag.clone(),
        in_use,
        limit,
    };
    let es: Vec<Entry> = b
        .ask(Method::POST, "/v1/ls", Some(&req), move |e| {
            e.ls(
                &Filter {
                    class,
                    retained,
                    tag,
                    limit,
                },
                in_use,
            )
        })
        .await?;
    show(json, &es, || render_ls(&es))
}

/// `mediaretain explain`.
pub(super) async fn explain(b: &Backend, path: String, json: bool) -> Result<(), Failure> {
    let req = PathRequest { path: path.clone() };
    let x: Explanation = b
        .ask(Method::POST, "/v1/explain", Some(&req), move |e| {
            e.explain(&path)
        })
        .await?;
    show(json, &x, || render_explain(&x, system_now()))
}

/// `mediaretain dupes`.
pub(super) async fn dupes(b: &Backend, class: Option<String>, json: bool) -> Result<(), Failure> {
    let req = crate::control::DupesRequest {
        class: class.clone(),
    };
    let d: crate::engine::Dupes = b
        .ask(Method::POST, "/v1/dupes", Some(&req), move |e| {
            e.dupes(class.as_deref())
        })
        .await?;
    show(json, &d, || render_dupes(&d))
}

fn render_dupes(d: &crate::engine::Dupes) -> String {
    let mut o = String::new();
    if d.groups.is_empty() {
        let _ = writeln!(o, "no identical copies found (among files hashed so far)");
        return o;
    }
    for g in &d.groups {
        let _ = writeln!(
            o,
            "class {}: {} copies of {} (blake3 {}…), {} wasted",
            g.class,
            g.copies.len() + g.kept.is_some() as usize,
            ByteSize(g.size),
            &g.blake3[..16.min(g.blake3.len())],
            ByteSize(g.wasted_bytes)
        );
        for (word, c) in g
            .kept
            .iter()
            .map(|c| ("kept", c))
            .chain(g.copies.iter().map(|c| ("copy", c)))
        {
            let links = match c.links.is_empty() {
                true => String::new(),
                false => format!(" (also named {})", c.links.join(", ")),
            };
            let fate = match word {
                "kept" => String::new(),
                _ => format!("  {}", c.fate),
            };
            let _ = writeln!(
                o,
                "  {word:<5} {}{links}  modified {}{fate}",
                loc(&g.store, &c.path),
                fmt_time(c.mtime)
            );
        }
    }
    let _ = writeln!(o, "{} wasted in all", ByteSize(d.wasted_bytes));
    o
}

fn render_ls(es: &[Entry]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<56} {:>10}  {:<20}  {:<16} {:<8} TAGS",
        "PATH", "SIZE", "MODIFIED", "CLASS", "RETAINED"
    );
    for e in es {
        let _ = writeln!(
            o,
            "{:<56} {:>10}  {:<20}  {:<16} {:<8} {}",
            loc(&e.store, &e.path),
            ByteSize(e.size).to_string(),
            fmt_time(e.mtime),
            e.class.as_deref().unwrap_or("-"),
            if e.retained { "yes" } else { "" },
            e.tags.join(" ")
        );
        if !e.in_use.is_empty() {
            let _ = writeln!(o, "    in use: {}", e.in_use.join("; "));
        }
    }
    o
}

fn render_explain(x: &Explanation, now: Nanos) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", loc(&x.store, &x.path));
    let _ = writeln!(o, "  {}", x.summary);
    if let Some(e) = &x.entry {
        let _ = writeln!(
            o,
            "  size {}, modified {} ({} ago), first seen {}{}",
            ByteSize(e.size),
            fmt_time(e.mtime),
            fmt_span(now - e.mtime),
            fmt_time(e.first_seen),
            if e.retained { ", RETAINED" } else { "" }
        );
        if !e.tags.is_empty() {
            let _ = writeln!(o, "  tags: {}", e.tags.join(" "));
        }
    }
    if let Some(c) = &x.class {
        let mut rules = Vec::new();
        if let Some(t) = c.rules.ttl {
            rules.push(format!("ttl {t}"));
        }
        if let Some(k) = c.rules.keep_for {
            rules.push(format!("keep_for {k}"));
        }
        if let Some(m) = c.rules.max_count {
            rules.push(format!("max_count {m}"));
        }
        if let Some(m) = c.rules.max_total {
            rules.push(format!("max_total {m}"));
        }
        let _ = writeln!(
            o,
            "  class {} ({}; matched by {:?}): {}; age from {}",
            c.rules.name,
            c.rules.lifecycle,
            c.pattern,
            if rules.is_empty() {
                "no rules".into()
            } else {
                rules.join(", ")
            },
            c.rules.age_from
        );
    }
    if let Some(Verdict::Delete { rule, .. }) = &x.verdict {
        match x.in_use.is_empty() {
            true => {
                let _ = writeln!(o, "  verdict: delete by {rule}");
            }
            false => {
                let _ = writeln!(
                    o,
                    "  verdict: due by {rule}, but refused while in use ({})",
                    x.in_use.join(", ")
                );
            }
        }
    }
    if let Some(b) = &x.offload_backoff {
        let _ = writeln!(o, "  offload backing off: {b}");
    }
    if let Some(p) = &x.pressure {
        let _ = writeln!(o, "  under disk pressure: {p}");
    }
    for h in &x.history {
        let _ = writeln!(
            o,
            "  {}  {} {} ({}{}): {}",
            fmt_time(h.at),
            h.action,
            h.outcome,
            h.trigger,
            h.rule
                .as_ref()
                .map(|r| format!(", {r}"))
                .unwrap_or_default(),
            h.reason
        );
    }
    o
}
