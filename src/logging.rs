//! Logging: journald with structured fields when stderr is connected to the journal (as
//! under systemd), readable stderr otherwise. `RUST_LOG` filters, e.g.
//! `RUST_LOG=mediaretain=debug`.
//!
//! Journal fields carry the `MEDIARETAIN_` prefix, so
//! `journalctl -u mediaretain MEDIARETAIN_ACTION=delete` lists every deletion (at info while
//! few; a bulk pass logs a summary, every file stays in the audit).
//!
//! Lines per minute are bounded ([`Bound`]) whatever the rate of events: beyond a budget
//! per call site and per severity the lines are counted and summed up once a minute.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{Event, Level, Metadata, Subscriber};
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, filter};

/// Events of this target are alarms: journald priority 2 (crit) instead of 3 (err), so
/// `journalctl -p crit` shows a stuck volume and nothing else.
pub const ALARM: &str = "mediaretain::alarm";

/// True when stderr is the journal stream systemd gave us (`$JOURNAL_STREAM` = dev:inode).
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let Ok(md) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(md.dev()) && ino.parse() == Ok(md.ino())
}

/// Colour only on a terminal, and never when `NO_COLOR` is set (to anything but "").
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber; `default` is the filter when `RUST_LOG` is unset.
pub fn init(default: &str) {
    // notify logs routine inotify housekeeping at info; keep it out of the operator's way.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},notify=warn")));
    let bound = Bound::default();
    let journal = stderr_is_journal()
        .then(tracing_journald::layer)
        .and_then(Result::ok);
    if let Some(layer) = journal {
        let journald = |layer: tracing_journald::Layer, error: Priority| {
            layer
                .with_field_prefix(Some("MEDIARETAIN".into()))
                .with_syslog_identifier("mediaretain".into())
                // syslog's meaning: info is 6, debug 7 (the crate's default shifts them by one).
                .with_priority_mappings(PriorityMappings {
                    error,
                    info: Priority::Informational,
                    debug: Priority::Debug,
                    ..PriorityMappings::new()
                })
        };
        let alarms = tracing_journald::layer().ok().map(|l| {
            journald(l, Priority::Critical).with_filter(filter::filter_fn(|m| m.target() == ALARM))
        });
        let rest = journald(layer, Priority::Error)
            .with_filter(filter::filter_fn(|m| m.target() != ALARM));
        tracing_subscriber::registry()
            .with(filter)
            .with(bound.clone())
            .with(rest)
            .with(alarms)
            .init();
        start_flusher(bound);
        return;
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(bound.clone())
        .with(
            // As the fmt builder did (the layer's default is off): a write error is
            // reported on stderr, and a daemon whose terminal hung up goes with it.
            tracing_subscriber::fmt::layer()
                .log_internal_errors(true)
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(colour()),
        )
        .init();
    start_flusher(bound);
}

/// Events of this target are the bound's own summaries: never counted, never suppressed.
pub const SUMMARY: &str = "mediaretain::log_bound";

/// The window every budget counts in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Lines per window one call site may write before it is summed up instead.
pub const PER_SITE: u32 = 10;
/// Lines per window for info (and warn) events of every site together.
pub const NOTICE_BUDGET: u32 = 50;
/// Lines per window for errors of every site together: a budget of their own, so that
/// info noise never uses it up.
pub const ERROR_BUDGET: u32 = 30;

/// Which budget an event counts against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Budget {
    /// Info and warn.
    Notice,
    /// Errors.
    Error,
    /// Alarms ([`ALARM`]): only their per-site budget (there are few alarm sites).
    Alarm,
}

/// Suppressed lines of one call site in the current window.
#[derive(Debug)]
struct Site {
    /// Lines written this window.
    written: u32,
    /// Lines suppressed this window.
    suppressed: u64,
    /// Where (file:line) and what: the first suppressed line's message.
    place: String,
    example: String,
    level: Level,
}

/// The counts of the current window.
#[derive(Debug)]
struct Window {
    started: Instant,
    notice: u32,
    error: u32,
    sites: HashMap<(&'static str, Level), Site>,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            started: now,
            notice: 0,
            error: 0,
            sites: HashMap::new(),
        }
    }
}

