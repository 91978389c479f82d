//! The wall clock is a claim: it is watched against `CLOCK_BOOTTIME` (and, at start, against
//! the last trusted reading of this boot and the registry's newest stamp). While it is
//! found jumped, every time-based deletion holds — ttl, keep_for, offload `after`, audit
//! pruning by age, empty-directory pruning — and leases run on the time continued by
//! `CLOCK_BOOTTIME`, until the clock has stayed put for `clock_hold` or an operator runs
//! `mediaretain clock accept`. Budgets and disk pressure do not depend on the clock and go
//! on. See docs/clock.md.

use super::*;
use crate::clock::{Anchor, ClockEvent, ClockJump, ClockWatch};

/// The anchor file in the state directory: the last trusted reading of the clocks.
const ANCHOR_FILE: &str = "clock";
/// The anchor is written at most this often while the clock is steady.
const ANCHOR_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The engine's watch over the wall clock.
pub(super) struct Watch {
    state: Mutex<(ClockWatch, Option<Instant>)>,
    boot_id: String,
    file: PathBuf,
}

impl Watch {
    /// The watch at the start of a run: compares the clocks with the anchor of this boot
    /// and the registry's newest stamp.
    pub(super) fn open(
        config: &Config,
        registry: &Registry,
        clock: &dyn Clock,
    ) -> Result<(Watch, Option<ClockEvent>)> {
        let d = &config.daemon;
        let file = d.state_dir.join(ANCHOR_FILE);
        let anchor = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| Anchor::parse(&s));
        let boot_id = crate::clock::boot_id();
        // An anchor of this boot says more than any stamp (and costs no scan of the
        // entries); across a reboot only the newest stamp is left to compare with.
        let same_boot = anchor
            .as_ref()
            .is_some_and(|a| !boot_id.is_empty() && a.boot_id == boot_id);
        let newest = match same_boot {
            true => None,
            false => registry.newest_stamp()?,
        };
        let (w, ev) = ClockWatch::starting(
            d.clock_tolerance.as_nanos_i64(),
            d.clock_hold.as_nanos_i64(),
            anchor.as_ref(),
            &boot_id,
            newest,
            clock.now(),
            clock.boottime(),
        );
        Ok((
            Watch {
                state: Mutex::new((w, None)),
                boot_id,
                file,
            },
            ev,
        ))
    }

    /// Writes the anchor (atomically: a torn one would be read as none).
    fn persist(&self, w: &ClockWatch) {
        let tmp = self.file.with_extension("tmp");
        let r = std::fs::write(&tmp, w.anchor(&self.boot_id).to_line())
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = r {
            // Only a restart within this boot loses its comparison: not worth more.
            debug!(path = %self.file.display(), error = %e, "cannot write the clock anchor");
        }
    }
}

impl Engine {
    /// Looks at the clocks; returns the time continued by `CLOCK_BOOTTIME` from the last
    /// trusted reading (the wall clock itself while it is steady) and the jump in force.
    /// Never called with the registry's lock held: a resume corrects the registry.
    fn look_at_clock(&self) -> (Nanos, Option<ClockJump>) {
        let (wall, boot) = (self.clock.now(), self.clock.boottime());
        let mut st = self.clock_watch.state.lock().expect("clock lock");
        let ev = st.0.observe(wall, boot);
        let trusted = st.0.trusted_at(boot);
        let held = st.0.held().cloned();
        let due = st.1.is_none_or(|t| t.elapsed() >= ANCHOR_EVERY);
        if held.is_none() && (due || ev.is_some()) {
            self.clock_watch.persist(&st.0);
            st.1 = Some(Instant::now());
        }
        drop(st);
        if let Some(ev) = ev {
            self.clock_event(ev, wall, "daemon");
        }
        (trusted, held)
    }

