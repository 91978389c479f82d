//! The lifecycle policy: a pure function of entries, config and `now`.
//!
//! The same [`plan`] is printed by `mediaretain plan`, executed by the daemon and explained
//! by `explain`, so what an operator reads is what happens. Entries of one class are fed
//! newest first; a [`ClassPlanner`] folds over them keeping only running counters, so
//! planning a class of a million files needs no more memory than the actions it emits.

pub mod dedupe;
pub mod pressure;
mod windowed;

pub use windowed::{Census, Window, plan_windowed};
use windowed::{only_time_decides, plan_class_windowed};

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{Class, Config, Lifecycle};
use crate::registry::Entry;
use crate::units::{ByteSize, Dur, Nanos, fmt_span, fmt_time};

/// The rule that makes an entry go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A temporary file past its ttl.
    Ttl,
    /// A segment or recording past keep_for.
    KeepFor,
    /// Beyond the class's max_count (oldest first).
    MaxCount,
    /// Beyond the class's max_total (oldest first).
    MaxTotal,
    /// Freed by the disk-pressure watchdog.
    Pressure,
    /// A local file whose remote copy is verified, of a class with `delete_local`.
    Offloaded,
    /// Named by an operator or a platform: `mediaretain rm`, `POST /v1/rm`.
    Manual,
    /// An identical copy of a file that stays (a class with `dedupe`).
    Duplicate,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Ttl => "ttl",
            Rule::KeepFor => "keep_for",
            Rule::MaxCount => "max_count",
            Rule::MaxTotal => "max_total",
            Rule::Pressure => "pressure",
            Rule::Offloaded => "offloaded",
            Rule::Manual => "manual",
            Rule::Duplicate => "duplicate",
        })
    }
}

/// What the policy decides for one entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// It goes, by `rule`.
    Delete {
        /// The rule.
        rule: Rule,
        /// Why, in words.
        reason: String,
    },
    /// It stays.
    Keep {
        /// Why, in words.
        reason: String,
        /// When a time rule will make it eligible (None: no time rule applies).
        #[serde(with = "crate::units::rfc3339_opt")]
        eligible_at: Option<Nanos>,
    },
}

/// The time rule of a class: `ttl` for temporary classes, `keep_for` for the others.
pub fn time_limit(class: &Class) -> Option<(Rule, Dur)> {
    match class.lifecycle {
        Lifecycle::Temporary => class.ttl.map(|t| (Rule::Ttl, t)),
        Lifecycle::Segment | Lifecycle::Recording => class.keep_for.map(|k| (Rule::KeepFor, k)),
    }
}

/// Decides entries of one class, fed newest first.
#[derive(Debug)]
pub struct ClassPlanner<'a> {
    class: &'a Class,
    now: Nanos,
    kept_files: u64,
    kept_bytes: u64,
    over: Option<Rule>,
    dupes: Option<&'a HashMap<i64, dedupe::DupeOf>>,
    hold: Option<&'a str>,
}

impl<'a> ClassPlanner<'a> {
    /// A planner for `class` at time `now`.
    pub fn new(class: &'a Class, now: Nanos) -> Self {
        ClassPlanner {
            class,
            now,
            kept_files: 0,
            kept_bytes: 0,
            over: None,
            dupes: None,
            hold: None,
        }
    }

    /// Holds the time rules (ttl, keep_for): an entry they would delete is kept, `hold`
    /// saying why (the wall clock was found jumped: its age is not known). Budgets and
    /// duplicates still apply.
    pub fn holding_time(mut self, hold: Option<&'a str>) -> Self {
        self.hold = hold;
        self
    }

    /// Deletes the entries of `dupes` as duplicates (see [`dedupe::decide_class`]).
    pub fn with_dupes(mut self, dupes: &'a HashMap<i64, dedupe::DupeOf>) -> Self {
        self.dupes = Some(dupes);
        self
    }

