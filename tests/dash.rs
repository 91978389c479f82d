//! DASH players never miss a fragment (issue 27): the real stack of tests/live_stack.rs
//! (nginx + libnginx-mod-rtmp + ffmpeg from Debian) with `dash on` and `dash_cleanup off`,
//! mediaretain cleaning the DASH directory at `keep_for = "0s"`, real DASH clients over HTTP
//! — ffmpeg's DASH demuxer, a client at the live edge and one that reads each fragment at
//! the end of its time-shift window — and the daemon restarted in the middle.

mod common;
use common::stack::Stack;
use common::*;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// nginx-rtmp's DASH settings for the stack: 1 s fragments, a 2 s MPD, and nginx never
/// deletes (so every deletion is mediaretain's). nginx's timeShiftBufferDepth is 4 x
/// dash_fragment + 1 s = 5 s: a fragment stays available about 3 s after it leaves the
/// MPD, longer than minimumUpdatePeriod (1 s) plus a fragment — only its availability end
/// keeps it that long (with the "left + minimumUpdatePeriod" rule alone, 66 of 158
/// requests of the clients below failed).
const NGINX_DASH: &str =
    "dash on; dash_path DASH; dash_fragment 1s; dash_playlist_length 2s; dash_cleanup off;";

/// As an operator writes it from the recipe, with a `keep_for` as short as the HLS one:
/// what the MPD names must be kept by the MPD, not by time. (The fragment nginx is writing,
/// `-raw.m4v`, is excluded as in the recipe; init segments are not: the MPD names them.)
const CLASSES: &str = "[[class]]\nname = \"dash\"\nstore = \"media\"\nmatch = [\"dash/**/*.m4v\", \"dash/**/*.m4a\"]\nexclude = [\"dash/**/*-raw.m4?\"]\nlifecycle = \"segment\"\nkeep_for = \"0s\"\nquiet_period = \"0s\"\n\n[[class]]\nname = \"hls\"\nstore = \"media\"\nmatch = [\"hls/**/*.ts\"]\nlifecycle = \"segment\"\nkeep_for = \"0s\"\nquiet_period = \"0s\"\n";

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One fragment an MPD named, with the end of its availability window (ISO/IEC 23009-1
/// §5.3.9.5.3), in seconds since the epoch.
#[derive(Debug, Clone)]
struct Frag {
    name: String,
    /// Available from the end of its media time, until its duration plus
    /// timeShiftBufferDepth later.
    until: f64,
}

/// What the test reads of an nginx-rtmp MPD (its own reading, independent of the daemon's).
#[derive(Debug, Default)]
struct Manifest {
    update: f64,
    /// Per representation: its init segment, and its fragments oldest first.
    reps: Vec<(String, Vec<Frag>)>,
}

fn attr<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let i = text.find(&key)? + key.len();
    Some(&text[i..i + text[i..].find('"')?])
}

fn secs(iso: &str) -> f64 {
    iso.trim_start_matches("PT")
        .trim_end_matches('S')
        .parse()
        .unwrap()
}

fn manifest(text: &str) -> Option<Manifest> {
    if !text.contains("</MPD>") {
        return None;
    }
    let ast = humantime::parse_rfc3339(attr(text, "availabilityStartTime")?).ok()?;
    let ast = ast
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let tsbd = secs(attr(text, "timeShiftBufferDepth")?);
    let mut m = Manifest {
        update: secs(attr(text, "minimumUpdatePeriod")?),
        reps: Vec::new(),
    };
    for rep in text.split("<Representation").skip(1) {
        let media = attr(rep, "media")?;
        let init = attr(rep, "initialization")?.to_string();
        let scale: f64 = attr(rep, "timescale")?.parse().ok()?;
        let mut frags = Vec::new();
        for s in rep.split("<S ").skip(1) {
            let t: u64 = attr(s, "t")?.parse().ok()?;
            let d: u64 = attr(s, "d")?.parse().ok()?;
            let from = ast + (t + d) as f64 / scale;
            frags.push(Frag {
                name: media.replace("$Time$", &t.to_string()),
                until: from + d as f64 / scale + tsbd,
            });
        }
        m.reps.push((init, frags));
    }
    Some(m)
}

/// GET `path` from nginx on `port` as client `who`: the status and the body.
fn get(port: u16, path: &str, who: &str) -> (u16, Vec<u8>) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: {who}\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |i| i + 4);
    let status = String::from_utf8_lossy(&out[..head_end.min(out.len())])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out[head_end..].to_vec())
}

/// What the clients saw: requests made, and those answered other than 200 while the
/// fragment was inside its availability window.
#[derive(Default)]
struct Requests {
    made: u64,
    bad: Vec<String>,
}

