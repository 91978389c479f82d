//! Configuration: the TOML model, loading, and validation with `FILE:LINE:COL` diagnostics.
//!
//! Parsing happens in two layers: `raw` mirrors the file (with source spans, unknown keys
//! refused), and [`Config`] is the validated model the rest of the daemon uses. Relative
//! paths are resolved against the directory of the config file.
//!
//! This file is the model (every field documented, about 400 lines) and loading with the
//! `conf.d/` drop-ins; raw.rs is the file as written, validate.rs the rules.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::units::{ByteSize, Dur, Percent};

/// The default config path when neither `--config` nor `$MEDIARETAIN_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/mediaretain/config.toml";

/// The longest scan_interval/gc_interval accepted (a year).
const MAX_INTERVAL_SECS: u64 = 365 * 86400;

/// One problem in a config file, located by line and column (both 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// One line, whatever the message quotes: a control character of the file's text (a
    /// value holding a newline) is written escaped (`\n`), so every line of an error starts
    /// with its `FILE:LINE:COL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        for c in self.message.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but has one or more problems.
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file it was loaded from (absolute when possible).
    pub path: PathBuf,
    /// The drop-ins of `conf.d/` merged after it, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop_ins: Vec<PathBuf>,
    /// Daemon settings.
    pub daemon: Daemon,
    /// Stores, in file order.
    pub stores: Vec<Store>,
    /// Classes, in file order, the main file's before the drop-ins' (first match wins
    /// within a store).
    pub classes: Vec<Class>,
    /// Disk-pressure watermarks.
    pub watchdog: Watchdog,
    /// The webhook receiver for media servers (off when None).
    pub hooks: Option<Hooks>,
    /// The Prometheus metrics listener on TCP (off when None; the control socket always
    /// serves `GET /metrics`).
    pub metrics: Option<MetricsListen>,
    /// `[dedupe]`: the background hasher's settings.
    pub dedupe: DedupeSettings,
}

/// `[dedupe]`: how fast identical copies are looked for.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DedupeSettings {
    /// Bytes per second the hasher reads at most (None: unlimited).
    pub rate: Option<u64>,
}

/// The hasher's default rate: a tenth of a slow disk, nothing a recorder notices.
pub const DEDUPE_RATE: u64 = 64 << 20;

impl Default for DedupeSettings {
    fn default() -> Self {
        DedupeSettings {
            rate: Some(DEDUPE_RATE),
        }
    }
}

/// `dedupe = "keep-oldest" | "keep-newest"` on a class: which of identical copies stays.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Dedupe {
    /// The copy with the oldest mtime stays.
    KeepOldest,
    /// The copy with the newest mtime stays.
    KeepNewest,
}

impl fmt::Display for Dedupe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dedupe::KeepOldest => "keep-oldest",
            Dedupe::KeepNewest => "keep-newest",
        })
    }
}

/// `[metrics]`: where Prometheus scrapes the daemon over TCP.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricsListen {
    /// TCP address to listen on (loopback unless `allow_remote`).
    pub listen: std::net::SocketAddr,
}

/// A media server's webhook dialect: one endpoint each, `/hooks/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// nginx-rtmp's `on_publish`, `on_publish_done`, `on_record_done` (form-encoded).
    NginxRtmp,
    /// SRS's `on_publish`, `on_unpublish`, `on_dvr`, `on_hls` (JSON).
    Srs,
    /// ZLMediaKit's `on_record_mp4`, `on_record_ts`, `on_stream_changed` (JSON).
    Zlmediakit,
    /// Owncast's `STREAM_STARTED` / `STREAM_STOPPED` webhooks (JSON).
    Owncast,
}

impl Dialect {
    /// Every dialect.
    pub const ALL: [Dialect; 4] = [
        Dialect::NginxRtmp,
        Dialect::Srs,
        Dialect::Zlmediakit,
        Dialect::Owncast,
    ];

    /// Its name in the config and in the endpoint's path.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::NginxRtmp => "nginx-rtmp",
            Dialect::Srs => "srs",
            Dialect::Zlmediakit => "zlmediakit",
            Dialect::Owncast => "owncast",
        }
    }
}

