//! One-shot commands (no daemon) on real files: plan changes nothing, gc deletes exactly
//! what the plan said, pins hold, unmatched files and symlink targets are never touched,
//! explain answers for kept and deleted paths, and the blast-radius guard stops a pass.

mod common;
use common::*;

use std::fs;
use std::time::Duration;

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86400);

fn paths_of(v: &serde_json::Value) -> Vec<String> {
    let mut p: Vec<String> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a["store"].as_str().unwrap(),
                a["path"].as_str().unwrap()
            )
        })
        .collect();
    p.sort();
    p
}

#[test]
fn plan_then_gc_deletes_exactly_the_plan() {
    let b = Box_::new("", "", BASE_CLASSES);
    b.file("tmp/old.bin", 100, 2 * HOUR);
    b.file("tmp/fresh.bin", 100, MIN);
    b.file("hls/s1/old.ts", 100, 5 * MIN);
    b.file("hls/s1/new.ts", 100, Duration::ZERO);
    b.file("rec/expired.mp4", 100, 8 * DAY);
    for (i, age) in [1u32, 2, 3, 4].iter().enumerate() {
        b.file(&format!("rec/r{i}.mp4"), 100, *age * HOUR);
    }
    b.file("notes/readme.txt", 10, 400 * DAY);

    let plan = b.cli(&["plan", "--json"]).ok().json();
    let want = vec![
        "media:hls/s1/old.ts",
        "media:rec/expired.mp4",
        "media:rec/r3.mp4",
        "media:tmp/old.bin",
    ];
    assert_eq!(paths_of(&plan), want);
    // The plan changed nothing.
    assert!(b.path("tmp/old.bin").exists() && b.path("rec/r3.mp4").exists());
    // Rules and reasons are explained per action.
    let rules: Vec<&str> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"ttl") && rules.contains(&"keep_for") && rules.contains(&"max_count"),
        "{rules:?}"
    );

    let human = b.cli(&["plan"]).ok().stdout;
    assert!(
        human.contains("media:rec/r3.mp4") && human.contains("beyond max_count 3"),
        "{human}"
    );

    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["deleted_files"], 4, "{gc}");
    assert_eq!(gc["failed"], 0);
    for p in &want {
        let rel = p.strip_prefix("media:").unwrap();
        assert!(!b.path(rel).exists(), "{rel} should be gone");
    }
    for rel in [
        "tmp/fresh.bin",
        "hls/s1/new.ts",
        "rec/r0.mp4",
        "rec/r1.mp4",
        "rec/r2.mp4",
        "notes/readme.txt",
    ] {
        assert!(b.path(rel).exists(), "{rel} must stay");
    }
    // Every file got its own verified result.
    for r in gc["results"].as_array().unwrap() {
        assert_eq!(r["result"]["outcome"], "deleted", "{r}");
    }
    // A second pass has nothing to do.
    assert_eq!(b.cli(&["gc", "--json"]).ok().json()["planned_files"], 0);
}

#[test]
fn dry_run_changes_nothing() {
    let b = Box_::new("", "", BASE_CLASSES);
    b.file("tmp/old.bin", 100, 2 * HOUR);
    let r = b.cli(&["gc", "--dry-run"]).ok();
    assert!(
        r.stdout.contains("would delete") && r.stdout.contains("media:tmp/old.bin"),
        "{}",
        r.stdout
    );
    assert!(b.path("tmp/old.bin").exists());
}

