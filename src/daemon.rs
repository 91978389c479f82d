//! `mediaretain run`: the long-running service.
//!
//! One task loop owns the schedule: the initial scan (then READY=1), inotify changes in
//! batches, periodic rescans, lifecycle passes (when files arrive, when the next file
//! becomes due, and at least every `gc_interval`), SIGHUP reloads and SIGTERM shutdown.
//! The control socket is served beside it. Watchers are swapped on reload by dropping the
//! old set before starting the new one, so two sets never run at once.
//!
//! Descriptors: the soft limit is raised to the hard one at start, and the TCP listeners
//! (hooks, metrics) are capped so that together they leave [`crate::listen::FD_RESERVE`] to
//! the core; a scan that failed or could not read part of a store (e.g. out of
//! descriptors) is tried again with backoff, not only after `scan_interval`.
//!
//! One file because it is one task loop: the schedule's branches (scans, passes, reloads,
//! backups, shutdown) share the loop's timers, watchers and the pass in flight; the work
//! itself is the engine's, so what is here is when, not what.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::clock::SystemClock;
use crate::config::Config;
use crate::control::server::{self, Ctl, ReloadReply};
use crate::engine::{Engine, EngineError, Scope};
use crate::exit;
use crate::failure::Failure;
use crate::listen::{self, Limits};
use crate::scan::ScanStats;
use crate::statedir::StateLock;
use crate::units::{ByteSize, Nanos};
use crate::watch::{self, Change, Signals, Watch};

/// How long start-up waits for a one-shot command holding the state lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How often the store roots are looked at again (missing, unmounted, back).
const ROOT_CHECK: Duration = Duration::from_secs(2);

/// A single scan, pass or reload keeps the watchdog fed for at most this long.
const JOB_PING_LIMIT: Duration = Duration::from_secs(15 * 60);
/// How long SIGTERM waits for in-flight requests (the process must be gone within 10 s;
/// network work is abandoned, not waited for).
const DRAIN: Duration = Duration::from_secs(5);
/// Changes are collected this long before a pass runs, so a burst costs one pass.
const SETTLE: Duration = Duration::from_secs(1);
/// At most this many changes are applied in one registry transaction.
const BATCH: usize = 4096;
/// Watchdog samples are at least this far apart, however fast files arrive.
const WATCH_MIN_GAP: Duration = Duration::from_millis(20);
/// A failed or partial scan is tried again after this, doubling each time up to
/// `scan_interval`: files made meanwhile (say, while descriptors ran out) are registered
/// within seconds, and a directory that stays unreadable costs a few scans, not a loop.
const RESCAN_FIRST: Duration = Duration::from_secs(2);

/// Raises the soft descriptor limit to the hard one (a soft 1024 is a legacy of
/// `select(2)`, which nothing here uses); returns the soft limit now in force.
fn raise_nofile() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let soft = lim.current.unwrap_or(u64::MAX);
    match lim.maximum {
        Some(hard) if hard > soft => {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    info!(
                        from = soft,
                        to = hard,
                        "descriptor limit raised from {soft} to {hard}"
                    );
                    hard
                }
                Err(e) => {
                    warn!(soft, hard, error = %e, "cannot raise the descriptor limit from {soft} to {hard}: {e}");
                    soft
                }
            }
        }
        _ => soft,
    }
}

/// Why a TCP listener could not be made; under the packaged unit, which gives the daemon
/// no network (no AF_INET: EAFNOSUPPORT), with the drop-in that does.
fn listen_failure(key: &str, addr: std::net::SocketAddr, e: &std::io::Error) -> Failure {
    let hint = if e.raw_os_error() == Some(libc::EAFNOSUPPORT) {
        "; the systemd unit gives the daemon no network: install the drop-in \
         /usr/share/doc/mediaretain/examples/network.conf as \
         /etc/systemd/system/mediaretain.service.d/network.conf (docs/hardening.md)"
    } else {
        ""
    };
    Failure::new(exit::CANTCREAT, format!("{key} {addr}: {e}{hint}"))
}

