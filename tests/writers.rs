//! Two writers on one stream (issue 16): real recorder-like processes (python3 appending
//! to files every 100 ms) and the real daemon. Two processes writing files of one stream at
//! once raise exactly one alarm (priority err) naming both pids and their command lines,
//! shown in `status` and as a metric, resolved when one stops; one writer, two streams, a
//! remuxer writing another kind of file of the stream, a recorder rotating its `.part`
//! files, or a parent and child sharing one open file description raise nothing; two
//! `.part` files of one stream written at the same time (writers that open, append and
//! close) raise it too. Nothing is deleted for it.

mod common;
use common::*;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Recordings under rec/STREAM/, the stream by template; a pass every second.
const CLASSES: &str = r#"
[[class]]
name = "rec"
store = "media"
match = ["rec/**/*.flv", "rec/**/*.mp4"]
lifecycle = "recording"
keep_for = "7d"
quiet_period = "2s"
stream = "rec/{stream}/**"
"#;

/// Holds the file open and appends 100 bytes every 100 ms (like a recorder).
const HOLDING: &str = "import sys, time\nf = open(sys.argv[1], 'ab')\nwhile True:\n    f.write(b'x' * 100); f.flush(); time.sleep(0.1)\n";
/// Opens, appends 100 bytes and closes every 100 ms (never seen holding it, mostly).
const REOPENING: &str = "import sys, time\nwhile True:\n    with open(sys.argv[1], 'ab') as f: f.write(b'x' * 100)\n    time.sleep(0.1)\n";

/// A recorder that rotates: writes `N.flv.part` (held open) for a second, closes it and
/// goes on with `N+1.flv.part`, leaving the closed parts fresh for a while.
const ROTATING: &str = "import sys, os, time\nd = os.path.dirname(sys.argv[1]); n = 0\nwhile True:\n    with open(os.path.join(d, '%d.flv.part' % n), 'ab') as f:\n        for _ in range(10):\n            f.write(b'x' * 100); f.flush(); time.sleep(0.1)\n    n += 1\n";

/// A writer process in a process group of its own; the group is killed on drop (a
/// failing assertion leaves no writer behind, children included).
struct Writer(Child);

fn spawn(cmd: &mut Command) -> Writer {
    Writer(
        cmd.process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn"),
    )
}

