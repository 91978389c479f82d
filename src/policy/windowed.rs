//! The windowed planning of a pass with nothing due ([`plan_windowed`]): for a class that
//! only its time limit can thin, the planner reads the entries past the limit and the few
//! younger ones that say when the next becomes due, not every entry — the same plan as the
//! whole walk of [`super::plan_classes_held`], which the tests below compare it with.

use super::*;

/// Which entries of a class the planner reads ([`plan_windowed`]); the windows other than
/// `All` are by mtime, and asked only of classes whose age counts from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Every entry, newest first by the class's age reference.
    All,
    /// Those modified at or before this time, newest first.
    Upto(Nanos),
    /// Those modified after this time, oldest first, for as long as the sink returns true.
    After(Nanos),
}

/// A class's entries counted (for [`plan_windowed`]): files, their bytes, and how many
/// of them are retained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Entries of the class.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of them, retained (pinned).
    pub retained: u64,
}

/// Like [`plan_classes_held`], reading of each class only what can change the plan where
/// that is known beforehand: a class whose only rule that can fire is its time limit (no
/// duplicates, no offload, age by mtime, and budgets its `census_of` shows it within)
/// keeps every entry younger than the limit whatever it is, so only the entries at or
/// before the cutoff are decided, and of the younger ones only the few that say when the
/// next becomes due. A pass with nothing due over millions of entries reads a few rows per
/// class, not every row (the same plan: actions, next due time and per-class counts).
pub fn plan_windowed<E>(
    cfg: &Config,
    now: Nanos,
    hold: Option<&str>,
    which: impl Fn(&Class) -> bool,
    entries_of: impl FnMut(&Class, Window, &mut dyn FnMut(Entry) -> bool) -> Result<(), E>,
    mut census_of: impl FnMut(&Class) -> Result<Census, E>,
    groups_of: impl FnMut(&Class) -> Result<Vec<dedupe::Group>, E>,
) -> Result<Plan, E> {
    plan_core(
        cfg,
        now,
        hold,
        which,
        entries_of,
        Some(&mut census_of),
        groups_of,
    )
}

/// Whether the time limit is the only rule that can delete an entry of `class` (whose
/// entries `census` counts): then every entry younger than the limit is kept.
pub(super) fn only_time_decides(class: &Class, census: &Census) -> bool {
    class.dedupe.is_none()
        && class.offload.is_none()
        && class.age_from == crate::config::AgeFrom::Mtime
        // Within its budgets as a whole, no entry is beyond them: each counts only the
        // kept entries newer than itself.
        && class.max_count.is_none_or(|m| census.files <= m)
        && class.max_total.is_none_or(|m| census.bytes <= m.0)
}

/// Decides `class` by windows (see [`plan_windowed`]); `class` passed
/// [`only_time_decides`].
pub(super) fn plan_class_windowed<E>(
    p: &mut Plan,
    class: &Class,
    now: Nanos,
    hold: Option<&str>,
    census: Census,
    entries_of: &mut impl FnMut(&Class, Window, &mut dyn FnMut(Entry) -> bool) -> Result<(), E>,
) -> Result<(), E> {
    let mut sum = ClassSummary {
        class: class.name.clone(),
        store: class.store.clone(),
        files: census.files,
        bytes: census.bytes,
        retained: census.retained,
        ..Default::default()
    };
    let mut next_due = p.next_due;
    let mut planner = ClassPlanner::new(class, now).holding_time(hold);
    let quiet = class.quiet_period.as_nanos_i64();
    let cutoff = time_limit(class).map(|(_, lim)| now.saturating_sub(lim.as_nanos_i64()));
    let mut read = 0;
    let mut decide = |e: Entry, actions: &mut Vec<Action>, sum: &mut ClassSummary| {
        read += 1;
        match planner.decide(&e) {
            Verdict::Delete { rule, reason } => {
                sum.delete_files += 1;
                sum.delete_bytes += e.size;
                let age_ref = e.age_ref(class.age_from);
                actions.push(Action {
                    entry: e,
                    class_name: class.name.clone(),
                    rule,
                    reason,
                    age_ref,
                    would_refuse: None,
                    dupe_of: None,
                });
            }
            Verdict::Keep {
                eligible_at: Some(t),
                ..
            } => next_due = Some(next_due.map_or(t, |n: Nanos| n.min(t))),
            Verdict::Keep { .. } => {}
        }
    };
    if let Some(cut) = cutoff {
        // At or past the limit: decided one by one, as a whole walk would.
        entries_of(class, Window::Upto(cut), &mut |e| {
            decide(e, &mut p.actions, &mut sum);
            true
        })?;
        // Younger, all kept: the first to become eligible by the limit is the oldest that
        // is neither retained nor still being written (those after it come later).
        entries_of(class, Window::After(cut), &mut |e| {
            let last = !e.retained && !e.being_written(quiet, now);
            decide(e, &mut p.actions, &mut sum);
            !last
        })?;
    }
    // Still being written: eligible (as being written no more) one quiet period after its
    // last write; the oldest such is the first.
    let writing = now.saturating_sub(quiet);
    let from = cutoff.map_or(writing, |c| c.max(writing));
    entries_of(class, Window::After(from), &mut |e| {
        let last = !e.retained && e.being_written(quiet, now);
        decide(e, &mut p.actions, &mut sum);
        !last
    })?;
    p.next_due = next_due;
    p.read += read;
    p.classes.push(sum);
    Ok(())
}

