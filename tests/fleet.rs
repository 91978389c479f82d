//! A fleet on one bucket (issue 28 items 1 and 2), through the real binary: several daemons
//! with state directories of their own archive into one bucket of a real server on
//! loopback — moto where conditional writes are honoured, a single-node Garage where they
//! are ignored. Node prefixes and claim markers keep each box to its own keys; the rules
//! lease makes a shared class run on one box at a time, fenced so that a box that lost it
//! deletes nothing more.

mod common;
use common::s3::S3Server;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// The bucket prefix every box of these tests shares.
const PREFIX: &str = "fleet";

/// A box named `node` of a fleet on `server`: its own `archive` store (node-prefixed under
/// `fleet/`), with `shared` (extra keys of a shared store `everyone` spanning `fleet/`, or
/// None for no shared store), and `classes`. Heartbeats every second, passes every second.
fn fleet_box(server: &S3Server, node: &str, shared: Option<&str>, classes: &str) -> Box_ {
    let b = Box_::new("", "", "");
    let own = server
        .store_section(b.dir.path(), &server.endpoint, PREFIX)
        .replace("node_prefix = false\n", "");
    let mut stores = own;
    if let Some(extra) = shared {
        stores.push_str(&format!(
            "\n[[store]]\nname = \"everyone\"\nkind = \"s3\"\nendpoint = \"{}\"\nregion = \"{}\"\nbucket = \"{}\"\nprefix = \"{PREFIX}\"\ncredentials_file = \"archive.credentials\"\nretry_timeout = \"3s\"\nshared = true\n{extra}\n",
            server.endpoint, server.region, server.bucket
        ));
    }
    let daemon = format!(
        "node = \"{node}\"\nfleet_heartbeat = \"1s\"\ngc_interval = \"1s\"\nscan_interval = \"2s\""
    );
    b.write_config(&daemon, &stores, classes);
    b
}

/// The shared rule: every box's offloaded recordings (`NODE/media/rec/…`), expired at once.
const SHARED_CLASS: &str = "\n[[class]]\nname = \"shared-rec\"\nstore = \"everyone\"\nmatch = [\"*/media/rec/**\"]\nlifecycle = \"temporary\"\nttl = \"0s\"\nquiet_period = \"0s\"\n";

/// A local class offloading recordings to the box's own store (the local file stays).
const OFFLOAD_CLASS: &str = "\n[[class]]\nname = \"rec\"\nstore = \"media\"\nmatch = [\"rec/**\"]\nlifecycle = \"recording\"\nquiet_period = \"0s\"\noffload = { to = \"archive\", after = \"0s\" }\n";

/// `status --json` of the daemon of `b`.
fn status(b: &Box_) -> serde_json::Value {
    b.cli(&["status", "--json"]).json()
}

/// Whether the daemon of `b` holds the rules lease of `everyone` now.
fn holds_lease(b: &Box_) -> bool {
    status(b)["fleet"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| f["store"] == "everyone" && f["rules_lease_held"] == true)
}

/// The keys of `everyone` that box `b` audited with `outcome`, each with its count.
fn audited(b: &Box_, outcome: &str) -> BTreeMap<String, usize> {
    let h = b
        .cli(&[
            "history",
            "--store",
            "everyone",
            "--outcome",
            outcome,
            "--limit",
            "10000",
            "--json",
        ])
        .ok()
        .json();
    let records = h["records"]
        .as_array()
        .or_else(|| h.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for r in records {
        let p = r["path"].as_str().unwrap_or_default().to_string();
        *out.entry(p).or_insert(0) += 1;
    }
    out
}

/// The media keys under `fleet/` (control objects left out).
fn media_keys(server: &S3Server) -> BTreeSet<String> {
    server
        .raw()
        .keys(PREFIX)
        .into_iter()
        .filter(|k| !k.contains("/.mediaretain"))
        .collect()
}

/// Puts `n` one-byte recordings of box `node` (as its offloads would be) into the bucket;
/// returns their keys relative to the shared store.
fn recordings(server: &S3Server, node: &str, from: usize, n: usize) -> Vec<String> {
    let keys: Vec<String> = (from..from + n)
        .map(|i| format!("{node}/media/rec/cam/{i:05}.mp4"))
        .collect();
    let full: Vec<String> = keys.iter().map(|k| format!("{PREFIX}/{k}")).collect();
    server.raw().put_many(&full);
    keys
}

#[test]
fn a_second_box_with_a_taken_node_name_is_refused_and_the_same_box_restarts() {
    let server = S3Server::moto();
    let a = fleet_box(&server, "box1", None, "");
    let d = a.daemon(None);
    let pid = d.pid();
    let marker = format!("{PREFIX}/box1/.mediaretain/node.json");
    assert!(
        server.raw().exists(&marker),
        "the claim marker is written: {:?}\n{}",
        server.raw().keys(PREFIX),
        d.log.lock().unwrap()
    );

    // Another box (own state directory) with the same node name: refused, naming the other.
    let b = fleet_box(&server, "box1", None, "");
    let (code, log) = refused_start(&b);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("is claimed by node \"box1\"") && log.contains(&format!("pid {pid}")),
        "the refusal names the other box and its pid:\n{log}"
    );
    assert!(log.contains("[daemon] node"), "and the way out:\n{log}");

    // The same box restarting takes its marker back: after a clean stop and after kill -9.
    d.stop();
    let d = a.daemon(None);
    d.signal(rustix::process::Signal::KILL);
    let mut d = d;
    let _ = d.child.take().unwrap().wait();
    let d = a.daemon(None);
    assert!(
        d.log
            .lock()
            .unwrap()
            .contains("taking back this box's claim marker"),
        "{}",
        d.log.lock().unwrap()
    );
    d.stop();
}

