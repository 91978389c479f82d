//! Real S3-compatible servers for the tests, started by the tests themselves on free
//! loopback ports: moto (`moto_server`, in memory) and a single-node Garage (`garage`).
//! Each is killed when its handle drops. A server that cannot be started or reached
//! fails the test with the reason — a missing server is never a silent skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mediaretain::store::s3::{Credentials, S3Settings};

/// A running test server with one empty bucket.
pub struct S3Server {
    /// "moto" or "garage".
    pub kind: &'static str,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The region the server expects.
    pub region: String,
    /// The bucket created for the test.
    pub bucket: String,
    /// Access key id.
    pub key_id: String,
    /// Secret key.
    pub secret: String,
    /// From spawn to answering S3 requests with the bucket ready.
    pub startup: Duration,
    /// Every node's endpoint (a cluster: one per node; else just `endpoint`).
    pub endpoints: Vec<String>,
    child: Option<Child>,
    /// The nodes of a Garage cluster ([`S3Server::garage_cluster`]); empty otherwise.
    nodes: Vec<GarageNode>,
    dir: tempfile::TempDir,
}

/// One node of a Garage cluster: its config, log and process.
struct GarageNode {
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    s3_port: u16,
    child: Option<Child>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port free now, below the kernel's ephemeral range (`ip_local_port_range`):
/// a server started on it cannot lose it, between this look and its own bind, to the
/// source port of some test's outgoing connection — moto_server did ("Address already in
/// use" on a port the kernel had handed out as 0) once in four runs of the suite.
/// Distinct within one test process; a random start per process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const FLOOR: u32 = 10_000;
    if low <= FLOOR + 1_000 {
        // An unusual range: the kernel's own choice, as before.
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    let span = low - FLOOR;
    let seed = std::process::id().wrapping_mul(7_919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FLOOR + seed.wrapping_add(n.wrapping_mul(7_919)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FLOOR} and {low}");
}

/// Sends one plain HTTP/1.1 request and returns the status code, or `None` when nothing
/// answers. Enough to see that a server is up (and to create a moto bucket, which needs
/// no signature).
pub fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Polls `ready` until it holds; fails with `what` and the server's log after `limit`, or
/// at once when the server process has exited.
fn wait_ready(
    child: &mut Child,
    log: &Path,
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !ready() {
        let log = || std::fs::read_to_string(log).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what}: the server exited ({status}) before it was ready:\n{}",
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not ready after {limit:?}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a program to completion, failing the test with its output when it fails.
fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e} (is it installed? .ci/run installs it)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Spawns `program args` with stdout and stderr to `log`.
pub fn spawn(program: &str, args: &[&str], log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {program}: {e} (is it installed and on PATH? .ci/run installs it)")
        })
}

impl S3Server {
    /// A moto server (`moto_server`) on a free loopback port, with bucket `test`.
    pub fn moto() -> S3Server {
        let t0 = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let port = free_port();
        let mut child = spawn(
            "moto_server",
            &["-H", "127.0.0.1", "-p", &port.to_string()],
            &log,
        );
        wait_ready(
            &mut child,
            &log,
            "moto_server",
            Duration::from_secs(60),
            || http_status(port, "GET", "/") == Some(200),
        );
        // moto checks no signatures, so a bare PUT creates the bucket.
        let created = http_status(port, "PUT", "/test");
        assert_eq!(created, Some(200), "moto: creating bucket test");
        S3Server {
            kind: "moto",
            endpoint: format!("http://127.0.0.1:{port}"),
            region: "us-east-1".into(),
            bucket: "test".into(),
            key_id: "testing".into(),
            secret: "testing".into(),
            startup: t0.elapsed(),
            endpoints: vec![format!("http://127.0.0.1:{port}")],
            child: Some(child),
            nodes: Vec::new(),
            dir,
        }
    }

