//! S3 stores through the real binary, against real servers on loopback (moto and Garage,
//! started by the tests): remote expiry with verified bulk deletion, offload with the local
//! copy removed only after the remote one is verified, fetch of a large object with flat
//! memory, a crash in the middle of an upload, and a server that stops answering.

mod common;
use common::s3::S3Server;
use common::*;

use std::fs;
use std::time::Duration;

use mediaretain::store::Store;
use mediaretain::store::s3::S3Store;

const MIB: usize = 1 << 20;
const T: Duration = Duration::from_secs(60);

/// The store section for `server` under `prefix`, credentials in a file beside the config.
fn archive(b: &Box_, server: &S3Server, prefix: &str) -> String {
    let creds = b.dir.path().join("archive.credentials");
    fs::write(
        &creds,
        format!(
            "aws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.key_id, server.secret
        ),
    )
    .unwrap();
    format!(
        "\n[[store]]\nname = \"archive\"\nkind = \"s3\"\nendpoint = \"{}\"\nregion = \"{}\"\nbucket = \"{}\"\nprefix = \"{prefix}\"\ncredentials_file = \"archive.credentials\"\nretry_timeout = \"3s\"\n",
        server.endpoint, server.region, server.bucket
    )
}

fn client(server: &S3Server, prefix: &str) -> S3Store {
    S3Store::new(server.settings("archive", prefix)).unwrap()
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Writes `size` bytes of a pattern (not zeros: part checksums differ) to `p`.
fn pattern(p: &std::path::Path, size: usize) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut f = std::io::BufWriter::new(fs::File::create(p).unwrap());
    let block: Vec<u8> = (0..MIB).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut left = size;
    let mut n = 0u8;
    while left > 0 {
        let k = left.min(MIB);
        let mut b = block[..k].to_vec();
        b[0] = n;
        std::io::Write::write_all(&mut f, &b).unwrap();
        left -= k;
        n = n.wrapping_add(1);
    }
}

#[test]
fn remote_objects_expire_by_their_class_verified_and_explained() {
    let server = S3Server::moto();
    let remote = client(&server, "box1");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("o");
    fs::write(&src, b"x").unwrap();
    block(async {
        for k in ["tmp/a.part", "tmp/b.part", "keep/c.mp4"] {
            remote.put_file(k, &src).await.unwrap();
        }
    });
    let b = Box_::new("", "", "");
    let classes = "\n[[class]]\nname = \"remote-tmp\"\nstore = \"archive\"\nmatch = [\"tmp/**\"]\nlifecycle = \"temporary\"\nttl = \"0s\"\nquiet_period = \"0s\"\n";
    let store = archive(&b, &server, "box1/");
    b.write_config("", &store, classes);
    b.cli(&["retain", "archive:tmp/b.part"]).ok();
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["deleted_files"], 1, "{gc}");
    block(async {
        assert!(remote.stat("tmp/a.part").await.unwrap().is_none());
        assert!(
            remote.stat("tmp/b.part").await.unwrap().is_some(),
            "retained"
        );
        assert!(
            remote.stat("keep/c.mp4").await.unwrap().is_some(),
            "no class"
        );
    });
    let x = b.cli(&["explain", "archive:tmp/a.part"]).ok().stdout;
    assert!(x.contains("deleted") && x.contains("rule ttl"), "{x}");
    let ls = b.cli(&["ls", "--json"]).ok().json();
    let paths: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["keep/c.mp4", "tmp/b.part"], "{ls}");
}

