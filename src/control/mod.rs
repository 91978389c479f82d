//! The control socket: HTTP+JSON over a Unix socket (mode 0660, group `socket_group`), so the CLI — and a shell
//! hook via `curl --unix-socket` — talk to the running daemon.
//!
//! | method | path           | body                                  | answer            |
//! |--------|----------------|---------------------------------------|-------------------|
//! | GET    | /v1/status     |                                       | `Status`          |
//! | GET    | /v1/plan       | (query `at=`, optional: `now`, `+2h`, RFC 3339) | `Plan`  |
//! | POST   | /v1/gc         | `{"dry_run": false}`                  | `GcReport`        |
//! | POST   | /v1/ls         | `{"class": null, "retained": false}`  | `[Entry]`         |
//! | POST   | /v1/explain    | `{"path": "media:tmp/x"}`             | `Explanation`     |
//! | POST   | /v1/retain     | `{"paths": ["/abs/path"]}`            | `[MarkResult]`     |
//! | POST   | /v1/unretain   | `{"paths": ["media:rec/a.mp4"]}`      | `[MarkResult]`     |
//! | POST   | /v1/tag        | `{"paths": [..], "add": ["event=x"], "remove": []}` | `[MarkResult]` |
//! | POST   | /v1/lease      | `{"path": "media:hls/s1/**", "ttl": "60s", "holder": "thumbnailer"}` | `Lease` |
//! | POST   | /v1/renew      | `{"id": 7, "ttl": "60s"}`             | `Lease`           |
//! | POST   | /v1/release    | `{"id": 7}`                           | `{"released": 7}` |
//! | GET    | /v1/leases     |                                       | `[Lease]`         |
//! | GET    | /v1/history    | (query: `since=1h&class=rec&rule=…&trigger=…&path=…&store=…&outcome=…&limit=50&before=CURSOR&no_segments=true`, each optional) | `History` |
//! | POST   | /v1/scan       |                                       | `[ScanStats]`     |
//! | POST   | /v1/reload     |                                       | `{"reclassified": N}` |
//! | POST   | /v1/rm         | `{"paths": ["media:rec/cam1"], "recursive": true, "dry_run": false, "force_retained": false, "force_last_copy": false}` | `RmReport` |
//!
//! Errors answer 4xx/5xx with `{"error": "...", "exit": CODE}`. The shapes of requests and
//! answers are in docs/json.md: times are RFC 3339 UTC, spans are written as the config
//! writes them.
//!
//! Every path, in request bodies and in answers, is a string in the lossless spelling of
//! [`crate::spell`] (`"media:rec/a\\xffb.mp4"` in JSON names the byte 0xff), so a name that is
//! not UTF-8 can be listed, explained, retained and leased.
//!
//! Access is decided per request by the peer's kernel credentials (`SO_PEERCRED`,
//! `SO_PEERGROUPS`; see [`crate::access`]): root and the daemon's user may call everything;
//! members of `[daemon] socket_group` may call status, plan, ls, explain, history and leases, and
//! lease / renew / release their own leases (403, exit 77, otherwise; 429, exit 75, beyond
//! `max_leases_per_uid`). A client's `trigger` is never one of the daemon's own
//! (`schedule`, `pressure`, …).

pub mod client;
pub mod metrics;
pub mod server;

pub use crate::engine::{HistoryRequest, RmRequest};

use serde::{Deserialize, Serialize};

/// Body of `/v1/ls`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LsRequest {
    /// Only this class.
    #[serde(default)]
    pub class: Option<String>,
    /// Only retained entries.
    #[serde(default)]
    pub retained: bool,
    /// Only entries with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Only entries in use now, with their reasons.
    #[serde(default)]
    pub in_use: bool,
    /// At most this many.
    #[serde(default)]
    pub limit: Option<u64>,
}

/// Body of `/v1/dupes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DupesRequest {
    /// Only this class.
    #[serde(default)]
    pub class: Option<String>,
}

/// Body of `/v1/gc`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GcRequest {
    /// Plan and check only.
    #[serde(default)]
    pub dry_run: bool,
    /// Who asks, for the audit trail ("cli", or a hook's own word); default "api".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

/// Body of `/v1/explain`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathRequest {
    /// An absolute path inside a store root, or STORE:KEY.
    pub path: String,
}

/// Body of `/v1/retain` and `/v1/unretain`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathsRequest {
    /// Absolute paths inside store roots, or STORE:KEY.
    pub paths: Vec<String>,
    /// Who asks, for the audit trail ("cli", or a hook's own word); default "api".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

/// Body of `/v1/tag`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagRequest {
    /// Absolute paths inside store roots, or STORE:KEY.
    pub paths: Vec<String>,
    /// Tags to add.
    #[serde(default)]
    pub add: Vec<String>,
    /// Tags to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Who asks, for the audit trail ("cli", or a hook's own word); default "api".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

/// Triggers only the daemon itself may record: a client claiming one is recorded as "api".
pub const DAEMON_TRIGGERS: &[&str] = &["schedule", "pressure", "watchdog", "startup", "reload"];

/// The audit trigger of a request: its own word if it is one (lowercase letters, digits,
/// '-', at most 32) and not one of the daemon's own ([`DAEMON_TRIGGERS`]), else "api".
pub fn trigger_of(t: &Option<String>) -> String {
    match t {
        Some(t)
            if !t.is_empty()
                && !DAEMON_TRIGGERS.contains(&t.as_str())
                && t.len() <= 32
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            t.clone()
        }
        _ => "api".into(),
    }
}

/// Body of `/v1/lease`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// A path or glob: absolute inside a store root, or STORE:KEY.
    pub path: String,
    /// How long, e.g. "60s".
    pub ttl: crate::units::Dur,
    /// Who holds it.
    #[serde(default = "default_holder")]
    pub holder: String,
}

fn default_holder() -> String {
    "api".into()
}

/// Body of `/v1/renew` and `/v1/release`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseIdRequest {
    /// The lease.
    pub id: i64,
    /// New duration from now (renew only).
    #[serde(default)]
    pub ttl: Option<crate::units::Dur>,
}

/// Answer of `/v1/release`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Released {
    /// The lease that ended.
    pub released: i64,
}

/// Answer of `/v1/reload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadResponse {
    /// Entries whose class changed.
    pub reclassified: usize,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// The exit code the CLI should use.
    pub exit: u8,
}
