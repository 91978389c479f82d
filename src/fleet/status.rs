//! The box's status object, `ROOT/.mediaretain/status.json` in each S3 store it uses,
//! written every `[daemon] fleet_heartbeat`, and the fleet view that reads every box's
//! back (`mediaretain fleet`).
//!
//! The writer is a task of its own: it reads what `status` shows, then PUTs one small
//! object per store with a deadline. A dead endpoint or a slow registry delays only this
//! task — never a pass — and a failed write is simply tried again at the next heartbeat.
//!
//! A status object is a box's claim about itself, for people and dashboards: nothing is
//! ever deleted or skipped on its strength. Its age is the server's `Last-Modified`
//! against the reader's clock, not a time the box wrote.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::engine::{Engine, EngineError, s3_io};
use crate::store::s3::S3Store;
use crate::store::{Store as _, StoreError};
use crate::units::{Dur, Nanos};

/// The status object's key, relative to a box's root (the S3 store's root).
pub const STATUS_KEY: &str = crate::node::STATUS_OBJECT;

pub use crate::node::CONTROL_DIR;

/// A box is stale when its status object is older than this many of its heartbeats.
pub const STALE_BEATS: u64 = 3;

/// A status object longer than this is not read (they are about 1 KB).
const STATUS_MAX: usize = 64 * 1024;

/// Status objects read at once by the fleet view.
const READ_CONCURRENCY: usize = 16;

/// The box's node name: `[daemon] node` (default the host name).
pub fn fleet_node(config: &crate::config::Config) -> String {
    config.daemon.node.clone()
}

use crate::node::{host_name, machine_id};

/// What one box says about itself, every heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BoxStatus {
    /// Its node name (`[daemon] node`, default the host name).
    pub node: String,
    /// The host name.
    pub host: String,
    /// `/etc/machine-id`.
    #[serde(default)]
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot.
    #[serde(default)]
    pub boot_id: String,
    /// The daemon's pid.
    pub pid: u32,
    /// mediaretain's version.
    pub version: String,
    /// When the daemon started.
    #[serde(with = "crate::units::rfc3339")]
    pub started: Nanos,
    /// When this status was made, by the box's wall clock (a claim; the fleet view ages
    /// objects by the server's Last-Modified).
    #[serde(with = "crate::units::rfc3339")]
    pub written: Nanos,
    /// The box's heartbeat: stale after [`STALE_BEATS`] of them.
    pub heartbeat: Dur,
    /// The last lifecycle pass.
    pub last_pass: Option<PassSummary>,
    /// What waits.
    pub backlog: Backlog,
    /// Volumes the watchdog found stuck (above `high` and not freeing).
    #[serde(default)]
    pub stuck_volumes: Vec<StuckVolume>,
    /// The wall clock as the box judges it against `CLOCK_BOOTTIME`.
    pub clock: ClockState,
    /// The endpoints of the store this object was written to, as the box sees them.
    #[serde(default)]
    pub endpoints: Vec<EndpointState>,
}

/// The last lifecycle pass, in a status object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PassSummary {
    /// When it was planned.
    #[serde(with = "crate::units::rfc3339")]
    pub at: Nanos,
    /// `ok` (everything planned was done or refused for a reason), `failed` (some
    /// deletions or offloads failed) or `stopped` (the blast-radius guard stopped it).
    pub outcome: String,
    /// What started it.
    pub trigger: String,
    /// Deleted and verified gone.
    pub deleted_files: u64,
    /// Refused (in use, retained…).
    pub refused: u64,
    /// Failed.
    pub failed: u64,
    /// Copied to S3 and verified.
    pub offloaded_files: u64,
    /// Offloads that failed.
    pub offload_failed: u64,
}

/// What waits on a box.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Backlog {
    /// Files due for offload that the last offload batch left waiting.
    pub offload_files: u64,
    /// Their bytes.
    pub offload_bytes: u64,
    /// Files whose offloads failed and wait before they are tried again.
    pub offload_backing_off: u64,
    /// Files the last pass planned to delete and did not (refused or failed).
    pub files_due: u64,
}

