//! A real live-streaming stack for the tests, none of it written here: nginx with
//! libnginx-mod-rtmp (Debian) ingesting an ffmpeg test stream over RTMP, writing HLS and
//! `.flv` recordings into a store, serving the HLS over HTTP to ffmpeg players, and an
//! Owncast-style thumbnailer reading the newest segment. A watcher polls the playlist and the
//! segment directory to time when each segment left the playlist and when its file went.
//! Everything is killed when the stack drops.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::s3::{free_port, spawn};

/// nginx's HLS fragment and playlist length, as configured below (seconds).
pub const FRAGMENT: f64 = 1.0;
pub const PLAYLIST_LENGTH: f64 = 4.0;

/// What the playlist watcher saw of one segment.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Its `#EXTINF` duration.
    pub duration: f64,
    /// The playlist's total duration when the segment left it.
    pub playlist: f64,
    /// When it was first listed, left the playlist, and its file was seen gone.
    pub listed: Option<Instant>,
    pub left: Option<Instant>,
    pub gone: Option<Instant>,
    /// Its file vanished while it was still listed.
    pub gone_while_listed: bool,
}

/// A running stack writing into `media/hls` and `media/rec` (and `media/dash`, served at
/// `/dash/`, when `extra` turns `dash on`).
pub struct Stack {
    pub http: u16,
    pub rtmp: u16,
    pub hls: PathBuf,
    pub rec: PathBuf,
    pub dash: PathBuf,
    dir: tempfile::TempDir,
    nginx: Option<Child>,
    publisher: Option<Child>,
    players: Vec<Child>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Per segment name.
    pub seen: Arc<Mutex<HashMap<String, Seen>>>,
    /// Thumbnails made, and the failures (with ffmpeg's words).
    pub thumbs: Arc<Mutex<(u32, Vec<String>)>>,
}

/// Parses a media playlist: (segment name, duration) in order, and whether it has ENDLIST.
pub fn parse(text: &str) -> (Vec<(String, f64)>, bool) {
    let mut out = Vec::new();
    let mut dur = None;
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            dur = d.split(',').next().and_then(|d| d.trim().parse().ok());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            out.push((line.trim().to_string(), dur.take().unwrap_or(0.0)));
        }
    }
    (out, text.contains("#EXT-X-ENDLIST"))
}

impl Stack {
    /// Starts nginx on `media` (made writable for nginx's worker user), then the publisher.
    pub fn start(media: &Path) -> Stack {
        Stack::start_with(media, "")
    }

