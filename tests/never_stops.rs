//! Cleanup never stops (issue 24, items 1 and 2): not for a trash directory planted by the
//! user who owns the store root (a real second Unix user, `mr-attacker`), not for a full
//! disk that holds the registry too (a real tmpfs holding both the state directory and the
//! media). When it cannot free, it says so truthfully: a failed deletion is counted as
//! failed with its cause, never as protected, and a volume at or above `high` is never "ok".
//!
//! Root needed (users, setpriv, mount), as CI runs it. `MEDIARETAIN_TEST_BIN=/old/mediaretain`
//! runs these against another build.

mod common;
use common::users::{ATTACKER, user};
use common::*;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PY: &str = "/usr/bin/python3";
const MIB: usize = 1 << 20;
const TRASH: &str = ".mediaretain-trash";

/// Python `script` run as the attacker (nothing of root's).
fn as_attacker(script: &str) -> Command {
    let (uid, gid) = user(ATTACKER);
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--init-groups")
        .arg("--reset-env")
        .arg(PY)
        .arg("-c")
        .arg(script);
    c
}

/// A box whose store root (and everything in it) belongs to the attacker, the media
/// server's user, and which other users may traverse.
fn attackers_box() -> Box_ {
    let b = Box_::new("", "", BASE_CLASSES);
    fs::set_permissions(b.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    chown_r(&b.media);
    b
}

fn chown_r(p: &Path) {
    let (uid, gid) = user(ATTACKER);
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

/// `n` expired temporary files (ttl 30m), the attacker's.
fn expired(b: &Box_, prefix: &str, n: usize) -> Vec<std::path::PathBuf> {
    let files: Vec<_> = (0..n)
        .map(|i| {
            b.file(
                &format!("tmp/{prefix}{i:04}.tmp"),
                1000,
                Duration::from_secs(3600),
            )
        })
        .collect();
    chown_r(&b.path("tmp"));
    files
}

fn aside(b: &Box_) -> Vec<String> {
    fs::read_dir(&b.media)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".mediaretain-trash.foreign."))
        .collect()
}

/// The store root's owner plants `.mediaretain-trash` as their own 0700 directory, as a
/// symlink to /etc, as a plain file — or an operator's `chown -R` hands ours to them. Every
/// expired file still goes in one pass; the planted thing is moved aside (never followed)
/// under a name that says so, logged once; nothing outside the store is touched.
/// Old build: every deletion failed ("is not ours alone" / "must be a directory"), 20 kept.
#[test]
fn a_foreign_trash_never_stops_deletion() {
    let etc_before: Vec<_> = fs::read_dir("/etc")
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for plant in ["dir0700", "symlink-to-etc", "file", "chown-R"] {
        let b = attackers_box();
        if plant == "chown-R" {
            // Ours first (made by a deletion), then the operator's `chown -R`.
            expired(&b, "first", 1);
            b.cli(&["gc"]).ok();
            assert!(b.path(TRASH).is_dir());
            chown_r(&b.media);
        } else {
            let script = match plant {
                "dir0700" => "import os; os.mkdir('.mediaretain-trash', 0o700)",
                "symlink-to-etc" => "import os; os.symlink('/etc', '.mediaretain-trash')",
                _ => "open('.mediaretain-trash', 'w').write('mine')",
            };
            let st = as_attacker(script).current_dir(&b.media).status().unwrap();
            assert!(st.success(), "{plant}: the attacker could not plant");
        }
        let files = expired(&b, "f", 20);
        let run = b.cli(&["gc"]);
        let kept: Vec<_> = files.iter().filter(|f| f.exists()).collect();
        assert!(
            kept.is_empty(),
            "{plant}: {} of 20 expired files kept: {}{}",
            kept.len(),
            run.stdout,
            run.stderr
        );
        assert_eq!(run.code, 0, "{plant}: {}{}", run.stdout, run.stderr);
        // A fresh trash of ours; the planted thing moved aside as it was.
        let md = fs::symlink_metadata(b.path(TRASH)).unwrap();
        assert!(md.is_dir(), "{plant}");
        assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o700), "{plant}");
        let moved = aside(&b);
        assert_eq!(moved.len(), 1, "{plant}: {moved:?}");
        let m = fs::symlink_metadata(b.path(&moved[0])).unwrap();
        match plant {
            "symlink-to-etc" => {
                assert!(m.file_type().is_symlink());
                assert_eq!(fs::read_link(b.path(&moved[0])).unwrap(), Path::new("/etc"));
            }
            "file" => assert_eq!(fs::read(b.path(&moved[0])).unwrap(), b"mine"),
            _ => assert!(m.is_dir() && m.uid() == user(ATTACKER).0, "{plant}"),
        }
        let said = run.stderr.matches("moved aside").count();
        assert_eq!(
            said, 1,
            "{plant}: logged once, not per file: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("failed to delete"), "{}", run.stderr);
    }
    let etc_after: Vec<_> = fs::read_dir("/etc")
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        etc_before, etc_after,
        "nothing outside the store is touched"
    );
}

