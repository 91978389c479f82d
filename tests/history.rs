//! `mediaretain history` (issue 25, item 8): the audit an operator can read — newest first,
//! filtered, paged with a cursor that holds while new records arrive — through the daemon
//! (a `socket_group` member may read it, a stranger may not), over `GET /v1/history`, and
//! one-shot without a daemon. Real deletions: a daemon's pass over due files (segments each
//! on their own record), `rm`, and a refusal of a file held open. Needs root (second users).

mod common;
use common::users::{GROUP, MEMBER, user};
use common::*;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

const STRANGER: &str = "mr-attacker";
const T: Duration = Duration::from_secs(30);
const HOUR: Duration = Duration::from_secs(3600);

/// `mediaretain --config CONFIG args…` as `name` (its own uid, gid and groups).
fn cli_as(name: &str, b: &Box_, args: &[&str]) -> Run {
    let (uid, gid) = user(name);
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

fn records(r: &Run) -> Vec<serde_json::Value> {
    assert_eq!(r.code, 0, "history failed: {r:?}");
    r.json()["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records in {r:?}"))
        .clone()
}

fn paths(rs: &[serde_json::Value]) -> Vec<String> {
    rs.iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["store"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            )
        })
        .collect()
}

fn get(sock: &std::path::Path, uri: &str) -> (u16, serde_json::Value) {
    let (code, body) = socket_http(
        sock,
        &format!("GET {uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    (code, serde_json::from_str(&body).unwrap_or_default())
}

const CLASSES: &str = r#"
[[class]]
name = "tmp"
store = "media"
match = ["tmp/**"]
lifecycle = "temporary"
ttl = "30m"

[[class]]
name = "hls"
store = "media"
match = ["hls/**/*.ts"]
lifecycle = "segment"
keep_for = "2m"

[[class]]
name = "rec"
store = "media"
match = ["rec/**/*.mp4"]
lifecycle = "recording"
keep_for = "7d"
"#;

/// A daemon deletes 3 due temp files and 12 due segments and refuses a temp file held open;
/// `rm` deletes a recording. `history` shows each (segments one record each), newest first;
/// every filter selects what it says; pages of 4 walk the whole audit while `rm` adds
/// records between them (none twice, none skipped); the API answers the same; a
/// `socket_group` member reads it, a stranger is refused (77); bad input is 65 / 400.
///
/// On the code before (no `history`): `error: unrecognized subcommand 'history'` (exit 64).
#[test]
fn history_shows_what_went_and_why_filtered_and_paged() {
    let b = Box_::new(
        &format!("socket_group = \"{GROUP}\"\ngc_interval = \"1h\"\nscan_interval = \"1h\""),
        "",
        CLASSES,
    );
    fs::set_permissions(b.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for i in 0..3 {
        b.file(&format!("tmp/old{i}.bin"), 1000 + i, 2 * HOUR);
    }
    let held = b.file("tmp/held.bin", 500, 2 * HOUR);
    let _holder = Holder::open(&held);
    for i in 0..12 {
        b.file(
            &format!("hls/s1/seg{i:02}.ts"),
            188 * 10,
            Duration::from_secs(600),
        );
    }
    b.file("rec/cam1/a.mp4", 4096, HOUR);
    b.file("rec/cam1/b.mp4", 4096, HOUR);
    b.file("rec/cam1/c.mp4", 4096, HOUR);

    let d = b.daemon(None);
    let sock = b.state().join("control.sock");
    // The first pass: 15 deletions and the refusal.
    d.wait_for("the pass's deletions and refusal in history", T, || {
        let r = b.cli(&["history", "--json", "--limit", "1000"]);
        r.code == 0 && {
            let rs = records(&r);
            rs.iter().filter(|r| r["outcome"] == "deleted").count() == 15
                && rs.iter().any(|r| r["outcome"] == "refused")
        }
    });
    b.cli(&["rm", "media:rec/cam1/a.mp4"]).ok();

    // "What was deleted in the last hour, and why": one command.
    let all = records(&b.cli(&["history", "--since", "1h", "--json", "--limit", "1000"]));
    assert_eq!(all.len(), 17, "{all:#?}");
    assert!(
        all.windows(2)
            .all(|w| w[0]["at"].as_str() >= w[1]["at"].as_str()),
        "not newest first: {all:#?}"
    );
    assert_eq!(all[0]["path"], "rec/cam1/a.mp4", "rm is the newest");
    assert_eq!(all[0]["trigger"], "manual");
    assert_eq!(all[0]["rule"], "manual");
    assert_eq!(all[0]["size"], 4096);
    for r in &all {
        for f in [
            "at", "store", "path", "action", "outcome", "reason", "trigger",
        ] {
            assert!(r[f].is_string(), "{f} in {r}");
        }
    }
    let table = b.cli(&["history", "--since", "1h"]).ok().stdout;
    assert!(table.starts_with("TIME"), "{table}");
    for want in [
        "media:rec/cam1/a.mp4",
        "manual",
        "media:hls/s1/seg07.ts",
        "keep_for",
        "refused",
    ] {
        assert!(table.contains(want), "{want} not in:\n{table}");
    }

    // Filters.
    let segs = records(&b.cli(&["history", "--class", "hls", "--json"]));
    assert_eq!(segs.len(), 12, "each segment its own record: {segs:#?}");
    assert!(
        segs.iter()
            .all(|r| r["rule"] == "keep_for" && r["outcome"] == "deleted")
    );
    let no_segs = records(&b.cli(&["history", "--no-segments", "--json"]));
    assert_eq!(no_segs.len(), 5, "{no_segs:#?}");
    assert!(no_segs.iter().all(|r| r["class"] != "hls"));
    let ttl = records(&b.cli(&["history", "--rule", "ttl", "--outcome", "deleted", "--json"]));
    assert_eq!(
        paths(&ttl).into_iter().collect::<HashSet<_>>(),
        (0..3)
            .map(|i| format!("media:tmp/old{i}.bin"))
            .collect::<HashSet<_>>()
    );
    let refused = records(&b.cli(&["history", "--outcome", "refused", "--json"]));
    assert_eq!(paths(&refused), ["media:tmp/held.bin"]);
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("open by pid"),
        "{refused:#?}"
    );
    let manual = records(&b.cli(&["history", "--trigger", "manual", "--json"]));
    assert_eq!(paths(&manual), ["media:rec/cam1/a.mp4"]);
    let glob = records(&b.cli(&["history", "--path", "media:tmp/old*", "--json"]));
    assert_eq!(glob.len(), 3, "{glob:#?}");
    let abs = b.path("tmp/held.bin");
    let one = records(&b.cli(&["history", "--path", abs.to_str().unwrap(), "--json"]));
    assert_eq!(paths(&one), ["media:tmp/held.bin"]);
    assert_eq!(
        records(&b.cli(&["history", "--store", "media", "--json", "--limit", "100"])).len(),
        17
    );

    // Pages of 4, with new records arriving between them: the union is the audit as it was
    // at the first page, each record once, in order.
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["history", "--limit", "4", "--json"];
        if let Some(c) = &before {
            args.extend(["--before", c.as_str()]);
        }
        let r = b.cli(&args);
        let page = records(&r);
        assert!(page.len() <= 4);
        seen.extend(page);
        pages += 1;
        if pages == 2 {
            b.cli(&["rm", "media:rec/cam1/b.mp4"]).ok();
        }
        match r.json()["next_before"].as_i64() {
            Some(n) => before = Some(n.to_string()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 5, "17 records in pages of 4");
    assert_eq!(seen, all, "paged: {seen:#?}");
    let now = records(&b.cli(&["history", "--limit", "1", "--json"]));
    assert_eq!(
        paths(&now),
        ["media:rec/cam1/b.mp4"],
        "the new record is on a new first page"
    );
    // The table ends with the next page's flag.
    let t = b.cli(&["history", "--limit", "2"]).ok().stdout;
    assert!(t.contains("(more: --before "), "{t}");

    // The API answers the same, and a bad value is 400 with exit 65.
    let (code, body) = get(&sock, "/v1/history?class=hls&limit=100");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["records"].as_array().unwrap().len(), 12);
    let (code, body) = get(&sock, "/v1/history?path=media%3Atmp%2Fold%2A&since=1h");
    assert_eq!(
        (code, body["records"].as_array().map(Vec::len)),
        (200, Some(3)),
        "{body}"
    );
    for (uri, what) in [
        ("/v1/history?since=an%20hour", "since"),
        ("/v1/history?before=yesterday", "cursor"),
        ("/v1/history?path=media%3Arec%2F%5B", "glob"),
        ("/v1/history?outcome=gone", "outcome"),
        ("/v1/history?class=recs", "class"),
        ("/v1/history?limit=0", "limit"),
        ("/v1/history?limit=many", "limit"),
        ("/v1/history?colour=red", "colour"),
    ] {
        let (code, body) = get(&sock, uri);
        assert!(code == 400 || code == 422, "{uri}: {code} {body}");
        assert_eq!(body["exit"], 65, "{uri}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(what),
            "{uri}: {body}"
        );
    }
    for args in [
        &["history", "--since", "1x"][..],
        &["history", "--before", "12x"],
        &["history", "--path", "media:rec/[a"],
        &["history", "--path", "/etc/**"],
        &["history", "--rule", "kep_for"],
    ] {
        let r = b.cli(args);
        assert_eq!(r.code, 65, "{args:?}: {r:?}");
        assert!(!r.stderr.is_empty(), "{args:?}: no reason given");
    }
    let r = b.cli(&["history", "--class", "recs"]);
    assert!(r.stderr.contains("did you mean \"rec\""), "{r:?}");

    // A socket_group member reads it (a read, like explain); a stranger is refused.
    let m = cli_as(MEMBER, &b, &["history", "--class", "rec", "--json"]);
    assert_eq!(records(&m).len(), 2, "{m:?}");
    let s = cli_as(STRANGER, &b, &["history"]);
    assert_eq!(s.code, 77, "{s:?}");
    assert!(s.stdout.is_empty(), "{s:?}");
    drop(d);
}

/// Without a daemon `history` reads the registry one-shot (like explain), after a one-shot
/// `gc` deleted due files; the same filters and errors hold.
///
/// On the code before: `error: unrecognized subcommand 'history'` (exit 64).
#[test]
fn history_without_a_daemon_reads_the_registry() {
    let b = Box_::new("", "", CLASSES);
    for i in 0..3 {
        b.file(&format!("tmp/old{i}.bin"), 100, 2 * HOUR);
    }
    for i in 0..5 {
        b.file(&format!("hls/s1/seg{i}.ts"), 188, Duration::from_secs(600));
    }
    b.cli(&["gc"]).ok();
    let all = records(&b.cli(&["history", "--since", "1h", "--json"]));
    assert_eq!(all.len(), 8, "{all:#?}");
    assert!(
        all.iter()
            .all(|r| r["outcome"] == "deleted" && r["trigger"] == "cli")
    );
    let segs = records(&b.cli(&["history", "--class", "hls", "--limit", "2", "--json"]));
    assert_eq!(segs.len(), 2);
    let first = b
        .cli(&["history", "--class", "hls", "--limit", "2", "--json"])
        .json();
    let next = first["next_before"].as_i64().unwrap().to_string();
    let rest = records(&b.cli(&["history", "--class", "hls", "--before", &next, "--json"]));
    assert_eq!(rest.len(), 3);
    let r = b.cli(&["history", "--since", "yesterday"]);
    assert_eq!(r.code, 65, "{r:?}");
    assert!(r.stderr.contains("since"), "{r:?}");
    let t = b.cli(&["history", "--no-segments"]).ok().stdout;
    assert_eq!(t.lines().count(), 4, "header and 3 temp files:\n{t}");
}
