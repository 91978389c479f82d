//! The command line: subcommands, how each reaches the engine (through the daemon's
//! socket when it runs, directly under the state lock when it does not), and output as
//! tables or `--json`.

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

/// mediaretain: keeps streaming and recording boxes from filling their disks.
#[derive(Debug, Parser)]
#[command(name = "mediaretain", version, about, long_about = None)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "MEDIARETAIN_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// The running daemon's control socket. Client commands (status, plan, ls, explain,
    /// leases, lease, renew, release…) then need nothing else: not even a readable config.
    #[arg(long, global = true, env = "MEDIARETAIN_SOCKET")]
    pub socket: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the daemon (systemd ExecStart).
    Run,
    /// Validate the config: exit 0, or 78 with FILE:LINE:COL: message lines.
    CheckConfig,
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
        /// An absolute path inside a store root, or STORE:KEY (see "Odd names" in the README).
        #[arg(value_parser = spelled())]
        path: String,
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
    /// --force-retained; files open in another process are refused naming it; files of an
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
}

/// A path argument as a lossless spelling ([`crate::spell::from_arg`]): raw bytes from the
/// shell and the spelling `ls` prints both work.
fn spelled() -> impl clap::builder::TypedValueParser<Value = String> {
    use clap::builder::TypedValueParser as _;
    clap::builder::OsStringValueParser::new().map(crate::spell::from_arg)
}

/// Where commands go.
enum Backend {
    Daemon(PathBuf),
    Local(Arc<Engine>, #[allow(dead_code)] StateLock),
}

impl Backend {
    /// Connects to the daemon, or opens the registry under the state lock; `refresh`
    /// reconciles the registry with the disk first (no daemon keeps it current).
    async fn open(cfg: Config, needs_daemon: bool, refresh: bool) -> Result<Backend, Failure> {
        let socket = cfg.daemon.socket.clone();
        match client::connect(&socket).await {
            Ok(_) => return Ok(Backend::Daemon(socket)),
            Err(e) if needs_daemon => {
                return Err(Failure::new(
                    exit::UNAVAILABLE,
                    format!("the daemon is not running ({e})"),
                ));
            }
            Err(_) => {}
        }
        let lock = StateLock::acquire(&cfg.daemon.state_dir).map_err(|e| match e {
            StateError::Busy { pid, .. } => Failure::new(
                exit::UNAVAILABLE,
                format!("mediaretain (pid {pid}) holds the state directory but its socket {} does not answer; is it still starting?", socket.display()),
            ),
            e => Failure::new(exit::CANTCREAT, e.to_string()),
        })?;
        let engine = Arc::new(Engine::open(cfg, Arc::new(SystemClock), false)?);
        if refresh {
            let e = engine.clone();
            tokio::task::spawn_blocking(move || e.scan_all())
                .await
                .expect("scan task")?;
        }
        Ok(Backend::Local(engine, lock))
    }

