//! A fleet on one bucket: several boxes archiving into one S3-compatible cluster,
//! coordinated through the bucket itself (no service of our own).
//!
//! - Identity: `[daemon] node` names the box; a node-prefixed S3 store's root is
//!   `PREFIX/NODE/`, so boxes never write each other's keys.
//! - [`claim`]: each box claims its root with a marker object, `ROOT/.mediaretain/node.json`
//!   (conditional create where the store honours it), rewritten every `fleet_heartbeat`;
//!   a second box with the same root is refused at start, or alarmed within one heartbeat.
//! - [`lifecycle`]: the remote rules a bucket can enforce itself, compiled into its
//!   lifecycle configuration (`mediaretain lifecycle plan|apply|check`), a backstop.
//! - [`lease`]: the remote classes of a `shared = true` store are applied by exactly one box
//!   at a time, the holder of `SHARED-ROOT/.mediaretain/rules-lease.json`, taken and renewed
//!   with `If-Match` and an epoch; every DeleteObjects batch of a shared store is fenced.
//!
//! - [`status`]: each box's status object, `ROOT/.mediaretain/status.json`, written every
//!   `fleet_heartbeat` and read back by `mediaretain fleet`.
//!
//! Control objects live under a `.mediaretain/` directory of a root and are never registry
//! entries: a listing skips every key with a component starting with `.mediaretain`.

pub mod claim;
pub mod lease;
pub mod lifecycle;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::node::{host_name, machine_id};

/// Who wrote a control object: the box and the process.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    /// `[daemon] node`.
    pub node: String,
    /// The host name.
    pub host: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// This boot's id.
    pub boot_id: String,
    /// The daemon's pid.
    pub pid: u32,
    /// mediaretain's version.
    pub version: String,
    /// When the process started (RFC 3339).
    pub started: String,
}

impl Identity {
    /// This process, as box `node`.
    pub fn own(node: &str) -> Identity {
        // Read once: the process's start, host, machine and boot do not change under it.
        static OWN: OnceLock<Identity> = OnceLock::new();
        let base = OWN.get_or_init(|| Identity {
            node: String::new(),
            host: host_name(),
            machine_id: machine_id(),
            boot_id: crate::clock::boot_id(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        });
        Identity {
            node: node.to_string(),
            ..base.clone()
        }
    }

    /// Same process: same machine, boot, pid and start.
    pub fn same_process(&self, other: &Identity) -> bool {
        self.machine_id == other.machine_id
            && self.boot_id == other.boot_id
            && self.pid == other.pid
            && self.started == other.started
    }

    /// `other` was written by a process of this machine's current boot that is still
    /// running as mediaretain (not us).
    pub fn live_sibling(&self, other: &Identity) -> bool {
        self.machine_id == other.machine_id
            && self.boot_id == other.boot_id
            && other.pid != self.pid
            && std::fs::read_to_string(format!("/proc/{}/comm", other.pid))
                .is_ok_and(|c| c.trim().starts_with("mediaretain"))
    }

    /// `other` was written by an earlier process of this very box: same node name and
    /// machine, and either another boot or a process that is gone.
    pub fn own_earlier(&self, other: &Identity) -> bool {
        self.node == other.node
            && !self.machine_id.is_empty()
            && self.machine_id == other.machine_id
            && !self.same_process(other)
            && !self.live_sibling(other)
    }

    /// In words, for errors: `node "box1" (host vm, pid 42, mediaretain 0.1, started …)`.
    pub fn describe(&self) -> String {
        format!(
            "node {:?} (host {}, machine-id {}, pid {}, mediaretain {}, started {})",
            self.node, self.host, self.machine_id, self.pid, self.version, self.started
        )
    }
}

/// One store's state in the fleet, as `status` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StoreFleet {
    /// The store.
    pub store: String,
    /// Its root (what its keys are relative to).
    pub root: String,
    /// The claim marker is ours (written at start and at every heartbeat since).
    pub claimed: bool,
    /// Another writer of our claim marker was found: offloads to this root stop until
    /// this daemon is restarted (after the conflict is resolved). What was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<String>,
    /// A shared store: whether this box holds its rules lease now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_lease_held: Option<bool>,
    /// The lease's epoch as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_lease_epoch: Option<u64>,
}

