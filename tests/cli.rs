//! The command line as an operator meets it (issue 15): a store root the daemon cannot
//! write, `status` without a daemon, `-v`/`-q`, progress on a terminal only, plurals.

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

/// A store root on a read-only mount (what systemd's `ProtectSystem=strict` makes of a
/// root left out of `ReadWritePaths=`): the daemon warns once at start-up naming
/// `ReadWritePaths=`, `status` shows it (text and JSON), and each deletion that fails there
/// says why.
#[test]
fn a_read_only_store_root_is_reported_at_start_in_status_and_on_deletion() {
    let b = Box_::new("", "", BASE_CLASSES);
    let _fs = Tmpfs::mount(&b.path(""), "16m");
    b.file("tmp/old.bin", 1000, Duration::from_secs(3600));
    let st = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(b.path(""))
        .status()
        .unwrap();
    assert!(st.success(), "remount read-only");

    let d = b.daemon(None);
    // The first pass tried the expired file and failed: wait for it, not a guess.
    wait_for("the failed deletion", Duration::from_secs(20), || {
        d.log.lock().unwrap().contains("failed to delete")
    });
    let log = d.log.lock().unwrap().clone();
    let warning = "store \"media\": cannot write its root: Read-only file system";
    assert_eq!(
        log.matches(warning).count(),
        1,
        "one start-up warning for the store:\n{log}"
    );
    let line = log.lines().find(|l| l.contains(warning)).unwrap();
    assert!(
        line.contains("WARN") && line.contains("ReadWritePaths="),
        "{line}"
    );
    let failed = log
        .lines()
        .find(|l| l.contains("failed to delete"))
        .unwrap();
    assert!(
        failed.contains("Read-only file system") && failed.contains("ReadWritePaths="),
        "the failure says why: {failed}"
    );

    let r = b.cli(&["status"]).ok();
    assert!(
        r.stdout.contains("NOT WRITABLE: store media (")
            && r.stdout.contains("Read-only file system")
            && r.stdout.contains("ReadWritePaths="),
        "{}",
        r.stdout
    );
    let j = b.cli(&["status", "--json"]).ok().json();
    let u = &j["unwritable_stores"];
    assert_eq!(u.as_array().map(Vec::len), Some(1), "{j}");
    assert_eq!(u[0]["store"], "media");
    assert_eq!(u[0]["error"], "Read-only file system (os error 30)");
    assert!(u[0]["hint"].as_str().unwrap().contains("ReadWritePaths="));

    // A manual deletion there: refused with the reason, exit 74.
    let r = b.cli(&["rm", "media:tmp/old.bin"]);
    assert_eq!(r.code, 74, "{r:?}");
    assert!(
        r.stdout.contains("ReadWritePaths=") || r.stderr.contains("ReadWritePaths="),
        "{r:?}"
    );
    assert!(b.path("tmp/old.bin").exists());

    // A writable store: no warning, an empty list.
    drop(d);
    let st = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(b.path(""))
        .status()
        .unwrap();
    assert!(st.success());
    let d = b.daemon(None);
    let j = b.cli(&["status", "--json"]).ok().json();
    assert_eq!(j["unwritable_stores"], serde_json::json!([]), "{j}");
    let (_, log) = d.stop();
    assert!(!log.contains("cannot write its root"), "{log}");
}

/// Runs the CLI as `nobody` (what an operator without the daemon's rights is).
fn as_nobody(b: &Box_, args: &[&str]) -> Run {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .arg("--config")
        .arg(&b.config)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    Run::from(out)
}

