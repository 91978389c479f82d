//! The file as written: the TOML tables with their source spans; unknown keys are refused
//! here, so a typo is an error located at the key.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub daemon: Spanned<DaemonTable>,
    #[serde(default)]
    pub store: Vec<StoreTable>,
    #[serde(default)]
    pub class: Vec<Spanned<ClassTable>>,
    pub watchdog: Option<Spanned<Watchdog>>,
    pub hooks: Option<Spanned<HooksTable>>,
    pub metrics: Option<Spanned<MetricsTable>>,
    pub dedupe: Option<Spanned<DedupeTable>>,
}

/// `[dedupe]`: how fast the background hasher may read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeTable {
    pub rate: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsTable {
    pub listen: Spanned<String>,
    #[serde(default)]
    pub allow_remote: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksTable {
    /// Required in the main file; refused in a drop-in.
    pub listen: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    /// Users (by name) whose loopback connections may post without the token.
    pub allow_users: Option<Spanned<Vec<String>>>,
    /// Users (by uid) whose loopback connections may post without the token.
    pub allow_uids: Option<Spanned<Vec<u32>>>,
    /// How long an announced file must stay unchanged before it counts as complete.
    pub confirm: Option<Spanned<Dur>>,
    #[serde(rename = "nginx-rtmp")]
    pub nginx_rtmp: Option<Spanned<ServerHooksTable>>,
    pub srs: Option<Spanned<ServerHooksTable>>,
    pub zlmediakit: Option<Spanned<ServerHooksTable>>,
    pub owncast: Option<Spanned<ServerHooksTable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerHooksTable {
    pub store: Option<Spanned<String>>,
    pub playlists: Option<Spanned<Vec<String>>>,
    pub paths: Option<Spanned<std::collections::BTreeMap<String, PathBuf>>>,
}

/// A drop-in of `conf.d/`: one server's stores and classes, and how its webhooks map onto
/// them, merged after the main file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropIn {
    #[serde(default)]
    pub store: Vec<StoreTable>,
    #[serde(default)]
    pub class: Vec<Spanned<ClassTable>>,
    /// Only `[hooks.<dialect>]` tables: the listener is the main file's.
    pub hooks: Option<Spanned<HooksTable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonTable {
    pub state_dir: Spanned<PathBuf>,
    pub socket: Option<Spanned<PathBuf>>,
    pub scan_interval: Option<Spanned<Dur>>,
    pub gc_interval: Option<Spanned<Dur>>,
    #[serde(default)]
    pub max_delete_per_pass: Option<Spanned<Guard>>,
    #[serde(default = "d_audit")]
    pub audit_retention: Dur,
    #[serde(default = "d_audit_max")]
    pub audit_max_records: u64,
    #[serde(default)]
    pub socket_group: Option<Spanned<String>>,
    #[serde(default = "d_max_leases")]
    pub max_leases_per_uid: u32,
    pub clock_tolerance: Option<Spanned<Dur>>,
    pub clock_hold: Option<Spanned<Dur>>,
    pub node: Option<Spanned<String>>,
    pub fleet_heartbeat: Option<Spanned<Dur>>,
}

pub fn d_clock_tolerance() -> Dur {
    "5m".parse().unwrap()
}
pub fn d_clock_hold() -> Dur {
    "24h".parse().unwrap()
}
pub fn d_fleet_heartbeat() -> Dur {
    "60s".parse().unwrap()
}
pub fn d_rules_lease() -> Dur {
    "60s".parse().unwrap()
}

fn d_audit_max() -> u64 {
    1_000_000
}

fn d_max_leases() -> u32 {
    1000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    pub files: Option<Spanned<u64>>,
    #[serde(default = "d_bytes")]
    pub bytes: ByteSize,
}

fn d_parts() -> Spanned<Vec<String>> {
    Spanned::new(
        0..0,
        [".part", ".tmp", ".download"].map(String::from).to_vec(),
    )
}
fn d_quiet() -> Dur {
    "30s".parse().unwrap()
}
fn d_grace() -> Dur {
    "15m".parse().unwrap()
}

pub fn d_scan() -> Dur {
    Dur(std::time::Duration::from_secs(600))
}
pub fn d_gc() -> Dur {
    Dur(std::time::Duration::from_secs(60))
}
fn d_audit() -> Dur {
    "90d".parse().unwrap()
}
pub fn d_files() -> u64 {
    10_000
}
pub fn d_bytes() -> ByteSize {
    ByteSize(1 << 40)
}
fn yes() -> bool {
    true
}

/// `endpoint`: one URL, or a list of the endpoints of one cluster.
pub struct Endpoints(pub Vec<String>);

impl<'de> Deserialize<'de> for Endpoints {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Endpoints;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an endpoint URL or a list of the URLs of one cluster's endpoints")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Endpoints, E> {
                Ok(Endpoints(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Endpoints, A::Error> {
                let mut all = Vec::new();
                while let Some(e) = a.next_element::<String>()? {
                    all.push(e);
                }
                Ok(Endpoints(all))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreTable {
    pub name: Spanned<String>,
    pub kind: StoreKind,
    pub root: Option<Spanned<PathBuf>>,
    pub endpoint: Option<Spanned<Endpoints>>,
    pub region: Option<Spanned<String>>,
    pub bucket: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub credentials_file: Option<Spanned<PathBuf>>,
    pub virtual_hosted: Option<Spanned<bool>>,
    pub allow_http: Option<Spanned<bool>>,
    pub abort_uploads_after: Option<Spanned<Dur>>,
    pub retry_timeout: Option<Spanned<Dur>>,
    pub node_prefix: Option<Spanned<bool>>,
    pub shared: Option<Spanned<bool>>,
    pub remote_rules_node: Option<Spanned<String>>,
    pub rules_lease: Option<Spanned<Dur>>,
    pub prune_empty_dirs: Option<Spanned<bool>>,
    pub require_mount: Option<Spanned<bool>>,
    #[serde(default = "d_grace")]
    pub prune_grace: Dur,
    #[serde(default = "yes")]
    pub watch: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassTable {
    pub name: Spanned<String>,
    pub store: Spanned<String>,
    #[serde(rename = "match")]
    pub patterns: Spanned<Vec<String>>,
    #[serde(default = "empty")]
    pub exclude: Spanned<Vec<String>>,
    pub lifecycle: Spanned<Lifecycle>,
    pub ttl: Option<Spanned<Dur>>,
    pub keep_for: Option<Spanned<Dur>>,
    pub max_count: Option<Spanned<u64>>,
    pub max_total: Option<Spanned<ByteSize>>,
    #[serde(default)]
    pub age_from: AgeFrom,
    #[serde(default = "d_quiet")]
    pub quiet_period: Dur,
    pub protect_playlist_refs: Option<bool>,
    #[serde(default = "d_parts")]
    pub part_suffixes: Spanned<Vec<String>>,
    pub min_keep: Option<Dur>,
    #[serde(default)]
    pub pressure_priority: i64,
    pub offload: Option<Spanned<Offload>>,
    pub stream: Option<Spanned<String>>,
    pub dedupe: Option<Spanned<Dedupe>>,
}

fn empty() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watchdog {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub high: Option<Spanned<Percent>>,
    pub low: Option<Spanned<Percent>>,
    #[serde(default = "d_horizon")]
    pub horizon: Dur,
    pub interval: Option<Spanned<Dur>>,
    pub min_free: Option<ByteSize>,
    pub min_free_inodes: Option<Spanned<Percent>>,
    #[serde(default)]
    pub volume: Vec<Spanned<VolumeTable>>,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            enabled: true,
            high: None,
            low: None,
            horizon: d_horizon(),
            interval: None,
            min_free: None,
            min_free_inodes: None,
            volume: Vec::new(),
        }
    }
}

/// `[[watchdog.volume]]`: unset keys inherit `[watchdog]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeTable {
    pub path: Spanned<PathBuf>,
    pub enabled: Option<bool>,
    pub high: Option<Spanned<Percent>>,
    pub low: Option<Spanned<Percent>>,
    pub horizon: Option<Dur>,
    pub min_free: Option<ByteSize>,
    pub min_free_inodes: Option<Spanned<Percent>>,
}

pub fn d_inodes() -> Percent {
    Percent(5.0)
}
pub fn d_high() -> Percent {
    Percent(90.0)
}
pub fn d_low() -> Percent {
    Percent(80.0)
}
fn d_horizon() -> Dur {
    Dur(std::time::Duration::from_secs(900))
}
pub fn d_interval() -> Dur {
    Dur(std::time::Duration::from_secs(1))
}