    /// The verdict for `e`; must be called in newest-first order.
    pub fn decide(&mut self, e: &Entry) -> Verdict {
        let c = self.class;
        let age_ref = e.age_ref(c.age_from);
        let age = self.now.saturating_sub(age_ref);
        let age_word = match c.age_from {
            crate::config::AgeFrom::Mtime => "modified",
            crate::config::AgeFrom::FirstSeen => "first seen",
        };
        if e.retained {
            self.kept_files += 1;
            self.kept_bytes += e.size;
            return Verdict::Keep {
                reason: "retained: pinned by an operator".into(),
                eligible_at: None,
            };
        }
        // Still being written: in use, kept, and counted toward budgets like any kept file.
        let quiet = c.quiet_period.as_nanos_i64();
        let since_write = self.now.saturating_sub(e.mtime);
        if e.being_written(quiet, self.now) {
            self.kept_files += 1;
            self.kept_bytes += e.size;
            return Verdict::Keep {
                reason: format!(
                    "in use: still being written (modified {} ago, within quiet_period {})",
                    fmt_span(since_write),
                    c.quiet_period
                ),
                eligible_at: Some(e.mtime.saturating_add(quiet)),
            };
        }
        if let Some(o) = &c.offload {
            match &e.copy {
                Some(copy) if o.delete_local => {
                    return Verdict::Delete {
                        rule: Rule::Offloaded,
                        reason: format!("offloaded: its copy {copy} is verified (delete_local)"),
                    };
                }
                Some(_) => {}
                None if crate::store::offload_key(&c.store, &e.path).is_none() => {
                    return Verdict::Keep {
                        reason: format!(
                            "cannot be offloaded to {}: its name is not valid UTF-8, which S3 keys must be, or has a component starting with .mediaretain, which control objects use (offload before delete keeps it; rename it to let it go)",
                            o.to
                        ),
                        eligible_at: None,
                    };
                }
                None => {
                    // Offload before delete: no rule removes the only copy.
                    return match self.decide_rules(e, age_ref, age, age_word) {
                        Verdict::Delete { rule, reason } => Verdict::Keep {
                            reason: format!(
                                "waiting for its offload to {} (offload before delete); then: {reason} ({rule})",
                                o.to
                            ),
                            eligible_at: None,
                        },
                        Verdict::Keep {
                            reason,
                            eligible_at,
                        } => Verdict::Keep {
                            reason: format!("not yet offloaded to {}; {reason}", o.to),
                            eligible_at,
                        },
                    };
                }
            }
        }
        self.decide_rules(e, age_ref, age, age_word)
    }

    /// The time and budget rules, for an entry that is neither retained nor in use.
    fn decide_rules(&mut self, e: &Entry, age_ref: Nanos, age: Nanos, age_word: &str) -> Verdict {
        let c = self.class;
        let limit = time_limit(self.class);
        let mut held = None;
        if let Some((rule, lim)) = limit.filter(|(_, lim)| age >= lim.as_nanos_i64()) {
            if let Some(hold) = self.hold {
                // Not by the time rule; budgets and duplicates still decide it below.
                held = Some(format!(
                    "{age_word} {} ago by the wall clock, past its {rule} of {lim}, but {hold}",
                    fmt_span(age)
                ));
            } else {
                return Verdict::Delete {
                    rule,
                    reason: format!("{age_word} {} ago, past its {rule} of {lim}", fmt_span(age)),
                };
            }
        }
        // A copy of a file that stays frees its bytes before any budget counts it.
        if let Some(d) = self.dupes.and_then(|m| m.get(&e.id)) {
            return Verdict::Delete {
                rule: Rule::Duplicate,
                reason: d.reason(),
            };
        }
        if self.over.is_none() {
            if c.max_count.is_some_and(|m| self.kept_files + 1 > m) {
                self.over = Some(Rule::MaxCount);
            } else if c.max_total.is_some_and(|m| self.kept_bytes + e.size > m.0) {
                self.over = Some(Rule::MaxTotal);
            }
        }
        if let Some(rule) = self.over {
            let reason = match rule {
                Rule::MaxCount => format!(
                    "beyond max_count {}: {} newer files are kept",
                    c.max_count.unwrap_or(0),
                    self.kept_files
                ),
                _ => format!(
                    "beyond max_total {}: {} of newer files are kept",
                    c.max_total.unwrap_or_default(),
                    ByteSize(self.kept_bytes)
                ),
            };
            return Verdict::Delete { rule, reason };
        }
        self.kept_files += 1;
        self.kept_bytes += e.size;
        if let Some(reason) = held {
            return Verdict::Keep {
                reason,
                eligible_at: None,
            };
        }
        let mut reason = match limit {
            Some((rule, lim)) => format!(
                "{} {} ago, within its {rule} of {lim}",
                age_word,
                fmt_span(age)
            ),
            None => format!("{} class without keep_for", c.lifecycle),
        };
        if let Some(m) = c.max_count {
            reason.push_str(&format!("; newest {} of max_count {m}", self.kept_files));
        }
        if let Some(m) = c.max_total {
            reason.push_str(&format!(
                "; {} of max_total {m} used up to here",
                ByteSize(self.kept_bytes)
            ));
        }
        Verdict::Keep {
            reason,
            eligible_at: limit.map(|(_, l)| age_ref.saturating_add(l.as_nanos_i64())),
        }
    }
}

