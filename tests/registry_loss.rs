//! Issue 23 item 4: a lost or damaged registry never starts over silently. A state
//! directory that had a registry refuses a missing/empty or damaged one (exit 65, which the
//! unit does not restart, an err line saying what to run); `registry reset` starts over
//! keeping the pins (from the pins file), `registry recover` rebuilds from what can be read
//! and the daemon's backup, keeping the damaged file aside.
//!
//! Run against another build (e.g. main before the fix) with MEDIARETAIN_TEST_BIN=PATH.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const DAY: Duration = Duration::from_secs(86_400);

const CLASSES: &str = r#"
[[class]]
name = "rec"
store = "media"
match = ["rec/**/*.mp4"]
lifecycle = "recording"
keep_for = "1d"
"#;

/// Starts `run` without waiting for it to answer (it may refuse to start); stderr is
/// collected as it comes.
fn start(b: &Box_) -> Daemon {
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(&b.config).arg("run");
    cmd.env("RUST_LOG", "info").env_remove("NOTIFY_SOCKET");
    cmd.stdout(Stdio::null());
    Daemon::spawn(cmd)
}

/// Waits (up to 20 s) until the daemon exits or `gone` disappears; returns its exit code
/// (None: still running) and its log.
fn outcome(d: &mut Daemon, gone: &Path) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let child = d.child.as_mut().unwrap();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if !gone.exists() || Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The drain thread reads the last lines after the exit (bounded).
    let until = Instant::now() + Duration::from_secs(2);
    while code.is_some() && !d.log.lock().unwrap().contains("registry") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    (code, d.log.lock().unwrap().clone())
}

/// After a clean stop: everything the WAL still holds is written into registry.db (as a
/// close of the last connection does), so that a page of registry.db can be damaged.
fn checkpoint(state: &Path) {
    let c = rusqlite::Connection::open(state.join("registry.db")).unwrap();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

/// Whether `p` exists within 10 s (the daemon's first backup takes milliseconds here).
fn appears(p: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn aside(state: &Path, why: &str) -> Vec<PathBuf> {
    let prefix = format!("registry.db.{why}-");
    let mut v: Vec<PathBuf> = fs::read_dir(state)
        .unwrap()
        .filter_map(|d| d.ok())
        .map(|d| d.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&prefix) && !n.ends_with("-wal") && !n.ends_with("-shm")
        })
        .collect();
    v.sort();
    v
}

/// The registry truncated to 0 bytes (a full disk at the wrong moment, a bad restore),
/// with a pinned recording older than its class keeps files: the daemon refuses to start
/// (exit 65, an ERROR line naming `registry reset`), and so does a one-shot `gc`; `registry
/// reset` starts over with the pin (from the pins file), and the file survives a gc.
/// On main before the fix the daemon started as if new and deleted the pinned file in its
/// first pass.
#[test]
fn an_emptied_registry_is_refused_and_reset_keeps_the_pins() {
    let b = Box_::new("", "", CLASSES);
    let old = b.file("rec/old.mp4", 1000, 3 * DAY);
    b.file("rec/new.mp4", 1000, Duration::from_secs(60));
    b.cli(&["retain", "media:rec/old.mp4"]).ok();
    b.daemon(None).stop();
    assert!(old.exists());

    // The loss.
    let state = b.state();
    fs::write(state.join("registry.db"), b"").unwrap();
    for f in ["registry.db-wal", "registry.db-shm"] {
        let _ = fs::remove_file(state.join(f));
    }

    let mut d = start(&b);
    let (code, log) = outcome(&mut d, &old);
    assert!(
        old.exists(),
        "the pinned file was deleted after the registry was lost; the daemon's log:\n{log}"
    );
    assert_eq!(
        code,
        Some(65),
        "the daemon must refuse an emptied registry with exit 65 (the unit does not restart it); its log:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("registry reset")),
        "an err line says what to run:\n{log}"
    );
    drop(d);
    // The one-shot commands that would write refuse too.
    let gc = b.cli(&["gc"]);
    assert_eq!(gc.code, 65, "{gc:?}");
    assert!(gc.stderr.contains("registry recover"), "{gc:?}");
    assert!(old.exists());

    // The operator starts over on purpose; the pin comes back from the pins file.
    let r = b.cli(&["registry", "reset"]).ok();
    assert!(r.stdout.contains("1 pin"), "{r:?}");
    assert_eq!(aside(&state, "lost").len(), 1, "the old file is kept aside");
    b.cli(&["gc"]).ok();
    assert!(old.exists(), "a pinned file survives a gc after a reset");
    let ls = b.cli(&["ls", "--retained", "--json"]).ok().json();
    assert_eq!(ls.as_array().map(Vec::len), Some(1), "{ls}");
    // And the daemon starts normally on the new registry.
    let d = b.daemon(None);
    assert!(old.exists());
    let (code, _) = d.stop();
    assert_eq!(code, 0);
}