#[test]
fn two_boxes_offload_into_one_bucket_each_under_its_own_prefix() {
    let server = S3Server::moto();
    let boxes: Vec<Box_> = ["boxA", "boxB"]
        .iter()
        .map(|n| fleet_box(&server, n, None, OFFLOAD_CLASS))
        .collect();
    // The same path on both boxes, with different contents (and sizes), and one of each's own.
    for (i, b) in boxes.iter().enumerate() {
        b.file("rec/cam1/same.mp4", 1000 + i, Duration::from_secs(60));
        b.file(
            &format!("rec/cam1/only-{i}.mp4"),
            10,
            Duration::from_secs(60),
        );
    }
    let daemons: Vec<Daemon> = boxes.iter().map(|b| b.daemon(None)).collect();
    let want: BTreeSet<String> = [
        "fleet/boxA/media/rec/cam1/same.mp4",
        "fleet/boxA/media/rec/cam1/only-0.mp4",
        "fleet/boxB/media/rec/cam1/same.mp4",
        "fleet/boxB/media/rec/cam1/only-1.mp4",
    ]
    .map(String::from)
    .into();
    daemons[0].wait_for("both boxes' offloads", T, || media_keys(&server) == want);
    // None overwritten: each box's copy has its own file's size.
    let sizes = |k: &str| {
        let b = &boxes[usize::from(k.contains("boxB"))];
        let x = b
            .cli(&[
                "explain",
                &format!("archive:{}", &k["fleet/boxA/".len()..]),
                "--json",
            ])
            .ok()
            .json();
        x["entry"]["size"].as_u64()
    };
    assert_eq!(sizes("fleet/boxA/media/rec/cam1/same.mp4"), Some(1000));
    assert_eq!(sizes("fleet/boxB/media/rec/cam1/same.mp4"), Some(1001));
    // Each box lists only its own root: the other's copies are no entries of it.
    let ls = boxes[0].cli(&["ls", "--json"]).ok().json();
    let archived: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["store"] == "archive")
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        archived,
        ["media/rec/cam1/only-0.mp4", "media/rec/cam1/same.mp4"],
        "{ls}"
    );
    for d in daemons {
        d.stop();
    }
}

