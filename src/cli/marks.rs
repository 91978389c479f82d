//! `retain`, `unretain`, `tag`, and leases (`lease`, `renew`, `release`, `leases`): what
//! operators and consumers put on files.

use super::*;

/// `mediaretain retain|unretain|tag`.
pub(super) async fn mark(b: &Backend, cmd: Cmd) -> Result<(), Failure> {
    let (mark, paths) = match cmd {
        Cmd::Retain { paths } => (Mark::Retain(true), paths),
        Cmd::Unretain { paths } => (Mark::Retain(false), paths),
        Cmd::Tag { paths, add, remove } if !add.is_empty() || !remove.is_empty() => {
            (Mark::Tags { add, remove }, paths)
        }
        Cmd::Tag { .. } => {
            return Err(Failure::new(
                exit::USAGE,
                "tag: give --add TAG and/or --remove TAG",
            ));
        }
        _ => unreachable!("matched above"),
    };
    let (uri, body) = match &mark {
        Mark::Retain(true) => (
            "/v1/retain",
            serde_json::to_value(PathsRequest {
                paths: paths.clone(),
                trigger: Some("cli".into()),
            }),
        ),
        Mark::Retain(false) => (
            "/v1/unretain",
            serde_json::to_value(PathsRequest {
                paths: paths.clone(),
                trigger: Some("cli".into()),
            }),
        ),
        Mark::Tags { add, remove } => (
            "/v1/tag",
            serde_json::to_value(TagRequest {
                paths: paths.clone(),
                add: add.clone(),
                remove: remove.clone(),
                trigger: Some("cli".into()),
            }),
        ),
    };
    let body = body.map_err(|e| Failure::new(exit::SOFTWARE, e.to_string()))?;
    let m = mark.clone();
    let rs: Vec<MarkResult> = b
        .ask(Method::POST, uri, Some(&body), move |e| {
            e.mark(&paths, &m, "cli")
        })
        .await?;
    let mut bad = 0;
    for r in &rs {
        match (&r.error, &r.store, &r.path) {
            (Some(err), _, _) => {
                bad += 1;
                eprintln!("{}: {err}", crate::spell::canonical(&r.arg));
            }
            (None, Some(s), Some(p)) => {
                let what = match (&mark, r.changed) {
                    (Mark::Retain(true), true) => "retained",
                    (Mark::Retain(true), false) => "already retained",
                    (Mark::Retain(false), true) => "unretained",
                    (Mark::Retain(false), false) => "was not retained",
                    (Mark::Tags { .. }, true) => "tagged",
                    (Mark::Tags { .. }, false) => "tags unchanged",
                };
                say!("{what}: {}", loc(s, p));
            }
            _ => {}
        }
    }
    if bad > 0 {
        return Err(Failure::new(
            exit::DATAERR,
            format!(
                "{bad} of {} refused",
                crate::units::plural(rs.len() as u64, "path")
            ),
        ));
    }
    Ok(())
}

/// `mediaretain lease`.
pub(super) async fn lease(
    b: &Backend,
    path: String,
    ttl: crate::units::Dur,
    holder: String,
    json: bool,
) -> Result<(), Failure> {
    let req = LeaseRequest {
        path: path.clone(),
        ttl,
        holder: holder.clone(),
    };
    let l: Lease = b
        .ask(Method::POST, "/v1/lease", Some(&req), move |e| {
            e.lease(&path, ttl, &holder, Caller::Admin)
        })
        .await?;
    if json {
        return print_json(&l);
    }
    say!("{}", l.id);
    Ok(())
}

/// `mediaretain renew`.
pub(super) async fn renew(b: &Backend, id: i64, ttl: crate::units::Dur) -> Result<(), Failure> {
    let req = LeaseIdRequest { id, ttl: Some(ttl) };
    let l: Lease = b
        .ask(Method::POST, "/v1/renew", Some(&req), move |e| {
            e.renew(id, ttl, Caller::Admin)
        })
        .await?;
    say!("lease {} until {}", l.id, fmt_time(l.expires));
    Ok(())
}

/// `mediaretain release`.
pub(super) async fn release(b: &Backend, id: i64) -> Result<(), Failure> {
    let req = LeaseIdRequest { id, ttl: None };
    let r: Released = b
        .ask(Method::POST, "/v1/release", Some(&req), move |e| {
            e.release(id, Caller::Admin)
                .map(|()| Released { released: id })
        })
        .await?;
    say!("released lease {}", r.released);
    Ok(())
}

/// `mediaretain leases`.
pub(super) async fn leases(b: &Backend, json: bool) -> Result<(), Failure> {
    let ls: Vec<Lease> = b
        .ask(Method::GET, "/v1/leases", NONE, |e| e.leases())
        .await?;
    show(json, &ls, || {
        let mut o = String::new();
        let _ = writeln!(o, "{:>6}  {:<40} {:<16} UNTIL", "ID", "PATH", "HOLDER");
        for l in &ls {
            let _ = writeln!(
                o,
                "{:>6}  {:<40} {:<16} {}",
                l.id,
                format!("{}:{}", l.store, l.pattern),
                l.holder,
                fmt_time(l.expires)
            );
        }
        o
    })
}