#[test]
fn offload_copies_verified_before_the_local_file_goes_and_not_while_in_use() {
    let server = S3Server::garage();
    let b = Box_::new("", "", "");
    let classes = "\n[[class]]\nname = \"rec\"\nstore = \"media\"\nmatch = [\"rec/**\"]\nlifecycle = \"recording\"\nquiet_period = \"0s\"\noffload = { to = \"archive\", after = \"0s\", delete_local = true }\n";
    let store = archive(&b, &server, "box1/");
    b.write_config("", &store, classes);
    let big = b.path("rec/cam1/2026-11-22.mp4");
    pattern(&big, 40 * MIB + 123); // several 16 MiB parts
    let small = b.path("rec/cam1/short.mp4");
    pattern(&small, 1000);
    let busy = b.path("rec/cam2/live.mp4");
    pattern(&busy, 2000);
    let holder = fs::File::open(&busy).unwrap(); // a recorder still has it open

    let plan = b.cli(&["plan"]).ok().stdout;
    assert!(
        plan.contains("offload media:rec/cam1/2026-11-22.mp4"),
        "{plan}"
    );
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["offloaded_files"], 2, "{gc}");
    assert_eq!(gc["offload_refused"], 1, "{gc}");
    assert_eq!(gc["deleted_files"], 2, "{gc}");
    assert!(!big.exists() && !small.exists());
    assert!(busy.exists(), "in use: not offloaded, not deleted");
    let remote = client(&server, "box1");
    block(async {
        let o = remote
            .stat("rec/cam1/2026-11-22.mp4")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(o.size, (40 * MIB + 123) as u64);
        assert!(o.e_tag.unwrap().ends_with("-3"), "a three-part upload");
        assert!(remote.stat("rec/cam2/live.mp4").await.unwrap().is_none());
    });
    let x = b
        .cli(&["explain", "media:rec/cam1/2026-11-22.mp4"])
        .ok()
        .stdout;
    assert!(x.contains("rule offloaded"), "{x}");
    assert!(x.contains("offload done"), "{x}");
    assert!(x.contains("verified"), "{x}");
    let x = b.cli(&["explain", "media:rec/cam2/live.mp4"]).ok().stdout;
    assert!(x.contains("not yet offloaded to archive"), "{x}");
    // The remote copy is an entry of the archive store too.
    let x = b
        .cli(&["explain", "archive:rec/cam1/2026-11-22.mp4", "--json"])
        .ok()
        .json();
    assert_eq!(x["entry"]["size"], 40 * MIB + 123, "{x}");

    // Released: it goes next time.
    drop(holder);
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["offloaded_files"], 1, "{gc}");
    assert!(!busy.exists());

    // The copy is checked again right before the unlink: a copy that vanished behind our
    // back (while the registry still lists it) keeps the local file. A daemon, so that no
    // rescan runs between the copy and the pass.
    let again = b.path("rec/cam3/a.mp4");
    pattern(&again, 3000);
    b.cli(&["retain", again.to_str().unwrap()]).ok();
    let d = b.daemon(None);
    wait_for("the retained file to be copied", T, || {
        b.cli(&["explain", "media:rec/cam3/a.mp4"])
            .stdout
            .contains("offload done")
    });
    assert!(again.exists(), "retained");
    let gone = block(remote.delete_many(&["rec/cam3/a.mp4".into()]));
    assert_eq!(gone[0].1, mediaretain::store::Outcome::Deleted);
    b.cli(&["unretain", again.to_str().unwrap()]).ok();
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert!(again.exists(), "deleted without a copy: {gc}");
    let r = &gc["results"][0];
    assert_eq!(r["result"]["outcome"], "refused", "{gc}");
    assert!(
        r["result"]["detail"].as_str().unwrap().contains("is gone"),
        "{gc}"
    );
    d.stop();
}

