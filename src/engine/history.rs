//! `history`: the audit read newest first, filtered and paged — "what was deleted in the
//! last hour, and why" in one command (`mediaretain history`, `GET /v1/history`).
//!
//! Every deletion, refusal, failure, pin and offload is one audit record, segments too
//! (the journal sums segment deletions up per minute; the audit never does). The filters
//! that SQL can serve (class, rule, outcome, trigger, one exact path) walk an index in time
//! order (migration 11), so a page costs its own rows. What only Rust can decide (a glob,
//! `no_segments`, a store alone) is filtered on the walk, which reads at most
//! [`MAX_SCAN`] records per request: a page that is not full by then says how far back it
//! searched and hands a cursor to go on from there. A cursor names the last record read
//! (its time and id), so new records never shift the pages after it.

use super::*;
use crate::registry::{AuditColumn, AuditQuery};

/// At most this many audit records are read to answer one request.
pub const MAX_SCAN: u64 = 100_000;
/// Records per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u64 = 50;
/// The largest `limit`.
pub const MAX_LIMIT: u64 = 10_000;

/// The outcomes the audit records.
pub const OUTCOMES: &[&str] = &["deleted", "refused", "failed", "vanished", "done"];
/// The rules that delete ([`Rule`]'s words).
pub const RULES: &[&str] = &[
    "ttl",
    "keep_for",
    "max_count",
    "max_total",
    "pressure",
    "offloaded",
    "manual",
    "duplicate",
];
/// What starts the daemon's and the CLI's actions (hooks add their own words).
pub const TRIGGERS: &[&str] = &[
    "schedule", "pressure", "watchdog", "startup", "reload", "recover", "gc", "cli", "api",
    "manual",
];

/// A `history` request: the CLI's flags, `GET /v1/history`'s query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRequest {
    /// Only records of the last span (`1h`, `7d`), or since an RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only this class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Only this rule (`ttl`, `keep_for`, `max_count`, `max_total`, `pressure`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Only this trigger (`schedule`, `pressure`, `manual`, `cli`, `api`, a hook's word).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Only this path (exactly), or the paths a glob matches: absolute inside a store
    /// root, or `STORE:KEY` / `STORE:GLOB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only this store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Only this outcome (`deleted`, `refused`, `failed`, `vanished`, `done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// At most this many records (default 50, at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The page after this cursor (a previous answer's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Leave out the records of segment classes (their deletions are the bulk).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_segments: bool,
}

/// A page of the audit, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The records, newest first.
    pub records: Vec<AuditRecord>,
    /// The cursor of the next (older) page, to pass as `before`; null: nothing older matches.
    pub next: Option<String>,
    /// Audit records read to answer (matching or not).
    pub scanned: u64,
    /// Set when the read stopped at its bound before the page was full: how far back it
    /// searched (older records: `before` = `next`).
    #[serde(with = "crate::units::rfc3339_opt")]
    pub searched_to: Option<Nanos>,
}

/// A record's place in the walk, as text: `AT-ID` (opaque to clients).
fn cursor(at: Nanos, id: i64) -> String {
    format!("{at}-{id}")
}

fn parse_cursor(s: &str) -> Result<(Nanos, i64)> {
    let bad = || {
        EngineError::BadInput(format!(
            "bad cursor {s:?}: pass the \"next\" of a history answer (as --before) unchanged"
        ))
    };
    let (at, id) = s.trim().split_once('-').ok_or_else(bad)?;
    let at: Nanos = at.parse().map_err(|_| bad())?;
    let id: i64 = id.parse().map_err(|_| bad())?;
    if at < 0 || id <= 0 {
        return Err(bad());
    }
    Ok((at, id))
}

/// `--since`: a span back from `now`, or an RFC 3339 time.
fn parse_since(s: &str, now: Nanos) -> Result<Nanos> {
    if let Ok(d) = s.parse::<crate::units::Dur>() {
        let ns = i64::try_from(d.0.as_nanos()).unwrap_or(i64::MAX);
        return Ok(now.saturating_sub(ns));
    }
    crate::units::parse_time(s).map_err(|_| {
        EngineError::BadInput(format!(
            "since: invalid span {s:?}: write a span back from now like \"1h\", \"30m\", \"7d\" or \"1h 30m\", or an RFC 3339 time like \"2026-11-22T08:00:00Z\""
        ))
    })
}

/// A word of a closed list, or a 4xx naming the list (and the nearest).
fn one_of(what: &str, v: &str, known: &[&str]) -> Result<()> {
    if known.contains(&v) {
        return Ok(());
    }
    let hint = crate::config::did_you_mean(v, known.iter().copied())
        .map(|k| format!("; did you mean {k:?}?"))
        .unwrap_or_default();
    Err(EngineError::BadInput(format!(
        "unknown {what} {v:?}{hint} ({what}s: {})",
        known.join(", ")
    )))
}

/// What the walk filters itself: a glob and the classes left out.
struct Sieve {
    glob: Option<globset::GlobMatcher>,
    skip_classes: std::collections::HashSet<String>,
}

impl Sieve {
    fn keeps(&self, r: &AuditRecord) -> bool {
        if let Some(c) = &r.class
            && self.skip_classes.contains(c)
        {
            return false;
        }
        self.glob.as_ref().is_none_or(|g| g.is_match(&r.path))
    }
}