/// With no daemon, `status` says so and still shows the volumes of the configured stores
/// (size, used, free from statvfs) — also for a user who may not open the registry (the
/// state directory is the daemon's) — instead of failing (issue 15).
#[test]
fn status_without_a_daemon_shows_the_volumes() {
    use std::os::unix::fs::PermissionsExt;
    let b = Box_::new("", "", BASE_CLASSES);
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let shows_volume = |out: &str| out.contains("\nvolume ") && out.contains(" free of ");
    std::fs::create_dir_all(b.state()).unwrap();
    mode(b.dir.path(), 0o755);
    mode(&b.config, 0o644);
    // A user who may read the config and the state directory but not write it: no
    // registry for them, the volumes all the same.
    mode(&b.state(), 0o755);
    let r = as_nobody(&b, &["status"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .starts_with("mediaretain: the daemon is not running;")
            && shows_volume(&r.stdout)
            && r.stdout.contains("files and classes are not shown"),
        "{}",
        r.stdout
    );
    let j = as_nobody(&b, &["status", "--json"]).json();
    assert_eq!(j["activity"]["daemon"], false, "{j}");
    let v = &j["volumes"][0];
    assert_eq!(v["stores"], serde_json::json!(["media"]), "{j}");
    let (total, avail) = (
        v["sample"]["total"].as_u64().unwrap(),
        v["sample"]["avail"].as_u64().unwrap(),
    );
    assert!(total > 0 && avail <= total, "{j}");
    // A state directory closed to them (as /var/lib/mediaretain is): whether a daemon
    // runs cannot be known (exit 77), the volumes are shown anyway.
    mode(&b.state(), 0o700);
    let r = as_nobody(&b, &["status"]);
    assert_eq!(r.code, 77, "{r:?}");
    assert!(
        r.stdout.contains("whether the daemon runs is not known") && shows_volume(&r.stdout),
        "{r:?}"
    );
    assert!(r.stderr.contains("permission denied"), "{r:?}");
    // As root: the one-shot status opens the registry itself.
    let r = b.cli(&["status"]).ok();
    assert!(
        r.stdout
            .starts_with("mediaretain: the daemon is not running;")
            && shows_volume(&r.stdout),
        "{}",
        r.stdout
    );
}

/// Runs `mediaretain --config CONFIG args…` without `RUST_LOG` (the flags decide).
fn cli(b: &Box_, args: &[&str]) -> Run {
    let out = Command::new(bin())
        .arg("--config")
        .arg(&b.config)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    Run::from(out)
}

/// `-q` prints only errors (and what `--json` asks for); `-v` adds the log of what a
/// one-shot command does; neither changes what is done.
#[test]
fn quiet_and_verbose() {
    let b = Box_::new("", "", BASE_CLASSES);
    let r = cli(&b, &["check-config"]).ok();
    assert!(r.stdout.contains(": ok ("), "{r:?}");
    for args in [
        &["-q", "check-config"][..],
        &["check-config", "--quiet"],
        &["-q", "status"],
        &["-q", "ls"],
        &["-q", "gc"],
    ] {
        let r = cli(&b, args);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (0, "", ""),
            "{args:?}"
        );
    }
    // --json is asked for: printed under -q too.
    let r = cli(&b, &["-q", "status", "--json"]).ok();
    assert_eq!(r.json()["activity"]["daemon"], false, "{r:?}");
    // Errors are printed under -q.
    let r = cli(&b, &["-q", "explain", "nosuch:x"]);
    assert_ne!(r.code, 0);
    assert!(r.stdout.is_empty() && r.stderr.contains("nosuch"), "{r:?}");
    // -v: the one-shot pass logs what it does (info), silent without.
    b.file("tmp/a.bin", 10, Duration::from_secs(3600));
    b.file("tmp/b.bin", 10, Duration::from_secs(3600));
    let r = cli(&b, &["gc", "--dry-run"]).ok();
    assert!(r.stderr.is_empty(), "{r:?}");
    let r = cli(&b, &["-v", "gc"]).ok();
    assert!(
        r.stderr.contains("INFO") && r.stderr.contains("deleted media:tmp/a.bin"),
        "{r:?}"
    );
    assert!(!b.path("tmp/a.bin").exists() && !b.path("tmp/b.bin").exists());
    // -q and -v together make no sense: a usage error.
    let r = cli(&b, &["-q", "-v", "status"]);
    assert_eq!(r.code, 64, "{r:?}");
}

