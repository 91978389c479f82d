//! The rules lease of a shared store, `SHARED-ROOT/.mediaretain/rules-lease.json`: only
//! its holder lists the shared store and applies its classes.
//!
//! Taken and renewed with conditional writes only (`If-None-Match: *` to create it,
//! `If-Match: ETAG` to renew or take it over), never judged by a time written in it:
//!
//! - The holder renews every `rules_lease / 4`, and counts its lease from the moment it
//!   *sent* the renewal that succeeded, on its own `CLOCK_BOOTTIME`; it stops acting
//!   `rules_lease / 2` after that moment (half a lease before a taker can take over).
//! - Another box reads the object every `rules_lease / 4`; it may take it over only after
//!   seeing the same ETag for `rules_lease + rules_lease / 4` on its own monotonic clock,
//!   with `If-Match` on that ETag and the epoch + 1 (two takers: one wins, one gets 412).
//! - Fencing: before every DeleteObjects batch of the shared store, in the deleting thread,
//!   [`Lease::fence`] checks that the holder's own lease time has not run out and that a
//!   HEAD of the lease object still shows the ETag our last renewal produced. A holder
//!   that was paused (SIGSTOP) or cut off finds its time run out, renews with its old
//!   ETag, gets 412 and deletes nothing more. The residual window is between the fence's
//!   HEAD and the DeleteObjects request leaving (microseconds, unless the process is
//!   paused exactly there — and then the pause must also outlast `rules_lease / 2` plus the
//!   taker's wait for anything to be deleted twice; deleting twice is harmless to data).
//!
//! On a store that ignores conditional writes there is no lease: `remote_rules_node` names
//! the only node that applies the shared rules ([`Mode::Fixed`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Identity;
use crate::clock::boottime;
use crate::node::RULES_LEASE;
use crate::store::s3::{ControlPut, ControlWrite, S3Store};

/// How the holder is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// By the lease object and conditional writes.
    Conditional,
    /// By configuration (`remote_rules_node`): whether it is this node.
    Fixed(bool),
}

/// The lease object's body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Body {
    /// The holder.
    pub holder: Identity,
    /// +1 at every takeover.
    pub epoch: u64,
    /// Renewals by this holder.
    pub renewal: u64,
    /// When, by the holder's wall clock (informative only).
    pub written: String,
}

#[derive(Clone, Debug)]
struct Held {
    etag: String,
    epoch: u64,
    renewal: u64,
    /// `CLOCK_BOOTTIME` when the renewal that produced `etag` was sent.
    sent: i64,
}

#[derive(Debug, Default)]
struct State {
    held: Option<Held>,
    /// Not holding: the ETag seen and since when (our monotonic clock).
    seen: Option<(String, i64)>,
    /// The epoch last seen or held.
    epoch: Option<u64>,
    /// No request before this (monotonic).
    next: i64,
    /// The last request failed (logged once, until the store answers again).
    failing: bool,
}