    async fn ask<T, B>(
        &self,
        method: Method,
        uri: &str,
        body: Option<&B>,
        local: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, Failure>
    where
        T: DeserializeOwned + Send + 'static,
        B: Serialize,
    {
        match self {
            Backend::Daemon(socket) => {
                let stream = client::connect(socket).await?;
                Ok(client::call(stream, socket, method, uri, body).await?)
            }
            Backend::Local(engine, _) => {
                let e = engine.clone();
                Ok(tokio::task::spawn_blocking(move || local(&e))
                    .await
                    .expect("engine task")?)
            }
        }
    }
}

const NONE: Option<&()> = None;

/// Prints `v` as JSON, or the human rendering.
fn show<T: Serialize>(json: bool, v: &T, human: impl FnOnce() -> String) -> Result<(), Failure> {
    if json {
        return print_json(v);
    }
    print!("{}", human());
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

/// Parses `--at`: RFC 3339, "+DURATION", or "now".
pub fn parse_at(s: &str, now: Nanos) -> Result<Nanos, Failure> {
    let bad = |m: String| Failure::new(exit::USAGE, format!("--at {s:?}: {m}"));
    if s == "now" {
        return Ok(now);
    }
    if let Some(d) = s.strip_prefix('+') {
        let d: crate::units::Dur = d.parse().map_err(bad)?;
        return Ok(now.saturating_add(d.as_nanos_i64()));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        bad(format!(
            "{e}; use RFC 3339 like 2026-11-22T08:00:00Z or +2h"
        ))
    })?;
    Ok(crate::clock::to_nanos(t))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let path = cli.config.clone();
    match cli.cmd {
        Cmd::Run => crate::daemon::run(&path).await,
        Cmd::CheckConfig => {
            let cfg = Config::load(&path)?;
            let drop_ins: Vec<String> = cfg
                .drop_ins
                .iter()
                .map(|p| format!(" + {}", p.display()))
                .collect();
            println!(
                "{}{}: ok ({} stores, {} classes; state_dir {}, socket {})",
                path.display(),
                drop_ins.concat(),
                cfg.stores.len(),
                cfg.classes.len(),
                cfg.daemon.state_dir.display(),
                cfg.daemon.socket.display()
            );
            Ok(())
        }
        Cmd::Fetch { src, dest, force } => {
            // No registry needed: it works beside a running daemon.
            let cfg = Config::load(&path)?;
            let (s, d) = (src.clone(), dest.clone());
            let v = tokio::task::spawn_blocking(move || crate::engine::fetch(&cfg, &s, &d, force))
                .await
                .expect("fetch task")?;
            println!(
                "fetched {src} to {}: {} bytes, etag {} (verified)",
                dest.display(),
                v.size,
                v.checksum
            );
            Ok(())
        }
        cmd => {
            let needs_daemon = matches!(cmd, Cmd::Reload);
            // A client of a running daemon needs only its socket: a socket_group member
            // may be unable to read the config, or to write its state_dir.
            let lenient = cli.socket.clone().or_else(|| config::control_socket(&path));
            if let Some(socket) = &lenient
                && let Err(ClientError::Connect { source, .. }) = client::connect(socket).await
                && source.kind() == std::io::ErrorKind::PermissionDenied
            {
                return Err(Failure::new(
                    exit::NOPERM,
                    format!(
                        "cannot connect to {}: permission denied; only root, the daemon's user and members of its socket_group may use it",
                        socket.display()
                    ),
                ));
            }
            if let Some(socket) = lenient
                && client::connect(&socket).await.is_ok()
            {
                if cli.socket.is_none() && !needs_daemon && owns(&socket) {
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
            let cfg = Config::load(&path).map_err(|e| match e {
                e @ ConfigError::Read { .. } => Failure::new(
                    exit::CONFIG,
                    format!("{e}\n(a client of a running daemon needs only its socket: give --socket PATH or MEDIARETAIN_SOCKET)"),
                ),
                e => e.into(),
            })?;
            let b = Backend::open(cfg, needs_daemon, !matches!(cmd, Cmd::Scan { .. })).await?;
            dispatch(&b, cmd).await
        }
    }
}

/// Whether this process is root or owns `socket` (the daemon's user): who administers it.
fn owns(socket: &Path) -> bool {
    let me = rustix::process::geteuid();
    me.is_root() || rustix::fs::stat(socket).is_ok_and(|st| st.st_uid == me.as_raw())
}

async fn dispatch(b: &Backend, cmd: Cmd) -> Result<(), Failure> {
    match cmd {
        Cmd::Run | Cmd::CheckConfig | Cmd::Fetch { .. } => unreachable!("handled by run()"),
        Cmd::Status { json } => {
            let s: Status = b
                .ask(Method::GET, "/v1/status", NONE, |e| e.status())
                .await?;
            show(json, &s, || render_status(&s, system_now()))
        }
        Cmd::Plan { json, at } => {
            let at = at.map(|a| parse_at(&a, system_now())).transpose()?;
            let uri = match at {
                Some(t) => format!("/v1/plan?at={t}"),
                None => "/v1/plan".into(),
            };
            let p: Plan = b
                .ask(Method::GET, &uri, NONE, move |e| {
                    e.plan_checked(at.unwrap_or_else(|| e.now()))
                })
                .await?;
            show(json, &p, || render_plan(&p))
        }
        Cmd::Gc { dry_run, json } => {
            let r: GcReport = b
                .ask(
                    Method::POST,
                    "/v1/gc",
                    Some(&GcRequest {
                        dry_run,
                        trigger: Some("cli".into()),
                    }),
                    move |e| e.gc(dry_run, "cli", true),
                )
                .await?;
            if json {
                print_json(&r)?;
            } else {
                print!("{}", render_gc(&r));
            }
            if r.failed > 0 {
                return Err(Failure::new(
                    exit::IOERR,
                    format!(
                        "{} of {} files could not be deleted",
                        r.failed,
                        r.results.len()
                    ),
                ));
            }
            Ok(())
        }
        Cmd::Ls {
            class,
            retained,
            tag,
            in_use,
            limit,
            json,
        } => {
            let req = LsRequest {
                class: class.clone(),
                retained,
                tag: tag.clone(),
                in_use,
                limit,
            };
            let es: Vec<Entry> = b
                .ask(Method::POST, "/v1/ls", Some(&req), move |e| {
                    e.ls(
                        &Filter {
                            class,
                            retained,
                            tag,
                            limit,
                        },
                        in_use,
                    )
                })
                .await?;
            show(json, &es, || render_ls(&es))
        }
        Cmd::Explain { path, json } => {
            let req = PathRequest { path: path.clone() };
            let x: Explanation = b
                .ask(Method::POST, "/v1/explain", Some(&req), move |e| {
                    e.explain(&path)
                })
                .await?;
            show(json, &x, || render_explain(&x, system_now()))
        }
        cmd @ (Cmd::Retain { .. } | Cmd::Unretain { .. } | Cmd::Tag { .. }) => {
            let (mark, paths) = match cmd {
                Cmd::Retain { paths } => (Mark::Retain(true), paths),
                Cmd::Unretain { paths } => (Mark::Retain(false), paths),
                Cmd::Tag { paths, add, remove } if !add.is_empty() || !remove.is_empty() => {
                    (Mark::Tags { add, remove }, paths)
                }
                Cmd::Tag { .. } => {
                    return Err(Failure::new(
                        exit::USAGE,
                        "tag: give --add TAG and/or --remove TAG",
                    ));
                }
                _ => unreachable!("matched above"),
            };
            let (uri, body) = match &mark {
                Mark::Retain(true) => (
                    "/v1/retain",
                    serde_json::to_value(PathsRequest {
                        paths: paths.clone(),
                        trigger: Some("cli".into()),
                    }),
                ),
                Mark::Retain(false) => (
                    "/v1/unretain",
                    serde_json::to_value(PathsRequest {
                        paths: paths.clone(),
                        trigger: Some("cli".into()),
                    }),
                ),
                Mark::Tags { add, remove } => (
                    "/v1/tag",
                    serde_json::to_value(TagRequest {
                        paths: paths.clone(),
                        add: add.clone(),
                        remove: remove.clone(),
                        trigger: Some("cli".into()),
                    }),
                ),
            };
            let body = body.map_err(|e| Failure::new(exit::SOFTWARE, e.to_string()))?;
            let m = mark.clone();
            let rs: Vec<MarkResult> = b
                .ask(Method::POST, uri, Some(&body), move |e| {
                    e.mark(&paths, &m, "cli")
                })
                .await?;
            let mut bad = 0;
            for r in &rs {
                match (&r.error, &r.store, &r.path) {
                    (Some(err), _, _) => {
                        bad += 1;
                        eprintln!("{}: {err}", crate::spell::canonical(&r.arg));
                    }
                    (None, Some(s), Some(p)) => {
                        let what = match (&mark, r.changed) {
                            (Mark::Retain(true), true) => "retained",
                            (Mark::Retain(true), false) => "already retained",
                            (Mark::Retain(false), true) => "unretained",
                            (Mark::Retain(false), false) => "was not retained",
                            (Mark::Tags { .. }, true) => "tagged",
                            (Mark::Tags { .. }, false) => "tags unchanged",
                        };
                        println!("{what}: {}", loc(s, p));
                    }
                    _ => {}
                }
            }
            if bad > 0 {
                return Err(Failure::new(
                    exit::DATAERR,
                    format!("{bad} of {} paths refused", rs.len()),
                ));
            }
            Ok(())
        }
        Cmd::Lease {
            path,
            ttl,
            holder,
            json,
        } => {
            let req = LeaseRequest {
                path: path.clone(),
                ttl,
                holder: holder.clone(),
            };
            let l: Lease = b
                .ask(Method::POST, "/v1/lease", Some(&req), move |e| {
                    e.lease(&path, ttl, &holder, Caller::Admin)
                })
                .await?;
            if json {
                return print_json(&l);
            }
            println!("{}", l.id);
            Ok(())
        }
        Cmd::Renew { id, ttl } => {
            let req = LeaseIdRequest { id, ttl: Some(ttl) };
            let l: Lease = b
                .ask(Method::POST, "/v1/renew", Some(&req), move |e| {
                    e.renew(id, ttl, Caller::Admin)
                })
                .await?;
            println!("lease {} until {}", l.id, fmt_time(l.expires));
            Ok(())
        }
        Cmd::Release { id } => {
            let req = LeaseIdRequest { id, ttl: None };
            let r: Released = b
                .ask(Method::POST, "/v1/release", Some(&req), move |e| {
                    e.release(id, Caller::Admin)
                        .map(|()| Released { released: id })
                })
                .await?;
            println!("released lease {}", r.released);
            Ok(())
        }
        Cmd::Leases { json } => {
            let ls: Vec<Lease> = b
                .ask(Method::GET, "/v1/leases", NONE, |e| e.leases())
                .await?;
            show(json, &ls, || {
                let mut o = String::new();
                let _ = writeln!(o, "{:>6}  {:<40} {:<16} UNTIL", "ID", "PATH", "HOLDER");
                for l in &ls {
                    let _ = writeln!(
                        o,
                        "{:>6}  {:<40} {:<16} {}",
                        l.id,
                        format!("{}:{}", l.store, l.pattern),
                        l.holder,
                        fmt_time(l.expires)
                    );
                }
                o
            })
        }
        Cmd::Rm {
            paths,
            recursive,
            dry_run,
            force_retained,
            json,
        } => {
            let req = RmRequest {
                paths,
                recursive,
                dry_run,
                force_retained,
            };
            let local = req.clone();
            let r: RmReport = b
                .ask(Method::POST, "/v1/rm", Some(&req), move |e| e.rm(&local))
                .await?;
            if json {
                print_json(&r)?;
            } else {
                print!("{}", render_rm(&r));
            }
            if r.remaining > 0 {
                return Err(Failure::new(
                    exit::IOERR,
                    format!(
                        "{} {} {}; each result says why",
                        r.remaining,
                        if r.remaining == 1 { "entry" } else { "entries" },
                        match (r.remaining, r.dry_run) {
                            (1, false) => "remains",
                            (_, false) => "remain",
                            (_, true) => "would remain (dry run)",
                        },
                    ),
                ));
            }
            Ok(())
        }
        Cmd::Scan { json } => {
            let st: Vec<ScanStats> = b
                .ask(Method::POST, "/v1/scan", NONE, |e| e.scan_all())
                .await?;
            if json {
                return print_json(&st);
            }
            for s in &st {
                println!(
                    "{}: {} files ({}) in {} directories, {} forgotten, {} unreadable, {} ms",
                    s.store,
                    s.files,
                    ByteSize(s.bytes),
                    s.dirs,
                    s.forgotten,
                    s.unreadable,
                    s.millis
                );
            }
            Ok(())
        }
        Cmd::Reload => {
            let r: ReloadResponse = b
                .ask(Method::POST, "/v1/reload", NONE, |_| {
                    Err(EngineError::Reload("no daemon runs".into()))
                })
                .await?;
            println!("reloaded; {} entries changed class", r.reclassified);
            Ok(())
        }
    }
}

fn loc(store: &str, path: &Path) -> String {
    format!("{store}:{}", crate::spell::show(path))
}

fn render_plan(p: &Plan) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "plan at {}", fmt_time(p.at));
    for f in &p.offloads {
        let _ = writeln!(
            o,
            "offload {:<48} {:>10}  {:<14} to {}:{}",
            loc(&f.entry.store, &f.entry.path),
            ByteSize(f.entry.size).to_string(),
            f.class_name,
            f.to,
            crate::spell::show(&f.entry.path)
        );
    }
    for a in &p.actions {
        let (word, why) = match &a.would_refuse {
            Some(why) => ("refuse", format!("{}; would refuse now: {why}", a.reason)),
            None => ("delete", a.reason.clone()),
        };
        let _ = writeln!(
            o,
            "{word:<7} {:<48} {:>10}  {:<14} {:<9} {why}",
            loc(&a.entry.store, &a.entry.path),
            ByteSize(a.entry.size).to_string(),
            a.class_name,
            a.rule.to_string(),
        );
    }
    let _ = writeln!(
        o,
        "{:<16} {:<10} {:>8} {:>12} {:>8} {:>12} {:>9}",
        "CLASS", "STORE", "FILES", "BYTES", "DELETE", "FREES", "RETAINED"
    );
    for c in &p.classes {
        let _ = writeln!(
            o,
            "{:<16} {:<10} {:>8} {:>12} {:>8} {:>12} {:>9}",
            c.class,
            c.store,
            c.files,
            ByteSize(c.bytes).to_string(),
            c.delete_files,
            ByteSize(c.delete_bytes).to_string(),
            c.retained
        );
    }
    let refused: Vec<&crate::policy::Action> = p
        .actions
        .iter()
        .filter(|a| a.would_refuse.is_some())
        .collect();
    let _ = writeln!(
        o,
        "total: {} files to delete ({}){}",
        p.actions.len() - refused.len(),
        ByteSize(p.delete_bytes() - refused.iter().map(|a| a.entry.size).sum::<u64>()),
        match refused.len() {
            0 => String::new(),
            n => format!("; {n} more due but refused now (in use, retained, no copy…)"),
        }
    );
    if let Some(t) = p.next_due {
        let _ = writeln!(o, "next file becomes due at {}", fmt_time(t));
    }
    o
}

fn render_gc(r: &GcReport) -> String {
    let mut o = String::new();
    for f in &r.results {
        let word = match (&f.result, r.dry_run) {
            (Outcome::Refused(_), true) => "would refuse",
            (_, true) => "would delete",
            (o, false) => o.word(),
        };
        let detail = match &f.result {
            Outcome::Refused(d) | Outcome::Failed(d) => d.clone(),
            _ => f.reason.clone(),
        };
        let _ = writeln!(
            o,
            "{word:<12} {:<48} {:>10}  {:<14} {}",
            loc(&f.store, &f.path),
            ByteSize(f.bytes).to_string(),
            f.class,
            detail
        );
    }
    if let Some(g) = &r.guard {
        let _ = writeln!(o, "STOPPED: {g}");
    }
    if r.planned_offloads > 0 {
        let _ = writeln!(
            o,
            "offload: {} due, {} copied and verified ({}), {} put off (in use or changed), {} failed, {} backing off after failures",
            r.planned_offloads,
            r.offloaded_files,
            ByteSize(r.offloaded_bytes),
            r.offload_refused,
            r.offload_failed,
            r.offload_backing_off
        );
    }
    if r.dry_run {
        let _ = writeln!(
            o,
            "dry run: {} files ({}) would be deleted; nothing was changed",
            r.results.len(),
            ByteSize(r.results.iter().map(|f| f.bytes).sum())
        );
    } else {
        let _ = writeln!(
            o,
            "{} deleted ({}), {} refused, {} failed, {} already gone; {} empty directories removed; {} ms",
            r.deleted_files,
            ByteSize(r.deleted_bytes),
            r.refused,
            r.failed,
            r.vanished,
            r.pruned_dirs,
            r.millis
        );
    }
    o
}

fn render_rm(r: &RmReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "rm: {} files ({}) named{}",
        r.files,
        ByteSize(r.bytes),
        if r.dry_run {
            "; dry run, nothing is changed"
        } else {
            ""
        }
    );
    for f in &r.results {
        let word = match (&f.result, r.dry_run) {
            (Outcome::Refused(_), true) => "would refuse",
            (Outcome::WouldDelete, _) => "would delete",
            (Outcome::Vanished, _) => "not there",
            (o, _) => o.word(),
        };
        let detail = match &f.result {
            Outcome::Refused(d) | Outcome::Failed(d) => d.clone(),
            _ => f.reason.clone(),
        };
        let class = if f.class.is_empty() { "-" } else { &f.class };
        let _ = writeln!(
            o,
            "{word:<12} {:<48} {:>10}  {class:<14} {detail}",
            loc(&f.store, &f.path),
            ByteSize(f.bytes).to_string(),
        );
    }
    for d in &r.removed_dirs {
        let _ = writeln!(o, "{:<12} {}/", "rmdir", loc(&d.store, &d.path));
    }
    if r.dry_run {
        let _ = writeln!(
            o,
            "dry run: {} would be deleted, {} would remain; nothing was changed",
            r.results
                .iter()
                .filter(|f| f.result == Outcome::WouldDelete)
                .count(),
            r.remaining
        );
    } else {
        let _ = writeln!(
            o,
            "{} deleted ({}), {} refused, {} failed, {} not there; {} directories removed{}; {} remaining; {} ms",
            r.deleted_files,
            ByteSize(r.deleted_bytes),
            r.refused,
            r.failed,
            r.gone,
            r.removed_dirs.len(),
            match r.unpinned {
                0 => String::new(),
                n => format!("; {n} unpinned"),
            },
            r.remaining,
            r.millis
        );
    }
    o
}

fn render_ls(es: &[Entry]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<56} {:>10}  {:<20}  {:<16} {:<8} TAGS",
        "PATH", "SIZE", "MODIFIED", "CLASS", "RETAINED"
    );
    for e in es {
        let _ = writeln!(
            o,
            "{:<56} {:>10}  {:<20}  {:<16} {:<8} {}",
            loc(&e.store, &e.path),
            ByteSize(e.size).to_string(),
            fmt_time(e.mtime),
            e.class.as_deref().unwrap_or("-"),
            if e.retained { "yes" } else { "" },
            e.tags.join(" ")
        );
        if !e.in_use.is_empty() {
            let _ = writeln!(o, "    in use: {}", e.in_use.join("; "));
        }
    }
    o
}