/// A stuck volume, in a status object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StuckVolume {
    /// Its mount point.
    pub mount: String,
    /// Stuck since.
    #[serde(with = "crate::units::rfc3339")]
    pub since: Nanos,
}

/// The clock, in a status object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClockState {
    /// `ok`; `jumped` (a jump noticed within the last heartbeat); `held` (time-based
    /// deletions hold since an earlier jump).
    pub state: String,
    /// The jump in force.
    pub jump: Option<crate::clock::ClockJump>,
}

/// One endpoint of a store, in a status object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointState {
    /// Its URL.
    pub url: String,
    /// Not marked dead by failover.
    pub reachable: bool,
}

/// Who this daemon is.
#[derive(Debug, Clone)]
struct Identity {
    node: String,
    host: String,
    machine_id: String,
    boot_id: String,
}

impl Identity {
    fn now(config: &crate::config::Config) -> Identity {
        Identity {
            node: fleet_node(config),
            host: host_name(),
            machine_id: machine_id(),
            boot_id: crate::clock::boot_id(),
        }
    }
}

/// The box's status now (without the endpoints of a store), from the parts of `status`
/// that cost no registry scan ([`Engine::fleet_facts`]).
pub fn box_status(engine: &Engine, heartbeat: Duration) -> Result<BoxStatus, EngineError> {
    let id = Identity::now(&engine.runtime().config);
    let st = engine.fleet_facts()?;
    let now = engine.now();
    let (offload_files, offload_bytes) = st.offload_backlog;
    let last_pass = st.activity.last_pass.as_ref().map(|p| PassSummary {
        at: p.at,
        outcome: if p.guard.is_some() {
            "stopped"
        } else if p.failed > 0 || p.offload_failed > 0 {
            "failed"
        } else {
            "ok"
        }
        .into(),
        trigger: p.trigger.clone(),
        deleted_files: p.deleted_files,
        refused: p.refused,
        failed: p.failed,
        offloaded_files: p.offloaded_files,
        offload_failed: p.offload_failed,
    });
    let files_due = st
        .activity
        .last_pass
        .as_ref()
        .map_or(0, |p| p.refused + p.failed);
    let clock = match st.clock_jumped {
        None => ClockState {
            state: "ok".into(),
            jump: None,
        },
        Some(j) => ClockState {
            state: if now.saturating_sub(j.noticed_at) <= heartbeat.as_nanos() as i64 {
                "jumped"
            } else {
                "held"
            }
            .into(),
            jump: Some(j),
        },
    };
    Ok(BoxStatus {
        node: id.node,
        host: id.host,
        machine_id: id.machine_id,
        boot_id: id.boot_id,
        pid: st.activity.pid,
        version: env!("CARGO_PKG_VERSION").into(),
        started: st.activity.started_at,
        written: now,
        heartbeat: Dur(Duration::from_secs(heartbeat.as_secs().max(1))),
        last_pass,
        backlog: Backlog {
            offload_files,
            offload_bytes,
            offload_backing_off: st.offload_backing_off,
            files_due,
        },
        stuck_volumes: st
            .stuck_volumes
            .iter()
            .map(|(mount, since)| StuckVolume {
                mount: crate::spell::show(mount).to_string(),
                since: *since,
            })
            .collect(),
        clock,
        endpoints: Vec::new(),
    })
}

/// The S3 stores a box writes its status object to: its own roots, not shared stores
/// (their root spans every box), and not a root whose claim is in conflict (the other box
/// writing there would have its status overwritten by ours).
fn status_stores(engine: &Engine) -> Vec<Arc<S3Store>> {
    let rt = engine.runtime();
    rt.remotes
        .iter()
        .filter(|r| {
            let shared = rt
                .config
                .store(r.name())
                .and_then(|s| s.s3.as_ref())
                .is_some_and(|l| l.shared);
            !shared && engine.fleet().offload_refusal(r.name()).is_none()
        })
        .cloned()
        .collect()
}

