//! A real Prometheus (Debian's `prometheus` package) on a free loopback port, with the
//! scrape config a test gives it; killed when its handle drops.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::free_port;
use super::wait_for;

/// How long Prometheus may take to be ready, and a query to reach its value.
const T: Duration = Duration::from_secs(60);

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// One HTTP GET on loopback: (status, body).
fn get(port: u16, target: &str) -> Option<(u16, String)> {
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
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_string()))
}

impl Prometheus {
    /// Prometheus with `prometheus.yml` = `yml`, once it says it is ready.
    pub fn start(yml: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, yml).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package `prometheus`; scripts/test installs it)");
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        wait_for("Prometheus to be ready", T, || {
            get(port, "/-/ready").is_some_and(|(s, _)| s == 200)
        });
        p
    }

    /// The instant vector of `q`: (labels, value) per series; empty while Prometheus does
    /// not answer.
    pub fn query(&self, q: &str) -> Vec<(serde_json::Value, f64)> {
        let enc: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let Some((200, body)) = get(self.port, &format!("/api/v1/query?query={enc}")) else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let x = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                (r["metric"].clone(), x)
            })
            .collect()
    }

    /// The single value of `q`, if it has one.
    pub fn value(&self, q: &str) -> Option<f64> {
        let r = self.query(q);
        (r.len() == 1).then(|| r[0].1)
    }

    /// Waits until Prometheus says `q` is `want`.
    pub fn expect(&self, q: &str, want: f64) {
        let mut last = None;
        let deadline = Instant::now() + T;
        loop {
            last = self.value(q).or(last);
            if last == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus: {q} = {last:?}, want {want} (waited {T:?})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