fn render_explain(x: &Explanation, now: Nanos) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", loc(&x.store, &x.path));
    let _ = writeln!(o, "  {}", x.summary);
    if let Some(e) = &x.entry {
        let _ = writeln!(
            o,
            "  size {}, modified {} ({} ago), first seen {}{}",
            ByteSize(e.size),
            fmt_time(e.mtime),
            fmt_span(now - e.mtime),
            fmt_time(e.first_seen),
            if e.retained { ", RETAINED" } else { "" }
        );
        if !e.tags.is_empty() {
            let _ = writeln!(o, "  tags: {}", e.tags.join(" "));
        }
    }
    if let Some(c) = &x.class {
        let mut rules = Vec::new();
        if let Some(t) = c.rules.ttl {
            rules.push(format!("ttl {t}"));
        }
        if let Some(k) = c.rules.keep_for {
            rules.push(format!("keep_for {k}"));
        }
        if let Some(m) = c.rules.max_count {
            rules.push(format!("max_count {m}"));
        }
        if let Some(m) = c.rules.max_total {
            rules.push(format!("max_total {m}"));
        }
        let _ = writeln!(
            o,
            "  class {} ({}; matched by {:?}): {}; age from {}",
            c.rules.name,
            c.rules.lifecycle,
            c.pattern,
            if rules.is_empty() {
                "no rules".into()
            } else {
                rules.join(", ")
            },
            c.rules.age_from
        );
    }
    if let Some(Verdict::Delete { rule, .. }) = &x.verdict {
        match x.in_use.is_empty() {
            true => {
                let _ = writeln!(o, "  verdict: delete by {rule}");
            }
            false => {
                let _ = writeln!(
                    o,
                    "  verdict: due by {rule}, but refused while in use ({})",
                    x.in_use.join(", ")
                );
            }
        }
    }
    if let Some(b) = &x.offload_backoff {
        let _ = writeln!(o, "  offload backing off: {b}");
    }
    if let Some(p) = &x.pressure {
        let _ = writeln!(o, "  under disk pressure: {p}");
    }
    for h in &x.history {
        let _ = writeln!(
            o,
            "  {}  {} {} ({}{}): {}",
            fmt_time(h.at),
            h.action,
            h.outcome,
            h.trigger,
            h.rule
                .as_ref()
                .map(|r| format!(", {r}"))
                .unwrap_or_default(),
            h.reason
        );
    }
    o
}

