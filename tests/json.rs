//! The JSON of the CLI (`--json`) and of the control API: times are RFC 3339 UTC strings,
//! spans are written as the config writes them, no nanosecond integers; `/v1/plan?at=`
//! takes what `plan --at` takes. See docs/json.md.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Fields that hold a point in time, wherever they appear.
const TIME_KEYS: &[&str] = &[
    "at",
    "mtime",
    "first_seen",
    "complete",
    "created",
    "expires",
    "next",
    "next_due",
    "age_ref",
    "eligible_at",
    "stuck_since",
    "started_at",
    "last_scan_at",
    "next_pass_at",
];

/// Fields that hold a span of time.
const SPAN_KEYS: &[&str] = &[
    "took",
    "snapshot_max",
    "first_unlink_after",
    "time_to_full",
    "ttl",
    "keep_for",
    "quiet_period",
    "min_keep",
    "horizon",
    "interval",
    "after",
];

/// A span as the config writes one: "7d", "1h 30m", "250ms", "0s".
fn is_config_span(s: &str) -> bool {
    !s.is_empty()
        && s.split(' ').all(|part| {
            let unit = part.trim_start_matches(|c: char| c.is_ascii_digit());
            unit.len() < part.len() && ["d", "h", "m", "s", "ms", "us", "ns"].contains(&unit)
        })
        && humantime::parse_duration(s).is_ok()
}

/// An RFC 3339 UTC time with milliseconds: "2026-12-03T14:57:04.123Z".
fn is_rfc3339_utc(s: &str) -> bool {
    s.len() == 24 && s.ends_with('Z') && humantime::parse_rfc3339(s).is_ok()
}

/// Every way `v` breaks the rules, each with its JSON path.
fn check(v: &Value, path: &str, bad: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                if k == "millis" || k.ends_with("_us") || k.ends_with("_ns") || k.ends_with("_ms") {
                    bad.push(format!("{p} = {x}: a span as an integer of a unit"));
                }
                if TIME_KEYS.contains(&k.as_str()) && !x.is_null() {
                    if !x.as_str().is_some_and(is_rfc3339_utc) {
                        bad.push(format!("{p} = {x}: not an RFC 3339 UTC time"));
                    }
                } else if SPAN_KEYS.contains(&k.as_str()) && !x.is_null() {
                    if !x.as_str().is_some_and(is_config_span) {
                        bad.push(format!("{p} = {x}: not a span as the config writes one"));
                    }
                } else {
                    check(x, &p, bad);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check(x, &format!("{path}[{i}]"), bad);
            }
        }
        // Nanoseconds since the epoch are ~1.8e18; no size or count here comes near 1e17.
        Value::Number(n) if n.as_f64().is_some_and(|f| f.abs() >= 1e17) => {
            bad.push(format!("{path} = {n}: looks like nanoseconds"));
        }
        _ => {}
    }
}

const CLASSES: &str = r#"
[[class]]
name = "tmp"
store = "media"
match = ["tmp/**"]
lifecycle = "temporary"
ttl = "30m"

[[class]]
name = "rec"
store = "media"
match = ["rec/**/*.mp4"]
lifecycle = "recording"
keep_for = "7d"
max_count = 2

[[class]]
name = "copies"
store = "media"
match = ["copies/**"]
lifecycle = "recording"
keep_for = "7d"
dedupe = "keep-oldest"
"#;