#[cfg(test)]
mod tests {
    //! `plan_windowed` against the whole walk of `plan_classes_held`: the same plan, and
    //! few entries read when nothing is due.
    use super::*;
    use crate::config::{AgeFrom, Lifecycle};
    use crate::policy::tests::{class, entry};

    const S: i64 = 1_000_000_000;

    /// A config holding `c` (store "m"), parsed once.
    fn config(c: Class) -> Config {
        static BASE: std::sync::LazyLock<Config> = std::sync::LazyLock::new(parse);
        let mut cfg = BASE.clone();
        cfg.classes = vec![c];
        cfg
    }

    fn parse() -> Config {
        let text = r#"
            [daemon]
            state_dir = "/var/lib/mediaretain"
            [[store]]
            name = "m"
            kind = "local"
            root = "/srv/media"
            [[class]]
            name = "c"
            store = "m"
            match = ["**"]
            lifecycle = "segment"
            keep_for = "1h"
        "#;
        Config::parse_with(std::path::Path::new("t.toml"), text, false).unwrap()
    }

    /// Both plans of `es` at `now`, and the entries each read.
    fn both(cfg: &Config, now: Nanos, hold: Option<&str>, es: &[Entry]) -> (Plan, Plan) {
        let mut newest = es.to_vec();
        newest.sort_by(|a, b| (b.mtime, &b.path).cmp(&(a.mtime, &a.path)));
        let whole = plan_classes_held(
            cfg,
            now,
            hold,
            |_| true,
            |_, sink: &mut dyn FnMut(Entry)| -> Result<(), ()> {
                newest.iter().cloned().for_each(&mut *sink);
                Ok(())
            },
            |_| Ok(vec![]),
        )
        .unwrap();
        let windowed = plan_windowed(
            cfg,
            now,
            hold,
            |_| true,
            |_, w, sink: &mut dyn FnMut(Entry) -> bool| -> Result<(), ()> {
                match w {
                    Window::All => newest.iter().cloned().for_each(|e| {
                        sink(e);
                    }),
                    Window::Upto(t) => newest.iter().filter(|e| e.mtime <= t).for_each(|e| {
                        sink(e.clone());
                    }),
                    Window::After(t) => {
                        for e in newest.iter().rev().filter(|e| e.mtime > t) {
                            if !sink(e.clone()) {
                                break;
                            }
                        }
                    }
                }
                Ok(())
            },
            |_| {
                Ok(Census {
                    files: es.len() as u64,
                    bytes: es.iter().map(|e| e.size).sum(),
                    retained: es.iter().filter(|e| e.retained).count() as u64,
                })
            },
            |_| Ok(vec![]),
        )
        .unwrap();
        (whole, windowed)
    }

