//! Floods (issue 24, item 5): whatever the rate of events, the journal gets a bounded number
//! of lines a minute, so journald's own rate limit (10,000 lines in 30 s) never drops an
//! alarm. Real daemon, real files, real clients; lines are counted, never timed.
//! `MEDIARETAIN_TEST_BIN=/path/to/old/mediaretain` runs them against another build.

mod common;
use common::*;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Lines the daemon wrote so far.
fn lines(d: &Daemon) -> usize {
    d.log.lock().unwrap().lines().count()
}

/// A client that takes leases over the control socket as fast as the daemon answers, for
/// `secs` seconds (one HTTP/1.1 connection, keep-alive); prints how many it took.
const LEASE_FLOOD: &str = r#"
import http.client, json, socket, sys, time
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sys.argv[1])
c = C("localhost")
n, end = 0, time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    body = json.dumps({"path": sys.argv[2] + "/tmp/f%d" % n, "ttl": "1h", "holder": "flood"})
    c.request("POST", "/v1/lease", body, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    n += 1
print(n)
"#;

/// A flood of events that each log an info line (leases taken as fast as the daemon answers,
/// hundreds a second) writes at most its budget: 10 lines a minute from that place, ~100 in
/// all; an error in the middle of it (a reload refused) is written. Old code: one line per
/// lease (measured: 3,657 lines for 3,657 leases in the 8 s).
#[test]
fn a_flood_of_events_writes_a_bounded_number_of_lines() {
    let b = Box_::new("", "", BASE_CLASSES);
    let d = b.daemon(None);
    let before = lines(&d);
    let sock = b.state().join("control.sock");
    let flood = Command::new("python3")
        .args(["-c", LEASE_FLOOD])
        .arg(&sock)
        .arg(&b.media)
        .arg("8")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    // In the middle of the flood, an error (a reload refused): never crowded out by info.
    d.wait_for("the flood to start", Duration::from_secs(10), || {
        d.log.lock().unwrap().matches(" on media:").count() >= 10
    });
    let good = std::fs::read_to_string(&b.config).unwrap();
    std::fs::write(&b.config, format!("{good}\n[nosuch]\n")).unwrap();
    assert_ne!(b.cli(&["reload"]).code, 0);
    std::fs::write(&b.config, good).unwrap();
    let out = flood.wait_with_output().unwrap();
    assert!(out.status.success(), "the flood client failed");
    let leases: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // The last answered lease's line is written before its answer: nothing is in flight.
    let written = lines(&d) - before;
    let (_, log) = d.stop();
    eprintln!("{leases} leases in 8 s; {written} lines written");
    assert!(
        leases >= 500,
        "the flood was too slow to mean anything: {leases} leases"
    );
    let taken = log.matches(" on media:").count();
    assert!(
        written <= 100 && taken <= 10,
        "{written} lines for {leases} leases ({taken} lease lines)"
    );
    assert!(log.contains("reload refused"), "the error was lost:\n{log}");
}

/// A read-only bind mount of a directory over `at` (the real one is `real`); unmounted on
/// drop.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn mount(real: &std::path::Path, at: &std::path::Path) -> ReadOnly {
        std::fs::create_dir_all(real).unwrap();
        std::fs::create_dir_all(at).unwrap();
        let ok = |args: &[&std::ffi::OsStr]| {
            let st = Command::new("mount").args(args).status().expect("mount");
            assert!(st.success(), "mount {args:?} failed (this test needs root)");
        };
        ok(&["--bind".as_ref(), real.as_os_str(), at.as_os_str()]);
        let ro = ReadOnly(at.to_path_buf());
        ok(&["-o".as_ref(), "remount,bind,ro".as_ref(), at.as_os_str()]);
        ro
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Expired files keep arriving (10 a second for 10 s) in a store the daemon cannot write
/// (its root a read-only bind mount; the recorder writes through the real path): every
/// deletion fails. Each file backs off (10 s, 20 s, … up to an hour) and its failure is
/// logged once (then at debug and in the audit); the journal gets at most 10 such lines a
/// minute. Old code retries every failed file at every pass an arrival triggers and logs
/// each try: the lines grow with the square of the files (measured: 45, 126, 235, … a 10 s).
#[test]
fn failing_deletions_back_off_and_are_logged_once() {
    let b = Box_::new("", "", BASE_CLASSES);
    let real = b.dir.path().join("real-media");
    std::fs::create_dir_all(real.join("tmp")).unwrap();
    let _ro = ReadOnly::mount(&real, &b.media);
    let d = b.daemon(None);
    const FILES: usize = 100;
    let writer = r#"
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
old = time.time() - 3600
for i in range(n):
    p = os.path.join(d, "f%03d.bin" % i)
    with open(p, "wb") as f:
        f.write(b"x" * 100)
    os.utime(p, (old, old))
    time.sleep(0.1)
"#;
    let st = Command::new("python3")
        .args(["-c", writer])
        .arg(real.join("tmp"))
        .arg(FILES.to_string())
        .status()
        .expect("python3");
    assert!(st.success());
    // Every file was tried at least once (its failure is audited), then the log is read.
    let db = b.state().join("registry.db");
    let count = |sql: &str| -> i64 {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    d.wait_for("every file tried", Duration::from_secs(30), || {
        count("SELECT COUNT(DISTINCT path) FROM audit WHERE outcome = 'failed'") >= FILES as i64
    });
    let (_, log) = d.stop();
    let lines = log.matches("failed to delete").count();
    let tries = count("SELECT COUNT(*) FROM audit WHERE outcome = 'failed'");
    let most = count(
        "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM audit WHERE outcome = 'failed' GROUP BY path)",
    );
    if std::env::var_os("FLOODS_SHOW_LOG").is_some() {
        eprintln!("{log}");
    }
    eprintln!("{FILES} files: {tries} failed tries (at most {most} for one file), {lines} lines");
    // 10 s of arrivals: each file is tried at most twice (at once, then after 10 s).
    assert!(most <= 2, "one file was tried {most} times in ~10 s");
    assert!(lines <= 10, "{lines} 'failed to delete' lines:\n{log}");
}

/// A bulk purge (3,000 expired files in one pass) logs its first 10 deletions and one
/// summary line for the pass; every file is in the audit. Old code: one "deleted" line per
/// file (a 20,000-file purge wrote 15,472 before journald dropped the rest).
#[test]
fn a_bulk_purge_logs_a_summary_not_a_line_per_file() {
    let b = Box_::new("", "", BASE_CLASSES);
    const FILES: usize = 3000;
    for i in 0..FILES {
        b.file(
            &format!("tmp/bulk/f{i:05}.bin"),
            10,
            Duration::from_secs(3600),
        );
    }
    let d = b.daemon(None);
    let db = b.state().join("registry.db");
    let deleted = || -> i64 {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row(
            "SELECT COUNT(*) FROM audit WHERE outcome = 'deleted'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    d.wait_for("the purge", Duration::from_secs(60), || {
        deleted() >= FILES as i64
    });
    let (_, log) = d.stop();
    let lines = log.matches("deleted media:tmp/bulk/").count();
    eprintln!("{FILES} files deleted; {lines} 'deleted' lines");
    assert!(lines <= 10, "{lines} 'deleted' lines for {FILES} files");
    assert!(
        log.contains(&format!("lifecycle pass: {FILES} deleted")),
        "no summary line for the pass:\n{log}"
    );
}

/// The playlists a pass reads first are those of the directories it deletes from, smallest
/// first, and a pass whose budget (32 MiB) left some unread asks for another within seconds.
/// Six 7.5 MB playlists of other streams (each with a few expired segments) sort before the
/// live stream's small one: old code read the big ones, left the live directory protected
/// ("changed; read again at the next pass") and deleted nothing there until gc_interval
/// (here 1 h; measured with 60 s: 20,000 expired segments refused for 60 s).
#[test]
fn a_pass_reads_first_the_playlists_of_what_it_deletes_and_asks_again_soon() {
    let classes = "[[class]]\nname = \"hls\"\nstore = \"media\"\nmatch = [\"hls/**/*.ts\"]\nlifecycle = \"segment\"\nkeep_for = \"0s\"\nquiet_period = \"0s\"\n";
    let b = Box_::new("gc_interval = \"1h\"", "", classes);
    const HOUR: Duration = Duration::from_secs(3600);
    let playlist = |dir: &str, pad: usize| {
        let mut text = String::from(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:100\n#EXTINF:2.0,\nnow.ts\n",
        );
        // Big as a long event's playlist (comment lines: cheap to parse, counted in bytes).
        let line = format!("#{}\n", "x".repeat(99));
        while text.len() < pad {
            text.push_str(&line);
        }
        std::fs::write(b.path(&format!("{dir}/index.m3u8")), text).unwrap();
        b.file(&format!("{dir}/now.ts"), 10, Duration::ZERO);
    };
    let mut expired = vec![];
    for k in 0..6 {
        let dir = format!("hls/a{k}");
        for i in 0..5 {
            expired.push(b.file(&format!("{dir}/old{i}.ts"), 10, HOUR));
        }
        playlist(&dir, 7_500_000);
    }
    for i in 0..200 {
        expired.push(b.file(&format!("hls/z-live/old{i:03}.ts"), 10, HOUR));
    }
    playlist("hls/z-live", 0);
    let d = b.daemon(None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while expired.iter().any(|p| p.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, log) = d.stop();
    let mut left: Vec<String> = expired
        .iter()
        .filter(|p| p.exists())
        .map(|p| {
            p.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into()
        })
        .collect();
    let n = left.len();
    left.dedup();
    assert!(
        n == 0,
        "{n} expired segments still there after 30 s (gc_interval 1 h), in {left:?}"
    );
    // The segments the playlists list now stay.
    for k in 0..6 {
        assert!(b.path(&format!("hls/a{k}/now.ts")).exists(), "{log}");
    }
    assert!(b.path("hls/z-live/now.ts").exists());
}

/// Kills a process group on drop (a failing assertion leaves nothing running).
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pg = rustix::process::Pid::from_raw(self.0.id() as i32).unwrap();
        let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
        let _ = self.0.wait();
    }
}

/// In a mount namespace of its own: N (stacked) bind mounts, the store bound at
/// /mnt, and 20 processes each holding a recording open for writing by its /mnt path;
/// writes READY when all hold their file.
const CONTAINER: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
pad, media, ready, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
MS_BIND = 4096
for i in range(n):
    if libc.mount(pad.encode(), pad.encode(), None, MS_BIND, None) != 0:
        sys.exit("mount: errno %d after %d mounts" % (ctypes.get_errno(), i))
assert libc.mount(media.encode(), b"/mnt", None, MS_BIND, None) == 0
kids = []
for k in range(20):
    pid = os.fork()
    if pid == 0:
        os.makedirs("/mnt/rec/cam%d" % k, exist_ok=True)
        f = open("/mnt/rec/cam%d/a.flv" % k, "ab")
        f.write(b"x"); f.flush()
        open(ready + ".%d" % k, "w").close()
        while True:
            time.sleep(1)
    kids.append(pid)
while True:
    time.sleep(1)
"#;

/// A user with a mount namespace of its own (a container) holding 20 store files open for
/// writing, among 2,000 mounts (`FLOODS_MOUNTS=20000` for the issue's case): the
/// stream-writer check (every 5 s) reads that namespace's mount table once per namespace
/// and half minute, not once per process and check. Counted with strace over a 12 s window
/// (at least two checks). Old code: every check read every such process's mountinfo and
/// ours again (42 reads in the window; with 20,000 mounts, 69% of a core).
#[test]
fn mount_tables_are_read_once_per_namespace_not_per_process_and_check() {
    let classes = "[[class]]\nname = \"rec\"\nstore = \"media\"\nmatch = [\"rec/**/*.flv\"]\nlifecycle = \"recording\"\nkeep_for = \"7d\"\nstream = \"rec/{stream}/**\"\n";
    let b = Box_::new("gc_interval = \"1s\"", "", classes);
    let d = b.daemon(None);
    let pad = b.dir.path().join("pad");
    std::fs::create_dir_all(&pad).unwrap();
    let ready = b.dir.path().join("ready");
    use std::os::unix::process::CommandExt;
    let _c = Group(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "python3", "-c", CONTAINER])
            .arg(&pad)
            .arg(&b.media)
            .arg(&ready)
            .arg(std::env::var("FLOODS_MOUNTS").unwrap_or("2000".into()))
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (needs root)"),
    );
    d.wait_for(
        "20 processes holding files",
        Duration::from_secs(120),
        || (0..20).all(|k| ready.with_extension(k.to_string()).exists()),
    );
    let trace = b.dir.path().join("strace.out");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=openat", "-e", "signal=none", "-o"])
        .arg(&trace)
        .arg("-p")
        .arg(d.pid().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace");
    // The window: 12 s, at least two checks (one every 5 s, a pass every second).
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.pid())).unwrap();
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let before = cpu();
    let end = Instant::now() + Duration::from_secs(12);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
    }
    // A figure, not asserted (CPU time depends on the machine).
    eprintln!("daemon CPU in the window: {} ticks", cpu() - before);
    let _ = strace.kill();
    let _ = strace.wait();
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let reads = text
        .lines()
        .filter(|l| l.contains("/mountinfo") && !l.contains("ENOENT"))
        .count();
    drop(d);
    if std::env::var_os("FLOODS_SHOW_LOG").is_some() {
        eprintln!(
            "{}",
            text.lines()
                .filter(|l| l.contains("mountinfo") || l.contains("fdinfo"))
                .take(60)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!("{reads} mountinfo reads in 12 s");
    // Ours and theirs, each at most twice (a window may straddle the cache's 30 s).
    assert!(reads <= 4, "{reads} mountinfo reads in 12 s");
}

/// A crash in a bulk pass leaves hundreds of deletion intents; the next start reconciles
/// them, naming the first 10 and summing up the rest in one line (every one is audited).
/// The intents a kill -9 leaves are written into the registry as the executor writes them
/// (same table), for 300 files that are gone. Old code: one line per file (352 at a start).
#[test]
fn a_start_after_a_crash_sums_up_the_deletions_it_reconciles() {
    let b = Box_::new("", "", BASE_CLASSES);
    let (_, _) = b.daemon(None).stop();
    const FILES: i64 = 300;
    {
        let c = rusqlite::Connection::open(b.state().join("registry.db")).unwrap();
        for i in 0..FILES {
            let path = format!("tmp/crash/f{i:04}.bin");
            c.execute(
                "INSERT INTO intents(at, store, path, entry_id, ino, size, mtime, class, rule, reason, trigger)
                 VALUES (1, 'media', ?1, ?2, 424242, 10, 1, 'tmp', 'ttl', 'past its ttl', 'schedule')",
                rusqlite::params![path.as_bytes(), 1_000_000 + i],
            )
            .unwrap();
        }
    }
    let d = b.daemon(None);
    let (_, log) = d.stop();
    let c = rusqlite::Connection::open(b.state().join("registry.db")).unwrap();
    let audited: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE reason LIKE '%reconciled after a crash%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, FILES);
    let lines = log
        .matches("reconciled a deletion interrupted by a crash")
        .count();
    eprintln!("{FILES} reconciled; {lines} lines");
    assert!(
        lines <= 10,
        "{lines} lines for {FILES} reconciled deletions"
    );
    assert!(
        log.contains(&format!(
            "reconciled {FILES} deletions interrupted by a crash"
        )),
        "{log}"
    );
}