#[test]
fn retained_files_are_never_deleted_until_unretained() {
    let b = Box_::new("", "", BASE_CLASSES);
    let old = b.file("rec/old.mp4", 100, 30 * DAY);
    let r = b.cli(&["retain", old.to_str().unwrap()]).ok();
    assert!(
        r.stdout.contains("retained: media:rec/old.mp4"),
        "{}",
        r.stdout
    );
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["planned_files"], 0);
    assert!(old.exists());
    let ls = b.cli(&["ls", "--retained", "--json"]).ok().json();
    assert_eq!(ls.as_array().unwrap().len(), 1);
    let x = b.cli(&["explain", "media:rec/old.mp4"]).ok().stdout;
    assert!(
        x.contains("retained") && x.contains("never deleted automatically"),
        "{x}"
    );
    // The pin survives the file disappearing from the registry for a while.
    let tmp = b.dir.path().join("elsewhere.mp4");
    fs::rename(&old, &tmp).unwrap();
    b.cli(&["scan"]).ok();
    fs::rename(&tmp, &old).unwrap();
    assert_eq!(b.cli(&["gc", "--json"]).ok().json()["planned_files"], 0);
    assert!(old.exists());

    // Other spellings of the same path name the same pin.
    let r = b
        .cli(&[
            "retain",
            &format!("{}//rec/./old.mp4", b.media.display()),
            "media:rec//old.mp4/",
        ])
        .ok();
    assert_eq!(
        r.stdout
            .matches("already retained: media:rec/old.mp4")
            .count(),
        2,
        "{}",
        r.stdout
    );
    assert_eq!(
        b.cli(&["ls", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1,
        "no duplicate entries"
    );

    b.cli(&["unretain", "media:rec/old.mp4"]).ok();
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["deleted_files"], 1);
    assert!(!old.exists());
}

#[test]
fn explain_kept_unmatched_and_deleted_paths() {
    let b = Box_::new("", "", BASE_CLASSES);
    b.file("tmp/young.bin", 5, 10 * MIN);
    b.file("tmp/old.bin", 5, 2 * HOUR);
    b.file("other.txt", 5, DAY);

    let x = b
        .cli(&["explain", "media:tmp/young.bin", "--json"])
        .ok()
        .json();
    assert_eq!(x["class"]["name"], "tmp");
    assert_eq!(x["class"]["pattern"], "tmp/**");
    assert_eq!(x["verdict"]["verdict"], "keep");
    let s = x["summary"].as_str().unwrap();
    assert!(
        s.contains("becomes eligible at") && (s.contains("(in 20m") || s.contains("(in 19m")),
        "{s}"
    );

    let s = b
        .cli(&["explain", b.path("other.txt").to_str().unwrap()])
        .ok()
        .stdout;
    assert!(
        s.contains("matches no class") && s.contains("never touches it"),
        "{s}"
    );

    let s = b.cli(&["explain", "media:tmp/old.bin"]).ok().stdout;
    assert!(s.contains("eligible now (class tmp, ttl)"), "{s}");
    b.cli(&["gc"]).ok();
    let x = b
        .cli(&["explain", "media:tmp/old.bin", "--json"])
        .ok()
        .json();
    assert_eq!(x["on_disk"], false);
    let s = x["summary"].as_str().unwrap();
    assert!(
        s.starts_with("deleted at ") && s.contains("by class tmp, rule ttl (trigger: cli)"),
        "{s}"
    );
    assert_eq!(x["history"][0]["outcome"], "deleted");
}

#[test]
fn paths_outside_stores_are_refused() {
    let b = Box_::new("", "", BASE_CLASSES);
    for arg in [
        "/etc/passwd",
        "media:../config.toml",
        "nas:x",
        "relative/path",
        "media:/abs",
    ] {
        let r = b.cli(&["explain", arg]);
        assert_eq!(r.code, 65, "{arg}: {r:?}");
        assert!(
            r.stderr
                .contains("give an absolute path inside a store root or STORE:KEY"),
            "{}",
            r.stderr
        );
    }
    let dotdot = format!("{}/../config.toml", b.media.display());
    assert_eq!(b.cli(&["retain", &dotdot]).code, 65);
}

#[test]
fn symlinks_are_never_followed() {
    let b = Box_::new("", "", BASE_CLASSES);
    let outside = b.dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("precious.bin");
    fs::write(&victim, b"keep me").unwrap();
    set_age(&victim, 10 * DAY);
    fs::create_dir_all(b.path("tmp")).unwrap();
    // A symlinked directory and a symlinked file inside a temporary class.
    std::os::unix::fs::symlink(&outside, b.path("tmp/linkdir")).unwrap();
    std::os::unix::fs::symlink(&victim, b.path("tmp/link.bin")).unwrap();
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(
        gc["planned_files"], 0,
        "symlinks are not files of the store: {gc}"
    );
    assert!(victim.exists());
    assert!(fs::symlink_metadata(b.path("tmp/link.bin")).is_ok());
}

