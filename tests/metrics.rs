//! Prometheus metrics, checked with a real Prometheus (Debian's `prometheus` package):
//! it scrapes the daemon's `[metrics] listen` port every second while the test makes files
//! expire, holds one open and fills a small tmpfs until the volume is stuck; the figures
//! Prometheus's HTTP API returns must be what happened. `promtool` checks a scrape and the
//! alert rules; the Grafana dashboard's and the alerts' queries name only metrics the daemon
//! exports. Needs root (a tmpfs), like CI.

mod common;
use common::prometheus::Prometheus;
use common::s3;
use common::s3::free_port;
use common::*;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const MIB: usize = 1 << 20;
const T: Duration = Duration::from_secs(60);

/// One HTTP GET on loopback: (status, content type, body).
fn get(port: u16, target: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    Some((status, ctype, body.to_string()))
}

/// A real Prometheus on loopback scraping `target` every second.
fn prometheus(target: u16) -> Prometheus {
    Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: mediaretain\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
    ))
}

const CLASSES: &str = r#"
[[class]]
name = "tmp"
store = "media"
match = ["tmp/**"]
lifecycle = "temporary"
ttl = "30m"

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

#[test]
fn prometheus_sees_deletions_refusals_and_a_stuck_volume() {
    let port = free_port();
    let b = Box_::new(
        &format!(
            "gc_interval = \"1h\"\nscan_interval = \"1h\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\""
        ),
        "",
        CLASSES,
    );
    let _fs = Tmpfs::mount(&b.path(""), "16m");
    let mount = b.path("").canonicalize().unwrap();
    let vol = mount.display().to_string();
    // Three expired files before the daemon starts: its first pass deletes them.
    for i in 0..3 {
        b.file(
            &format!("tmp/early-{i}.bin"),
            1000,
            Duration::from_secs(7200),
        );
    }
    let d = b.daemon(None);
    let prom = prometheus(port);
    prom.expect("up{job=\"mediaretain\"}", 1.0);
    prom.expect(
        "sum(mediaretain_deleted_files_total{class=\"tmp\",trigger=\"schedule\"})",
        3.0,
    );

    // Five more expired files and one held open (a reader): `gc` deletes five, refuses one.
    for i in 0..5 {
        b.file(
            &format!("tmp/late-{i}.bin"),
            2000,
            Duration::from_secs(7200),
        );
    }
    let held = b.file("tmp/held.bin", 3000, Duration::from_secs(7200));
    let reader = fs::File::open(&held).unwrap();
    b.cli(&["gc"]);
    // Twice: a refusal that lasts is one episode, not one per pass.
    b.cli(&["gc"]);
    assert!(held.exists(), "a file held open is never deleted");
    prom.expect(
        "sum(mediaretain_deleted_files_total{class=\"tmp\",trigger=\"api\"})",
        5.0,
    );
    prom.expect(
        "sum(mediaretain_deleted_bytes_total{class=\"tmp\",trigger=\"api\"})",
        10000.0,
    );
    prom.expect("sum(mediaretain_deleted_files_total)", 8.0);
    prom.expect(
        "sum(mediaretain_refused_total{class=\"tmp\",kind=\"open\"})",
        1.0,
    );
    // The held file is in use now (a gauge, from the last pass).
    prom.expect("sum(mediaretain_in_use_files{class=\"tmp\"})", 1.0);
    // Failures exist per class from the start, at zero.
    assert_eq!(
        prom.value("sum(mediaretain_failed_deletions_total{class=\"tmp\"})"),
        Some(0.0)
    );
    assert_eq!(
        prom.value(&format!("mediaretain_volume_stuck{{volume=\"{vol}\"}}")),
        Some(0.0)
    );
    prom.expect(
        &format!("mediaretain_volume_size_bytes{{volume=\"{vol}\"}}"),
        (16 * MIB) as f64,
    );

    // Fill the volume with data the watchdog may not free, past high: stuck.
    let chunk = vec![0u8; MIB];
    let mut n = 0;
    loop {
        let st = b.cli(&["status", "--json"]).ok().json();
        if st["volumes"][0]["used_pct"].as_f64().unwrap() >= 90.0 {
            break;
        }
        fs::create_dir_all(b.path("archive")).unwrap();
        fs::write(b.path(&format!("archive/cam-{n:03}.mkv")), &chunk).unwrap();
        n += 1;
        assert!(n < 64, "the archive did not fill the volume");
    }
    prom.expect(
        &format!("mediaretain_volume_stuck{{volume=\"{vol}\"}}"),
        1.0,
    );
    prom.expect(
        &format!("mediaretain_volume_state{{volume=\"{vol}\",state=\"stuck\"}}"),
        1.0,
    );
    let passes = prom
        .value(&format!(
            "mediaretain_pressure_passes_total{{volume=\"{vol}\"}}"
        ))
        .unwrap_or(0.0);
    assert!(passes >= 1.0, "a pressure pass ran before stuck: {passes}");
    let used = prom
        .value(&format!(
            "mediaretain_volume_used_ratio{{volume=\"{vol}\"}}"
        ))
        .unwrap();
    assert!(used >= 0.8, "stuck above high: {used}");
    assert_eq!(
        prom.value(&format!(
            "mediaretain_volume_high_watermark_ratio{{volume=\"{vol}\"}}"
        )),
        Some(0.8)
    );
    // Nothing was deleted to get there (the archive is protected, the held file open).
    prom.expect("sum(mediaretain_deleted_files_total)", 8.0);
    // Class totals are re-read after a full scan (else at most once a minute).
    b.cli(&["retain", b.path("archive/cam-000.mkv").to_str().unwrap()])
        .ok();
    b.cli(&["scan"]).ok();
    prom.expect("sum(mediaretain_files{class=\"archive\"})", f64::from(n));
    prom.expect("sum(mediaretain_retained_files{class=\"archive\"})", 1.0);
    prom.expect(
        "sum(mediaretain_retained_bytes{class=\"archive\"})",
        MIB as f64,
    );

    // Freed by hand: the volume recovers, the stuck gauge drops.
    fs::remove_dir_all(b.path("archive")).unwrap();
    prom.expect(
        &format!("mediaretain_volume_stuck{{volume=\"{vol}\"}}"),
        0.0,
    );
    drop(reader);
    b.cli(&["gc"]).ok();
    assert!(!held.exists(), "closed and expired: deleted");
    prom.expect("sum(mediaretain_in_use_files{class=\"tmp\"})", 0.0);

    // The daemon's own figures (sysinfo).
    assert!(
        prom.value("mediaretain_process_resident_memory_bytes")
            .unwrap()
            > 1e6
    );
    assert!(prom.value("mediaretain_process_open_fds").unwrap() > 3.0);
    assert!(
        prom.value("mediaretain_process_cpu_seconds_total")
            .is_some()
    );

    // A scrape: the right content type, and promtool accepts it.
    let (status, ctype, body) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    promtool_check_metrics(&body);
    // The control socket serves the same.
    let sock = b.state().join("control.sock");
    let (status, body) = socket_get(&sock, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("mediaretain_deleted_files_total{"), "{body}");
    d.stop();
}

