//! Leases against the real daemon (issue 24, item 4): a `socket_group` member's lease
//! cannot keep a full disk (it gives way at a hard limit, with an alarm naming it; root's
//! lease stays absolute and STUCK names it); lease patterns are capped with a clear 4xx;
//! the lease set is compiled once per change, not per chunk, plan or explain.
//!
//! Needs root (a tmpfs, a second user through `setpriv`), as CI runs it.
//! `MEDIARETAIN_TEST_BIN=/path/to/old/mediaretain` runs them against another build.

mod common;
use common::users::{GROUP, MEMBER, user};
use common::*;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const T: Duration = Duration::from_secs(30);

/// `mediaretain args…` as the member (its own uid, gid and groups; nothing of root's).
fn cli_member(b: &Box_, args: &[&str]) -> Run {
    let (uid, gid) = user(MEMBER);
    let out = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--init-groups")
        .arg("--reset-env")
        .arg(bin())
        .arg("--config")
        .arg(&b.config)
        .args(args)
        .output()
        .unwrap();
    Run::from(out)
}

fn volume(b: &Box_) -> serde_json::Value {
    b.cli(&["status", "--json"]).ok().json()["volumes"][0].clone()
}

const PRESSURE_CLASSES: &str = r#"
[[class]]
name = "hls"
store = "media"
match = ["hls/**/*.ts"]
lifecycle = "segment"
keep_for = "1h"
quiet_period = "0s"

[[class]]
name = "keep"
store = "media"
match = ["keep/**"]
lifecycle = "segment"
keep_for = "1h"
quiet_period = "0s"

[watchdog]
high = "95%"
low = "90%"
horizon = "0s"
interval = "1s"

[[watchdog.volume]]
path = "media"
high = "80%"
low = "60%"
"#;

