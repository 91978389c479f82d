//! Logging: journald with structured fields when stderr is connected to the journal (as
//! under systemd), readable stderr otherwise. `RUST_LOG` filters, e.g.
//! `RUST_LOG=mediaretain=debug`.
//!
//! Journal fields carry the `MEDIARETAIN_` prefix, so
//! `journalctl -u mediaretain MEDIARETAIN_ACTION=delete` lists every deletion.

use std::os::unix::fs::MetadataExt;

use tracing_journald::{Priority, PriorityMappings};
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
            .with(rest)
            .with(alarms)
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour())
        .init();
}