/// One planned deletion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Action {
    /// The entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// Its class (in JSON only once: the entry's `class`).
    #[serde(skip_serializing, default)]
    pub class_name: String,
    /// The rule that fired.
    pub rule: Rule,
    /// Why.
    pub reason: String,
    /// The time its age counts from.
    #[serde(with = "crate::units::rfc3339")]
    pub age_ref: Nanos,
    /// Set by the engine when a dry run or `plan` asks: why the pass would refuse it now
    /// (in use, retained since, no verified copy…). The pure planner leaves it empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_refuse: Option<String>,
    /// For a duplicate: the copy that stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dupe_of: Option<dedupe::DupeOf>,
}

/// One planned offload: a local file copied to an S3 store (same key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OffloadAction {
    /// The local entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// Its class (in JSON only once: the entry's `class`).
    #[serde(skip_serializing, default)]
    pub class_name: String,
    /// The S3 store.
    pub to: String,
}

/// Per-class summary of a plan.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ClassSummary {
    /// Class name.
    pub class: String,
    /// Store name.
    pub store: String,
    /// Files in the class.
    pub files: u64,
    /// Bytes in the class.
    pub bytes: u64,
    /// Files the plan deletes.
    pub delete_files: u64,
    /// Bytes the plan deletes.
    pub delete_bytes: u64,
    /// Retained files.
    pub retained: u64,
}

/// What would happen at `at`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Plan {
    /// The time the plan is for.
    #[serde(with = "crate::units::rfc3339")]
    pub at: Nanos,
    /// Deletions, oldest first.
    pub actions: Vec<Action>,
    /// Offloads due, oldest first.
    #[serde(default)]
    pub offloads: Vec<OffloadAction>,
    /// Per class.
    pub classes: Vec<ClassSummary>,
    /// The earliest time a kept entry becomes eligible by a time rule.
    #[serde(with = "crate::units::rfc3339_opt")]
    pub next_due: Option<Nanos>,
    /// Entries read to make it (each time one was fed to the planner).
    #[serde(default)]
    pub read: u64,
}

impl Plan {
    /// Total bytes the plan deletes.
    pub fn delete_bytes(&self) -> u64 {
        self.actions.iter().map(|a| a.entry.size).sum()
    }
}

/// Plans every class of `cfg` at `now`. `entries_of(class, sink)` must feed the entries of
/// `class` to `sink` newest first by the class's age reference.
/// `groups_of(class)` gives the identical files of a dedupe class ([`dedupe::groups`]).
pub fn plan<E>(
    cfg: &Config,
    now: Nanos,
    entries_of: impl FnMut(&Class, &mut dyn FnMut(Entry)) -> Result<(), E>,
    groups_of: impl FnMut(&Class) -> Result<Vec<dedupe::Group>, E>,
) -> Result<Plan, E> {
    plan_classes_held(cfg, now, None, |_| true, entries_of, groups_of)
}

/// Like [`plan`], for the classes `which` selects only (e.g. those that offload).
pub fn plan_classes<E>(
    cfg: &Config,
    now: Nanos,
    which: impl Fn(&Class) -> bool,
    entries_of: impl FnMut(&Class, &mut dyn FnMut(Entry)) -> Result<(), E>,
    groups_of: impl FnMut(&Class) -> Result<Vec<dedupe::Group>, E>,
) -> Result<Plan, E> {
    plan_classes_held(cfg, now, None, which, entries_of, groups_of)
}

