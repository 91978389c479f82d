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
/// all. Old code: one line per lease (2,000-10,000 lines in the 8 s).
#[test]
fn a_flood_of_events_writes_a_bounded_number_of_lines() {
    let b = Box_::new("", "", BASE_CLASSES);
    let d = b.daemon(None);
    let before = lines(&d);
    let sock = b.state().join("control.sock");
    let out = Command::new("python3")
        .args(["-c", LEASE_FLOOD])
        .arg(&sock)
        .arg(&b.media)
        .arg("8")
        .stderr(Stdio::inherit())
        .output()
        .expect("python3");
    assert!(out.status.success(), "the flood client failed");
    let leases: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // The last answered lease's line is written before its answer: nothing is in flight.
    let written = lines(&d) - before;
    let (_, log) = d.stop();
    eprintln!("{leases} leases in 8 s; {written} lines written");
    assert!(leases >= 1000, "the flood was too slow to mean anything: {leases} leases");
    let taken = log.matches(" on media:").count();
    assert!(
        written <= 100 && taken <= 10,
        "{written} lines for {leases} leases ({taken} lease lines)"
    );
}
