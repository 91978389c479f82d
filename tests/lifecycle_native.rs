//! `mediaretain lifecycle plan|apply|check STORE` against real servers (Garage 2.5.0 and
//! moto, started by the tests): the compiled rules land in the bucket's lifecycle
//! configuration as a backstop, another tool's rule survives, drift made behind our back
//! (with boto3, a client that is not ours) is named with a non-zero exit, what cannot
//! compile is said with its reason, and a pinned object under a rule stops `apply`.

mod common;
use common::s3::S3Server;
use common::*;

use std::process::Command;

/// boto3 on `server`'s bucket: `get` prints the rules as JSON (`[]` for none), `put-foreign`
/// adds a rule `other-tool` (prefix `logs/`, 30 days) to whatever is there, `drop ID`
/// removes one rule.
const BOTO: &str = r#"
import json, sys, boto3
from botocore.config import Config
endpoint, region, key, secret, bucket, op = sys.argv[1:7]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region,
    aws_access_key_id=key, aws_secret_access_key=secret,
    config=Config(s3={"addressing_style": "path"},
                  request_checksum_calculation="when_required",
                  response_checksum_validation="when_required"))
def rules():
    try:
        return s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except s3.exceptions.ClientError as e:
        if e.response["Error"]["Code"] == "NoSuchLifecycleConfiguration":
            return []
        raise
def put(rs):
    if rs:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rs})
    else:
        s3.delete_bucket_lifecycle(Bucket=bucket)
if op == "get":
    print(json.dumps(rules()))
elif op == "put-foreign":
    put(rules() + [{"ID": "other-tool", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
                    "Expiration": {"Days": 30}}])
elif op == "drop":
    put([r for r in rules() if r.get("ID") != sys.argv[7]])
"#;

