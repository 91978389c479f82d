//! Wall-clock time behind a trait, so time-dependent logic is testable without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

use crate::units::Nanos;

/// A source of "now" in nanoseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Nanos;
    /// `CLOCK_BOOTTIME`, against which the wall clock is watched (see [`ClockWatch`]).
    fn boottime(&self) -> i64 {
        boottime()
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        system_now()
    }
}

/// The current wall-clock time in nanoseconds since the epoch.
pub fn system_now() -> Nanos {
    to_nanos(SystemTime::now())
}

pub use crate::units::to_nanos;

/// A clock that only moves when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `t`.
    pub fn new(t: Nanos) -> Self {
        ManualClock(AtomicI64::new(t))
    }
    /// Moves the clock forward by `ns`.
    pub fn advance(&self, ns: i64) {
        self.0.fetch_add(ns, Ordering::SeqCst);
    }
    /// Sets the clock to `t`.
    pub fn set(&self, t: Nanos) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.0.load(Ordering::SeqCst)
    }
    /// Moves with the manual wall clock: a test's clock never "jumps".
    fn boottime(&self) -> i64 {
        self.now()
    }
}

/// `CLOCK_BOOTTIME` in nanoseconds: time since boot, suspend included; no one can set it.
pub fn boottime() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_BOOTTIME is always there on Linux");
    ts.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`); empty when it cannot be read.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A jump of the wall clock that holds every time-based deletion, as `status` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ClockJump {
    /// `forward` (the wall clock is ahead of the time continued by `CLOCK_BOOTTIME`) or
    /// `back`.
    pub direction: String,
    /// By how much.
    pub by: crate::units::Dur,
    /// How the jump was found, in words.
    pub cause: String,
    /// When it was noticed, by the wall clock as it then read.
    #[serde(with = "crate::units::rfc3339")]
    pub noticed_at: Nanos,
    /// Time rules resume when the clock has stayed where it is until then (wall clock as
    /// it reads now; `clock accept` resumes them at once).
    #[serde(with = "crate::units::rfc3339")]
    pub resumes_at: Nanos,
}

impl ClockJump {
    fn new(skew: i64, cause: String, noticed_at: Nanos, resumes_at: Nanos) -> ClockJump {
        ClockJump {
            direction: if skew >= 0 { "forward" } else { "back" }.into(),
            by: crate::units::Dur(std::time::Duration::from_nanos(skew.unsigned_abs())),
            cause,
            noticed_at,
            resumes_at,
        }
    }

    /// How far the wall clock is from the time continued by `CLOCK_BOOTTIME`, in
    /// nanoseconds (positive: ahead).
    pub fn skew(&self) -> i64 {
        let ns = i64::try_from(self.by.0.as_nanos()).unwrap_or(i64::MAX);
        if self.direction == "back" { -ns } else { ns }
    }
}

/// What one look at the clocks found.
#[derive(Debug, Clone, PartialEq)]
pub enum ClockEvent {
    /// The wall clock jumped (or moved again while held).
    Jumped(ClockJump),
    /// It stayed put for the hold period: its new time is taken as true (`skew` is how far
    /// it moved from the time continued by `CLOCK_BOOTTIME`).
    Resumed {
        /// How far it moved.
        skew: i64,
    },
    /// It came back to the time continued by `CLOCK_BOOTTIME`: nothing to correct.
    Returned,
}

/// What [`ClockWatch`] persists in the state directory, so that a restart within the same
/// boot compares the wall clock with the time it trusted last.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchor {
    /// The boot the anchor belongs to.
    pub boot_id: String,
    /// `CLOCK_BOOTTIME` at the anchor.
    pub boot: i64,
    /// The wall time trusted at the anchor.
    pub wall: Nanos,
    /// Stamps up to this time were accepted (an operator's `clock accept`, or a hold run
    /// out), even though they are ahead of the wall clock.
    pub accepted: Nanos,
}

impl Anchor {
    /// The anchor as one line: `BOOT_ID BOOTTIME WALL ACCEPTED`.
    pub fn to_line(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.boot_id, self.boot, self.wall, self.accepted
        )
    }
    /// Parses [`Anchor::to_line`]; None when it is not one.
    pub fn parse(s: &str) -> Option<Anchor> {
        let mut it = s.split_whitespace();
        let a = Anchor {
            boot_id: it.next()?.to_string(),
            boot: it.next()?.parse().ok()?,
            wall: it.next()?.parse().ok()?,
            accepted: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(a)
    }
}

/// Watches the wall clock against `CLOCK_BOOTTIME`: a wall clock that moved more than
/// `tolerance` from the time continued since the last trusted reading has jumped, and
/// every time-based deletion holds until it has stayed put for `hold` (by `CLOCK_BOOTTIME`)
/// or an operator accepts it. Pure: the caller reads the clocks and passes them in.
#[derive(Debug, Clone)]
pub struct ClockWatch {
    tolerance: i64,
    hold: i64,
    /// The trusted reference: wall time `.0` was true at boottime `.1`.
    trusted: (Nanos, i64),
    jump: Option<Held>,
    accepted: Nanos,
}

#[derive(Debug, Clone)]
struct Held {
    shown: ClockJump,
    /// The skew the clock stands at now (it may have moved again since the jump).
    skew: i64,
    /// Boottime since which it stands there.
    steady_since: i64,
}

impl ClockWatch {
    /// A watch trusting `wall` at boottime `boot`.
    pub fn new(tolerance: i64, hold: i64, wall: Nanos, boot: i64) -> ClockWatch {
        ClockWatch {
            tolerance: tolerance.max(1),
            hold,
            trusted: (wall, boot),
            jump: None,
            accepted: Nanos::MIN,
        }
    }

    /// A watch at the start of a run: `anchor` (the last trusted reading, persisted) is
    /// compared with the clocks when it is of this boot; across a reboot only a wall clock
    /// behind `newest_stamp` (the registry's newest time) is known to be wrong. Returns
    /// the jump found, if any.
    pub fn starting(
        tolerance: i64,
        hold: i64,
        anchor: Option<&Anchor>,
        boot_id: &str,
        newest_stamp: Option<Nanos>,
        wall: Nanos,
        boot: i64,
    ) -> (ClockWatch, Option<ClockEvent>) {
        let mut w = ClockWatch::new(tolerance, hold, wall, boot);
        w.accepted = anchor.map_or(Nanos::MIN, |a| a.accepted);
        if let Some(a) = anchor.filter(|a| !boot_id.is_empty() && a.boot_id == boot_id) {
            w.trusted = (a.wall, a.boot);
            if let Some(ev @ ClockEvent::Jumped(_)) = w.observe(wall, boot) {
                return (w, Some(ev));
            }
        }
        if let Some(newest) = newest_stamp.filter(|&n| n > w.accepted) {
            let trusted_now = w.trusted_at(boot);
            if newest > wall.saturating_add(w.tolerance) && newest > trusted_now {
                // Time continues from the newest stamp: the least it can be now.
                w.trusted = (newest, boot);
                let ev = w.jumped(
                    wall,
                    boot,
                    format!(
                        "the wall clock reads {}, {} behind the newest time in the registry ({})",
                        crate::units::fmt_time(wall),
                        crate::units::fmt_span(newest - wall),
                        crate::units::fmt_time(newest)
                    ),
                );
                return (w, Some(ev));
            }
        }
        (w, None)
    }

    /// The time continued by `CLOCK_BOOTTIME` from the last trusted reading.
    pub fn trusted_at(&self, boot: i64) -> Nanos {
        self.trusted
            .0
            .saturating_add(boot.saturating_sub(self.trusted.1))
    }

    /// The jump in force, if any.
    pub fn held(&self) -> Option<&ClockJump> {
        self.jump.as_ref().map(|h| &h.shown)
    }

    /// The anchor to persist (the trusted reference).
    pub fn anchor(&self, boot_id: &str) -> Anchor {
        Anchor {
            boot_id: boot_id.to_string(),
            boot: self.trusted.1,
            wall: self.trusted.0,
            accepted: self.accepted,
        }
    }

    /// Looks at the clocks: `wall` read at boottime `boot`.
    pub fn observe(&mut self, wall: Nanos, boot: i64) -> Option<ClockEvent> {
        let skew = wall.saturating_sub(self.trusted_at(boot));
        let Some(h) = &mut self.jump else {
            if skew.abs() <= self.tolerance {
                // Steady: small drifts and slews are taken in.
                self.trusted = (wall, boot);
                return None;
            }
            let dir = if skew > 0 { "forward" } else { "back" };
            let cause = format!(
                "the wall clock jumped {dir} {} against CLOCK_BOOTTIME (tolerance {})",
                crate::units::fmt_span(skew.abs()),
                crate::units::fmt_span(self.tolerance)
            );
            return Some(self.jumped(wall, boot, cause));
        };
        if skew.abs() <= self.tolerance {
            self.jump = None;
            self.trusted = (wall, boot);
            return Some(ClockEvent::Returned);
        }
        if (skew - h.skew).abs() > self.tolerance {
            // It moved again: the hold starts over.
            h.skew = skew;
            h.steady_since = boot;
            h.shown = ClockJump::new(
                skew,
                h.shown.cause.clone(),
                h.shown.noticed_at,
                wall.saturating_add(self.hold),
            );
            return Some(ClockEvent::Jumped(h.shown.clone()));
        }
        h.shown.resumes_at = wall.saturating_add(self.hold - (boot - h.steady_since));
        if boot - h.steady_since >= self.hold {
            return Some(self.accept(wall, boot));
        }
        None
    }

    /// An operator confirms the wall clock: its time is taken as true from now on.
    /// Returns how far it is from the time continued by `CLOCK_BOOTTIME`.
    pub fn accept(&mut self, wall: Nanos, boot: i64) -> ClockEvent {
        let skew = wall.saturating_sub(self.trusted_at(boot));
        let before = self.trusted_at(boot);
        self.jump = None;
        self.trusted = (wall, boot);
        // Stamps taken up to the time it was trusted at stay accepted (a reboot later
        // must not find them "ahead" again).
        self.accepted = self.accepted.max(before).max(wall);
        ClockEvent::Resumed { skew }
    }

    fn jumped(&mut self, wall: Nanos, boot: i64, cause: String) -> ClockEvent {
        let skew = wall.saturating_sub(self.trusted_at(boot));
        let shown = ClockJump::new(skew, cause, wall, wall.saturating_add(self.hold));
        self.jump = Some(Held {
            shown: shown.clone(),
            skew,
            steady_since: boot,
        });
        ClockEvent::Jumped(shown)
    }
}

#[cfg(test)]
mod watch_tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const MIN: i64 = 60 * S;
    const DAY: i64 = 86_400 * S;

    #[test]
    fn a_forward_jump_holds_until_steady_for_the_hold_period() {
        let mut w = ClockWatch::new(5 * MIN, 6 * 3600 * S, 1000 * DAY, 0);
        assert_eq!(w.observe(1000 * DAY + 10 * S, 10 * S), None);
        let Some(ClockEvent::Jumped(j)) = w.observe(1365 * DAY + 20 * S, 20 * S) else {
            panic!("no jump")
        };
        assert_eq!(j.skew(), 365 * DAY);
        // Time continues from before the jump.
        assert_eq!(w.trusted_at(30 * S), 1000 * DAY + 30 * S);
        assert_eq!(w.observe(1365 * DAY + 3600 * S, 3600 * S), None);
        assert!(w.held().is_some());
        let ev = w.observe(1365 * DAY + 6 * 3600 * S + 20 * S, 6 * 3600 * S + 20 * S);
        assert_eq!(ev, Some(ClockEvent::Resumed { skew: 365 * DAY }));
        assert!(w.held().is_none());
    }

    #[test]
    fn moving_again_restarts_the_hold_and_coming_back_ends_it() {
        let mut w = ClockWatch::new(5 * MIN, 3600 * S, 1000 * DAY, 0);
        assert!(matches!(
            w.observe(900 * DAY, S),
            Some(ClockEvent::Jumped(_))
        ));
        assert!(matches!(
            w.observe(800 * DAY + 1800 * S, 1800 * S),
            Some(ClockEvent::Jumped(_))
        ));
        assert_eq!(w.observe(800 * DAY + 3000 * S, 3000 * S), None);
        assert!(w.held().is_some(), "steady 1200 s of 3600");
        assert_eq!(
            w.observe(1000 * DAY + 3100 * S, 3100 * S),
            Some(ClockEvent::Returned)
        );
        assert!(w.held().is_none());
    }

    #[test]
    fn a_start_compares_with_the_anchor_of_this_boot_and_the_newest_stamp() {
        let anchor = Anchor {
            boot_id: "b1".into(),
            boot: 100 * S,
            wall: 1000 * DAY,
            accepted: Nanos::MIN,
        };
        assert_eq!(Anchor::parse(&anchor.to_line()), Some(anchor.clone()));
        // Same boot, the wall clock 365 d ahead of the anchor continued.
        let (w, ev) = ClockWatch::starting(
            5 * MIN,
            3600 * S,
            Some(&anchor),
            "b1",
            None,
            1365 * DAY + 200 * S,
            200 * S,
        );
        assert!(matches!(ev, Some(ClockEvent::Jumped(_))));
        assert_eq!(w.trusted_at(200 * S), 1000 * DAY + 100 * S);
        // Another boot: forward cannot be told, behind the newest stamp can.
        let (_, ev) = ClockWatch::starting(
            5 * MIN,
            3600 * S,
            Some(&anchor),
            "b2",
            Some(1000 * DAY),
            1365 * DAY,
            S,
        );
        assert_eq!(ev, None);
        let (w, ev) = ClockWatch::starting(
            5 * MIN,
            3600 * S,
            Some(&anchor),
            "b2",
            Some(1000 * DAY),
            635 * DAY,
            S,
        );
        assert!(matches!(ev, Some(ClockEvent::Jumped(ref j)) if j.skew() == -365 * DAY));
        assert_eq!(w.trusted_at(S), 1000 * DAY);
        // Accepted stamps ahead of the clock are not a jump again.
        let mut w = w;
        w.accept(635 * DAY, 2 * S);
        let (_, ev) = ClockWatch::starting(
            5 * MIN,
            3600 * S,
            Some(&w.anchor("b2")),
            "b3",
            Some(1000 * DAY),
            635 * DAY + DAY,
            S,
        );
        assert_eq!(ev, None);
    }
}
