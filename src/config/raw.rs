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
    pub listen: Spanned<String>,
    pub token: Option<Spanned<String>>,
    #[serde(rename = "nginx-rtmp")]
    pub nginx_rtmp: Option<Spanned<ServerHooksTable>>,
    pub srs: Option<Spanned<ServerHooksTable>>,
    pub zlmediakit: Option<Spanned<ServerHooksTable>>,
    pub owncast: Option<Spanned<ServerHooksTable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerHooksTable {
    pub store: Option<String>,
    #[serde(default)]
    pub playlists: Vec<String>,
    #[serde(default)]
    pub paths: std::collections::BTreeMap<String, PathBuf>,
}

/// A drop-in of `conf.d/`: one server's stores and classes, merged after the main file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropIn {
    #[serde(default)]
    pub store: Vec<StoreTable>,
    #[serde(default)]
    pub class: Vec<Spanned<ClassTable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonTable {
    pub state_dir: Spanned<PathBuf>,
    pub socket: Option<PathBuf>,
    #[serde(default = "d_scan")]
    pub scan_interval: Dur,
    #[serde(default = "d_gc")]
    pub gc_interval: Dur,
    #[serde(default)]
    pub max_delete_per_pass: Option<Spanned<Guard>>,
    #[serde(default = "d_audit")]
    pub audit_retention: Dur,
    #[serde(default = "d_audit_max")]
    pub audit_max_records: u64,
    #[serde(default)]
    pub socket_group: Option<String>,
    #[serde(default = "d_max_leases")]
    pub max_leases_per_uid: u32,
}

fn d_audit_max() -> u64 {
    1_000_000
}

fn d_max_leases() -> u32 {
    1000
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    #[serde(default = "d_files")]
    pub files: u64,
    #[serde(default = "d_bytes")]
    pub bytes: ByteSize,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            files: d_files(),
            bytes: d_bytes(),
        }
    }
}

fn d_parts() -> Vec<String> {
    [".part", ".tmp", ".download"].map(String::from).to_vec()
}
fn d_quiet() -> Dur {
    "30s".parse().unwrap()
}
fn d_grace() -> Dur {
    "15m".parse().unwrap()
}

fn d_scan() -> Dur {
    "10m".parse().unwrap()
}
fn d_gc() -> Dur {
    "1m".parse().unwrap()
}
fn d_audit() -> Dur {
    "90d".parse().unwrap()
}
fn d_files() -> u64 {
    10_000
}
fn d_bytes() -> ByteSize {
    ByteSize(1 << 40)
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreTable {
    pub name: Spanned<String>,
    pub kind: StoreKind,
    pub root: Option<Spanned<PathBuf>>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub virtual_hosted: Option<bool>,
    pub allow_http: Option<bool>,
    pub abort_uploads_after: Option<Dur>,
    pub retry_timeout: Option<Dur>,
    #[serde(default)]
    pub prune_empty_dirs: bool,
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
    pub lifecycle: Lifecycle,
    pub ttl: Option<Dur>,
    pub keep_for: Option<Dur>,
    pub max_count: Option<u64>,
    pub max_total: Option<ByteSize>,
    #[serde(default)]
    pub age_from: AgeFrom,
    #[serde(default = "d_quiet")]
    pub quiet_period: Dur,
    pub protect_playlist_refs: Option<bool>,
    #[serde(default = "d_parts")]
    pub part_suffixes: Vec<String>,
    pub min_keep: Option<Dur>,
    #[serde(default)]
    pub pressure_priority: i64,
    pub offload: Option<Offload>,
    pub dedupe: Option<Dedupe>,
}

fn empty() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watchdog {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "d_high")]
    pub high: Percent,
    #[serde(default = "d_low")]
    pub low: Percent,
    #[serde(default = "d_horizon")]
    pub horizon: Dur,
    #[serde(default = "d_interval")]
    pub interval: Dur,
    pub min_free: Option<ByteSize>,
    #[serde(default = "d_inodes")]
    pub min_free_inodes: Percent,
    #[serde(default)]
    pub volume: Vec<Spanned<VolumeTable>>,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            enabled: true,
            high: d_high(),
            low: d_low(),
            horizon: d_horizon(),
            interval: d_interval(),
            min_free: None,
            min_free_inodes: d_inodes(),
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
    pub high: Option<Percent>,
    pub low: Option<Percent>,
    pub horizon: Option<Dur>,
    pub min_free: Option<ByteSize>,
    pub min_free_inodes: Option<Percent>,
}

fn d_inodes() -> Percent {
    Percent(5.0)
}
fn d_high() -> Percent {
    Percent(90.0)
}
fn d_low() -> Percent {
    Percent(80.0)
}
fn d_horizon() -> Dur {
    "15m".parse().unwrap()
}
fn d_interval() -> Dur {
    "1s".parse().unwrap()
}
