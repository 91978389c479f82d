//! Shared helpers for the integration tests: a media box in a temp dir, the real binary,
//! and polling with deadlines (never sleeps that guess).
#![allow(dead_code)]

pub mod prometheus;
pub mod s3;
pub mod stack;
pub mod users;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub const BIN: &str = env!("CARGO_BIN_EXE_mediaretain");

/// The binary under test: `BIN`, or `$MEDIARETAIN_TEST_BIN` (to run a test against another
/// build, e.g. the code before a fix, and see it fail).
pub fn bin() -> String {
    std::env::var("MEDIARETAIN_TEST_BIN").unwrap_or_else(|_| BIN.to_string())
}

/// A temp dir with `media/` (a store root), `state/` and a config file.
pub struct Box_ {
    pub dir: tempfile::TempDir,
    pub media: PathBuf,
    pub config: PathBuf,
}

pub const BASE_CLASSES: &str = r#"
[[class]]
name = "tmp"
store = "media"
match = ["tmp/**"]
lifecycle = "temporary"
ttl = "30m"

[[class]]
name = "hls"
store = "media"
match = ["hls/**/*.ts"]
lifecycle = "segment"
keep_for = "2m"

[[class]]
name = "rec"
store = "media"
match = ["rec/**/*.mp4"]
lifecycle = "recording"
keep_for = "7d"
max_count = 3
"#;

impl Box_ {
    /// A box whose config is `[daemon]` + one `media` store + `classes`.
    pub fn new(daemon_extra: &str, store_extra: &str, classes: &str) -> Box_ {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        fs::create_dir_all(&media).unwrap();
        let config = dir.path().join("config.toml");
        let b = Box_ { dir, media, config };
        b.write_config(daemon_extra, store_extra, classes);
        b
    }

    pub fn write_config(&self, daemon_extra: &str, store_extra: &str, classes: &str) {
        // Tests not about the watchdog must not depend on how full the machine's disk is.
        let watchdog = if classes.contains("[watchdog]") {
            ""
        } else {
            "\n[watchdog]\nenabled = false\n"
        };
        let text = format!(
            "[daemon]\nstate_dir = \"state\"\n{daemon_extra}\n\n[[store]]\nname = \"media\"\nkind = \"local\"\nroot = \"media\"\n{store_extra}\n{classes}{watchdog}"
        );
        fs::write(&self.config, text).unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.media.join(rel)
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Creates `rel` with `size` bytes, modified `age` ago.
    pub fn file(&self, rel: &str, size: usize, age: Duration) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, vec![7u8; size]).unwrap();
        set_age(&p, age);
        p
    }

    /// Runs `mediaretain --config CONFIG args…`.
    pub fn cli(&self, args: &[&str]) -> Run {
        let out = Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        Run::from(out)
    }

    /// Takes a lease through the CLI; returns its id.
    pub fn lease(&self, target: &str, ttl: &str, holder: &str) -> String {
        let out = self
            .cli(&["lease", target, "--ttl", ttl, "--holder", holder])
            .ok();
        out.stdout.trim().to_string()
    }

    /// Starts the daemon; returns once it answers and has finished its first scan.
    pub fn daemon(&self, notify: Option<&Path>) -> Daemon {
        self.daemon_env(notify, &[])
    }

    /// Like [`Box_::daemon`], with extra environment variables.
    pub fn daemon_env(&self, notify: Option<&Path>, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(bin());
        cmd.envs(env.iter().copied());
        cmd.arg("--config").arg(&self.config).arg("run");
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.env("RUST_LOG", "info");
        match notify {
            Some(n) => cmd.env("NOTIFY_SOCKET", n),
            None => cmd.env_remove("NOTIFY_SOCKET"),
        };
        let d = Daemon::spawn(cmd);
        self.wait_ready(&d);
        d
    }

    /// Waits until the daemon answers on its socket and its first scan is done (like
    /// READY=1); fails the test, with the daemon's log, if it exits or takes 20 s.
    pub fn wait_ready(&self, d: &Daemon) {
        let sock = self.state().join("control.sock");
        d.wait_for("the daemon's socket", Duration::from_secs(20), || {
            // Only once the socket answers: a one-shot `status` would take the state lock.
            std::os::unix::net::UnixStream::connect(&sock).is_ok() && {
                let st = self.cli(&["status", "--json"]).json();
                st["activity"]["daemon"] == true && !st["activity"]["last_scan_at"].is_null()
            }
        });
    }
}

