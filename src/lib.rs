//! mediaretain — a media-retention daemon for streaming and recording boxes.
//!
//! It keeps a registry of every temp file, segment and recording in its stores, applies
//! lifecycle rules (ttl, keep_for, count and size budgets, operator pins), and deletes only
//! what it has re-checked, with every deletion verified and audited.
//!
//! Data flow: [`scan`] and [`watch`] fill the [`registry`]; [`policy::plan`] — a pure
//! function of entries, config and now — decides; the [`engine`] acts through the
//! [`store`]s; the [`daemon`] wires it to signals, timers, systemd and the [`control`]
//! socket; [`cli`] is what an operator types.

pub mod access;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod failure;
pub mod hooks;
pub mod inuse;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod registry;
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