#[test]
fn blast_radius_guard_stops_the_pass() {
    let b = Box_::new("max_delete_per_pass = { files = 3 }", "", BASE_CLASSES);
    for i in 0..10u32 {
        b.file(&format!("tmp/{i}.bin"), 10, (i + 2) * HOUR);
    }
    let r = b.cli(&["gc"]).ok();
    assert!(
        r.stdout
            .contains("STOPPED: blast-radius guard: the plan selects 10 files"),
        "{}",
        r.stdout
    );
    let left = fs::read_dir(b.path("tmp")).unwrap().count();
    assert_eq!(left, 7);
    // Oldest first: the three oldest (7, 8, 9) went, the rest stay for the next pass.
    for i in 0..10 {
        assert_eq!(
            b.path(&format!("tmp/{i}.bin")).exists(),
            i < 7,
            "tmp/{i}.bin"
        );
    }
}

#[test]
fn empty_directories_are_pruned_after_their_grace() {
    let b = Box_::new(
        "",
        "prune_empty_dirs = true\nprune_grace = \"1h\"",
        BASE_CLASSES,
    );
    b.file("tmp/job/a/x.bin", 5, 2 * HOUR);
    b.cli(&["gc"]).ok();
    assert!(!b.path("tmp/job/a/x.bin").exists());
    // Just emptied by us: still within the grace period.
    assert!(b.path("tmp/job/a").is_dir());
    let old = std::time::SystemTime::now() - 2 * HOUR;
    for d in ["tmp/job/a", "tmp/job", "tmp"] {
        fs::File::open(b.path(d))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["pruned_dirs"], 3, "{gc}");
    assert!(!b.path("tmp").exists());
    assert!(b.media.is_dir(), "never the root");
}

#[test]
fn tags_label_files_and_select_them() {
    let b = Box_::new("", "", BASE_CLASSES);
    b.file("rec/final.mp4", 10, HOUR);
    b.file("rec/other.mp4", 10, HOUR);
    let r = b
        .cli(&[
            "tag",
            "media:rec/final.mp4",
            "--add",
            "event=match-42",
            "--add",
            "cam=1",
        ])
        .ok();
    assert!(
        r.stdout.contains("tagged: media:rec/final.mp4"),
        "{}",
        r.stdout
    );
    let ls = b
        .cli(&["ls", "--tag", "event=match-42", "--json"])
        .ok()
        .json();
    let ls = ls.as_array().unwrap();
    assert_eq!(ls.len(), 1);
    assert_eq!(
        ls[0]["tags"],
        serde_json::json!(["cam=1", "event=match-42"])
    );
    let x = b.cli(&["explain", "media:rec/final.mp4"]).ok().stdout;
    assert!(x.contains("tags: cam=1 event=match-42"), "{x}");
    b.cli(&["tag", "media:rec/final.mp4", "--remove", "cam=1"])
        .ok();
    let ls = b.cli(&["ls", "--tag", "cam=1", "--json"]).ok().json();
    assert_eq!(ls.as_array().unwrap().len(), 0);
    // Bad tags and missing files are refused, each with a reason.
    let r = b.cli(&["tag", "media:rec/final.mp4", "--add", "has space"]);
    assert_eq!(r.code, 65, "{r:?}");
    assert!(r.stderr.contains("bad tag"), "{}", r.stderr);
    let r = b.cli(&["tag", "media:rec/nope.mp4", "--add", "x"]);
    assert_eq!(r.code, 65);
    assert!(
        r.stderr.contains("no such file in the store"),
        "{}",
        r.stderr
    );
    assert_eq!(
        b.cli(&["tag", "media:rec/final.mp4"]).code,
        64,
        "nothing to do is a usage error"
    );
}