fn boto(server: &S3Server, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(BOTO)
        .args([
            server.endpoint.as_str(),
            &server.region,
            &server.key_id,
            &server.secret,
            &server.bucket,
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The bucket's rules by ID, as boto3 reads them.
fn rules(server: &S3Server) -> std::collections::BTreeMap<String, serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&boto(server, &["get"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["ID"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

/// The box's `[daemon]` line naming it.
const NODE: &str = "node = \"cam-box\"";

const CLASSES: &str = r#"
[[class]]
name = "rec"
store = "archive"
match = ["rec/**"]
lifecycle = "recording"
keep_for = "36h"

[[class]]
name = "hls"
store = "archive"
match = ["hls/**/*.ts"]
lifecycle = "segment"
keep_for = "2m"

[[class]]
name = "big"
store = "archive"
match = ["big/**"]
lifecycle = "recording"
max_count = 3
"#;

/// A box `cam-box` whose S3 store `archive` is on `server` under `box1/` (its rule IDs are
/// `mediaretain:cam-box:…`: the node owns the rules of its own store).
fn box_on(server: &S3Server) -> Box_ {
    let b = Box_::new("", "", "");
    let store = server.store_section(b.dir.path(), &server.endpoint, "box1/");
    b.write_config(NODE, &store, CLASSES);
    b
}

#[test]
fn apply_then_check_on_garage_keeps_a_foreign_rule_and_names_drift() {
    let server = S3Server::garage();
    let b = box_on(&server);
    boto(&server, &["put-foreign"]);
    // No registry here yet: the pins are unknown, and apply will not guess they are none.
    let unknown = b.cli(&["lifecycle", "apply", "archive"]);
    assert_eq!(unknown.code, 65, "{unknown:?}");
    assert!(unknown.stderr.contains("pins are not known"), "{unknown:?}");
    b.cli(&["scan"]).ok();

    let plan = b
        .cli(&["lifecycle", "plan", "archive", "--json"])
        .ok()
        .json();
    let ids: Vec<_> = plan["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "mediaretain:cam-box:rec",
            "mediaretain:cam-box:archive:abort-uploads"
        ],
        "{plan}"
    );
    // keep_for = 36h is 2 days: rounded up, never earlier than our own rule.
    assert_eq!(plan["rules"][0]["days"], 2, "{plan}");
    assert_eq!(plan["rules"][0]["prefix"], "box1/rec/", "{plan}");
    let skipped = plan["not_compiled"].to_string();
    assert!(
        skipped.contains("\"hls\"") && skipped.contains("not a literal prefix"),
        "{plan}"
    );
    assert!(
        skipped.contains("\"big\"") && skipped.contains("max_count"),
        "{plan}"
    );

    // Before apply: both of our rules are missing.
    let before = b.cli(&["lifecycle", "check", "archive"]);
    assert_eq!(before.code, 1, "{before:?}");
    assert!(
        before.stdout.contains("missing mediaretain:cam-box:rec"),
        "{before:?}"
    );

    let applied = b
        .cli(&["lifecycle", "apply", "archive", "--json"])
        .ok()
        .json();
    assert_eq!(applied["written"], true, "{applied}");
    assert_eq!(applied["other_rules"], 1, "{applied}");

    // What the bucket holds, read by another client.
    let r = rules(&server);
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(r["other-tool"]["Expiration"]["Days"], 30, "{r:?}");
    let rec = &r["mediaretain:cam-box:rec"];
    assert_eq!(rec["Expiration"]["Days"], 2, "{r:?}");
    assert_eq!(rec["Filter"]["Prefix"], "box1/rec/", "{r:?}");
    let abort = &r["mediaretain:cam-box:archive:abort-uploads"];
    assert_eq!(
        abort["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"], 1,
        "{r:?}"
    );
    assert_eq!(abort["Filter"]["Prefix"], "box1/", "{r:?}");

    let ok = b.cli(&["lifecycle", "check", "archive"]).ok();
    assert!(ok.stdout.contains("in sync"), "{ok:?}");

    // Drift behind our back: one rule deleted by another client.
    boto(&server, &["drop", "mediaretain:cam-box:rec"]);
    let drift = b.cli(&["lifecycle", "check", "archive", "--json"]);
    assert_eq!(drift.code, 1, "{drift:?}");
    assert!(
        drift.stderr.contains("mediaretain:cam-box:rec (missing)"),
        "{drift:?}"
    );
    let d = drift.json();
    assert_eq!(d["drift"][0]["id"], "mediaretain:cam-box:rec", "{d}");
    assert_eq!(d["drift"][0]["kind"], "missing", "{d}");

    // A rule of ours changed, and one left over from a class since removed.
    b.cli(&["lifecycle", "apply", "archive"]).ok();
    let store = server.store_section(b.dir.path(), &server.endpoint, "box1/");
    b.write_config(
        NODE,
        &store,
        &CLASSES.replace("keep_for = \"36h\"", "keep_for = \"3d\"").replace(
            "name = \"big\"\nstore = \"archive\"\nmatch = [\"big/**\"]\nlifecycle = \"recording\"\nmax_count = 3",
            "name = \"big\"\nstore = \"archive\"\nmatch = [\"big/**\"]\nlifecycle = \"recording\"\nkeep_for = \"1d\"",
        ),
    );
    b.cli(&["lifecycle", "apply", "archive"]).ok();
    b.write_config(NODE, &store, CLASSES);
    let drift = b.cli(&["lifecycle", "check", "archive"]);
    assert_eq!(drift.code, 1, "{drift:?}");
    assert!(
        drift.stdout.contains("different mediaretain:cam-box:rec")
            && drift.stdout.contains("extra mediaretain:cam-box:big"),
        "{drift:?}"
    );
    let fixed = b
        .cli(&["lifecycle", "apply", "archive", "--json"])
        .ok()
        .json();
    assert_eq!(fixed["drift"].as_array().unwrap().len(), 2, "{fixed}");
    b.cli(&["lifecycle", "check", "archive"]).ok();
    let r = rules(&server);
    assert_eq!(
        r.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "mediaretain:cam-box:archive:abort-uploads",
            "mediaretain:cam-box:rec",
            "other-tool"
        ],
        "{r:?}"
    );
    assert_eq!(r["mediaretain:cam-box:rec"]["Expiration"]["Days"], 2);
}

#[test]
fn a_pinned_object_under_a_rule_stops_apply_on_moto() {
    let server = S3Server::moto();
    let b = box_on(&server);
    server.raw().put_many(&[
        "box1/rec/keep.mp4".to_string(),
        "box1/hls/a/1.ts".to_string(),
    ]);
    b.cli(&["retain", "archive:rec/keep.mp4"]).ok();

    let plan = b.cli(&["lifecycle", "plan", "archive"]).ok();
    assert!(
        plan.stdout.contains(
            "warning: archive:rec/keep.mp4 is pinned, but rule mediaretain:cam-box:rec would expire it"
        ),
        "{plan:?}"
    );
    let refused = b.cli(&["lifecycle", "apply", "archive"]);
    assert_eq!(refused.code, 65, "{refused:?}");
    assert!(
        refused.stderr.contains("archive:rec/keep.mp4")
            && refused.stderr.contains("--expire-pinned"),
        "{refused:?}"
    );
    assert_eq!(rules(&server).len(), 0, "nothing written when refused");

    b.cli(&["lifecycle", "apply", "archive", "--expire-pinned"])
        .ok();
    let r = rules(&server);
    assert_eq!(
        r["mediaretain:cam-box:rec"]["Expiration"]["Days"], 2,
        "{r:?}"
    );
    b.cli(&["lifecycle", "check", "archive"]).ok();

    // Unpinned, apply has nothing to refuse and nothing to change.
    b.cli(&["unretain", "archive:rec/keep.mp4"]).ok();
    let again = b
        .cli(&["lifecycle", "apply", "archive", "--json"])
        .ok()
        .json();
    assert_eq!(again["written"], false, "{again}");
    assert_eq!(again["pinned"].as_array().unwrap().len(), 0, "{again}");
}

#[test]
fn a_local_store_or_unknown_name_is_refused() {
    let b = Box_::new("", "", BASE_CLASSES);
    let local = b.cli(&["lifecycle", "plan", "media"]);
    assert_eq!(local.code, 65, "{local:?}");
    assert!(local.stderr.contains("local store"), "{local:?}");
    let unknown = b.cli(&["lifecycle", "check", "nope"]);
    assert_eq!(unknown.code, 65, "{unknown:?}");
    assert!(unknown.stderr.contains("no store \"nope\""), "{unknown:?}");
}
