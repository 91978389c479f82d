//! Issue 10.7: names that are not UTF-8 (and names with a backslash) are listed distinct,
//! round-trip through `ls --json` into `explain`, and can be retained and leased one by one,
//! from raw bytes and from the spelling `ls` prints (`rec/a\xffb.mp4`). NUL stays refused.
//!
//! Old code: `ls` printed `rec/a�b.mp4` for two different files, `ls --json` died with exit
//! 74, clap refused raw bytes (exit 64) and the spelled form named nothing.

mod common;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Box_, Run, bin, set_age, wait_for};

const HOUR: Duration = Duration::from_secs(3600);

/// The four names: two that differ only in a byte that is not UTF-8, one with a
/// backslash, one normal; with the spelling each must be listed by.
const NAMES: [(&[u8], &str); 4] = [
    (b"rec/a\xffb.mp4", r"rec/a\xffb.mp4"),
    (b"rec/a\xfeb.mp4", r"rec/a\xfeb.mp4"),
    (br"rec/back\slash.mp4", r"rec/back\\slash.mp4"),
    (b"rec/normal.mp4", "rec/normal.mp4"),
];

const CLASSES: &str = r#"
[[class]]
name = "rec"
store = "media"
match = ["rec/**"]
lifecycle = "recording"
keep_for = "1h"
"#;

fn raw(rel: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(rel))
}

/// A box whose four recordings are all past keep_for (2 h old).
fn odd_box() -> (Box_, Vec<PathBuf>) {
    let b = Box_::new("", "", CLASSES);
    std::fs::create_dir_all(b.media.join("rec")).unwrap();
    let files = NAMES
        .iter()
        .map(|(rel, _)| make(&b, rel, 2 * HOUR))
        .collect();
    (b, files)
}

fn make(b: &Box_, rel: &[u8], age: Duration) -> PathBuf {
    let p = b.media.join(raw(rel));
    std::fs::write(&p, rel).unwrap();
    set_age(&p, age);
    p
}

/// `mediaretain --config CONFIG args…` with arguments that need not be UTF-8.
fn cli_os(b: &Box_, args: &[&OsStr]) -> Run {
    let out = Command::new(bin())
        .arg("--config")
        .arg(&b.config)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    Run::from(out)
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn inode(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).unwrap().ino()
}

#[test]
fn odd_names_are_listed_distinct_and_explained_one_by_one() {
    let (b, files) = odd_box();
    let ls = b.cli(&["ls"]).ok().stdout;
    for (_, spelled) in NAMES {
        let want = format!("media:{spelled} ");
        assert_eq!(
            ls.lines().filter(|l| l.starts_with(&want)).count(),
            1,
            "{spelled} listed once, as itself:\n{ls}"
        );
    }

    // One odd file must not break all JSON output; each path fed back finds its own file.
    let r = b.cli(&["ls", "--json"]);
    assert_eq!(r.code, 0, "ls --json: {}", r.stderr);
    let entries = r.json();
    let mut paths: Vec<String> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    let mut want: Vec<String> = NAMES.iter().map(|(_, s)| s.to_string()).collect();
    want.sort();
    assert_eq!(paths, want);
    for ((_, spelled), file) in NAMES.iter().zip(&files) {
        let x = b
            .cli(&["explain", &format!("media:{spelled}"), "--json"])
            .ok()
            .json();
        assert_eq!(x["path"], *spelled, "{x}");
        assert_eq!(x["on_disk"], true, "{spelled}: {x}");
        assert_eq!(
            x["entry"]["ino"],
            inode(file),
            "{spelled} finds its own file: {x}"
        );
    }

    // Raw bytes from the shell (`explain "$(printf '/root/rec/a\xffb.mp4')"`) work too,
    // absolute or STORE:KEY, and answer in the spelling.
    for (rel, spelled) in &NAMES[..2] {
        let mut abs = b.media.as_os_str().to_os_string();
        abs.push("/");
        abs.push(OsStr::from_bytes(rel));
        let mut key = OsString::from("media:");
        key.push(OsStr::from_bytes(rel));
        for arg in [abs, key] {
            let r = cli_os(&b, &[os("explain"), &arg]);
            assert_eq!(r.code, 0, "{arg:?}: {}", r.stderr);
            assert!(
                r.stdout.starts_with(&format!("media:{spelled}\n")),
                "{arg:?}: {}",
                r.stdout
            );
        }
    }
}

