//! The names a box and its control objects go by, below every room that needs them
//! (config validates a node name, the stores skip control keys, the fleet writes them):
//! the node name's form, the host's own names, and where control objects live.

/// The file beside the registry recording each S3 store's root as last used
/// (`{"store": "root"}`): a root that moved while the registry holds entries or copies
/// under the old one is refused at start (nothing orphaned silently). Absent for a store:
/// the root before node prefixes, its plain prefix. A store without `node_prefix` in the
/// config keeps the root recorded here (an upgraded box goes on with its layout).
pub const ROOTS_FILE: &str = "s3-roots.json";

/// The directory of control objects beneath a root.
pub const CONTROL_DIR: &str = ".mediaretain";
/// The claim marker of a box's own root.
pub const NODE_MARKER: &str = ".mediaretain/node.json";
/// The status object of a box (written by the fleet view).
pub const STATUS_OBJECT: &str = ".mediaretain/status.json";
/// The rules lease of a shared store.
pub const RULES_LEASE: &str = ".mediaretain/rules-lease.json";

/// True when `key` (of any root) is a control object — one of its components starts with
/// `.mediaretain` (the control directory, and the capability probe's objects): never an
/// entry, never an offload key.
pub fn is_control_key(key: &str) -> bool {
    key.split('/').any(|c| c.starts_with(CONTROL_DIR))
}

/// A valid node name: `[A-Za-z0-9][A-Za-z0-9._-]{0,62}`.
pub fn valid_node(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// The host name (uname nodename), the default node name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `/etc/machine-id` (empty when absent).
pub fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_and_control_keys() {
        assert!(valid_node("box1") && valid_node("a.b_c-d") && valid_node("9"));
        assert!(
            !valid_node("")
                && !valid_node("-x")
                && !valid_node("a/b")
                && !valid_node(&"x".repeat(64))
        );
        assert!(is_control_key(".mediaretain/node.json"));
        assert!(is_control_key("box1/.mediaretain/status.json"));
        assert!(is_control_key("box1/.mediaretain-probe/1/etag"));
        assert!(!is_control_key("box1/local/rec/a.mp4"));
        assert!(!is_control_key("box1/local/x.mediaretain"));
    }
}