/// A python loop as the attacker; killed on drop.
struct Racer(Child);

impl Drop for Racer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// While passes run, the store root's owner keeps renaming our trash away, removing the
/// ones it stole when empty, and putting its own 0700 directory (or a symlink to /etc) in
/// its place, as fast as a loop goes. Window: the whole of up to 10 passes over 300 files
/// each round (3 rounds); the loop swaps thousands of times meanwhile. Every expired file
/// still goes, only those, and nothing outside the store is touched.
/// Old build: every deletion failed while the attacker's directory stood there.
#[test]
fn the_store_owner_swapping_the_trash_cannot_stop_deletion() {
    let b = attackers_box();
    let keep = b.file("rec/cam/keep.mp4", 1000, Duration::from_secs(60));
    chown_r(&b.path("rec"));
    let script = r#"
import os, sys, time
n = 0
end = time.time() + 60
while time.time() < end:
    n += 1
    try: os.rename('.mediaretain-trash', 'stolen%d' % n)
    except OSError: pass
    try:
        if n % 2: os.mkdir('.mediaretain-trash', 0o700)
        else: os.symlink('/etc', '.mediaretain-trash')
    except OSError: pass
    try: os.rmdir('stolen%d' % (n - 1))
    except OSError: pass
"#;
    for round in 0..3 {
        let files = expired(&b, &format!("r{round}-"), 300);
        let mut racer = Racer(
            as_attacker(script)
                .current_dir(&b.media)
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Let it start swapping before the pass.
        wait_for(
            "the attacker to steal our trash",
            Duration::from_secs(10),
            || {
                fs::read_dir(&b.media).unwrap().any(|e| {
                    e.unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("stolen")
                })
            },
        );
        let started = Instant::now();
        let mut passes = 0;
        while files.iter().any(|f| f.exists()) {
            passes += 1;
            assert!(
                passes <= 10,
                "round {round}: {} of 300 files still there after 10 passes",
                files.iter().filter(|f| f.exists()).count()
            );
            b.cli(&["gc"]);
        }
        assert!(
            racer.0.try_wait().unwrap().is_none(),
            "the attacker ran through the passes"
        );
        eprintln!(
            "round {round}: 300 files in {passes} pass(es), {:?}",
            started.elapsed()
        );
        drop(racer);
    }
    assert!(keep.exists(), "only expired files go");
    assert!(Path::new("/etc/passwd").exists());
}

const FULL_CLASSES: &str = r#"
[[class]]
name = "hls"
store = "media"
match = ["hls/**/*.ts"]
lifecycle = "segment"
keep_for = "1h"
quiet_period = "0s"

[watchdog]
high = "90%"
low = "70%"
horizon = "0s"
interval = "1s"
"#;

fn volume(b: &Box_) -> serde_json::Value {
    b.cli(&["status", "--json"]).ok().json()["volumes"][0].clone()
}

/// The usual small box: the state directory and the media on one volume (a 64 MiB tmpfs
/// holding the whole box). A runaway writer fills it to 100% (ENOSPC). The pressure pass
/// must still free it — its deletion intents, durable before the first unlink, need room:
/// the daemon's reserve in the state directory is given back — back under `high` within
/// seconds; and until then the volume is never "ok" at or above `high`. Every deletion is
/// audited. Old build: "pressure pass failed … database or disk is full" every 5 s, 0 files
/// freed, and status "ok" at 100.0%.
#[test]
fn a_full_volume_holding_the_registry_is_freed_and_never_ok_meanwhile() {
    let b = Box_::new("", "", FULL_CLASSES);
    let _fs = Tmpfs::mount(b.dir.path(), "64m");
    // The whole box on the tmpfs: config, state and media.
    fs::create_dir_all(b.path("hls/live")).unwrap();
    b.write_config(
        "gc_interval = \"1h\"\nscan_interval = \"1h\"",
        "",
        FULL_CLASSES,
    );
    let d = b.daemon(None);
    // Old segments, registered long ago: 40 MiB (below high).
    let seg = vec![0x47u8; MIB];
    let mut written = Vec::new();
    for _ in 0..40 {
        let p = b.path(&format!("hls/live/seg{:05}.ts", written.len()));
        fs::write(&p, &seg).unwrap();
        written.push(p);
    }
    wait_for("the segments registered", Duration::from_secs(10), || {
        let ls = b.cli(&["ls", "--json"]).ok().json();
        ls.as_array().is_some_and(|a| a.len() == 40)
    });
    // Then a runaway writer: 1 MiB segments until the disk is full.
    let full_at = loop {
        let p = b.path(&format!("hls/live/seg{:05}.ts", written.len()));
        let r = fs::File::create(&p).and_then(|mut f| f.write_all(&seg));
        written.push(p);
        if let Err(e) = r {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            break Instant::now();
        }
        assert!(written.len() < 200, "the tmpfs never filled");
    };
    let mut seen = Vec::new();
    wait_for(
        "the volume back under high",
        Duration::from_secs(15),
        || {
            let v = volume(&b);
            let (state, pct) = (v["state"].clone(), v["used_pct"].as_f64().unwrap());
            seen.push(format!("{state} {pct:.1}%"));
            assert!(
                !(state == "ok" && pct >= 90.0),
                "status says ok at {pct:.1}% (≥ high) after {:?}: {seen:?}\n{}",
                full_at.elapsed(),
                d.log.lock().unwrap()
            );
            pct < 90.0
        },
    );
    eprintln!("back under high in {:?}: {seen:?}", full_at.elapsed());
    for l in d.log.lock().unwrap().lines() {
        if l.contains("reserve") || l.contains("pressure pass") {
            eprintln!("{l}");
        }
    }
    // Every file gone is audited as deleted.
    let gone: Vec<String> = written
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.strip_prefix(&b.media).unwrap().display().to_string())
        .collect();
    assert!(!gone.is_empty());
    for g in &gone {
        let x = b
            .cli(&["explain", &format!("media:{g}"), "--json"])
            .ok()
            .json();
        assert_eq!(
            x["history"][0]["outcome"], "deleted",
            "{g} deleted without an audit record: {x}"
        );
    }
    // The reserve is made again once there is room.
    wait_for(
        "the space reserve made again",
        Duration::from_secs(10),
        || b.state().join("space-reserve").exists(),
    );
    d.stop();
}

