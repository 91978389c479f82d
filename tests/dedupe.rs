//! Identical copies (issue 16): a class with `dedupe` deletes every byte-identical copy of a
//! file but the one it keeps, through the one executor — retained copies, copies held open
//! by a real process and hard links stay; a same-size file with other bytes stays; a file
//! changed after hashing is hashed again, never deleted on its old hash (even with its mtime
//! put back); under disk pressure a duplicate goes before the oldest recording. Real files
//! on a real filesystem, the real binary (one-shot commands and the daemon).

mod common;
use common::users::{ATTACKER, user};

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{Box_, Holder, Tmpfs, set_age, wait_for};

const H: Duration = Duration::from_secs(3600);
const MIB: usize = 1 << 20;

fn classes(mode: &str) -> String {
    format!(
        r#"
[[class]]
name = "rec"
store = "media"
match = ["rec/**/*.flv"]
lifecycle = "recording"
quiet_period = "10m"
dedupe = "{mode}"
"#
    )
}

/// `n` bytes that differ with `seed` (a recording's worth of noise, not a run of one byte).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

fn put(b: &Box_, rel: &str, data: &[u8], age: Duration) {
    let p = b.path(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    set_age(&p, age);
}

fn action<'a>(plan: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == path)
}

fn result<'a>(gc: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    gc["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == path)
        .unwrap_or_else(|| panic!("no result for {path}: {gc}"))
}