fn bar(pct: f64, low: f64, high: f64) -> String {
    const W: usize = 40;
    let pos = |p: f64| ((p / 100.0) * W as f64).round().clamp(0.0, W as f64) as usize;
    let (u, l, h) = (pos(pct), pos(low), pos(high));
    (0..W)
        .map(|i| match i {
            _ if i == h => '|',
            _ if i == l => ':',
            _ if i < u => '#',
            _ => '.',
        })
        .collect()
}

/// One volume: usage bar with the low (':') and high ('|') marks, fill rate, time to full,
/// watchdog state and the last pressure pass.
fn render_volume(o: &mut String, v: &crate::engine::Volume, now: Nanos) {
    let l = &v.limits;
    let state = match v.state {
        Some(st) => st.to_string(),
        None => "not watched (no daemon)".into(),
    };
    let state = if l.enabled {
        state
    } else {
        "watchdog off".into()
    };
    let _ = writeln!(
        o,
        "\nvolume {} (stores: {}): {state}",
        crate::spell::show(&v.mount),
        v.stores.join(", ")
    );
    let _ = writeln!(
        o,
        "  [{}] {:.1}% used, {} free of {}  (low {} ':', high {} '|')",
        bar(v.used_pct, l.low.0, l.high.0),
        v.used_pct,
        ByteSize(v.sample.avail),
        ByteSize(v.sample.used + v.sample.avail),
        l.low,
        l.high
    );
    let rate = match (v.rate, v.time_to_full) {
        (Some(r), Some(t)) => format!(
            "filling at {}/s, full in {}",
            ByteSize(r as u64),
            fmt_span((t * 1e9) as Nanos)
        ),
        (Some(r), None) if r < 0.0 => format!("shrinking at {}/s", ByteSize((-r) as u64)),
        (Some(_), None) => "not filling".into(),
        (None, _) => "fill rate not known yet".into(),
    };
    let inodes = v
        .inodes_free_pct
        .map(|p| format!("{p:.1}% inodes free"))
        .unwrap_or_else(|| "no inode limit".into());
    let _ = writeln!(o, "  {rate}; {inodes}");
    if !v.triggers.is_empty() {
        let _ = writeln!(o, "  PRESSURE: {}", v.triggers.join(", "));
    }
    if let Some(p) = &v.last_pass {
        let _ = writeln!(
            o,
            "  last pressure pass {} ago: {:.1}% → {:.1}% used, {} files deleted ({}), {} freed, {} refused",
            fmt_span(now.saturating_sub(p.at)),
            p.before_pct,
            p.after_pct,
            p.deleted_files,
            ByteSize(p.deleted_bytes),
            ByteSize(p.freed_bytes),
            p.refused
        );
        if let (Some(since), Some(k)) = (v.stuck_since, &p.kept) {
            let _ = writeln!(
                o,
                "  STUCK since {}: nothing more may be deleted: {k}",
                fmt_time(since)
            );
        }
    }
}