/// Deletions that fail (the store's volume read-only to the daemon, full past `high`) are
/// counted as failed with their cause in the STUCK breakdown — never as "protected by class
/// rules (min_keep)", and the alarm does not tell the operator to give classes a min_keep.
/// Old build: `kept.protected` held all of it, no `failed`, and the min_keep advice.
#[test]
fn a_stuck_breakdown_counts_failed_deletions_as_failed_never_protected() {
    let b = Box_::new(
        "gc_interval = \"1h\"\nscan_interval = \"1h\"",
        "",
        FULL_CLASSES,
    );
    let _fs = Tmpfs::mount(&b.media, "32m");
    for i in 0..30 {
        b.file(
            &format!("hls/live/seg{i:03}.ts"),
            MIB,
            Duration::from_secs(60),
        );
    }
    let st = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&b.media)
        .status()
        .unwrap();
    assert!(st.success());
    let d = b.daemon(None);
    wait_for(
        "the volume to be reported stuck",
        Duration::from_secs(20),
        || volume(&b)["state"] == "stuck",
    );
    let v = volume(&b);
    let kept = &v["last_pass"]["kept"];
    assert!(
        kept["failed"].as_u64().unwrap_or(0) >= (28 * MIB) as u64,
        "failed deletions counted as failed: {v}"
    );
    assert!(
        kept["protected"].as_u64().unwrap() < MIB as u64,
        "never as protected: {v}"
    );
    assert!(
        kept["failure"].as_str().unwrap_or("").contains("Read-only"),
        "with their cause: {v}"
    );
    let text = b.cli(&["status"]).ok().stdout;
    assert!(text.contains("whose deletion FAILED"), "{text}");
    wait_for("the alarm in the log", Duration::from_secs(10), || {
        d.log.lock().unwrap().contains("is STUCK at")
    });
    let log = d.log.lock().unwrap().clone();
    let alarm = log.lines().find(|l| l.contains("is STUCK at")).unwrap();
    assert!(alarm.contains("deletions failed"), "{alarm}");
    assert!(
        !alarm.contains("give recording classes a min_keep"),
        "{alarm}"
    );
    drop(log);
    d.stop();
    let _ = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&b.media)
        .status();
    assert!(b.path("hls/live/seg000.ts").exists());
}

