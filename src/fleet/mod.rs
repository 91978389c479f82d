//! A fleet of boxes on one bucket (issue 28): identities, node prefixes, the rules lease,
//! status objects and the bucket's native lifecycle as a backstop.
// TODO(merge): FA's fleet/mod.rs (identity, key names, the `.mediaretain/` skip rule)
// replaces this file; keep `pub mod lifecycle;`.

pub mod lifecycle;