/// Like [`plan_classes`], with every time-based decision held for `hold` (why, in
/// words): no deletion by ttl or keep_for, no offload by `after` (see
/// [`ClassPlanner::holding_time`]); budgets, duplicates and verified copies still count.
pub fn plan_classes_held<E>(
    cfg: &Config,
    now: Nanos,
    hold: Option<&str>,
    which: impl Fn(&Class) -> bool,
    mut entries_of: impl FnMut(&Class, &mut dyn FnMut(Entry)) -> Result<(), E>,
    groups_of: impl FnMut(&Class) -> Result<Vec<dedupe::Group>, E>,
) -> Result<Plan, E> {
    plan_core(
        cfg,
        now,
        hold,
        which,
        |class, window, sink| {
            debug_assert_eq!(window, Window::All);
            entries_of(class, &mut |e| {
                sink(e);
            })
        },
        None,
        groups_of,
    )
}

/// Counts a class's entries ([`plan_windowed`]'s `census_of`).
type CensusOf<'a, E> = dyn FnMut(&Class) -> Result<Census, E> + 'a;

fn plan_core<E>(
    cfg: &Config,
    now: Nanos,
    hold: Option<&str>,
    which: impl Fn(&Class) -> bool,
    mut entries_of: impl FnMut(&Class, Window, &mut dyn FnMut(Entry) -> bool) -> Result<(), E>,
    mut census_of: Option<&mut CensusOf<'_, E>>,
    mut groups_of: impl FnMut(&Class) -> Result<Vec<dedupe::Group>, E>,
) -> Result<Plan, E> {
    let mut p = Plan {
        at: now,
        ..Plan::default()
    };
    for class in cfg.classes.iter().filter(|c| which(c)) {
        if let Some(census_of) = census_of.as_mut()
            && class.dedupe.is_none()
            && class.offload.is_none()
            && class.age_from == crate::config::AgeFrom::Mtime
        {
            let census = census_of(class)?;
            if only_time_decides(class, &census) {
                plan_class_windowed(&mut p, class, now, hold, census, &mut entries_of)?;
                continue;
            }
        }
        let groups = match class.dedupe {
            Some(_) => groups_of(class)?,
            None => Vec::new(),
        };
        let first_action = p.actions.len();
        let mut sum = ClassSummary {
            class: class.name.clone(),
            store: class.store.clone(),
            ..Default::default()
        };
        let mut next_due = p.next_due;
        let read = &mut p.read;
        let entries = |sink: &mut dyn FnMut(Entry)| {
            entries_of(class, Window::All, &mut |e| {
                *read += 1;
                sink(e);
                true
            })
        };
        dedupe::decide_class_held(
            class,
            now,
            hold,
            &groups,
            entries,
            |e: Entry, verdict, of| {
                sum.files += 1;
                sum.bytes += e.size;
                sum.retained += e.retained as u64;
                let offloadable = e.copy.is_none() && e.path.to_str().is_some();
                if let Some(o) = class.offload.as_ref().filter(|_| offloadable) {
                    // Due once old enough and quiet — or at once when its server announced it
                    // complete; in-use checks come at execution.
                    let due = match e.complete {
                        Some(_) => now,
                        // `after` is an age: not known while the clock is held.
                        None if hold.is_some() => Nanos::MAX,
                        None => (e
                            .age_ref(class.age_from)
                            .saturating_add(o.after.as_nanos_i64()))
                        .max(e.mtime.saturating_add(class.quiet_period.as_nanos_i64())),
                    };
                    if due == Nanos::MAX {
                        // Held: neither due nor due at a known time.
                    } else if due <= now {
                        p.offloads.push(OffloadAction {
                            entry: e.clone(),
                            class_name: class.name.clone(),
                            to: o.to.clone(),
                        });
                    } else {
                        next_due = Some(next_due.map_or(due, |n: Nanos| n.min(due)));
                    }
                }
                match verdict {
                    Verdict::Delete { rule, reason } => {
                        sum.delete_files += 1;
                        sum.delete_bytes += e.size;
                        let age_ref = e.age_ref(class.age_from);
                        p.actions.push(Action {
                            entry: e,
                            class_name: class.name.clone(),
                            rule,
                            reason,
                            age_ref,
                            would_refuse: None,
                            dupe_of: of.cloned(),
                        });
                    }
                    Verdict::Keep {
                        eligible_at: Some(t),
                        ..
                    } => {
                        next_due = Some(next_due.map_or(t, |n: Nanos| n.min(t)));
                    }
                    Verdict::Keep { .. } => {}
                }
            },
        )?;
        // Never a duplicate in a plan that deletes the copy it duplicates (decide_class
        // hands the kept role over; this holds even when its rounds ran out).
        let doomed: std::collections::HashSet<i64> = p.actions[first_action..]
            .iter()
            .map(|a| a.entry.id)
            .collect();
        p.actions.retain(|a| {
            let orphan = a
                .dupe_of
                .as_ref()
                .is_some_and(|d| d.kept_ids.iter().any(|id| doomed.contains(id)));
            if orphan {
                sum.delete_files -= 1;
                sum.delete_bytes -= a.entry.size;
            }
            !orphan
        });
        p.next_due = next_due;
        p.classes.push(sum);
    }
    p.actions.sort_by(|a, b| {
        (a.age_ref, &a.entry.store, &a.entry.path).cmp(&(b.age_ref, &b.entry.store, &b.entry.path))
    });
    p.offloads
        .sort_by(|a, b| (a.entry.mtime, &a.entry.path).cmp(&(b.entry.mtime, &b.entry.path)));
    Ok(p)
}