    /// The same, with `extra` lines in nginx's `application live` block (hooks).
    pub fn start_with(media: &Path, extra: &str) -> Stack {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (http, rtmp) = (free_port(), free_port());
        let (hls, rec, dash) = (media.join("hls"), media.join("rec"), media.join("dash"));
        // nginx's workers run as www-data, as on a real box: they must reach and write the
        // media directories (every parent of a temp dir is 0700 root otherwise).
        let (uid, gid) = www_data();
        for d in [&hls, &rec, &dash] {
            std::fs::create_dir_all(d).unwrap();
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
        }
        let mut p = media.to_path_buf();
        while let Some(parent) = p.parent() {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            if mode & 0o005 != 0o005 {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode | 0o005))
                    .unwrap();
            }
            if parent == Path::new("/") {
                break;
            }
            p = parent.to_path_buf();
        }
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                r#"daemon off;
master_process on;
worker_processes 1;
user www-data;
pid {d}/nginx.pid;
error_log {d}/error.log info;
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp};
        chunk_size 4096;
        application live {{
            live on;
            hls on;
            hls_path {hls};
            hls_fragment 1s;
            hls_playlist_length 4s;
            hls_cleanup off;
            record all;
            record_path {rec};
            record_interval 5s;
            record_unique on;
            {extra}
        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    log_format timed '$msec $status $request_uri "$http_user_agent"';
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; application/dash+xml mpd; video/mp4 m4v; audio/mp4 m4a; }}
    server {{
        listen 127.0.0.1:{http};
        location /hls/ {{
            alias {hls}/;
            add_header Cache-Control no-cache;
        }}
        location /dash/ {{
            alias {dash}/;
            access_log {d}/dash-access.log timed;
            add_header Cache-Control no-cache;
        }}
    }}
}}
"#,
                d = dir.path().display(),
                hls = hls.display(),
                rec = rec.display(),
                dash = dash.display(),
            ),
        )
        .unwrap();
        let nginx = spawn(
            "nginx",
            &[
                "-p",
                dir.path().to_str().unwrap(),
                "-c",
                conf.to_str().unwrap(),
                "-e",
                dir.path().join("error.log").to_str().unwrap(),
            ],
            &dir.path().join("nginx.out"),
        );
        let mut s = Stack {
            http,
            rtmp,
            hls,
            rec,
            dash,
            dir,
            nginx: Some(nginx),
            publisher: None,
            players: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            seen: Default::default(),
            thumbs: Default::default(),
        };
        super::wait_for("nginx to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", rtmp)).is_ok()
        });
        let url = format!("rtmp://127.0.0.1:{rtmp}/live/stream");
        let log = s.dir.path().join("publisher.log");
        s.publisher = Some(spawn(
            "ffmpeg",
            &[
                "-hide_banner",
                "-loglevel",
                "warning",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-g",
                "25",
                "-c:a",
                "aac",
                "-f",
                "flv",
                &url,
            ],
            &log,
        ));
        s.watch_playlist();
        s
    }

    /// The playlist's path.
    pub fn playlist(&self) -> PathBuf {
        self.hls.join("stream.m3u8")
    }

    /// Starts `n` ffmpeg players reading the live HLS over HTTP.
    pub fn players(&mut self, n: usize) {
        let url = format!("http://127.0.0.1:{}/hls/stream.m3u8", self.http);
        for i in 0..n {
            let log = self.dir.path().join(format!("player{i}.log"));
            self.players.push(spawn(
                "ffmpeg",
                &[
                    "-hide_banner",
                    "-loglevel",
                    "warning",
                    "-i",
                    &url,
                    "-f",
                    "null",
                    "-",
                ],
                &log,
            ));
        }
    }

    /// What the players said that shows a failure (a segment they could not fetch…).
    pub fn player_errors(&self) -> Vec<String> {
        (0..self.players.len())
            .flat_map(|i| {
                let log = self.dir.path().join(format!("player{i}.log"));
                std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| {
                        let l = l.to_ascii_lowercase();
                        l.contains("404") || l.contains("failed to open") || l.contains("error")
                    })
                    .map(|l| format!("player {i}: {l}"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Whether every player is still running.
    pub fn players_alive(&mut self) -> bool {
        self.players
            .iter_mut()
            .all(|p| matches!(p.try_wait(), Ok(None)))
    }

    /// An Owncast-style thumbnailer: every 2 s, one frame of the newest segment.
    pub fn thumbnailer(&mut self) {
        let (hls, stop, thumbs) = (self.hls.clone(), self.stop.clone(), self.thumbs.clone());
        let out = self.dir.path().join("thumb.jpg");
        self.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let newest = std::fs::read_dir(&hls)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".ts"))
                    .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                    .max();
                if let Some((_, seg)) = newest {
                    let r = Command::new("ffmpeg")
                        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
                        .arg(&seg)
                        .args(["-frames:v", "1"])
                        .arg(&out)
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                    let mut t = thumbs.lock().unwrap();
                    if r.status.success() {
                        t.0 += 1;
                    } else {
                        t.1.push(format!(
                            "{}: {}",
                            seg.display(),
                            String::from_utf8_lossy(&r.stderr).trim()
                        ));
                    }
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        }));
    }

    /// Polls the playlist and the segment directory every 50 ms.
    fn watch_playlist(&mut self) {
        let (pl, hls, stop, seen) = (
            self.playlist(),
            self.hls.clone(),
            self.stop.clone(),
            self.seen.clone(),
        );
        self.threads.push(std::thread::spawn(move || {
            let mut listed_now: Vec<String> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let now = Instant::now();
                if let Ok(text) = std::fs::read_to_string(&pl) {
                    let (segs, _) = parse(&text);
                    if !segs.is_empty() {
                        let total: f64 = segs.iter().map(|(_, d)| d).sum();
                        let mut s = seen.lock().unwrap();
                        for (name, d) in &segs {
                            let e = s.entry(name.clone()).or_default();
                            e.duration = *d;
                            e.listed.get_or_insert(now);
                        }
                        for name in &listed_now {
                            if !segs.iter().any(|(n, _)| n == name) {
                                let e = s.entry(name.clone()).or_default();
                                e.left.get_or_insert(now);
                                e.playlist = total.max(e.playlist);
                            }
                        }
                        listed_now = segs.into_iter().map(|(n, _)| n).collect();
                    }
                }
                {
                    let mut s = seen.lock().unwrap();
                    for (name, e) in s.iter_mut() {
                        if e.gone.is_none() && !hls.join(name).exists() {
                            e.gone = Some(now);
                            e.gone_while_listed = listed_now.contains(name);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }

    /// The recording nginx is writing now (the newest `.flv`).
    pub fn recording_in_progress(&self) -> Option<PathBuf> {
        std::fs::read_dir(&self.rec)
            .ok()?
            .flatten()
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .max()
            .map(|(_, p)| p)
    }

    /// The stack's own directory (for the logs of clients a test starts).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// nginx's log of the requests for `/dash/`: (time, status, URI, user agent), in the
    /// order served.
    pub fn dash_requests(&self) -> Vec<(f64, u16, String, String)> {
        let log = std::fs::read_to_string(self.dir.path().join("dash-access.log"));
        log.unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(4, ' ');
                let t = f.next()?.parse().ok()?;
                let status = f.next()?.parse().ok()?;
                let uri = f.next()?.to_string();
                let agent = f.next()?.trim_matches('"').to_string();
                Some((t, status, uri, agent))
            })
            .collect()
    }

    /// nginx's error log (for failure messages).
    pub fn nginx_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.players.iter_mut().chain(self.publisher.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // nginx's master stops its workers on SIGTERM (a killed master would leave them).
        if let Some(mut n) = self.nginx.take() {
            let pid = rustix::process::Pid::from_raw(n.id() as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(n.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = n.kill();
            let _ = n.wait();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The uid and gid of www-data (nginx's worker user on Debian).
fn www_data() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"www-data")).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .expect("user www-data exists (Debian's base-passwd)")
}