/// A full volume holding the registry that cannot be freed (no reserve could be made: the
/// daemon started with less than four times its size free; the rest is unmanaged): the
/// pass fails on "database or disk is full" and the volume is STUCK with that cause — in
/// `status`, in the metrics, in the journal at err — never "ok" at or above `high`; once
/// space is made by hand it recovers and the reserve is made again.
/// Old build: status and metrics said "ok" at 100.0% while every pass failed.
#[test]
fn a_full_volume_that_cannot_be_freed_is_stuck_with_its_cause_never_ok() {
    let port = common::s3::free_port();
    let daemon = format!(
        "gc_interval = \"1h\"\nscan_interval = \"1h\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\""
    );
    let b = Box_::new(&daemon, "", FULL_CLASSES);
    let _fs = Tmpfs::mount(b.dir.path(), "64m");
    fs::create_dir_all(b.path("hls/live")).unwrap();
    b.write_config(&daemon, "", FULL_CLASSES);
    // Unmanaged data: 40 MiB of 64 (below high, too little room left for a reserve).
    let filler = b.dir.path().join("filler");
    fs::write(&filler, vec![1u8; 40 * MIB]).unwrap();
    let d = b.daemon(None);
    for i in 0..4 {
        b.file(&format!("hls/live/seg{i}.ts"), MIB, Duration::from_secs(60));
    }
    wait_for("the segments registered", Duration::from_secs(10), || {
        let ls = b.cli(&["ls", "--json"]).ok().json();
        ls.as_array().is_some_and(|a| a.len() == 4)
    });
    // Then something unmanaged fills the volume to 100%: at once (one fallocate of what is
    // free), so that no pass runs while it is only part full — one at 95% could free the
    // segments with room left for its writes (1 failed run in 3 once the recorder wrote less).
    let mut more = fs::File::create(b.dir.path().join("filler2")).unwrap();
    let st = rustix::fs::fstatvfs(&more).unwrap();
    let _ = rustix::fs::fallocate(
        &more,
        rustix::fs::FallocateFlags::empty(),
        0,
        st.f_bavail * st.f_frsize,
    );
    let chunk = vec![2u8; MIB];
    while more.write_all(&chunk).is_ok() {}
    drop(more);
    wait_for("the volume reported stuck", Duration::from_secs(20), || {
        let v = volume(&b);
        let (state, pct) = (v["state"].clone(), v["used_pct"].as_f64().unwrap());
        assert!(
            !(state == "ok" && pct >= 90.0),
            "status says ok at {pct:.1}% (≥ high): {v}"
        );
        state == "stuck"
    });
    let v = volume(&b);
    let err = v["last_pass"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("database or disk is full"), "{v}");
    let text = b.cli(&["status"]).ok().stdout;
    assert!(
        text.contains("STUCK since") && text.contains("the pressure pass failed"),
        "{text}"
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    std::io::Read::read_to_string(&mut s, &mut body).unwrap();
    let stuck = body
        .lines()
        .find(|l| l.contains("volume_state{") && l.contains("state=\"stuck\""))
        .unwrap_or_else(|| panic!("no volume_state in {body}"));
    assert!(stuck.ends_with(" 1") || stuck.ends_with(" 1.0"), "{stuck}");
    wait_for("the alarm at err", Duration::from_secs(10), || {
        d.log.lock().unwrap().contains("is STUCK at")
    });
    let log = d.log.lock().unwrap().clone();
    let alarm = log.lines().find(|l| l.contains("is STUCK at")).unwrap();
    assert!(
        alarm.contains("ERROR") && alarm.contains("the pressure pass failed"),
        "{alarm}"
    );
    // Space made by hand: back to ok, and the reserve is made again.
    fs::remove_file(&filler).unwrap();
    fs::remove_file(b.dir.path().join("filler2")).unwrap();
    wait_for("the volume to recover", Duration::from_secs(20), || {
        volume(&b)["state"] == "ok"
    });
    wait_for(
        "the space reserve made again",
        Duration::from_secs(10),
        || b.state().join("space-reserve").exists(),
    );
    d.stop();
}