#[test]
fn files_open_or_locked_by_another_process_are_refused_until_released() {
    let b = Box_::new("", "", BASE_CLASSES);
    let held = b.file("tmp/held-open.bin", 10, 2 * HOUR);
    let locked = b.file("tmp/flocked.bin", 10, 2 * HOUR);
    let free = b.file("tmp/free.bin", 10, 2 * HOUR);
    // Real processes: one holds a file open (a thumbnailer reading), one holds a flock.
    let spawn = |script: &str, f: &std::path::Path| {
        std::process::Command::new("sh")
            .args(["-c", script])
            .arg(f)
            .spawn()
            .unwrap()
    };
    let mut reader = spawn("exec 9<\"$0\"; exec sleep 60", &held);
    let mut locker = spawn("exec 9<\"$0\"; flock 9; exec sleep 60", &locked);
    wait_for(
        "both holders to be in place",
        Duration::from_secs(10),
        || {
            let x = b
                .cli(&["explain", "media:tmp/flocked.bin", "--json"])
                .json();
            let y = b
                .cli(&["explain", "media:tmp/held-open.bin", "--json"])
                .json();
            x["in_use"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|u| u.as_str().unwrap().contains("flock held by pid"))
            }) && y["in_use"].as_array().is_some_and(|a| !a.is_empty())
        },
    );
    let x = b.cli(&["explain", "media:tmp/held-open.bin"]).ok().stdout;
    assert!(
        x.contains(&format!("IN USE (open by pid {} (sleep))", reader.id())),
        "{x}"
    );
    let ls = b.cli(&["ls", "--in-use", "--json"]).ok().json();
    let mut listed: Vec<(String, String)> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["in_use"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(listed.len(), 2, "{ls}");
    assert_eq!(listed[0].0, "tmp/flocked.bin");
    assert!(
        listed[1]
            .1
            .starts_with(&format!("open by pid {}", reader.id())),
        "{listed:?}"
    );

    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["deleted_files"], 1, "{gc}");
    assert_eq!(gc["refused"], 2);
    let why: Vec<String> = gc["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["result"]["outcome"] == "refused")
        .map(|r| r["result"]["detail"].as_str().unwrap().to_string())
        .collect();
    assert!(why.iter().all(|w| w.starts_with("in use: ")), "{why:?}");
    assert!(held.exists() && locked.exists() && !free.exists());

    // Released: eligible again, and the next pass deletes them.
    for c in [&mut reader, &mut locker] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["deleted_files"], 2, "{gc}");
    assert!(!held.exists() && !locked.exists());
}

#[test]
fn a_file_still_being_written_is_kept_until_it_goes_quiet() {
    let classes = "[[class]]\nname = \"parts\"\nstore = \"media\"\nmatch = [\"**/*.part\"]\nlifecycle = \"temporary\"\nttl = \"0s\"\nquiet_period = \"1h\"\n";
    let b = Box_::new("", "", classes);
    let writing = b.file("rec/live.mp4.part", 10, Duration::from_secs(5));
    let orphan = b.file("rec/crashed.mp4.part", 10, 2 * HOUR);
    let plan = b.cli(&["plan", "--json"]).ok().json();
    assert_eq!(paths_of(&plan), vec!["media:rec/crashed.mp4.part"]);
    let x = b.cli(&["explain", "media:rec/live.mp4.part"]).ok().stdout;
    assert!(
        x.contains("in use: still being written (modified 5s ago, within quiet_period 1h)"),
        "{x}"
    );
    b.cli(&["gc"]).ok();
    assert!(writing.exists() && !orphan.exists());
}

