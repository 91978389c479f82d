//! mediaretain — a media-retention daemon for streaming and recording boxes.
//!
//! It keeps a registry of every temp file, segment and recording in its stores, applies
//! lifecycle rules (ttl, keep_for, count and size budgets, operator pins), and deletes only
//! what it has re-checked, with every deletion verified and audited.
//!
//! # Architecture: one room per concept
//!
//! Data flows one way (an arrow: "calls"; nothing calls back up):
//!
//! ```text
//!   main ─▶ cli ─────────────▶ control::client ──(Unix socket, JSON)──▶ control::server ─┐
//!             └─(no daemon: the engine in-process, under the state lock)───────────────┐  │
//!   daemon ─▶ watch, watchdog (volumes), timers, sd_notify, hooks (media servers' TCP) │  │
//!     └──────────────────────────────────────────────────────────────────────▶ engine ◀┘◀─┘
//!   engine ─▶ policy (pure: entries + config + now → plan)
//!          ─▶ inuse (is it in use? leases, /proc, playlists, writers)
//!          ─▶ store (local: beneath-the-root I/O and the deleter; s3) ─▶ scan
//!          ─▶ registry (SQLite) ─▶ config ─▶ units, spell
//! ```
//!
//! Each module's one job — the room it is, and what may be changed there:
//!
//! - [`cli`]: what an operator types; one module per concern (`status`, `passes` = plan and
//!   gc, `files` = ls and explain, `history`, `marks`, `rm`, `admin`), each with its rendering; the
//!   backend picks the daemon's socket or the in-process engine.
//! - [`daemon`]: the long-running service: signals, reload, the pass schedule, the offload
//!   worker, the watchdog loop, systemd notifications; it owns no policy.
//! - [`control`]: the socket API (routes, access by peer credentials, JSON errors), and
//!   `GET /metrics` served there and on its own TCP listener (`control/metrics.rs`).
//! - [`hooks`]: the webhook receiver: each media server's dialect parsed into one event.
//! - [`engine`]: the façade that wires registry, running config and the parts below —
//!   `engine/executor.rs` (the guard chain as a table, act, verify: the only way a file
//!   goes), `ledger.rs` (each outcome counted, logged and audited: the local chunks' and
//!   the S3 deletions'), `runtime.rs` (the running config), `index.rs` (scans and watched
//!   changes), `explain.rs`, `history.rs` (the audit, filtered and paged), `marks.rs`,
//!   `status.rs`, `scrape.rs` (what a metrics scrape reads), `facts.rs` (what servers
//!   announce), `rm.rs`, `pressure.rs` (the disk-pressure pass), `offload.rs` (copy,
//!   verify, backoff), `remote.rs` (S3 listing and deletion), `s3io.rs` (the I/O runtime
//!   S3 calls run on, below remote, offload and fleet), `dedupe.rs` (identical
//!   copies), `recover.rs` (crash leftovers), `clockwatch.rs` (the wall clock watched
//!   against `CLOCK_BOOTTIME`: a jump holds the time rules). The executor, ledger, offload,
//!   remote and dedupe see only the state they use — a small struct or arguments borrowed
//!   from the engine by its thin methods (`Engine::executor`, `ledger`, `offloader`) —
//!   never the whole `Engine`.
//! - [`fleet`]: several boxes on one bucket: who wrote a control object ([`fleet::Identity`]), each S3 root's claim marker
//!   (`fleet/claim.rs`) and a shared store's rules lease with its fencing (`fleet/lease.rs`);
//!   the engine drives them (`engine/fleet.rs`), the daemon ticks them; the box's status
//!   object and the fleet view (`fleet/status.rs`); a store's remote rules compiled into the
//!   bucket's native lifecycle, a backstop (`fleet/lifecycle.rs`).
//! - [`inuse`]: every in-use signal behind one view, [`inuse::InUse`]; a new signal is a
//!   module there, a reason in `InUse::reasons` and a guard in the executor's table.
//! - [`policy`]: pure decisions (ttl, keep_for, budgets, pressure tiers): no I/O, unit-tested
//!   with a manual clock.
//! - [`store`]: I/O confined beneath a store root ([`store::local`], its deleter in
//!   `store/local/delete.rs`) or an S3 prefix ([`store::s3`]); the [`store::Store`] trait
//!   and its conformance suite.
//! - [`scan`], [`watch`]: descriptor-based walks and inotify; they only report.
//! - [`registry`]: the SQLite registry: entries, marks, audit and intents, offload
//!   bookkeeping, numbered migrations.
//! - [`metrics`]: the Prometheus families and their labels: counters the engine bumps,
//!   gauges it fills at scrape time (serving them is `control`'s).
//! - [`config`]: the model, loading with `conf.d/`, validation with `FILE:LINE:COL`.
//! - [`watchdog`]: volume sampling and the fill-rate forecast; [`access`]: peer credentials;
//!   [`statedir`]: the single-instance lock; [`spell`]: the lossless spelling of paths as
//!   text; [`failure`]: an error with its exit code; [`logging`]: journald or stderr;
//!   [`reserve`]: the space kept in the state directory for the registry of a full disk;
//!   [`node`]: the names a box and its control objects go by (below config, store and
//!   fleet, which all use them); [`listen`]: the listeners (hooks, metrics, control socket) served within connection
//!   caps and timeouts.

pub mod access;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod failure;
pub mod fleet;
pub mod hooks;
pub mod inuse;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod progress;
pub mod registry;
pub mod reserve;
pub mod scan;
pub mod spell;
pub mod statedir;
pub mod store;
pub mod units;
pub mod watch;
pub mod watchdog;

/// Process exit codes (sysexits.h).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Usage error.
    pub const USAGE: u8 = 64;
    /// Bad input data (e.g. a path outside every store).
    pub const DATAERR: u8 = 65;
    /// A needed service is unavailable (e.g. another daemon holds the state dir).
    pub const UNAVAILABLE: u8 = 69;
    /// Internal software error.
    pub const SOFTWARE: u8 = 70;
    /// Temporary failure (e.g. a client's lease limit is reached).
    pub const TEMPFAIL: u8 = 75;
    /// Permission denied (e.g. a socket client asking for what only root may do).
    pub const NOPERM: u8 = 77;
    /// Cannot create a file or directory.
    pub const CANTCREAT: u8 = 73;
    /// I/O error.
    pub const IOERR: u8 = 74;
    /// Configuration error.
    pub const CONFIG: u8 = 78;
}