    /// A small random number generator (xorshift), so that every case is reproducible.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
    }

    #[test]
    fn the_windowed_plan_is_the_whole_walks_plan() {
        let now = 1_000_000 * S;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut windowed_classes = 0;
        for case in 0..3000 {
            let mut c = class(match rng.below(3) {
                0 => Lifecycle::Temporary,
                1 => Lifecycle::Segment,
                _ => Lifecycle::Recording,
            });
            let limit = [None, Some("10s"), Some("1h"), Some("2h")][rng.below(4) as usize];
            match c.lifecycle {
                Lifecycle::Temporary => c.ttl = limit.map(|l| l.parse().unwrap()),
                _ => c.keep_for = limit.map(|l| l.parse().unwrap()),
            }
            c.quiet_period = ["0s", "30s", "90m"][rng.below(3) as usize].parse().unwrap();
            let n = rng.below(30);
            c.max_count = [None, Some(n / 2), Some(1000)][rng.below(3) as usize];
            c.max_total =
                [None, Some(ByteSize(50 * n / 2)), Some(ByteSize(1 << 40))][rng.below(3) as usize];
            if rng.below(10) == 0 {
                c.age_from = AgeFrom::FirstSeen;
            }
            let es: Vec<Entry> = (0..n)
                .map(|i| {
                    // Whole seconds over the last 3 h, with ties, some in the future.
                    let mut e = entry(
                        &format!("f{i:02}"),
                        rng.below(100),
                        now - (rng.below(3 * 3600 + 60) as i64 - 60) * S,
                    );
                    e.id = i as i64 + 1;
                    e.first_seen = e.mtime - rng.below(3600) as i64 * S;
                    e.retained = rng.below(8) == 0;
                    if rng.below(5) == 0 {
                        e.complete = Some(e.mtime);
                    }
                    e
                })
                .collect();
            let hold = (rng.below(6) == 0).then_some("held: the clock jumped");
            let cfg = config(c.clone());
            let (whole, windowed) = both(&cfg, now, hold, &es);
            assert_eq!(whole.actions, windowed.actions, "case {case}: {c:?} {es:?}");
            assert_eq!(
                whole.next_due, windowed.next_due,
                "case {case}: {c:?} {es:?}"
            );
            assert_eq!(whole.classes, windowed.classes, "case {case}: {c:?}");
            if windowed.read < whole.read || n == 0 {
                windowed_classes += 1;
            }
        }
        // Most cases took the windows (not a test of nothing but the whole walk).
        assert!(windowed_classes > 500, "{windowed_classes} of 3000");
    }

    #[test]
    fn nothing_due_reads_a_few_entries_whatever_the_class_holds() {
        let now = 1_000_000 * S;
        let mut c = class(Lifecycle::Segment);
        c.keep_for = Some("1h".parse().unwrap());
        c.quiet_period = "30s".parse().unwrap();
        let cfg = config(c.clone());
        for n in [10, 1000, 10_000] {
            // Written over the last 50 minutes, one a second from 40 s ago back, and one
            // still being written.
            let mut es: Vec<Entry> = (0..n)
                .map(|i| entry(&format!("s{i}"), 1, now - (40 + i as i64 % 3000) * S))
                .collect();
            es.push(entry("writing", 1, now - S));
            let (whole, windowed) = both(&cfg, now, None, &es);
            assert_eq!(whole.read, n as u64 + 1);
            assert!(windowed.actions.is_empty());
            assert_eq!(whole.next_due, windowed.next_due);
            // The oldest, to say when the first becomes due; the newest being written.
            assert!(windowed.read <= 3, "{n} entries: {} read", windowed.read);
        }
        // A budget the class is over, or age by first_seen: the whole walk.
        let mut over = c.clone();
        over.max_count = Some(5);
        let es: Vec<Entry> = (0..10)
            .map(|i| entry(&format!("s{i}"), 1, now - i * S))
            .collect();
        assert_eq!(both(&config(over), now, None, &es).1.read, 10);
        let mut first_seen = c;
        first_seen.age_from = AgeFrom::FirstSeen;
        assert_eq!(both(&config(first_seen), now, None, &es).1.read, 10);
    }
}