fn socket_get(sock: &Path, path: &str) -> (u16, String) {
    socket_http(
        sock,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

fn promtool_check_metrics(scrape: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`)");
    p.stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The metric families a daemon exports (from a scrape's `# TYPE` lines) once it has done
/// a bit of everything: deleted a file, refused one held open, offloaded a recording to a
/// real S3 server (moto), then failed to offload another when that server was gone.
fn exported() -> std::collections::BTreeSet<String> {
    let mut server = s3::S3Server::moto();
    let b = Box_::new("gc_interval = \"1h\"\nscan_interval = \"1h\"", "", "");
    let store = server.store_section(b.dir.path(), &server.endpoint, "box/");
    let classes = format!(
        "{store}\n[[class]]\nname = \"tmp\"\nstore = \"media\"\nmatch = [\"tmp/**\"]\nlifecycle = \"temporary\"\nttl = \"30m\"\n\n[[class]]\nname = \"rec\"\nstore = \"media\"\nmatch = [\"rec/**\"]\nlifecycle = \"recording\"\nquiet_period = \"0s\"\nstream = \"rec/{{stream}}-*.mp4\"\noffload = {{ to = \"archive\", after = \"1h\", delete_local = false }}\n\n[watchdog]\nhigh = \"99%\"\nlow = \"98%\"\nhorizon = \"1h\"\n"
    );
    b.write_config("gc_interval = \"1h\"\nscan_interval = \"1h\"", "", &classes);
    b.file("tmp/old.bin", 100, Duration::from_secs(7200));
    let held = b.file("tmp/held.bin", 100, Duration::from_secs(7200));
    let _reader = fs::File::open(&held).unwrap();
    b.file("rec/cam-1.mp4", 5000, Duration::from_secs(7200));
    let d = b.daemon(None);
    let sock = b.state().join("control.sock");
    let scrape = || socket_get(&sock, "/metrics").1;
    wait_for("the recording to be offloaded", T, || {
        scrape().contains(
            "mediaretain_offload_uploaded_bytes_total{store=\"archive\",class=\"rec\"} 5000",
        )
    });
    let mut body = scrape();
    server.stop();
    b.file("rec/cam-2.mp4", 5000, Duration::from_secs(7200));
    b.cli(&["scan"]);
    b.cli(&["gc"]);
    wait_for("the failed offload to be counted", T, || {
        let s = scrape();
        let hit = s.contains("mediaretain_offload_failures_total{store=\"archive\"} 1");
        if hit {
            body.push_str(&s);
        }
        hit
    });
    d.stop();
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// Families that appear only after minutes of watchdog history (a fill rate needs three),
/// which this test does not wait for; each is named in the table of docs/metrics.md.
const NEED_HISTORY: &[&str] = &[
    "mediaretain_volume_fill_rate_bytes_per_second",
    "mediaretain_volume_forecast_full_seconds",
];

/// Every `mediaretain_…` name in `text`, as a family name (histogram series suffixes off).
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("mediaretain_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let mut name = &tail[..end];
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(n) = name.strip_suffix(suffix)
                && n.ends_with("_seconds")
            {
                name = n;
            }
        }
        out.insert(name.to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_dashboard_and_the_alerts_name_only_exported_metrics_and_promtool_accepts_the_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = root.join("config/prometheus/alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (Debian package `prometheus`)");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = exported();
    let dash: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(root.join("config/grafana/mediaretain.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => collect(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    collect(&dash, &mut exprs);
    assert!(exprs.len() >= 8, "the dashboard has panels: {exprs:?}");
    let mut used = std::collections::BTreeSet::new();
    for e in &exprs {
        used.extend(names_in(e));
    }
    used.extend(names_in(&fs::read_to_string(&rules).unwrap()));
    let readme = fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    for n in NEED_HISTORY {
        assert!(
            readme.contains(&format!("`{n}`")),
            "docs/metrics.md's table names {n}"
        );
    }
    let missing: Vec<_> = used
        .iter()
        .filter(|n| !exported.contains(*n) && !NEED_HISTORY.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "queries name metrics the daemon does not export: {missing:?}\nexported: {exported:?}"
    );
}

#[test]
fn a_metrics_address_beyond_loopback_must_be_allowed_explicitly() {
    let b = Box_::new("\n[metrics]\nlisten = \"0.0.0.0:9464\"", "", BASE_CLASSES);
    let r = b.cli(&["check-config"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("metrics.allow_remote"), "{r:?}");
    b.write_config(
        "\n[metrics]\nlisten = \"0.0.0.0:9464\"\nallow_remote = true",
        "",
        BASE_CLASSES,
    );
    b.cli(&["check-config"]).ok();
    b.write_config("\n[metrics]\nlisten = \"localhost\"", "", BASE_CLASSES);
    let r = b.cli(&["check-config"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("must be an address and port"), "{r:?}");
}