/// One shared store's rules lease as this daemon sees it.
#[derive(Debug)]
pub struct Lease {
    /// The shared store.
    pub store: String,
    /// Its root.
    pub root: String,
    period: Duration,
    mode: Mode,
    state: Mutex<State>,
    /// Times this box took the lease (each needs a fresh listing before deleting).
    gains: AtomicU64,
    /// The value of `gains` when the last successful listing began.
    listed: AtomicU64,
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Lease {
    /// The lease of shared store `store` lasting `period`.
    pub fn new(store: &str, root: &str, period: Duration, mode: Mode) -> Lease {
        Lease {
            store: store.to_string(),
            root: root.to_string(),
            period,
            mode,
            state: Mutex::new(State::default()),
            gains: AtomicU64::new(0),
            listed: AtomicU64::new(0),
        }
    }

    /// How the holder is decided.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether this box holds the lease and its own time has not run out.
    pub fn may_act(&self) -> bool {
        match self.mode {
            Mode::Fixed(h) => h,
            Mode::Conditional => {
                let st = self.state.lock().expect("lease state");
                st.held
                    .as_ref()
                    .is_some_and(|h| boottime() < h.sent.saturating_add(nanos(self.period / 2)))
            }
        }
    }

    /// Before a listing: a token for [`Lease::listed`].
    pub fn listing(&self) -> u64 {
        self.gains.load(Ordering::SeqCst)
    }

    /// A listing that began with `token` succeeded.
    pub fn listed(&self, token: u64) {
        self.listed.fetch_max(token, Ordering::SeqCst);
    }

    /// Holding, but not listed since the lease was taken: what the registry knows of the
    /// store may be another holder's past (objects it deleted since).
    pub fn needs_listing(&self) -> bool {
        self.may_act() && self.listed.load(Ordering::SeqCst) < self.gains.load(Ordering::SeqCst)
    }

    /// Whether this box may delete in the store now: it holds the lease, its own time has
    /// not run out, and the store was listed since it took the lease.
    pub fn may_delete(&self) -> bool {
        self.may_act() && self.listed.load(Ordering::SeqCst) >= self.gains.load(Ordering::SeqCst)
    }

    /// (held now, the epoch last seen).
    pub fn state(&self) -> (bool, Option<u64>) {
        let epoch = self.state.lock().expect("lease state").epoch;
        (self.may_act(), epoch)
    }

    /// The check before every DeleteObjects batch of the shared store: our own lease time
    /// left, and the lease object still the one our last renewal wrote. Err: why not.
    pub async fn fence(&self, remote: &S3Store) -> Result<(), String> {
        match self.mode {
            Mode::Fixed(true) => return Ok(()),
            Mode::Fixed(false) => {
                return Err("this node is not the store's remote_rules_node".into());
            }
            Mode::Conditional => {}
        }
        if !self.may_act() {
            return Err(format!(
                "this box does not hold the rules lease of store {:?} (or its own lease time ran out)",
                self.store
            ));
        }
        let ours = match &self.state.lock().expect("lease state").held {
            Some(h) => h.etag.clone(),
            None => return Err("the rules lease was lost".into()),
        };
        match remote.control_etag(RULES_LEASE).await {
            Ok(Some(e)) if e == ours => Ok(()),
            Ok(other) => {
                self.lost(other.as_deref().unwrap_or("none"));
                Err(format!(
                    "the rules lease of store {:?} is no longer ours (its ETag is {})",
                    self.store,
                    other.as_deref().unwrap_or("gone")
                ))
            }
            Err(e) => Err(format!("cannot check the rules lease: {e}")),
        }
    }

    /// A request about the lease failed: said once, not at every try while the store is
    /// unreachable.
    fn failed(&self, what: &str, e: &dyn std::fmt::Display) {
        let mut st = self.state.lock().expect("lease state");
        if !std::mem::replace(&mut st.failing, true) {
            tracing::warn!(store = %self.store, error = %e, "{what}; tried again every {:?}", self.period / 4);
        }
    }

    /// The store answered a request about the lease.
    fn answered(&self) {
        let mut st = self.state.lock().expect("lease state");
        if std::mem::replace(&mut st.failing, false) {
            tracing::info!(store = %self.store, "the rules lease of store {:?} is reachable again", self.store);
        }
    }

    fn lost(&self, now: &str) {
        let mut st = self.state.lock().expect("lease state");
        if let Some(h) = st.held.take() {
            tracing::warn!(store = %self.store, epoch = h.epoch, etag = now, "lost the rules lease of store {:?}: another box took it; this box no longer lists or deletes there", self.store);
        }
    }

    /// Whether [`Lease::tick`] has anything to do now (a request is due).
    pub fn due(&self) -> bool {
        self.mode == Mode::Conditional && boottime() >= self.state.lock().expect("lease state").next
    }

    /// One step: renew the lease when held and due, else watch it and take it when it is
    /// free or silent for long enough. Errors are logged; the lease's own time decides.
    pub async fn tick(&self, remote: &S3Store, me: &Identity) {
        if self.mode != Mode::Conditional {
            return;
        }
        let now = boottime();
        let (held, next) = {
            let st = self.state.lock().expect("lease state");
            (st.held.clone(), st.next)
        };
        if now < next {
            return;
        }
        let step = nanos(self.period / 4);
        self.state.lock().expect("lease state").next = now + step;
        let written =
            || humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        if let Some(h) = held {
            let body = Body {
                holder: me.clone(),
                epoch: h.epoch,
                renewal: h.renewal + 1,
                written: written(),
            };
            let sent = boottime();
            match remote
                .control_put(
                    RULES_LEASE,
                    body_bytes(&body),
                    ControlWrite::Update(h.etag.clone()),
                )
                .await
            {
                Ok(ControlPut::Written(etag)) => {
                    self.answered();
                    let mut st = self.state.lock().expect("lease state");
                    st.held = Some(Held {
                        etag,
                        epoch: h.epoch,
                        renewal: h.renewal + 1,
                        sent,
                    });
                }
                Ok(ControlPut::Refused) => {
                    self.answered();
                    self.lost("changed")
                }
                Err(e) => self.failed(
                    "cannot renew the rules lease; this box stops deleting there when its own lease time runs out",
                    &e,
                ),
            }
            return;
        }
        let current = match remote.control_get(RULES_LEASE).await {
            Ok(c) => {
                self.answered();
                c
            }
            Err(e) => return self.failed("cannot read the rules lease", &e),
        };
        let (how, epoch, from) = match current {
            None => (ControlWrite::Create, 1, None),
            Some((bytes, etag)) => {
                let body: Option<Body> = serde_json::from_slice(&bytes).ok();
                let mut st = self.state.lock().expect("lease state");
                st.epoch = body.as_ref().map(|b| b.epoch);
                match &st.seen {
                    Some((e, since)) if *e == etag => {
                        let wait = self.period + self.period / 4;
                        if now.saturating_sub(*since) < nanos(wait) {
                            return;
                        }
                    }
                    _ => {
                        st.seen = Some((etag, now));
                        return;
                    }
                }
                let epoch = body.as_ref().map_or(0, |b| b.epoch) + 1;
                (ControlWrite::Update(etag), epoch, body.map(|b| b.holder))
            }
        };
        let body = Body {
            holder: me.clone(),
            epoch,
            renewal: 0,
            written: written(),
        };
        let sent = boottime();
        match remote
            .control_put(RULES_LEASE, body_bytes(&body), how)
            .await
        {
            Ok(ControlPut::Written(etag)) => {
                let mut st = self.state.lock().expect("lease state");
                st.held = Some(Held {
                    etag,
                    epoch,
                    renewal: 0,
                    sent,
                });
                st.seen = None;
                st.epoch = Some(epoch);
                self.gains.fetch_add(1, Ordering::SeqCst);
                match from {
                    Some(f) => {
                        tracing::info!(store = %self.store, epoch, from = %f.describe(), "took the rules lease of store {:?} over (epoch {epoch}): its holder was silent for a whole lease", self.store)
                    }
                    None => {
                        tracing::info!(store = %self.store, epoch, "took the rules lease of store {:?} (epoch {epoch})", self.store)
                    }
                }
            }
            Ok(ControlPut::Refused) => {
                self.state.lock().expect("lease state").seen = None;
            }
            Err(e) => self.failed("cannot take the rules lease", &e),
        }
    }
}

fn body_bytes(b: &Body) -> Vec<u8> {
    serde_json::to_vec_pretty(b).expect("a lease serializes")
}