#[test]
fn leases_protect_paths_and_globs_until_released_or_expired() {
    let b = Box_::new("", "", BASE_CLASSES);
    let seg = b.file("hls/s1/a.ts", 10, 10 * MIN);
    let id = b.lease("media:hls/s1/a.ts", "1h", "thumbnailer");
    assert!(id.parse::<i64>().is_ok(), "lease prints its id: {id:?}");
    // A glob lease (absolute form) covers files that appear after it was taken.
    let glob = format!("{}/hls/s2/**", b.media.display());
    let gid = b
        .cli(&["lease", &glob, "--ttl", "1h", "--holder", "packager"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let later = b.file("hls/s2/later.ts", 10, 10 * MIN);

    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(
        (gc["refused"].as_u64(), gc["deleted_files"].as_u64()),
        (Some(2), Some(0)),
        "{gc}"
    );
    let details: Vec<&str> = gc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"]["detail"].as_str().unwrap())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.starts_with(&format!("in use: lease {id} by thumbnailer until"))),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.starts_with(&format!("in use: lease {gid} by packager"))),
        "{details:?}"
    );
    let x = b.cli(&["explain", "media:hls/s2/later.ts"]).ok().stdout;
    assert!(
        x.contains(&format!("IN USE (lease {gid} by packager")),
        "{x}"
    );
    assert_eq!(
        b.cli(&["leases", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let ls = b.cli(&["ls", "--in-use"]).ok().stdout;
    assert!(
        ls.contains("media:hls/s1/a.ts")
            && ls.contains(&format!("in use: lease {id} by thumbnailer")),
        "{ls}"
    );

    b.cli(&["release", &id]).ok();
    assert_eq!(
        b.cli(&["release", &id]).code,
        65,
        "a second release is refused"
    );
    assert_eq!(b.cli(&["gc", "--json"]).ok().json()["deleted_files"], 1);
    assert!(!seg.exists() && later.exists());

    // A lease runs out by itself: a crashed holder cannot pin files forever.
    b.cli(&["release", &gid]).ok();
    let taken = std::time::Instant::now();
    b.cli(&["lease", "media:hls/s2/later.ts", "--ttl", "5s"])
        .ok();
    let gc = b.cli(&["gc", "--json"]).ok().json();
    // (A one-shot gc rescans first: on a loaded machine it may outlast a short lease, which
    // is why the lease is 5 s and the check holds only for a gc that ran within it.)
    if taken.elapsed() < Duration::from_secs(5) {
        assert_eq!(gc["refused"], 1, "{gc}");
    }
    wait_for("the 5s lease to expire", Duration::from_secs(20), || {
        b.cli(&["gc", "--json"]).ok().json()["deleted_files"] == 1
    });
    assert!(!later.exists());
    assert!(
        b.cli(&["lease", "media:x", "--ttl", "0s"])
            .stderr
            .contains("must be above 0s")
    );
    assert_eq!(b.cli(&["lease", "/etc/*", "--ttl", "1m"]).code, 65);
}

#[test]
fn the_final_name_of_a_live_part_writer_is_in_use() {
    let b = Box_::new("", "", BASE_CLASSES);
    let fin = b.file("rec/show.mp4", 10, 8 * DAY); // expired by keep_for 7d
    let part = b.file("rec/show.mp4.part", 10, Duration::ZERO); // a writer is producing its successor
    let x = b.cli(&["explain", "media:rec/show.mp4"]).ok().stdout;
    assert!(
        x.contains("its writer is still writing rec/show.mp4.part (modified"),
        "{x}"
    );
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["refused"], 1, "{gc}");
    assert!(fin.exists());
    // Quiet, but still held open by its writer: still in use.
    set_age(&part, 2 * HOUR);
    let mut writer = std::process::Command::new("sh")
        .args(["-c", "exec 9>>\"$0\"; exec sleep 60"])
        .arg(&part)
        .spawn()
        .unwrap();
    wait_for(
        "the writer to hold the part file",
        Duration::from_secs(10),
        || {
            b.cli(&["explain", "media:rec/show.mp4"])
                .ok()
                .stdout
                .contains(&format!("(open by pid {} (sleep))", writer.id()))
        },
    );
    assert_eq!(b.cli(&["gc", "--json"]).ok().json()["refused"], 1);
    // The writer is gone and the part is quiet: the final name is free again.
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert_eq!(b.cli(&["gc", "--json"]).ok().json()["deleted_files"], 1);
    assert!(
        !fin.exists() && part.exists(),
        "the orphaned .part matches no class here, so it stays"
    );
}

#[test]
fn a_posix_lock_holder_is_named_and_protects_its_file() {
    let b = Box_::new("", "", BASE_CLASSES);
    let f = b.file("tmp/posix.bin", 10, 2 * HOUR);
    // fcntl(F_SETLKW) via Python's lockf: a POSIX record lock, as nginx-rtmp's recorder takes.
    let script = "import fcntl, sys, time\nf = open(sys.argv[1], 'r+')\nfcntl.lockf(f, fcntl.LOCK_EX)\ntime.sleep(60)\n";
    let mut holder = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&f)
        .spawn()
        .expect("python3");
    wait_for("the POSIX lock to show", Duration::from_secs(10), || {
        b.cli(&["explain", "media:tmp/posix.bin"])
            .ok()
            .stdout
            .contains(&format!("POSIX lock held by pid {}", holder.id()))
    });
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["refused"], 1, "{gc}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(b.cli(&["gc", "--json"]).ok().json()["deleted_files"], 1);
    assert!(!f.exists());
}

#[test]
fn a_lease_on_a_name_with_glob_characters_covers_that_file() {
    let b = Box_::new("", "", BASE_CLASSES);
    let f = b.file("tmp/Movie [1080p].bin", 10, 2 * HOUR);
    b.cli(&["lease", "media:tmp/Movie [1080p].bin", "--ttl", "1h"])
        .ok();
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["refused"], 1, "{gc}");
    assert!(f.exists());
}

// Issue 12, item 6: `plan`, `gc --dry-run`, `explain` and the real pass agree on every file,
// in text and JSON, on one tree with an open file, a lease, a live playlist's segments and
// files that are simply due.
#[test]
fn plan_dry_run_explain_and_the_pass_agree_on_every_file() {
    let classes = "[[class]]\nname = \"t\"\nstore = \"media\"\nmatch = [\"tmp/**\"]\nlifecycle = \"temporary\"\nttl = \"0s\"\nquiet_period = \"0s\"\n\n[[class]]\nname = \"hls\"\nstore = \"media\"\nmatch = [\"hls/**/*.ts\"]\nlifecycle = \"segment\"\nkeep_for = \"0s\"\nquiet_period = \"0s\"\n";
    let b = Box_::new("", "", classes);
    let open = b.file("tmp/open.bin", 10, MIN);
    let leased = b.file("tmp/leased.bin", 10, MIN);
    let plain = b.file("tmp/plain.bin", 10, MIN);
    let listed = b.file("hls/live/seg1.ts", 10, MIN);
    let left = b.file("hls/live/seg0.ts", 10, HOUR);
    fs::write(
        b.path("hls/live/index.m3u8"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:1.0,\nseg1.ts\n",
    )
    .unwrap();
    let _holder = fs::File::open(&open).unwrap();
    b.lease(leased.to_str().unwrap(), "1h", "thumbnailer");
    let refused = ["tmp/open.bin", "tmp/leased.bin", "hls/live/seg1.ts"];
    let deleted = ["tmp/plain.bin", "hls/live/seg0.ts"];

    let plan = b.cli(&["plan", "--json"]).ok().json();
    let plan_says = |p: &str| {
        let a = plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["path"] == p)
            .unwrap_or_else(|| panic!("{p} not planned: {plan}"));
        a["would_refuse"].as_str().map(str::to_string)
    };
    let text = b.cli(&["plan"]).ok().stdout;
    let dry = b.cli(&["gc", "--dry-run", "--json"]).ok().json();
    let dry_text = b.cli(&["gc", "--dry-run"]).ok().stdout;
    let dry_says = |p: &str| {
        dry["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == p)
            .map(|r| r["result"]["outcome"].as_str().unwrap().to_string())
    };
    let explain = |p: &str| b.cli(&["explain", &format!("media:{p}")]).ok().stdout;
    for p in refused {
        let why = plan_says(p).unwrap_or_else(|| panic!("plan would delete {p}: {plan}"));
        assert!(why.starts_with("in use: "), "{p}: {why}");
        assert_eq!(dry_says(p).as_deref(), Some("refused"), "{p}: {dry}");
        assert!(text.contains(&format!("refuse  media:{p}")), "{p}: {text}");
        assert!(
            dry_text.contains(&format!("would refuse media:{p}")),
            "{p}: {dry_text}"
        );
        let x = explain(p);
        assert!(
            x.contains("IN USE") && !x.contains("the next pass deletes it"),
            "{p}: {x}"
        );
    }
    for p in deleted {
        assert_eq!(plan_says(p), None, "{p}: {plan}");
        assert_eq!(dry_says(p).as_deref(), Some("would_delete"), "{p}: {dry}");
        let x = explain(p);
        assert!(x.contains("the next pass deletes it"), "{p}: {x}");
    }
    assert!(text.contains("total: 2 files to delete"), "{text}");
    assert_eq!(dry["refused"], 3, "{dry}");

    // The pass does exactly that.
    let gc = b.cli(&["gc", "--json"]).json();
    for r in gc["results"].as_array().unwrap() {
        let p = r["path"].as_str().unwrap();
        let want = if refused.contains(&p) {
            "refused"
        } else {
            "deleted"
        };
        assert_eq!(r["result"]["outcome"], want, "{p}: {gc}");
    }
    assert_eq!(gc["deleted_files"], 2, "{gc}");
    assert!(open.exists() && leased.exists() && listed.exists());
    assert!(!plain.exists() && !left.exists());
}

/// Like every Unix tool: a relative path is taken against the working directory (leading
/// `../` folded), and an unknown class is an error with a suggestion, not an empty list
/// (issue 15).
#[test]
fn relative_paths_and_unknown_class_names() {
    let b = Box_::new("", "", BASE_CLASSES);
    b.file("rec/cam1/a.mp4", 10, std::time::Duration::from_secs(60));
    let run = |dir: &std::path::Path, args: &[&str]| {
        Run::from(
            std::process::Command::new(bin())
                .current_dir(dir)
                .arg("--config")
                .arg(&b.config)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let cam = b.path("rec/cam1");
    for arg in ["a.mp4", "./a.mp4", "../cam1/a.mp4"] {
        let r = run(&cam, &["explain", arg]);
        assert_eq!(r.code, 0, "{arg}: {}", r.stderr);
        assert!(
            r.stdout.starts_with("media:rec/cam1/a.mp4"),
            "{arg}: {}",
            r.stdout
        );
    }
    let r = run(&b.media, &["retain", "rec/cam1/a.mp4"]);
    assert!(
        r.stdout.contains("retained: media:rec/cam1/a.mp4"),
        "{}",
        r.stderr
    );
    let r = b.cli(&["ls", "--class", "recs"]);
    assert_eq!(r.code, 65);
    assert!(
        r.stderr
            .contains("unknown class \"recs\"; did you mean \"rec\"?"),
        "{}",
        r.stderr
    );
}

/// `retain` takes globs, as `lease` does (issue 15): a glob pins the files that match it
/// now (one result each), `unretain` with a glob unpins the pinned ones, and a glob that
/// matches nothing is an error.
#[test]
fn retain_and_unretain_take_globs() {
    let b = Box_::new("", "", BASE_CLASSES);
    for f in ["rec/cam1/a.mp4", "rec/cam1/b.mp4", "rec/cam2/c.mp4"] {
        b.file(f, 10, Duration::from_secs(60));
    }
    let r = b.cli(&["retain", "media:rec/cam1/*.mp4"]).ok();
    assert!(
        r.stdout.contains("retained: media:rec/cam1/a.mp4"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("retained: media:rec/cam1/b.mp4"),
        "{}",
        r.stdout
    );
    let pinned = b.cli(&["ls", "--retained", "--json"]).ok().json();
    assert_eq!(pinned.as_array().unwrap().len(), 2, "{pinned}");
    let r = b.cli(&["unretain", "media:rec/**"]).ok();
    assert_eq!(r.stdout.matches("unretained:").count(), 2, "{}", r.stdout);
    let r = b.cli(&["retain", "media:rec/cam9/*"]);
    assert_eq!(r.code, 65);
    assert!(r.stderr.contains("matches no file"), "{}", r.stderr);
}