/// The fleet state of a daemon: each S3 store's claim and, for shared stores, lease.
#[derive(Default)]
pub struct Fleet {
    /// Claims of node roots, by store.
    pub claims: Mutex<HashMap<String, claim::Claim>>,
    /// Rules leases of shared stores, by store.
    pub leases: Mutex<HashMap<String, Arc<lease::Lease>>>,
    /// The fleet runs (a daemon): without it (one-shot commands) nothing is claimed and
    /// every store may be written as before.
    pub active: std::sync::atomic::AtomicBool,
    /// Stores whose setup failed (no answer): tried again every heartbeat.
    pub pending: Mutex<Vec<String>>,
    /// When the pending stores were last tried.
    pub retry_at: Mutex<Option<std::time::Instant>>,
    /// When each claim marker was last rewritten.
    pub beat_at: Mutex<HashMap<String, std::time::Instant>>,
    /// Stores probed at start (not probed again by the first remote pass).
    pub probed: Mutex<std::collections::HashSet<String>>,
    /// Stores whose root another box was found to hold when set up after the start (the
    /// error is logged once, not at every retry).
    pub taken: Mutex<std::collections::HashSet<String>>,
}

impl Fleet {
    fn active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Why nothing may be offloaded to S3 store `store` now (None: it may).
    pub fn offload_refusal(&self, store: &str) -> Option<String> {
        if !self.active() {
            return None;
        }
        let claims = self.claims.lock().expect("fleet claims");
        match claims.get(store) {
            None => Some(format!(
                "store {store:?}: its root is not claimed yet (the claim marker could not be written); offloads wait"
            )),
            Some(c) => c.conflict.clone(),
        }
    }

    /// The rules lease of shared store `store` (None: not a shared store, or no daemon).
    pub fn lease(&self, store: &str) -> Option<Arc<lease::Lease>> {
        self.leases
            .lock()
            .expect("fleet leases")
            .get(store)
            .cloned()
    }

    /// Whether this box may list and apply the classes of S3 store `store` now (`shared`:
    /// it is a shared store): always for a box's own store; a shared store only while
    /// this box holds its rules lease — never without a daemon's lease (a one-shot command).
    pub fn applies_rules(&self, store: &str, shared: bool) -> bool {
        match self.lease(store) {
            Some(l) => l.may_act(),
            None => !shared,
        }
    }

    /// Whether this box may delete in S3 store `store` now: in a box's own store while its
    /// claim holds (no conflict); in a shared store only while it holds the rules lease and
    /// has listed the store since it took it.
    pub fn deletes_in(&self, store: &str, shared: bool) -> bool {
        match self.lease(store) {
            Some(l) => l.may_delete(),
            // A root another box writes too (or not claimed yet) may hold its objects:
            // nothing is deleted there either until the conflict is resolved.
            None => !shared && self.offload_refusal(store).is_none(),
        }
    }

    /// A shared store whose lease this box took and has not listed since: list it now.
    pub fn needs_listing(&self) -> bool {
        self.leases
            .lock()
            .expect("fleet leases")
            .values()
            .any(|l| l.needs_listing())
    }

