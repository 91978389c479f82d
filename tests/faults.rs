//! Faults (issue 10): a file renamed over a planned one in the last instant, `kill -9`
//! during passes, a hung S3 endpoint, hostile configs. Real processes, real files.

mod common;
use common::*;

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The racing renamer: a real process that waits, with fanotify permission events
/// (`FAN_OPEN_PERM`, root only), until another process opens a file `f<odd number>` of
/// DIR, and — while that open is held up — renames a fresh file over the name, then lets
/// the open go on. The opener gets a descriptor of the planned inode while the name now
/// holds the newcomer: exactly the last instant between the deleter's check of the inode
/// and its unlink, hit every time instead of by luck.
const RENAMER: &str = r#"
import ctypes, os, struct, sys
d, staging = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
FAN_CLASS_CONTENT, FAN_CLOEXEC, FAN_MARK_ADD, FAN_OPEN_PERM, FAN_EVENT_ON_CHILD, FAN_ALLOW = 0x4, 0x1, 0x1, 0x10000, 0x08000000, 0x1
fan = libc.fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, os.O_RDONLY)
if fan < 0:
    sys.exit("fanotify_init: " + os.strerror(ctypes.get_errno()))
if libc.fanotify_mark(fan, FAN_MARK_ADD, FAN_OPEN_PERM | FAN_EVENT_ON_CHILD, -100, d.encode()) < 0:
    sys.exit("fanotify_mark: " + os.strerror(ctypes.get_errno()))
me, done = os.getpid(), set()
print("ready", flush=True)
while True:
    buf = os.read(fan, 4096)
    off = 0
    while off < len(buf):
        ev_len, _, _, _, _, fd, pid = struct.unpack_from("IBBHQii", buf, off)
        off += ev_len
        try:
            name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
            if pid != me and name.startswith("f") and name[1:].isdigit() and int(name[1:]) % 2 == 1 and name not in done:
                fresh = os.path.join(staging, name)
                with open(fresh, "w") as f:
                    f.write("fresh " + name)
                os.rename(fresh, os.path.join(d, name))
                done.add(name)
                print("raced", name, flush=True)
        finally:
            # Closed before the answer: the opener must find no other descriptor open.
            os.close(fd)
            os.write(fan, struct.pack("iI", fd, FAN_ALLOW))
"#;

/// Issue 10.1: 400 expired temp files; a racing renamer (above) renames a fresh file over
/// every odd-numbered one in the window between the deleter opening it to check it and
/// removing it. Every fresh file must survive, and the audit may say "deleted" only for
/// the even-numbered files, whose checked inodes really went. On the old code (lease,
/// then `unlinkat(dir, name)`) all 200 fresh files were deleted and audited as the
/// planned ones.
#[test]
fn a_file_renamed_over_the_planned_one_in_the_last_instant_is_never_deleted() {
    const N: usize = 400;
    let b = Box_::new("max_delete_per_pass = { files = 100000 }", "", BASE_CLASSES);
    for i in 0..N {
        b.file(&format!("tmp/f{i}"), 10, Duration::from_secs(7200));
    }
    let staging = b.dir.path().join("staging");
    fs::create_dir_all(&staging).unwrap();
    let mut racer = Command::new("python3")
        .arg("-c")
        .arg(RENAMER)
        .arg(b.path("tmp"))
        .arg(&staging)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(racer.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the renamer did not start");
    let raced = std::thread::spawn(move || {
        out.lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("raced"))
            .count()
    });
    let gc = b.cli(&["gc", "--json"]);
    let v = gc.json();
    let summary = format!(
        "gc exit {}: deleted {}, refused {}, failed {}, vanished {}",
        gc.code, v["deleted_files"], v["refused"], v["failed"], v["vanished"]
    );
    racer.kill().unwrap();
    racer.wait().unwrap();
    let raced = raced.join().unwrap();
    assert_eq!(raced, N / 2, "the renamer raced every odd file; {summary}");

    let db = rusqlite::Connection::open(b.state().join("registry.db")).unwrap();
    let audited: Vec<(String, String)> = db
        .prepare("SELECT CAST(path AS TEXT), outcome FROM audit WHERE action = 'delete'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut fresh_lost = Vec::new();
    let mut false_audit = Vec::new();
    for i in 0..N {
        let rel = format!("tmp/f{i}");
        let deleted = audited.iter().any(|(p, o)| *p == rel && o == "deleted");
        if i % 2 == 1 {
            match fs::read_to_string(b.path(&rel)) {
                Ok(s) if s == format!("fresh f{i}") => {}
                other => fresh_lost.push(format!("{rel}: {other:?}")),
            }
            if deleted {
                false_audit.push(rel);
            }
        } else {
            assert!(
                !b.path(&rel).exists(),
                "{rel} (not raced) was kept; {summary}"
            );
            assert!(deleted, "{rel} was deleted without a record");
        }
    }
    assert!(
        fresh_lost.is_empty(),
        "{} of {} fresh files deleted: {:?}; {summary}",
        fresh_lost.len(),
        N / 2,
        &fresh_lost[..fresh_lost.len().min(3)]
    );
    assert!(
        false_audit.is_empty(),
        "{} raced files audited as deleted",
        false_audit.len()
    );
    // Nothing is left behind in the trash directory.
    let trash = b.media.join(".mediaretain-trash");
    if trash.exists() {
        assert_eq!(fs::read_dir(&trash).unwrap().count(), 0, "trash not empty");
    }
    assert_eq!(v["deleted_files"], (N / 2) as u64, "{summary}");
    assert_eq!(v["refused"], (N / 2) as u64, "{summary}");
}