/// What a closed window suppressed: (level of the worst, total, line).
#[derive(Debug, PartialEq)]
struct Summary {
    level: Level,
    suppressed: u64,
    text: String,
}

/// A layer that bounds the lines written per minute, whatever the event rate (promise 8):
/// each call site may write [`PER_SITE`] lines a minute, info and warn lines together
/// [`NOTICE_BUDGET`], errors [`ERROR_BUDGET`] of their own (so info noise never crowds out an
/// error), alarms only their per-site budget. What is held back is counted and summed up in
/// one line when the minute is over ("N similar lines suppressed"); the details stay in the
/// audit and at debug. Debug and trace are not bounded: who turns them on asks for volume.
/// Under journald's own rate limit (10,000 lines in 30 s by default) no alarm is ever lost.
#[derive(Clone)]
pub struct Bound {
    window: Arc<Mutex<Window>>,
}

impl Default for Bound {
    fn default() -> Self {
        Bound {
            window: Arc::new(Mutex::new(Window::new(Instant::now()))),
        }
    }
}

impl Bound {
    /// Whether an event of `site` at `level` (an alarm if `alarm`) may be written at `now`;
    /// a summary of the window just closed, if closing it suppressed anything.
    fn admit(
        &self,
        meta: &'static Metadata<'static>,
        alarm: bool,
        now: Instant,
        message: impl FnOnce() -> String,
    ) -> (bool, Option<Summary>) {
        // The call site: its name is "event FILE:LINE".
        let site = (meta.name(), *meta.level());
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let summary = (now.duration_since(w.started) >= WINDOW)
            .then(|| close(&mut w, now))
            .flatten();
        let level = site.1;
        let budget = if alarm {
            Budget::Alarm
        } else if level == Level::ERROR {
            Budget::Error
        } else {
            Budget::Notice
        };
        let total_ok = match budget {
            Budget::Notice => w.notice < NOTICE_BUDGET,
            Budget::Error => w.error < ERROR_BUDGET,
            Budget::Alarm => true,
        };
        let site_written = w.sites.get(&site).map_or(0, |s| s.written);
        let ok = total_ok && site_written < PER_SITE;
        if ok {
            match budget {
                Budget::Notice => w.notice += 1,
                Budget::Error => w.error += 1,
                Budget::Alarm => {}
            }
        }
        let s = w.sites.entry(site).or_insert_with(|| Site {
            written: 0,
            suppressed: 0,
            place: format!(
                "{}:{}",
                meta.file().unwrap_or(meta.target()),
                meta.line().unwrap_or(0)
            ),
            example: String::new(),
            level,
        });
        if ok {
            s.written += 1;
        } else {
            if s.suppressed == 0 {
                s.example = message();
            }
            s.suppressed += 1;
        }
        (ok, summary)
    }

    /// Closes the window if its minute is over (the flusher's tick: a flood that stopped
    /// is still summed up).
    fn tick(&self, now: Instant) -> Option<Summary> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        (now.duration_since(w.started) >= WINDOW)
            .then(|| close(&mut w, now))
            .flatten()
    }
}

/// Starts a new window at `now`; what the old one suppressed, if anything.
fn close(w: &mut Window, now: Instant) -> Option<Summary> {
    let old = std::mem::replace(w, Window::new(now));
    let secs = now.duration_since(old.started).as_secs();
    let mut sites: Vec<Site> = old
        .sites
        .into_values()
        .filter(|s| s.suppressed > 0)
        .collect();
    if sites.is_empty() {
        return None;
    }
    sites.sort_by_key(|s| std::cmp::Reverse(s.suppressed));
    let suppressed: u64 = sites.iter().map(|s| s.suppressed).sum();
    // Worst first: the summary of a suppressed error is itself an error line.
    let level = sites.iter().map(|s| s.level).min().unwrap_or(Level::INFO);
    const SHOWN: usize = 5;
    let mut text = format!(
        "{suppressed} similar log lines suppressed in the last {secs}s (at most {PER_SITE} a minute from one place): "
    );
    for (i, s) in sites.iter().take(SHOWN).enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let mut example = s.example.clone();
        if example.len() > 200 {
            let cut = (0..=200)
                .rev()
                .find(|&i| example.is_char_boundary(i))
                .unwrap_or(0);
            example.truncate(cut);
            example.push('…');
        }
        text.push_str(&format!(
            "{} × {} {} (e.g. {example:?})",
            s.suppressed, s.level, s.place
        ));
    }
    if sites.len() > SHOWN {
        text.push_str(&format!("; and {} more places", sites.len() - SHOWN));
    }
    text.push_str("; the audit (mediaretain history) keeps every deletion");
    Some(Summary {
        level,
        suppressed,
        text,
    })
}