impl Engine {
    /// A page of the audit, newest first (see the module's notes). Bad input — a span, a
    /// glob, a cursor, a class or store nobody knows — is a 4xx naming what to write.
    pub fn history(&self, req: &HistoryRequest) -> Result<History> {
        let (q, sieve, limit) = self.history_query(req)?;
        let mut records = Vec::new();
        let mut scanned = 0u64;
        let mut last: Option<(Nanos, i64)> = None;
        let mut last_kept: Option<(Nanos, i64)> = None;
        let mut more = false;
        Registry::walk_audit_apart(&self.registry_path, &q, |id, rec| {
            scanned += 1;
            last = Some((rec.at, id));
            if sieve.keeps(&rec) {
                if records.len() as u64 == limit {
                    // One more than the page: there is a next page.
                    more = true;
                    return false;
                }
                last_kept = Some((rec.at, id));
                records.push(rec);
            }
            scanned < MAX_SCAN
        })?;
        let bounded = !more && scanned >= MAX_SCAN;
        let next = match (more, bounded) {
            (true, _) => last_kept.map(|(at, id)| cursor(at, id)),
            (false, true) => last.map(|(at, id)| cursor(at, id)),
            _ => None,
        };
        Ok(History {
            records,
            next,
            scanned,
            searched_to: bounded.then(|| last.map(|l| l.0)).flatten(),
        })
    }

    /// The request checked and turned into what SQL filters and what the walk does.
    fn history_query(&self, req: &HistoryRequest) -> Result<(AuditQuery, Sieve, u64)> {
        let rt = self.runtime();
        let knows = |col, v: &str| -> Result<bool> {
            Ok(Registry::audit_knows_apart(&self.registry_path, col, v)?)
        };
        let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(EngineError::BadInput(format!(
                "limit {limit}: give 1 to {MAX_LIMIT} (and --before for the next page)"
            )));
        }
        let mut q = AuditQuery {
            since: req
                .since
                .as_deref()
                .map(|s| parse_since(s, self.now()))
                .transpose()?,
            before: req.before.as_deref().map(parse_cursor).transpose()?,
            ..Default::default()
        };
        if let Some(c) = &req.class {
            // A class no longer configured still has its history.
            if let Err(e) = known_class(&rt.config, c)
                && !knows(AuditColumn::Class, c)?
            {
                return Err(e);
            }
            q.class = Some(c.clone());
        }
        if let Some(s) = &req.store {
            let configured =
                rt.store(s).is_some() || rt.remotes.iter().any(|r| r.name() == s.as_str());
            if !configured && !knows(AuditColumn::Store, s)? {
                let names: Vec<&str> = rt
                    .stores
                    .iter()
                    .map(|s| s.name())
                    .chain(rt.remotes.iter().map(|r| r.name()))
                    .collect();
                let hint = crate::config::did_you_mean(s, names.iter().copied())
                    .map(|k| format!("; did you mean {k:?}?"))
                    .unwrap_or_default();
                return Err(EngineError::BadInput(format!(
                    "unknown store {s:?}{hint} (stores: {})",
                    names.join(", ")
                )));
            }
            q.store = Some(s.clone());
        }
        if let Some(r) = &req.rule {
            if !knows(AuditColumn::Rule, r)? {
                one_of("rule", r, RULES)?;
            }
            q.rule = Some(r.clone());
        }
        if let Some(o) = &req.outcome {
            one_of("outcome", o, OUTCOMES)?;
            q.outcome = Some(o.clone());
        }
        if let Some(t) = &req.trigger {
            if !knows(AuditColumn::Trigger, t)? {
                one_of("trigger", t, TRIGGERS)?;
            }
            q.trigger = Some(t.clone());
        }
        let mut glob = None;
        if let Some(arg) = &req.path {
            let (store, rel) = rt.resolve(arg)?;
            if q.store.as_ref().is_some_and(|s| *s != store) {
                return Err(EngineError::BadInput(format!(
                    "path {arg:?} is in store {store:?}, not in store {:?}",
                    q.store.as_deref().unwrap_or_default()
                )));
            }
            q.store = Some(store);
            if arg.contains(['*', '?', '[', '{']) {
                let Some(pattern) = rel.to_str() else {
                    return Err(EngineError::BadInput(format!(
                        "glob \"{}\" names bytes that are not UTF-8: a glob cannot; match them with '?' or '*'",
                        crate::spell::show(&rel)
                    )));
                };
                crate::inuse::leases::check_pattern(pattern).map_err(EngineError::BadInput)?;
                let g = crate::config::glob(pattern).map_err(|e| {
                    EngineError::BadInput(format!("bad glob {pattern:?}: {}", e.kind()))
                })?;
                glob = Some(g.compile_matcher());
            } else {
                q.path = Some(rel);
            }
        }
        let skip_classes = match req.no_segments {
            true => rt
                .config
                .classes
                .iter()
                .filter(|c| c.lifecycle == crate::config::Lifecycle::Segment)
                .map(|c| c.name.clone())
                .collect(),
            false => Default::default(),
        };
        Ok((q, Sieve { glob, skip_classes }, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_bad_ones_are_named() {
        assert_eq!(
            parse_cursor(&cursor(1_700_000_000_123, 42)).unwrap(),
            (1_700_000_000_123, 42)
        );
        for bad in ["", "12", "a-1", "1-b", "1-0", "-1-2", "1-2-3"] {
            let e = parse_cursor(bad).unwrap_err();
            assert!(e.to_string().contains("bad cursor"), "{bad}: {e}");
            assert_eq!(e.exit_code(), crate::exit::DATAERR);
        }
        let now = 10_000_000_000_000;
        assert_eq!(parse_since("1h", now).unwrap(), now - 3_600_000_000_000);
        assert!(parse_since("1 hour ago", now).is_err());
        assert_eq!(
            parse_since("1970-01-01T00:00:01Z", now).unwrap(),
            1_000_000_000
        );
    }
}