#[test]
fn shared_rules_run_once_and_the_lease_moves_when_its_holder_is_killed() {
    let server = S3Server::moto();
    let nodes = ["boxA", "boxB", "boxC"];
    let mut all: BTreeSet<String> = BTreeSet::new();
    for n in nodes {
        all.extend(recordings(&server, n, 0, 40));
    }
    let boxes: Vec<Box_> = nodes
        .iter()
        .map(|n| fleet_box(&server, n, Some("rules_lease = \"3s\""), SHARED_CLASS))
        .collect();
    let mut daemons: Vec<Option<Daemon>> = boxes.iter().map(|b| Some(b.daemon(None))).collect();
    wait_for(
        "the shared rule to expire every box's recordings",
        T,
        || media_keys(&server).is_empty(),
    );
    // Applied once: the boxes' audits summed are the objects expired, no key twice. (An
    // object leaves the server a moment before its deleter's audit record is committed.)
    let summed = || {
        let mut summed: BTreeMap<String, usize> = BTreeMap::new();
        for b in &boxes {
            for (k, n) in audited(b, "deleted") {
                *summed.entry(k).or_insert(0) += n;
            }
        }
        summed
    };
    wait_for("every expired object audited", T, || {
        summed().keys().cloned().collect::<BTreeSet<_>>() == all
    });
    let summed = summed();
    assert!(
        summed.values().all(|n| *n == 1),
        "a key deleted twice: {summed:?}"
    );
    let holders: Vec<usize> = (0..3).filter(|i| holds_lease(&boxes[*i])).collect();
    assert_eq!(holders.len(), 1, "one holder at a time: {holders:?}");

    // kill -9 the holder: another box takes the lease over and applies the rule.
    let dead = holders[0];
    let mut d = daemons[dead].take().unwrap();
    d.signal(rustix::process::Signal::KILL);
    let _ = d.child.take().unwrap().wait();
    let more: BTreeSet<String> = recordings(&server, "boxA", 100, 20).into_iter().collect();
    wait_for("the recordings put after the kill to expire", T, || {
        media_keys(&server).is_empty()
    });
    let alive: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    let new_holder: Vec<usize> = alive
        .iter()
        .copied()
        .filter(|i| holds_lease(&boxes[*i]))
        .collect();
    assert_eq!(new_holder.len(), 1, "{new_holder:?}");
    wait_for("the new holder's audit of what it deleted", T, || {
        let by_new = audited(&boxes[new_holder[0]], "deleted");
        more.iter().all(|k| by_new.contains_key(k))
    });
    let by_new = audited(&boxes[new_holder[0]], "deleted");
    assert!(
        more.iter().all(|k| by_new.get(k) == Some(&1)),
        "the new holder deleted and audited them: {by_new:?}"
    );
    assert!(
        daemons[new_holder[0]]
            .as_ref()
            .unwrap()
            .log
            .lock()
            .unwrap()
            .contains("took the rules lease of store \"everyone\" over"),
    );
    for d in daemons.into_iter().flatten() {
        d.stop();
    }
}

/// The window: box A holds the lease and deletes 3,000 expired objects in three
/// DeleteObjects batches; it is SIGSTOPped as soon as a first batch is seen gone, B takes
/// the lease over (after 7.5 s of an unchanged lease object), deletes the rest, and A is
/// resumed. A may have audited what was gone before it stopped, nothing after: no key is
/// deleted twice and its log says it lost the lease.
#[test]
fn a_paused_holder_deletes_nothing_after_losing_the_lease() {
    let server = S3Server::moto();
    let total = 3000;
    let all: BTreeSet<String> = recordings(&server, "boxA", 0, total).into_iter().collect();
    // A lease of 6 s: renewed every 1.5 s, a holder's own time 3 s, a takeover after 7.5 s
    // of silence — long enough that A keeps it while moto is busy deleting.
    let a = fleet_box(&server, "boxA", Some("rules_lease = \"6s\""), SHARED_CLASS);
    let b = fleet_box(&server, "boxB", Some("rules_lease = \"6s\""), SHARED_CLASS);
    let da = a.daemon(None);
    da.wait_for("A to hold the rules lease", T, || holds_lease(&a));
    let db = b.daemon(None);
    // As soon as the first batch is gone (its first key, by a HEAD): A is paused
    // mid-chunk, with two batches to go.
    let raw = server.raw();
    let first = format!("{PREFIX}/boxA/media/rec/cam/00000.mp4");
    da.wait_for("A to start deleting", T, || {
        if raw.exists(&first) {
            false
        } else {
            da.signal(rustix::process::Signal::STOP);
            true
        }
    });
    // What A's requests in flight did is done by now (A sends nothing while stopped).
    std::thread::sleep(Duration::from_millis(500));
    let gone_at_stop = total - media_keys(&server).len();
    assert!(
        gone_at_stop < total,
        "A deleted everything before it could be paused: the window was missed"
    );
    db.wait_for("B to take the lease over", T, || holds_lease(&b));
    // (A HEAD of the last key, not a listing: polling 3,000 keys would slow moto down.)
    let last = format!("{PREFIX}/boxA/media/rec/cam/{:05}.mp4", total - 1);
    db.wait_for("B to expire the rest", T, || !raw.exists(&last));
    db.wait_for("B to expire the rest", T, || media_keys(&server).is_empty());
    da.signal(rustix::process::Signal::CONT);
    da.wait_for("A to find it lost the lease", T, || {
        da.log.lock().unwrap().contains("lost the rules lease")
    });
    // A few of A's passes after the resumption.
    std::thread::sleep(Duration::from_secs(3));
    let by_a = audited(&a, "deleted");
    let by_b = audited(&b, "deleted");
    let refused_a = audited(&a, "refused");
    eprintln!(
        "{gone_at_stop} of {total} gone when A was paused; A audited {} deleted, {} refused (fenced); B {} deleted",
        by_a.len(),
        refused_a.len(),
        by_b.len()
    );
    let twice: Vec<&String> = by_a.keys().filter(|k| by_b.contains_key(*k)).collect();
    assert!(
        twice.is_empty(),
        "{} keys deleted by both boxes (A after losing the lease), e.g. {:?}",
        twice.len(),
        twice.first()
    );
    assert!(
        by_a.len() <= gone_at_stop,
        "A audited {} deletions, {gone_at_stop} objects were gone when it was paused",
        by_a.len()
    );
    let summed: BTreeSet<String> = by_a.keys().chain(by_b.keys()).cloned().collect();
    assert_eq!(
        summed, all,
        "every expired object audited by the box that deleted it"
    );
    da.stop();
    db.stop();
}