/// Writes a summary (outside the window's lock: it goes through the subscriber again).
fn emit(s: Summary) {
    let Summary {
        level,
        suppressed,
        text,
    } = s;
    match level {
        Level::ERROR => tracing::error!(target: SUMMARY, suppressed, "{text}"),
        Level::WARN => tracing::warn!(target: SUMMARY, suppressed, "{text}"),
        _ => tracing::info!(target: SUMMARY, suppressed, "{text}"),
    }
}

/// The `message` field of an event, for a summary's example.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        if f.name() == "message" {
            self.0 = v.to_string();
        }
    }
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        if f.name() == "message" {
            self.0 = format!("{v:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Bound {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::INFO || meta.target() == SUMMARY {
            return true;
        }
        let (ok, summary) = self.admit(meta, meta.target() == ALARM, Instant::now(), || {
            let mut m = Message(String::new());
            event.record(&mut m);
            m.0
        });
        if let Some(s) = summary {
            emit(s);
        }
        ok
    }
}

/// Sums up a flood that stopped: closes the window once its minute is over, even when no
/// event comes to close it.
fn start_flusher(bound: Bound) {
    let spawned = std::thread::Builder::new()
        .name("log-bound".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                if let Some(s) = bound.tick(Instant::now()) {
                    emit(s);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the log summary thread; summaries come with the next line");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> &'static Metadata<'static> {
        struct Cs;
        static CS: Cs = Cs;
        static META: Metadata<'static> = tracing::metadata! {
            name: "event src/a.rs:1",
            target: "mediaretain",
            level: Level::INFO,
            fields: &[],
            callsite: &CS,
            kind: tracing::metadata::Kind::EVENT,
        };
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                &META
            }
        }
        &META
    }

    fn error() -> &'static Metadata<'static> {
        struct Cs;
        static CS: Cs = Cs;
        static META: Metadata<'static> = tracing::metadata! {
            name: "event src/b.rs:2",
            target: "mediaretain",
            level: Level::ERROR,
            fields: &[],
            callsite: &CS,
            kind: tracing::metadata::Kind::EVENT,
        };
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                &META
            }
        }
        &META
    }

    #[test]
    fn a_flood_writes_its_budget_then_one_summary_and_errors_keep_theirs() {
        let b = Bound::default();
        let t0 = Instant::now();
        let mut written = 0;
        for i in 0..60_000u32 {
            let (ok, s) = b.admit(info(), false, t0, || format!("deleted {i}"));
            assert!(s.is_none());
            written += ok as u32;
        }
        assert_eq!(written, PER_SITE);
        // Info noise used none of the errors' budget.
        let errors = (0..5)
            .filter(|_| b.admit(error(), false, t0, String::new).0)
            .count();
        assert_eq!(errors, 5);
        // The minute is over: one summary naming the place and the first held-back line.
        let s = b.tick(t0 + WINDOW).expect("a summary");
        assert_eq!(s.suppressed, 60_000 - PER_SITE as u64);
        assert_eq!(s.level, Level::INFO);
        assert!(s.text.contains("src/logging.rs:"), "{}", s.text);
        assert!(s.text.contains("deleted 10"), "{}", s.text);
        // A new window: the site may write again; nothing to sum up.
        assert!(b.admit(info(), false, t0 + WINDOW, String::new).0);
        assert!(b.tick(t0 + WINDOW * 2).is_none());
    }
}