/// The limits of a TCP listener wanting `wanted` connections, one of `listeners` sharing
/// descriptor limit `nofile`; says so when the limit makes its cap smaller.
fn listener_limits(name: &str, wanted: usize, nofile: u64, listeners: usize) -> Limits {
    let cap = listen::cap(wanted, nofile, listeners);
    if cap < wanted {
        warn!(
            listener = name,
            cap,
            nofile,
            reserve = listen::FD_RESERVE,
            "{name}: at most {cap} connections (not {wanted}): the descriptor limit {nofile} keeps {} for the core; raise LimitNOFILE=",
            listen::FD_RESERVE
        );
    }
    Limits::with_cap(cap)
}

/// How long until the next scan after one that ended with `outcome`. A failed scan, or
/// one that could not read part of a store, is tried again after `backoff`, which then
/// doubles (up to `interval`); a whole scan waits `interval` and resets the backoff.
fn rescan_after(
    outcome: &Result<Vec<ScanStats>, EngineError>,
    backoff: &mut Duration,
    interval: Duration,
) -> Duration {
    let wait = (*backoff).min(interval);
    match outcome {
        Err(e) => {
            error!(error = %e, "scan failed; trying again in {wait:?}");
        }
        Ok(stats) if stats.iter().any(|s| s.unreadable > 0) => {
            let unreadable: u64 = stats.iter().map(|s| s.unreadable).sum();
            warn!(
                unreadable,
                "the scan could not read {unreadable} of the stores' directories or entries; trying again in {wait:?}"
            );
        }
        Ok(_) => {
            *backoff = RESCAN_FIRST;
            return interval;
        }
    }
    *backoff = (*backoff * 2).min(interval.max(RESCAN_FIRST));
    wait
}

fn notify(states: &[NotifyState]) {
    // Outside systemd NOTIFY_SOCKET is unset and this is a no-op.
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "sd_notify failed");
    }
}

fn start_watch(
    engine: &Engine,
    tx: &mpsc::Sender<Change>,
    signals: &Arc<Signals>,
) -> Option<Watch> {
    let rt = engine.runtime();
    let roots: Vec<(String, PathBuf)> = rt
        .config
        .stores
        .iter()
        // Not a missing root's: the bare directory under an unmounted disk is not the store.
        .filter(|s| s.watch && s.is_local() && rt.missing(&s.name).is_none())
        .map(|s| (s.name.clone(), s.root.clone()))
        .collect();
    if roots.is_empty() {
        return None;
    }
    match Watch::start(&roots, tx.clone(), signals.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            // E.g. the inotify watch limit: fall back to periodic scans, loudly.
            warn!(error = %e, "cannot watch the stores; relying on scan_interval (raise fs.inotify.max_user_watches?)");
            None
        }
    }
}

async fn blocking<T: Send + 'static>(
    engine: &Arc<Engine>,
    f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    let e = engine.clone();
    let mut job = tokio::task::spawn_blocking(move || f(&e));
    // A long scan or pass keeps systemd's watchdog fed, but only for so long: a job stuck
    // beyond JOB_PING_LIMIT stops the pings and lets systemd restart us.
    let Some(every) = sd_notify::watchdog_enabled().map(|d| d / 2) else {
        return job.await.expect("engine task panicked");
    };
    let limit = Instant::now() + JOB_PING_LIMIT;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            r = &mut job => return r.expect("engine task panicked"),
            _ = tick.tick(), if Instant::now() < limit => notify(&[NotifyState::Watchdog]),
        }
    }
}

