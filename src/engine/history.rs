//! `history`: the audit read newest first, filtered and paged — "what was deleted in the
//! last hour, and why" in one command (`mediaretain history`, `GET /v1/history`).
//!
//! Every deletion, refusal, failure, pin and offload is one audit record, segments too
//! (the journal sums segment deletions up per minute; the audit never does). The filters
//! that SQL can serve (class, outcome, trigger, one exact path) walk an index in time
//! order (migration 11), so a page costs its own rows; a rule is filtered by SQL on the
//! walk in time order (an index on it would cost every deletion). What only Rust can decide (a glob,
//! `no_segments`, a store alone) is filtered on the walk, which reads at most
//! [`MAX_SCAN`] records per request: a page that is not full by then says how far back it
//! searched and hands a cursor to go on from there. A cursor is the id of the last record
//! a page holds (or read): the next page is what comes after it in time order, so new
//! records never shift the pages after the first.

use super::*;
use crate::registry::{AuditColumn, AuditQuery, WalkCost};

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
    /// The page after this cursor (a previous answer's `next_before`).
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
    pub next_before: Option<i64>,
    /// Audit records read to answer (matching or not).
    pub scanned: u64,
    /// Set when the read stopped at its bound before the page was full: how far back it
    /// searched (older records: `before` = `next`).
    #[serde(with = "crate::units::rfc3339_opt")]
    pub searched_to: Option<Nanos>,
}

/// A cursor: the id of the last record a page holds (or read), as a number.
fn parse_cursor(s: &str) -> Result<i64> {
    s.trim().parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        EngineError::BadInput(format!(
            "bad cursor {s:?}: give the \"next_before\" of a history answer (a record's id), as the table's last line says"
        ))
    })
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

/// Collects a page of `limit` records that `sieve` keeps from a walk, reading at most
/// `max_scan` records; one record more than the page says that there is a next page.
fn page(
    walk: impl FnOnce(&mut dyn FnMut(i64, AuditRecord) -> bool) -> crate::registry::Result<WalkCost>,
    sieve: &Sieve,
    limit: u64,
    max_scan: u64,
) -> Result<History> {
    let mut records = Vec::new();
    let mut scanned = 0u64;
    let mut last: Option<(Nanos, i64)> = None;
    let mut last_kept: Option<i64> = None;
    let mut more = false;
    walk(&mut |id, rec| {
        scanned += 1;
        last = Some((rec.at, id));
        if sieve.keeps(&rec) {
            if records.len() as u64 == limit {
                more = true;
                return false;
            }
            last_kept = Some(id);
            records.push(rec);
        }
        scanned < max_scan
    })?;
    let bounded = !more && scanned >= max_scan;
    let next_before = match (more, bounded) {
        (true, _) => last_kept,
        (false, true) => last.map(|l| l.1),
        _ => None,
    };
    Ok(History {
        records,
        next_before,
        scanned,
        searched_to: bounded.then(|| last.map(|l| l.0)).flatten(),
    })
}

impl Engine {
    /// A page of the audit, newest first (see the module's notes). Bad input — a span, a
    /// glob, a cursor, a class or store nobody knows — is a 4xx naming what to write.
    pub fn history(&self, req: &HistoryRequest) -> Result<History> {
        let (q, sieve, limit) = self.history_query(req)?;
        page(
            |f| Registry::walk_audit_apart(&self.registry_path, &q, f),
            &sieve,
            limit,
            MAX_SCAN,
        )
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

    fn rec(i: i64, path: &str) -> AuditRecord {
        AuditRecord {
            at: 1_000_000_000 * i,
            store: "media".into(),
            path: path.into(),
            action: "delete".into(),
            outcome: "deleted".into(),
            class: Some(
                if path.starts_with("hls/") {
                    "hls"
                } else {
                    "rec"
                }
                .into(),
            ),
            rule: Some("keep_for".into()),
            reason: "past keep_for".into(),
            trigger: "schedule".into(),
            bytes: Some(1),
        }
    }

    /// 1,000 segment records and, oldest, 3 recordings; a glob for the recordings reads at
    /// most 300 records a request: two pages stop at the bound (empty, saying how far back
    /// they searched, with a cursor), the third finds the recordings, and no page reads
    /// more than its bound.
    #[test]
    fn a_filter_only_the_walk_decides_reads_a_bounded_number_of_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let mut all: Vec<AuditRecord> = (1..=3).map(|i| rec(i, &format!("rec/{i}.mp4"))).collect();
        all.extend((4..=1003).map(|i| rec(i, &format!("hls/s/{i}.ts"))));
        r.record(&[], &all).unwrap();
        let sieve = Sieve {
            glob: Some(crate::config::glob("rec/**").unwrap().compile_matcher()),
            skip_classes: Default::default(),
        };
        let mut q = AuditQuery::default();
        let mut pages = Vec::new();
        loop {
            let h = page(|f| r.walk_audit(&q, f), &sieve, 10, 300).unwrap();
            assert!(h.scanned <= 300, "{}", h.scanned);
            let end = h.next_before.is_none();
            q.before = h.next_before;
            pages.push(h);
            if end {
                break;
            }
        }
        let found: Vec<usize> = pages.iter().map(|h| h.records.len()).collect();
        assert_eq!(found, [0, 0, 0, 3], "{pages:#?}");
        assert_eq!(pages[0].searched_to, Some(1_000_000_000 * (1003 - 299)));
        assert_eq!(pages[3].searched_to, None);
        // A full page has a next one exactly when more match.
        let h = page(
            |f| r.walk_audit(&AuditQuery::default(), f),
            &sieve_none(),
            1003,
            10_000,
        )
        .unwrap();
        assert_eq!((h.records.len(), h.next_before), (1003, None));
        let h = page(
            |f| r.walk_audit(&AuditQuery::default(), f),
            &sieve_none(),
            1002,
            10_000,
        )
        .unwrap();
        assert_eq!(h.next_before, Some(2));
    }

    fn sieve_none() -> Sieve {
        Sieve {
            glob: None,
            skip_classes: Default::default(),
        }
    }

    #[test]
    fn cursors_read_back_and_bad_ones_are_named() {
        assert_eq!(parse_cursor("42").unwrap(), 42);
        for bad in ["", "a", "0", "-3", "1-2", "1.5", "99999999999999999999"] {
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
