//! Issue 13, the delete API: `mediaretain rm` and `POST /v1/rm`, with the real binary on
//! real files. A directory holding a file open in another process, a retained file, a
//! symlink to a file outside the store, a FIFO and a nested directory: each result says
//! exactly that, the rest is gone and verified, the symlink's target is untouched, exit 74
//! — and `explain` shows the audit record (trigger `manual`). Unlike ZLMediaKit's
//! `deleteRecordDirectory`, which answers code 0 while the MP4s stay on disk.
//!
//! Old code (`MEDIARETAIN_TEST_BIN=/work/bench-old/mediaretain-8b6adf4`): there is no `rm`
//! (clap exits 2; the socket answers 404).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Box_, Holder, Run, api, bin};

const HOUR: Duration = Duration::from_secs(3600);

/// Recordings kept a week: nothing here is due, so only `rm` deletes.
const CLASSES: &str = r#"
[[class]]
name = "rec"
store = "media"
match = ["rec/**/*.mp4"]
lifecycle = "recording"
keep_for = "7d"
"#;

const DAY: &str = "rec/live/cam1/2024-05-01";

/// The directory of a day's recordings: a.mp4 (to be held open), b.mp4 (to be retained),
/// c.mp4, notes.txt (no class), sub/d.mp4, sub/deeper/e.mp4, link.mp4 → a file outside
/// the store, and a FIFO. Returns the outside file.
fn day_dir(b: &Box_) -> PathBuf {
    for f in [
        "a.mp4",
        "b.mp4",
        "c.mp4",
        "notes.txt",
        "sub/d.mp4",
        "sub/deeper/e.mp4",
    ] {
        b.file(&format!("{DAY}/{f}"), 1000, HOUR);
    }
    let outside = b.dir.path().join("outside.mp4");
    fs::write(&outside, b"precious, outside the store").unwrap();
    std::os::unix::fs::symlink(&outside, b.path(&format!("{DAY}/link.mp4"))).unwrap();
    let fifo = b.path(&format!("{DAY}/pipe"));
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    outside
}

/// Each result of an `rm --json` answer, as "path → outcome: detail".
fn results(v: &serde_json::Value) -> Vec<(String, String, String)> {
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {v}"))
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap_or_default().to_string(),
                r["result"]["outcome"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r["result"]["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn result_of<'a>(rs: &'a [(String, String, String)], name: &str) -> &'a (String, String, String) {
    let path = format!("{DAY}/{name}");
    rs.iter()
        .find(|r| r.0 == path)
        .unwrap_or_else(|| panic!("no result for {path} in {rs:?}"))
}

/// What the day's directory holds now (relative names).
fn left(b: &Box_) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(&p, base, out);
            }
        }
    }
    let base = b.path(DAY);
    if base.exists() {
        walk(&base, &base, &mut out);
    }
    out.sort();
    out
}

/// The refusals every run here must report, exactly.
fn assert_refusals(rs: &[(String, String, String)], holder: u32) {
    let a = result_of(rs, "a.mp4");
    assert_eq!(a.1, "refused", "{a:?}");
    assert!(
        a.2.contains(&format!("open by pid {holder}")) && a.2.contains("tail"),
        "the open file's refusal names its holder: {a:?}"
    );
    let r = result_of(rs, "b.mp4");
    assert_eq!(r.1, "refused", "{r:?}");
    assert!(r.2.starts_with("retained"), "{r:?}");
    let l = result_of(rs, "link.mp4");
    assert_eq!(l.1, "refused", "{l:?}");
    assert!(
        l.2.contains("symlink") && l.2.contains("left in place"),
        "{l:?}"
    );
    let f = result_of(rs, "pipe");
    assert_eq!(f.1, "refused", "{f:?}");
    assert!(f.2.contains("FIFO"), "{f:?}");
}

