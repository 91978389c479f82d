//! The command line: subcommands, how each reaches the engine (through the daemon's
//! socket when it runs, directly under the state lock when it does not), and output as
//! tables or `--json`.
//!
//! About 300 of its lines are the subcommands' declarations with their help texts (what
//! `--help`, the man pages and the completions print, generated from them); the rest is
//! dispatch. Each concern's own code and rendering is in its module beside this one.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::access::Caller;
use crate::clock::{SystemClock, system_now};
use crate::config::{self, Config, ConfigError};
use crate::control::client::{self, ClientError};
use crate::control::{
    GcRequest, LeaseIdRequest, LeaseRequest, LsRequest, PathRequest, PathsRequest, Released,
    ReloadResponse, TagRequest,
};
use crate::engine::{
    Engine, EngineError, Explanation, GcReport, Mark, MarkResult, RmReport, RmRequest, Status,
};
use crate::exit;
pub use crate::failure::Failure;
use crate::policy::{Plan, Verdict};
use crate::registry::{Entry, Filter, Lease};
use crate::scan::ScanStats;
use crate::statedir::{StateError, StateLock};
use crate::store::Outcome;
use crate::units::{ByteSize, Nanos, fmt_span, fmt_time};

mod admin;
mod backend;
mod files;
mod fleet;
mod history;
mod lifecycle;
mod manual;
mod marks;
mod passes;
mod registry;
mod rm;
mod status;
mod unit;

use backend::Backend;
pub use lifecycle::LifecycleAction;
pub use manual::Generated;