pub fn set_age(p: &Path, age: Duration) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

/// The result of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or(serde_json::Value::Null)
    }
}

/// A running daemon; killed on drop if still running.
pub struct Daemon {
    pub child: Option<Child>,
    /// Everything it wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Spawns `cmd` (stderr piped), draining its stderr into the log as it comes: a full
    /// pipe would block the daemon's logging.
    pub fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (mut err, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Daemon {
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }
    pub fn signal(&self, sig: rustix::process::Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_raw(self.pid()).unwrap(), sig)
            .unwrap();
    }
    /// Sends SIGTERM and waits (bounded) for the exit; returns (exit code, stderr).
    pub fn stop(mut self) -> (i32, String) {
        self.signal(rustix::process::Signal::TERM);
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                // Give the drain thread a moment to read the last lines (bounded).
                let until = Instant::now() + Duration::from_secs(2);
                while !self.log.lock().unwrap().contains("stopped") && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return (st.code().unwrap_or(-1), self.log.lock().unwrap().clone());
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not stop within 15 s of SIGTERM; its log:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like [`wait_for`], but a timeout also shows the daemon's log so far.
    pub fn wait_for(&self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; the daemon's log:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fake systemd notify socket. Like systemd it reads every message as it arrives (a
/// reader that falls behind would make the sender's datagrams block).
pub struct NotifySocket {
    pub path: PathBuf,
    messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    seen_upto: usize,
}

impl NotifySocket {
    pub fn new(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_string());
            }
        });
        NotifySocket {
            path,
            messages,
            seen_upto: 0,
        }
    }

    /// Forgets the messages so far: `expect` looks only at what comes next.
    pub fn clear(&mut self) {
        self.seen_upto = self.messages.lock().unwrap().len();
    }

    /// Waits until a message containing `needle` has arrived (bounded).
    pub fn expect(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            {
                let m = self.messages.lock().unwrap();
                if let Some(hit) = m[self.seen_upto..].iter().find(|x| x.contains(needle)) {
                    return hit.clone();
                }
                assert!(
                    Instant::now() < deadline,
                    "no {needle:?} from sd_notify within {limit:?}; seen {:?}",
                    &m[self.seen_upto..]
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One HTTP POST over the control socket: (status, body).
pub fn api(sock: &Path, path: &str, body: &str) -> (u16, String) {
    socket_http(
        sock,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// One raw HTTP request over the control socket: (status, body). A server that answers
/// and closes before reading the whole request (an old build's 404) still gives its answer.
pub fn socket_http(sock: &Path, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    let _ = s.write_all(request.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// A tmpfs mounted over `dir` for the test's lifetime (needs root, as CI runs).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount(8)");
        assert!(
            st.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A process holding `p` open (`tail -f`), returned once the kernel shows the descriptor;
/// killed on drop.
pub struct Holder(Child);

impl Holder {
    pub fn open(p: &Path) -> Holder {
        let child = Command::new("tail")
            .arg("-f")
            .arg(p)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let want = fs::canonicalize(p).unwrap();
        wait_for("tail to open the file", Duration::from_secs(10), || {
            fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|d| {
                d.flatten()
                    .any(|e| fs::read_link(e.path()).is_ok_and(|l| l == want))
            })
        });
        Holder(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the daemon of `b` expecting it to refuse to start: its exit code and log.
pub fn refused_start(b: &Box_) -> (i32, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(&b.config).arg("run");
    cmd.stdout(Stdio::null()).env("RUST_LOG", "info");
    cmd.env_remove("NOTIFY_SOCKET");
    let mut d = Daemon::spawn(cmd);
    let mut child = d.child.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(200)); // the drain thread's last lines
            return (st.code().unwrap_or(-1), d.log.lock().unwrap().clone());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the daemon did not refuse to start; its log:\n{}",
                d.log.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
