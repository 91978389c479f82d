//! Confinement as root (issue 9), with a real second Unix user and real racing processes:
//! the daemon runs as root, media directories are written by a less trusted user
//! (`mr-attacker`), and a consumer (`mr-member`, in group `mr-consumers`) may lease.
//!
//! These tests need root (to create the users, once, and to drop to them with `setpriv`),
//! as CI runs them. Attackers are `/usr/bin/python3` loops running as `mr-attacker`.
//! `MEDIARETAIN_TEST_BIN=/path/to/old/mediaretain` runs them against another build.

mod common;
use common::s3::S3Server;
use common::users::{ATTACKER, GROUP, MEMBER, as_user, user};
use common::*;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PY: &str = "/usr/bin/python3";

/// Lets other users traverse the test box (a tempdir is 0700).
fn open_box(b: &Box_) {
    fs::set_permissions(b.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
}

/// Hands the media directory to the attacker (the media server's user writes it).
fn give_media(b: &Box_) {
    let (uid, gid) = user(ATTACKER);
    std::os::unix::fs::chown(&b.media, Some(uid), Some(gid)).unwrap();
}

/// A python loop as `user`; stopped (killed and reaped) on drop.
struct Racer(Child);

impl Racer {
    fn start(user_name: &str, script: &str, args: &[&str]) -> Racer {
        let child = as_user(user_name, PY)
            .arg("-c")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Racer(child)
    }

    /// Waits for it to end by itself (bounded); returns its stdout.
    fn finish(mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if self.0.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "racer did not finish in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "racer failed: {err}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A root-only secret: `dir` 0700 with `file` 0600 inside.
fn secret(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    let f = dir.join("id_rsa");
    fs::write(&f, b"ROOT SECRET\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    f
}

// ---------------------------------------------------------------------------------------
// (a) fetch writes
// ---------------------------------------------------------------------------------------

fn archive(b: &Box_, server: &S3Server) -> String {
    server.store_section(b.dir.path(), &server.endpoint, "box1/")
}

/// The attacker keeps planting symlinks to a root-only 0600 file at DEST and at every name
/// a fetch into DEST could write through (`DEST.mediaretain-fetch`, `DEST.part`), for as
/// long as root runs 20 `fetch --force` into DEST — DEST's directory belongs to the
/// attacker and lies on another filesystem (tmpfs /dev/shm) than the state directory, so
/// no fetch can simply rename its staging file into place. Window: the whole of each
/// fetch; iterations: 20 fetches against a loop that re-plants as fast as it can.
/// Afterwards the root file has its content and mode; every fetch either refused DEST
/// (a symlink is there) or wrote it, and what it wrote is a regular file.
///
/// On the code before the fix: "root file overwritten through a planted symlink".
#[test]
fn fetch_never_writes_through_a_planted_symlink() {
    let (uid, gid) = user(ATTACKER);
    let server = S3Server::moto();
    let b = Box_::new("", "", "");
    open_box(&b);
    let store = archive(&b, &server);
    b.write_config("", &store, "");
    let src = b.dir.path().join("obj");
    fs::write(&src, vec![b'm'; 256 * 1024]).unwrap();
    let remote = mediaretain::store::s3::S3Store::new(server.settings("archive", "box1")).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use mediaretain::store::Store;
            remote.put_file("rec/cam1.mp4", &src).await.unwrap()
        });
    let victim = secret(&b.dir.path().join("root-only"));
    let shm = tempfile::tempdir_in("/dev/shm").expect("/dev/shm (tmpfs) for another filesystem");
    assert_ne!(
        fs::metadata(shm.path()).unwrap().dev(),
        fs::metadata(b.dir.path()).unwrap().dev(),
        "/dev/shm must be another filesystem than the state directory"
    );
    fs::set_permissions(shm.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let restore = shm.path().join("restore");
    fs::create_dir(&restore).unwrap();
    std::os::unix::fs::chown(&restore, Some(uid), Some(gid)).unwrap();
    let dest = restore.join("cam1.mp4");
    // First, without a race: a planted link at DEST and at the old copy's temp name.
    std::os::unix::fs::symlink(&victim, restore.join("cam1.mediaretain-fetch")).unwrap();
    std::os::unix::fs::symlink(&victim, restore.join("cam1.mp4.part")).unwrap();
    let r = b.cli(&["fetch", "archive:rec/cam1.mp4", dest.to_str().unwrap()]);
    assert!(
        fs::read(&victim).unwrap() == b"ROOT SECRET\n",
        "root file overwritten through a planted symlink: {r:?}"
    );
    assert_eq!(
        mode(&victim),
        0o600,
        "root file's mode changed through a planted symlink"
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(fs::symlink_metadata(&dest).unwrap().is_file());
    assert_eq!(fs::read(&dest).unwrap(), fs::read(&src).unwrap());
    fs::remove_file(&dest).unwrap();
    std::os::unix::fs::symlink(&victim, &dest).unwrap();
    let r = b.cli(&[
        "fetch",
        "archive:rec/cam1.mp4",
        dest.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(r.code, 65, "a symlink at DEST must be refused: {r:?}");
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);

    // On the state directory's filesystem the partial file lives in our staging directory
    // and is renamed across directory descriptors; DEST gets the umask's mode.
    let same_fs = b.dir.path().join("restored.mp4");
    b.cli(&["fetch", "archive:rec/cam1.mp4", same_fs.to_str().unwrap()])
        .ok();
    assert_eq!(fs::read(&same_fs).unwrap(), fs::read(&src).unwrap());
    assert_eq!(fs::read_dir(b.state().join("staging")).unwrap().count(), 0);
    assert_eq!(mode(&b.state().join("staging")) & 0o077, 0);
    let r = b.cli(&["fetch", "archive:rec/cam1.mp4", same_fs.to_str().unwrap()]);
    assert_eq!(r.code, 65, "an existing DEST needs --force: {r:?}");

    // Then racing: the attacker re-plants links as fast as it can.
    let script = r#"
import os, sys, time
dest, victim, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
names = [dest, dest[:-4] + ".mediaretain-fetch", dest + ".part"]
end, n = time.time() + secs, 0
while time.time() < end:
    for p in names:
        try:
            if not os.path.islink(p):
                if os.path.lexists(p):
                    os.unlink(p)
                os.symlink(victim, p)
        except OSError:
            pass
    n += 1
print(n)
"#;
    let racer = Racer::start(
        ATTACKER,
        script,
        &[dest.to_str().unwrap(), victim.to_str().unwrap(), "8"],
    );
    let (mut wrote, mut refused) = (0, 0);
    for _ in 0..20 {
        let r = b.cli(&[
            "fetch",
            "archive:rec/cam1.mp4",
            dest.to_str().unwrap(),
            "--force",
        ]);
        match r.code {
            0 => wrote += 1,
            65 => refused += 1,
            _ => panic!("unexpected fetch result: {r:?}"),
        }
        assert!(
            fs::read(&victim).unwrap() == b"ROOT SECRET\n",
            "root file overwritten through a planted symlink: {r:?}"
        );
        assert_eq!(mode(&victim), 0o600, "root file's mode changed");
    }
    let loops = racer.finish(Duration::from_secs(30));
    eprintln!(
        "fetch race: 20 fetches ({wrote} wrote DEST, {refused} refused a link at DEST) against {} attacker loops in 8 s",
        loops.trim()
    );
    assert!(fs::read(&victim).unwrap() == b"ROOT SECRET\n");
    assert_eq!(mode(&victim), 0o600);
    // Nothing of ours left in the attacker's directory but DEST (or the attacker's links).
    for e in fs::read_dir(&restore).unwrap().flatten() {
        let md = fs::symlink_metadata(e.path()).unwrap();
        assert!(
            md.file_type().is_symlink() || e.file_name() == "cam1.mp4",
            "left behind: {:?}",
            e.path()
        );
    }
}

// ---------------------------------------------------------------------------------------
// (b) watch and scan never leave the store
// ---------------------------------------------------------------------------------------

fn inotify_fd(pid: i32) -> Option<i32> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find(|e| {
            fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:inotify")
        })
        .and_then(|e| e.file_name().to_str()?.parse().ok())
}

fn watches(pid: i32) -> usize {
    let fd = inotify_fd(pid).expect("the daemon has an inotify descriptor");
    fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("inotify wd:"))
        .count()
}

fn rss_kb(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// Two attackers (the user who writes the media directory) race the daemon for 10 s:
/// one creates fresh directories in the store and swaps each, at once, for a symlink to a
/// root-only tree of 300 directories (one `rootonly.mp4` in each) — window: from a
/// directory's creation until the daemon has added its watch, the swap follows the `mkdir`
/// within microseconds; the other exchanges a store directory with a link to that tree
/// (`renameat2(RENAME_EXCHANGE)`) back and forth — window: between a walk listing the
/// directory and opening it. Iterations: as many as the loops make, printed (thousands and
/// hundreds of thousands). Meanwhile root asks for a full scan every 200 ms. After it: no
/// entry from the root-only tree is registered (`mediaretain ls --json`), the daemon
/// watches no more directories than the store has (inotify `wd:` lines in
/// `/proc/PID/fdinfo`), and its RSS stayed within 64 MB.
///
/// On the code before the fix: "registered 600 files from outside the store, e.g.
/// [swap/d0/rootonly.mp4, …]" and up to 304 directories watched (the root-only tree).
#[test]
fn watch_and_scan_do_not_follow_a_directory_swapped_for_a_symlink() {
    user(ATTACKER);
    let b = Box_::new("", "", "");
    open_box(&b);
    give_media(&b);
    let tree = b.dir.path().join("root-only-tree");
    secret(&tree);
    for i in 0..300 {
        let d = tree.join(format!("d{i}"));
        fs::create_dir(&d).unwrap();
        fs::write(d.join("rootonly.mp4"), b"secret").unwrap();
    }
    let d = b.daemon(None);
    let pid = d.pid();
    let before = watches(pid);
    let script = r#"
import os, sys, time
media, target, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
end, n = time.time() + secs, 0
while time.time() < end:
    p = os.path.join(media, "up%d" % (n % 50))
    try:
        if os.path.islink(p):
            os.unlink(p)
        elif os.path.isdir(p):
            os.rmdir(p)
        os.mkdir(p)
        os.rmdir(p)
        os.symlink(target, p)
    except OSError:
        pass
    n += 1
print(n)
"#;
    let racer = Racer::start(
        ATTACKER,
        script,
        &[b.media.to_str().unwrap(), tree.to_str().unwrap(), "10"],
    );
    // And a directory of the store exchanged with a link to the tree, back and forth, with
    // renameat2(RENAME_EXCHANGE): whatever a walk lists as a directory may be the link
    // when it is opened.
    let exchange = r#"
import ctypes, os, sys, time
media, target, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
libc = ctypes.CDLL(None, use_errno=True)
real, link = os.path.join(media, "swap"), os.path.join(media, "swaplink")
os.makedirs(os.path.join(real, "sub"))
open(os.path.join(real, "sub", "mine.mp4"), "w").close()
os.symlink(target, link)
end, n = time.time() + secs, 0
while time.time() < end:
    if libc.renameat2(-100, real.encode(), -100, link.encode(), 2) != 0:
        sys.exit("renameat2: errno %d" % ctypes.get_errno())
    n += 1
print(n)
"#;
    let exchanger = Racer::start(
        ATTACKER,
        exchange,
        &[b.media.to_str().unwrap(), tree.to_str().unwrap(), "10"],
    );
    let started = Instant::now();
    let (mut max_watches, mut max_rss) = (0, 0);
    let mut outside = std::collections::BTreeSet::new();
    while started.elapsed() < Duration::from_secs(10) {
        let _ = b.cli(&["scan"]);
        // Looked at after every scan: a later scan may forget what an earlier one took in.
        let ls = b.cli(&["ls", "--json"]).json();
        outside.extend(
            ls.as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["path"].as_str())
                .filter(|p| p.contains("rootonly"))
                .map(str::to_string),
        );
        max_watches = max_watches.max(watches(pid));
        max_rss = max_rss.max(rss_kb(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    let loops = racer.finish(Duration::from_secs(30));
    let exchanges = exchanger.finish(Duration::from_secs(30));
    max_watches = max_watches.max(watches(pid));
    b.cli(&["scan"]).ok();
    let ls = b.cli(&["ls", "--json"]).ok().json();
    outside.extend(
        ls.as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["path"].as_str())
            .filter(|p| p.contains("rootonly"))
            .map(str::to_string),
    );
    eprintln!(
        "watch race: {} swaps and {} exchanges in 10 s; watches {before} before, at most {max_watches} during; RSS at most {} MB; {} entries from outside",
        loops.trim(),
        exchanges.trim(),
        max_rss / 1024,
        outside.len()
    );
    assert!(
        outside.is_empty(),
        "registered {} files from outside the store, e.g. {:?}",
        outside.len(),
        outside.iter().take(3).collect::<Vec<_>>()
    );
    assert!(
        max_watches <= before + 53,
        "the daemon watched {max_watches} directories (store has at most {} — the root-only tree was watched)",
        before + 53
    );
    assert!(max_rss < 64 * 1024, "RSS grew to {} MB", max_rss / 1024);
    d.stop();
}

/// A symlink to `/` inside the store costs no watch and no walk.
#[test]
fn a_link_to_root_costs_nothing() {
    user(ATTACKER);
    let b = Box_::new("", "", "");
    b.file("tmp/a", 1, Duration::ZERO);
    std::os::unix::fs::symlink("/", b.path("slash")).unwrap();
    let d = b.daemon(None);
    let n = watches(d.pid());
    // The root and tmp/.
    assert_eq!(n, 2, "watches: {n}");
    let ls = b.cli(&["ls", "--json"]).ok().json();
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
    // A link appearing later costs nothing either.
    std::os::unix::fs::symlink("/usr", b.path("tmp/usr")).unwrap();
    b.cli(&["scan"]).ok();
    assert_eq!(watches(d.pid()), 2);
    d.stop();
}

// ---------------------------------------------------------------------------------------
// (c) permissions whatever the umask
// ---------------------------------------------------------------------------------------

/// Started with umask 000 while the attacker tries to connect to the socket path in a
/// tight loop (window: the whole start-up, from before the state directory exists until the
/// daemon answers, plus 1 s; iterations: printed): the state directory, `registry.db`
/// (+ `-wal`/`-shm`) and the socket are not accessible to other users, and the attacker
/// never got a connection.
///
/// On the code before the fix: "state dir mode 777".
#[test]
fn umask_000_leaves_nothing_open_to_others() {
    user(ATTACKER);
    let b = Box_::new("", "", "");
    open_box(&b);
    let sock = b.state().join("control.sock");
    let script = r#"
import socket, sys, time
path, secs = sys.argv[1], float(sys.argv[2])
end, n, ok = time.time() + secs, 0, 0
while time.time() < end:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        ok += 1
    except OSError:
        pass
    s.close()
    n += 1
print(n, ok)
"#;
    let racer = Racer::start(ATTACKER, script, &[sock.to_str().unwrap(), "6"]);
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(&b.config)
        .arg("run")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: umask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    wait_for("the daemon's socket", Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let out = racer.finish(Duration::from_secs(30));
    let state = b.state();
    let m = mode(&state);
    let modes: Vec<(String, String)> =
        ["registry.db", "registry.db-wal", "registry.db-shm", "lock"]
            .iter()
            .filter(|n| state.join(n).exists())
            .map(|n| (n.to_string(), format!("{:o}", mode(&state.join(n)))))
            .collect();
    let sm = mode(&sock);
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "umask 000: state dir {m:o}, {modes:?}, socket {sm:o}; attacker (tries, connections): {}",
        out.trim()
    );
    assert_eq!(m & 0o026, 0, "state dir mode {m:o}");
    for (n, fm) in &modes {
        let fm = u32::from_str_radix(fm, 8).unwrap();
        assert_eq!(fm & 0o077, 0, "{n} mode {fm:o}");
    }
    assert_eq!(sm & 0o007, 0, "socket mode {sm:o}");
    let ok: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(ok, 0, "the attacker connected to the socket {ok} times");
}

// ---------------------------------------------------------------------------------------
// (d) the socket by peer credentials
// ---------------------------------------------------------------------------------------

fn cli_as(user_name: &str, b: &Box_, args: &[&str]) -> Run {
    let out = as_user(user_name, &bin())
        .arg("--config")
        .arg(&b.config)
        .args(args)
        .output()
        .unwrap();
    Run::from(out)
}

/// One raw HTTP request on the control socket, as root; returns (status line, body).
fn raw(sock: &Path, method: &str, uri: &str, body: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    write!(
        s,
        "{method} {uri} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.lines().next().unwrap_or_default().to_string();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// A stranger cannot connect; a `socket_group` member (running as itself, unable to write
/// the state directory) can take, renew and release its own leases and read, but not
/// release root's lease, pin, or run a pass, and holds at most `max_leases_per_uid`.
///
/// On the code before the fix: the config is refused ("unknown field `socket_group`").
#[test]
fn socket_by_peer_credentials() {
    user(ATTACKER);
    user(MEMBER);
    let b = Box_::new(
        &format!("socket_group = \"{GROUP}\"\nmax_leases_per_uid = 3"),
        "",
        BASE_CLASSES,
    );
    open_box(&b);
    b.file("tmp/a", 1, Duration::ZERO);
    let d = b.daemon(None);
    let sock = b.state().join("control.sock");
    let md = fs::metadata(&sock).unwrap();
    assert_eq!(md.mode() & 0o777, 0o660);
    assert_eq!(md.gid(), group_gid());

    // A stranger: refused at connect.
    let r = cli_as(ATTACKER, &b, &["lease", "media:tmp/a", "--ttl", "60s"]);
    assert_eq!(r.code, 77, "{r:?}");
    assert!(r.stderr.contains("permission denied"), "{}", r.stderr);
    let r = cli_as(
        ATTACKER,
        &b,
        &["--socket", sock.to_str().unwrap(), "status"],
    );
    assert_eq!(r.code, 77, "{r:?}");

    // Root's lease.
    let root_lease = b.lease("media:tmp/a", "10m", "root");
    // A member: its own leases, and reads.
    let r = cli_as(
        MEMBER,
        &b,
        &[
            "lease",
            "media:tmp/**",
            "--ttl",
            "60s",
            "--holder",
            "thumbs",
        ],
    )
    .ok();
    let own = r.stdout.trim().to_string();
    cli_as(MEMBER, &b, &["renew", &own, "--ttl", "120s"]).ok();
    cli_as(MEMBER, &b, &["status"]).ok();
    cli_as(MEMBER, &b, &["explain", "media:tmp/a"]).ok();
    let leases = cli_as(MEMBER, &b, &["leases", "--json"]).ok().json();
    assert_eq!(leases.as_array().unwrap().len(), 2, "{leases}");
    // Only through the socket, config unreadable: MEDIARETAIN_SOCKET.
    let r = Run::from(
        as_user(MEMBER, "/usr/bin/env")
            .arg(format!("MEDIARETAIN_SOCKET={}", sock.display()))
            .arg(bin())
            .args(["--config", "/nonexistent/config.toml", "ls", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    // Not root's lease; no pins; no passes.
    let r = cli_as(MEMBER, &b, &["release", &root_lease]);
    assert_eq!(r.code, 77, "{r:?}");
    let r = cli_as(MEMBER, &b, &["renew", &root_lease, "--ttl", "1s"]);
    assert_eq!(r.code, 77, "{r:?}");
    let r = cli_as(MEMBER, &b, &["retain", "media:tmp/a"]);
    assert_eq!(r.code, 77, "{r:?}");
    let r = cli_as(MEMBER, &b, &["gc"]);
    assert_eq!(r.code, 77, "{r:?}");
    let leases = b.cli(&["leases", "--json"]).ok().json();
    assert!(
        leases.as_array().unwrap().iter().any(|l| l["id"]
            .as_i64()
            .map(|i| i.to_string())
            .as_deref()
            == Some(root_lease.as_str())),
        "root's lease is gone: {leases}"
    );
    // The per-uid limit (3): two more, then refused with a clear error.
    for _ in 0..2 {
        cli_as(MEMBER, &b, &["lease", "media:tmp/a", "--ttl", "60s"]).ok();
    }
    let r = cli_as(MEMBER, &b, &["lease", "media:tmp/a", "--ttl", "60s"]);
    assert_eq!(r.code, 75, "{r:?}");
    assert!(r.stderr.contains("max_leases_per_uid"), "{}", r.stderr);
    // Root is not limited.
    b.lease("media:tmp/a", "60s", "root2");
    // Its own lease it may release.
    cli_as(MEMBER, &b, &["release", &own]).ok();
    d.stop();
}

/// The gid of the test's socket_group.
fn group_gid() -> u32 {
    let out = Command::new("getent")
        .args(["group", GROUP])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .unwrap()
}

/// A client cannot make the audit say an action came from the daemon itself:
/// `/v1/gc {"trigger":"pressure"}` and `/v1/retain {…, "trigger":"pressure"}` are recorded
/// as "api". (The file arrives, is registered by `/v1/scan` and collected by the client's
/// gc within milliseconds — before the daemon's own pass, which waits 1 s after arrivals.)
///
/// On the code before the fix: "audited as trigger pressure".
#[test]
fn a_client_cannot_claim_the_pressure_trigger() {
    let b = Box_::new("", "", BASE_CLASSES);
    b.file("tmp/pinned", 10, Duration::ZERO);
    let d = b.daemon(None);
    let sock = b.state().join("control.sock");
    let (status, body) = raw(
        &sock,
        "POST",
        "/v1/retain",
        r#"{"paths":["media:tmp/pinned"],"trigger":"pressure"}"#,
    );
    assert!(status.contains("200"), "{status} {body}");
    b.file("tmp/old", 10, Duration::from_secs(3600));
    let (status, body) = raw(&sock, "POST", "/v1/scan", "");
    assert!(status.contains("200"), "{status} {body}");
    let (status, body) = raw(&sock, "POST", "/v1/gc", r#"{"trigger":"pressure"}"#);
    assert!(status.contains("200"), "{status} {body}");
    for f in ["media:tmp/pinned", "media:tmp/old"] {
        let x = b.cli(&["explain", f, "--json"]).ok().json();
        let triggers: Vec<_> = x["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["trigger"].as_str().unwrap_or("").to_string())
            .collect();
        assert!(!triggers.is_empty(), "{x}");
        assert!(
            !triggers.iter().any(|t| t == "pressure"),
            "{f} audited as trigger pressure: {triggers:?}"
        );
    }
    d.stop();
}