    /// Says what the clock did, and on a resume corrects what was taken under the time it
    /// no longer has: leases keep the time they had left (by `CLOCK_BOOTTIME`), and stamps
    /// of first sight ahead of the clock now come back to it.
    pub(super) fn clock_event(&self, ev: ClockEvent, wall: Nanos, by: &str) {
        match ev {
            ClockEvent::Jumped(j) => {
                self.metrics.clock_jumped();
                error!(
                    action = "clock-jump",
                    skew_s = j.skew() / 1_000_000_000,
                    resumes_at = %fmt_time(j.resumes_at),
                    "CLOCK JUMPED: {}; every time-based deletion (ttl, keep_for, offload after, audit pruning) holds until the clock has stayed put until {}, or `mediaretain clock accept`; leases run on CLOCK_BOOTTIME; budgets and disk pressure go on",
                    j.cause,
                    fmt_time(j.resumes_at)
                );
            }
            ClockEvent::Returned => {
                // First sights stamped while it was ahead are ahead of it now.
                let stamps = match self.reg().clock_moved(0, wall) {
                    Ok((_, n)) => n,
                    Err(e) => {
                        error!(action = "clock-steady", error = %e, "cannot correct first-seen stamps ahead of the clock");
                        0
                    }
                };
                warn!(
                    action = "clock-steady",
                    first_seen_corrected = stamps,
                    "the wall clock is back on the time continued by CLOCK_BOOTTIME; time-based deletions resume; {stamps} first-seen stamps ahead of it are set to now"
                );
            }
            ClockEvent::Resumed { skew } => {
                let moved = self.reg().clock_moved(skew, wall);
                // The leases' expiries moved: their compiled set is read again.
                self.inuse.leases_changed();
                let (leases, stamps) = match moved {
                    Ok(n) => n,
                    Err(e) => {
                        error!(action = "clock-accept", error = %e, "cannot correct leases and stamps to the accepted clock");
                        (0, 0)
                    }
                };
                warn!(
                    action = "clock-accept",
                    by,
                    skew_s = skew / 1_000_000_000,
                    leases,
                    first_seen_corrected = stamps,
                    "the wall clock ({}, {} {} the time continued by CLOCK_BOOTTIME) is taken as true ({}); time-based deletions resume; {leases} leases keep the time they had left; {stamps} first-seen stamps ahead of it are set to now",
                    fmt_time(wall),
                    fmt_span(skew.abs()),
                    if skew >= 0 { "ahead of" } else { "behind" },
                    if by == "operator" {
                        "an operator accepted it"
                    } else {
                        "it stayed put for clock_hold"
                    }
                );
            }
        }
    }

    /// Why time-based deletions hold now (None: they do not).
    pub(super) fn time_hold(&self) -> Option<String> {
        self.look_at_clock().1.map(|j| {
            format!(
                "held: CLOCK JUMPED ({}); time rules resume {} or on `mediaretain clock accept`",
                j.cause,
                fmt_time(j.resumes_at)
            )
        })
    }

    /// The time leases run on: continued by `CLOCK_BOOTTIME` from the last trusted reading
    /// of the wall clock, so that a jump of the wall clock never ends a lease.
    pub(super) fn lease_now(&self) -> Nanos {
        self.look_at_clock().0
    }

    /// The jump in force (for `status` and the metrics).
    pub fn clock_jump(&self) -> Option<ClockJump> {
        self.look_at_clock().1
    }

    /// `mediaretain clock accept`: the wall clock is taken as true from now on; what was
    /// held resumes. Returns the jump that was in force (None: none was).
    pub fn clock_accept(&self) -> Result<Option<ClockJump>> {
        let (wall, boot) = (self.clock.now(), self.clock.boottime());
        let mut st = self.clock_watch.state.lock().expect("clock lock");
        // A jump that happened just now is found before it is accepted.
        let first = st.0.observe(wall, boot);
        let held = st.0.held().cloned();
        let resumed = held.as_ref().map(|_| st.0.accept(wall, boot));
        self.clock_watch.persist(&st.0);
        st.1 = Some(Instant::now());
        drop(st);
        if let Some(ev @ ClockEvent::Jumped(_)) = first {
            self.clock_event(ev, wall, "daemon");
        }
        if let Some(ev) = resumed {
            self.clock_event(ev, wall, "operator");
        }
        Ok(held)
    }
}
