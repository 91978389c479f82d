//! The claim marker of a box's own root, `ROOT/.mediaretain/node.json`: who writes there.
//!
//! At start a box reads the marker. Absent: it is created — with `If-None-Match: *` where
//! the probe found the store honours it, so of two boxes starting at once one is refused.
//! Ours from an earlier run (same node name and machine-id, and another boot or a process
//! that is gone): taken back with `If-Match`. Written by a live mediaretain of this boot
//! (another pid): refused at once. Anything else — another machine's, or unreadable — is
//! watched for `2.5 × fleet_heartbeat` on our own monotonic clock: if its ETag moves, a
//! live box writes it and we are refused with a message naming it (host, pid, age);
//! if it does not, it is stale and taken over (`If-Match` on the ETag we watched).
//!
//! Then every `fleet_heartbeat` the marker is rewritten: with `If-Match` on our last ETag
//! where conditional writes work (a 412 means someone else wrote it), else read first and
//! compared with our identity (a foreign writer is found within one heartbeat, at worst
//! two when the writes interleave). A conflict is alarmed — an error log, `status`, the
//! `mediaretain_fleet_claim_conflict` metric — and offloads to that root stop until this
//! daemon is restarted, when the start-up claim decides again: nothing is written under a
//! root two boxes think is theirs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Identity;
use crate::node::NODE_MARKER;
use crate::store::s3::{ControlPut, ControlWrite, S3Store};
use crate::store::{Store, StoreError};

/// The marker's body: the writer's identity, its heartbeat count and wall time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Marker {
    /// Who wrote it.
    #[serde(flatten)]
    pub id: Identity,
    /// Heartbeats written by this process (0: the claim itself).
    pub beat: u64,
    /// When, by the writer's wall clock (RFC 3339; informative only).
    pub written: String,
}

impl Marker {
    fn new(id: &Identity, beat: u64) -> Marker {
        Marker {
            id: id.clone(),
            beat,
            written: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    fn body(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a marker serializes")
    }

    /// How long ago it was written by its writer's wall clock, in words.
    fn age(&self) -> String {
        humantime::parse_rfc3339_weak(&self.written)
            .ok()
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .map_or_else(
                || "at an unknown time".to_string(),
                |d| format!("{}s ago", d.as_secs()),
            )
    }
}

/// A root this process has claimed.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The root (bucket-relative), for messages.
    pub root: String,
    /// The ETag of our last write of the marker.
    pub etag: String,
    /// Heartbeats written.
    pub beats: u64,
    /// The store honours conditional writes.
    pub conditional: bool,
    /// Another writer was found: what (offloads to this root stop).
    pub conflict: Option<String>,
    /// The last heartbeat could not be written (logged once, until one is again).
    pub beat_failing: bool,
}

/// Why a root could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another live box writes the marker.
    #[error(
        "store {store:?}: its root {root:?} is claimed by {other}, whose marker was last written {age}: another box runs with node name {node:?}. Give each box its own [daemon] node (or stop the other one); nothing is written under a root two boxes share"
    )]
    Taken {
        /// The store.
        store: String,
        /// Its root.
        root: String,
        /// This box's node name.
        node: String,
        /// The other box, described.
        other: String,
        /// How long ago it wrote its marker.
        age: String,
    },
    /// The store could not be asked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long a foreign marker is watched at start: two heartbeats and a half.
pub fn watch_time(heartbeat: Duration) -> Duration {
    heartbeat * 5 / 2
}

fn taken(remote: &S3Store, root: &str, me: &Identity, m: &Marker) -> ClaimError {
    ClaimError::Taken {
        store: remote.name().to_string(),
        root: root.to_string(),
        node: me.node.clone(),
        other: m.id.describe(),
        age: m.age(),
    }
}