/// systemd gives a `RuntimeDirectory=` (and everything in it) back to the unit's User: and
/// Group= before every Exec* command, `ExecReload=` included: a socket there whose
/// `socket_group` is not our group would lock the group out at the first `systemctl
/// reload`. Say so at start, with the fix.
fn warn_socket_group_not_unit_group(socket: &Path, group: Option<u32>) {
    let Some(gid) = group else { return };
    let own = rustix::process::getegid().as_raw();
    let runtime = std::env::var_os("RUNTIME_DIRECTORY").unwrap_or_default();
    let inside = std::env::split_paths(&runtime)
        .any(|d| !d.as_os_str().is_empty() && socket.starts_with(&d));
    if inside && gid != own {
        warn!(
            socket = %socket.display(),
            socket_gid = gid,
            gid = own,
            "the socket is in the unit's RuntimeDirectory= but socket_group (gid {gid}) is not the unit's Group= (gid {own}): a `systemctl reload` would lock its members out; set Group= to the socket_group in a drop-in (`systemctl edit mediaretain`)"
        );
    }
}

/// A root the daemon cannot write (left out of the unit's ReadWritePaths=) would fail
/// every deletion: say so once per store, at start-up (and after a reload), not at the
/// first pass.
fn warn_unwritable(engine: &Engine) {
    for u in crate::engine::unwritable_stores(&engine.runtime().config) {
        warn!(store = %u.store, root = %crate::spell::show(&u.root), error = %u.error,
            "store {:?}: cannot write its root: {}; {}", u.store, u.error, u.hint);
    }
}

/// The one-line STATUS for systemd, from what the daemon already knows (no registry query:
/// it is sent after every pass).
fn summary_line(engine: &Engine) -> String {
    let a = engine.activity();
    let files: u64 = a.last_scan.iter().map(|s| s.files).sum();
    let bytes: u64 = a.last_scan.iter().map(|s| s.bytes).sum();
    let line = format!(
        "{} ({}) at the last scan; {} deleted ({}) since start",
        crate::units::plural(files, "file"),
        ByteSize(bytes),
        a.deleted_files,
        ByteSize(a.deleted_bytes)
    );
    let line = match engine.watch_summary() {
        Some(w) => format!("{w}; {line}"),
        None => line,
    };
    // A refused reload stays in `systemctl status` until a good one: the next pass must
    // not paint it over with a summary that looks like all is well.
    match a.last_reload.and_then(|r| r.error) {
        Some(e) => format!(
            "reload refused, running config kept: {}; {line}",
            e.lines().next().unwrap_or("")
        ),
        None => line,
    }
}

/// The disk-pressure watchdog: samples every volume each `interval` and right after bursts
/// of write events (`nudge`), and frees space when one is under pressure. Its passes run
/// beside the main loop, which keeps serving events, the socket and systemd's watchdog.
async fn watchdog(engine: Arc<Engine>, nudge: Arc<tokio::sync::Notify>, cancel: CancellationToken) {
    let mut last = Instant::now();
    loop {
        // A fixed rate from tick to tick; faster while a volume is near a trigger.
        let mut period = engine.runtime().config.watchdog.interval.0;
        if engine.watch_near() {
            period = (period / crate::watchdog::NEAR_SPEEDUP).max(WATCH_MIN_GAP);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = sleep_until(last + period) => {}
            _ = nudge.notified() => sleep_until(last + WATCH_MIN_GAP).await,
        }
        last = Instant::now();
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || e.watchdog_tick()).await {
            Ok(true) => notify(&[NotifyState::Status(&summary_line(&engine))]),
            Ok(false) => {}
            Err(e) => error!(error = %e, "watchdog tick panicked"),
        }
    }
}

