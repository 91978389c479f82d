//! The disk-pressure watchdog on a real size-limited filesystem: a tmpfs mounted for the
//! test (root needed, as in CI). A writer fills it with segments and recordings while some
//! files are held open (a thumbnailer) and some are retained; the daemon must keep the
//! writer from ever hitting ENOSPC without touching those, and say STUCK — not delete
//! them — once only protected data is left.

mod common;
use common::*;

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const T: Duration = Duration::from_secs(30);

const CLASSES: &str = r#"
[[class]]
name = "hls"
store = "media"
match = ["hls/**/*.ts"]
lifecycle = "segment"
keep_for = "1h"
quiet_period = "0s"

[[class]]
name = "rec"
store = "media"
match = ["rec/**"]
lifecycle = "recording"
keep_for = "30d"
min_keep = "0s"
quiet_period = "0s"
pressure_priority = 1

# Never freed under pressure: a recording class without min_keep.
[[class]]
name = "archive"
store = "media"
match = ["archive/**"]
lifecycle = "recording"
keep_for = "30d"
quiet_period = "0s"

[watchdog]
high = "95%"
low = "90%"
horizon = "0s"
interval = "1s"

# The test's tmpfs (the store root is its mount point): its own watermarks.
[[watchdog.volume]]
path = "media"
high = "80%"
low = "60%"
"#;

fn volume(b: &Box_) -> serde_json::Value {
    let st = b.cli(&["status", "--json"]).ok().json();
    st["volumes"][0].clone()
}

#[test]
fn a_writer_never_hits_enospc_and_protected_files_survive_then_stuck() {
    let b = Box_::new("gc_interval = \"1h\"\nscan_interval = \"1h\"", "", CLASSES);
    let _fs = Tmpfs::mount(&b.path(""), "128m");
    for d in ["hls/live", "rec", "archive"] {
        fs::create_dir_all(b.path(d)).unwrap();
    }
    let mut notify = NotifySocket::new(b.dir.path());
    let d = b.daemon(Some(&notify.path));

    // The writer: 1 MiB segments and 3 MiB recordings in turn at 64 MiB/s, four times the
    // size of the filesystem. Every 40th segment is held open (a thumbnailer reading it) and
    // every 60th recording is retained.
    let seg = vec![0x47u8; MIB];
    let rec = vec![0u8; 3 * MIB];
    let mut held = Vec::new();
    let mut retained = Vec::new();
    let mut enospc = Vec::new();
    let start = Instant::now();
    let mut bytes = 0u64;
    for n in 0..256usize {
        let due = start + Duration::from_secs_f64(bytes as f64 / (64 * MIB) as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let (p, data) = if n % 2 == 0 {
            (b.path(&format!("hls/live/seg{n:05}.ts")), &seg)
        } else {
            (b.path(&format!("rec/cam-{n:05}.mp4")), &rec)
        };
        bytes += data.len() as u64;
        if let Err(e) = fs::File::create(&p).and_then(|mut f| f.write_all(data)) {
            enospc.push(format!("{}: {e}", p.display()));
            continue;
        }
        if n % 80 == 0 {
            held.push((p.clone(), fs::File::open(&p).unwrap()));
        } else if n % 120 == 1 {
            b.cli(&["retain", p.to_str().unwrap()]).ok();
            retained.push(p);
        }
    }
    assert!(enospc.is_empty(), "the writer hit {enospc:?}");
    wait_for("the last pressure pass to finish", T, || {
        let v = volume(&b);
        v["state"] == "ok" && v["used_pct"].as_f64().unwrap() < 80.0
    });
    let v = volume(&b);
    let pass = &v["last_pass"];
    assert!(pass["deleted_files"].as_u64().unwrap() > 0, "{v}");
    assert!(
        pass["after_pct"].as_f64().unwrap() <= 60.0,
        "a pressure pass frees down to low: {v}"
    );
    for (p, _) in &held {
        assert!(p.exists(), "{} was held open", p.display());
    }
    for p in &retained {
        assert!(p.exists(), "{} was retained", p.display());
    }
    // Segments go before recordings: wherever a recording was freed, the (older) segment
    // written just before it had gone first, unless it was held open.
    let mut recordings_freed = 0;
    for n in (1..256usize).step_by(2) {
        if !b.path(&format!("rec/cam-{n:05}.mp4")).exists() {
            recordings_freed += 1;
            let s = b.path(&format!("hls/live/seg{:05}.ts", n - 1));
            assert!(
                !s.exists() || (n - 1) % 80 == 0,
                "{} outlived a recording",
                s.display()
            );
        }
    }
    assert!(
        recordings_freed > 0,
        "recordings were freed too (segments alone were not enough)"
    );
    let x = b
        .cli(&["explain", "media:hls/live/seg00002.ts"])
        .ok()
        .stdout;
    assert!(x.contains("(pressure, pressure)"), "{x}");
    assert!(x.contains("tier 3 (segments), oldest first"), "{x}");
    assert!(x.contains("before this batch"), "{x}");

    // Only protected data left: fill past high with a class that pressure never frees.
    let mut n = 0;
    while volume(&b)["used_pct"].as_f64().unwrap() < 90.0 {
        let p = b.path(&format!("archive/old-{n:03}.mkv"));
        fs::write(&p, &seg).unwrap();
        n += 1;
        assert!(n < 200, "the archive did not fill the volume");
    }
    // Whole milliseconds, as the report's RFC 3339 times are written.
    let filled = std::time::UNIX_EPOCH
        + Duration::from_millis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
        );
    // Stuck, as seen by a pass that started after the archive was written.
    wait_for("the volume to be reported stuck", T, || {
        let v = volume(&b);
        v["state"] == "stuck"
            && v["last_pass"]["at"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .is_some_and(|t| t > filled)
    });
    let v = volume(&b);
    let kept = &v["last_pass"]["kept"];
    assert!(
        kept["retained"].as_u64().unwrap() >= (retained.len() * MIB) as u64,
        "{v}"
    );
    assert!(
        kept["in_use"].as_u64().unwrap() >= (held.len() * MIB) as u64,
        "{v}"
    );
    assert!(
        kept["protected"].as_u64().unwrap() >= (n * MIB) as u64,
        "{v}"
    );
    let text = b.cli(&["status"]).ok().stdout;
    assert!(text.contains("STUCK since"), "{text}");
    // systemctl status shows it too.
    let line = notify.expect("STATUS=STUCK", T);
    assert!(line.contains("retained"), "{line}");
    for (p, _) in &held {
        assert!(p.exists(), "{} was held open", p.display());
    }
    for p in &retained {
        assert!(p.exists(), "{} was retained", p.display());
    }
    assert_eq!(
        fs::read_dir(b.path("archive")).unwrap().count(),
        n,
        "archive files are never freed under pressure"
    );
    let x = b.cli(&["explain", "media:archive/old-000.mkv"]).ok().stdout;
    assert!(x.contains("recording class without min_keep"), "{x}");
    wait_for("the alarm in the log", T, || {
        d.log.lock().unwrap().contains("is STUCK at")
    });

    // The operator frees space by hand: the watchdog says so and goes back to ok.
    for e in fs::read_dir(b.path("archive")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    wait_for("the volume to recover", T, || volume(&b)["state"] == "ok");
    drop(held);
    d.stop();
}
