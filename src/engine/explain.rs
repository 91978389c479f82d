//! Answers about files: `explain` (why a file is kept or goes: its class, rule, verdict,
//! what uses it, pressure tier, history) and `ls`. Read-only; they ask the same planner,
//! in-use view and guards as the pass, so they agree with it.

use super::*;

impl Engine {
    /// Why `arg` is kept or when it goes; for a deleted path, when and why it went.
    pub fn explain(&self, arg: &str) -> Result<Explanation> {
        let rt = self.runtime();
        let (store, path) = rt.resolve(arg)?;
        let now = self.now();
        let on_disk = self.stat_any(&rt, &store, &path)?;
        let mut entry = self.reg().get(&store, &path)?;
        if let (None, Some(meta)) = (&entry, &on_disk) {
            // On disk but not yet seen (a scan or event is on its way): record it now.
            let class_of = |p: &Path| rt.classifier.classify(&store, p).map(str::to_string);
            self.reg()
                .upsert(&store, std::slice::from_ref(meta), now, &class_of)?;
            entry = self.reg().get(&store, &path)?;
        }
        let history = self.reg().history(&store, &path, 10)?;
        let m = rt.classifier.explain(&store, &path);
        let class = m
            .as_ref()
            .and_then(|m| rt.config.class(m.class))
            .map(|c| ClassInfo {
                pattern: m
                    .as_ref()
                    .map(|m| m.pattern.to_string())
                    .unwrap_or_default(),
                rules: c.clone(),
            });
        let mut pressure = None;
        let mut not_deduped = None;
        let verdict = match (&entry, m.as_ref().and_then(|m| rt.config.class(m.class))) {
            (Some(e), Some(c)) => {
                pressure = Some(match policy::pressure::eligibility(c, e, now) {
                    Ok(tier) => {
                        format!("eligible in {tier}, oldest first; never while in use or retained")
                    }
                    Err(why) => why,
                });
                // The same class plan as the pass, identical copies included, and time
                // rules held as the pass holds them.
                let hold = self.time_hold();
                let reg = self.reg();
                let groups = dedupe::groups_in(&rt, &reg, c)?;
                let mut found = None;
                let decided = policy::dedupe::decide_class_held(
                    c,
                    now,
                    hold.as_deref(),
                    &groups,
                    |sink| reg.for_each_in_class(&store, &c.name, c.age_from, &mut *sink),
                    |x, v, _| {
                        if x.id == e.id {
                            found = Some(v);
                        }
                    },
                )?;
                not_deduped = decided.held.get(&e.id).cloned();
                found
            }
            _ => None,
        };
        let in_use = match (&on_disk, rt.store(&store)) {
            (Some(_), Some(local)) => {
                let sig = self.signals(&rt)?;
                let complete = entry.as_ref().is_some_and(|e| e.complete.is_some());
                let class = rt.class_of(&store, &path);
                self.inuse.reasons(&sig, class, local, &path, complete)
            }
            // An object: only a lease says it is in use.
            (Some(_), None) => self.lease_set()?.holders(&store, &path),
            (None, _) => Vec::new(),
        };
        let mut summary = summarize(
            &store,
            &entry,
            &class,
            &verdict,
            &history,
            on_disk.is_some(),
            now,
        );
        if let Some(why) = &not_deduped {
            summary = format!(
                "{}; it has an identical copy but is not deduped: {why}",
                summary.trim_end_matches('.')
            );
        }
        // A stamp ahead of the clock was taken under a clock that was ahead (or this one
        // went back): say so, and what corrects it.
        if let (Some(e), Some(c)) = (&entry, &class) {
            let at = e.age_ref(c.rules.age_from);
            let tolerance = self.runtime().config.daemon.clock_tolerance.as_nanos_i64();
            if at > now.saturating_add(tolerance) {
                let what = match c.rules.age_from {
                    AgeFrom::Mtime => "modification time",
                    AgeFrom::FirstSeen => "first-seen time",
                };
                summary.push_str(&format!(
                    "; its {what} {} is {} ahead of the clock: taken under a clock that was ahead (a jump back is held until `mediaretain clock accept`, which sets first-seen times ahead of the clock to now; a file's own modification time is never changed)",
                    fmt_time(at),
                    fmt_span(at - now)
                ));
            }
        }
        if !in_use.is_empty() {
            summary = format!(
                "IN USE ({}): the next pass refuses to delete it while it is in use. By the rules alone: {}",
                in_use.join(", "),
                summary.trim_end_matches("; the next pass deletes it unless it is in use then")
            );
        }
        let offload_backoff = self
            .backing_off(&store, &path)
            .map(|b| format!("{} (at {})", b.last, fmt_time(b.next)));
        Ok(Explanation {
            store,
            path,
            on_disk: on_disk.is_some(),
            entry,
            class,
            verdict,
            history,
            in_use,
            pressure,
            offload_backoff,
            not_deduped,
            summary,
        })
    }

