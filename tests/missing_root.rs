//! A store root that is missing (an unplugged disk, a share not mounted yet) or not
//! mounted (its mount point's bare directory on the parent filesystem) stops nothing but its
//! own store, and nothing of that store is indexed, deleted or forgotten in its place
//! (issue 25 item 4; docs/missing-roots.md). Real tmpfs and bind mounts: run as root.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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
"#;

const USB: &str = r#"
[[store]]
name = "usb"
kind = "local"
root = "usb"

[[class]]
name = "usb-tmp"
store = "usb"
match = ["tmp/**"]
lifecycle = "temporary"
ttl = "30m"
"#;

const HOUR: Duration = Duration::from_secs(3600);

fn status(b: &Box_) -> serde_json::Value {
    b.cli(&["status", "--json"]).ok().json()
}

/// The names of the stores `status --json` reports missing or not mounted, with the state.
fn missing(b: &Box_) -> Vec<(String, String)> {
    status(b)["missing_stores"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["store"].as_str().unwrap_or("").to_string(),
                m["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn listed(b: &Box_) -> Vec<String> {
    b.cli(&["ls", "--json"])
        .ok()
        .json()
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}:{}",
                e["store"].as_str().unwrap_or(""),
                e["path"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn metrics(b: &Box_) -> String {
    socket_http(
        &b.state().join("control.sock"),
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .1
}

fn run(cmd: &str, args: &[&Path]) {
    let mut c = Command::new(cmd);
    let (opts, paths): (Vec<&Path>, Vec<&Path>) = args.iter().partition(|a| a.starts_with("-"));
    c.args(opts).args(paths);
    let st = c.status().expect(cmd);
    assert!(st.success(), "{cmd} {args:?} failed (the test needs root)");
}

/// (a) Two stores, one root missing at start: the daemon starts, the other store's expired
/// files go, status and the metric name the missing one, the err line comes once; then the
/// root appears with files and is indexed and cleaned without a restart.
#[test]
fn a_missing_root_stops_only_its_store_and_is_picked_up_when_it_appears() {
    let b = Box_::new("gc_interval = \"1h\"\nscan_interval = \"1h\"", USB, CLASSES);
    let old = b.file("tmp/old.bin", 10, HOUR);
    let d = b.daemon(None);
    d.wait_for(
        "media's expired file to go",
        Duration::from_secs(10),
        || !old.exists(),
    );
    assert_eq!(missing(&b), [("usb".to_string(), "missing".to_string())]);
    let m = metrics(&b);
    assert!(
        m.contains("mediaretain_store_root_missing{store=\"usb\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("mediaretain_store_root_missing{store=\"media\"} 0"),
        "{m}"
    );
    // rm and explain on it say it is missing.
    let usb = b.dir.path().join("usb");
    let r = b.cli(&["rm", usb.join("tmp/x").to_str().unwrap()]);
    assert_eq!(r.code, 69, "{r:?}");
    assert!(r.stderr.contains("store \"usb\" is missing"), "{r:?}");
    let r = b.cli(&["explain", "usb:tmp/x"]);
    assert!(r.stderr.contains("store \"usb\" is missing"), "{r:?}");

    // A reload while it is missing: still missing, not said again.
    b.cli(&["reload"]).ok();
    assert_eq!(missing(&b), [("usb".to_string(), "missing".to_string())]);
    let r = b.cli(&["check-config"]).ok();
    assert!(r.stderr.contains("store \"usb\": root"), "{r:?}");

    // The disk appears (made beside, then renamed in: one step, with its files).
    let staged = b.dir.path().join("usb.new");
    fs::create_dir_all(staged.join("tmp")).unwrap();
    fs::write(staged.join("tmp/due.bin"), b"due").unwrap();
    set_age(&staged.join("tmp/due.bin"), HOUR);
    fs::write(staged.join("tmp/fresh.bin"), b"fresh").unwrap();
    fs::rename(&staged, &usb).unwrap();
    d.wait_for(
        "usb's expired file to go, without a restart",
        Duration::from_secs(15),
        || !usb.join("tmp/due.bin").exists(),
    );
    d.wait_for("usb's fresh file indexed", Duration::from_secs(10), || {
        listed(&b).contains(&"usb:tmp/fresh.bin".to_string())
    });
    assert!(usb.join("tmp/fresh.bin").exists());
    assert_eq!(missing(&b), []);
    assert!(metrics(&b).contains("mediaretain_store_root_missing{store=\"usb\"} 0"));
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    // Said once at err (not at every check or pass), and when it came back.
    let said = log
        .lines()
        .filter(|l| l.contains("store usb is missing"))
        .count();
    assert_eq!(said, 1, "{log}");
    assert!(log.contains("store usb is back"), "{log}");
}

/// (b) A store root on a tmpfs (bind-)mounted there, indexed; unmounted while the daemon
/// runs (the bare directory stays, with a due file planted in it): nothing of the store is
/// forgotten, nothing in the bare directory is indexed or deleted, status says not mounted
/// — also across a restart; mounted again, it is back to normal.
#[test]
fn an_unmounted_root_is_not_taken_for_the_store() {
    let b = Box_::new("gc_interval = \"1h\"\nscan_interval = \"1h\"", "", CLASSES);
    let backing = b.dir.path().join("backing");
    fs::create_dir_all(&backing).unwrap();
    let _fs = Tmpfs::mount(&backing, "16m");
    run("mount", &[Path::new("--bind"), &backing, &b.media]);
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _bind = Unmount(b.media.clone());
    b.file("rec/cam1.mp4", 1000, Duration::ZERO);
    b.file("rec/cam2.mp4", 1000, Duration::ZERO);
    let d = b.daemon(None);
    let before = listed(&b);
    assert_eq!(before.len(), 2, "{before:?}");

    // Unplugged: the daemon holds the root open, so (as an operator must) lazily.
    run("umount", &[Path::new("-l"), &b.media]);
    assert!(!b.media.join("rec").exists());
    let bare = b.file("tmp/bare-due.bin", 10, HOUR);
    // A scan and a pass asked for at once, before the daemon looked at its roots again.
    b.cli(&["scan"]).ok();
    b.cli(&["gc"]).ok();
    assert!(bare.exists(), "a file in the bare directory was deleted");
    assert_eq!(
        listed(&b),
        before,
        "the store's entries changed while it was unmounted"
    );
    d.wait_for("status to say not mounted", Duration::from_secs(10), || {
        missing(&b) == [("media".to_string(), "not-mounted".to_string())]
    });
    b.cli(&["scan"]).ok();
    b.cli(&["gc"]).ok();
    assert!(bare.exists());
    assert_eq!(listed(&b), before);
    let (_, log) = d.stop();
    assert!(!log.contains("vanished"), "{log}");

    // A start while it is not mounted: the registry remembers the root was a mount point.
    let d = b.daemon(None);
    assert_eq!(
        missing(&b),
        [("media".to_string(), "not-mounted".to_string())]
    );
    b.cli(&["gc"]).ok();
    assert!(bare.exists());
    assert_eq!(listed(&b), before);
    let m = metrics(&b);
    assert!(
        m.contains("mediaretain_store_root_missing{store=\"media\"} 2"),
        "{m}"
    );

    // Mounted again (with a due file of its own): back to normal, without a restart.
    fs::create_dir_all(backing.join("tmp")).unwrap();
    fs::write(backing.join("tmp/due.bin"), b"due").unwrap();
    set_age(&backing.join("tmp/due.bin"), HOUR);
    run("mount", &[Path::new("--bind"), &backing, &b.media]);
    d.wait_for(
        "the mounted store's due file to go",
        Duration::from_secs(15),
        || !backing.join("tmp/due.bin").exists(),
    );
    assert_eq!(missing(&b), []);
    assert_eq!(listed(&b), before);
    assert!(backing.join("rec/cam1.mp4").exists());
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    drop(_bind);
    assert!(bare.exists(), "the bare directory's file was deleted");
}

/// (c) `require_mount = true`: a root that is a plain directory is not the store (nothing
/// indexed or deleted in it); an operator who says otherwise (`require_mount = false`,
/// reload) gets it taken as the store, remembered also once the key is gone again.
#[test]
fn require_mount_and_the_operator_saying_otherwise() {
    let b = Box_::new(
        "gc_interval = \"1h\"\nscan_interval = \"1h\"",
        "require_mount = true",
        CLASSES,
    );
    let due = b.file("tmp/due.bin", 10, HOUR);
    let d = b.daemon(None);
    assert_eq!(
        missing(&b),
        [("media".to_string(), "not-mounted".to_string())]
    );
    let text = b.cli(&["status"]).ok().stdout;
    assert!(text.contains("NOT MOUNTED: store media"), "{text}");
    b.cli(&["gc"]).ok();
    assert!(due.exists());
    assert_eq!(listed(&b), Vec::<String>::new());

    // The operator: this directory is the store now.
    b.write_config(
        "gc_interval = \"1h\"\nscan_interval = \"1h\"",
        "require_mount = false",
        CLASSES,
    );
    b.cli(&["reload"]).ok();
    d.wait_for("the due file to go", Duration::from_secs(10), || {
        !due.exists()
    });
    assert_eq!(missing(&b), []);
    // The key removed again: the directory was remembered as it is (no mount point).
    b.write_config("gc_interval = \"1h\"\nscan_interval = \"1h\"", "", CLASSES);
    b.cli(&["reload"]).ok();
    assert_eq!(missing(&b), []);
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
}