    /// A single-node Garage (`garage`) on free loopback ports, with bucket `test` and a key
    /// allowed to read, write and own it — configured through Garage's own CLI.
    pub fn garage() -> S3Server {
        let t0 = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (config, s3) = garage_config(d, 1);
        let cfg = config.to_str().unwrap();
        let log = d.join("garage.log");
        let mut child = spawn("garage", &["-c", cfg, "server"], &log);
        let garage = |args: &[&str]| {
            let mut all = vec!["-c", cfg];
            all.extend_from_slice(args);
            run("garage", &all)
        };
        wait_ready(&mut child, &log, "garage", Duration::from_secs(60), || {
            Command::new("garage")
                .args(["-c", cfg, "status"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        let node = String::from_utf8(garage(&["node", "id", "-q"]).stdout).unwrap();
        let node = node.trim().split('@').next().unwrap().to_string();
        garage(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        garage(&["layout", "apply", "--version", "1"]);
        // Fixed, well-formed keys (GK + 24 hex digits, 64 hex digits) instead of parsing
        // `key create` output.
        let (key_id, secret) = (format!("GK{}", "a1".repeat(12)), "b2".repeat(32));
        garage(&["key", "import", "--yes", "-n", "test", &key_id, &secret]);
        garage(&["bucket", "create", "test"]);
        garage(&[
            "bucket", "allow", "--read", "--write", "--owner", "test", "--key", "test",
        ]);
        // The S3 API answers once the layout is live: 403 to an unsigned request.
        wait_ready(
            &mut child,
            &log,
            "garage S3 API",
            Duration::from_secs(60),
            || http_status(s3, "GET", "/test").is_some_and(|c| c != 503),
        );
        S3Server {
            kind: "garage",
            endpoint: format!("http://127.0.0.1:{s3}"),
            region: "garage".into(),
            bucket: "test".into(),
            key_id,
            secret,
            startup: t0.elapsed(),
            endpoints: vec![format!("http://127.0.0.1:{s3}")],
            child: Some(child),
            nodes: Vec::new(),
            dir,
        }
    }

    /// A Garage cluster of `n` nodes on loopback (`n` processes, replication factor `n`,
    /// the layout applied), with bucket `test` and a key allowed to read, write and own it.
    /// `endpoint` is node 0's; `endpoints` every node's. [`S3Server::kill_node`] and
    /// [`S3Server::restart_node`] take one node down and back.
    pub fn garage_cluster(n: usize) -> S3Server {
        let t0 = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 0..n {
            let d = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&d).unwrap();
            let (config, s3) = garage_config(&d, n);
            let mut node = GarageNode {
                log: d.join("garage.log"),
                config,
                s3_port: s3,
                child: None,
            };
            node.start();
            nodes.push(node);
        }
        let first = nodes[0].config.to_str().unwrap().to_string();
        // Cluster-wide commands go to node 0.
        let cli = |args: &[&str]| {
            let mut all = vec!["-c", first.as_str()];
            all.extend_from_slice(args);
            run("garage", &all)
        };
        let mut ids = Vec::new();
        for node in nodes.iter_mut() {
            let cfg = node.config.to_str().unwrap().to_string();
            let log = node.log.clone();
            let mut id = String::new();
            wait_ready(
                node.child.as_mut().unwrap(),
                &log,
                "garage node",
                Duration::from_secs(60),
                || {
                    Command::new("garage")
                        .args(["-c", &cfg, "node", "id", "-q"])
                        .stderr(Stdio::null())
                        .output()
                        .ok()
                        .filter(|o| o.status.success())
                        .map(|o| id = String::from_utf8_lossy(&o.stdout).trim().to_string())
                        .is_some()
                },
            );
            ids.push(id);
        }
        for id in &ids[1..] {
            cli(&["node", "connect", id]);
        }
        for id in &ids {
            cli(&[
                "layout",
                "assign",
                "-z",
                "dc1",
                "-c",
                "1G",
                id.split('@').next().unwrap(),
            ]);
        }
        cli(&["layout", "apply", "--version", "1"]);
        let (key_id, secret) = (format!("GK{}", "a1".repeat(12)), "b2".repeat(32));
        cli(&["key", "import", "--yes", "-n", "test", &key_id, &secret]);
        cli(&["bucket", "create", "test"]);
        cli(&[
            "bucket", "allow", "--read", "--write", "--owner", "test", "--key", "test",
        ]);
        let mut server = S3Server {
            kind: "garage",
            endpoint: format!("http://127.0.0.1:{}", nodes[0].s3_port),
            region: "garage".into(),
            bucket: "test".into(),
            key_id,
            secret,
            startup: Duration::ZERO,
            endpoints: nodes
                .iter()
                .map(|n| format!("http://127.0.0.1:{}", n.s3_port))
                .collect(),
            child: None,
            nodes,
            dir,
        };
        for i in 0..n {
            server.wait_node(i);
        }
        server.startup = t0.elapsed();
        server
    }

    /// Waits until node `i`'s S3 API answers with the bucket ready (403 to an unsigned
    /// request, not 503).
    fn wait_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let port = node.s3_port;
        let log = node.log.clone();
        wait_ready(
            node.child.as_mut().unwrap(),
            &log,
            "garage node S3 API",
            Duration::from_secs(60),
            || http_status(port, "GET", "/test").is_some_and(|c| c != 503),
        );
    }

    /// Kills node `i` of a cluster (SIGKILL) and waits for it: its endpoint refuses
    /// connections from now on.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` of a cluster again on its data and waits until it answers.
    pub fn restart_node(&mut self, i: usize) {
        self.nodes[i].start();
        self.wait_node(i);
    }

    /// Settings for a store `name` on this server under `prefix`, with small parts and
    /// quick retries so failure tests finish fast.
    pub fn settings(&self, name: &str, prefix: &str) -> S3Settings {
        let creds = Credentials {
            access_key_id: self.key_id.clone(),
            secret_access_key: self.secret.clone(),
            session_token: None,
        };
        let mut s = S3Settings::new(name, &self.endpoint, &self.region, &self.bucket, creds);
        s.prefix = prefix.into();
        s.part_size = 5 * 1024 * 1024;
        s.parts_in_flight = 2;
        s.retry.max_retries = 2;
        s.retry.initial_backoff = Duration::from_millis(20);
        s.retry.max_backoff = Duration::from_millis(200);
        s.retry.retry_timeout = Duration::from_secs(5);
        s.retry.connect_timeout = Duration::from_secs(2);
        s
    }

    /// The `[[store]]` section of an S3 store `archive` on this server, reached at
    /// `endpoint` (the server's own, or a proxy's), under `prefix`, with its credentials
    /// in `archive.credentials` written into `dir` (beside the config).
    pub fn store_section(&self, dir: &Path, endpoint: &str, prefix: &str) -> String {
        std::fs::write(
            dir.join("archive.credentials"),
            format!(
                "aws_access_key_id = {}\naws_secret_access_key = {}\n",
                self.key_id, self.secret
            ),
        )
        .unwrap();
        format!(
            "\n[[store]]\nname = \"archive\"\nkind = \"s3\"\nendpoint = \"{endpoint}\"\nregion = \"{}\"\nbucket = \"{}\"\nprefix = \"{prefix}\"\ncredentials_file = \"archive.credentials\"\nretry_timeout = \"3s\"\nnode_prefix = false\n",
            self.region, self.bucket
        )
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (every node of a cluster) and waits for it; requests fail from
    /// now on.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}

impl GarageNode {
    /// Starts the node's `garage server` (its log appended to).
    fn start(&mut self) {
        assert!(self.child.is_none(), "garage node already running");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("garage")
            .args(["-c", self.config.to_str().unwrap(), "server"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start garage: {e} (is it installed?)"));
        self.child = Some(child);
    }
}

/// A proxy in front of a real server that lies about ETags (`lying_s3_proxy.py` beside
/// this file): everything is stored upstream as sent, but the MD5s in ETags come back
/// reversed. Killed when dropped.
pub struct LyingProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    log: std::path::PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl LyingProxy {
    /// Starts a proxy to `server`; `mode` is "all" (every ETag is a lie, uploaded parts
    /// included) or "objects" (parts are told truly; whole objects are not).
    pub fn start(server: &S3Server, mode: &str) -> LyingProxy {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.log");
        let port = server.endpoint.rsplit(':').next().unwrap().to_string();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/common/lying_s3_proxy.py"
        );
        let mut child = Command::new("python3")
            .args([script, &port, log.to_str().unwrap(), mode])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the lying proxy");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port: u16 = line.trim().parse().expect("the proxy prints its port");
        LyingProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
            child,
            _dir: dir,
        }
    }

    /// The requests it forwarded so far: "METHOD PATH?QUERY STATUS" each.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Multipart uploads started through it (CreateMultipartUpload calls).
    pub fn uploads_started(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with("POST ") && r.contains("?uploads"))
            .count()
    }
}

impl Drop for LyingProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain S3 client of a test server (object_store, no mediaretain code) for setting up
/// and checking what is on the server: many objects at once, one key, a listing.
pub struct Raw {
    s3: std::sync::Arc<object_store::aws::AmazonS3>,
    rt: tokio::runtime::Runtime,
}

impl S3Server {
    /// A plain client of this server's bucket (keys are full keys, prefix included).
    pub fn raw(&self) -> Raw {
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_region(&self.region)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .with_allow_http(true)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Raw {
            s3: std::sync::Arc::new(s3),
            rt,
        }
    }
}

impl Raw {
    /// Creates one-byte objects `keys`, 32 requests at once.
    pub fn put_many(&self, keys: &[String]) {
        use futures::{StreamExt, TryStreamExt};
        use object_store::ObjectStoreExt;
        self.rt.block_on(async {
            futures::stream::iter(keys.iter().map(|k| {
                let s3 = std::sync::Arc::clone(&self.s3);
                let path = object_store::path::Path::from(k.as_str());
                async move { s3.put(&path, "x".into()).await }
            }))
            .buffer_unordered(32)
            .try_collect::<Vec<_>>()
            .await
            .unwrap();
        });
    }

    /// Whether `key` is there (a HEAD).
    pub fn exists(&self, key: &str) -> bool {
        use object_store::ObjectStoreExt;
        let path = object_store::path::Path::from(key);
        match self.rt.block_on(self.s3.head(&path)) {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("HEAD {key}: {e}"),
        }
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> std::collections::BTreeSet<String> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let prefix = object_store::path::Path::from(prefix);
        self.rt.block_on(async {
            self.s3
                .list(Some(&prefix))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap()
        })
    }
}

impl Raw {
    /// Deletes `key` (behind the back of anything that recorded it).
    pub fn delete(&self, key: &str) {
        use object_store::ObjectStoreExt;
        let path = object_store::path::Path::from(key);
        self.rt.block_on(self.s3.delete(&path)).unwrap();
    }
}

/// Writes the config of one Garage node in `d` (metadata and data beside it, free ports on
/// loopback, one RPC secret for every node of a cluster of `replication` nodes): its path
/// and the node's S3 port.
fn garage_config(d: &Path, replication: usize) -> (std::path::PathBuf, u16) {
    let (rpc, s3, admin) = (free_port(), free_port(), free_port());
    let config = d.join("garage.toml");
    std::fs::write(
        &config,
        format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = {replication}
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
            meta = d.join("meta").display(),
            data = d.join("data").display(),
            secret = "5f".repeat(32),
        ),
    )
    .unwrap();
    (config, s3)
}