/// `[hooks]`: where media servers post their events.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hooks {
    /// TCP address to listen on (loopback unless a token is set).
    pub listen: std::net::SocketAddr,
    /// Shared secret every hook URL carries as its last path segment.
    #[serde(skip)]
    pub token: Option<String>,
    /// Whose loopback connections may post without the token (by uid, owner of the
    /// connecting socket): root, and `allow_users` and `allow_uids` resolved at load.
    pub allow_uids: Vec<u32>,
    /// How long a file announced complete must stay unchanged, and held open for writing
    /// by no process, before the announcement counts (`confirm`, 5 s by default).
    pub confirm: crate::units::Dur,
    /// What each server's events refer to.
    pub servers: std::collections::BTreeMap<Dialect, ServerHooks>,
}

/// `[hooks.<dialect>]`: how one server's events map onto stores.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServerHooks {
    /// The store holding its live playlists.
    pub store: Option<String>,
    /// Its live playlists, relative to that store's root, with `{app}` and `{stream}`
    /// standing for the event's; globs allowed (`hls/{stream}/*.m3u8`).
    pub playlists: Vec<String>,
    /// Path prefixes as the server sees them (in its container) → as they are here.
    pub paths: Vec<(PathBuf, PathBuf)>,
}

/// `[daemon]`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Daemon {
    /// Registry, lock and staging live here.
    pub state_dir: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// Full reconciliation of every store this often.
    pub scan_interval: Dur,
    /// A lifecycle pass at least this often (passes also run when files arrive or expire).
    pub gc_interval: Dur,
    /// Blast-radius guard: at most this many files in one pass.
    pub max_delete_files: u64,
    /// Blast-radius guard: at most this many bytes in one pass.
    pub max_delete_bytes: ByteSize,
    /// Audit records older than this are pruned.
    pub audit_retention: Dur,
    /// At most this many audit records are kept (the oldest go first): a bound by size as
    /// well as by age (a record takes about 200 bytes).
    pub audit_max_records: u64,
    /// Members of this group may connect to the control socket: read, and take, renew and
    /// release their own leases. None: only root and the daemon's user.
    pub socket_group: Option<String>,
    /// At most this many active leases per client uid (root and the daemon's user: no limit).
    pub max_leases_per_uid: u32,
    /// The wall clock has jumped when it moves further than this from the time continued
    /// by `CLOCK_BOOTTIME`.
    pub clock_tolerance: Dur,
    /// After a jump, time-based deletions hold until the clock has stayed put this long
    /// (or an operator runs `mediaretain clock accept`).
    pub clock_hold: Dur,
    /// This box's name in a fleet sharing one bucket (default: the host name): its S3
    /// stores' keys live under `PREFIX/NODE/` and its claim marker names it.
    pub node: String,
    /// The claim marker of each S3 store's root and the box's status object
    /// (`ROOT/.mediaretain/status.json`) are rewritten this often: a foreign writer of the
    /// marker is found within one heartbeat, and `mediaretain fleet` names a box stale after
    /// three of them.
    pub fleet_heartbeat: Dur,
}

/// `[[store]]`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Store {
    /// Unique name, used in `STORE:KEY` paths and in classes.
    pub name: String,
    /// The backend.
    pub kind: StoreKind,
    /// Root directory of a local store (empty for S3).
    pub root: PathBuf,
    /// Remove empty directories untouched for this long (never the root); None: never.
    pub prune_empty_dirs: Option<Dur>,
    /// Follow changes with inotify (else only periodic scans).
    pub watch: bool,
    /// Whether the root must be a mount point: Some(true) always; Some(false) never
    /// checked; None, a root that was a mount point (or on another device) when last used
    /// and no longer is one is taken for an unmounted filesystem (docs/missing-roots.md).
    pub require_mount: Option<bool>,
    /// Where an S3 store's objects are.
    pub s3: Option<S3Location>,
}

impl Store {
    /// A directory on this machine (not an S3 bucket).
    pub fn is_local(&self) -> bool {
        self.kind == StoreKind::Local
    }
}