#[test]
fn retain_pins_exactly_the_odd_name_given_raw_or_spelled() {
    for (i, how) in ["raw", "spelled"].iter().enumerate() {
        let (b, files) = odd_box();
        let (rel, spelled) = NAMES[i];
        let r = match *how {
            "raw" => {
                let mut abs = b.media.as_os_str().to_os_string().into_vec();
                abs.push(b'/');
                abs.extend_from_slice(rel);
                cli_os(&b, &[os("retain"), &OsString::from_vec(abs)])
            }
            _ => b.cli(&["retain", &format!("media:{spelled}")]),
        };
        assert_eq!(r.code, 0, "{how}: {}", r.stderr);
        assert_eq!(r.stdout, format!("retained: media:{spelled}\n"), "{how}");
        let gc = b.cli(&["gc", "--json"]).ok().json();
        assert_eq!(gc["deleted_files"], 3, "{how}: {gc}");
        for (j, f) in files.iter().enumerate() {
            assert_eq!(f.exists(), i == j, "{how}: {}", f.display());
        }
        // The report names each deleted file in the spelling too.
        let mut deleted: Vec<&str> = gc["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap())
            .collect();
        deleted.sort();
        let mut others: Vec<&str> = (0..4).filter(|&j| j != i).map(|j| NAMES[j].1).collect();
        others.sort();
        assert_eq!(deleted, others, "{how}");
        let pinned = b.cli(&["ls", "--retained", "--json"]).ok().json();
        assert_eq!(pinned[0]["path"], spelled, "{how}: {pinned}");
        assert_eq!(pinned.as_array().unwrap().len(), 1, "{how}: {pinned}");
        // The audit trail is found by the same name.
        let x = b
            .cli(&["explain", &format!("media:{spelled}"), "--json"])
            .ok()
            .json();
        assert_eq!(x["history"][0]["action"], "retain", "{how}: {x}");
        assert_eq!(x["history"][0]["path"], spelled, "{how}: {x}");
    }
}

#[test]
fn tag_and_unretain_take_odd_names_raw_or_spelled() {
    let (b, _files) = odd_box();
    let mut key = OsString::from("media:");
    key.push(OsStr::from_bytes(NAMES[1].0));
    let r = cli_os(&b, &[os("tag"), &key, os("--add"), os("event=x")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, format!("tagged: media:{}\n", NAMES[1].1));
    let tagged = b.cli(&["ls", "--tag", "event=x", "--json"]).ok().json();
    assert_eq!(tagged.as_array().unwrap().len(), 1, "{tagged}");
    assert_eq!(tagged[0]["path"], NAMES[1].1, "{tagged}");
    // A backslash name given as `find` prints it (one backslash) or as `ls` spells it.
    for arg in [r"media:rec/back\slash.mp4", r"media:rec/back\\slash.mp4"] {
        let r = b.cli(&["retain", arg]).ok();
        assert_eq!(
            r.stdout.trim_end().rsplit(' ').next(),
            Some(r"media:rec/back\\slash.mp4"),
            "{arg}: {}",
            r.stdout
        );
    }
    let r = b.cli(&["unretain", r"media:rec/back\\slash.mp4"]).ok();
    assert_eq!(r.stdout, "unretained: media:rec/back\\\\slash.mp4\n");
    assert_eq!(
        b.cli(&["ls", "--retained", "--json"]).ok().json(),
        serde_json::json!([])
    );
}

#[test]
fn a_lease_on_an_odd_name_over_the_api_protects_exactly_that_file() {
    let b = Box_::new("", "", CLASSES);
    std::fs::create_dir_all(b.media.join("rec")).unwrap();
    let d = b.daemon(None);
    let sock = b.state().join("control.sock");
    // Taken before the files exist (a lease names a path, not an inode): the daemon's own
    // passes cannot get to them first.
    let (status, body) = common::api(
        &sock,
        "/v1/lease",
        r#"{"path": "media:rec/a\\xffb.mp4", "ttl": "1h", "holder": "thumbnailer"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let lease: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(lease["pattern"], r"rec/a\xffb.mp4", "{body}");
    let files: Vec<PathBuf> = NAMES
        .iter()
        .map(|(rel, _)| make(&b, rel, 2 * HOUR))
        .collect();
    b.cli(&["scan"]).ok();
    wait_for(
        "the unleased files to be deleted",
        Duration::from_secs(30),
        || {
            // (Old code deleted them all but could not even report it: HTTP 500.)
            b.cli(&["gc"]);
            files[1..].iter().all(|f| !f.exists())
        },
    );
    assert!(files[0].exists(), "the leased file is kept");
    let x = b.cli(&["explain", r"media:rec/a\xffb.mp4"]).ok().stdout;
    assert!(x.contains("IN USE (lease "), "{x}");
    let leases = b.cli(&["leases"]).ok().stdout;
    assert!(leases.contains(r"media:rec/a\xffb.mp4"), "{leases}");
    // Log lines name the deleted files in the spelling, each distinct.
    let log = d.log.lock().unwrap().clone();
    for spelled in [r"rec/a\xfeb.mp4", r"rec/back\\slash.mp4"] {
        assert!(
            log.contains(&format!("media:{spelled}")),
            "{spelled}:\n{log}"
        );
    }

    // A glob cannot name a byte that is not UTF-8: refused, not silently matching nothing.
    let (status, body) = common::api(
        &sock,
        "/v1/lease",
        r#"{"path": "media:rec/a\\xfe*", "ttl": "1h"}"#,
    );
    assert!((400..500).contains(&status), "{body}");
    assert!(body.contains("not UTF-8"), "{body}");
    let (code, _) = d.stop();
    assert_eq!(code, 0);
}

#[test]
fn a_spelled_nul_is_refused() {
    let (b, _files) = odd_box();
    let abs = format!(r"{}/rec/a\x00b.mp4", b.media.display());
    for arg in [r"media:rec/a\x00b.mp4", abs.as_str()] {
        let r = b.cli(&["explain", arg]);
        assert_eq!(r.code, 65, "{arg}: {r:?}");
        assert!(
            r.stderr.contains("contains a NUL byte"),
            "{arg}: {}",
            r.stderr
        );
        assert_eq!(b.cli(&["retain", arg]).code, 65, "{arg}");
        assert_eq!(b.cli(&["lease", arg, "--ttl", "1m"]).code, 65, "{arg}");
    }
    let d = b.daemon(None);
    let sock = b.state().join("control.sock");
    for (ep, body) in [
        ("/v1/explain", r#"{"path": "media:rec/a\\x00b.mp4"}"#),
        (
            "/v1/lease",
            r#"{"path": "media:rec/a\\x00b.mp4", "ttl": "1m"}"#,
        ),
    ] {
        let (status, body) = common::api(&sock, ep, body);
        assert!((400..500).contains(&status), "{ep}: {body}");
    }
    let (code, _) = d.stop();
    assert_eq!(code, 0);
}
