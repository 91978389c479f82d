//! The webhook receiver (issue 13) with the real binary: each dialect's real payloads (field
//! names from nginx-rtmp's, SRS's, ZLMediaKit's and Owncast's sources), the answers each
//! server expects, and hostile events that must create nothing and delete nothing.

mod common;
use common::s3::{S3Server, free_port};
use common::users::user;
use common::*;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Posts `body` to `path` on the receiver the way a media server does (HTTP/1.0, the
/// connection closed after the answer); returns (status, body).
fn post(port: u16, path: &str, ctype: &str, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\nConnection: Close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// Classes whose quiet period is an hour: only a server's word can make a file complete.
const CLASSES: &str = "[[class]]\nname = \"rec\"\nstore = \"media\"\nmatch = [\"rec/**\", \"zlm/**\", \"srs/**\"]\nlifecycle = \"recording\"\nkeep_for = \"7d\"\nquiet_period = \"1h\"\n";

/// `[hooks]` on `port`; announced files are confirmed after one second (not the default
/// five) to keep the tests short.
fn hooks(port: u16, extra: &str) -> String {
    format!("\n[hooks]\nlisten = \"127.0.0.1:{port}\"\nconfirm = \"1s\"\n{extra}\n")
}

/// Waits until the announced `target` is marked complete (after its confirmation window).
fn complete(b: &Box_, target: &str) -> serde_json::Value {
    let mut x = serde_json::Value::Null;
    wait_for(
        &format!("{target} complete"),
        Duration::from_secs(10),
        || {
            x = explain(b, target);
            x["entry"]["complete"]
                .as_str()
                .is_some_and(|t| humantime::parse_rfc3339(t).is_ok())
        },
    );
    x
}

/// Posts `body` `n` times as Unix user `name` (python3 under setpriv, 16 posts at a time,
/// each on a connection of its own; `{i}` in the body becomes the post's number); returns
/// the statuses as "CODE:COUNT …".
fn post_as(name: &str, port: u16, path: &str, ctype: &str, body: &str, n: usize) -> String {
    const PY: &str = r#"
import socket, sys
from concurrent.futures import ThreadPoolExecutor
port, path, ctype, body, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def one(i):
    b = body.replace("{i}", str(i)).encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("POST %s HTTP/1.0\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (path, ctype, len(b))).encode() + b)
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
    s.close()
    return data.split(b" ")[1].decode() if data else "0"
codes = {}
with ThreadPoolExecutor(16) as pool:
    for code in pool.map(one, range(n)):
        codes[code] = codes.get(code, 0) + 1
print(" ".join("%s:%d" % kv for kv in sorted(codes.items())))
"#;
    let (uid, gid) = user(name);
    let out = std::process::Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--init-groups")
        .arg("--reset-env")
        .args(["/usr/bin/python3", "-c", PY])
        .arg(port.to_string())
        .args([path, ctype, body])
        .arg(n.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn explain(b: &Box_, target: &str) -> serde_json::Value {
    b.cli(&["explain", target, "--json"]).ok().json()
}

#[test]
fn each_dialect_announces_a_finished_recording_and_hostile_events_change_nothing() {
    let port = free_port();
    let b = Box_::new("", "", "");
    // SRS runs in a container: its paths are mapped onto the store's root.
    let map = format!(
        "[hooks.srs]\npaths = {{ \"/usr/local/srs/objs/nginx/html\" = \"{}\" }}\n",
        b.path("srs").display()
    );
    b.write_config("", "", &format!("{CLASSES}{}", hooks(port, &map)));
    b.file("rec/cam1-1714557600.flv", 5000, Duration::ZERO);
    b.file(
        "zlm/live/cam1/2024-05-01/10-00-00-0.mp4",
        7000,
        Duration::ZERO,
    );
    b.file(
        "srs/live/livestream.1420254068776.flv",
        3000,
        Duration::ZERO,
    );
    let d = b.daemon(None);

    // Fresh files: in use, still being written, by their quiet period.
    let x = explain(&b, "media:rec/cam1-1714557600.flv");
    assert!(
        x["summary"]
            .as_str()
            .unwrap()
            .contains("still being written"),
        "{x}"
    );

    // nginx-rtmp on_record_done; the publisher's own RTMP arguments come last and try to
    // name another file and another call: the module's own fields win.
    let rec = b.path("rec/cam1-1714557600.flv");
    let body = format!(
        "app=live&flashver=FMLE/3.0%20(compatible%3B%20FMSc/1.0)&swfurl=&tcurl=rtmp://127.0.0.1:1935/live&pageurl=&addr=127.0.0.1&clientid=7&call=record_done&recorder=&name=cam1&path={}&path=/etc/passwd&call=publish",
        rec.display()
    );
    let (st, answer) = post(port, "/hooks/nginx-rtmp", FORM, body.as_bytes());
    assert_eq!(st, 200, "{answer}");
    let x = complete(&b, "media:rec/cam1-1714557600.flv");
    let tags = x["entry"]["tags"].to_string();
    for t in ["app=live", "stream=cam1", "server=nginx-rtmp"] {
        assert!(tags.contains(t), "{t} in {x}");
    }
    let summary = x["summary"].as_str().unwrap();
    assert!(!summary.contains("still being written"), "{summary}");
    assert!(x["in_use"].as_array().unwrap().is_empty(), "{x}");

    // ZLMediaKit on_record_mp4 (the event named in the URL): {"code":0,"msg":"success"}.
    let zlm = b.path("zlm/live/cam1/2024-05-01/10-00-00-0.mp4");
    let body = format!(
        r#"{{
   "app" : "live",
   "file_name" : "10-00-00-0.mp4",
   "file_path" : "{}",
   "file_size" : 7000,
   "folder" : "{}/",
   "hook_index" : 12,
   "mediaServerId" : "your_server_id",
   "params" : "",
   "start_time" : 1714557600,
   "stream" : "cam1",
   "time_len" : 3600.04,
   "url" : "record/live/cam1/2024-05-01/10-00-00-0.mp4",
   "vhost" : "__defaultVhost__"
}}"#,
        zlm.display(),
        zlm.parent().unwrap().display()
    );
    let (st, answer) = post(
        port,
        "/hooks/zlmediakit/on_record_mp4",
        JSON,
        body.as_bytes(),
    );
    assert_eq!(
        (st, answer.as_str()),
        (200, r#"{"code":0,"msg":"success"}"#)
    );
    let x = explain(&b, "media:zlm/live/cam1/2024-05-01/10-00-00-0.mp4");
    assert!(
        x["entry"]["tags"].to_string().contains("duration=3600s"),
        "{x}"
    );
    // The same body without the event in the URL: refused, ZLMediaKit's way.
    let (st, answer) = post(port, "/hooks/zlmediakit", JSON, body.as_bytes());
    assert_eq!(st, 400, "{answer}");
    assert!(answer.contains(r#""code":-1"#), "{answer}");

    // SRS on_dvr: `file` relative to `cwd`, inside the container; {"code":0}.
    let body = r#"{"server_id":"vid-werty","service_id":"x","action":"on_dvr","client_id":"9308h583","ip":"192.168.1.10","vhost":"__defaultVhost__","app":"live","tcUrl":"rtmp://127.0.0.1/live","stream":"livestream","param":"?token=xxx","cwd":"/usr/local/srs","file":"./objs/nginx/html/live/livestream.1420254068776.flv","stream_url":"/live/livestream","stream_id":"vid-124q9y3"}"#;
    let (st, answer) = post(port, "/hooks/srs", JSON, body.as_bytes());
    assert_eq!((st, answer.as_str()), (200, r#"{"code":0}"#));
    let x = explain(&b, "media:srs/live/livestream.1420254068776.flv");
    assert!(x["entry"]["tags"].to_string().contains("server=srs"), "{x}");
    complete(&b, "media:srs/live/livestream.1420254068776.flv");
    complete(&b, "media:zlm/live/cam1/2024-05-01/10-00-00-0.mp4");

    // Owncast: stream events are acknowledged with 200 (they carry no path).
    let body = r#"{"type":"STREAM_STARTED","eventData":{"id":"id","name":"my server","streamTitle":"my stream","summary":"s","timestamp":"1970-01-01T00:01:12.000000006Z"}}"#;
    assert_eq!(post(port, "/hooks/owncast", JSON, body.as_bytes()).0, 200);

    // Hostile and malformed events: a clear 4xx, nothing registered, nothing deleted.
    let before = b.cli(&["ls", "--json"]).ok().json();
    let outside = "call=record_done&app=live&name=x&path=/etc/passwd";
    let (st, answer) = post(port, "/hooks/nginx-rtmp", FORM, outside.as_bytes());
    assert_eq!(st, 422, "{answer}");
    assert!(answer.contains("not inside any store root"), "{answer}");
    let dotdot = format!(
        "call=record_done&path={}/../../../etc/passwd",
        b.path("rec").display()
    );
    assert_eq!(
        post(port, "/hooks/nginx-rtmp", FORM, dotdot.as_bytes()).0,
        400
    );
    let missing = format!(
        "call=record_done&path={}",
        b.path("rec/nosuch.flv").display()
    );
    assert_eq!(
        post(port, "/hooks/nginx-rtmp", FORM, missing.as_bytes()).0,
        422
    );
    let link = b.path("rec/link.flv");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    let sym = format!("call=record_done&path={}", link.display());
    assert_eq!(
        post(port, "/hooks/nginx-rtmp", FORM, sym.as_bytes()).0,
        422,
        "a symlink is not a recording"
    );
    assert_eq!(post(port, "/hooks/nginx-rtmp", JSON, b"{}").0, 415);
    assert_eq!(post(port, "/hooks/srs", FORM, b"action=on_dvr").0, 415);
    assert_eq!(post(port, "/hooks/srs", JSON, b"{\"action\":").0, 400);
    assert_eq!(post(port, "/hooks/srs", JSON, b"[0]").0, 400);
    assert_eq!(post(port, "/hooks/nosuch", JSON, b"{}").0, 404);
    let huge = vec![b'a'; 1 << 20];
    assert_eq!(post(port, "/hooks/nginx-rtmp", FORM, &huge).0, 413);
    let after = b.cli(&["ls", "--json"]).ok().json();
    assert_eq!(before, after, "hostile events changed the registry");
    assert!(std::path::Path::new("/etc/passwd").exists());

    let (_, log) = d.stop();
    assert!(
        log.contains("nginx-rtmp says media:rec/cam1-1714557600.flv is complete"),
        "{log}"
    );
    assert!(log.contains("hook refused"), "{log}");
}

/// With a token, a hook must carry it as a path segment; a non-loopback listen address
/// without one is a config error.
#[test]
fn a_token_guards_the_receiver_and_a_public_address_needs_one() {
    let port = free_port();
    let b = Box_::new("", "", "");
    b.write_config(
        "",
        "",
        &format!(
            "{CLASSES}{}",
            hooks(0, "").replace("127.0.0.1:0", "0.0.0.0:8089")
        ),
    );
    let r = b.cli(&["check-config"]);
    assert_eq!(r.code, 78);
    assert!(
        r.stderr
            .contains("is not a loopback address: set hooks.token"),
        "{}",
        r.stderr
    );

    let token = "0123456789abcdef-token";
    b.write_config(
        "",
        "",
        &format!("{CLASSES}{}", hooks(port, &format!("token = \"{token}\""))),
    );
    b.file("rec/a.flv", 10, Duration::ZERO);
    let d = b.daemon(None);
    let body = format!("call=record_done&path={}", b.path("rec/a.flv").display());
    // Another local user, without the token or with a wrong one: refused.
    assert_eq!(
        post_as("mr-attacker", port, "/hooks/nginx-rtmp", FORM, &body, 1),
        "403:1"
    );
    assert_eq!(
        post_as(
            "mr-attacker",
            port,
            "/hooks/nginx-rtmp/wrong-token-0123456",
            FORM,
            &body,
            1
        ),
        "403:1"
    );
    // Root (who may read the token anyway) with a wrong token: no such endpoint.
    assert_eq!(
        post(
            port,
            "/hooks/nginx-rtmp/wrong-token-0123456",
            FORM,
            body.as_bytes()
        )
        .0,
        404
    );
    assert!(explain(&b, "media:rec/a.flv")["entry"]["complete"].is_null());
    let (st, a) = post(
        port,
        &format!("/hooks/nginx-rtmp/{token}"),
        FORM,
        body.as_bytes(),
    );
    assert_eq!(st, 200, "{a}");
    complete(&b, "media:rec/a.flv");
    // A server that puts the token before the dialect is understood, and nothing logs it.
    assert_eq!(
        post_as(
            "mr-attacker",
            port,
            &format!("/hooks/{token}/nginx-rtmp"),
            FORM,
            &body,
            1
        ),
        "200:1"
    );
    // The receiver's socket is bound at start: a reload may not move it or drop [hooks]
    // (the old socket would stay open under the new rules).
    let other = free_port();
    b.write_config("", "", &format!("{CLASSES}{}", hooks(other, "")));
    let r = b.cli(&["reload"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("[hooks] listen cannot change"),
        "{}",
        r.stderr
    );
    b.write_config("", "", CLASSES);
    assert!(
        b.cli(&["reload"])
            .stderr
            .contains("[hooks] listen cannot change")
    );
    // Still served, with the token of the running config.
    let (st, _) = post(
        port,
        &format!("/hooks/nginx-rtmp/{token}"),
        FORM,
        body.as_bytes(),
    );
    assert_eq!(st, 200);
    let (_, log) = d.stop();
    assert!(!log.contains(token), "the token was logged:\n{log}");
}

/// A finished recording of an offload class is offloaded within about a second of the
/// event — not after its quiet period (an hour) or `after` (an hour).
#[test]
fn an_announced_recording_is_offloaded_at_once() {
    let server = S3Server::moto();
    let port = free_port();
    let b = Box_::new("", "", "");
    let store = server.store_section(b.dir.path(), &server.endpoint, "box/");
    let class = "[[class]]\nname = \"rec\"\nstore = \"media\"\nmatch = [\"rec/**\"]\nlifecycle = \"recording\"\nquiet_period = \"1h\"\noffload = { to = \"archive\", after = \"1h\" }\n";
    b.write_config(
        "gc_interval = \"1h\"",
        &store,
        &format!("{class}{}", hooks(port, "")),
    );
    b.file("rec/cam1/2024-05-01.mp4", 100_000, Duration::ZERO);
    let d = b.daemon(None);
    let x = explain(&b, "media:rec/cam1/2024-05-01.mp4");
    assert!(x["entry"]["copy"].is_null(), "{x}");
    let body = format!(
        r#"{{"app":"live","file_name":"2024-05-01.mp4","file_path":"{}","file_size":100000,"stream":"cam1","time_len":60.0,"vhost":"__defaultVhost__"}}"#,
        b.path("rec/cam1/2024-05-01.mp4").display()
    );
    let sent = Instant::now();
    let (st, a) = post(
        port,
        "/hooks/zlmediakit/on_record_mp4",
        JSON,
        body.as_bytes(),
    );
    assert_eq!(st, 200, "{a}");
    wait_for("the copy", Duration::from_secs(10), || {
        explain(&b, "media:rec/cam1/2024-05-01.mp4")["entry"]["copy"].is_string()
    });
    let took = sent.elapsed();
    eprintln!("announced → offloaded and verified in {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    d.stop();
}

/// Stream events and live playlists: a stream its server says is live keeps its segments
/// listed even when its playlist looks stale (a muxer stalled on a slow disk), and one it
/// says stopped is retired at once — its segments go after the RFC 8216 grace (here 4 s),
/// not after the ten seconds of staleness plus grace it would otherwise take.
#[test]
fn stream_events_keep_a_live_playlist_alive_and_retire_a_stopped_one() {
    let port = free_port();
    let b = Box_::new("", "", "");
    let seg = "[[class]]\nname = \"hls\"\nstore = \"media\"\nmatch = [\"hls/**/*.ts\"]\nlifecycle = \"segment\"\nkeep_for = \"0s\"\nquiet_period = \"0s\"\n";
    let srs = "[hooks.srs]\nstore = \"media\"\nplaylists = [\"hls/{app}/{stream}.m3u8\"]\n";
    b.write_config(
        "gc_interval = \"1h\"",
        "",
        &format!("{seg}{}", hooks(port, srs)),
    );
    let playlist = |stream: &str, age: Duration| {
        let mut text = String::from(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:1\n",
        );
        for i in 1..=3 {
            b.file(
                &format!("hls/live/{stream}-{i}.ts"),
                100,
                Duration::from_secs(120),
            );
            text.push_str(&format!("#EXTINF:1.000,\n{stream}-{i}.ts\n"));
        }
        let p = b.path(&format!("hls/live/{stream}.m3u8"));
        std::fs::write(&p, text).unwrap();
        set_age(&p, age);
    };
    playlist("s1", Duration::ZERO);
    playlist("s2", Duration::ZERO);
    // s3 is a finished recording's playlist (VOD, with ENDLIST): viewers may still watch.
    playlist("s3", Duration::ZERO);
    let vod = b.path("hls/live/s3.m3u8");
    let mut text = std::fs::read_to_string(&vod).unwrap();
    text.push_str("#EXT-X-ENDLIST\n");
    std::fs::write(&vod, text).unwrap();
    let d = b.daemon(None);
    let event = |action: &str, stream: &str| {
        let body = format!(
            r#"{{"action":"{action}","client_id":"x","ip":"127.0.0.1","vhost":"__defaultVhost__","app":"live","stream":"{stream}","param":"","server_id":"s","stream_url":"/live/{stream}","stream_id":"y"}}"#
        );
        let (st, a) = post(port, "/hooks/srs", JSON, body.as_bytes());
        assert_eq!((st, a.as_str()), (200, r#"{"code":0}"#));
    };
    event("on_publish", "s1");
    // s4 is announced before its muxer wrote anything (a first publish); its playlist
    // comes later and must count as live too.
    event("on_publish", "s4");
    playlist("s4", Duration::ZERO);
    b.cli(&["scan"]).ok();
    // The muxers stall: their playlists now look a minute old, dead by their look alone.
    set_age(&b.path("hls/live/s1.m3u8"), Duration::from_secs(60));
    set_age(&b.path("hls/live/s4.m3u8"), Duration::from_secs(60));
    let stopped = Instant::now();
    event("on_unpublish", "s2");
    event("on_unpublish", "s3");
    let gc = || b.cli(&["gc"]).ok();
    gc();
    for i in 1..=3 {
        assert!(
            b.path(&format!("hls/live/s1-{i}.ts")).exists(),
            "a live stream's segment went"
        );
        assert!(
            b.path(&format!("hls/live/s2-{i}.ts")).exists(),
            "deleted within the grace"
        );
    }
    let x = explain(&b, "media:hls/live/s1-1.ts");
    assert!(
        x["in_use"].to_string().contains("referenced by playlist"),
        "{x}"
    );
    wait_for(
        "the stopped stream's segments to go",
        Duration::from_secs(20),
        || {
            gc();
            !b.path("hls/live/s2-1.ts").exists()
        },
    );
    let took = stopped.elapsed();
    eprintln!("stopped stream's segments freed {took:?} after the event");
    assert!(
        took < Duration::from_secs(10),
        "{took:?}: not retired by the event"
    );
    assert!(b.path("hls/live/s1-1.ts").exists());
    assert!(
        b.path("hls/live/s4-1.ts").exists(),
        "announced before its playlist"
    );
    assert!(
        b.path("hls/live/s3-1.ts").exists(),
        "a VOD playlist's segment went"
    );
    d.stop();
}

/// A drop-in (like a recipe in conf.d/) brings its server's `[hooks.<dialect>]` mapping
/// along with its store and class; the listener stays the main file's. Before, a drop-in
/// could not say how its server's events map onto its store.
#[test]
fn a_drop_in_maps_its_servers_events_and_may_not_move_the_listener() {
    let port = free_port();
    let b = Box_::new("", "", "");
    b.write_config("", "", &hooks(port, ""));
    let d = b.dir.path().join("conf.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::create_dir_all(b.dir.path().join("srs")).unwrap();
    let drop_in = "[[store]]\nname = \"srs\"\nkind = \"local\"\nroot = \"../srs\"\n\n[[class]]\nname = \"srs-dvr\"\nstore = \"srs\"\nmatch = [\"**/*.flv\"]\nlifecycle = \"recording\"\nkeep_for = \"7d\"\nquiet_period = \"1h\"\n\n[hooks.srs]\nstore = \"srs\"\npaths = { \"/usr/local/srs/objs/nginx/html\" = \"../srs\" }\n";
    std::fs::write(d.join("50-srs.toml"), drop_in).unwrap();
    b.cli(&["check-config"]).ok();
    std::fs::create_dir_all(b.dir.path().join("srs/live")).unwrap();
    std::fs::write(b.dir.path().join("srs/live/cam.1.flv"), vec![7u8; 4000]).unwrap();
    let daemon = b.daemon(None);
    let body = r#"{"action":"on_dvr","app":"live","stream":"cam","cwd":"/usr/local/srs","file":"./objs/nginx/html/live/cam.1.flv"}"#;
    let (st, answer) = post(port, "/hooks/srs", JSON, body.as_bytes());
    assert_eq!((st, answer.as_str()), (200, r#"{"code":0}"#));
    let x = explain(&b, "srs:live/cam.1.flv");
    assert!(x["entry"]["tags"].to_string().contains("server=srs"), "{x}");
    drop(daemon);

    // The listener is the main file's: a drop-in's `listen` is refused at its line; the
    // same dialect mapped twice names both places.
    std::fs::write(
        d.join("60-more.toml"),
        "[hooks]\nlisten = \"0.0.0.0:1\"\n\n[hooks.srs]\nstore = \"srs\"\n",
    )
    .unwrap();
    let r = b.cli(&["check-config"]);
    assert_eq!(r.code, 78, "{}", r.stderr);
    let more = d.join("60-more.toml").display().to_string();
    let srs = d.join("50-srs.toml").display().to_string();
    assert!(
        r.stderr.contains(&format!(
            "{more}:2:10: hooks.listen and hooks.token belong in the main config file"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "{more}:4:1: [hooks.srs] is defined twice: first at {srs}:"
        )),
        "{}",
        r.stderr
    );
    // Without a listener in the main file, a drop-in's mapping is checked and inert.
    std::fs::remove_file(d.join("60-more.toml")).unwrap();
    b.write_config("", "", "");
    b.cli(&["check-config"]).ok();
}

/// Without a token, a hook is believed only from a loopback socket owned by root or a user
/// of `allow_users` (the kernel's `/proc/net/tcp` says whose). Another local user's posts
/// are refused — a forged `on_dvr` tags and completes nothing, 1,100 `on_publish` with
/// new stream names (more than the 1,000 stream states kept) evict nothing: the real
/// server's live stream keeps its stale playlist's segments — and the refusals are one
/// line and a count, not a line each. A token posted where the dialect goes is not
/// logged. Before: every post was 200 (a loopback peer was trusted).
#[test]
fn another_local_user_cannot_post_hooks_nor_evict_a_servers_stream_states() {
    let port = free_port();
    let b = Box_::new("", "", "");
    let seg = "[[class]]\nname = \"hls\"\nstore = \"media\"\nmatch = [\"hls/**/*.ts\"]\nlifecycle = \"segment\"\nkeep_for = \"0s\"\nquiet_period = \"0s\"\n";
    let srs = "allow_users = [\"mr-member\"]\n[hooks.srs]\nstore = \"media\"\nplaylists = [\"hls/{app}/{stream}.m3u8\"]\n";
    user("mr-member");
    b.write_config(
        "gc_interval = \"1h\"",
        "",
        &format!("{seg}{CLASSES}{}", hooks(port, srs)),
    );
    let mut text = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:1\n",
    );
    for i in 1..=3 {
        b.file(
            &format!("hls/live/s1-{i}.ts"),
            100,
            Duration::from_secs(120),
        );
        text.push_str(&format!("#EXTINF:1.000,\ns1-{i}.ts\n"));
    }
    std::fs::write(b.path("hls/live/s1.m3u8"), text).unwrap();
    b.file("srs/live/cam.1.flv", 3000, Duration::ZERO);
    let d = b.daemon(None);
    let event = |action: &str, stream: &str| {
        format!(
            r#"{{"action":"{action}","client_id":"x","ip":"127.0.0.1","vhost":"__defaultVhost__","app":"live","stream":"{stream}","param":"","server_id":"s","stream_url":"/live/{stream}","stream_id":"y"}}"#
        )
    };
    // The real server (root here) says s1 is live.
    let (st, a) = post(
        port,
        "/hooks/srs",
        JSON,
        event("on_publish", "s1").as_bytes(),
    );
    assert_eq!((st, a.as_str()), (200, r#"{"code":0}"#));
    b.cli(&["scan"]).ok();

    // Another local user forges a finished recording: refused, nothing tagged or complete.
    let dvr = format!(
        r#"{{"action":"on_dvr","app":"live","stream":"cam","cwd":"/","file":"{}"}}"#,
        b.path("srs/live/cam.1.flv").display()
    );
    assert_eq!(
        post_as("mr-attacker", port, "/hooks/srs", JSON, &dvr, 1),
        "403:1"
    );
    let x = explain(&b, "media:srs/live/cam.1.flv");
    assert!(x["entry"]["complete"].is_null(), "{x}");
    assert!(
        !x["entry"]["tags"].to_string().contains("server=srs"),
        "{x}"
    );

    // …and floods stream events with new names.
    let flood = Instant::now();
    let codes = post_as(
        "mr-attacker",
        port,
        "/hooks/srs",
        JSON,
        &event("on_publish", "junk{i}"),
        1100,
    );
    eprintln!("1,100 unauthenticated posts in {:?}", flood.elapsed());
    assert_eq!(codes, "403:1100");
    // A user of allow_users is believed.
    assert_eq!(
        post_as(
            "mr-member",
            port,
            "/hooks/srs",
            JSON,
            &event("on_publish", "s2"),
            1
        ),
        "200:1"
    );

    // s1's muxer stalls: its playlist looks a minute old, dead by its look alone; its
    // server's word (live) still holds.
    set_age(&b.path("hls/live/s1.m3u8"), Duration::from_secs(60));
    b.cli(&["gc"]).ok();
    for i in 1..=3 {
        assert!(
            b.path(&format!("hls/live/s1-{i}.ts")).exists(),
            "the live stream's segment went: its state was evicted"
        );
    }

    // A server posting a token where the dialect goes, with no token configured: a 404
    // that does not show it.
    let secret = "s3cr3t-t0ken-0123456789";
    let (st, a) = post(
        port,
        &format!("/hooks/{secret}/srs"),
        JSON,
        event("on_publish", "s1").as_bytes(),
    );
    assert_eq!(st, 404, "{a}");
    assert!(!a.contains(secret), "{a}");

    let (_, log) = d.stop();
    assert!(!log.contains(secret), "the token was logged:\n{log}");
    let refusals = log
        .lines()
        .filter(|l| l.contains("hook refused") && l.contains("without the token"))
        .count();
    assert_eq!(refusals, 1, "a line per refusal:\n{log}");
    assert!(log.contains("more refusals are counted"), "{log}");
}

/// The issue's scenario: a recorder opens, appends 256 KiB and closes its recording every
/// 3 s; a trusted server's (root's) `record_done` arrives 0.2 s after each append. A claim
/// is believed only once the file stayed unchanged for `confirm` (5 s, the default) after
/// the latest claim: the recording is not offloaded nor deleted while it grows, and the
/// class's `after` (1 h) and quiet period (30 s) are not skipped; a second recording
/// written again after its only claim is not marked complete at all. Once the first stops
/// growing, its last claim is confirmed and the whole recording is offloaded as one object.
/// Before: each claim offloaded and deleted the file within a second (the recording split).
#[test]
fn a_claim_of_complete_for_a_growing_recording_is_not_believed() {
    let server = S3Server::moto();
    let port = free_port();
    let b = Box_::new("", "", "");
    let store = server.store_section(b.dir.path(), &server.endpoint, "box/");
    let class = "[[class]]\nname = \"rec\"\nstore = \"media\"\nmatch = [\"rec/**\"]\nlifecycle = \"recording\"\nquiet_period = \"30s\"\noffload = { to = \"archive\", after = \"1h\", delete_local = true }\n";
    b.write_config(
        "gc_interval = \"1h\"",
        &store,
        &format!("{class}\n[hooks]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    std::fs::create_dir_all(b.path("rec")).unwrap();
    let rec = b.path("rec/cam1.flv");
    let d = b.daemon(None);
    let body = format!("call=record_done&app=live&name=cam1&path={}", rec.display());
    let other = b.path("rec/cam2.flv");
    let other_body = format!(
        "call=record_done&app=live&name=cam2&path={}",
        other.display()
    );
    const CHUNK: usize = 256 * 1024;
    const APPENDS: usize = 4;
    let mut last = Instant::now();
    for i in 0..APPENDS {
        let started = Instant::now();
        last = started;
        {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&rec)
                .unwrap();
            f.write_all(&vec![i as u8; CHUNK]).unwrap();
        }
        // A second recording is announced once, then written again within the window.
        if i < 2 {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&other)
                .unwrap();
            f.write_all(&vec![i as u8; CHUNK]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        let (st, a) = post(port, "/hooks/nginx-rtmp", FORM, body.as_bytes());
        assert_eq!(st, 200, "{a}");
        if i == 0 {
            assert_eq!(
                post(port, "/hooks/nginx-rtmp", FORM, other_body.as_bytes()).0,
                200
            );
        }
        std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    }
    let size = std::fs::metadata(&rec).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        size,
        (APPENDS * CHUNK) as u64,
        "the recording was split: offloaded and deleted while it grew"
    );
    let x = explain(&b, "media:rec/cam1.flv");
    assert!(x["entry"]["copy"].is_null(), "{x}");
    assert!(x["entry"]["complete"].is_null(), "{x}");
    // The second one changed within its window after its only claim: the claim is dropped.
    let x = explain(&b, "media:rec/cam2.flv");
    assert!(x["entry"]["complete"].is_null(), "{x}");
    assert!(x["entry"]["copy"].is_null(), "{x}");
    assert_eq!(std::fs::metadata(&other).unwrap().len(), 2 * CHUNK as u64);

    // It stopped growing: the last word (0.2 s after the last append) is confirmed 5 s
    // later, and the whole recording goes to the archive in one piece.
    wait_for("the copy", Duration::from_secs(20), || {
        explain(&b, "media:rec/cam1.flv")["entry"]["copy"].is_string() || !rec.exists()
    });
    let took = last.elapsed();
    assert!(
        took >= Duration::from_millis(5200),
        "offloaded {took:?} after the last append"
    );
    let (_, log) = d.stop();
    assert!(log.contains("still being written"), "{log}");
    let offloads: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("offloaded media:rec/cam1.flv"))
        .collect();
    assert_eq!(offloads.len(), 1, "{log}");
    assert!(
        offloads[0].contains(&format!("bytes={}", APPENDS * CHUNK)),
        "{}",
        offloads[0]
    );
    eprintln!("last append → offloaded in {took:?}");
}

/// A stream's stop (here forged by a trusted server while the muxer goes on for a moment)
/// never gives a segment less than its RFC 8216 §6.2.2 grace — its duration plus the
/// playlist's, 4 + 8 = 12 s — from the last playlist that listed it (written 1.5 s after
/// the stop). Before: the grace ran from the stop, 10.5 s after that playlist.
#[test]
fn a_stream_stop_never_shortens_a_segments_grace() {
    let port = free_port();
    let b = Box_::new("", "", "");
    let seg = "[[class]]\nname = \"hls\"\nstore = \"media\"\nmatch = [\"hls/**/*.ts\"]\nlifecycle = \"segment\"\nkeep_for = \"0s\"\nquiet_period = \"0s\"\n";
    let srs = "[hooks.srs]\nstore = \"media\"\nplaylists = [\"hls/{app}/{stream}.m3u8\"]\n";
    b.write_config(
        "gc_interval = \"1h\"",
        "",
        &format!("{seg}{}", hooks(port, srs)),
    );
    let mut text = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:1\n",
    );
    for i in 1..=2 {
        b.file(
            &format!("hls/live/s1-{i}.ts"),
            100,
            Duration::from_secs(120),
        );
        text.push_str(&format!("#EXTINF:4.000,\ns1-{i}.ts\n"));
    }
    let pl = b.path("hls/live/s1.m3u8");
    std::fs::write(&pl, &text).unwrap();
    let d = b.daemon(None);
    let event = |action: &str| {
        let body = format!(
            r#"{{"action":"{action}","app":"live","stream":"s1","client_id":"x","vhost":"__defaultVhost__"}}"#
        );
        assert_eq!(post(port, "/hooks/srs", JSON, body.as_bytes()).0, 200);
    };
    event("on_publish");
    b.cli(&["scan"]).ok();
    b.cli(&["gc"]).ok();
    event("on_unpublish");
    std::thread::sleep(Duration::from_millis(1500));
    // The muxer writes the playlist once more (a renamed new version, as muxers do).
    let tmp = b.path("hls/live/s1.m3u8.tmp");
    std::fs::write(&tmp, &text).unwrap();
    std::fs::rename(&tmp, &pl).unwrap();
    let written = std::fs::metadata(&pl).unwrap().modified().unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while b.path("hls/live/s1-1.ts").exists() && Instant::now() < until {
        b.cli(&["gc"]).ok();
        std::thread::sleep(Duration::from_millis(200));
    }
    // When it was deleted, by the audit.
    let x = explain(&b, "media:hls/live/s1-1.ts");
    d.stop();
    let deleted = x["history"]
        .as_array()
        .and_then(|h| h.iter().find(|r| r["outcome"] == "deleted"))
        .and_then(|r| humantime::parse_rfc3339(r["at"].as_str()?).ok())
        .unwrap_or_else(|| panic!("the stopped stream's segment was never deleted: {x}"));
    let gone = deleted.duration_since(written).unwrap();
    eprintln!("segment deleted {gone:?} after the last playlist listing it (grace 12 s)");
    assert!(
        gone >= Duration::from_secs(12),
        "deleted {gone:?} after the last playlist listing it: less than its 12 s grace"
    );
}