/// Network work — S3 listings, offloads, S3 deletions — beside the main loop, one job at a
/// time, whenever `kick` is notified (after each local pass and scan): a hung server
/// delays only this, never a local or pressure pass. On shutdown a job in flight is
/// abandoned (the process exits without waiting; every step of it is crash-safe).
async fn remote_worker(
    engine: Arc<Engine>,
    kick: Arc<tokio::sync::Notify>,
    scan_due: Arc<std::sync::atomic::AtomicBool>,
    pass_soon: Arc<tokio::sync::Notify>,
    cancel: CancellationToken,
) {
    let mut probed = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = kick.notified() => {}
        }
        if engine.runtime().remotes.is_empty() {
            continue;
        }
        let probe = !std::mem::replace(&mut probed, true);
        // A shared store's rules lease just taken: listed before anything is deleted there.
        let scan = scan_due.swap(false, Ordering::SeqCst) | engine.fleet().needs_listing();
        let e = engine.clone();
        let job = tokio::task::spawn_blocking(move || {
            if probe {
                e.probe_remotes();
            }
            if scan {
                for s in e.scan_remotes() {
                    info!(store = %s.store, files = s.files, bytes = s.bytes, millis = s.millis, "listed S3 store");
                }
            }
            e.gc_scoped(false, "schedule", false, Scope::Remote)
        });
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = job => match r {
                // Files copied just now may go (delete_local): a local pass soon.
                Ok(Ok(r)) if r.offloaded_files > 0 => pass_soon.notify_one(),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => error!(error = %e, "offload or S3 pass failed; retrying after the next pass"),
                Err(e) => error!(error = %e, "offload or S3 pass panicked"),
            },
        }
    }
}