/// Claims `root` of `remote` for `me` (see the module's documentation).
pub async fn take(
    remote: &S3Store,
    root: &str,
    me: &Identity,
    conditional: bool,
    heartbeat: Duration,
) -> Result<Claim, ClaimError> {
    let how = match remote.control_get(NODE_MARKER).await? {
        None if conditional => ControlWrite::Create,
        None => ControlWrite::Overwrite,
        Some((body, etag)) => {
            let found: Option<Marker> = serde_json::from_slice(&body).ok();
            match &found {
                Some(m) if me.live_sibling(&m.id) => return Err(taken(remote, root, me, m)),
                Some(m) if me.own_earlier(&m.id) => {
                    tracing::info!(store = %remote.name(), root, pid = m.id.pid, "taking back this box's claim marker from its earlier run");
                }
                _ => {
                    // Someone else's (or unreadable): alive if it moves while we watch.
                    let until = tokio::time::Instant::now() + watch_time(heartbeat);
                    let step = (heartbeat / 4).max(Duration::from_millis(100));
                    tracing::info!(store = %remote.name(), root, watch_secs = watch_time(heartbeat).as_secs_f64(), "the claim marker of this root is another box's: watching whether it is alive");
                    loop {
                        tokio::time::sleep(step).await;
                        let now = remote.control_etag(NODE_MARKER).await?;
                        if now.as_deref() != Some(etag.as_str()) {
                            let m = match remote.control_get(NODE_MARKER).await? {
                                Some((b, _)) => serde_json::from_slice(&b).ok(),
                                None => None,
                            };
                            let m = m.or(found.clone()).unwrap_or(Marker {
                                id: Identity::default(),
                                beat: 0,
                                written: String::new(),
                            });
                            return Err(taken(remote, root, me, &m));
                        }
                        if tokio::time::Instant::now() >= until {
                            break;
                        }
                    }
                    tracing::warn!(store = %remote.name(), root, other = %found.as_ref().map(|m| m.id.describe()).unwrap_or_else(|| "an unreadable marker".into()), "took over the claim marker of a box silent for {:?} of our own clock", watch_time(heartbeat));
                }
            }
            if conditional {
                ControlWrite::Update(etag)
            } else {
                ControlWrite::Overwrite
            }
        }
    };
    let marker = Marker::new(me, 0);
    match remote.control_put(NODE_MARKER, marker.body(), how).await? {
        ControlPut::Written(etag) => Ok(Claim {
            root: root.to_string(),
            etag,
            beats: 0,
            conditional,
            conflict: None,
            beat_failing: false,
        }),
        // Someone wrote it between our look and our write.
        ControlPut::Refused => {
            let m = match remote.control_get(NODE_MARKER).await? {
                Some((b, _)) => serde_json::from_slice(&b).ok(),
                None => None,
            };
            Err(taken(
                remote,
                root,
                me,
                &m.unwrap_or_else(|| Marker::new(&Identity::default(), 0)),
            ))
        }
    }
}

/// One heartbeat of `claim`: the marker rewritten, or a conflict found (then recorded in
/// `claim.conflict` and returned in words).
pub async fn beat(
    remote: &S3Store,
    me: &Identity,
    claim: &mut Claim,
) -> Result<Option<String>, StoreError> {
    if claim.conflict.is_some() {
        return Ok(None);
    }
    let found = |m: Option<Marker>| {
        format!(
            "store {:?}: another writer of the claim marker of root {:?}: {} — two boxes use node name {:?}; offloads to this root stop until the conflict is resolved and this daemon restarted",
            remote.name(),
            claim.root,
            m.map_or_else(
                || "the marker is gone or unreadable".to_string(),
                |m| format!("now {} (written {})", m.id.describe(), m.age())
            ),
            me.node
        )
    };
    let read = || async {
        Ok::<_, StoreError>(match remote.control_get(NODE_MARKER).await? {
            Some((b, _)) => serde_json::from_slice::<Marker>(&b).ok(),
            None => None,
        })
    };
    let how = if claim.conditional {
        ControlWrite::Update(claim.etag.clone())
    } else {
        let now = read().await?;
        if !now.as_ref().is_some_and(|m| me.same_process(&m.id)) {
            let why = found(now);
            claim.conflict = Some(why.clone());
            return Ok(Some(why));
        }
        ControlWrite::Overwrite
    };
    let marker = Marker::new(me, claim.beats + 1);
    match remote.control_put(NODE_MARKER, marker.body(), how).await? {
        ControlPut::Written(etag) => {
            claim.etag = etag;
            claim.beats += 1;
            Ok(None)
        }
        ControlPut::Refused => {
            let why = found(read().await?);
            claim.conflict = Some(why.clone());
            Ok(Some(why))
        }
    }
}