    /// Each store's fleet state, for `status`.
    pub fn report(&self) -> Vec<StoreFleet> {
        let mut out: Vec<StoreFleet> = self
            .claims
            .lock()
            .expect("fleet claims")
            .iter()
            .map(|(s, c)| StoreFleet {
                store: s.clone(),
                root: c.root.clone(),
                claimed: c.conflict.is_none(),
                conflict: c.conflict.clone(),
                ..Default::default()
            })
            .collect();
        for s in self.pending.lock().expect("fleet pending").iter() {
            out.push(StoreFleet {
                store: s.clone(),
                claimed: false,
                conflict: Some(format!(
                    "store {s:?}: not set up yet (its claim or rules lease could not be made; retried every heartbeat)"
                )),
                ..Default::default()
            });
        }
        for (s, l) in self.leases.lock().expect("fleet leases").iter() {
            let (held, epoch) = l.state();
            out.push(StoreFleet {
                store: s.clone(),
                root: l.root.clone(),
                claimed: false,
                conflict: None,
                rules_lease_held: Some(held),
                rules_lease_epoch: epoch,
            });
        }
        out.sort_by(|a, b| a.store.cmp(&b.store));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fleet's keys as the config validates them.
    #[test]
    fn fleet_keys_are_validated() {
        let path = std::path::Path::new("/etc/mediaretain/config.toml");
        let s3 = |name: &str, extra: &str| {
            format!(
                "[[store]]\nname = \"{name}\"\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"b\"\nprefix = \"media/\"\n{extra}\n"
            )
        };
        let local = "[[store]]\nname = \"m\"\nkind = \"local\"\nroot = \"/srv/m\"\n";
        let parse = |daemon: &str, rest: &str| {
            crate::config::Config::parse_with(
                path,
                &format!("[daemon]\nstate_dir = \"/var/lib/mr\"\n{daemon}\n{rest}"),
                false,
            )
        };
        let err = |daemon: &str, rest: &str| parse(daemon, rest).unwrap_err().to_string();
        let ok = parse(
            "node = \"box1\"",
            &format!(
                "{}{}{}",
                s3("own", ""),
                s3(
                    "all",
                    "shared = true\nrules_lease = \"5s\"\nremote_rules_node = \"box2\""
                ),
                local
            ),
        )
        .unwrap();
        let loc = |n: &str| ok.store(n).unwrap().s3.clone().unwrap();
        assert_eq!(loc("own").root, "media/box1");
        assert!(loc("own").node_prefix && !loc("own").shared);
        assert_eq!(loc("all").root, "media");
        assert!(loc("all").shared && !loc("all").node_prefix);
        assert_eq!(loc("all").remote_rules_node.as_deref(), Some("box2"));
        assert_eq!(ok.daemon.node, "box1");
        assert_eq!(ok.daemon.fleet_heartbeat.0.as_secs(), 60);
        // Default node: the host name.
        let dflt = parse("", &s3("own", "node_prefix = false")).unwrap();
        assert_eq!(dflt.daemon.node, host_name());
        assert_eq!(
            dflt.store("own").unwrap().s3.as_ref().unwrap().root,
            "media"
        );

        let e = err("node = \"-x\"", "");
        assert!(e.contains("daemon.node \"-x\""), "{e}");
        let e = err("", &s3("all", "shared = true\nnode_prefix = true"));
        assert!(e.contains("node_prefix must be false"), "{e}");
        let e = err("", &s3("own", "remote_rules_node = \"box2\""));
        assert!(e.contains("remote_rules_node is for shared stores"), "{e}");
        let e = err("", &s3("own", "rules_lease = \"5s\""));
        assert!(e.contains("rules_lease is for shared stores"), "{e}");
        let e = err("", &s3("all", "shared = true\nrules_lease = \"1s\""));
        assert!(e.contains("rules_lease must be between 2s and 1h"), "{e}");
        let e = err("fleet_heartbeat = \"0s\"", "");
        assert!(e.contains("fleet_heartbeat must be between"), "{e}");
        let e = err("", &format!("{local}node_prefix = true\n"));
        assert!(e.contains("node_prefix is for kind = \"s3\" stores"), "{e}");
        // Never an offload target.
        let offload = "[[class]]\nname = \"r\"\nstore = \"m\"\nmatch = [\"**\"]\nlifecycle = \"recording\"\noffload = { to = \"all\", after = \"0s\" }\n";
        let e = err(
            "",
            &format!("{}{local}{offload}", s3("all", "shared = true")),
        );
        assert!(e.contains("is a shared store"), "{e}");
    }
}