/// `rm -r` (CLI, no daemon): exactly the open file, the retained file, the symlink and the
/// FIFO remain, each with its reason; the rest is deleted and verified gone, the emptied
/// subdirectories removed, the symlink's target untouched, exit 74. `--dry-run` before it
/// says the same and changes nothing. `--force-retained` then deletes the retained file
/// (its unpin audited); once nothing is left, the directory itself goes and the exit is 0.
#[test]
fn rm_recursive_says_what_stays_and_deletes_the_rest() {
    let b = Box_::new("", "", CLASSES);
    let outside = day_dir(&b);
    b.cli(&["retain", &format!("media:{DAY}/b.mp4")]).ok();
    let holder = Holder::open(&b.path(&format!("{DAY}/a.mp4")));
    let before = left(&b);

    // A dry run: the same answers, nothing changed.
    let r = b.cli(&["rm", "-r", &format!("media:{DAY}"), "--dry-run", "--json"]);
    assert_eq!(r.code, 74, "{r:?}");
    let v = r.json();
    let rs = results(&v);
    assert_refusals(&rs, holder.pid());
    for f in ["c.mp4", "notes.txt", "sub/d.mp4", "sub/deeper/e.mp4"] {
        assert_eq!(result_of(&rs, f).1, "would_delete", "{rs:?}");
    }
    assert_eq!(v["remaining"], 4, "{v}");
    assert_eq!(left(&b), before, "a dry run changed the disk");
    let text = b.cli(&["rm", "-r", &format!("media:{DAY}"), "--dry-run"]);
    assert_eq!(text.code, 74, "{text:?}");
    assert!(
        text.stdout.starts_with("rm: 6 files"),
        "the count comes first: {}",
        text.stdout
    );

    // Without -r a directory is refused, nothing changed.
    let r = b.cli(&["rm", &b.path(DAY).display().to_string()]);
    assert_eq!(r.code, 74, "{r:?}");
    assert!(
        r.stdout.contains("is a directory: give --recursive"),
        "{r:?}"
    );
    assert_eq!(left(&b), before);

    // For real, by absolute path.
    let r = b.cli(&["rm", "-r", &b.path(DAY).display().to_string(), "--json"]);
    assert_eq!(r.code, 74, "{r:?}");
    let v = r.json();
    let rs = results(&v);
    assert_refusals(&rs, holder.pid());
    for f in ["c.mp4", "notes.txt", "sub/d.mp4", "sub/deeper/e.mp4"] {
        assert_eq!(result_of(&rs, f).1, "deleted", "{rs:?}");
    }
    assert_eq!(v["deleted_files"], 4, "{v}");
    assert_eq!(v["remaining"], 4, "{v}");
    assert_eq!(
        left(&b),
        ["a.mp4", "b.mp4", "link.mp4", "pipe"],
        "exactly the refused entries stay; the emptied subdirectories are removed"
    );
    let dirs: Vec<&str> = v["removed_dirs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        dirs,
        [format!("{DAY}/sub/deeper"), format!("{DAY}/sub")],
        "{v}"
    );
    assert_eq!(
        fs::read(&outside).unwrap(),
        b"precious, outside the store",
        "the symlink's target is untouched"
    );
    // The audit trail of a deleted file: trigger manual, rule manual.
    let x = b
        .cli(&["explain", &format!("media:{DAY}/c.mp4"), "--json"])
        .ok()
        .json();
    let h = &x["history"][0];
    assert_eq!(
        (
            h["action"].as_str(),
            h["outcome"].as_str(),
            h["trigger"].as_str(),
            h["rule"].as_str()
        ),
        (
            Some("delete"),
            Some("deleted"),
            Some("manual"),
            Some("manual")
        ),
        "{x}"
    );
    assert_eq!(x["on_disk"], false, "{x}");

    // --force-retained: the pin goes (audited), then the file; the open file still stays.
    let r = b.cli(&[
        "rm",
        "-r",
        &format!("media:{DAY}"),
        "--force-retained",
        "--json",
    ]);
    assert_eq!(r.code, 74, "{r:?}");
    let v = r.json();
    let rs = results(&v);
    assert_eq!(result_of(&rs, "b.mp4").1, "deleted", "{rs:?}");
    assert_eq!(result_of(&rs, "a.mp4").1, "refused", "{rs:?}");
    assert_eq!(v["unpinned"], 1, "{v}");
    let x = b
        .cli(&["explain", &format!("media:{DAY}/b.mp4"), "--json"])
        .ok()
        .json();
    let hist: Vec<(String, String)> = x["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                format!(
                    "{} {}",
                    h["action"].as_str().unwrap(),
                    h["outcome"].as_str().unwrap()
                ),
                h["trigger"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        &hist[..3],
        [
            ("delete deleted".into(), "manual".into()),
            ("unretain done".into(), "manual".into()),
            ("delete refused".into(), "manual".into()),
        ],
        "{x}"
    );

    // Nothing holds it, the link and FIFO are taken away by hand: everything goes, the
    // named directory too, exit 0; a path that is not there counts as gone.
    drop(holder);
    fs::remove_file(b.path(&format!("{DAY}/link.mp4"))).unwrap();
    fs::remove_file(b.path(&format!("{DAY}/pipe"))).unwrap();
    let r = b.cli(&[
        "rm",
        "-r",
        &format!("media:{DAY}"),
        "media:rec/never-was.mp4",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!b.path(DAY).exists(), "the emptied directory is removed");
    assert!(b.path("rec/live/cam1").is_dir(), "its parent stays");
    assert!(r.stdout.contains("not there"), "{}", r.stdout);
}

/// Bad input changes nothing: a path outside every store, `..`, a NUL byte — exit 65.
#[test]
fn rm_bad_input_changes_nothing() {
    let b = Box_::new("", "", CLASSES);
    b.file("rec/x.mp4", 10, HOUR);
    for bad in [
        "/etc/passwd".to_string(),
        "media:rec/../rec/x.mp4".to_string(),
        format!("{}/rec/../rec/x.mp4", b.media.display()),
        r"media:rec/x\x00.mp4".to_string(),
    ] {
        // A good path beside the bad one: the whole request is refused.
        let r = b.cli(&["rm", "media:rec/x.mp4", &bad]);
        assert_eq!(r.code, 65, "{bad}: {r:?}");
        assert!(b.path("rec/x.mp4").exists(), "{bad} deleted a good path");
    }
}

/// `setpriv` to the test's socket_group member (created once, like tests/confinement.rs).
fn member() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "mr-member"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let _ = Command::new("groupadd")
            .args(["--system", "mr-consumers"])
            .status();
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "-G",
                "mr-consumers",
                "mr-member",
            ])
            .status();
    }
    Some((id("-u")?, id("-g")?))
}