/// One line for humans: "delete media:tmp/x (12 MiB, class tmp, ttl): reason".
pub fn describe(a: &Action) -> String {
    format!(
        "{}:{} ({}, class {}, {}): {}; age counted from {}",
        a.entry.store,
        crate::spell::show(&a.entry.path),
        ByteSize(a.entry.size),
        a.class_name,
        a.rule,
        a.reason,
        fmt_time(a.age_ref)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::config::AgeFrom;

    const S: i64 = 1_000_000_000;

    /// A class of store `m` matching everything, `lifecycle` and no other rule.
    pub(super) fn class(lifecycle: Lifecycle) -> Class {
        Class {
            name: "c".into(),
            store: "m".into(),
            patterns: vec!["**".into()],
            exclude: vec![],
            lifecycle,
            ttl: None,
            keep_for: None,
            max_count: None,
            max_total: None,
            age_from: AgeFrom::Mtime,
            quiet_period: Dur::default(),
            protect_playlist_refs: false,
            part_suffixes: vec![],
            min_keep: None,
            pressure_priority: 0,
            offload: None,
            stream: None,
            dedupe: None,
        }
    }

    /// An entry of class `c` in store `m`, inode 0.
    pub(super) fn entry(path: &str, size: u64, mtime: Nanos) -> Entry {
        Entry {
            id: 0,
            store: "m".into(),
            path: path.into(),
            size,
            mtime,
            ino: 0,
            first_seen: 0,
            class: Some("c".into()),
            retained: false,
            copy: None,
            complete: None,
            tags: vec![],
            in_use: vec![],
        }
    }

    fn run(c: &Class, now: Nanos, mut es: Vec<Entry>) -> Vec<(String, bool)> {
        es.sort_by_key(|e| std::cmp::Reverse(e.age_ref(c.age_from)));
        let mut p = ClassPlanner::new(c, now);
        es.iter()
            .map(|e| {
                (
                    e.path.display().to_string(),
                    matches!(p.decide(e), Verdict::Delete { .. }),
                )
            })
            .collect()
    }

    #[test]
    fn ttl_expires_exactly_at_the_limit() {
        let clock = ManualClock::new(1_000 * S);
        let mut c = class(Lifecycle::Temporary);
        c.ttl = Some("30m".parse().unwrap());
        let e = entry("t", 1, clock.now() - 1800 * S + 1);
        let mut p = ClassPlanner::new(&c, clock.now());
        let Verdict::Keep { eligible_at, .. } = p.decide(&e) else {
            panic!("kept before ttl")
        };
        assert_eq!(eligible_at, Some(clock.now() + 1));
        clock.advance(1);
        let mut p = ClassPlanner::new(&c, clock.now());
        assert!(matches!(
            p.decide(&e),
            Verdict::Delete {
                rule: Rule::Ttl,
                ..
            }
        ));
    }

    #[test]
    fn a_held_clock_keeps_what_time_rules_delete_but_budgets_still_count() {
        let mut c = class(Lifecycle::Recording);
        c.keep_for = Some("30d".parse().unwrap());
        c.max_count = Some(2);
        let now = 400 * 86_400 * S;
        let es: Vec<Entry> = (1..=3)
            .map(|d| entry(&format!("d{d}"), 1, d * 86_400 * S))
            .collect();
        let mut p = ClassPlanner::new(&c, now).holding_time(Some("held: CLOCK JUMPED"));
        let v: Vec<Verdict> = es.iter().rev().map(|e| p.decide(e)).collect();
        assert!(
            matches!(&v[0], Verdict::Keep { reason, eligible_at: None } if reason.contains("held: CLOCK JUMPED"))
        );
        assert!(matches!(&v[1], Verdict::Keep { .. }));
        assert!(matches!(
            &v[2],
            Verdict::Delete {
                rule: Rule::MaxCount,
                ..
            }
        ));
        // Offloads by `after` hold too.
        let text = r#"
            [daemon]
            state_dir = "/var/lib/mediaretain"
            [[store]]
            name = "m"
            kind = "local"
            root = "/srv/media"
            [[store]]
            name = "archive"
            kind = "s3"
            endpoint = "http://127.0.0.1:9"
            bucket = "b"
            [[class]]
            name = "c"
            store = "m"
            match = ["**"]
            lifecycle = "recording"
            keep_for = "30d"
            offload = { to = "archive", after = "1h" }
        "#;
        let cfg = Config::parse_with(std::path::Path::new("t.toml"), text, false).unwrap();
        let feed = |_: &Class, sink: &mut dyn FnMut(Entry)| -> Result<(), ()> {
            es.iter().rev().cloned().for_each(&mut *sink);
            Ok(())
        };
        let held =
            plan_classes_held(&cfg, now, Some("held"), |_| true, feed, |_| Ok(vec![])).unwrap();
        assert!(held.offloads.is_empty() && held.actions.is_empty());
        let free = plan_classes_held(&cfg, now, None, |_| true, feed, |_| Ok(vec![])).unwrap();
        assert_eq!(free.offloads.len(), 3);
    }

    #[test]
    fn retained_is_never_deleted_but_counts_toward_budgets() {
        let mut c = class(Lifecycle::Recording);
        c.keep_for = Some("1h".parse().unwrap());
        c.max_count = Some(2);
        let mut old = entry("old-pinned", 1, 0);
        old.retained = true;
        let mut newest = entry("newest-pinned", 1, 100_000 * S);
        newest.retained = true;
        let es = vec![
            old,
            newest,
            entry("a", 1, 99_990 * S),
            entry("b", 1, 99_980 * S),
        ];
        let r = run(&c, 100_000 * S, es);
        assert_eq!(
            r,
            vec![
                ("newest-pinned".into(), false),
                ("a".into(), false),
                ("b".into(), true),
                ("old-pinned".into(), false)
            ]
        );
    }

    #[test]
    fn budgets_delete_strictly_oldest_first() {
        let mut c = class(Lifecycle::Recording);
        c.max_total = Some(crate::units::ByteSize(100));
        // newest 60 fits, next 50 does not: it and everything older go, even the small one.
        let es = vec![entry("n", 60, 30), entry("m", 50, 20), entry("o", 10, 10)];
        assert_eq!(
            run(&c, 40, es),
            vec![("n".into(), false), ("m".into(), true), ("o".into(), true)]
        );
    }

    #[test]
    fn files_still_being_written_are_kept_until_quiet() {
        let mut c = class(Lifecycle::Temporary);
        c.ttl = Some("0s".parse().unwrap());
        c.quiet_period = "30s".parse().unwrap();
        let e = entry("t.part", 1, 100 * S);
        let mut p = ClassPlanner::new(&c, 100 * S + 29 * S);
        let Verdict::Keep {
            eligible_at,
            reason,
        } = p.decide(&e)
        else {
            panic!("written 29s ago")
        };
        assert_eq!(eligible_at, Some(130 * S));
        assert!(
            reason.starts_with("in use: still being written"),
            "{reason}"
        );
        let mut p = ClassPlanner::new(&c, 130 * S);
        assert!(matches!(
            p.decide(&e),
            Verdict::Delete {
                rule: Rule::Ttl,
                ..
            }
        ));
    }

    #[test]
    fn first_seen_age_reference() {
        let mut c = class(Lifecycle::Segment);
        c.keep_for = Some("2m".parse().unwrap());
        c.age_from = AgeFrom::FirstSeen;
        let mut e = entry("s", 1, 0); // an ancient mtime…
        e.first_seen = 1000 * S; // …but seen just now
        let mut p = ClassPlanner::new(&c, 1000 * S + 60 * S);
        assert!(matches!(p.decide(&e), Verdict::Keep { .. }));
    }
}
