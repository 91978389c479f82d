//! The wall clock is a claim: the real daemon under libfaketime (its wall clock moved by a
//! timestamp file while it runs; CLOCK_BOOTTIME and the monotonic clocks left real), with
//! real files. A jump holds every time-based deletion and no lease ends by it; `clock
//! accept` resumes. Run against an old build with MEDIARETAIN_TEST_BIN to see it fail.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const DAY: u64 = 86_400;

/// The environment that puts the daemon's wall clock under `rc` (a FAKETIME spec such as
/// `+0` or `+365d`, read again at most once a second); file times and every clock but
/// CLOCK_REALTIME stay real.
fn faked(rc: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("LD_PRELOAD", FAKETIME.to_string()),
        ("FAKETIME_TIMESTAMP_FILE", rc.display().to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ("FAKETIME_CACHE_DURATION", "1".into()),
        ("NO_FAKE_STAT", "1".into()),
    ]
}

fn start(b: &Box_, env: &[(&'static str, String)]) -> Daemon {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.daemon_env(None, &env)
}

fn status(b: &Box_) -> serde_json::Value {
    b.cli(&["status", "--json"]).ok().json()
}

/// How far the clock jumped, in seconds, by `status --json`'s `clock_jumped` (0: none).
fn by(j: &serde_json::Value) -> u64 {
    j["by"]
        .as_str()
        .map_or(0, |b| humantime::parse_duration(b).unwrap().as_secs())
}

/// Recordings left of `paths`.
fn left(paths: &[PathBuf]) -> usize {
    paths.iter().filter(|p| p.exists()).count()
}

/// Local passes finished so far (by the daemon's clock: the time of the last one).
fn last_pass_at(b: &Box_) -> String {
    status(b)["activity"]["last_pass"]["at"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits for two more lifecycle passes (each `at` differs: gc_interval is 1 s).
fn two_more_passes(d: &Daemon, b: &Box_) {
    for _ in 0..2 {
        let before = last_pass_at(b);
        d.wait_for("a lifecycle pass", Duration::from_secs(20), || {
            last_pass_at(b) != before
        });
    }
}

const RECORDINGS: &str = r#"
[[class]]
name = "tmp"
store = "media"
match = ["tmp/**"]
lifecycle = "temporary"
ttl = "30m"

[[class]]
name = "rec"
store = "media"
match = ["rec/**/*.flv"]
lifecycle = "recording"
keep_for = "30d"
"#;

/// 200 recordings aged 1–28 days, keep_for 30d, a 2 h lease on one; the wall clock jumps
/// +365 d. Old code: every recording deleted within seconds and the lease gone. Now:
/// nothing goes, status says CLOCK JUMPED (and the metric), the lease stays; after
/// `clock accept` the rules resume (the leased one still kept by its lease).
#[test]
fn a_forward_jump_holds_keep_for_and_leases_until_accepted() {
    let b = Box_::new("gc_interval = \"1s\"", "", RECORDINGS);
    let rc = b.dir.path().join("faketime.rc");
    fs::write(&rc, "+0\n").unwrap();
    let recs: Vec<PathBuf> = (0..200u64)
        .map(|i| {
            let age = Duration::from_secs(DAY + i * 27 * DAY / 200);
            b.file(&format!("rec/cam{}/r{i:03}.flv", i % 4), 1024, age)
        })
        .collect();
    let tmp = b.file("tmp/old.part", 10, Duration::from_secs(3600));
    let d = start(&b, &faked(&rc));
    d.wait_for("the old temp file deleted", Duration::from_secs(20), || {
        !tmp.exists()
    });
    two_more_passes(&d, &b);
    assert_eq!(left(&recs), 200, "kept before the jump (all within 30d)");
    let leased = "media:rec/cam1/r001.flv";
    let lease = b.lease(leased, "2h", "packager");
    assert!(!lease.is_empty());

    fs::write(&rc, "+365d\n").unwrap();
    // The daemon looks at the clock on every pass (1 s) and on every status.
    d.wait_for(
        "CLOCK JUMPED in status (or recordings deleted)",
        Duration::from_secs(20),
        || !status(&b)["clock_jumped"].is_null() || left(&recs) < 200,
    );
    two_more_passes(&d, &b);
    let gone = 200 - left(&recs);
    assert_eq!(
        gone, 0,
        "{gone} of 200 recordings deleted after the wall clock jumped +365d"
    );
    let leases = b.cli(&["leases", "--json"]).ok().json();
    assert_eq!(
        leases.as_array().map(Vec::len),
        Some(1),
        "the 2 h lease ended by the jumped clock: {leases}"
    );
    let st = status(&b);
    let j = &st["clock_jumped"];
    assert_eq!(j["direction"], "forward", "{j}");
    assert!(by(j) > 364 * DAY, "{j}");
    let text = b.cli(&["status"]).ok().stdout;
    assert!(text.contains("CLOCK JUMPED"), "{text}");
    let sock = b.state().join("control.sock");
    let (_, metrics) = socket_http(
        &sock,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        metrics.lines().any(|l| l == "mediaretain_clock_jumped 1.0"),
        "{metrics}"
    );
    let log = d.log.lock().unwrap().clone();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("CLOCK JUMPED")),
        "no error line says the clock jumped:\n{log}"
    );
    // The audit trail from before the jump is not pruned by the jumped clock (90d).
    let hist = b
        .cli(&["explain", "media:tmp/old.part", "--json"])
        .ok()
        .json();
    assert_eq!(
        hist["history"].as_array().map(Vec::len),
        Some(1),
        "the audit record of a deletion before the jump was pruned: {hist}"
    );
    // Explain says why a file past keep_for by the wall clock stays.
    let ex = b.cli(&["explain", "media:rec/cam0/r000.flv"]).ok().stdout;
    assert!(ex.contains("CLOCK JUMPED"), "{ex}");

    // An operator confirms the clock: the time rules resume; the lease keeps its 2 h.
    let acc = b.cli(&["clock", "accept"]).ok().stdout;
    assert!(acc.contains("taken as true"), "{acc}");
    d.wait_for(
        "every recording but the leased one deleted",
        Duration::from_secs(30),
        || left(&recs) == 1,
    );
    assert!(recs[1].exists(), "the leased recording went");
    assert!(status(&b)["clock_jumped"].is_null());
    let leases = b.cli(&["leases", "--json"]).ok().json();
    assert_eq!(leases.as_array().map(Vec::len), Some(1), "{leases}");
    d.stop();
}

/// Files first seen while the wall clock was a year ahead; the clock is set back (a
/// restart within this boot: the last trusted reading is in the state directory). Old
/// code: nothing noticed, the files kept by a first-seen stamp a year ahead. Now: status
/// says CLOCK JUMPED at start, explain says the stamp is ahead, a lease keeps its time,
/// and `clock accept` brings the stamps ahead of the clock back to now.
#[test]
fn a_clock_set_back_is_found_at_restart_and_stamps_ahead_are_corrected() {
    let classes = r#"
[[class]]
name = "imp"
store = "media"
match = ["imp/**"]
lifecycle = "recording"
keep_for = "1h"
age_from = "first_seen"
"#;
    let b = Box_::new("gc_interval = \"1s\"", "", classes);
    let rc = b.dir.path().join("faketime.rc");
    fs::write(&rc, "+365d\n").unwrap();
    let files: Vec<PathBuf> = (0..20)
        .map(|i| b.file(&format!("imp/f{i:02}.mp4"), 100, Duration::from_secs(60)))
        .collect();
    let d = start(&b, &faked(&rc));
    two_more_passes(&d, &b);
    let lease = b.lease("media:imp/f00.mp4", "2h", "packager");
    assert!(!lease.is_empty());
    d.stop();

    fs::write(&rc, "+0\n").unwrap();
    let d = start(&b, &faked(&rc));
    let st = status(&b);
    let j = &st["clock_jumped"];
    assert!(
        j["direction"] == "back" && by(j) > 364 * DAY,
        "a clock set back a year was not noticed at start: {st}"
    );
    let log = d.log.lock().unwrap().clone();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("jumped back")),
        "{log}"
    );
    let ex = b.cli(&["explain", "media:imp/f05.mp4"]).ok().stdout;
    assert!(ex.contains("ahead of the clock"), "{ex}");
    // The lease keeps the 2 h it was given (by CLOCK_BOOTTIME), whatever the wall says.
    let expires = |b: &Box_| {
        let l = b.cli(&["leases", "--json"]).ok().json();
        let t = l[0]["expires"].as_str().unwrap_or_default().to_string();
        chrono::DateTime::parse_from_rfc3339(&t)
            .unwrap_or_else(|e| panic!("{l}: {e}"))
            .timestamp()
    };
    let now = || chrono::Utc::now().timestamp();

    let acc = b.cli(&["clock", "accept"]).ok().stdout;
    assert!(acc.contains("taken as true"), "{acc}");
    let e = b
        .cli(&["explain", "media:imp/f05.mp4", "--json"])
        .ok()
        .json();
    let seen = chrono::DateTime::parse_from_rfc3339(e["entry"]["first_seen"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(
        (seen - now()).abs() < 600,
        "first seen a year ahead is kept a year: {e}"
    );
    let left = expires(&b) - now();
    assert!(
        (3600..=7300).contains(&left),
        "the lease has {left} s left, not its 2 h"
    );
    assert!(
        files.iter().all(|f| f.exists()),
        "within keep_for 1h of now"
    );
    d.stop();
}

/// A jump the clock then keeps for `clock_hold` (3 s here) is taken as true by itself:
/// the held deletions resume without an operator. (Its config key is new: an old build
/// refuses the config.)
#[test]
fn a_jump_that_stays_put_for_the_hold_resumes_by_itself() {
    let b = Box_::new("gc_interval = \"1s\"\nclock_hold = \"3s\"", "", RECORDINGS);
    let rc = b.dir.path().join("faketime.rc");
    fs::write(&rc, "+0\n").unwrap();
    let recs: Vec<PathBuf> = (0..20u64)
        .map(|i| {
            b.file(
                &format!("rec/r{i:02}.flv"),
                100,
                Duration::from_secs(DAY + i * DAY),
            )
        })
        .collect();
    let d = start(&b, &faked(&rc));
    two_more_passes(&d, &b);
    fs::write(&rc, "+365d\n").unwrap();
    d.wait_for("CLOCK JUMPED in status", Duration::from_secs(20), || {
        !status(&b)["clock_jumped"].is_null() || left(&recs) < 20
    });
    assert_eq!(left(&recs), 20, "deleted at the jump");
    // Steady for 3 s by CLOCK_BOOTTIME: taken as true, keep_for applies again.
    d.wait_for(
        "the recordings deleted after the hold",
        Duration::from_secs(30),
        || left(&recs) == 0,
    );
    assert!(status(&b)["clock_jumped"].is_null());
    let log = d.log.lock().unwrap().clone();
    assert!(log.contains("stayed put for clock_hold"), "{log}");
    d.stop();
}

/// After a reboot CLOCK_BOOTTIME starts over and only "behind the registry's newest stamp"
/// is provable: the anchor is made another boot's, and the clock set back a year is still
/// found (by the first sights stamped a year ahead). Once accepted, the next "reboot" does
/// not find those accepted stamps ahead again.
#[test]
fn after_a_reboot_a_clock_behind_the_registry_is_found() {
    let classes = r#"
[[class]]
name = "imp"
store = "media"
match = ["imp/**"]
lifecycle = "recording"
keep_for = "1h"
age_from = "first_seen"
"#;
    let b = Box_::new("gc_interval = \"1s\"", "", classes);
    let rc = b.dir.path().join("faketime.rc");
    fs::write(&rc, "+365d\n").unwrap();
    for i in 0..5 {
        b.file(&format!("imp/f{i}.mp4"), 100, Duration::from_secs(60));
    }
    let d = start(&b, &faked(&rc));
    two_more_passes(&d, &b);
    d.stop();
    let reboot = |b: &Box_| {
        // (An old build keeps no anchor: nothing to make another boot's.)
        let anchor = b.state().join("clock");
        if let Ok(text) = fs::read_to_string(&anchor) {
            let rest = text.split_once(' ').unwrap().1.to_string();
            fs::write(&anchor, format!("another-boot {rest}")).unwrap();
        }
    };
    reboot(&b);
    fs::write(&rc, "+0\n").unwrap();
    let d = start(&b, &faked(&rc));
    let st = status(&b);
    let j = &st["clock_jumped"];
    assert!(
        j["direction"] == "back" && j["cause"].as_str().unwrap_or("").contains("newest"),
        "a clock behind the registry's newest stamp was not noticed after a reboot: {st}"
    );
    b.cli(&["clock", "accept"]).ok();
    d.stop();
    reboot(&b);
    let d = start(&b, &faked(&rc));
    let st = status(&b);
    assert!(st["clock_jumped"].is_null(), "accepted, found again: {st}");
    d.stop();
}