    /// Entries for `ls`; with `in_use`, only those in use now, each with its reasons.
    pub fn ls(&self, filter: &Filter, in_use: bool) -> Result<Vec<Entry>> {
        if let Some(c) = filter.class.as_deref() {
            known_class(&self.runtime().config, c)?;
        }
        // With --in-use the limit applies to what is in use, not to what is looked at.
        let unlimited = Filter {
            limit: None,
            ..filter.clone()
        };
        let mut entries = self.reg().list(if in_use { &unlimited } else { filter })?;
        if in_use {
            let rt = self.runtime();
            let signals = self.signals(&rt)?;
            entries.retain_mut(|e| {
                let Some(local) = rt.store(&e.store) else {
                    return false;
                };
                let class = rt.class_of(&e.store, &e.path);
                let complete = e.complete.is_some();
                e.in_use = self
                    .inuse
                    .reasons(&signals, class, local, &e.path, complete);
                !e.in_use.is_empty()
            });
            entries.truncate(filter.limit.map_or(usize::MAX, |l| l as usize));
        }
        Ok(entries)
    }
}

fn summarize(
    store: &str,
    entry: &Option<Entry>,
    class: &Option<ClassInfo>,
    verdict: &Option<Verdict>,
    history: &[AuditRecord],
    on_disk: bool,
    now: Nanos,
) -> String {
    let deleted = history
        .iter()
        .find(|h| h.action == "delete" && h.outcome == "deleted");
    if !on_disk {
        return match deleted {
            Some(h) => format!(
                "deleted at {} by class {}, rule {} (trigger: {}): {}",
                fmt_time(h.at),
                h.class.as_deref().unwrap_or("?"),
                h.rule.as_deref().unwrap_or("?"),
                h.trigger,
                h.reason
            ),
            None if entry.is_some() => {
                "in the registry but no longer on disk; the next scan forgets it".into()
            }
            None => "not on disk, and mediaretain never deleted it".into(),
        };
    }
    let Some(class) = class else {
        return format!("matches no class of store {store:?}: mediaretain never touches it");
    };
    match verdict {
        Some(Verdict::Delete { rule, reason }) => {
            format!(
                "eligible now (class {}, {rule}): {reason}; the next pass deletes it unless it is in use then",
                class.rules.name
            )
        }
        Some(Verdict::Keep {
            reason,
            eligible_at: Some(t),
        }) => format!(
            "kept (class {}): {reason}; becomes eligible at {} (in {})",
            class.rules.name,
            fmt_time(*t),
            fmt_span(t - now)
        ),
        Some(Verdict::Keep {
            reason,
            eligible_at: None,
        }) => {
            let retained = entry.as_ref().is_some_and(|e| e.retained);
            if retained {
                format!(
                    "kept (class {}): {reason}; never deleted automatically until unretained",
                    class.rules.name
                )
            } else if reason.contains("CLOCK JUMPED") {
                format!("kept (class {}): {reason}", class.rules.name)
            } else {
                format!(
                    "kept (class {}): {reason}; no time rule applies, it goes only when newer files push it past a budget",
                    class.rules.name
                )
            }
        }
        None => format!("class {}; not yet in the registry", class.rules.name),
    }
}

/// What `explain` says about one path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Explanation {
    /// Store name.
    pub store: String,
    /// Relative path.
    #[serde(with = "crate::spell::serde_path")]
    pub path: PathBuf,
    /// Is a regular file there now?
    pub on_disk: bool,
    /// The registry entry, if any.
    pub entry: Option<Entry>,
    /// The matching class and the glob that matched.
    pub class: Option<ClassInfo>,
    /// The policy's verdict now (for classified entries).
    pub verdict: Option<Verdict>,
    /// Latest audit records, newest first.
    pub history: Vec<AuditRecord>,
    /// What uses it right now (open files, locks); a deletion is refused while any does.
    pub in_use: Vec<String>,
    /// Whether the disk-pressure watchdog may free it (and in which tier), or why not.
    pub pressure: Option<String>,
    /// Its offloads keep failing: the last failure and when it is tried again.
    #[serde(default)]
    pub offload_backoff: Option<String>,
    /// It has an identical copy, but the kept copy may not stand for it: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_deduped: Option<String>,
    /// The answer in one sentence.
    pub summary: String,
}

/// A class as explained.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassInfo {
    /// The glob that matched.
    pub pattern: String,
    /// The class as configured.
    #[serde(flatten)]
    pub rules: Class,
}