/// The same over the control socket of a running daemon: a JSON answer with every result;
/// bad input (outside the stores, `..`, NUL, a misspelt field) a 4xx JSON error that
/// changes nothing; a `socket_group` member refused (403, exit 77).
#[test]
fn rm_over_the_control_socket() {
    let b = Box_::new("socket_group = \"mr-consumers\"", "", CLASSES);
    let member = member();
    fs::set_permissions(b.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let outside = day_dir(&b);
    let d = b.daemon(None);
    let sock = b.state().join("control.sock");
    b.cli(&["retain", &format!("media:{DAY}/b.mp4")]).ok();
    let holder = Holder::open(&b.path(&format!("{DAY}/a.mp4")));
    let before = left(&b);

    for (body, want) in [
        (
            r#"{"paths": ["/etc/passwd"], "recursive": true}"#,
            "not inside any store root",
        ),
        (
            r#"{"paths": ["media:rec/live/../live/cam1/2024-05-01"], "recursive": true}"#,
            "not a plain relative path",
        ),
        (r#"{"paths": ["media:rec/a\u0000b"]}"#, "NUL"),
        (
            r#"{"paths": ["media:rec/live/cam1/2024-05-01"], "recursive": true, "dryrun": true}"#,
            "unknown field",
        ),
        (r#"{"paths": []}"#, "at least one path"),
    ] {
        let (status, answer) = api(&sock, "/v1/rm", body);
        assert_eq!(status, 422, "{body}: {answer}");
        let v: serde_json::Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("{body}: not JSON ({e}): {answer}"));
        assert!(v["error"].as_str().unwrap().contains(want), "{body}: {v}");
        assert_eq!(v["exit"], 65, "{body}: {v}");
        assert_eq!(left(&b), before, "{body} changed the disk");
    }

    if let Some((uid, gid)) = member {
        let out = Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--init-groups")
            .arg("--reset-env")
            .arg(bin())
            .arg("--config")
            .arg(&b.config)
            .args(["rm", "-r", &format!("media:{DAY}")])
            .output()
            .unwrap();
        let r = Run::from(out);
        assert_eq!(r.code, 77, "a socket_group member may not rm: {r:?}");
        assert_eq!(left(&b), before);
    }

    let (status, answer) = api(
        &sock,
        "/v1/rm",
        &format!(r#"{{"paths": ["media:{DAY}"], "recursive": true}}"#),
    );
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let rs = results(&v);
    assert_refusals(&rs, holder.pid());
    for f in ["c.mp4", "notes.txt", "sub/d.mp4", "sub/deeper/e.mp4"] {
        assert_eq!(result_of(&rs, f).1, "deleted", "{rs:?}");
    }
    assert_eq!(v["remaining"], 4, "{v}");
    assert_eq!(left(&b), ["a.mp4", "b.mp4", "link.mp4", "pipe"]);
    assert_eq!(fs::read(&outside).unwrap(), b"precious, outside the store");

    // The CLI goes through the daemon, and says the same (exit 74).
    let r = b.cli(&["rm", "-r", &format!("media:{DAY}"), "--dry-run", "--json"]);
    assert_eq!(r.code, 74, "{r:?}");
    assert_refusals(&results(&r.json()), holder.pid());
    let x = b
        .cli(&["explain", &format!("media:{DAY}/sub/d.mp4"), "--json"])
        .ok()
        .json();
    assert_eq!(x["history"][0]["trigger"], "manual", "{x}");
    assert_eq!(x["history"][0]["outcome"], "deleted", "{x}");
    drop(holder);
    d.stop();
}

// ---- Issue 23, item 5: rm -r counts whatever is still there. ----

/// Swaps DAY/sub for a symlink to OUTSIDE and back (rename away, symlink, unlink, rename
/// back), holding each state HOLD seconds, until STOP exists or rm took the directory
/// away; leaves sub a directory again and prints the number of swaps.
const SWAPPER: &str = r#"
import os, sys
import time
day, outside, stop, hold = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
sub, real = os.path.join(day, "sub"), os.path.join(day, ".sub-real")
n = 0
try:
    while not os.path.exists(stop):
        os.rename(sub, real)
        os.symlink(outside, sub)
        time.sleep(hold)
        os.unlink(sub)
        os.rename(real, sub)
        time.sleep(hold)
        n += 1
except OSError as e:
    print("stopped:", e, file=sys.stderr)
if os.path.islink(sub):
    os.unlink(sub)
if os.path.isdir(real) and not os.path.lexists(sub):
    os.rename(real, sub)
print(n)
"#;

/// Regular files under `dir` now (relative to `base`), no symlink followed.
fn files_under(dir: &Path, base: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.extend(files_under(&e.path(), base));
            } else if ft.is_file() {
                out.push(e.path().strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    out
}

/// While `rm -r media:rec/day1` runs, the store's owner (`mr-attacker`, who owns
/// `rec/day1/` and `rec/day1/sub/`) swaps `sub` for a symlink to a directory outside the
/// store (with files of the same names) and back: window = the whole rm (300 files in
/// `sub/`, one in `day1/`); 6 rounds, holding each state 0 (a swap every few tens of µs),
/// 0.5 ms and 2 ms in turn (about 1000, 500 and 200 swaps a round). When
/// rm answers, every file still under `rec/day1/` (counted after the swapper stopped and
/// put `sub` back) is counted in `remaining`, rm exits 74 when any is there, no result
/// says "vanished" or "deleted" for a file still there, and the outside files are intact.
/// Old code: "remaining 0 but 300 files are still there" / "vanished but still there".
#[test]
fn rm_r_counts_what_remains_while_the_owner_swaps_a_directory_for_a_symlink() {
    let Some((uid, gid)) = attacker() else {
        panic!("needs root (a second user, setpriv), as CI runs it");
    };
    for round in 0..6 {
        let hold = ["0", "0.0005", "0.002"][round % 3];
        let b = Box_::new("", "", CLASSES);
        fs::set_permissions(b.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        b.file("rec/day1/top.mp4", 100, HOUR);
        let outside = b.dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        for i in 0..300 {
            b.file(&format!("rec/day1/sub/f{i:03}.mp4"), 100, HOUR);
            fs::write(outside.join(format!("f{i:03}.mp4")), b"outside").unwrap();
        }
        for d in ["rec/day1", "rec/day1/sub"] {
            std::os::unix::fs::chown(b.path(d), Some(uid), Some(gid)).unwrap();
        }
        b.cli(&["scan"]).ok();
        let stop = b.dir.path().join("stop");
        let racer = Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--init-groups")
            .arg("--reset-env")
            .args(["/usr/bin/python3", "-c", SWAPPER])
            .arg(b.path("rec/day1"))
            .arg(&outside)
            .arg(&stop)
            .arg(hold)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        common::wait_for("the first swap", Duration::from_secs(10), || {
            b.path("rec/day1/.sub-real").exists() || b.path("rec/day1/sub").is_symlink()
        });
        let r = b.cli(&["rm", "-r", "media:rec/day1", "--json"]);
        fs::write(&stop, b"").unwrap();
        let out = racer.wait_with_output().unwrap();
        let swaps = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let v = r.json();
        let left = files_under(&b.path("rec/day1"), &b.media);
        eprintln!(
            "round {round} (hold {hold} s): {swaps} swaps; rm: exit {}, deleted {}, remaining {}; {} files left",
            r.code,
            v["deleted_files"],
            v["remaining"],
            left.len()
        );
        for i in 0..300 {
            assert_eq!(
                fs::read(outside.join(format!("f{i:03}.mp4"))).unwrap(),
                b"outside",
                "round {round}: a file outside the store was touched"
            );
        }
        if !left.is_empty() {
            assert_eq!(
                r.code,
                74,
                "round {round}: {} files left: {r:?}",
                left.len()
            );
            let remaining = v["remaining"].as_u64().unwrap();
            assert!(
                remaining >= left.len() as u64,
                "round {round}: remaining {remaining} but {} files are still there: {left:?}\n{v}",
                left.len()
            );
        }
        for res in v["results"].as_array().unwrap() {
            let outcome = res["result"]["outcome"].as_str().unwrap();
            let path = res["path"].as_str().unwrap().replace(".sub-real/", "sub/");
            if outcome == "vanished" || outcome == "deleted" {
                assert!(
                    !left.contains(&path),
                    "round {round}: {path} is still there but its result says {outcome}: {res}"
                );
            }
        }
    }
}

/// The attacker's (uid, gid), created once (like tests/confinement.rs); None unless root.
fn attacker() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id")
            .args([flag, "mr-attacker"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "mr-attacker",
            ])
            .status();
    }
    Some((id("-u")?, id("-g")?))
}