/// An S3 store's bucket, prefix and credentials.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct S3Location {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:3900`; the first of
    /// `endpoint` when it lists several.
    pub endpoint: String,
    /// The other endpoints of the same cluster listed in `endpoint`, in order: requests
    /// go to them while the ones before are unreachable.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more_endpoints: Vec<String>,
    /// `us-east-1`, `garage`, `auto` (R2).
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// Keys under this prefix only (`box1/`).
    pub prefix: String,
    /// `bucket.host` requests instead of `host/bucket`.
    pub virtual_hosted: bool,
    /// Plain HTTP to a non-loopback endpoint.
    pub allow_http: bool,
    /// Access keys from this file (`aws_access_key_id = …`); None: the standard
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` environment variables.
    pub credentials_file: Option<PathBuf>,
    /// Multipart uploads under the prefix older than this are aborted (crash leftovers).
    pub abort_uploads_after: Dur,
    /// A failing request is retried (with backoff) for at most this long.
    pub retry_timeout: Dur,
    /// Keys live under `PREFIX/NODE/` (this box's own part of a shared bucket).
    pub node_prefix: bool,
    /// What the store's keys are relative to: `PREFIX/NODE` with `node_prefix`, else
    /// `PREFIX` (no surrounding slashes; empty for the whole bucket).
    pub root: String,
    /// The store spans the keys of every box: its classes are the shared rules, applied by
    /// the holder of its rules lease only.
    pub shared: bool,
    /// On a backend that ignores conditional writes, the only node that applies the shared
    /// rules.
    pub remote_rules_node: Option<String>,
    /// How long a rules lease lasts without renewal.
    pub rules_lease: Dur,
}

/// The backend of a store.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A directory on a local filesystem.
    Local,
    /// A bucket (and prefix) on an S3-compatible service.
    S3,
}

/// `[[class]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Class {
    /// Unique name.
    pub name: String,
    /// The store whose files it matches.
    pub store: String,
    /// Globs relative to the store root (`match`, as the config writes it).
    #[serde(rename = "match")]
    pub patterns: Vec<String>,
    /// Globs that take a file back out of this class.
    pub exclude: Vec<String>,
    /// What kind of data this is.
    pub lifecycle: Lifecycle,
    /// `temporary`: expires this long after its age reference.
    pub ttl: Option<Dur>,
    /// `segment`/`recording`: kept this long after its age reference.
    pub keep_for: Option<Dur>,
    /// Keep at most this many files (oldest go first).
    pub max_count: Option<u64>,
    /// Keep at most this many bytes (oldest go first).
    pub max_total: Option<ByteSize>,
    /// What the age of a file is counted from.
    pub age_from: AgeFrom,
    /// A file modified more recently than this is still being written: in use.
    pub quiet_period: Dur,
    /// Segments listed by a live media playlist of the store are in use (default: on for
    /// `segment` classes).
    pub protect_playlist_refs: bool,
    /// `X` is in use while `X` + one of these (a writer's temporary name) is being written.
    pub part_suffixes: Vec<String>,
    /// Under disk pressure, files younger than this are never freed. Default: 5m for
    /// temporary, 0s for segment classes; a recording class without it is never freed
    /// under pressure.
    pub min_keep: Option<Dur>,
    /// Under disk pressure, classes of one tier with a lower value are freed first.
    pub pressure_priority: i64,
    /// Copy files to an S3 store once they are old enough (local classes only).
    pub offload: Option<Offload>,
    /// How a path of this class names its stream (`rec/{stream}/**`, or a regex with
    /// `(?P<stream>…)`): two processes writing files of one stream at once are an alarm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<template::StreamPattern>,
    /// Delete identical copies (same size and BLAKE3 hash), keeping one (local classes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe: Option<Dedupe>,
}

/// `offload = { to = "archive", after = "1h", delete_local = true }`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Offload {
    /// The S3 store the copies go to, under the key `SOURCE-STORE/PATH` (see
    /// [`crate::store::offload_key`]), so no two local files can share one.
    pub to: String,
    /// Copied once this old (and quiet, and not in use).
    #[serde(default)]
    pub after: Dur,
    /// Remove the local file once its remote copy is verified.
    #[serde(default)]
    pub delete_local: bool,
    /// Lets disk pressure free files of this class that have no verified remote copy
    /// (audited as such). Off: offload before delete holds under pressure too.
    #[serde(default)]
    pub free_uncopied_under_pressure: bool,
}