#[test]
fn fetch_streams_a_large_object_with_flat_memory() {
    let server = S3Server::garage();
    let remote = client(&server, "box1");
    let b = Box_::new("", "", "");
    let src = b.dir.path().join("big.src");
    pattern(&src, 200 * MIB);
    block(async { remote.put_file("rec/big.mp4", &src).await.unwrap() });
    let store = archive(&b, &server, "box1/");
    b.write_config("", &store, "");
    let dest = b.dir.path().join("restored.mp4");
    let mut child = std::process::Command::new(BIN)
        .args(["--config"])
        .arg(&b.config)
        .args(["fetch", "archive:rec/big.mp4"])
        .arg(&dest)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The child's own high-water mark after exec (VmHWM only grows), read until it exits.
    // (wait4's ru_maxrss would count the test process's pages the child shared before exec.)
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let exit = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if let Ok(text) = fs::read_to_string(&status) {
            let exe = fs::read_link(format!("/proc/{}/exe", child.id())).unwrap_or_default();
            if exe.ends_with("mediaretain") {
                let hwm = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok());
                peak_kb = peak_kb.max(hwm.unwrap_or(0));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(exit.success());
    let peak_mb = peak_kb / 1024;
    assert_eq!(fs::metadata(&dest).unwrap().len(), (200 * MIB) as u64);
    assert_eq!(fs::read(&dest).unwrap(), fs::read(&src).unwrap());
    eprintln!("fetch of 200 MiB: peak RSS {peak_mb} MB");
    assert!(peak_mb < 64, "peak RSS {peak_mb} MB for a 200 MiB object");
    // Its partial file lived in the state directory and is gone.
    let staging = b.state().join("staging");
    assert_eq!(fs::read_dir(&staging).unwrap().count(), 0);
    // A partial left by a process that died is removed by the next command.
    fs::write(staging.join("999999999-1.fetch.part"), b"half").unwrap();
    b.cli(&["status"]).ok();
    assert_eq!(fs::read_dir(&staging).unwrap().count(), 0);
    // An existing destination is not overwritten without --force.
    let r = b.cli(&["fetch", "archive:rec/big.mp4", dest.to_str().unwrap()]);
    assert_eq!(r.code, 65, "{}", r.stderr);
}

#[test]
fn a_crash_mid_upload_is_aborted_and_redone_on_restart() {
    let server = S3Server::garage();
    let b = Box_::new("gc_interval = \"2s\"", "", "");
    let classes = "\n[[class]]\nname = \"rec\"\nstore = \"media\"\nmatch = [\"rec/**\"]\nlifecycle = \"recording\"\nquiet_period = \"0s\"\noffload = { to = \"archive\", after = \"0s\", delete_local = true }\n";
    let store = archive(&b, &server, "box1/");
    b.write_config("gc_interval = \"2s\"", &store, classes);
    let f = b.path("rec/long.mp4");
    pattern(&f, 400 * MIB);
    let remote = client(&server, "box1");
    let d = b.daemon(None);
    wait_for("an upload in progress", T, || {
        !block(remote.list_uploads()).unwrap().is_empty()
    });
    d.signal(rustix::process::Signal::KILL);
    drop(d);
    assert!(
        f.exists(),
        "the local file stays until its copy is verified"
    );
    let d = b.daemon(None);
    wait_for("the offload to finish after the restart", T, || !f.exists());
    let left = block(remote.list_uploads()).unwrap();
    assert!(left.is_empty(), "the crashed upload was aborted: {left:?}");
    let o = block(remote.stat("rec/long.mp4")).unwrap().unwrap();
    assert_eq!(o.size, (400 * MIB) as u64);
    let (_, log) = d.stop();
    assert!(
        log.contains("aborted an upload an earlier run left unfinished"),
        "{log}"
    );

    // The start-up probe measured Garage: no conditional create, no object tags.
    assert!(
        log.contains("S3 store archive: conditional create false, object tags false"),
        "{log}"
    );
}

#[test]
fn a_stopped_server_fails_per_key_and_never_costs_a_local_copy() {
    let mut server = S3Server::garage();
    let remote = client(&server, "box1");
    let b = Box_::new("gc_interval = \"1h\"", "", "");
    let classes = "\n[[class]]\nname = \"rec\"\nstore = \"media\"\nmatch = [\"rec/**\"]\nlifecycle = \"recording\"\nkeep_for = \"0s\"\nquiet_period = \"0s\"\noffload = { to = \"archive\", after = \"0s\", delete_local = true }\n\n[[class]]\nname = \"remote-tmp\"\nstore = \"archive\"\nmatch = [\"tmp/**\"]\nlifecycle = \"temporary\"\nttl = \"0s\"\nquiet_period = \"0s\"\n";
    let store = archive(&b, &server, "box1/");
    b.write_config("gc_interval = \"1h\"", &store, classes);
    // While the server answers: a retained recording gets its verified copy (and stays)…
    let copied = b.path("rec/copied.mp4");
    pattern(&copied, 1000);
    b.cli(&["retain", copied.to_str().unwrap()]).ok();
    let gc = b.cli(&["gc", "--json"]).ok().json();
    assert_eq!(gc["offloaded_files"], 1, "{gc}");
    // …objects due to expire and a new recording are known to the registry.
    let src = b.dir.path().join("o");
    fs::write(&src, b"x").unwrap();
    block(async {
        for i in 0..5 {
            remote.put_file(&format!("tmp/{i}"), &src).await.unwrap();
        }
    });
    let local = b.path("rec/x.mp4");
    pattern(&local, 1000);
    b.cli(&["scan"]).ok();
    b.cli(&["unretain", copied.to_str().unwrap()]).ok();

    server.stop();
    let started = std::time::Instant::now();
    let r = b.cli(&["gc", "--json"]);
    assert_eq!(r.code, 74, "{}", r.stderr);
    let gc = r.json();
    assert_eq!(gc["failed"], 5, "one result per key: {gc}");
    assert_eq!(gc["offload_failed"], 1, "{gc}");
    assert!(
        local.exists(),
        "keep_for 0s, but no verified copy: it stays"
    );
    // Its copy cannot be checked right before the unlink: it stays too, and quickly.
    assert!(copied.exists(), "{gc}");
    let refused: Vec<&serde_json::Value> = gc["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"] == "rec/copied.mp4")
        .collect();
    assert_eq!(refused[0]["result"]["outcome"], "refused", "{gc}");
    assert!(
        refused[0]["result"]["detail"]
            .as_str()
            .unwrap()
            .contains("cannot check its copy"),
        "{gc}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    for f in gc["results"].as_array().unwrap() {
        if f["store"] == "archive" {
            let detail = f["result"]["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("archive"), "names the store: {f}");
        }
    }
    // The daemon starts and stays healthy with its S3 server down.
    let d = b.daemon(None);
    let st = b.cli(&["status", "--json"]).ok().json();
    assert_eq!(st["activity"]["daemon"], true);
    assert!(local.exists() && copied.exists());
    d.stop();
}
