//! A fleet on one bucket (issue 28 items 4 and 5), through the real binary against real
//! servers on loopback: a three-node Garage cluster with one node killed in the middle of
//! the offloads (endpoint failover), and `mediaretain fleet` over two daemons' status
//! objects, one of them killed with SIGKILL.

mod common;
use common::prometheus::Prometheus;
use common::s3::S3Server;
use common::*;

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use md5::{Digest, Md5};
use mediaretain::store::Store;
use mediaretain::store::s3::S3Store;

const T: Duration = Duration::from_secs(120);

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `endpoints` as a TOML array.
fn toml_list(endpoints: &[String]) -> String {
    let quoted: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Every object under the client's prefix: key → size.
fn objects(remote: &S3Store) -> BTreeMap<String, u64> {
    use futures::TryStreamExt;
    block(async {
        remote
            .list()
            .map_ok(|o| (o.key, o.size))
            .try_collect()
            .await
            .unwrap()
    })
}

/// The MD5 of object `key`, read back whole.
fn object_md5(remote: &S3Store, dir: &std::path::Path, key: &str) -> String {
    let dest = dir.join(key.replace('/', "_"));
    block(remote.fetch(key, &dest)).unwrap();
    let sum = hex(&Md5::digest(fs::read(&dest).unwrap()));
    fs::remove_file(&dest).unwrap();
    sum
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// Issue 28 item 5. Three Garage nodes (replication factor 3) behind one store whose
// `endpoint` lists all three, node 0 first. The daemon offloads N recordings with
// `delete_local`; once the first copies are in, node 0 is killed (SIGKILL): its endpoint
// refuses connections. Every offload must complete through nodes 1 and 2, every local
// file removed only with a verified copy (each object's content read back and compared),
// the backlog drained; a remote rule on the same store (scratch objects expiring at once)
// lists and deletes through the others too — and the status object and the metrics name
// node 0's endpoint as down, then up again once the node is back.
#[test]
fn offloads_go_on_through_the_other_nodes_when_one_garage_node_dies() {
    const N: usize = 40;
    const SIZE: usize = 1 << 20;
    let mut cluster = S3Server::garage_cluster(3);
    eprintln!("3-node garage cluster up in {:?}", cluster.startup);
    let b = Box_::new("", "", "");
    let store = cluster
        .store_section(b.dir.path(), "ENDPOINTS", "box1/")
        .replace("\"ENDPOINTS\"", &toml_list(&cluster.endpoints));
    // And a remote rule on the same store: scratch objects expire at once.
    let classes = "\n[[class]]\nname = \"rec\"\nstore = \"media\"\nmatch = [\"rec/**\"]\nlifecycle = \"recording\"\nquiet_period = \"0s\"\noffload = { to = \"archive\", after = \"0s\", delete_local = true }\n\n[[class]]\nname = \"scratch\"\nstore = \"archive\"\nmatch = [\"tmp/**\"]\nlifecycle = \"temporary\"\nttl = \"0s\"\nquiet_period = \"0s\"\n";
    // A rescan every 2 s lists the bucket again (the remote rule sees new objects).
    b.write_config(
        "fleet_heartbeat = \"1s\"\nscan_interval = \"2s\"",
        &store,
        classes,
    );
    let mut sums = BTreeMap::new();
    for i in 0..N {
        let rel = format!("rec/cam{}/{i:03}.mp4", i % 4);
        let p = b.path(&rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        // Distinct contents: a copy of the wrong file would not pass the comparison.
        let body: Vec<u8> = (0..SIZE)
            .map(|k| (k * 31 + i * 7 + k / 509) as u8)
            .collect();
        fs::write(&p, &body).unwrap();
        set_age(&p, Duration::from_secs(60));
        sums.insert(format!("media/{rel}"), hex(&Md5::digest(&body)));
    }
    // Read through node 2, which stays up.
    let mut settings = cluster.settings("check", "box1");
    settings.endpoint = cluster.endpoints[2].clone();
    let remote = S3Store::new(settings).unwrap();

    let d = b.daemon(None);
    d.wait_for("the first copies", T, || {
        objects(&remote).keys().any(|k| k.starts_with("media/"))
    });
    cluster.kill_node(0);
    let at_kill = objects(&remote)
        .keys()
        .filter(|k| k.starts_with("media/"))
        .count();
    eprintln!("node 0 killed with {at_kill} of {N} copies in the bucket");
    assert!(
        at_kill < N,
        "the offloads were over before node 0 was killed: make N larger"
    );

    // Scratch objects put after the kill: the remote rule must list and delete them
    // through nodes 1 and 2.
    let src = b.dir.path().join("scratch");
    fs::write(&src, b"scratch").unwrap();
    for i in 0..60 {
        block(remote.put_file(&format!("tmp/{i:02}.part"), &src)).unwrap();
    }

    // Every local file gone only with its object present at its full size, all the way.
    let mut down_seen = false;
    let sock = b.state().join("control.sock");
    let first = cluster.endpoints[0].clone();
    let metric = |up: u8| {
        format!("mediaretain_s3_endpoint_up{{store=\"archive\",endpoint=\"{first}\"}} {up}")
    };
    let scrape = || {
        socket_http(
            &sock,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .1
    };
    let mut down_metric = false;
    d.wait_for(
        "every offload and the remote rule through nodes 1 and 2",
        T,
        || {
            let objs = objects(&remote);
            for key in sums.keys() {
                let local = b.path(key.strip_prefix("media/").unwrap());
                if !local.exists() {
                    assert_eq!(
                        objs.get(key),
                        Some(&(SIZE as u64)),
                        "{key}: the local file is gone without its copy"
                    );
                }
            }
            let status = block(remote.get_small(".mediaretain/status.json", 1 << 16)).unwrap();
            if let Some((body, _)) = status {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                down_seen |= v["endpoints"][0]["reachable"] == false;
            }
            down_metric |= scrape().contains(&metric(0));
            !objs.keys().any(|k| k.starts_with("tmp/"))
                && sums.keys().all(|k| objs.contains_key(k))
                && sums
                    .keys()
                    .all(|k| !b.path(k.strip_prefix("media/").unwrap()).exists())
        },
    );
    let dir = tempfile::tempdir().unwrap();
    for (key, sum) in &sums {
        assert_eq!(&object_md5(&remote, dir.path(), key), sum, "{key}");
    }
    assert!(
        down_seen,
        "the status object never named node 0's endpoint as down"
    );
    assert!(down_metric, "the metrics never said {}", metric(0));
    let log = d.log.lock().unwrap().clone();
    assert!(
        log.contains("endpoint unreachable"),
        "the failover was not logged:\n{log}"
    );

    // Back: the backlog is empty and node 0's endpoint taken again.
    cluster.restart_node(0);
    d.wait_for("an empty backlog and node 0 reachable again", T, || {
        let Some((body, _)) = block(remote.get_small(".mediaretain/status.json", 1 << 16)).unwrap()
        else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["backlog"]["offload_files"] == 0
            && v["backlog"]["offload_backing_off"] == 0
            && v["endpoints"][0]["reachable"] == true
    });
    assert!(scrape().contains(&metric(1)), "{}", scrape());
    let st = b.cli(&["status", "--json"]).ok().json();
    assert_eq!(st["offload_backing_off"]["files"], 0, "{st}");
}

// Issue 28 item 4. Two daemons write their status objects under one bucket prefix
// (`fleet/a/`, `fleet/b/`) every 2 s; `mediaretain fleet`, run with a third config and no
// daemon of its own, lists both with their ages. Box b is killed with SIGKILL: after three
// heartbeats `fleet` names it stale, and box a not.
#[test]
fn fleet_lists_every_box_and_names_the_one_that_stopped() {
    let server = S3Server::moto();
    let a = Box_::new("", "", "");
    let b = Box_::new("", "", "");
    for (bx, prefix) in [(&a, "fleet/a/"), (&b, "fleet/b/")] {
        let store = server.store_section(bx.dir.path(), &server.endpoint, prefix);
        bx.write_config("fleet_heartbeat = \"2s\"", &store, "");
    }
    let viewer = Box_::new("", "", "");
    let store = server.store_section(viewer.dir.path(), &server.endpoint, "fleet/");
    viewer.write_config("fleet_heartbeat = \"2s\"", &store, "");
    let fleet = || viewer.cli(&["fleet", "--json"]).ok().json();

    let da = a.daemon(None);
    let db = b.daemon(None);
    da.wait_for("both boxes in the fleet view", T, || {
        let f = fleet();
        f["boxes"].as_array().is_some_and(|v| v.len() == 2)
    });
    let f = fleet();
    let boxes = f["boxes"].as_array().unwrap();
    assert_eq!(boxes[0]["dir"], "a", "{f}");
    assert_eq!(boxes[1]["dir"], "b", "{f}");
    for bx in boxes {
        assert_eq!(bx["stale"], false, "{f}");
        assert_eq!(bx["status"]["heartbeat"], "2s", "{f}");
        assert_eq!(bx["status"]["version"], env!("CARGO_PKG_VERSION"), "{f}");
        assert_eq!(bx["status"]["clock"]["state"], "ok", "{f}");
        let age: mediaretain::units::Dur = bx["age"].as_str().unwrap().parse().unwrap();
        assert!(age.0 <= Duration::from_secs(6), "{f}");
    }
    assert_eq!(boxes[1]["status"]["pid"], db.pid(), "{f}");
    assert_eq!(f["stale"], serde_json::json!([]), "{f}");

    db.signal(rustix::process::Signal::KILL);
    da.wait_for("box b named stale", T, || {
        let f = fleet();
        f["boxes"][1]["stale"] == true
    });
    let f = fleet();
    assert_eq!(f["boxes"][0]["stale"], false, "box a still writes: {f}");
    let stale = f["stale"].as_array().unwrap();
    assert_eq!(stale.len(), 1, "{f}");
    assert!(stale[0].as_str().unwrap().contains("b/"), "{f}");
    let human = viewer.cli(&["fleet"]).ok().stdout;
    assert!(human.contains("2 boxes"), "{human}");
    let b_line = human.lines().find(|l| l.contains("(b/)")).unwrap();
    assert!(b_line.contains("STALE"), "{human}");
    let a_line = human.lines().find(|l| l.contains("(a/)")).unwrap();
    assert!(!a_line.contains("STALE"), "{human}");
    assert!(
        human.contains("stale (no status for over 3 heartbeats)"),
        "{human}"
    );
    drop(da);
}

// `endpoint` takes one URL or a list of one cluster's; a list is checked like one URL,
// each entry at the key's line, and an empty or repeated one refused.
#[test]
fn endpoint_lists_are_read_and_checked() {
    let parse = |endpoint: &str| {
        let text = format!(
            "[daemon]\nstate_dir = \"/s\"\n\n[[store]]\nname = \"archive\"\nkind = \"s3\"\nendpoint = {endpoint}\nbucket = \"b\"\n"
        );
        mediaretain::config::Config::parse_with(std::path::Path::new("/c.toml"), &text, false)
    };
    let one = parse("\"http://127.0.0.1:3900\"").unwrap();
    let l = one.stores[0].s3.clone().unwrap();
    assert_eq!(l.endpoint, "http://127.0.0.1:3900");
    assert!(l.more_endpoints.is_empty());
    let three =
        parse("[\"http://127.0.0.1:3900\", \"http://127.0.0.1:3901\", \"https://s3.example.com\"]")
            .unwrap();
    let l = three.stores[0].s3.clone().unwrap();
    assert_eq!(l.endpoint, "http://127.0.0.1:3900");
    assert_eq!(
        l.more_endpoints,
        ["http://127.0.0.1:3901", "https://s3.example.com"]
    );
    for (bad, want) in [
        ("[]", "endpoint lists no URL"),
        (
            "[\"http://127.0.0.1:3900\", \"http://127.0.0.1:3900/\"]",
            "listed twice",
        ),
        (
            "[\"http://127.0.0.1:3900\", \"ftp://x\"]",
            "must start with https://",
        ),
        ("[1]", "invalid type"),
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains("/c.toml:7:"), "{bad}: {e}");
        assert!(e.contains(want), "{bad}: {e}");
    }
}

/// The instant vector of `q`: the `node` label and the value of each series.
fn by_node(prom: &Prometheus, q: &str) -> BTreeMap<String, f64> {
    (prom.query(q).into_iter())
        .map(|(labels, x)| (labels["node"].as_str().unwrap_or("").to_string(), x))
        .collect()
}

// docs/metrics.md, "A fleet": one Prometheus scraping two boxes with a `node` label per
// target (the scrape config as the page writes it), and the page's `by (node)` queries
// answer per box; a box killed shows as `up == 0` under its own node.
#[test]
fn one_prometheus_sees_each_box_of_a_fleet_by_its_node_label() {
    let page = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let fleet = &page[page.find("## A fleet").expect("the page's fleet section")..];
    let (a, b) = (Box_::new("", "", ""), Box_::new("", "", ""));
    let (pa, pb) = (common::s3::free_port(), common::s3::free_port());
    for (bx, port) in [(&a, pa), (&b, pb)] {
        bx.write_config(
            "",
            "",
            &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        );
    }
    // The page's first scrape job, its two targets pointed at the two daemons.
    let job = fleet
        .split("```yaml\n")
        .nth(1)
        .unwrap()
        .split("  - job_name: mediaretain-discovered")
        .next()
        .unwrap()
        .replace("rec-01.lan:9464", &format!("127.0.0.1:{pa}"))
        .replace("rec-02.lan:9464", &format!("127.0.0.1:{pb}"))
        .replace(
            "scrape_interval: 30s",
            "scrape_interval: 1s\n    scrape_timeout: 1s",
        );
    assert!(job.contains(&format!("127.0.0.1:{pb}")), "{job}");
    let prom = Prometheus::start(&job);
    let da = a.daemon(None);
    let db = b.daemon(None);
    let up = r#"count by (node) (up{job=~"mediaretain.*"} == 1)"#;
    da.wait_for("both boxes up in Prometheus", T, || {
        by_node(&prom, up).len() == 2
    });
    for q in [
        "max by (node) (mediaretain_volume_used_ratio)",
        "sum by (node) (mediaretain_offload_backlog_files)",
        "max by (node) (mediaretain_clock_jumped) == 0",
    ] {
        assert!(
            fleet.contains(q.trim_end_matches(" == 0")),
            "{q} is not on the page"
        );
        da.wait_for(q, T, || {
            by_node(&prom, q).keys().cloned().collect::<Vec<_>>() == ["box1", "box2"]
        });
    }
    db.signal(rustix::process::Signal::KILL);
    da.wait_for("box2 down, box1 up", T, || {
        let up = by_node(&prom, r#"up{job="mediaretain"}"#);
        up.get("box1") == Some(&1.0) && up.get("box2") == Some(&0.0)
    });
}

/// The classes of every box of the cluster test: recordings and clips offloaded to the box's
/// own store (`delete_local`), a 30-day rule on the archived recordings (what `lifecycle`
/// compiles), and the shared rule: every box's clips expire 5 s after their upload (not at
/// once: a copy deleted before its box verified it is uploaded again — another object under
/// the same key, which would be a second deletion of that key).
const CLUSTER_CLASSES: &str = r#"
[[class]]
name = "rec"
store = "media"
match = ["rec/**"]
lifecycle = "recording"
quiet_period = "0s"
offload = { to = "archive", after = "0s", delete_local = true }

[[class]]
name = "clips"
store = "media"
match = ["clips/**"]
lifecycle = "recording"
quiet_period = "0s"
offload = { to = "archive", after = "0s", delete_local = true }

[[class]]
name = "archived-rec"
store = "archive"
match = ["media/rec/**"]
lifecycle = "recording"
keep_for = "30d"

[[class]]
name = "old-clips"
store = "everyone"
match = ["*/media/clips/**"]
lifecycle = "temporary"
ttl = "5s"
quiet_period = "0s"
"#;

/// Box `node` of the cluster test on `cluster`: its own store `archive` under
/// `fleet/NODE/` and the shared store `everyone` spanning `fleet/`, both listing every
/// node of the cluster; the shared rules are `box-a`'s (Garage ignores conditional writes,
/// so no lease can be fenced there).
fn cluster_box(cluster: &S3Server, node: &str) -> Box_ {
    let b = Box_::new("", "", "");
    let eps = toml_list(&cluster.endpoints);
    let own = cluster
        .store_section(b.dir.path(), "ENDPOINTS", "fleet")
        .replace("\"ENDPOINTS\"", &eps)
        .replace("node_prefix = false\n", "");
    let shared = format!(
        "\n[[store]]\nname = \"everyone\"\nkind = \"s3\"\nendpoint = {eps}\nregion = \"{}\"\nbucket = \"{}\"\nprefix = \"fleet\"\ncredentials_file = \"archive.credentials\"\nretry_timeout = \"3s\"\nshared = true\nremote_rules_node = \"box-a\"\n",
        cluster.region, cluster.bucket
    );
    b.write_config(
        &format!(
            "node = \"{node}\"\nfleet_heartbeat = \"1s\"\ngc_interval = \"1s\"\nscan_interval = \"2s\""
        ),
        &(own + &shared),
        CLUSTER_CLASSES,
    );
    b
}

/// The keys of store `store` box `b` audited as deleted, each with its count.
fn deleted_by(b: &Box_, store: &str) -> BTreeMap<String, usize> {
    let h = b
        .cli(&[
            "history",
            "--store",
            store,
            "--outcome",
            "deleted",
            "--limit",
            "10000",
            "--json",
        ])
        .ok()
        .json();
    let mut out = BTreeMap::new();
    for r in h["records"]
        .as_array()
        .or_else(|| h.as_array())
        .into_iter()
        .flatten()
    {
        *out.entry(r["path"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
    out
}

// Issue 28 item 6, on the three-node Garage cluster (replication factor 3): three boxes
// with state directories and local stores of their own archive into one bucket under node
// prefixes, each with the same relative paths and contents of its own; one shared class
// expires every box's clips. Node 0 is killed once the first copies are in. Checks: every
// recording is archived once under its own box's prefix with its own box's content (none
// overwritten), no local file goes without its copy, the backlog drains once node 0 is
// back; the shared rule deletes each clip once across the three boxes (audits summed, only
// box-a's); a fourth daemon with a taken node name is refused (Garage ignores conditional
// writes: found by the marker's heartbeat); `lifecycle apply` of every box then `check`
// show the three boxes' compiled rules side by side in the bucket.
#[test]
fn three_boxes_on_a_three_node_garage_cluster_archive_once_and_apply_the_shared_rule_once() {
    const N: usize = 10;
    const SIZE: usize = 256 << 10;
    let mut cluster = S3Server::garage_cluster(3);
    eprintln!("3-node garage cluster up in {:?}", cluster.startup);
    let nodes = ["box-a", "box-b", "box-c"];
    let boxes: Vec<Box_> = nodes.iter().map(|n| cluster_box(&cluster, n)).collect();
    // Same relative paths on every box, contents of its own.
    let mut sums = BTreeMap::new();
    for (bi, (b, node)) in boxes.iter().zip(nodes).enumerate() {
        for i in 0..N {
            for kind in ["rec", "clips"] {
                let rel = format!("{kind}/cam/{i:03}.mp4");
                let p = b.path(&rel);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                let body: Vec<u8> = (0..SIZE)
                    .map(|k| (k * 31 + i * 7 + bi * 13 + k / 509) as u8)
                    .collect();
                fs::write(&p, &body).unwrap();
                set_age(&p, Duration::from_secs(60));
                sums.insert(format!("{node}/media/{rel}"), hex(&Md5::digest(&body)));
            }
        }
    }
    // The whole prefix, read through node 2, which stays up.
    let mut settings = cluster.settings("check", "fleet");
    settings.endpoint = cluster.endpoints[2].clone();
    let all = S3Store::new(settings).unwrap();

    let daemons: Vec<Daemon> = boxes.iter().map(|b| b.daemon(None)).collect();
    daemons[0].wait_for("the first copies", T, || {
        objects(&all).keys().any(|k| k.contains("/media/"))
    });
    cluster.kill_node(0);
    let at_kill = objects(&all)
        .keys()
        .filter(|k| k.contains("/media/"))
        .count();
    eprintln!("node 0 killed with {at_kill} of {} copies in", 6 * N);

    // A fourth daemon named like box-b is refused while box-b runs.
    let twin = cluster_box(&cluster, "box-b");
    let (code, log) = refused_start(&twin);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("box-b"), "the refusal names the box: {log}");

    // Every recording archived under its own box's prefix; every clip archived, then
    // expired by the shared rule; no local file gone without its copy.
    let is_clip = |k: &str| k.contains("/media/clips/");
    let mut clips_seen = std::collections::BTreeSet::new();
    daemons[0].wait_for("every recording archived and every clip expired", T, || {
        let objs = objects(&all);
        for key in sums.keys() {
            let (node, rel) = key.split_once("/media/").unwrap();
            let b = &boxes[nodes.iter().position(|n| *n == node).unwrap()];
            if objs.contains_key(key) && is_clip(key) {
                clips_seen.insert(key.clone());
            }
            if !b.path(rel).exists() && !is_clip(key) {
                assert_eq!(
                    objs.get(key),
                    Some(&(SIZE as u64)),
                    "{key}: the local file is gone without its copy"
                );
            }
        }
        sums.keys()
            .filter(|k| !is_clip(k))
            .all(|k| objs.contains_key(k))
            && !objs.keys().any(|k| is_clip(k))
            && sums.keys().all(|k| {
                let (node, rel) = k.split_once("/media/").unwrap();
                !boxes[nodes.iter().position(|n| *n == node).unwrap()]
                    .path(rel)
                    .exists()
            })
    });
    let dir = tempfile::tempdir().unwrap();
    for (key, sum) in sums.iter().filter(|(k, _)| !is_clip(k)) {
        assert_eq!(
            &object_md5(&all, dir.path(), key),
            sum,
            "{key}: overwritten"
        );
    }
    // No other media key: one copy per recording, under its own box.
    let extra: Vec<String> = objects(&all)
        .into_keys()
        .filter(|k| !sums.contains_key(k))
        .collect();
    assert!(extra.is_empty(), "keys beside the expected ones: {extra:?}");

    // The shared rule: each clip deleted once, by box-a alone.
    let audits: Vec<BTreeMap<String, usize>> =
        boxes.iter().map(|b| deleted_by(b, "everyone")).collect();
    let mut summed: BTreeMap<String, usize> = BTreeMap::new();
    for a in &audits {
        for (k, n) in a {
            *summed.entry(k.clone()).or_insert(0) += n;
        }
    }
    let clips: BTreeMap<String, usize> = sums
        .keys()
        .filter(|k| is_clip(k))
        .map(|k| (k.clone(), 1))
        .collect();
    assert_eq!(summed, clips, "each clip deleted and audited once");
    assert!(
        audits[1].is_empty() && audits[2].is_empty(),
        "only box-a applies the shared rules: {audits:?}"
    );
    eprintln!(
        "{} clips (of which {} seen in the bucket by the test) expired by box-a alone",
        clips.len(),
        clips_seen.len()
    );

    // Node 0 back: every box's backlog drains.
    cluster.restart_node(0);
    for (b, node) in boxes.iter().zip(nodes) {
        daemons[0].wait_for(&format!("{node}: an empty backlog"), T, || {
            let st = b.cli(&["status", "--json"]).json();
            st["offload_backing_off"]["files"] == 0
        });
    }

    // Node 0 back in the cluster (its peers reconnected: a listing through it reaches a
    // quorum), then native rules: every box compiles its own (named by its node), side by
    // side.
    let mut settings = cluster.settings("check0", "fleet");
    settings.endpoint = cluster.endpoints[0].clone();
    let zero = S3Store::new(settings).unwrap();
    daemons[0].wait_for("node 0 answering with a quorum", T, || {
        use futures::TryStreamExt;
        block(async { zero.list().try_collect::<Vec<_>>().await }).is_ok()
    });
    for b in &boxes {
        b.cli(&["lifecycle", "apply", "archive"]).ok();
    }
    for (b, node) in boxes.iter().zip(nodes) {
        let c = b.cli(&["lifecycle", "check", "archive", "--json"]);
        assert_eq!(c.code, 0, "{node}: {c:?}");
        let v = c.json();
        let ids: Vec<&str> = v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert!(
            ids.contains(&format!("mediaretain:{node}:archived-rec").as_str()),
            "{node}: {v}"
        );
        assert_eq!(
            v["other_rules"], 4,
            "the other two boxes' rules are kept: {v}"
        );
        assert_eq!(
            v["rules"][0]["prefix"],
            format!("fleet/{node}/media/rec/"),
            "{v}"
        );
    }
}