/// Makes the status and writes it to every S3 store, each PUT within `deadline`:
/// per store, the error of a write that failed.
fn write_once(
    engine: &Engine,
    heartbeat: Duration,
    deadline: Duration,
) -> Result<Vec<(String, Option<String>)>, EngineError> {
    let stores = status_stores(engine);
    if stores.is_empty() {
        return Ok(Vec::new());
    }
    let base = box_status(engine, heartbeat)?;
    Ok(s3_io(async {
        let writes = stores.iter().map(|s| {
            let mut status = base.clone();
            status.endpoints = s
                .endpoint_health()
                .into_iter()
                .map(|(url, reachable)| EndpointState { url, reachable })
                .collect();
            async move {
                let body = serde_json::to_vec_pretty(&status).expect("a status serializes");
                let r = tokio::time::timeout(deadline, s.put_small(STATUS_KEY, body)).await;
                let err = match r {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!("no answer within {deadline:?}")),
                };
                (s.settings().name.clone(), err)
            }
        });
        futures::future::join_all(writes).await
    }))
}

/// The heartbeat: writes the status object every `[daemon] fleet_heartbeat` (read anew
/// each time, so a reload changes it) until `cancel`. A failed write is logged when a
/// store starts failing and when it recovers, and tried again at the next heartbeat.
pub async fn heartbeat(engine: Arc<Engine>, cancel: CancellationToken) {
    let mut failing: HashMap<String, bool> = HashMap::new();
    loop {
        let every = engine.runtime().config.daemon.fleet_heartbeat.0;
        // A write never outlasts its heartbeat (nor 30 s): the next one starts fresh.
        let deadline = every.min(Duration::from_secs(30));
        let e = engine.clone();
        let job = tokio::task::spawn_blocking(move || write_once(&e, every, deadline));
        let done = tokio::select! {
            _ = cancel.cancelled() => return,
            r = job => r,
        };
        match done {
            Ok(Ok(results)) => {
                for (store, err) in results {
                    let was = failing
                        .insert(store.clone(), err.is_some())
                        .unwrap_or(false);
                    match err {
                        Some(e) if !was => {
                            warn!(store = %store, error = %e, "cannot write the fleet status object; trying again every heartbeat")
                        }
                        None if was => info!(store = %store, "fleet status object written again"),
                        _ => {}
                    }
                }
            }
            Ok(Err(e)) => warn!(error = %e, "cannot make the fleet status"),
            Err(e) => warn!(error = %e, "the fleet status task panicked"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One box of a fleet, as `mediaretain fleet` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FleetBox {
    /// The box's directory under the store's prefix (its node name when the boxes use
    /// node prefixes); "" for the prefix itself.
    pub dir: String,
    /// The status object's key, relative to the store's prefix.
    pub key: String,
    /// When the server says it was last written.
    #[serde(with = "crate::units::rfc3339")]
    pub modified: Nanos,
    /// How long ago, by this machine's clock, in whole seconds ("0s" when the server's
    /// clock is ahead).
    pub age: Dur,
    /// Older than [`STALE_BEATS`] of its heartbeats.
    pub stale: bool,
    /// What the box wrote (None: unreadable, see `error`).
    pub status: Option<BoxStatus>,
    /// Why the object could not be read.
    pub error: Option<String>,
}

impl FleetBox {
    /// The node name it reports — with its directory when that differs — else its
    /// directory.
    pub fn name(&self) -> String {
        let dir = if self.dir.is_empty() {
            "(prefix)"
        } else {
            &self.dir
        };
        match &self.status {
            Some(s) if s.node == self.dir => s.node.clone(),
            Some(s) => format!("{} ({dir}/)", s.node),
            None => dir.to_string(),
        }
    }
}

/// Every box of a store's bucket and prefix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fleet {
    /// The store of the config it was read through.
    pub store: String,
    /// Its bucket.
    pub bucket: String,
    /// Its prefix.
    pub prefix: String,
    /// When it was read (this machine's clock).
    #[serde(with = "crate::units::rfc3339")]
    pub read_at: Nanos,
    /// The boxes, by name.
    pub boxes: Vec<FleetBox>,
    /// The names of the stale boxes.
    pub stale: Vec<String>,
}

/// Reads the status object of every box under `store`'s prefix: `PREFIX/.mediaretain/
/// status.json` and `PREFIX/*/.mediaretain/status.json` (one listing with a delimiter,
/// then one GET per directory). `default_beat` ages an object that names no heartbeat.
pub async fn read_fleet(
    store: &S3Store,
    now: Nanos,
    default_beat: Duration,
) -> Result<Fleet, StoreError> {
    let mut dirs = vec![String::new()];
    dirs.extend(
        store
            .subdirs("")
            .await?
            .into_iter()
            .filter(|d| d != CONTROL_DIR),
    );
    let reads = dirs.into_iter().map(|dir| async move {
        let key = if dir.is_empty() {
            STATUS_KEY.to_string()
        } else {
            format!("{dir}/{STATUS_KEY}")
        };
        let got = store.get_small(&key, STATUS_MAX).await;
        (dir, key, got)
    });
    let got: Vec<_> = futures::stream::iter(reads)
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut boxes = Vec::new();
    for (dir, key, r) in got {
        let (body, modified) = match r {
            Ok(Some(x)) => x,
            Ok(None) => continue, // a directory that is no box (or not yet)
            Err(e) => {
                boxes.push(FleetBox {
                    dir,
                    key,
                    modified: 0,
                    age: Dur::ZERO,
                    stale: false,
                    status: None,
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        let (status, error) = match serde_json::from_slice::<BoxStatus>(&body) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(format!("not a status object: {e}"))),
        };
        let beat = status
            .as_ref()
            .map_or(default_beat.as_secs(), |s| s.heartbeat.0.as_secs())
            .max(1);
        let age_secs = (now.saturating_sub(modified).max(0) / 1_000_000_000) as u64;
        boxes.push(FleetBox {
            dir,
            key,
            modified,
            age: Dur(Duration::from_secs(age_secs)),
            stale: age_secs > STALE_BEATS * beat,
            status,
            error,
        });
    }
    boxes.sort_by(|a, b| a.dir.cmp(&b.dir));
    let stale = boxes
        .iter()
        .filter(|b| b.stale)
        .map(FleetBox::name)
        .collect();
    Ok(Fleet {
        store: store.settings().name.clone(),
        bucket: store.settings().bucket.clone(),
        prefix: store.prefix().to_string(),
        read_at: now,
        boxes,
        stale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_object_reads_back_and_tolerates_fields_it_does_not_know() {
        let s = BoxStatus {
            node: "box1".into(),
            host: "h".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            pid: 7,
            version: "1.0.0".into(),
            started: 1_700_000_000_000_000_000,
            written: 1_700_000_060_000_000_000,
            heartbeat: Dur(Duration::from_secs(60)),
            last_pass: None,
            backlog: Backlog::default(),
            stuck_volumes: Vec::new(),
            clock: ClockState {
                state: "ok".into(),
                jump: None,
            },
            endpoints: vec![EndpointState {
                url: "http://127.0.0.1:3900".into(),
                reachable: true,
            }],
        };
        let mut v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["started"], "2023-11-14T22:13:20.000Z");
        v["a_later_field"] = serde_json::json!(1);
        let back: BoxStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_box_without_a_readable_status_is_named_by_its_directory() {
        let b = |dir: &str| FleetBox {
            dir: dir.into(),
            key: String::new(),
            modified: 0,
            age: Dur::ZERO,
            stale: false,
            status: None,
            error: Some("x".into()),
        };
        assert_eq!(b("box2").name(), "box2");
        assert_eq!(b("").name(), "(prefix)");
    }
}