/// mediaretain: keeps streaming and recording boxes from filling their disks.
#[derive(Debug, Parser)]
#[command(
    name = "mediaretain",
    version,
    about,
    long_about = manual::LONG_ABOUT,
    after_help = manual::AFTER_HELP,
    after_long_help = manual::after_long_help(),
    mut_subcommands = manual::decorate
)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "MEDIARETAIN_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// The running daemon's control socket. Client commands (status, plan, ls, explain,
    /// leases, lease, renew, release…) then need nothing else: not even a readable config.
    #[arg(long, global = true, env = "MEDIARETAIN_SOCKET")]
    pub socket: Option<PathBuf>,
    /// More logging (-v: info, -vv: debug; the daemon: -v debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print only errors (and what --json asks for).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the daemon (systemd ExecStart).
    Run,
    /// Validate the config: exit 0, or 78 with FILE:LINE:COL: message lines. Warns (exit
    /// 0) where the systemd unit would keep the daemon from a store root or the network.
    CheckConfig {
        /// The unit (and its drop-ins) to check the config against; without it, the
        /// installed mediaretain.service when it runs this config.
        #[arg(long, value_name = "UNIT")]
        unit: Option<PathBuf>,
        /// Print the local store roots, one a line, and nothing else (for the package's
        /// maintainer scripts).
        #[arg(long, hide = true)]
        store_roots: bool,
        /// What would keep the daemon from starting under the unit, or take away the
        /// network it uses, is an error (exit 78), not a warning; the package checks so
        /// before it restarts the daemon.
        #[arg(long)]
        strict: bool,
    },
    /// Show what would be deleted and why; changes nothing.
    Plan {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Plan for another time: RFC 3339 ("2026-11-22T08:00:00Z") or "+2h".
        #[arg(long)]
        at: Option<String>,
    },
    /// Run one lifecycle pass now (through the daemon if it runs).
    Gc {
        /// Plan and check only; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Volumes, watermarks, classes and activity.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List registry entries.
    Ls {
        /// Only this class.
        #[arg(long)]
        class: Option<String>,
        /// Only retained (pinned) files.
        #[arg(long)]
        retained: bool,
        /// Only files with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only files in use now (leases, open files, locks, still being written), with why.
        #[arg(long)]
        in_use: bool,
        /// At most this many.
        #[arg(long)]
        limit: Option<u64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Why a file is kept or when it goes; for a deleted file, when and why it went.
    Explain {
        /// An absolute path inside a store root, or STORE:KEY (see "Odd names" in docs/cli.md).
        #[arg(value_parser = spelled())]
        path: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The audit, newest first: what was deleted, refused or failed (segments each on its
    /// own line), pinned or offloaded — when, by which rule and trigger, and why. Paged:
    /// a page that has more ends with the --before to give for the next.
    History {
        /// Only the last span ("1h", "30m", "7d"), or since an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only this class.
        #[arg(long)]
        class: Option<String>,
        /// Only this rule: ttl, keep_for, max_count, max_total, pressure, offloaded, manual, duplicate.
        #[arg(long)]
        rule: Option<String>,
        /// Only this trigger: schedule, pressure, manual (rm), cli, api, or a hook's word.
        #[arg(long)]
        trigger: Option<String>,
        /// Only this path, or the paths a glob matches (`media:rec/cam1/**`): absolute
        /// inside a store root, or STORE:KEY.
        #[arg(long, value_parser = spelled())]
        path: Option<String>,
        /// Only this store.
        #[arg(long)]
        store: Option<String>,
        /// Only this outcome: deleted, refused, failed, vanished, done.
        #[arg(long)]
        outcome: Option<String>,
        /// At most this many records (default 50, at most 10000).
        #[arg(long)]
        limit: Option<u64>,
        /// The next page: the cursor the previous page ended with ("more: --before N").
        #[arg(long)]
        before: Option<String>,
        /// Leave out the records of segment classes.
        #[arg(long)]
        no_segments: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Identical copies in classes with `dedupe`: each group's kept file, its copies (and
    /// what the plan does with each), and the bytes they waste.
    Dupes {
        /// Only this class.
        #[arg(long)]
        class: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Pin files: never deleted automatically until unretained.
    Retain {
        /// Absolute paths inside store roots, or STORE:KEY.
        #[arg(required = true, value_parser = spelled())]
        paths: Vec<String>,
    },
    /// Remove pins.
    Unretain {
        /// Absolute paths inside store roots, or STORE:KEY.
        #[arg(required = true, value_parser = spelled())]
        paths: Vec<String>,
    },
    /// Add or remove free labels (like event=match-42) on files.
    Tag {
        /// Absolute paths inside store roots, or STORE:KEY.
        #[arg(required = true, value_parser = spelled())]
        paths: Vec<String>,
        /// Tags to add.
        #[arg(long)]
        add: Vec<String>,
        /// Tags to remove.
        #[arg(long)]
        remove: Vec<String>,
    },
    /// Say "I am using this": files matching PATH or GLOB are not deleted until the lease
    /// is released or expires. Prints the lease id.
    Lease {
        /// A path or glob: absolute inside a store root, or STORE:KEY (`media:hls/s1/**`).
        #[arg(value_parser = spelled())]
        path: String,
        /// How long, e.g. 60s.
        #[arg(long)]
        ttl: crate::units::Dur,
        /// Who holds it (shown by explain).
        #[arg(long, default_value = "cli")]
        holder: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Extend a lease to TTL from now.
    Renew {
        /// The lease id.
        id: i64,
        /// How long from now.
        #[arg(long)]
        ttl: crate::units::Dur,
    },
    /// End a lease.
    Release {
        /// The lease id.
        id: i64,
    },
    /// List active leases.
    Leases {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Delete files and directories now, through the same checks as a pass, each file
    /// verified gone and audited (trigger "manual"). Retained files are refused unless
    /// --force-retained; the last copy of content whose other copies went as its duplicates
    /// is refused unless --force-last-copy; files open in another process are refused naming it; files of an
    /// offload class stay until their copy is verified ("offload before delete"); symlinks
    /// are never followed and left in place. Exit 0 when everything named is gone, 74 when
    /// anything remains (each with its reason), 65 for a path outside every store.
    Rm {
        /// Absolute paths inside store roots, or STORE:KEY (files, or directories with -r).
        #[arg(required = true, value_parser = spelled())]
        paths: Vec<String>,
        /// Delete what directories hold, then the directories emptied (never the store root).
        #[arg(short, long)]
        recursive: bool,
        /// Check everything and say what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Unpin retained files (audited) and delete them too.
        #[arg(long)]
        force_retained: bool,
        /// Delete a file even when it is the last copy of content whose other copies were
        /// deleted as its duplicates (refused otherwise, naming them and when they went).
        #[arg(long)]
        force_last_copy: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Reconcile the registry with the stores now.
    Scan {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon to reload its config (like SIGHUP), reporting errors.
    Reload,
    /// The wall clock: `clock accept` confirms a clock found jumped (status: CLOCK JUMPED)
    /// as true, so that the time-based deletions it holds resume now.
    Clock {
        /// accept.
        action: admin::ClockAction,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The registry itself, when it was lost or damaged (the daemon then refuses to start,
    /// exit 65, and says which of these to run): recover, reset, or back it up now. See
    /// docs/registry.md.
    Registry {
        #[command(subcommand)]
        action: RegistryAction,
    },
    /// Every box writing into an S3 store's bucket and prefix, from their status objects
    /// (node, version, last pass, backlog, clock), each with its age; names the stale ones
    /// (no status for over 3 heartbeats). Needs no daemon.
    Fleet {
        /// The S3 store of the config (default: the only one).
        store: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Stream an object of an S3 store to a local file (memory flat for any size),
    /// verified; its partial file lives in the state directory.
    Fetch {
        /// STORE:KEY of an S3 store (`archive:rec/2026/cam1.mp4`).
        src: String,
        /// The local file to write.
        dest: PathBuf,
        /// Replace DEST if it exists.
        #[arg(long)]
        force: bool,
    },
    /// An S3 store's rules as the bucket's native lifecycle, a backstop (plan, apply, check).
    ///
    /// Expiry by prefix in whole days (rounded up) and abort of incomplete uploads: what
    /// the store can enforce itself, so that a bucket whose boxes all died still expires.
    /// See docs/fleet.md.
    Lifecycle {
        #[command(subcommand)]
        action: LifecycleAction,
    },
    /// Write the man pages or the shell completions (bash, zsh, fish) into DIR, from this
    /// command line's own definition (run by scripts/deb before packaging).
    #[command(hide = true)]
    Generate {
        /// man or completions.
        what: manual::Generated,
        /// Where to write them (created if missing).
        dir: PathBuf,
    },
}

/// `mediaretain registry …` (run with the daemon stopped, except `backup`).
#[derive(Debug, Subcommand)]
pub enum RegistryAction {
    /// Rebuild the registry from what can be read of it and from the last backup
    /// (STATE_DIR/registry.backup.db); the damaged files are renamed aside
    /// (registry.db.damaged-STAMP), never deleted; says per table what was lost. Pins come
    /// back from STATE_DIR/pins.
    Recover {
        /// Take this backup (or another box's registry) instead of registry.backup.db.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Also when the registry opens fine (it is put aside all the same).
        #[arg(long)]
        force: bool,
    },
    /// Start over with an empty registry (leases, audit and offload bookkeeping are
    /// gone; pins come back from STATE_DIR/pins); the old files are renamed aside
    /// (registry.db.lost-STAMP).
    Reset {
        /// Also when the registry opens fine.
        #[arg(long)]
        force: bool,
    },
    /// Make STATE_DIR/registry.backup.db now (the daemon makes it hourly when the registry
    /// changed); works beside a running daemon.
    Backup,
}

/// A path argument as a lossless spelling ([`crate::spell::from_arg`]): raw bytes from the
/// shell and the spelling `ls` prints both work.
fn spelled() -> impl clap::builder::TypedValueParser<Value = String> {
    use clap::builder::TypedValueParser as _;
    clap::builder::OsStringValueParser::new().map(|a| absolute(crate::spell::from_arg(a)))
}

/// A relative path argument made absolute against the working directory, as every Unix
/// tool takes it (`explain rec/a.mp4` inside the store root); leading `../` are folded.
/// `STORE:KEY` (a `:` with no `/` before it) and absolute paths pass unchanged.
fn absolute(arg: String) -> String {
    let store_key = arg.find(':').is_some_and(|c| !arg[..c].contains('/'));
    if arg.is_empty() || arg.starts_with('/') || store_key {
        return arg;
    }
    let Ok(mut dir) = std::env::current_dir() else {
        return arg;
    };
    let mut rest = arg.as_str();
    loop {
        rest = rest.trim_start_matches("./");
        match rest.strip_prefix("../") {
            Some(r) => {
                dir.pop();
                rest = r;
            }
            None if rest == ".." => {
                dir.pop();
                rest = "";
            }
            None => break,
        }
    }
    let dir = crate::spell::path(&dir).into_owned();
    match rest {
        "" | "." => dir,
        r => format!("{}/{r}", dir.trim_end_matches('/')),
    }
}

const NONE: Option<&()> = None;

/// Prints `v` as JSON, or the human rendering.
fn show<T: Serialize>(json: bool, v: &T, human: impl FnOnce() -> String) -> Result<(), Failure> {
    if json {
        return print_json(v);
    }
    if !quiet() {
        print!("{}", human());
    }
    Ok(())
}

fn print_json(v: &impl Serialize) -> Result<(), Failure> {
    // Streamed: a pass over 100k files must not build its whole answer in memory twice.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, v)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .map_err(|e| Failure::new(exit::IOERR, format!("writing output: {e}")))
}

/// Parses `--at`: RFC 3339, "+DURATION", or "now" ([`crate::units::parse_at`], which
/// `GET /v1/plan?at=` takes too).
pub fn parse_at(s: &str, now: Nanos) -> Result<Nanos, Failure> {
    crate::units::parse_at(s, now).map_err(|m| Failure::new(exit::USAGE, format!("--at: {m}")))
}

/// -1 with `-q`, else the number of `-v`s.
static VERBOSITY: std::sync::atomic::AtomicI8 = std::sync::atomic::AtomicI8::new(0);

impl Cli {
    /// -1 with `-q`, else the number of `-v`s (at most 2 count).
    pub fn verbosity(&self) -> i8 {
        if self.quiet {
            -1
        } else {
            self.verbose.min(2) as i8
        }
    }
}

/// `-q`: only errors are printed (and `--json` output).
pub fn quiet() -> bool {
    VERBOSITY.load(std::sync::atomic::Ordering::Relaxed) < 0
}

/// Prints a line of a command's human output, unless `-q`.
macro_rules! say {
    ($($t:tt)*) => {
        if !$crate::cli::quiet() {
            println!($($t)*);
        }
    };
}
pub(crate) use say;

/// Prints `text` (a rendered report) unless `-q`.
fn say_all(text: &str) {
    if !quiet() {
        print!("{text}");
    }
}

/// Shows a [`crate::progress::Progress`] on stderr while it lives, with `indicatif` —
/// only when stderr is a terminal and not under `-q`: nothing extra in a pipe or a log.
struct Bar {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bar {
    fn show(p: Arc<crate::progress::Progress>) -> Option<Bar> {
        use std::io::IsTerminal;
        if quiet() || !std::io::stderr().is_terminal() {
            return None;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stop.clone();
        let thread = std::thread::spawn(move || {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            let mut shown: Option<(String, Option<u64>)> = None;
            loop {
                let last = done.load(std::sync::atomic::Ordering::Relaxed);
                let (phase, n) = p.now();
                let key = (phase.what.clone(), phase.total);
                if !phase.what.is_empty() && shown.as_ref() != Some(&key) {
                    let unit = if phase.bytes {
                        "{bytes} ({bytes_per_sec})"
                    } else {
                        "{human_pos} files ({per_sec})"
                    };
                    let template = match phase.total {
                        Some(_) => format!(
                            "{{msg}} [{{bar:30}}] {}/{{human_len}} {{elapsed}}, {{eta}} left",
                            unit.split(' ').next().unwrap_or("{human_pos}")
                        ),
                        None => format!("{{spinner}} {{msg}}: {unit} {{elapsed}}"),
                    };
                    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar.reset();
                    bar.set_length(phase.total.unwrap_or(0));
                    bar.set_message(phase.what.clone());
                    shown = Some(key);
                }
                if let Some((_, total)) = &shown {
                    bar.set_position(n);
                    if total.is_none() {
                        bar.tick(); // the spinner turns
                    }
                }
                if last {
                    break;
                }
                std::thread::park_timeout(std::time::Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        Some(Bar {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    VERBOSITY.store(cli.verbosity(), std::sync::atomic::Ordering::Relaxed);
    let path = cli.config.clone();
    match cli.cmd {
        Cmd::Run => crate::daemon::run(&path).await,
        Cmd::CheckConfig {
            unit,
            store_roots,
            strict,
        } => admin::check_config(&path, unit.as_deref(), store_roots, strict),
        Cmd::Fetch { src, dest, force } => admin::fetch(&path, src, dest, force).await,
        Cmd::Lifecycle { action } => lifecycle::run(&path, action).await,
        Cmd::Fleet { store, json } => fleet::fleet(&path, store, json).await,
        Cmd::Generate { what, dir } => manual::generate(what, &dir),
        Cmd::Registry { action } => registry::run(&path, action).await,
        cmd => {
            let needs_daemon = matches!(cmd, Cmd::Reload);
            // A client of a running daemon needs only its socket: a socket_group member
            // may be unable to read the config, or to write its state_dir.
            let lenient = cli.socket.clone().or_else(|| config::control_socket(&path));
            if let Some(socket) = &lenient
                && let Err(ClientError::Connect { source, .. }) = client::connect(socket).await
                && source.kind() == std::io::ErrorKind::PermissionDenied
            {
                let denied = Failure::new(
                    exit::NOPERM,
                    format!(
                        "cannot connect to {}: permission denied; only root, the daemon's user and members of its socket_group may use it",
                        socket.display()
                    ),
                );
                // Whether or not a daemon runs, the volumes can be shown; the exit code
                // still says the daemon could not be asked.
                if let Cmd::Status { json } = &cmd
                    && let Ok(cfg) = Config::load_with(&path, false)
                {
                    status::volumes_only(&cfg, *json, None)?;
                }
                return Err(denied);
            }
            if let Some(socket) = lenient
                && client::connect(&socket).await.is_ok()
            {
                if cli.socket.is_none() && !needs_daemon && !quiet() && owns(&socket) {
                    // The operator's own typo must not go unnoticed while the daemon runs
                    // on its last good config.
                    if let Err(e) = Config::load(&path) {
                        eprintln!(
                            "mediaretain: warning: {} has errors; the daemon runs on its last good config:",
                            path.display()
                        );
                        for line in e.to_string().lines() {
                            eprintln!("mediaretain:   {line}");
                        }
                    }
                }
                return dispatch(&Backend::Daemon(socket), cmd).await;
            }
            if let Some(socket) = cli.socket {
                return Err(Failure::new(
                    exit::UNAVAILABLE,
                    format!(
                        "the daemon is not running (nothing answers on {})",
                        socket.display()
                    ),
                ));
            }
            // `scan` is itself the reconciliation; everything else refreshes first.
            let loaded = Config::load(&path);
            if let (Cmd::Status { json }, Err(e @ ConfigError::Invalid(_))) = (&cmd, &loaded)
                && let Ok(cfg) = Config::load_with(&path, false)
            {
                // Only this machine's state is in the way (a state directory this user
                // may not write): show the volumes anyway.
                return status::volumes_only(&cfg, *json, Some(&e.to_string()));
            }
            let cfg = loaded.map_err(|e| match e {
                e @ ConfigError::Read { .. } => Failure::new(
                    exit::CONFIG,
                    format!("{e}\n(a client of a running daemon needs only its socket: give --socket PATH or MEDIARETAIN_SOCKET)"),
                ),
                e => e.into(),
            })?;
            // `history` reads the audit only: nothing on disk to reconcile first.
            let refresh = !matches!(cmd, Cmd::Scan { .. } | Cmd::History { .. });
            let b = match Backend::open(cfg.clone(), needs_daemon, refresh).await {
                Ok(b) => b,
                // No daemon and no registry here (another user's state directory): the
                // volumes still tell the operator how full the disks are.
                Err(f) if matches!(cmd, Cmd::Status { .. }) => {
                    let Cmd::Status { json } = cmd else {
                        return Err(f);
                    };
                    return status::volumes_only(&cfg, json, Some(&f.message));
                }
                Err(f) => return Err(f),
            };
            dispatch(&b, cmd).await
        }
    }
}

/// Whether this process is root or owns `socket` (the daemon's user): who administers it.
fn owns(socket: &Path) -> bool {
    let me = rustix::process::geteuid();
    me.is_root() || rustix::fs::stat(socket).is_ok_and(|st| st.st_uid == me.as_raw())
}

/// One line per subcommand: each lives in its module, with its rendering.
async fn dispatch(b: &Backend, cmd: Cmd) -> Result<(), Failure> {
    match cmd {
        Cmd::Run
        | Cmd::CheckConfig { .. }
        | Cmd::Fetch { .. }
        | Cmd::Lifecycle { .. }
        | Cmd::Fleet { .. }
        | Cmd::Generate { .. }
        | Cmd::Registry { .. } => {
            unreachable!("handled by run()")
        }
        Cmd::Status { json } => status::status(b, json).await,
        Cmd::Plan { json, at } => passes::plan(b, json, at).await,
        Cmd::Gc { dry_run, json } => passes::gc(b, dry_run, json).await,
        Cmd::Ls {
            class,
            retained,
            tag,
            in_use,
            limit,
            json,
        } => files::ls(b, class, retained, tag, in_use, limit, json).await,
        Cmd::Explain { path, json } => files::explain(b, path, json).await,
        Cmd::History {
            since,
            class,
            rule,
            trigger,
            path,
            store,
            outcome,
            limit,
            before,
            no_segments,
            json,
        } => {
            let req = crate::engine::HistoryRequest {
                since,
                class,
                rule,
                trigger,
                path,
                store,
                outcome,
                limit,
                before,
                no_segments,
            };
            history::history(b, req, json).await
        }
        Cmd::Dupes { class, json } => files::dupes(b, class, json).await,
        cmd @ (Cmd::Retain { .. } | Cmd::Unretain { .. } | Cmd::Tag { .. }) => {
            marks::mark(b, cmd).await
        }
        Cmd::Lease {
            path,
            ttl,
            holder,
            json,
        } => marks::lease(b, path, ttl, holder, json).await,
        Cmd::Renew { id, ttl } => marks::renew(b, id, ttl).await,
        Cmd::Release { id } => marks::release(b, id).await,
        Cmd::Leases { json } => marks::leases(b, json).await,
        Cmd::Rm {
            paths,
            recursive,
            dry_run,
            force_retained,
            force_last_copy,
            json,
        } => {
            let force = rm::Force {
                retained: force_retained,
                last_copy: force_last_copy,
            };
            rm::rm(b, paths, recursive, dry_run, force, json).await
        }
        Cmd::Scan { json } => admin::scan(b, json).await,
        Cmd::Reload => admin::reload(b).await,
        Cmd::Clock { action, json } => admin::clock(b, action, json).await,
    }
}

fn loc(store: &str, path: &Path) -> String {
    format!("{store}:{}", crate::spell::show(path))
}