#[test]
fn an_upgraded_registry_keeps_its_layout_and_an_explicit_node_prefix_is_refused() {
    let server = S3Server::moto();
    recordings(&server, "x", 0, 3); // fleet/x/media/rec/…: objects of the old root `fleet`
    let b = fleet_box(&server, "box1", None, "");
    // Before fleets: the store's root was its prefix (what node_prefix = false keeps).
    let text = fs::read_to_string(&b.config).unwrap();
    let set = |v: &str| {
        text.replace(
            "retry_timeout = \"3s\"\n",
            &format!("retry_timeout = \"3s\"\nnode_prefix = {v}\n"),
        )
    };
    fs::write(&b.config, set("false")).unwrap();
    b.cli(&["scan"]).ok();
    // Upgraded, node_prefix unset: the box goes on with its layout (an apt upgrade must not
    // stop cleanup), and records it.
    fs::write(&b.config, &text).unwrap();
    let d = b.daemon(None);
    let roots = b.state().join("s3-roots.json");
    d.wait_for("the roots file", T, || {
        fs::read_to_string(&roots).is_ok_and(|r| r.contains("\"archive\": \"fleet\""))
    });
    d.stop();
    // Asked for node prefixes over those copies: refused, saying why and the way out.
    fs::write(&b.config, set("true")).unwrap();
    let (code, log) = refused_start(&b);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("listed under its root \"fleet\"")
            && log.contains("its root is now \"fleet/box1\"")
            && log.contains("node_prefix = false"),
        "{log}"
    );
}

/// Garage 2.5.0 ignores conditional writes: a shared store with rules needs
/// `remote_rules_node`, and then only that node deletes.
#[test]
fn on_a_store_ignoring_conditional_writes_only_the_remote_rules_node_deletes() {
    let server = S3Server::garage();
    let a = fleet_box(&server, "boxA", Some(""), SHARED_CLASS);
    let (code, log) = refused_start(&a);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("ignores conditional writes") && log.contains("remote_rules_node"),
        "{log}"
    );

    let all: BTreeSet<String> = ["boxA", "boxB"]
        .iter()
        .flat_map(|n| recordings(&server, n, 0, 30))
        .collect();
    let rules = Some("remote_rules_node = \"boxB\"");
    let a = fleet_box(&server, "boxA", rules, SHARED_CLASS);
    let b = fleet_box(&server, "boxB", rules, SHARED_CLASS);
    let da = a.daemon(None);
    let db = b.daemon(None);
    db.wait_for("boxB to expire every recording", T, || {
        media_keys(&server).is_empty()
    });
    // A few passes of boxA after that.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        audited(&a, "deleted").is_empty(),
        "boxA deleted in the shared store"
    );
    let by_b = audited(&b, "deleted");
    assert_eq!(by_b.keys().cloned().collect::<BTreeSet<_>>(), all);
    da.stop();
    db.stop();
}