impl Class {
    /// The minimum age under disk pressure (None: never freed under pressure).
    pub fn pressure_min_keep(&self) -> Option<Dur> {
        self.min_keep.or(match self.lifecycle {
            Lifecycle::Temporary => Some(Dur(std::time::Duration::from_secs(300))),
            Lifecycle::Segment => Some(Dur::ZERO),
            Lifecycle::Recording => None,
        })
    }
}

/// The lifecycle of a class.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Scratch files; expire after `ttl`.
    Temporary,
    /// Short-lived media pieces (HLS/DASH).
    Segment,
    /// Finished media.
    Recording,
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lifecycle::Temporary => "temporary",
            Lifecycle::Segment => "segment",
            Lifecycle::Recording => "recording",
        })
    }
}

/// The age reference of a class.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AgeFrom {
    /// The file's modification time.
    #[default]
    Mtime,
    /// When mediaretain first saw the file (for files that arrive with old mtimes).
    FirstSeen,
}

impl fmt::Display for AgeFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgeFrom::Mtime => "mtime",
            AgeFrom::FirstSeen => "first_seen",
        })
    }
}

/// `[watchdog]`: when a volume holding local stores is under pressure, and how far to free.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Watchdog {
    /// Sampling interval (volumes are also sampled right after bursts of write events).
    pub interval: Dur,
    /// The limits of every volume without an override.
    pub limits: Limits,
    /// `[[watchdog.volume]]`: limits for the volume holding `path`.
    pub volumes: Vec<VolumeLimits>,
}

/// When one volume is under pressure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Watch this volume at all.
    pub enabled: bool,
    /// Start freeing at this usage (as `df` counts it).
    pub high: Percent,
    /// Free until usage is down to this.
    pub low: Percent,
    /// Also start when the volume is forecast to be full within this time (0s: never).
    pub horizon: Dur,
    /// Also start when fewer bytes than this are free.
    pub min_free: Option<ByteSize>,
    /// Also start when fewer inodes than this share are free.
    pub min_free_inodes: Percent,
}

/// `[[watchdog.volume]]`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VolumeLimits {
    /// Any path on the volume (its mount point, a store root).
    pub path: PathBuf,
    /// Its limits (unset keys inherit `[watchdog]`).
    pub limits: Limits,
}

impl Watchdog {
    /// The limits of the volume of device `dev` (`dev_of` maps an override's path to its
    /// device).
    pub fn limits_for(&self, dev: u64, dev_of: impl Fn(&Path) -> Option<u64>) -> &Limits {
        self.volumes
            .iter()
            .find(|v| dev_of(&v.path) == Some(dev))
            .map(|v| &v.limits)
            .unwrap_or(&self.limits)
    }
}

/// Turns byte spans of the config text into `FILE:LINE:COL` diagnostics.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn at(&self, span: Range<usize>, message: String) -> Diagnostic {
        let mut start = span.start.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = self.text[line_start..start].chars().count() + 1;
        Diagnostic {
            file: self.file.to_path_buf(),
            line,
            col,
            message,
        }
    }
}