#[test]
fn identical_copies_go_but_retained_open_hard_linked_fresh_and_different_files_stay() {
    let b = Box_::new("", "", &classes("keep-oldest"));
    let x = noise(1, MIB);
    let mut y = x.clone();
    y[MIB / 2] ^= 1; // same size, one bit apart
    put(&b, "rec/a/orig.flv", &x, 5 * H); // the oldest: kept
    put(&b, "rec/b/copy1.flv", &x, 4 * H); // a copy in another directory: goes
    put(&b, "rec/c/retained.flv", &x, 3 * H); // pinned: stays
    put(&b, "rec/d/open.flv", &x, 2 * H); // held open by a process: refused
    put(&b, "rec/e/other.flv", &y, 90 * 60 * Duration::from_secs(1)); // other bytes
    put(&b, "rec/f/copy2.flv", &x, H); // goes
    put(&b, "rec/g/fresh.flv", &x, Duration::ZERO); // still being written: not hashed
    fs::create_dir_all(b.path("rec/z")).unwrap();
    fs::hard_link(b.path("rec/a/orig.flv"), b.path("rec/z/link.flv")).unwrap();
    // A hard-linked copy: two names of one inode, never deleted as a duplicate.
    put(
        &b,
        "rec/h/copy-linked.flv",
        &x,
        30 * 60 * Duration::from_secs(1),
    );
    fs::create_dir_all(b.path("rec/i")).unwrap();
    fs::hard_link(
        b.path("rec/h/copy-linked.flv"),
        b.path("rec/i/its-link.flv"),
    )
    .unwrap();
    set_age(
        &b.path("rec/h/copy-linked.flv"),
        30 * 60 * Duration::from_secs(1),
    );

    b.cli(&["retain", b.path("rec/c/retained.flv").to_str().unwrap()])
        .ok();
    let _holder = Holder::open(&b.path("rec/d/open.flv"));
    let hash = blake3::hash(&x).to_hex().to_string();

    // plan: the copies, each naming the file it duplicates; the open one would be refused.
    let plan = b.cli(&["plan", "--json"]).ok().json();
    let mut planned: Vec<&str> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    planned.sort();
    assert_eq!(
        planned,
        ["rec/b/copy1.flv", "rec/d/open.flv", "rec/f/copy2.flv"],
        "{plan}"
    );
    let a = action(&plan, "rec/b/copy1.flv").unwrap();
    assert_eq!(a["rule"], "duplicate", "{a}");
    assert_eq!(a["dupe_of"]["kept"], "rec/a/orig.flv", "{a}");
    assert_eq!(a["dupe_of"]["blake3"], hash.as_str(), "{a}");
    assert!(
        a["reason"].as_str().unwrap().starts_with(&format!(
            "duplicate of rec/a/orig.flv (same 1 MiB, blake3 {}",
            &hash[..16]
        )),
        "{a}"
    );
    let open = action(&plan, "rec/d/open.flv").unwrap();
    assert!(
        open["would_refuse"]
            .as_str()
            .unwrap()
            .contains("open by pid"),
        "{open}"
    );

    // explain says which file it duplicates.
    let ex = b
        .cli(&[
            "explain",
            b.path("rec/b/copy1.flv").to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(ex["verdict"]["rule"], "duplicate", "{ex}");
    assert!(
        ex["summary"]
            .as_str()
            .unwrap()
            .contains("duplicate of rec/a/orig.flv"),
        "{ex}"
    );
    let kept = b
        .cli(&[
            "explain",
            b.path("rec/a/orig.flv").to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(kept["verdict"]["verdict"], "keep", "{kept}");

    // dupes: one group; the kept file (with its other name), the copies and their fates.
    let d = b.cli(&["dupes", "--json"]).ok().json();
    let groups = d["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{d}");
    let g = &groups[0];
    assert_eq!(g["blake3"], hash.as_str(), "{g}");
    assert_eq!(g["kept"]["path"], "rec/a/orig.flv", "{g}");
    assert_eq!(g["kept"]["links"][0], "rec/z/link.flv", "{g}");
    let fate = |p: &str| {
        g["copies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == p)
            .unwrap_or_else(|| panic!("{p} not in {g}"))["fate"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(fate("rec/b/copy1.flv"), "duplicate");
    assert_eq!(fate("rec/d/open.flv"), "duplicate");
    assert_eq!(fate("rec/f/copy2.flv"), "duplicate");
    assert!(
        fate("rec/c/retained.flv").starts_with("stays: retained"),
        "{g}"
    );
    assert!(
        fate("rec/h/copy-linked.flv").starts_with("hard-linked"),
        "{g}"
    );
    // orig (2 names, 1 inode) + copy1, retained, open, copy2, copy-linked: 6 copies.
    assert_eq!(g["wasted_bytes"], 5 * MIB as u64, "{g}");
    // Neither the fresh file nor the different one is in any group.
    assert!(!d.to_string().contains("fresh.flv"), "{d}");
    assert!(!d.to_string().contains("other.flv"), "{d}");

    // The pass: per-file results.
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(
        result(&gc, "rec/b/copy1.flv")["result"]["outcome"],
        "deleted",
        "{gc}"
    );
    assert_eq!(
        result(&gc, "rec/f/copy2.flv")["result"]["outcome"],
        "deleted",
        "{gc}"
    );
    let r = result(&gc, "rec/d/open.flv");
    assert_eq!(r["result"]["outcome"], "refused", "{gc}");
    assert!(
        r["result"]["detail"]
            .as_str()
            .unwrap()
            .contains("open by pid"),
        "{r}"
    );
    assert_eq!(gc["deleted_files"], 2, "{gc}");
    for gone in ["rec/b/copy1.flv", "rec/f/copy2.flv"] {
        assert!(!b.path(gone).exists(), "{gone} still there");
    }
    for stays in [
        "rec/a/orig.flv",
        "rec/z/link.flv",
        "rec/c/retained.flv",
        "rec/d/open.flv",
        "rec/e/other.flv",
        "rec/g/fresh.flv",
        "rec/h/copy-linked.flv",
        "rec/i/its-link.flv",
    ] {
        assert!(b.path(stays).exists(), "{stays} was deleted");
    }
    assert_eq!(fs::read(b.path("rec/a/orig.flv")).unwrap(), x);

    // The audit trail of a deleted copy.
    let ex = b
        .cli(&[
            "explain",
            b.path("rec/b/copy1.flv").to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    let h = &ex["history"][0];
    assert_eq!(h["outcome"], "deleted", "{ex}");
    assert_eq!(h["rule"], "duplicate", "{ex}");
    assert!(
        h["reason"]
            .as_str()
            .unwrap()
            .starts_with("duplicate of rec/a/orig.flv (same 1 MiB, blake3 "),
        "{ex}"
    );
}

#[test]
fn a_file_changed_after_hashing_is_hashed_again_not_deleted_on_its_old_hash() {
    let b = Box_::new("", "", &classes("keep-oldest"));
    let x = noise(2, 256 * 1024);
    put(&b, "rec/a.flv", &x, 3 * H);
    put(&b, "rec/b.flv", &x, 2 * H);
    // Hashed now: b is a copy of a.
    let d = b.cli(&["dupes", "--json"]).ok().json();
    assert_eq!(d["groups"].as_array().unwrap().len(), 1, "{d}");
    // b is rewritten with other bytes of the same size (a recorder reusing the name).
    let mut y = x.clone();
    y[0] ^= 0xff;
    put(&b, "rec/b.flv", &y, 2 * H - Duration::from_secs(60));
    let plan = b.cli(&["plan", "--json"]).ok().json();
    assert!(
        action(&plan, "rec/b.flv").is_none(),
        "planned on a stale hash: {plan}"
    );
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["deleted_files"], 0, "{gc}");
    assert_eq!(fs::read(b.path("rec/b.flv")).unwrap(), y);
    let d = b.cli(&["dupes", "--json"]).ok().json();
    assert!(d["groups"].as_array().unwrap().is_empty(), "{d}");
    // Identical again (a later version): hashed again, and then it is a copy.
    put(&b, "rec/b.flv", &x, 2 * H - Duration::from_secs(120));
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(
        result(&gc, "rec/b.flv")["result"]["outcome"],
        "deleted",
        "{gc}"
    );
    assert!(b.path("rec/a.flv").exists());
}

/// Writes `data` over the start of `p` in place (same inode, same size) and puts its
/// mtime back to the nanosecond, as `rsync --inplace -t` or `touch -r` would: size, mtime
/// and inode all say "unchanged".
fn rewrite_keeping_mtime(p: &Path, data: &[u8]) {
    use std::io::Write;
    let before = fs::metadata(p).unwrap();
    let mut f = fs::OpenOptions::new().write(true).open(p).unwrap();
    f.write_all(data).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    let after = fs::metadata(p).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (after.len(), after.modified().unwrap(), after.ino()),
        (before.len(), before.modified().unwrap(), before.ino())
    );
}

#[test]
fn a_copy_rewritten_in_place_with_its_mtime_put_back_or_hard_linked_later_is_not_deleted() {
    let b = Box_::new("", "", &classes("keep-oldest"));
    let x = noise(5, 256 * 1024);
    put(&b, "rec/a.flv", &x, 3 * H);
    put(&b, "rec/b.flv", &x, 2 * H);
    put(&b, "rec/c.flv", &x, H);
    // Hashed now: b and c are copies of a.
    let d = b.cli(&["dupes", "--json"]).ok().json();
    assert_eq!(d["groups"][0]["copies"].as_array().unwrap().len(), 2, "{d}");
    // b gets other bytes in place, its mtime put back; c gets a second name outside the
    // class (an operator keeping it): deleting c would free nothing.
    let mut y = x.clone();
    y[1000] ^= 0x55;
    rewrite_keeping_mtime(&b.path("rec/b.flv"), &y);
    fs::create_dir_all(b.path("keep")).unwrap();
    fs::hard_link(b.path("rec/c.flv"), b.path("keep/c.flv")).unwrap();
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["deleted_files"], 0, "deleted on a stale hash: {gc}");
    for f in ["rec/b.flv", "rec/c.flv"] {
        let r = &result(&gc, f)["result"];
        assert_eq!(r["outcome"], "refused", "{f}: {gc}");
        assert!(
            r["detail"]
                .as_str()
                .unwrap()
                .contains("changed since it was hashed"),
            "{f}: {gc}"
        );
    }
    assert_eq!(fs::read(b.path("rec/b.flv")).unwrap(), y);
    // Hashed again: b differs, c is one file under two names; nothing is a duplicate.
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["deleted_files"], 0, "{gc}");
    let d = b.cli(&["dupes", "--json"]).ok().json();
    let g = &d["groups"][0];
    assert_eq!(g["copies"][0]["path"], "rec/c.flv", "{d}");
    assert!(
        g["copies"][0]["fate"]
            .as_str()
            .unwrap()
            .starts_with("hard-linked"),
        "{d}"
    );
    assert_eq!(g["copies"].as_array().unwrap().len(), 1, "{d}");
    for f in ["rec/a.flv", "rec/b.flv", "rec/c.flv"] {
        assert!(b.path(f).exists(), "{f}");
    }
}

#[test]
fn keep_newest_and_keep_oldest_keep_the_right_copy() {
    for (mode, kept) in [("keep-newest", "rec/3.flv"), ("keep-oldest", "rec/1.flv")] {
        let b = Box_::new("", "", &classes(mode));
        let x = noise(3, 64 * 1024);
        put(&b, "rec/1.flv", &x, 3 * H);
        put(&b, "rec/2.flv", &x, 2 * H);
        put(&b, "rec/3.flv", &x, H);
        let gc = b.cli(&["gc", "--json"]).ok().json();
        assert_eq!(gc["deleted_files"], 2, "{mode}: {gc}");
        for f in ["rec/1.flv", "rec/2.flv", "rec/3.flv"] {
            assert_eq!(b.path(f).exists(), f == kept, "{mode}: {f}; {gc}");
        }
    }
}

#[test]
fn the_daemon_hashes_in_the_background_and_deletes_copies() {
    let b = Box_::new(
        "gc_interval = \"2s\"",
        "",
        &format!(
            "{}\n[dedupe]\nrate = \"256MiB/s\"\n",
            classes("keep-oldest")
        ),
    );
    let x = noise(4, 2 * MIB);
    put(&b, "rec/cam1/a.flv", &x, 2 * H);
    put(&b, "rec/cam2/a.flv", &x, H);
    let d = b.daemon(None);
    wait_for(
        "the daemon to delete the copy",
        Duration::from_secs(60),
        || !b.path("rec/cam2/a.flv").exists(),
    );
    assert!(b.path("rec/cam1/a.flv").exists());
    // A copy arriving later (quiet already: an old mtime) goes too.
    put(&b, "rec/cam3/a.flv", &x, H / 2);
    wait_for(
        "the daemon to delete the later copy",
        Duration::from_secs(60),
        || !b.path("rec/cam3/a.flv").exists(),
    );
    let dupes = b.cli(&["dupes", "--json"]).ok().json();
    assert!(dupes["groups"].as_array().unwrap().is_empty(), "{dupes}");
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(
            "deleted media:rec/cam2/a.flv: duplicate of rec/cam1/a.flv (same 2 MiB, blake3 "
        ),
        "{log}"
    );
}

/// Under disk pressure the recordings tier frees identical copies first: the duplicate (the
/// newest recording) goes before the oldest recording. Normal passes are held back by the
/// blast-radius guard (1 KiB a pass), which pressure passes do not obey, so the copy is
/// still there when the volume fills. A tmpfs of its own (root, as CI runs).
#[test]
fn under_pressure_a_duplicate_goes_before_the_oldest_recording() {
    const CLASSES: &str = r#"
[[class]]
name = "rec"
store = "media"
match = ["rec/**/*.flv"]
lifecycle = "recording"
keep_for = "30d"
min_keep = "0s"
quiet_period = "0s"
dedupe = "keep-oldest"

# Never freed under pressure: a recording class without min_keep.
[[class]]
name = "archive"
store = "media"
match = ["archive/**"]
lifecycle = "recording"
keep_for = "30d"
quiet_period = "0s"

[watchdog]
high = "95%"
low = "90%"
horizon = "0s"
interval = "1s"

[[watchdog.volume]]
path = "media"
high = "80%"
low = "70%"
"#;
    let b = Box_::new(
        "gc_interval = \"2s\"\nscan_interval = \"1h\"\nmax_delete_per_pass = { files = 1000, bytes = \"1KiB\" }",
        "",
        CLASSES,
    );
    let _fs = Tmpfs::mount(&b.path(""), "64m");
    // A fresh tmpfs is mode 1777: every user could plant a copy there, and no copy goes in
    // favour of one in a directory others can write (issue 23). The store's owner only.
    fs::set_permissions(b.path(""), fs::Permissions::from_mode(0o755)).unwrap();
    // 4 + 12 + 12 MiB of recordings; oldest first would free old.flv, then a.flv.
    put(&b, "rec/old.flv", &noise(6, 4 * MIB), 3 * H);
    let x = noise(7, 12 * MIB);
    put(&b, "rec/a.flv", &x, 2 * H);
    put(&b, "rec/a-copy.flv", &x, H);
    let d = b.daemon(None);
    let t = Duration::from_secs(60);
    wait_for("the copy to be hashed", t, || {
        b.cli(&["dupes", "--json"]).ok().json()["groups"]
            .as_array()
            .is_some_and(|g| g.len() == 1)
    });
    // A pass has run since, and the guard held it back.
    wait_for("a pass held back by the guard", t, || {
        d.log.lock().unwrap().contains("blast-radius guard")
    });
    assert!(b.path("rec/a-copy.flv").exists());
    // 26 MiB that are never freed: 54 of 64 MiB used (84%), above high (80%); freeing the
    // 12 MiB copy alone brings it to 66%, below low (70%).
    put(&b, "archive/fill.bin", &vec![0u8; 26 * MIB], H);
    wait_for("a pressure pass to bring the volume back", t, || {
        let v = &b.cli(&["status", "--json"]).ok().json()["volumes"][0];
        v["state"] == "ok" && v["last_pass"]["deleted_files"].as_u64() > Some(0)
    });
    assert!(!b.path("rec/a-copy.flv").exists(), "the copy stayed");
    assert!(b.path("rec/old.flv").exists(), "the oldest recording went");
    assert!(b.path("rec/a.flv").exists(), "the kept copy went");
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("deleted media:rec/a-copy.flv"))
        .unwrap_or_else(|| panic!("no deletion logged:\n{log}"));
    assert!(
        line.contains("duplicate of rec/a.flv") && line.contains("pressure"),
        "{line}"
    );
}

#[test]
fn bad_dedupe_settings_are_located_with_a_suggestion() {
    let b = Box_::new("", "", &classes("keep-olde"));
    let r = b.cli(&["check-config"]);
    assert_eq!(r.code, 78, "{r:?}");
    assert!(r.stderr.contains("keep-oldest"), "{r:?}");
    assert!(r.stderr.contains("config.toml:"), "{r:?}");
    let b = Box_::new(
        "",
        "",
        &format!("{}\n[dedupe]\nrate = \"fast\"\n", classes("keep-oldest")),
    );
    let r = b.cli(&["check-config"]);
    assert_eq!(r.code, 78, "{r:?}");
    assert!(
        r.stderr
            .contains("dedupe.rate \"fast\" must be bytes per second"),
        "{r:?}"
    );
    let b = Box_::new(
        "",
        "",
        &format!(
            "{}\n[dedupe]\nrate = \"unlimited\"\n",
            classes("keep-newest")
        ),
    );
    b.cli(&["check-config"]).ok();
}

// ---- Issue 23, item 1: a duplicate goes only in favour of a copy at least as trusted. ----

/// Runs python3 `script args…` as the attacker (its own uid, gid and groups) to the end.
fn as_attacker(script: &str, args: &[&str]) {
    let (uid, gid) = user(ATTACKER);
    let out = std::process::Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--init-groups")
        .arg("--reset-env")
        .args(["/usr/bin/python3", "-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "attacker script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies SRC to DST (its own new file) and sets its mtime AGE seconds back.
const PLANT: &str = r#"
import os, shutil, sys, time
src, dst, age = sys.argv[1], sys.argv[2], float(sys.argv[3])
shutil.copyfile(src, dst)
t = time.time() - age
os.utime(dst, (t, t))
"#;

fn fate_of(d: &serde_json::Value, path: &str) -> String {
    d["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["copies"].as_array().unwrap().iter().chain(g.get("kept")))
        .find(|c| c["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in {d}"))["fate"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A second Unix user who can write `rec/upload/` copies the world-readable recording
/// `rec/cam1/evidence.flv` there and sets its mtime a day back (keep-oldest) or two
/// minutes back (keep-newest), so that its copy is the preferred one. The recording is
/// not deleted: the planted copy is owned by another uid; `dupes` and `explain` say so.
/// Also a root-owned copy in a world-writable directory (mode 1777) is no kept copy.
/// The attacker then removes their copy: the recording is still there.
/// Old code: "evidence.flv deleted as duplicate of rec/upload/clip.flv" (the gc deletes it).
#[test]
fn a_copy_planted_by_another_user_never_replaces_the_recording() {
    let (uid, gid) = user(ATTACKER);
    for (mode, age) in [
        ("keep-oldest", 24 * H),
        ("keep-newest", Duration::from_secs(120)),
    ] {
        let b = Box_::new("", "", &classes(mode).replace("\"10m\"", "\"1m\""));
        fs::set_permissions(b.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let x = noise(7, MIB);
        put(&b, "rec/cam1/evidence.flv", &x, H);
        fs::create_dir_all(b.path("rec/upload")).unwrap();
        std::os::unix::fs::chown(b.path("rec/upload"), Some(uid), Some(gid)).unwrap();
        as_attacker(
            PLANT,
            &[
                b.path("rec/cam1/evidence.flv").to_str().unwrap(),
                b.path("rec/upload/clip.flv").to_str().unwrap(),
                &age.as_secs().to_string(),
            ],
        );
        let gc = b.cli(&["gc", "--json"]).ok().json();
        assert_eq!(gc["deleted_files"], 0, "{mode}: {gc}");
        assert_eq!(
            fs::read(b.path("rec/cam1/evidence.flv")).unwrap(),
            x,
            "{mode}: the recording was deleted"
        );
        let plan = b.cli(&["plan", "--json"]).ok().json();
        assert!(action(&plan, "rec/cam1/evidence.flv").is_none(), "{plan}");

        // dupes and explain say why it is not deduped.
        let want = format!(
            "kept copy rec/upload/clip.flv is owned by uid {uid} ({ATTACKER}), not by root (0)"
        );
        let d = b.cli(&["dupes", "--json"]).ok().json();
        let fate = fate_of(&d, "rec/cam1/evidence.flv");
        assert!(
            fate.starts_with("not deduped") && fate.contains(&want),
            "{mode}: {fate}"
        );
        let text = b.cli(&["dupes"]).ok().stdout;
        assert!(text.contains(&want), "{mode}: {text}");
        let ex = b
            .cli(&["explain", "media:rec/cam1/evidence.flv", "--json"])
            .ok()
            .json();
        assert!(
            ex["not_deduped"]
                .as_str()
                .unwrap_or_default()
                .contains(&want),
            "{mode}: {ex}"
        );
        assert!(
            ex["summary"].as_str().unwrap().contains("not deduped"),
            "{mode}: {ex}"
        );

        // The attacker takes their copy away: the recording is there.
        as_attacker(
            "import os, sys; os.unlink(sys.argv[1])",
            &[b.path("rec/upload/clip.flv").to_str().unwrap()],
        );
        assert_eq!(fs::read(b.path("rec/cam1/evidence.flv")).unwrap(), x);

        // A copy owned by root, but in a directory every user can write (sticky or not: a
        // user plants a file there): no copy goes in its favour either.
        fs::create_dir_all(b.path("rec/drop")).unwrap();
        fs::set_permissions(b.path("rec/drop"), fs::Permissions::from_mode(0o1777)).unwrap();
        put(&b, "rec/drop/copy.flv", &x, age);
        let gc = b.cli(&["gc", "--json"]).ok().json();
        assert_eq!(gc["deleted_files"], 0, "{mode}: {gc}");
        assert!(b.path("rec/cam1/evidence.flv").exists(), "{mode}");
        let d = b.cli(&["dupes", "--json"]).ok().json();
        let fate = fate_of(&d, "rec/cam1/evidence.flv");
        assert!(
            fate.contains("directory rec/drop of kept copy rec/drop/copy.flv is writable by every user (mode 1777)"),
            "{mode}: {fate}"
        );
    }
}

/// Without an attacker: an export copy made later in the operator's own tree (same owner,
/// directories nobody else can write) is a trusted kept copy, so `keep-newest` deletes the
/// original as its duplicate. A later `rm` of the export — the last copy — is refused
/// (exit 74), naming the original and when it was deleted, by the CLI and by
/// `POST /v1/rm`; `--force-last-copy` deletes it.
/// Old code: `rm` of the export exits 0 and the content is gone ("rm exit: left: 0").
#[test]
fn rm_of_the_last_copy_after_dedupe_is_refused_unless_forced() {
    let b = Box_::new("", "", &classes("keep-newest").replace("\"10m\"", "\"1m\""));
    let x = noise(11, MIB);
    put(&b, "rec/cam1/orig.flv", &x, H);
    put(&b, "rec/export/orig.flv", &x, Duration::from_secs(300));
    let gc = b.cli(&["gc", "--json"]).ok().json();
    let r = result(&gc, "rec/cam1/orig.flv");
    assert_eq!(r["result"]["outcome"], "deleted", "{gc}");
    assert_eq!(r["rule"], "duplicate", "{gc}");
    assert!(!b.path("rec/cam1/orig.flv").exists());

    let export = "media:rec/export/orig.flv";
    let check = |v: &serde_json::Value| {
        let r = result(v, "rec/export/orig.flv");
        assert_eq!(r["result"]["outcome"], "refused", "{v}");
        let why = r["result"]["detail"].as_str().unwrap();
        assert!(
            why.starts_with(
                "the last copy: it replaced rec/cam1/orig.flv (deleted as its duplicate at 20"
            ) && why.contains("--force-last-copy"),
            "{why}"
        );
        assert_eq!(v["remaining"], 1, "{v}");
    };
    for dry in [true, false] {
        let mut args = vec!["rm", export, "--json"];
        if dry {
            args.push("--dry-run");
        }
        let r = b.cli(&args);
        assert_eq!(r.code, 74, "rm exit (dry run {dry}): {r:?}");
        check(&r.json());
        assert_eq!(fs::read(b.path("rec/export/orig.flv")).unwrap(), x);
    }
    let text = b.cli(&["rm", export]);
    assert_eq!(text.code, 74, "{text:?}");
    assert!(
        text.stdout
            .contains("the last copy: it replaced rec/cam1/orig.flv"),
        "{text:?}"
    );
    let help = b.cli(&["rm", "--help"]).ok().stdout;
    assert!(help.contains("--force-last-copy"), "{help}");

    // The same over the control socket; then forced through the daemon.
    let d = b.daemon(None);
    let (status, answer) = common::api(
        &b.state().join("control.sock"),
        "/v1/rm",
        &format!(r#"{{"paths": ["{export}"]}}"#),
    );
    assert_eq!(status, 200, "{answer}");
    check(&serde_json::from_str(&answer).unwrap());
    assert!(b.path("rec/export/orig.flv").exists());
    let r = b.cli(&["rm", export, "--force-last-copy", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["deleted_files"], 1, "{r:?}");
    assert!(!b.path("rec/export/orig.flv").exists());
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
}

/// Not the last copy: while another copy of the same content is left (here a pinned one,
/// which dedupe never deletes), `rm` of the file that replaced a duplicate is not refused.
#[test]
fn rm_of_a_copy_is_not_refused_while_another_copy_is_left() {
    let b = Box_::new("", "", &classes("keep-newest").replace("\"10m\"", "\"1m\""));
    let x = noise(12, MIB);
    put(&b, "rec/cam1/orig.flv", &x, H);
    put(&b, "rec/pinned/orig.flv", &x, H / 2);
    put(&b, "rec/export/orig.flv", &x, Duration::from_secs(300));
    b.cli(&["retain", "media:rec/pinned/orig.flv"]).ok();
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(
        result(&gc, "rec/cam1/orig.flv")["rule"],
        "duplicate",
        "{gc}"
    );
    assert!(b.path("rec/pinned/orig.flv").exists());
    let r = b.cli(&["rm", "media:rec/export/orig.flv", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!b.path("rec/export/orig.flv").exists());
    assert_eq!(fs::read(b.path("rec/pinned/orig.flv")).unwrap(), x);
}