/// One damaged page of registry.db ("database disk image is malformed"): the daemon
/// refuses with exit 65 (not 74, which the unit restarts in a loop) and an ERROR line
/// naming `registry recover`; `registry recover` rebuilds the registry from the readable
/// pages and the daemon's backup — the audit of an earlier deletion and the pin survive —
/// and keeps the damaged file aside, byte for byte. On main before the fix: exit 74, no
/// advice, and no `registry` command.
#[test]
fn a_damaged_page_is_refused_with_advice_and_recover_restores_it() {
    let b = Box_::new("", "", CLASSES);
    let old = b.file("rec/old.mp4", 1000, 3 * DAY);
    b.file("rec/gone.mp4", 1000, 3 * DAY);
    for i in 0..600 {
        b.file(
            &format!("rec/cam/new-{i:04}.mp4"),
            10,
            Duration::from_secs(60),
        );
    }
    b.cli(&["retain", "media:rec/old.mp4"]).ok();
    b.cli(&["gc"]).ok();
    assert!(!b.path("rec/gone.mp4").exists() && old.exists());
    let state = b.state();
    let backup = state.join("registry.backup.db");
    let d = b.daemon(None);
    // The daemon backs the registry up when it starts (it changed since any backup);
    // asserted after the refusal, so that an old build shows that failure first.
    let backed_up = appears(&backup);
    d.stop();
    checkpoint(&state);

    // One page of the entries (the first holding this path) is overwritten.
    let db = state.join("registry.db");
    let mut bytes = fs::read(&db).unwrap();
    let needle = b"rec/cam/new-0300.mp4";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the entry is in registry.db");
    let page = 16384;
    let start_at = at / page * page;
    bytes[start_at..start_at + page].fill(0xA5);
    fs::write(&db, &bytes).unwrap();
    let damaged_len = bytes.len() as u64;

    let mut d = start(&b);
    let (code, log) = outcome(&mut d, &old);
    assert_eq!(
        code,
        Some(65),
        "a damaged registry must stop the daemon with exit 65 (the unit does not restart it); its log:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("registry recover")),
        "an err line says what to run:\n{log}"
    );
    drop(d);
    assert!(backed_up, "the daemon made no registry backup");

    let r = b.cli(&["registry", "recover"]).ok();
    assert!(
        r.stdout.contains("kept aside") && r.stdout.contains("backup used"),
        "{r:?}"
    );
    let kept = aside(&state, "damaged");
    assert_eq!(kept.len(), 1, "{r:?}");
    assert_eq!(
        fs::metadata(&kept[0]).unwrap().len(),
        damaged_len,
        "the damaged file is kept aside as it was"
    );
    let d = b.daemon(None);
    // The audit of the deletion before the damage is there (from the readable pages or the
    // backup), and so is the pin.
    let x = b
        .cli(&["explain", "media:rec/gone.mp4", "--json"])
        .ok()
        .json();
    assert_eq!(x["history"][0]["outcome"], "deleted", "{x}");
    let ls = b.cli(&["ls", "--retained", "--json"]).ok().json();
    assert_eq!(ls.as_array().map(Vec::len), Some(1), "{ls}");
    let all = b.cli(&["ls", "--json"]).ok().json();
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(601),
        "the scan finds every file"
    );
    assert!(old.exists());
    // A backup on demand, beside the running daemon.
    let r = b.cli(&["registry", "backup"]).ok();
    assert!(r.stdout.contains("registry.backup.db"), "{r:?}");
    let (code, _) = d.stop();
    assert_eq!(code, 0);
}

/// Half of registry.db cut off: refused the same way (exit 65, `registry recover`), and
/// recover goes back to the backup.
#[test]
fn a_half_truncated_registry_is_refused_and_recovered_from_the_backup() {
    let b = Box_::new("", "", CLASSES);
    let old = b.file("rec/old.mp4", 1000, 3 * DAY);
    for i in 0..600 {
        b.file(
            &format!("rec/cam/new-{i:04}.mp4"),
            10,
            Duration::from_secs(60),
        );
    }
    b.cli(&["retain", "media:rec/old.mp4"]).ok();
    let state = b.state();
    let d = b.daemon(None);
    let backed_up = appears(&state.join("registry.backup.db"));
    d.stop();
    checkpoint(&state);
    let db = state.join("registry.db");
    let len = fs::metadata(&db).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let mut d = start(&b);
    let (code, log) = outcome(&mut d, &old);
    assert_eq!(code, Some(65), "{log}");
    assert!(log.contains("registry recover"), "{log}");
    drop(d);
    assert!(backed_up, "the daemon made no registry backup");
    let r = b.cli(&["registry", "recover"]).ok();
    assert!(r.stdout.contains("backup used"), "{r:?}");
    let d = b.daemon(None);
    let ls = b.cli(&["ls", "--retained", "--json"]).ok().json();
    assert_eq!(ls.as_array().map(Vec::len), Some(1), "{ls}");
    assert!(old.exists());
    d.stop();
}