impl Config {
    /// Reads and validates the config at `path`, with the drop-ins of the `conf.d/`
    /// directory beside it (`*.toml`, merged in name order, like tmpfiles.d).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, true)
    }

    /// Like [`Config::load`]; with `fs_checks` false, store roots and the state directory
    /// are not looked at (what `status` needs from a config whose state directory belongs
    /// to another user).
    pub fn load_with(path: &Path, fs_checks: bool) -> Result<Config, ConfigError> {
        let read = |p: &Path| {
            let bytes = std::fs::read(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            utf8(p, bytes)
        };
        let text = read(path)?;
        let mut drop_ins = Vec::new();
        for p in drop_in_files(path)? {
            let t = read(&p)?;
            drop_ins.push((p, t));
        }
        Config::parse_all(path, &text, &drop_ins, fs_checks)
    }

    /// Like [`Config::parse_with`], from the raw bytes of a file: text that is not UTF-8 is
    /// an error located at its first bad byte.
    pub fn parse_bytes(
        path: &Path,
        bytes: Vec<u8>,
        fs_checks: bool,
    ) -> Result<Config, ConfigError> {
        let text = utf8(path, bytes)?;
        Config::parse_with(path, &text, fs_checks)
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(path, text, true)
    }

    /// Like [`Config::parse`]; with `fs_checks` false, store roots and the state directory
    /// are not looked at (for checking example configs on another machine).
    pub fn parse_with(path: &Path, text: &str, fs_checks: bool) -> Result<Config, ConfigError> {
        Config::parse_all(path, text, &[], fs_checks)
    }

    /// Like [`Config::parse_with`], with drop-ins (file, text) merged after the main file:
    /// their stores and classes join the main file's; each error names its own file.
    pub fn parse_all(
        path: &Path,
        text: &str,
        drop_ins: &[(PathBuf, String)],
        fs_checks: bool,
    ) -> Result<Config, ConfigError> {
        let mut diags = Vec::new();
        let mut sources = vec![validate::Source {
            locate: Locator { file: path, text },
            base: config_dir(path),
        }];
        let raw: Option<raw::File> = parse_toml(&sources[0].locate, &mut diags);
        let mut tables = Vec::new();
        for (p, t) in drop_ins {
            let locate = Locator { file: p, text: t };
            tables.extend(parse_toml::<raw::DropIn>(&locate, &mut diags));
            sources.push(validate::Source {
                locate,
                // conf.d/ itself, even for a drop-in that is a symlink to a packaged file.
                base: p
                    .parent()
                    .map(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()))
                    .unwrap_or_default(),
            });
        }
        match raw {
            Some(raw) if diags.is_empty() => {
                let mut cfg = validate::validate(raw, tables, sources, path, fs_checks)
                    .map_err(ConfigError::Invalid)?;
                cfg.drop_ins = drop_ins.iter().map(|(p, _)| p.clone()).collect();
                Ok(cfg)
            }
            _ => Err(ConfigError::Invalid(diags)),
        }
    }

    /// The store called `name`.
    pub fn store(&self, name: &str) -> Option<&Store> {
        self.stores.iter().find(|s| s.name == name)
    }

    /// The class called `name`.
    pub fn class(&self, name: &str) -> Option<&Class> {
        self.classes.iter().find(|c| c.name == name)
    }
}

/// `bytes` as text, or a located error at the first byte that is not UTF-8.
pub fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bad = e.as_bytes().get(at).copied().unwrap_or(0);
        let valid = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
        let locate = Locator {
            file: path,
            text: &valid,
        };
        ConfigError::Invalid(vec![locate.at(
            at..at,
            format!("invalid UTF-8 (byte 0x{bad:02x}); the config must be UTF-8 text"),
        )])
    })
}

/// Parses one file's TOML; a syntax error or an unknown key goes to `diags`.
fn parse_toml<T: serde::de::DeserializeOwned>(
    locate: &Locator<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    toml::from_str(locate.text)
        .map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim();
            let msg = if msg == "duplicate key" {
                duplicate_key(locate, span.clone())
            } else {
                format!("{msg}{}", suggest_for(msg))
            };
            diags.push(locate.at(span, msg));
        })
        .ok()
}