/// On a store that ignores conditional writes, a foreign writer of the claim marker is
/// found from its content within a heartbeat: an error logged, `status` and a metric show
/// it, and nothing more is offloaded to that root.
#[test]
fn a_foreign_writer_of_the_claim_marker_is_alarmed_within_a_heartbeat() {
    let server = S3Server::garage();
    let a = fleet_box(&server, "box1", None, OFFLOAD_CLASS);
    let d = a.daemon(None);
    assert!(
        server
            .raw()
            .exists(&format!("{PREFIX}/box1/.mediaretain/node.json"))
    );
    // Another box started with the same name where If-None-Match is ignored: it overwrote
    // the marker with its own identity.
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("node.json");
    fs::write(
        &foreign,
        r#"{"node":"box1","host":"elsewhere","machine_id":"0123","boot_id":"b","pid":4242,"version":"0","started":"2026-12-07T00:00:00Z","beat":0,"written":"2026-12-07T00:00:00Z"}"#,
    )
    .unwrap();
    let since = Instant::now();
    let s3 = mediaretain::store::s3::S3Store::new(server.settings("raw", PREFIX)).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(s3.control_put(
            "box1/.mediaretain/node.json",
            fs::read(&foreign).unwrap(),
            mediaretain::store::s3::ControlWrite::Overwrite,
        ))
        .unwrap();
    d.wait_for("the conflict in status", T, || {
        status(&a)["fleet"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["conflict"].is_string())
    });
    let took = since.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "found after {took:?} (heartbeat 1 s)"
    );
    assert!(
        d.log
            .lock()
            .unwrap()
            .contains("another writer of the claim marker"),
        "{}",
        d.log.lock().unwrap()
    );
    let human = a.cli(&["status"]).ok().stdout;
    assert!(human.contains("FLEET CONFLICT"), "{human}");
    let sock = a.state().join("control.sock");
    let scrape = std::process::Command::new("curl")
        .args([
            "-s",
            "--unix-socket",
            sock.to_str().unwrap(),
            "http://x/metrics",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&scrape.stdout);
    assert!(
        text.contains("mediaretain_fleet_claim_conflict{store=\"archive\"} 1"),
        "{text}"
    );
    // Nothing more is offloaded there.
    a.file("rec/cam1/after.mp4", 10, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !server.raw().exists("fleet/box1/media/rec/cam1/after.mp4"),
        "offloaded to a root in conflict"
    );
    d.stop();
}

/// Objects the shared rules delete that are also this box's own (its node-prefixed store of
/// the same bucket) leave that store's registry at once, with their copy records — not at
/// its next listing (an hour away here): nothing local is freed on such a copy meanwhile.
#[test]
fn what_the_shared_rules_delete_leaves_this_boxs_own_store_at_once() {
    let server = S3Server::moto();
    let keys: BTreeSet<String> = recordings(&server, "boxA", 0, 5).into_iter().collect();
    let a = fleet_box(&server, "boxA", Some("rules_lease = \"3s\""), SHARED_CLASS);
    let text = fs::read_to_string(&a.config)
        .unwrap()
        .replace("scan_interval = \"2s\"", "scan_interval = \"1h\"");
    fs::write(&a.config, text).unwrap();
    let d = a.daemon(None);
    d.wait_for("the shared rule to expire them", T, || {
        audited(&a, "deleted").len() == keys.len()
    });
    assert!(
        d.log
            .lock()
            .unwrap()
            .contains("listed S3 store store=archive files=5"),
        "the box's own store knew them first:\n{}",
        d.log.lock().unwrap()
    );
    let ls = a.cli(&["ls", "--json"]).ok().json();
    let own: Vec<&serde_json::Value> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["store"] == "archive")
        .collect();
    assert!(own.is_empty(), "still entries of the own store: {own:?}");
    d.stop();
}

// A store that stops answering is said once, not at every try: a box whose claim marker
// beats every second, and a holder of a shared store's rules lease (renewed every quarter
// of its 4 s), lose their S3 server. Over the next four heartbeats each failure is logged
// once (the window is the only wait: it bounds how many tries there were to repeat a line,
// and a slow machine only makes the check weaker, never wrong).
#[test]
fn an_unreachable_store_is_logged_once_not_at_every_heartbeat_or_renewal() {
    let mut server = S3Server::moto();
    let b = fleet_box(&server, "boxA", Some("rules_lease = \"4s\""), SHARED_CLASS);
    let d = b.daemon(None);
    d.wait_for("the claim and the rules lease", T, || {
        let log = d.log.lock().unwrap().clone();
        log.contains("claimed the store's root") && holds_lease(&b)
    });
    server.stop();
    let heartbeat = "cannot write the claim marker's heartbeat";
    let lease = "the rules lease";
    d.wait_for("the first failures", T, || {
        let log = d.log.lock().unwrap().clone();
        log.contains(heartbeat) && log.contains("cannot renew the rules lease")
    });
    std::thread::sleep(Duration::from_secs(4));
    let log = d.log.lock().unwrap().clone();
    let warned = |what: &str| {
        log.lines()
            .filter(|l| l.contains(" WARN ") && l.contains(what))
            .count()
    };
    assert_eq!(warned(heartbeat), 1, "{log}");
    assert_eq!(warned(lease), 1, "{log}");
}