/// A client following the MPD: `lag` None is the live edge (the newest fragment of each
/// representation, at each reading); `Some(s)` reads every fragment it ever saw listed
/// `s` seconds before the end of its availability window (the start of the time-shift
/// window, as a DVR player scrubbed back).
fn client(
    who: &'static str,
    port: u16,
    lag: Option<f64>,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Requests>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut done: std::collections::HashSet<String> = Default::default();
        let mut queue: BTreeMap<(u64, String), Frag> = BTreeMap::new(); // by `until` (ms)
        let mut next_mpd = 0.0;
        while !stop.load(Ordering::SeqCst) {
            let now = wall();
            if now >= next_mpd {
                let (status, body) = get(port, "/dash/stream.mpd", who);
                let m = (status == 200)
                    .then(|| manifest(&String::from_utf8_lossy(&body)))
                    .flatten();
                if let Some(m) = m {
                    // A player reads the MPD again every minimumUpdatePeriod.
                    next_mpd = now + m.update;
                    for (init, frags) in &m.reps {
                        if done.insert(init.clone()) {
                            let (s, _) = get(port, &format!("/dash/{init}"), who);
                            let mut r = out.lock().unwrap();
                            r.made += 1;
                            if s != 200 {
                                r.bad.push(format!("{who}: {init} (listed) answered {s}"));
                            }
                        }
                        let pick: Vec<&Frag> = match lag {
                            None => frags.last().into_iter().collect(),
                            Some(_) => frags.iter().collect(),
                        };
                        for f in pick {
                            if !done.contains(&f.name) {
                                let key = ((f.until * 1000.0) as u64, f.name.clone());
                                queue.insert(key, f.clone());
                            }
                        }
                    }
                } else {
                    next_mpd = now + 0.2;
                }
            }
            let due: Vec<(u64, String)> = queue
                .iter()
                .filter(|(_, f)| match lag {
                    None => true,
                    Some(l) => now >= f.until - l,
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in due {
                let f = queue.remove(&k).unwrap();
                done.insert(f.name.clone());
                let asked = wall();
                if asked >= f.until {
                    continue; // out of its window: a player would not ask for it
                }
                let (s, _) = get(port, &format!("/dash/{}", f.name), who);
                let mut r = out.lock().unwrap();
                r.made += 1;
                if s != 200 {
                    r.bad.push(format!(
                        "{who}: {} answered {s} at {:.2} s before the end of its availability window",
                        f.name,
                        f.until - asked
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// What the MPD watcher saw of one file the MPD named.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// First seen named by the MPD (its file was there: nginx writes it first).
    listed: Option<f64>,
    until: f64,
    left: Option<f64>,
    gone: Option<f64>,
    gone_while_listed: bool,
}

/// Polls the MPD and the DASH directory every 50 ms: when each named file (fragment or
/// init) left the MPD and when it went from disk.
fn watcher(
    dash: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    update: Arc<Mutex<f64>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut listed: Vec<String> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let now = wall();
            let text = std::fs::read_to_string(dash.join("stream.mpd")).unwrap_or_default();
            if let Some(m) = manifest(&text) {
                *update.lock().unwrap() = m.update;
                let mut s = seen.lock().unwrap();
                let mut names = Vec::new();
                for (init, frags) in &m.reps {
                    let last = frags.iter().map(|f| f.until).fold(0.0, f64::max);
                    let e = s.entry(init.clone()).or_default();
                    e.until = e.until.max(last);
                    e.listed.get_or_insert(now);
                    names.push(init.clone());
                    for f in frags {
                        let e = s.entry(f.name.clone()).or_default();
                        e.until = f.until;
                        e.listed.get_or_insert(now);
                        names.push(f.name.clone());
                    }
                }
                for n in &listed {
                    if !names.contains(n) {
                        s.get_mut(n).unwrap().left.get_or_insert(now);
                    }
                }
                listed = names;
            }
            let mut s = seen.lock().unwrap();
            for (name, e) in s.iter_mut() {
                if e.gone.is_none() && !dash.join(name).exists() {
                    e.gone = Some(now);
                    e.gone_while_listed = listed.contains(name);
                }
            }
            drop(s);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

#[test]
fn dash_players_never_miss_a_fragment_and_the_directory_stays_bounded() {
    let b = Box_::new("gc_interval = \"1s\"", "", CLASSES);
    let dash_dir = b.media.join("dash");
    let extra = NGINX_DASH.replace("DASH", &dash_dir.display().to_string());
    let s = Stack::start_with(&b.media, &extra);
    let mpd = s.dash.join("stream.mpd");
    wait_for("nginx to write the MPD", Duration::from_secs(30), || {
        std::fs::read_to_string(&mpd)
            .is_ok_and(|t| manifest(&t).is_some_and(|m| !m.reps.is_empty()))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let requests: Arc<Mutex<Requests>> = Default::default();
    let seen: Arc<Mutex<HashMap<String, Seen>>> = Default::default();
    let update = Arc::new(Mutex::new(0.0));
    let mut threads = vec![
        watcher(s.dash.clone(), stop.clone(), seen.clone(), update.clone()),
        client(
            "live-edge client",
            s.http,
            None,
            stop.clone(),
            requests.clone(),
        ),
        // Each fragment asked for 0.5 s before its window ends: long after it left the MPD.
        client(
            "time-shift client",
            s.http,
            Some(0.5),
            stop.clone(),
            requests.clone(),
        ),
    ];
    let ffmpeg_log = s.dir().join("dash-player.log");
    let url = format!("http://127.0.0.1:{}/dash/stream.mpd", s.http);
    let mut ffmpeg = common::s3::spawn(
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
        &ffmpeg_log,
    );
    let d = b.daemon(None);
    std::thread::sleep(Duration::from_secs(20));
    // A restart in the middle: the new daemon has not seen what the MPD named a moment ago.
    let (_, log1) = d.stop();
    let d = b.daemon(None);
    std::thread::sleep(Duration::from_secs(10));
    // What `explain` says mid-stream (checked below, after what clients saw).
    let explained = b
        .cli(&["explain", "media:dash/stream-init.m4v", "--json"])
        .json();
    std::thread::sleep(Duration::from_secs(10));
    let (_, log2) = d.stop();
    stop.store(true, Ordering::SeqCst);
    for t in threads.drain(..) {
        t.join().unwrap();
    }
    let ffmpeg_alive = matches!(ffmpeg.try_wait(), Ok(None));
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let journal = format!("{log1}{log2}");

    // No client request inside a fragment's availability window got anything but 200.
    let r = requests.lock().unwrap();
    assert!(r.made >= 60, "{} requests made", r.made);
    assert!(
        r.bad.is_empty(),
        "{} of {} requests failed: {:#?}",
        r.bad.len(),
        r.made,
        r.bad
    );
    drop(r);
    // Every request nginx served (ffmpeg's DASH demuxer, libavformat/dashdec.c, included):
    // none for a file inside its availability window — from when the MPD first named it
    // until its availability end — was answered but 200. (ffmpeg asks for the fragment
    // after the last one before nginx has written it, and again until it is there: those
    // 404s are before the MPD named it, with or without mediaretain.)
    let seen = seen.lock().unwrap().clone();
    let served = s.dash_requests();
    let mut per_client: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut refused = Vec::new();
    for (t, status, uri, agent) in &served {
        let Some(name) = uri.strip_prefix("/dash/").filter(|n| !n.ends_with(".mpd")) else {
            continue;
        };
        let c = per_client.entry(agent.clone()).or_default();
        c.0 += 1;
        if *status != 200
            && let Some(e) = seen.get(name)
            && e.listed.is_some_and(|l| l <= *t)
            && *t < e.until - 0.1
        {
            c.1 += 1;
            refused.push(format!(
                "{agent}: {name} answered {status}, {:.2} s before the end of its availability window",
                e.until - t
            ));
        }
    }
    assert!(
        refused.is_empty(),
        "{refused:#?}\nper client (requests, refused in window): {per_client:?}"
    );
    let flog = std::fs::read_to_string(&ffmpeg_log).unwrap_or_default();
    let ffmpeg_requests = per_client
        .iter()
        .find(|(a, _)| a.starts_with("Lavf"))
        .map_or(0, |(_, c)| c.0);
    assert!(
        ffmpeg_requests >= 20,
        "ffmpeg's DASH demuxer: {per_client:?}\n{flog}"
    );
    assert!(ffmpeg_alive, "ffmpeg's DASH demuxer stopped:\n{flog}");

    // Never missing while named; never gone before the end of its availability window, nor
    // sooner than minimumUpdatePeriod after it left the MPD (the watcher polls every 50 ms).
    let update = *update.lock().unwrap();
    let mut deleted = 0;
    let mut bad = Vec::new();
    for (name, e) in &seen {
        if e.gone_while_listed {
            bad.push(format!("{name} missing while the MPD named it"));
        }
        let Some(gone) = e.gone else { continue };
        deleted += 1;
        if gone < e.until - 0.1 {
            bad.push(format!(
                "{name} gone {:.2} s before the end of its availability window",
                e.until - gone
            ));
        }
        if let Some(left) = e.left
            && gone < left + update - 0.1
        {
            bad.push(format!(
                "{name} gone {:.2} s after it left the MPD (minimumUpdatePeriod {update} s)",
                gone - left
            ));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}\n{journal}");
    assert!(
        deleted >= 40,
        "{deleted} fragments deleted: {seen:?}\n{journal}"
    );
    // Bounded: per track, the MPD's ≈2 fragments, ≈4 more within their window, the init
    // and the one being written — not the 80 fragments of 40 s.
    let files = std::fs::read_dir(&s.dash)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".m4v") || n.ends_with(".m4a")
        })
        .count();
    eprintln!(
        "requests per client (made, refused inside the window): {per_client:?}; {deleted} files deleted, {files} on disk at the end"
    );
    assert!(files <= 32, "{files} DASH files on disk");
    // `explain` names the MPD and the end of the availability window.
    let why = explained["in_use"].to_string();
    assert!(
        why.contains("listed by MPD dash/stream.mpd; available until ")
            && why.contains("§5.3.9.5.3"),
        "{explained}"
    );
    // Quiet: fragments kept by the MPD are the ordinary life of a stream, not news.
    let noise = journal.matches("refused to delete media:dash").count();
    assert_eq!(noise, 0, "{journal}");
    assert!(!journal.contains(" WARN "), "{journal}");
}

/// SRS's layout (`[app]/[stream].mpd`, fragments in `[stream]/` by its BaseURL,
/// `$RepresentationID$-$Number$.m4s`) and a one-shot `gc` — a process that never saw the
/// MPD before: what it names stays, a fragment that may have just left it keeps its window,
/// one that left long ago goes; `explain` (one-shot too) names the MPD.
#[test]
fn a_one_shot_gc_keeps_what_an_srs_mpd_names_and_what_just_left_it() {
    let classes = "[[class]]\nname = \"dash\"\nstore = \"media\"\nmatch = [\"**/*.m4s\", \"**/video-init.mp4\"]\nlifecycle = \"segment\"\nkeep_for = \"0s\"\nquiet_period = \"0s\"\n";
    let b = Box_::new("", "", classes);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Fragments 10..14 of 2 s, media time 90 s..100 s after an availability start 100 s
    // ago: fragment 10 is available until now + 4 s (92 + 2 + TSBD 10), 14 until now + 12 s.
    let ast = humantime::format_rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(now - 100));
    let mut mpd = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<MPD profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"dynamic\" minimumUpdatePeriod=\"PT2.000S\" timeShiftBufferDepth=\"PT10.000S\" availabilityStartTime=\"{ast}\" minBufferTime=\"PT4.000S\">\n    <BaseURL>livestream/</BaseURL>\n    <Period start=\"PT0S\">\n        <AdaptationSet mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n            <Representation id=\"video\" bandwidth=\"800000\" codecs=\"avc1.64001e\" width=\"320\" height=\"240\">\n                <SegmentTemplate initialization=\"$RepresentationID$-init.mp4\" media=\"$RepresentationID$-$Number$.m4s\" startNumber=\"10\" timescale=\"1000\">\n                    <SegmentTimeline>\n"
    );
    for k in 0..5 {
        mpd.push_str(&format!(
            "                        <S t=\"{}\" d=\"2000\" />\n",
            90_000 + 2000 * k
        ));
    }
    mpd.push_str("                    </SegmentTimeline>\n                </SegmentTemplate>\n            </Representation>\n        </AdaptationSet>\n    </Period>\n</MPD>\n");
    let old = Duration::from_secs(3600);
    b.file("live/livestream.mpd", 0, Duration::ZERO);
    std::fs::write(b.path("live/livestream.mpd"), mpd).unwrap();
    for k in 10..15 {
        b.file(
            &format!("live/livestream/video-{k}.m4s"),
            100,
            Duration::from_secs(2),
        );
    }
    b.file("live/livestream/video-init.mp4", 100, old);
    // Left the MPD a moment ago (written 12 s ago): still within its window.
    b.file("live/livestream/video-9.m4s", 100, Duration::from_secs(12));
    // Left long ago.
    b.file("live/livestream/video-1.m4s", 100, old);
    let gc = b.cli(&["gc"]);
    assert_eq!(gc.code, 0, "{}{}", gc.stdout, gc.stderr);
    assert!(
        !b.path("live/livestream/video-1.m4s").exists(),
        "{}",
        gc.stdout
    );
    for k in 9..15 {
        let p = b.path(&format!("live/livestream/video-{k}.m4s"));
        assert!(p.exists(), "video-{k}.m4s deleted: {}", gc.stdout);
    }
    assert!(b.path("live/livestream/video-init.mp4").exists());
    let x = b
        .cli(&["explain", "media:live/livestream/video-10.m4s", "--json"])
        .json();
    let why = x["in_use"].to_string();
    assert!(
        why.contains("listed by MPD live/livestream.mpd; available until "),
        "{x}"
    );
    let x = b
        .cli(&["explain", "media:live/livestream/video-9.m4s", "--json"])
        .json();
    assert!(
        x["in_use"]
            .to_string()
            .contains("left MPD live/livestream.mpd at "),
        "{x}"
    );
}