impl Writer {
    fn start(script: &str, path: &Path) -> Writer {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let w = spawn(Command::new("python3").args(["-c", script]).arg(path));
        // Writing: the file exists and grows.
        let mut first = None;
        wait_for("the writer to write", T, || {
            let n = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            n > 0 && *first.get_or_insert(n) < n
        });
        w
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn stop(self) {
        drop(self);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

fn log(d: &Daemon) -> String {
    d.log.lock().unwrap().clone()
}

/// The lines of the log announcing two writers.
fn alarms(d: &Daemon) -> Vec<String> {
    log(d)
        .lines()
        .filter(|l| l.contains("two writers on stream"))
        .map(String::from)
        .collect()
}

/// `mediaretain_stream_writer_conflicts` of class rec, from the control socket.
fn metric(b: &Box_) -> Option<f64> {
    let (code, body) = socket_http(
        &b.state().join("control.sock"),
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200, "{body}");
    body.lines()
        .find(|l| {
            l.starts_with("mediaretain_stream_writer_conflicts{") && l.contains("class=\"rec\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits until `n` more lifecycle passes have run (each pass looks for writers).
fn passes(b: &Box_, n: usize) {
    let at = |b: &Box_| b.cli(&["status", "--json"]).json()["activity"]["last_pass"]["at"].clone();
    for _ in 0..n {
        let before = at(b);
        wait_for("the next pass", T, || at(b) != before);
    }
}

fn daemon(b: &Box_) -> Daemon {
    b.daemon(None)
}

#[test]
fn two_writers_on_one_stream_raise_one_alarm_until_one_stops() {
    let b = Box_::new("gc_interval = \"1s\"", "", CLASSES);
    let d = daemon(&b);
    let one = Writer::start(HOLDING, &b.path("rec/cam1/a.flv"));
    let two = Writer::start(HOLDING, &b.path("rec/cam1/b.flv"));
    let (p1, p2) = (one.pid(), two.pid());

    wait_for("the alarm", T, || !alarms(&d).is_empty());
    let line = alarms(&d).remove(0);
    assert!(line.contains("ERROR"), "priority err: {line}");
    for p in [p1, p2] {
        // The pid and its command line (python3 may be a full path, a pyenv shim's).
        let at = line
            .find(&format!("pid {p} ("))
            .unwrap_or_else(|| panic!("{line}"));
        assert!(line[at..].contains("python3 -c import sys, time"), "{line}");
    }
    assert!(
        line.contains("\"cam1\"") && line.contains("rec/cam1/a.flv"),
        "{line}"
    );

    let st = b.cli(&["status", "--json"]).ok().json();
    let c = &st["stream_writers"];
    assert_eq!(c.as_array().map(Vec::len), Some(1), "{st}");
    assert_eq!(c[0]["stream"], "cam1");
    assert_eq!(c[0]["class"], "rec");
    assert_eq!(c[0]["seen"], "open_for_writing");
    let mut pids: Vec<u64> = c[0]["writers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pids"][0].as_u64().unwrap())
        .collect();
    pids.sort();
    let mut want = vec![u64::from(p1), u64::from(p2)];
    want.sort();
    assert_eq!(pids, want);
    let text = b.cli(&["status"]).ok().stdout;
    assert!(text.contains("TWO WRITERS: stream \"cam1\""), "{text}");
    assert_eq!(metric(&b), Some(1.0));

    // It lasts: no repetition, however many passes (and checks) run.
    passes(&b, 12);
    assert_eq!(alarms(&d).len(), 1, "announced once:\n{}", log(&d));

    // One writer stops: resolved once, the metric falls, status is clear.
    two.stop();
    wait_for("the resolution", T, || {
        log(&d).contains("resolved: stream \"cam1\"")
    });
    assert_eq!(metric(&b), Some(0.0));
    let st = b.cli(&["status", "--json"]).ok().json();
    assert_eq!(
        st["stream_writers"].as_array().map(Vec::len),
        Some(0),
        "{st}"
    );
    passes(&b, 12);
    assert_eq!(alarms(&d).len(), 1, "{}", log(&d));
    assert_eq!(log(&d).matches("resolved: stream").count(), 1);
    // Nothing is deleted for it.
    assert!(b.path("rec/cam1/a.flv").exists() && b.path("rec/cam1/b.flv").exists());
    one.stop();
}

/// A recorder in a container (a mount namespace of its own, the store bound at /mnt there)
/// names its file by the container's mounts; it is seen as a writer of the stream all the
/// same. Needs root for unshare -m, as CI runs.
#[test]
fn a_recorder_in_a_container_is_seen_too() {
    let b = Box_::new("gc_interval = \"1s\"", "", CLASSES);
    let d = daemon(&b);
    let _host = Writer::start(HOLDING, &b.path("rec/cam1/a.flv"));
    std::fs::create_dir_all(b.path("rec/cam1")).unwrap();
    let inside = spawn(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$1\" /mnt && exec python3 -c \"$0\" /mnt/rec/cam1/b.flv")
            .arg(HOLDING)
            .arg(b.path("")),
    );
    let c = b.path("rec/cam1/b.flv");
    let mut first = None;
    wait_for("the container's recorder to write", T, || {
        let n = std::fs::metadata(&c).map(|m| m.len()).unwrap_or(0);
        n > 0 && *first.get_or_insert(n) < n
    });
    let link = std::fs::read_link(format!("/proc/{}/fd/3", inside.pid())).unwrap_or_default();
    wait_for("the alarm", T, || !alarms(&d).is_empty());
    let line = alarms(&d).remove(0);
    assert!(
        line.contains("rec/cam1/a.flv") && line.contains("rec/cam1/b.flv"),
        "{line} (the container names its file {})",
        link.display()
    );
}

#[test]
fn one_writer_per_stream_or_a_shared_description_raises_nothing() {
    let b = Box_::new("gc_interval = \"1s\"", "", CLASSES);
    let d = daemon(&b);
    // Two streams, one writer each.
    let _a = Writer::start(HOLDING, &b.path("rec/cam1/a.flv"));
    let _b = Writer::start(HOLDING, &b.path("rec/cam2/b.flv"));
    // A remuxer writing cam1's previous recording as .mp4 while the recorder writes the
    // next .flv (nginx-rtmp's exec_record_done running ffmpeg): another kind of file, not
    // a second recorder.
    let _m = Writer::start(HOLDING, &b.path("rec/cam1/a0.mp4"));
    // A recorder rotating its .part files: the closed ones stay fresh (within
    // quiet_period) beside the one it writes, but were never written at the same time.
    let _r = Writer::start(ROTATING, &b.path("rec/cam4/0.flv.part"));
    // A wrapper shell with the recorder's output redirected: the shell opens
    // rec/cam3/c.flv as its stdout and forks python3, which inherits it; both hold the file
    // through one open file description: one writer, not two.
    let c = b.path("rec/cam3/c.flv");
    std::fs::create_dir_all(c.parent().unwrap()).unwrap();
    let script = "import time, sys\nwhile True:\n    sys.stdout.write('x' * 100); sys.stdout.flush(); time.sleep(0.1)\n";
    let sh = spawn(
        Command::new("sh")
            .args(["-c", "exec >> \"$1\"; python3 -c \"$0\"; :", script])
            .arg(&c),
    );
    let mut first = None;
    wait_for("the wrapped writer to write", T, || {
        let n = std::fs::metadata(&c).map(|m| m.len()).unwrap_or(0);
        n > 0 && *first.get_or_insert(n) < n
    });
    // Checks run with passes, at most every 5 s: 12 passes (1 s apart) hold at least two.
    passes(&b, 12);
    assert!(alarms(&d).is_empty(), "{}", log(&d));
    let st = b.cli(&["status", "--json"]).ok().json();
    assert_eq!(
        st["stream_writers"].as_array().map(Vec::len),
        Some(0),
        "{st}"
    );
    assert_eq!(metric(&b), Some(0.0));
    drop(sh); // the shell and its python3: one process group
}

#[test]
fn two_fresh_part_files_of_one_stream_raise_the_alarm() {
    let b = Box_::new("gc_interval = \"1s\"", "", CLASSES);
    let d = daemon(&b);
    // Writers that open, append and close: rarely seen holding the file; their .part files
    // are fresh (within quiet_period) at the same time. One .part alone raises nothing.
    let one = Writer::start(REOPENING, &b.path("rec/cam1/a.flv.part"));
    passes(&b, 12); // at least two checks (5 s apart at most)
    assert!(alarms(&d).is_empty(), "one writer: {}", log(&d));
    let two = Writer::start(REOPENING, &b.path("rec/cam1/b.flv.part"));
    wait_for("the alarm", T, || !alarms(&d).is_empty());
    let line = alarms(&d).remove(0);
    assert!(
        line.contains("ERROR") && line.contains("\"cam1\""),
        "{line}"
    );
    assert!(
        line.contains("rec/cam1/a.flv.part") && line.contains("rec/cam1/b.flv.part"),
        "{line}"
    );
    let st = b.cli(&["status", "--json"]).ok().json();
    assert_eq!(st["stream_writers"][0]["stream"], "cam1", "{st}");
    assert_eq!(metric(&b), Some(1.0));
    passes(&b, 12);
    assert_eq!(alarms(&d).len(), 1, "announced once:\n{}", log(&d));
    one.stop();
    two.stop();
    wait_for("the resolution", T, || {
        log(&d).contains("resolved: stream \"cam1\"")
    });
}
