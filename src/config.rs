//! Configuration: the TOML model, loading, and validation with `FILE:LINE:COL` diagnostics.
//!
//! Parsing happens in two layers: `raw` mirrors the file (with source spans, unknown keys
//! refused), and [`Config`] is the validated model the rest of the daemon uses. Relative
//! paths are resolved against the directory of the config file.

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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
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
    /// Daemon settings.
    pub daemon: Daemon,
    /// Stores, in file order.
    pub stores: Vec<Store>,
    /// Classes, in file order (first match wins within a store).
    pub classes: Vec<Class>,
    /// Disk-pressure watermarks.
    pub watchdog: Watchdog,
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
    /// `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:3900`.
    pub endpoint: String,
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
    /// Globs relative to the store root.
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

impl Config {
    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse_bytes(path, bytes, true)
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
        let locate = Locator { file: path, text };
        let raw: raw::File = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ConfigError::Invalid(vec![locate.at(span, e.message().trim().to_string())])
        })?;
        let base = config_dir(path);
        let mut v = Validator {
            locate,
            base,
            fs_checks,
            diags: Vec::new(),
        };
        let cfg = v.validate(raw, path);
        if v.diags.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(v.diags))
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

struct Validator<'a> {
    locate: Locator<'a>,
    base: PathBuf,
    fs_checks: bool,
    diags: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn err(&mut self, span: Range<usize>, msg: impl Into<String>) {
        let d = self.locate.at(span, msg.into());
        self.diags.push(d);
    }

    /// Offload keys are `SOURCE/PATH` beneath the target's prefix, unique per local file
    /// within one target; two S3 stores whose key spaces overlap (same endpoint and bucket,
    /// one prefix inside the other) would let a copy land on another store's key.
    fn check_offload_targets(
        &mut self,
        stores: &[Store],
        classes: &[Class],
        spans: &std::collections::HashMap<String, Range<usize>>,
    ) {
        let targets: HashSet<&str> = classes
            .iter()
            .filter_map(|c| c.offload.as_ref().map(|o| o.to.as_str()))
            .collect();
        let space = |l: &S3Location| {
            let p = l.prefix.trim_matches('/');
            let p = if p.is_empty() {
                String::new()
            } else {
                format!("{p}/")
            };
            (
                l.endpoint.trim_end_matches('/').to_string(),
                l.bucket.clone(),
                p,
            )
        };
        let s3: Vec<(&str, (String, String, String))> = stores
            .iter()
            .filter_map(|s| s.s3.as_ref().map(|l| (s.name.as_str(), space(l))))
            .collect();
        for (i, (a, (ea, ba, pa))) in s3.iter().enumerate() {
            for (b, (eb, bb, pb)) in &s3[i + 1..] {
                let overlap = ea == eb
                    && ba == bb
                    && (pa.starts_with(pb.as_str()) || pb.starts_with(pa.as_str()));
                if overlap && (targets.contains(a) || targets.contains(b)) {
                    let span = spans.get(*b).cloned().unwrap_or(0..0);
                    self.err(
                        span,
                        format!("store {b:?}: its keys overlap those of store {a:?} (bucket {bb:?}, prefixes {pa:?} and {pb:?}), and offloaded copies go to one of them: give each S3 store a prefix of its own"),
                    );
                }
            }
        }
    }

    /// Makes `p` absolute against the config's directory, folding `.` and `..`.
    fn resolve(&self, p: &Path) -> PathBuf {
        normalize(&self.base.join(p))
    }

    /// Limits from `t`, unset keys taken from `inherit` (else the defaults), validated.
    fn limits(
        &mut self,
        t: &raw::VolumeTable,
        inherit: Option<&Limits>,
        span: Range<usize>,
        what: &str,
    ) -> Limits {
        let l = Limits {
            enabled: t.enabled.or(inherit.map(|i| i.enabled)).unwrap_or(true),
            high: t.high.or(inherit.map(|i| i.high)).unwrap_or(Percent(90.0)),
            low: t.low.or(inherit.map(|i| i.low)).unwrap_or(Percent(80.0)),
            horizon: t
                .horizon
                .or(inherit.map(|i| i.horizon))
                .unwrap_or(Dur::ZERO),
            min_free: t.min_free.or(inherit.and_then(|i| i.min_free)),
            min_free_inodes: t
                .min_free_inodes
                .or(inherit.map(|i| i.min_free_inodes))
                .unwrap_or(Percent(0.0)),
        };
        if l.low.0 >= l.high.0 {
            self.err(
                span.clone(),
                format!("{what}: low ({}) must be below high ({})", l.low, l.high),
            );
        }
        if l.min_free_inodes.0 >= 50.0 {
            self.err(
                span,
                format!(
                    "{what}: min_free_inodes ({}) must be below 50%",
                    l.min_free_inodes
                ),
            );
        }
        l
    }

    fn validate(&mut self, raw: raw::File, path: &Path) -> Config {
        let dspan = raw.daemon.span();
        let d = raw.daemon.into_inner();
        let state_dir_span = d.state_dir.span();
        let (guard, guard_span) = match d.max_delete_per_pass {
            Some(g) => (*g.get_ref(), g.span()),
            None => (raw::Guard::default(), dspan.clone()),
        };
        let state_dir = self.resolve(d.state_dir.get_ref());
        if let Some(md) = std::fs::metadata(&state_dir)
            .ok()
            .filter(|_| self.fs_checks)
        {
            if !md.is_dir() {
                self.err(
                    d.state_dir.span(),
                    format!("state_dir {} is not a directory", state_dir.display()),
                );
            } else if rustix::fs::access(&state_dir, rustix::fs::Access::WRITE_OK).is_err() {
                self.err(
                    d.state_dir.span(),
                    format!("state_dir {} is not writable", state_dir.display()),
                );
            }
        }
        let socket = d
            .socket
            .as_deref()
            .map(|s| self.resolve(s))
            .unwrap_or_else(|| state_dir.join("control.sock"));
        if let Some(g) = d.socket_group.as_deref().filter(|_| self.fs_checks)
            && let Err(e) = crate::access::group_gid(g)
        {
            self.err(dspan.clone(), e.to_string());
        }
        if guard.files == 0 {
            self.err(guard_span, "max_delete_per_pass.files must be at least 1");
        }
        let daemon = Daemon {
            state_dir,
            socket,
            scan_interval: d.scan_interval,
            gc_interval: d.gc_interval,
            max_delete_files: guard.files,
            max_delete_bytes: guard.bytes,
            audit_retention: d.audit_retention,
            audit_max_records: d.audit_max_records.max(1),
            socket_group: d.socket_group,
            max_leases_per_uid: d.max_leases_per_uid,
        };
        for (name, v, min) in [
            ("scan_interval", d.scan_interval, 1),
            ("gc_interval", d.gc_interval, 1),
        ] {
            if v.0.as_secs() < min || v.0.as_secs() > MAX_INTERVAL_SECS {
                self.err(
                    dspan.clone(),
                    format!("daemon.{name} must be between {min}s and 365d"),
                );
            }
        }

        let mut stores = Vec::new();
        let mut names = HashSet::new();
        // Where each store is named, for errors found after all of them are read.
        let mut store_spans = std::collections::HashMap::new();
        for s in raw.store {
            let name = s.name.get_ref().clone();
            store_spans.insert(name.clone(), s.name.span());
            if name.is_empty() || name.contains([':', '/']) || name.trim() != name {
                self.err(s.name.span(), format!("store name {name:?} must be non-empty, without ':', '/' or surrounding spaces"));
            } else if !names.insert(name.clone()) {
                self.err(s.name.span(), format!("duplicate store name {name:?}"));
            }
            let s3_keys = [
                ("endpoint", s.endpoint.is_some()),
                ("bucket", s.bucket.is_some()),
                ("region", s.region.is_some()),
                ("prefix", s.prefix.is_some()),
                ("credentials_file", s.credentials_file.is_some()),
                ("virtual_hosted", s.virtual_hosted.is_some()),
                ("allow_http", s.allow_http.is_some()),
                ("abort_uploads_after", s.abort_uploads_after.is_some()),
                ("retry_timeout", s.retry_timeout.is_some()),
            ];
            let span = s.name.span();
            match s.kind {
                StoreKind::Local => {
                    for (k, _) in s3_keys.iter().filter(|(_, set)| *set) {
                        self.err(
                            span.clone(),
                            format!("store {name:?}: {k} is for kind = \"s3\" stores"),
                        );
                    }
                    let Some(root_spanned) = &s.root else {
                        self.err(span, format!("store {name:?}: a local store needs root"));
                        continue;
                    };
                    let root = self.resolve(root_spanned.get_ref());
                    if let Some(problem) = self.fs_checks.then(|| root_problem(&root)).flatten() {
                        self.err(
                            root_spanned.span(),
                            format!("store {name:?}: root {} {problem}", root.display()),
                        );
                    }
                    let root = root.canonicalize().unwrap_or(root);
                    // A file belongs to one store: pins, classes and confinement are per store.
                    if let Some(other) = stores.iter().find(|o: &&Store| {
                        o.is_local() && (o.root.starts_with(&root) || root.starts_with(&o.root))
                    }) {
                        self.err(
                            root_spanned.span(),
                            format!("store {name:?}: root {} overlaps the root of store {:?} ({}); store roots must not nest", root.display(), other.name, other.root.display()),
                        );
                    }
                    stores.push(Store {
                        name,
                        kind: s.kind,
                        root,
                        prune_empty_dirs: s.prune_empty_dirs.then_some(s.prune_grace),
                        watch: s.watch,
                        s3: None,
                    });
                }
                StoreKind::S3 => {
                    if s.root.is_some() || s.prune_empty_dirs {
                        self.err(span.clone(), format!("store {name:?}: root and prune_empty_dirs are for local stores; an S3 store has endpoint, bucket and prefix"));
                    }
                    let (Some(endpoint), Some(bucket)) = (&s.endpoint, &s.bucket) else {
                        self.err(
                            span,
                            format!("store {name:?}: an S3 store needs endpoint and bucket"),
                        );
                        continue;
                    };
                    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                        self.err(span.clone(), format!("store {name:?}: endpoint {endpoint:?} must start with https:// (or http:// for loopback or with allow_http)"));
                    }
                    let prefix = s.prefix.clone().unwrap_or_default();
                    if prefix.starts_with('/') || prefix.split('/').any(|x| x == "..") {
                        self.err(
                            span.clone(),
                            format!(
                                "store {name:?}: prefix {prefix:?} must be relative, without '..'"
                            ),
                        );
                    }
                    let credentials_file = s.credentials_file.as_ref().map(|f| self.resolve(f));
                    if let Some((f, Err(e))) = credentials_file
                        .as_ref()
                        .filter(|_| self.fs_checks)
                        .map(|f| (f, std::fs::metadata(f)))
                    {
                        self.err(
                            span.clone(),
                            format!("store {name:?}: credentials_file {}: {e}", f.display()),
                        );
                    }
                    stores.push(Store {
                        name,
                        kind: s.kind,
                        root: PathBuf::new(),
                        prune_empty_dirs: None,
                        watch: false,
                        s3: Some(S3Location {
                            endpoint: endpoint.clone(),
                            region: s.region.clone().unwrap_or_else(|| "us-east-1".into()),
                            bucket: bucket.clone(),
                            prefix,
                            virtual_hosted: s.virtual_hosted.unwrap_or(false),
                            allow_http: s.allow_http.unwrap_or(false),
                            credentials_file,
                            abort_uploads_after: s
                                .abort_uploads_after
                                .unwrap_or(Dur(std::time::Duration::from_secs(86400))),
                            retry_timeout: s
                                .retry_timeout
                                .unwrap_or(Dur(std::time::Duration::from_secs(120))),
                        }),
                    });
                }
            }
        }

        // Our own files must never be candidates for deletion.
        for (what, p) in [("state_dir", &daemon.state_dir), ("socket", &daemon.socket)] {
            if let Some(st) = stores
                .iter()
                .find(|st| st.is_local() && p.starts_with(&st.root))
            {
                self.err(
                    state_dir_span.clone(),
                    format!("daemon.{what} {} is inside the root of store {:?}; keep mediaretain's own files outside every store", p.display(), st.name),
                );
            }
        }

        let mut classes = Vec::new();
        let mut class_names = HashSet::new();
        for sc in raw.class {
            let span = sc.span();
            let c = sc.into_inner();
            let name = c.name.get_ref().clone();
            if name.is_empty() {
                self.err(c.name.span(), "class name must not be empty");
            } else if !class_names.insert(name.clone()) {
                self.err(c.name.span(), format!("duplicate class name {name:?}"));
            }
            if !stores.iter().any(|s| &s.name == c.store.get_ref()) {
                let known: Vec<_> = stores.iter().map(|s| s.name.as_str()).collect();
                self.err(
                    c.store.span(),
                    format!(
                        "class {name:?}: unknown store {:?} (stores: {})",
                        c.store.get_ref(),
                        known.join(", ")
                    ),
                );
            }
            if c.patterns.get_ref().is_empty() {
                self.err(
                    c.patterns.span(),
                    format!("class {name:?}: match must list at least one glob"),
                );
            }
            let mut each_ok = true;
            for p in c.patterns.get_ref().iter().chain(c.exclude.get_ref()) {
                if let Err(e) = glob(p) {
                    each_ok = false;
                    let sp = if c.patterns.get_ref().contains(p) {
                        c.patterns.span()
                    } else {
                        c.exclude.span()
                    };
                    self.err(sp, format!("class {name:?}: bad glob {p:?}: {}", e.kind()));
                } else if p.starts_with('/') {
                    self.err(
                        c.patterns.span(),
                        format!("class {name:?}: glob {p:?} must be relative to the store root"),
                    );
                }
            }
            // Each glob parses; together they must also compile, as the classifier does.
            for (list, key) in [(&c.patterns, "match"), (&c.exclude, "exclude")] {
                if each_ok && let Err(e) = glob_set(list.get_ref()) {
                    self.err(
                        list.span(),
                        format!("class {name:?}: the {key} globs cannot be compiled (too large or nested too deeply): {}", e.kind()),
                    );
                }
            }
            match c.lifecycle {
                Lifecycle::Temporary => {
                    if c.ttl.is_none() {
                        self.err(
                            span.clone(),
                            format!("class {name:?}: lifecycle \"temporary\" needs ttl"),
                        );
                    }
                    if c.keep_for.is_some() {
                        self.err(span.clone(), format!("class {name:?}: keep_for is for segment and recording classes; a temporary class uses ttl"));
                    }
                }
                Lifecycle::Segment | Lifecycle::Recording => {
                    if c.ttl.is_some() {
                        self.err(span.clone(), format!("class {name:?}: ttl is for temporary classes; a {} class uses keep_for", c.lifecycle));
                    }
                    if c.lifecycle == Lifecycle::Segment && c.keep_for.is_none() {
                        self.err(
                            span.clone(),
                            format!("class {name:?}: lifecycle \"segment\" needs keep_for"),
                        );
                    }
                }
            }
            if c.part_suffixes
                .iter()
                .any(|x| x.is_empty() || x.contains('/'))
            {
                self.err(
                    span.clone(),
                    format!("class {name:?}: part_suffixes must be non-empty and contain no '/'"),
                );
            }
            if c.max_count == Some(0) || c.max_total.is_some_and(|t| t.0 == 0) {
                self.err(
                    span.clone(),
                    format!("class {name:?}: max_count and max_total must be above 0 (a ttl of 0s expires files at once)"),
                );
            }
            if let Some(o) = &c.offload {
                let local = stores
                    .iter()
                    .find(|s| &s.name == c.store.get_ref())
                    .is_some_and(Store::is_local);
                match stores.iter().find(|s| s.name == o.to) {
                    None => self.err(
                        span.clone(),
                        format!("class {name:?}: offload.to names unknown store {:?}", o.to),
                    ),
                    Some(t) if t.is_local() => self.err(
                        span.clone(),
                        format!(
                            "class {name:?}: offload.to must name an S3 store; {:?} is local",
                            o.to
                        ),
                    ),
                    Some(_) if !local => self.err(
                        span.clone(),
                        format!("class {name:?}: offload is for classes of local stores"),
                    ),
                    Some(_) => {}
                }
            }
            classes.push(Class {
                name,
                store: c.store.into_inner(),
                patterns: c.patterns.into_inner(),
                exclude: c.exclude.into_inner(),
                lifecycle: c.lifecycle,
                ttl: c.ttl,
                keep_for: c.keep_for,
                max_count: c.max_count,
                max_total: c.max_total,
                age_from: c.age_from,
                quiet_period: c.quiet_period,
                protect_playlist_refs: c
                    .protect_playlist_refs
                    .unwrap_or(c.lifecycle == Lifecycle::Segment),
                part_suffixes: c.part_suffixes,
                min_keep: c.min_keep,
                pressure_priority: c.pressure_priority,
                offload: c.offload,
            });
        }
        self.check_offload_targets(&stores, &classes, &store_spans);

        let (wspan, w) = match raw.watchdog {
            Some(w) => (w.span(), w.into_inner()),
            None => (0..0, raw::Watchdog::default()),
        };
        if w.interval.0.is_zero() || w.interval.0.as_secs() > 3600 {
            self.err(
                wspan.clone(),
                "watchdog: interval must be above 0s and at most 1h",
            );
        }
        let base = raw::VolumeTable {
            path: Spanned::new(0..0, PathBuf::new()),
            enabled: Some(w.enabled),
            high: Some(w.high),
            low: Some(w.low),
            horizon: Some(w.horizon),
            min_free: w.min_free,
            min_free_inodes: Some(w.min_free_inodes),
        };
        let limits = self.limits(&base, None, wspan.clone(), "watchdog");
        let mut volumes: Vec<VolumeLimits> = Vec::new();
        for v in &w.volume {
            let span = v.span();
            let v = v.get_ref();
            let path = self.resolve(v.path.get_ref());
            let what = format!("watchdog.volume {}", path.display());
            if self.fs_checks {
                match std::fs::metadata(&path) {
                    Err(e) => self.err(v.path.span(), format!("{what}: {e}")),
                    Ok(md) => {
                        use std::os::unix::fs::MetadataExt;
                        let dev_of = |p: &Path| std::fs::metadata(p).ok().map(|m| m.dev());
                        if !stores
                            .iter()
                            .any(|s| s.is_local() && dev_of(&s.root) == Some(md.dev()))
                        {
                            self.err(
                                v.path.span(),
                                format!("{what}: no local store lies on this volume"),
                            );
                        }
                        if volumes.iter().any(|o| dev_of(&o.path) == Some(md.dev())) {
                            self.err(
                                v.path.span(),
                                format!(
                                    "{what}: another [[watchdog.volume]] names the same volume"
                                ),
                            );
                        }
                    }
                }
            }
            let limits = self.limits(v, Some(&limits), span, &what);
            volumes.push(VolumeLimits { path, limits });
        }
        let watchdog = Watchdog {
            interval: w.interval,
            limits,
            volumes,
        };

        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        Config {
            path,
            daemon,
            stores,
            classes,
            watchdog,
        }
    }
}

/// Why `root` cannot serve as a store root, if it cannot.
fn root_problem(root: &Path) -> Option<String> {
    match std::fs::metadata(root) {
        Err(e) => Some(format!("is not accessible: {e}")),
        Ok(md) if !md.is_dir() => Some("is not a directory".into()),
        Ok(_) => std::fs::read_dir(root)
            .err()
            .map(|e| format!("is not readable: {e}")),
    }
}

mod raw {
    //! The file as written.
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
}