/// The fleet's heartbeats and rules leases ([`crate::fleet`]), a quarter second apart on a
/// blocking thread of their own: never behind a pass, a listing or an offload.
async fn fleet_loop(engine: Arc<Engine>, cancel: CancellationToken) {
    if engine.runtime().remotes.is_empty() {
        return;
    }
    loop {
        let e = engine.clone();
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::task::spawn_blocking(move || e.fleet_tick()) => {
                if let Err(e) = r {
                    error!(error = %e, "fleet tick panicked");
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Keeps the state lock until the process exits — the kernel releases it then — and not a
/// moment earlier: an abandoned network job may still have the registry open.
fn hold_until_exit(lock: StateLock) {
    std::mem::forget(lock);
}

/// Takes the state lock. Held by another daemon (its socket answers): refused at once.
/// Held by a one-shot command (they take seconds): waits for it, up to `LOCK_WAIT`.
async fn acquire_lock(config: &Config) -> Result<StateLock, Failure> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match StateLock::acquire(&config.daemon.state_dir) {
            Ok(lock) => return Ok(lock),
            Err(e @ crate::statedir::StateError::Busy { .. }) => {
                let daemon = tokio::net::UnixStream::connect(&config.daemon.socket)
                    .await
                    .is_ok();
                if daemon || Instant::now() >= deadline {
                    return Err(Failure::new(exit::UNAVAILABLE, e.to_string()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(Failure::new(exit::CANTCREAT, e.to_string())),
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(config_path: &Path) -> Result<(), Failure> {
    let config =
        Config::load(config_path).map_err(|e| Failure::new(exit::CONFIG, e.to_string()))?;
    let nofile = raise_nofile();
    let policy = crate::access::Policy::new(config.daemon.socket_group.as_deref())
        .map_err(|e| Failure::new(exit::CONFIG, e.to_string()))?;
    let lock = acquire_lock(&config).await?;
    let socket = config.daemon.socket.clone();
    let state_dir = config.daemon.state_dir.clone();
    let engine = Arc::new(
        Engine::open(config, Arc::new(SystemClock), true).map_err(|e| {
            // At err, not only as stderr's last words: a lost or damaged registry stops the
            // daemon until an operator runs `registry recover` or `reset`. (On the journal,
            // main logs every fatal error at err: once is enough.)
            if !crate::logging::stderr_is_journal() {
                error!(error = %e, exit = e.exit_code(), "cannot open the registry; not starting");
            }
            Failure::from(e)
        })?,
    );
    warn_unwritable(&engine);
    warn_socket_group_not_unit_group(&socket, policy.group);
    // Each S3 root claimed, each shared store's rules lease set up — before anything is
    // served or offloaded: a box whose root another live box has does not start.
    {
        // A foreign claim marker is watched for 2.5 heartbeats: systemd's start timeout is
        // extended by the longest this may take (per S3 store).
        let rt = engine.runtime();
        let per_store = Duration::from_secs(15) + rt.config.daemon.fleet_heartbeat.0 * 5 / 2;
        let longest = per_store * u32::try_from(rt.remotes.len()).unwrap_or(u32::MAX);
        if !rt.remotes.is_empty() {
            notify(&[
                NotifyState::Status("claiming the S3 stores' roots"),
                NotifyState::ExtendTimeoutUsec(
                    u32::try_from(longest.as_micros()).unwrap_or(u32::MAX),
                ),
            ]);
        }
        drop(rt);
        let e = engine.clone();
        tokio::task::spawn_blocking(move || e.fleet_start())
            .await
            .map_err(|e| Failure::new(exit::SOFTWARE, format!("fleet start-up: {e}")))?
            .map_err(|why| {
                if !crate::logging::stderr_is_journal() {
                    error!(error = %why, "not starting");
                }
                Failure::new(exit::CONFIG, why)
            })?;
    }
    let listener = server::bind(&socket, policy.group).map_err(|e| {
        Failure::new(
            exit::CANTCREAT,
            format!("control socket {}: {e}", socket.display()),
        )
    })?;

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadReply>(4);
    let pass_soon = engine.pass_soon();
    let ctl = Ctl {
        engine: engine.clone(),
        reload: reload_tx,
        pass_soon: pass_soon.clone(),
        policy: Arc::new(policy),
    };
    tracker.spawn(server::serve(listener, ctl, cancel.clone()));
    // Wakes the offload worker: after passes and scans, and when a hook announces a
    // finished recording of an offload class.
    let remote_kick = Arc::new(tokio::sync::Notify::new());
    let hooks = engine.runtime().config.hooks.clone();
    let metrics = engine.runtime().config.metrics.clone();
    let tcp_listeners = usize::from(hooks.is_some()) + usize::from(metrics.is_some());
    if let Some(h) = hooks {
        let listener = crate::hooks::bind(&h)
            .await
            .map_err(|e| listen_failure("hooks.listen", h.listen, &e))?;
        info!(listen = %h.listen, "hook receiver listening on http://{}/hooks/", h.listen);
        tracker.spawn(crate::hooks::serve(
            listener,
            engine.clone(),
            remote_kick.clone(),
            listener_limits("hooks", listen::HOOKS_CONNECTIONS, nofile, tcp_listeners),
            cancel.clone(),
        ));
    }
    // Prometheus over TCP ([metrics] listen; the control socket serves /metrics anyway).
    if let Some(m) = metrics {
        let listener = tokio::net::TcpListener::bind(m.listen)
            .await
            .map_err(|e| listen_failure("metrics.listen", m.listen, &e))?;
        info!(listen = %m.listen, "metrics on http://{}/metrics", m.listen);
        tracker.spawn(crate::control::metrics::serve(
            listener,
            engine.clone(),
            listener_limits(
                "metrics",
                listen::METRICS_CONNECTIONS,
                nofile,
                tcp_listeners,
            ),
            cancel.clone(),
        ));
    }

    let io = |e: std::io::Error| Failure::new(exit::SOFTWARE, format!("signal handler: {e}"));
    let mut hup = signal(SignalKind::hangup()).map_err(io)?;
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;

    // Watch first, then scan: nothing created during the scan is missed.
    let signals = Arc::new(Signals::default());
    let (ev_tx, mut ev_rx) = mpsc::channel::<Change>(watch::CHANNEL);
    let mut watcher = start_watch(&engine, &ev_tx, &signals);
    notify(&[NotifyState::Status("initial scan")]);
    info!(config = %config_path.display(), lock = %lock.path().display(), socket = %socket.display(), "starting");
    // Local stores only: S3 listings run beside the loop (remote_worker).
    let scanned = tokio::select! {
        r = blocking(&engine, |e| e.scan_local()) => r,
        _ = term.recv() => {
            hold_until_exit(lock);
            return shutdown(cancel, tracker, &socket).await;
        }
        _ = int.recv() => {
            hold_until_exit(lock);
            return shutdown(cancel, tracker, &socket).await;
        }
    };
    if let Ok(stats) = &scanned {
        for s in stats {
            info!(store = %s.store, files = s.files, bytes = s.bytes, millis = s.millis, "indexed {} ({})", crate::units::plural(s.files, "file"), ByteSize(s.bytes));
        }
    }
    let mut scan_backoff = RESCAN_FIRST;
    let scan_interval = engine.runtime().config.daemon.scan_interval.0;
    let mut next_scan = Instant::now() + rescan_after(&scanned, &mut scan_backoff, scan_interval);
    let remote_scan_due = Arc::new(std::sync::atomic::AtomicBool::new(true));
    tracker.spawn(remote_worker(
        engine.clone(),
        remote_kick.clone(),
        remote_scan_due.clone(),
        pass_soon.clone(),
        cancel.clone(),
    ));
    remote_kick.notify_one();
    // The fleet's status object: a task of its own, so a dead endpoint delays only it.
    tracker.spawn(crate::fleet::status::heartbeat(
        engine.clone(),
        cancel.clone(),
    ));
    let status = summary_line(&engine);
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    info!("ready: {status}");
    tracker.spawn(registry_backups(state_dir, cancel.clone()));
    tracker.spawn(fleet_loop(engine.clone(), cancel.clone()));
    // Identical copies are looked for on a thread of its own, at low priority.
    let hasher = crate::engine::Hasher::spawn(engine.clone());
    let nudge = Arc::new(tokio::sync::Notify::new());
    tracker.spawn(watchdog(engine.clone(), nudge.clone(), cancel.clone()));

    // Store roots looked at again: a missing one is picked up when it appears, one that
    // was unmounted is left alone (engine/roots.rs). A few stats per store.
    let mut roots_tick = tokio::time::interval(ROOT_CHECK);
    roots_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let wd = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut wd_tick = tokio::time::interval(wd.unwrap_or(Duration::from_secs(3600)));
    let mut next_pass = Instant::now();
    let mut batch: Vec<Change> = Vec::with_capacity(BATCH);

    loop {
        engine.set_next_pass(Some(
            engine.now() + (next_pass - Instant::now()).as_nanos() as Nanos,
        ));
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                reload(&engine, config_path, &mut watcher, &ev_tx, &signals, None).await;
                next_pass = Instant::now();
            }
            Some(reply) = reload_rx.recv() => {
                reload(&engine, config_path, &mut watcher, &ev_tx, &signals, Some(reply)).await;
                next_pass = Instant::now();
            }
            n = ev_rx.recv_many(&mut batch, BATCH) => {
                if n == 0 { continue; }
                let changes = std::mem::take(&mut batch);
                nudge.notify_one();
                match blocking(&engine, move |e| e.apply_changes(&changes)).await {
                    Ok(effect) => {
                        // Plan again only when an arrival can change the plan: it pushes a
                        // class past a budget, or it falls due sooner than the next pass.
                        let settle = Instant::now() + SETTLE;
                        if effect.budget {
                            next_pass = next_pass.min(settle);
                        }
                        if let Some(due) = effect.due {
                            let wait = Duration::from_nanos(due.saturating_sub(engine.now()).max(0) as u64);
                            next_pass = next_pass.min((Instant::now() + wait).max(settle));
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "recording changes failed; rescanning");
                        next_scan = Instant::now();
                    }
                }
            }
            _ = pass_soon.notified() => {
                next_pass = next_pass.min(Instant::now() + SETTLE);
            }
            _ = signals.wake.notified() => {
                if signals.overflow.swap(false, Ordering::SeqCst) {
                    signals.rescan.store(false, Ordering::SeqCst);
                    warn!("change events were lost (queue overflow); rescanning");
                    next_scan = Instant::now();
                } else if signals.rescan.swap(false, Ordering::SeqCst) {
                    info!("rescanning after a reload (the watches were restarted)");
                    next_scan = Instant::now();
                }
            }
            _ = sleep_until(next_scan) => {
                let scanned = blocking(&engine, |e| e.scan_local()).await;
                remote_scan_due.store(true, Ordering::SeqCst);
                remote_kick.notify_one();
                let interval = engine.runtime().config.daemon.scan_interval.0;
                next_scan = Instant::now() + rescan_after(&scanned, &mut scan_backoff, interval);
                next_pass = Instant::now();
                hasher.wake();
            }
            _ = sleep_until(next_pass) => {
                next_pass = run_pass(&engine).await;
                remote_kick.notify_one();
                hasher.wake();
            }
            _ = wd_tick.tick(), if wd.is_some() => notify(&[NotifyState::Watchdog]),
            _ = roots_tick.tick() => {
                match blocking(&engine, |e| e.check_roots()).await {
                    Ok(false) => {}
                    Ok(true) => {
                        // As after a reload: old watchers stop, new ones start, a rescan
                        // covers the gap (and indexes a store that is back).
                        drop(watcher.take());
                        watcher = start_watch(&engine, &ev_tx, &signals);
                        next_scan = Instant::now();
                        next_pass = Instant::now();
                    }
                    Err(e) => error!(error = %e, "cannot look at the store roots again"),
                }
            }
        }
    }
    drop(watcher);
    hasher.stop();
    hold_until_exit(lock);
    shutdown(cancel, tracker, &socket).await
}

/// How often the registry is backed up (when it changed since the last backup).
const BACKUP_EVERY: Duration = Duration::from_secs(3600);

/// Keeps `STATE_DIR/registry.backup.db` (docs/registry.md): at start, then every
/// `BACKUP_EVERY`, when the registry changed since the last backup (its files are newer),
/// on a thread of its own at idle I/O priority, so `registry recover` has something to go
/// back to.
async fn registry_backups(dir: PathBuf, cancel: CancellationToken) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = BACKUP_EVERY;
        if !backup_due(&dir) {
            continue;
        }
        let d = dir.clone();
        let job = tokio::task::spawn_blocking(move || {
            std::thread::Builder::new()
                .name("registry-backup".into())
                .spawn(move || {
                    idle_io();
                    crate::registry::recover::backup(&d)
                })
                .map(|t| t.join())
        });
        // Shutdown does not wait for a backup: its temp file is replaced by the next one.
        let done = tokio::select! {
            _ = cancel.cancelled() => return,
            r = job => r,
        };
        match done {
            Ok(Ok(Ok(Ok(r)))) => {
                info!(path = %r.path.display(), bytes = r.bytes, millis = r.millis, "registry backed up")
            }
            Ok(Ok(Ok(Err(e)))) => {
                error!(error = %e, "registry backup failed; the last backup stays")
            }
            Ok(Err(e)) => error!(error = %e, "registry backup: cannot start its thread"),
            _ => error!("registry backup panicked"),
        }
    }
}

/// This thread only: the idle I/O class (as the hasher's thread), so a backup never
/// makes a recorder wait on the disk.
fn idle_io() {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    // SAFETY: a plain syscall on the calling thread's own id.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid);
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            tid,
            IOPRIO_CLASS_IDLE << 13,
        )
    };
    if r != 0 {
        tracing::debug!("registry backup: cannot set the idle I/O class");
    }
}

/// Whether the registry (its file or its WAL) changed after the last backup was made.
/// Only decides whether to copy: nothing is deleted on these times.
fn backup_due(dir: &Path) -> bool {
    let mtime = |name: &str| {
        std::fs::metadata(dir.join(name))
            .and_then(|m| m.modified())
            .ok()
    };
    let Some(made) = mtime(crate::registry::recover::BACKUP_FILE) else {
        return true;
    };
    ["registry.db", "registry.db-wal"]
        .iter()
        .filter_map(|n| mtime(n))
        .any(|t| t > made)
}

/// One scheduled pass; returns when the next one is due.
async fn run_pass(engine: &Arc<Engine>) -> Instant {
    let interval = engine.runtime().config.daemon.gc_interval.0;
    let next = Instant::now() + interval;
    // Local files only; offloads and S3 deletions follow in remote_worker.
    let pass = blocking(engine, |e| {
        e.gc_scoped(false, "schedule", false, Scope::Local)
    })
    .await;
    // Two writers on one stream: looked for at the pace of the passes.
    if let Err(e) = blocking(engine, |e| e.check_stream_writers()).await {
        error!(error = %e, "looking for two writers on one stream failed; trying again at the next pass");
    }
    match pass {
        // The guard stopped the pass: carry on after gc_interval, not in a tight loop.
        Ok(report) if report.guard.is_some() => next,
        Ok(report) => {
            let status = summary_line(engine);
            notify(&[NotifyState::Status(&status)]);
            // Wake exactly when the next kept file becomes due, if that is sooner. Refused
            // and failed files are retried at gc_interval (or when they change).
            match report.next_due {
                Some(due) => {
                    let wait = Duration::from_nanos(due.saturating_sub(engine.now()).max(0) as u64);
                    next.min(Instant::now() + wait.max(SETTLE))
                }
                None => next,
            }
        }
        Err(e) => {
            error!(error = %e, "lifecycle pass failed; retrying at gc_interval");
            next
        }
    }
}

async fn reload(
    engine: &Arc<Engine>,
    path: &Path,
    watcher: &mut Option<Watch>,
    tx: &mpsc::Sender<Change>,
    signals: &Arc<Signals>,
    reply: Option<ReloadReply>,
) {
    notify(&[
        NotifyState::Reloading,
        NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Reloading),
    ]);
    info!(action = "reload", config = %path.display(), "reloading");
    let at = engine.now();
    let result = match Config::load(path) {
        Err(e) => {
            let msg = e.to_string();
            engine.note_reload(at, Some(msg.clone()));
            Err(msg)
        }
        Ok(cfg) => match blocking(engine, move |e| e.reload(cfg)).await {
            Ok(n) => {
                // Old watchers stop before new ones start; the rescan covers the gap.
                *watcher = None;
                *watcher = start_watch(engine, tx, signals);
                signals.rescan.store(true, Ordering::SeqCst);
                signals.wake.notify_one();
                engine.note_reload(at, None);
                warn_unwritable(engine);
                info!(
                    action = "reload",
                    reclassified = n,
                    "reloaded; {} changed class",
                    crate::units::plural(n as u64, "entry")
                );
                Ok(n)
            }
            Err(e) => Err(crate::engine::reload_reason(&e)),
        },
    };
    // The client (`mediaretain reload`, the unit's ExecReload=) prints this and exits 78.
    let result = result.map_err(|e| format!("reload refused, the running config stays: {e}"));
    // Says "reload refused" until a good reload (the outcome is noted above).
    let status = summary_line(engine);
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    if let Some(r) = reply {
        let _ = r.send(result);
    }
}

async fn shutdown(
    cancel: CancellationToken,
    tracker: TaskTracker,
    socket: &Path,
) -> Result<(), Failure> {
    notify(&[NotifyState::Stopping]);
    info!("stopping");
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        warn!("in-flight requests did not finish within {DRAIN:?}; stopping anyway");
    }
    let _ = std::fs::remove_file(socket);
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_scan_is_tried_again_sooner_and_sooner_not() {
        let interval = Duration::from_secs(60);
        let partial = Ok(vec![ScanStats {
            unreadable: 1,
            ..Default::default()
        }]);
        let mut backoff = RESCAN_FIRST;
        let waits: Vec<u64> = (0..7)
            .map(|_| rescan_after(&partial, &mut backoff, interval).as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        // A whole scan: the interval again, and the next failure starts over.
        assert_eq!(rescan_after(&Ok(vec![]), &mut backoff, interval), interval);
        assert_eq!(rescan_after(&partial, &mut backoff, interval), RESCAN_FIRST);
        // Never later than the interval, even a short one.
        let mut backoff = RESCAN_FIRST;
        let short = Duration::from_secs(1);
        assert_eq!(rescan_after(&partial, &mut backoff, short), short);
    }
}