/// A thumbnailer's user (a `socket_group` member) leases `media:**` for 30 days while a
/// writer fills a 64 MiB tmpfs with segments (twice its size, waiting for space when it is
/// full): the member's lease gives way at the high watermark once nothing else is left, the
/// writer gets its space, and the alarm and `status` name the lease, its holder and uid.
/// Root's lease on `keep/**` stays absolute: filling the volume with its files makes it
/// STUCK, and STUCK names root's lease.
///
/// On the code before the fix: nothing may be deleted (every file is leased), the disk
/// stays at 100% and the writer waits in vain ("the writer's space … 0 deleted").
#[test]
fn a_members_lease_gives_way_to_a_full_disk_and_roots_does_not() {
    let (uid, _) = user(MEMBER);
    let b = Box_::new(
        &format!("socket_group = \"{GROUP}\"\ngc_interval = \"1h\"\nscan_interval = \"1h\""),
        "",
        PRESSURE_CLASSES,
    );
    fs::set_permissions(b.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let _fs = Tmpfs::mount(&b.path(""), "64m");
    for d in ["hls/live", "keep"] {
        fs::create_dir_all(b.path(d)).unwrap();
    }
    let d = b.daemon(None);
    let r = cli_member(
        &b,
        &["lease", "media:**", "--ttl", "30d", "--holder", "thumbs"],
    )
    .ok();
    let lease = r.stdout.trim().to_string();
    let root_lease = b.lease("media:keep/**", "30d", "ops");

    // The writer: 128 one-MiB segments (twice the volume) at up to 32 MiB/s; on ENOSPC
    // it waits (polling, 20 s at most per segment) for space and writes again.
    let seg = vec![0x47u8; MIB];
    let start = Instant::now();
    let mut enospc = 0;
    for n in 0..128usize {
        let due = start + Duration::from_secs_f64((n * MIB) as f64 / (32 * MIB) as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let p = b.path(&format!("hls/live/seg{n:05}.ts"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match fs::File::create(&p).and_then(|mut f| f.write_all(&seg)) {
                Ok(()) => break,
                Err(e) => {
                    enospc += 1;
                    let _ = fs::remove_file(&p);
                    assert!(
                        Instant::now() < deadline,
                        "the writer's space never came back at segment {n} ({e}): {}",
                        volume(&b)
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    wait_for("the volume back under high", T, || {
        volume(&b)["used_pct"].as_f64().unwrap() < 80.0
    });
    let log = || d.log.lock().unwrap().clone();
    wait_for("the alarm naming the lease", T, || {
        log().contains(&format!("lease {lease} by thumbs (uid {uid}) on media:**"))
    });
    assert!(log().contains("gave way"), "{}", log());
    // The member's lease is still there (it gave way, it was not taken away).
    let leases = b.cli(&["leases", "--json"]).ok().json();
    assert!(
        leases
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == lease.parse::<i64>().unwrap()),
        "{leases}"
    );
    let v = volume(&b);
    let gave = &v["last_pass"]["leases_gave_way"];
    assert!(
        gave.as_array().is_some_and(|g| g
            .iter()
            .any(|l| l["holder"] == "thumbs" && l["uid"] == uid && l["files"].as_u64() > Some(0))),
        "{v}"
    );
    println!("writer met ENOSPC {enospc} times (then waited for space)");

    // Root's lease is absolute: with the segments gone (by hand), its files fill the volume
    // past high and it is STUCK, naming root's lease.
    fs::remove_dir_all(b.path("hls")).unwrap();
    let mut n = 0;
    while volume(&b)["used_pct"].as_f64().unwrap() < 85.0 {
        fs::write(b.path(&format!("keep/k{n:03}.ts")), &seg).unwrap();
        n += 1;
        assert!(n < 80, "keep/ did not fill the volume");
    }
    let stuck = Instant::now() + T;
    while volume(&b)["state"] != "stuck" {
        assert!(
            Instant::now() < stuck,
            "the volume is not stuck: {}\n{}",
            volume(&b),
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = volume(&b);
    let kept = &v["last_pass"]["kept"]["leases"];
    assert!(
        kept.as_array().is_some_and(|k| k
            .iter()
            .any(|l| l["id"] == root_lease.parse::<i64>().unwrap()
                && l["holder"] == "ops"
                && l["uid"] == 0)),
        "{v}"
    );
    for i in 0..n {
        assert!(
            b.path(&format!("keep/k{i:03}.ts")).exists(),
            "root's lease kept k{i:03}"
        );
    }
    let text = b.cli(&["status"]).ok().stdout;
    assert!(
        text.contains(&format!(
            "in use by lease {root_lease} by ops (uid 0) on media:keep/**"
        )),
        "{text}"
    );
    let x = b.cli(&["explain", "media:keep/k000.ts"]).ok().stdout;
    assert!(
        x.contains(&format!("lease {root_lease} by ops until")),
        "{x}"
    );
    assert!(x.contains("(uid 0, on media:keep/**)"), "{x}");
    wait_for("the STUCK alarm naming root's lease", T, || {
        log().contains("is STUCK at")
            && log().contains(&format!("in use by lease {root_lease} by ops"))
    });
    d.stop();
}

/// A lease pattern too big or too complex is refused with a 422 naming the limit, as root
/// too; nothing is stored.
///
/// On the code before the fix: both are taken (200, a lease id).
#[test]
fn lease_patterns_are_capped_with_a_clear_4xx() {
    let b = Box_::new("", "", BASE_CLASSES);
    let d = b.daemon(None);
    let sock = b.state().join("control.sock");
    let long = format!("media:hls/{}*.ts", "ab/".repeat(400));
    let (code, body) = api(
        &sock,
        "/v1/lease",
        &serde_json::json!({"path": long, "ttl": "60s"}).to_string(),
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("max pattern bytes"), "{body}");
    let alts: Vec<String> = (0..60).map(|i| format!("c{i}")).collect();
    let many = format!("media:hls/{{{}}}/*.ts", alts.join(","));
    let (code, body) = api(
        &sock,
        "/v1/lease",
        &serde_json::json!({"path": many, "ttl": "60s"}).to_string(),
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("max alternation branches"), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["exit"], 65, "{body}");
    // The CLI says the same.
    let r = b.cli(&["lease", &many, "--ttl", "60s"]);
    assert_eq!(r.code, 65, "{r:?}");
    assert!(
        r.stderr.contains("max alternation branches"),
        "{}",
        r.stderr
    );
    let leases = b.cli(&["leases", "--json"]).ok().json();
    assert_eq!(leases.as_array().unwrap().len(), 0, "{leases}");
    // Within the limits: taken.
    let ok = format!("media:hls/{{{}}}/*.ts", alts[..32].join(","));
    b.cli(&["lease", &ok, "--ttl", "60s"]).ok();
    d.stop();
}

fn lease_stats(b: &Box_) -> (u64, u64) {
    let st = b.cli(&["status", "--json"]).ok().json();
    let l = &st["leases"];
    (
        l["rebuilds"]
            .as_u64()
            .unwrap_or_else(|| panic!("no lease counters in status: {st}")),
        l["globs_compiled"].as_u64().unwrap(),
    )
}

/// Counting, not timing: with 21 glob leases taken before the daemon starts, its passes
/// over 2,000 due files (4 chunks of 512), `plan`, a dry run, `explain` and `ls --in-use`
/// read and compile the lease set once in all; a renewal reads it once more without
/// compiling any glob again; a new pattern compiles one glob.
///
/// On the code before the fix: `status` has no lease counters (the set and every glob
/// were rebuilt for each chunk, plan and explain).
#[test]
fn the_lease_set_is_compiled_once_per_change_not_per_chunk() {
    let b = Box_::new(
        "gc_interval = \"1h\"\nscan_interval = \"1h\"",
        "",
        BASE_CLASSES,
    );
    for i in 0..2000 {
        b.file(&format!("tmp/x/f{i:05}"), 1, Duration::from_secs(3600));
    }
    // Taken before the daemon starts (the one-shot command works on the registry).
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(b.lease(&format!("media:tmp/{{y{i},z{i}}}/**"), "1h", "thumbs"));
    }
    b.lease("media:tmp/x/f0000[0-4]", "1h", "thumbs");
    let d = b.daemon(None);
    b.cli(&["gc", "--dry-run", "--json"]).ok();
    b.cli(&["gc", "--json"]).ok();
    let left = fs::read_dir(b.path("tmp/x")).unwrap().count();
    assert_eq!(left, 5, "the leased files stay, the rest went");
    b.cli(&["plan", "--json"]).ok();
    b.cli(&["explain", "media:tmp/x/f00000"]).ok();
    let ls = b.cli(&["ls", "--in-use", "--json"]).ok().json();
    assert_eq!(ls.as_array().unwrap().len(), 5, "{ls}");
    assert_eq!(
        lease_stats(&b),
        (1, 21),
        "leases unchanged since the start: read once, each pattern compiled once"
    );
    // A renewal is a change: read again once, no glob compiled again.
    b.cli(&["renew", &ids[0], "--ttl", "2h"]).ok();
    b.cli(&["gc", "--json"]).ok();
    b.cli(&["plan", "--json"]).ok();
    assert_eq!(lease_stats(&b), (2, 21));
    // A new pattern: one more glob.
    b.lease("media:tmp/new/**", "1h", "thumbs");
    b.cli(&["plan", "--json"]).ok();
    b.cli(&["explain", "media:tmp/x/f00001"]).ok();
    assert_eq!(lease_stats(&b), (3, 22));
    d.stop();
}