/// Progress of a long one-shot `gc` (the scan that refreshes the registry, then the
/// deletions) is drawn with indicatif when stderr is a terminal — a pty from `script(1)`
/// here — and nothing of it appears when stderr is a pipe.
#[test]
fn progress_on_a_terminal_only() {
    let b = Box_::new("max_delete_per_pass = { files = 100000 }", "", BASE_CLASSES);
    let files = 20_000;
    for i in 0..files {
        let p = b.path(&format!("tmp/d{}/f{i}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        }
        std::fs::write(&p, b"x").unwrap();
        set_age(&p, Duration::from_secs(7200));
    }
    // A pipe: the report on stdout, nothing on stderr.
    let r = cli(&b, &["gc", "--dry-run"]).ok();
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    assert!(!r.stdout.contains("scanning"), "no progress in the output");
    // A terminal: script(1) runs the command on a pty and copies what it drew.
    let cmd = format!("{} --config {} gc", bin(), b.config.display());
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let drawn = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{drawn}");
    assert!(
        drawn.contains("scanning media") && drawn.contains(&format!("/{}", "20,000")),
        "a bar for the scan and one for the deletions:\n{}",
        &drawn[..drawn.len().min(3000)]
    );
    assert!(
        drawn.contains("deleting ["),
        "{}",
        &drawn[..drawn.len().min(3000)]
    );
    assert_eq!(std::fs::read_dir(b.path("tmp/d0")).unwrap().count(), 0);
}

/// Counts in text output agree with their nouns: "1 store", "2 stores", "1 file",
/// "3 classes" (issue 15: "1 stores", "1 files").
#[test]
fn plurals_in_text_output() {
    let b = Box_::new("", "", BASE_CLASSES);
    let r = cli(&b, &["check-config"]).ok();
    assert!(
        r.stdout.contains(": ok (1 store, 3 classes;"),
        "{}",
        r.stdout
    );
    b.file("tmp/a.bin", 10, Duration::from_secs(3600));
    let r = cli(&b, &["plan"]).ok();
    assert!(r.stdout.contains("total: 1 file to delete"), "{}", r.stdout);
    let r = cli(&b, &["scan"]).ok();
    assert!(r.stdout.contains("media: 1 file ("), "{}", r.stdout);
    let r = cli(&b, &["status"]).ok();
    assert!(r.stdout.contains("(1 file)"), "{}", r.stdout);
    let r = cli(&b, &["gc", "--dry-run"]).ok();
    assert!(
        r.stdout.contains("dry run: 1 file (10 B) would be deleted"),
        "{}",
        r.stdout
    );
    let r = cli(&b, &["gc"]).ok();
    assert!(
        r.stdout.contains("0 empty directories removed"),
        "{}",
        r.stdout
    );
    b.file("tmp/b.bin", 10, Duration::from_secs(3600));
    b.file("tmp/c.bin", 10, Duration::from_secs(3600));
    let r = cli(
        &b,
        &["rm", "--dry-run", "media:tmp/b.bin", "media:tmp/c.bin"],
    )
    .ok();
    assert!(
        r.stdout.contains("rm: 2 files (20 B) named"),
        "{}",
        r.stdout
    );
    // Two stores.
    std::fs::create_dir_all(b.dir.path().join("other")).unwrap();
    let text = std::fs::read_to_string(&b.config).unwrap()
        + "\n[[store]]\nname = \"other\"\nkind = \"local\"\nroot = \"other\"\n";
    std::fs::write(&b.config, text).unwrap();
    let r = cli(&b, &["check-config"]).ok();
    assert!(
        r.stdout.contains(": ok (2 stores, 3 classes;"),
        "{}",
        r.stdout
    );
}
