//! Shared helpers for the integration tests: a media box in a temp dir, the real binary,
//! and polling with deadlines (never sleeps that guess).
#![allow(dead_code)]

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub const BIN: &str = env!("CARGO_BIN_EXE_mediaretain");

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
        let text = format!(
            "[daemon]\nstate_dir = \"state\"\n{daemon_extra}\n\n[[store]]\nname = \"media\"\nkind = \"local\"\nroot = \"media\"\n{store_extra}\n{classes}"
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
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        Run::from(out)
    }

    /// Starts the daemon; returns once its socket answers `status`.
    pub fn daemon(&self, notify: Option<&Path>) -> Daemon {
        self.daemon_env(notify, &[])
    }

    /// Like [`Box_::daemon`], with extra environment variables.
    pub fn daemon_env(&self, notify: Option<&Path>, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().copied());
        cmd.arg("--config").arg(&self.config).arg("run");
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.env("RUST_LOG", "info");
        match notify {
            Some(n) => cmd.env("NOTIFY_SOCKET", n),
            None => cmd.env_remove("NOTIFY_SOCKET"),
        };
        let child = cmd.spawn().unwrap();
        let d = Daemon { child: Some(child) };
        let sock = self.state().join("control.sock");
        wait_for("the daemon's socket", Duration::from_secs(20), || {
            // Only once the socket answers: a one-shot `status` would take the state lock.
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
                && self.cli(&["status", "--json"]).json()["activity"]["daemon"] == true
        });
        d
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
}

impl Daemon {
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
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (st.code().unwrap_or(-1), err);
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not stop within 15 s of SIGTERM"
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

/// A fake systemd notify socket.
pub struct NotifySocket {
    pub path: PathBuf,
    sock: UnixDatagram,
    pub seen: Vec<String>,
}

impl NotifySocket {
    pub fn new(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket {
            path,
            sock,
            seen: Vec::new(),
        }
    }
    /// Waits until a message containing `needle` arrives (bounded).
    pub fn expect(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        if let Some(m) = self.seen.iter().find(|m| m.contains(needle)) {
            return m.clone();
        }
        let mut buf = [0u8; 4096];
        loop {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} from sd_notify within {limit:?}; seen {:?}",
                self.seen
            );
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                self.seen.push(m.clone());
                if m.contains(needle) {
                    return m;
                }
            }
        }
    }
}
