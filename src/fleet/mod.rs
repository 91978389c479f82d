//! A fleet of boxes on one bucket (issue 28): each box's status object, read back by
//! `mediaretain fleet`.
//!
//! TODO(merge): FA's `fleet/mod.rs` (identity, key names, the `.mediaretain/` skip rule,
//! `claim.rs`, `lease.rs`) replaces this file; keep `pub mod status;`.

pub mod status;