fn render_status(s: &Status, now: Nanos) -> String {
    let mut o = String::new();
    let a = &s.activity;
    let who = if a.daemon {
        format!("daemon pid {}, up {}", a.pid, fmt_span(now - a.started_at))
    } else {
        "no daemon running (one-shot)".into()
    };
    let _ = writeln!(
        o,
        "mediaretain: {who}; config {}; state {}",
        crate::spell::show(&s.config),
        crate::spell::show(&s.state_dir)
    );
    if let Some(t) = a.last_scan_at {
        let files: u64 = a.last_scan.iter().map(|x| x.files).sum();
        let _ = writeln!(o, "last scan:  {} ({files} files)", fmt_time(t));
    }
    if a.daemon {
        let _ = writeln!(
            o,
            "deleted:    {} files ({}) since start",
            a.deleted_files,
            ByteSize(a.deleted_bytes)
        );
    }
    if let Some(p) = &a.last_pass {
        let _ = writeln!(
            o,
            "last pass:  {} ({}): {} deleted ({}), {} refused, {} failed",
            fmt_time(p.at),
            p.trigger,
            p.deleted_files,
            ByteSize(p.deleted_bytes),
            p.refused,
            p.failed
        );
        if let Some(g) = &p.guard {
            let _ = writeln!(o, "GUARD:      {g}");
        }
    }
    if let Some(t) = a.next_pass_at {
        let _ = writeln!(o, "next pass:  {}", fmt_time(t));
    }
    let b = &s.offload_backing_off;
    if let (1.., Some(next)) = (b.files, b.next) {
        let _ = writeln!(
            o,
            "offload:    {} file{} backing off after failures (next try {}; `explain` says why)",
            b.files,
            if b.files == 1 { "" } else { "s" },
            fmt_time(next)
        );
    }
    if let Some((t, err)) = &a.last_reload {
        match err {
            None => {
                let _ = writeln!(o, "reload:     {} ok", fmt_time(*t));
            }
            Some(e) => {
                let _ = writeln!(
                    o,
                    "reload:     {} REFUSED, running config kept: {e}",
                    fmt_time(*t)
                );
            }
        }
    }
    for v in &s.volumes {
        render_volume(&mut o, v, now);
    }
    let _ = writeln!(
        o,
        "\n{:<12} {:<16} {:>9} {:>12} {:>9}",
        "STORE", "CLASS", "FILES", "BYTES", "RETAINED"
    );
    for c in &s.classes {
        let _ = writeln!(
            o,
            "{:<12} {:<16} {:>9} {:>12} {:>9}",
            c.store,
            c.class.as_deref().unwrap_or("(no class)"),
            c.files,
            ByteSize(c.bytes).to_string(),
            c.retained
        );
    }
    o
}