fn get(sock: &Path, uri: &str) -> (u16, String) {
    socket_http(
        sock,
        &format!("GET {uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

fn ms_since_epoch(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis()
}

fn time_of(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[test]
fn every_json_answer_has_rfc3339_times_and_config_spans() {
    let b = Box_::new("", "", CLASSES);
    let hour = Duration::from_secs(3600);
    b.file("tmp/old.part", 100, 2 * hour);
    for i in 1..=3 {
        b.file(&format!("rec/show{i}.mp4"), 1000, i * hour);
    }
    // Two identical copies, the newer retained: a group `dupes` lists (nothing deleted).
    b.file("copies/a.bin", 5000, 2 * hour);
    b.file("copies/b.bin", 5000, hour);
    b.cli(&["retain", "media:copies/b.bin"]).ok();
    let d = b.daemon(None);
    let sock = b.state().join("control.sock");
    // The first pass deleted tmp/old.part and rec/show3.mp4 (max_count 2): audited.
    wait_for("the first pass", Duration::from_secs(20), || {
        !b.path("tmp/old.part").exists()
    });
    b.file("tmp/new", 10, Duration::from_secs(60));
    b.cli(&["scan"]).ok();
    let lease = b.lease("media:rec/**", "90s", "checker");
    b.cli(&["retain", "media:rec/show1.mp4"]).ok();

    let mut answers: Vec<(String, Value)> = Vec::new();
    let mut cli = |args: &[&str]| {
        let r = b.cli(args);
        assert!(r.code == 0, "{args:?}: {r:?}");
        let v: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{args:?} is not JSON ({e}): {}", r.stdout));
        answers.push((format!("mediaretain {}", args.join(" ")), v));
    };
    cli(&["status", "--json"]);
    cli(&["plan", "--json"]);
    cli(&["plan", "--json", "--at", "+30d"]);
    cli(&["gc", "--dry-run", "--json"]);
    cli(&["ls", "--json"]);
    cli(&["ls", "--in-use", "--json"]);
    cli(&["explain", "media:rec/show2.mp4", "--json"]);
    cli(&["explain", "media:rec/show3.mp4", "--json"]);
    cli(&["explain", "media:tmp/old.part", "--json"]);
    cli(&["leases", "--json"]);
    cli(&["dupes", "--json"]);
    cli(&["history", "--json"]);
    cli(&["scan", "--json"]);
    cli(&["rm", "--dry-run", "--json", "media:tmp/new"]);
    cli(&["lease", "media:tmp/new", "--ttl", "1h 30m", "--json"]);
    for uri in [
        "/v1/status",
        "/v1/plan",
        "/v1/leases",
        "/v1/history?since=1h&limit=1",
    ] {
        let (code, body) = get(&sock, uri);
        assert_eq!(code, 200, "GET {uri}: {body}");
        answers.push((format!("GET {uri}"), serde_json::from_str(&body).unwrap()));
    }
    for (uri, body) in [
        ("/v1/gc", r#"{"dry_run": true}"#),
        ("/v1/ls", r#"{"class": "rec"}"#),
        ("/v1/explain", r#"{"path": "media:rec/show3.mp4"}"#),
        ("/v1/rm", r#"{"paths": ["media:tmp/new"], "dry_run": true}"#),
    ] {
        let (code, out) = api(&sock, uri, body);
        assert_eq!(code, 200, "POST {uri}: {out}");
        answers.push((format!("POST {uri}"), serde_json::from_str(&out).unwrap()));
    }

    let mut bad = Vec::new();
    for (what, v) in &answers {
        let mut b = Vec::new();
        check(v, "", &mut b);
        bad.extend(b.into_iter().map(|m| format!("{what}: {m}")));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));

    // The values, not only their spelling.
    let find = |what: &str| &answers.iter().find(|(w, _)| w == what).unwrap().1;
    let show2 = find("mediaretain explain media:rec/show2.mp4 --json");
    let mtime = std::fs::metadata(b.path("rec/show2.mp4"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        ms_since_epoch(time_of(&show2["entry"]["mtime"])),
        ms_since_epoch(mtime),
        "{show2}"
    );
    assert_eq!(show2["class"]["keep_for"], "7d", "{show2}");
    assert_eq!(show2["class"]["quiet_period"], "30s", "{show2}");
    let eligible = time_of(&show2["verdict"]["eligible_at"]);
    assert_eq!(
        ms_since_epoch(eligible),
        ms_since_epoch(mtime + Duration::from_secs(7 * 86400)),
        "{show2}"
    );
    let gone = find("mediaretain explain media:rec/show3.mp4 --json");
    assert_eq!(gone["history"][0]["outcome"], "deleted", "{gone}");
    assert_eq!(gone["history"][0]["size"], 1000, "{gone}");
    let leases = find("mediaretain leases --json");
    let l = leases
        .as_array()
        .unwrap()
        .iter()
        .find(|l| Some(l["id"].clone()) == lease.parse::<i64>().ok().map(Value::from))
        .unwrap_or_else(|| panic!("lease {lease} not in {leases}"));
    assert_eq!(
        time_of(&l["expires"])
            .duration_since(time_of(&l["created"]))
            .unwrap(),
        Duration::from_secs(90),
        "{l}"
    );
    let page = find("GET /v1/history?since=1h&limit=1");
    assert_eq!(page["records"].as_array().map(Vec::len), Some(1), "{page}");
    assert!(page["next_before"].is_i64(), "{page}");
    let status = find("GET /v1/status");
    let reload = &status["activity"]["last_reload"];
    assert!(reload.is_null(), "no reload yet: {reload}");
    // The same object in the CLI's and the API's answer.
    assert_eq!(
        find("mediaretain ls --json").as_array().unwrap().len(),
        find("POST /v1/ls").as_array().unwrap().len() + 3, // tmp/new, copies/a.bin, copies/b.bin
    );
    d.stop();
}

#[test]
fn plan_at_takes_what_plan_at_takes_on_the_command_line() {
    let b = Box_::new("", "", CLASSES);
    b.file("rec/show1.mp4", 1000, Duration::from_secs(3600));
    let d = b.daemon(None);
    let sock = b.state().join("control.sock");
    let at = |q: &str| -> Value {
        let (code, body) = get(&sock, &format!("/v1/plan?at={q}"));
        assert_eq!(code, 200, "at={q}: {body}");
        serde_json::from_str::<Value>(&body).unwrap()["at"].clone()
    };
    // RFC 3339, in UTC or with an offset ("+" escaped or not).
    assert_eq!(at("2030-01-01T00:00:00Z"), "2030-01-01T00:00:00.000Z");
    assert_eq!(
        at("2030-01-01T01:00:00%2B01:00"),
        "2030-01-01T00:00:00.000Z"
    );
    assert_eq!(at("2030-01-01T01:00:00+01:00"), "2030-01-01T00:00:00.000Z");
    assert_eq!(at("2030-01-01T00:00:00.250Z"), "2030-01-01T00:00:00.250Z");
    // A span from now, and now.
    for (q, ahead) in [
        ("%2B2h", 7200),
        ("+2h", 7200),
        ("%2B7d", 7 * 86400),
        ("now", 0),
    ] {
        let before = SystemTime::now() + Duration::from_secs(ahead);
        let t = time_of(&at(q));
        let after = SystemTime::now() + Duration::from_secs(ahead);
        assert!(
            ms_since_epoch(before) <= ms_since_epoch(t) && t <= after,
            "at={q}: {t:?} not between {before:?} and {after:?}"
        );
    }
    // The CLI, through the daemon, gets the same plan time.
    let cli = b
        .cli(&["plan", "--json", "--at", "2030-01-01T01:00:00+01:00"])
        .ok()
        .json();
    assert_eq!(cli["at"], "2030-01-01T00:00:00.000Z", "{cli}");
    // What neither takes: 400 with the API's error shape, exit 65 (data error).
    for q in [
        "tomorrow",
        "1796225820707117194",
        "%2Bsoon",
        "",
        "2030-13-01T00:00:00Z",
    ] {
        let (code, body) = get(&sock, &format!("/v1/plan?at={q}"));
        assert_eq!(code, 400, "at={q}: {body}");
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("at={q}: not JSON ({e}): {body}"));
        assert_eq!(v["exit"], 65, "at={q}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("2h")),
            "at={q}: the error should say what is taken: {v}"
        );
    }
    let (code, body) = get(&sock, "/v1/plan?when=now");
    assert_eq!(code, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["exit"], 65, "{v}");
    // The CLI refuses the same values, before asking anyone.
    let r = b.cli(&["plan", "--at", "tomorrow"]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("+2h"), "{r:?}");
    d.stop();
}