/// toml's "duplicate key" names neither the key nor where it was first: the key is the text
/// at `span` (the second occurrence); the first is the same key earlier in the same table
/// (or the same `[header]` earlier in the file), when it can be found.
fn duplicate_key(locate: &Locator<'_>, span: Range<usize>) -> String {
    let text = locate.text;
    let key = text
        .get(span.clone())
        .unwrap_or("")
        .trim()
        .trim_matches(['"', '\''])
        .to_string();
    if key.is_empty() {
        return "duplicate key".into();
    }
    let line_start = text
        .get(..span.start)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let uncomment = |l: &str| l.split('#').next().unwrap_or("").trim().to_string();
    let this = uncomment(&text[line_start..line_end]);
    let header = this.starts_with('[');
    // Earlier lines, nearest first, with their byte offsets.
    let mut first = None;
    let mut end = line_start;
    while end > 0 {
        let start = text[..end - 1].rfind('\n').map_or(0, |i| i + 1);
        let line = &text[start..end - 1];
        let l = uncomment(line);
        if header {
            if l == this {
                first = Some(start + line.find('[').unwrap_or(0));
                break;
            }
        } else if l.starts_with('[') {
            break;
        } else if let Some(rest) = l
            .strip_prefix(key.as_str())
            .or_else(|| l.strip_prefix(&format!("\"{key}\"")))
            && rest.trim_start().starts_with(['=', '.'])
        {
            first = Some(start + line.len() - line.trim_start().len());
            break;
        }
        end = start;
    }
    let what = if header { "table" } else { "key" };
    match first {
        Some(at) => {
            let d = locate.at(at..at, String::new());
            format!(
                "duplicate {what} `{key}` (first defined at {}:{}:{}); each may appear once",
                d.file.display(),
                d.line,
                d.col
            )
        }
        None => format!("duplicate {what} `{key}`; each may appear once"),
    }
}

/// The closest of `known` to `word`, if one is close enough to be a typo of it.
pub fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), k))
        .filter(|&(d, k)| d > 0 && d <= 2.max(k.len() / 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// "; did you mean `x`?" for serde's "unknown field `y`, expected one of `x`, …" and
/// "unknown variant …" messages.
fn suggest_for(msg: &str) -> String {
    let Some(rest) = msg
        .strip_prefix("unknown field `")
        .or_else(|| msg.strip_prefix("unknown variant `"))
    else {
        return String::new();
    };
    let Some((word, expected)) = rest.split_once('`') else {
        return String::new();
    };
    let known = expected.split('`').skip(1).step_by(2);
    did_you_mean(word, known)
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default()
}

/// The drop-ins of the config at `path`: `conf.d/*.toml` beside it, in name order (none
/// when there is no such directory).
pub fn drop_in_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = path.parent().unwrap_or(Path::new(".")).join("conf.d");
    let list = match std::fs::read_dir(&dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir, source }),
    };
    let mut files = Vec::new();
    for e in list {
        let e = e.map_err(|source| ConfigError::Read {
            path: dir.clone(),
            source,
        })?;
        let p = e.path();
        // Hidden files are editors' and package managers' leftovers (.x.toml.swp, .dpkg-new).
        let hidden = e.file_name().as_encoded_bytes().starts_with(b".");
        // A dangling symlink or a directory named *.toml is an error when it is read,
        // not a drop-in skipped without a word.
        if !hidden && p.extension().is_some_and(|x| x == "toml") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// The control socket named by the config at `path`, read leniently: only `[daemon]` is
/// looked at, so the CLI still reaches a running daemon while the file on disk has an
/// error elsewhere (the daemon keeps its running config until the file is fixed).
pub fn control_socket(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let daemon = table.get("daemon")?.as_table()?;
    let base = config_dir(path);
    let resolve = |s: &str| normalize(&base.join(s));
    match daemon.get("socket").and_then(|v| v.as_str()) {
        Some(s) => Some(resolve(s)),
        None => Some(resolve(daemon.get("state_dir")?.as_str()?).join("control.sock")),
    }
}

/// The directory relative paths in the config at `path` are resolved against.
fn config_dir(path: &Path) -> PathBuf {
    path.canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .or_else(|| path.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// Folds `.` and `..` out of an absolute path, lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Builds a glob the way every class pattern is interpreted: `*` stays within one
/// directory, `**` crosses directories, `{a,b}` alternates.
pub fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// Compiles `patterns` into one matcher the way classes and leases use them. A glob can
/// parse and still not compile (a 260-deep `{a,{b,…}}` exceeds the regex size limit).
pub fn glob_set(patterns: &[String]) -> Result<globset::GlobSet, globset::Error> {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        b.add(glob(p)?);
    }
    b.build()
}

#[cfg(test)]
mod docs;
mod raw;
pub mod template;
mod validate;
