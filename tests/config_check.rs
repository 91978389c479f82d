//! `check-config` and config loading: every example parses; every kind of bad input gets
//! FILE:LINE:COL and exit 78.

mod common;
use common::*;

use std::path::Path;

#[test]
fn every_example_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p).unwrap();
            // Roots like /srv/recordings need not exist on the test machine.
            let cfg = mediaretain::config::Config::parse_with(&p, &text, false)
                .unwrap_or_else(|e| panic!("{} does not parse:\n{e}", p.display()));
            assert!(
                !cfg.stores.is_empty() && !cfg.classes.is_empty(),
                "{}",
                p.display()
            );
            n += 1;
        }
    }
    assert!(n >= 3, "expected the example configs in config/");
}

/// The server recipes in config/recipes/: conf.d drop-ins with `[[store]]`, `[[class]]` and
/// `[hooks.<dialect>]` tables only, no `[daemon]`.
const RECIPES: [&str; 5] = ["nginx-rtmp", "srs", "zlmediakit", "owncast", "azuracast"];

/// The smallest main config the recipes are dropped in beside.
const RECIPE_DAEMON: &str = "[daemon]\nstate_dir = \"/var/lib/mediaretain\"\n\n";

/// The recipes `names` as drop-ins of a minimal main config (with a webhook listener when
/// `listen`), without file-system checks: store roots are servers' directories, absent here.
fn with_recipes(
    names: &[&str],
    listen: bool,
) -> Result<mediaretain::config::Config, mediaretain::config::ConfigError> {
    let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mediaretain.toml");
    let mut text = RECIPE_DAEMON.to_string();
    if listen {
        text.push_str("[hooks]\nlisten = \"127.0.0.1:8089\"\n");
    }
    let drop_ins: Vec<_> = names.iter().map(|n| recipe_text(n)).collect();
    mediaretain::config::Config::parse_all(&main, &text, &drop_ins, false)
}

fn recipe_text(name: &str) -> (std::path::PathBuf, String) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("config/recipes/{name}.toml"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, text)
}

#[test]
fn every_recipe_parses_as_a_drop_in() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/recipes");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed = RECIPES.map(String::from).to_vec();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "a recipe in config/recipes/ that this test does not cover"
    );
    for name in RECIPES {
        let (_, text) = recipe_text(name);
        // A drop-in: the daemon section belongs to the main config.
        let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        keys.sort();
        keys.retain(|k| *k != "hooks");
        assert_eq!(
            keys,
            ["class", "store"],
            "{name}: only [[store]], [[class]] and [hooks.<dialect>]"
        );
        // Webhooks off (no listener in the main file): the recipe's mapping is only checked.
        let cfg =
            with_recipes(&[name], false).unwrap_or_else(|e| panic!("{name} does not parse:\n{e}"));
        assert!(cfg.hooks.is_none());
        // With a listener, its dialect's events map onto the recipe's own store.
        let on = with_recipes(&[name], true).unwrap_or_else(|e| panic!("{name}: {e}"));
        let hooks = on.hooks.as_ref().unwrap();
        for (d, server) in &hooks.servers {
            assert!(
                d.name() == name && server.store.as_deref() == Some(name),
                "{name}: [hooks.{}] maps onto {:?}",
                d.name(),
                server.store
            );
        }
        assert!(!cfg.stores.is_empty() && !cfg.classes.is_empty(), "{name}");
        for s in &cfg.stores {
            assert!(
                s.name.starts_with(name),
                "{name}: store {:?} lacks the prefix",
                s.name
            );
        }
        for c in &cfg.classes {
            assert!(
                c.name.starts_with(name),
                "{name}: class {:?} lacks the prefix",
                c.name
            );
        }
    }
}

#[test]
fn all_recipes_together_parse() {
    // Every recipe dropped into one conf.d at once: no store or class name twice, no
    // nested store roots.
    let cfg = with_recipes(&RECIPES, true)
        .unwrap_or_else(|e| panic!("the recipes together do not parse:\n{e}"));
    assert_eq!(cfg.stores.len(), RECIPES.len());
    // Four servers with webhooks (AzuraCast has none), one mapping each.
    assert_eq!(cfg.hooks.as_ref().unwrap().servers.len(), 4);
}

/// A path relative to a store root and the class that must own it (None: no class).
type Expect = (&'static str, Option<&'static str>);

#[test]
fn recipes_classify_each_servers_default_layout() {
    // Paths each server writes with its default configuration (the recipes' header
    // comments cite where each comes from) and the class that must own them; None: a file
    // the recipe must never touch.
    let cases: &[(&str, &[Expect])] = &[
        (
            "nginx-rtmp",
            &[
                ("hls/cam1.m3u8", None),
                ("hls/cam1.m3u8.bak", Some("nginx-rtmp-playlist-leftovers")),
                ("hls/cam1-17.ts", Some("nginx-rtmp-hls")),
                ("hls/cam1/17.ts", Some("nginx-rtmp-hls")),
                ("dash/cam1.mpd", None),
                ("dash/cam1-init.m4v", Some("nginx-rtmp-dash")),
                ("dash/cam1-raw.m4a", None),
                ("dash/cam1-120000.m4v", Some("nginx-rtmp-dash")),
                ("dash/cam1/index.mpd", None),
                ("dash/cam1/init.m4a", Some("nginx-rtmp-dash")),
                ("dash/cam1/raw.m4v", None),
                ("dash/cam1/120000.m4v", Some("nginx-rtmp-dash")),
                ("rec/cam1-1700000000.flv", Some("nginx-rtmp-recordings")),
            ],
        ),
        (
            "srs",
            &[
                ("live/livestream.m3u8", None),
                ("live/livestream.m3u8.temp", Some("srs-segment-partials")),
                ("live/livestream-12.ts", Some("srs-hls")),
                ("live/livestream-13.ts.tmp", Some("srs-segment-partials")),
                ("live/livestream/video-3.m4s", Some("srs-dash")),
                ("live/livestream/video-init.mp4", Some("srs-dash")),
                ("live/livestream.mpd", None),
                ("live/livestream.1420254068776.flv", Some("srs-dvr")),
                (
                    "live/livestream.1420254068776.flv.tmp",
                    Some("srs-dvr-partials"),
                ),
                ("players/srs_player.html", None),
                ("console/ng_index.html", None),
                ("index.html", None),
            ],
        ),
        (
            "zlmediakit",
            &[
                (
                    "record/live/cam1/2024-05-01/2024-05-01-10-00-00-0.mp4",
                    Some("zlmediakit-mp4"),
                ),
                (
                    "record/live/cam1/2024-05-01/.2024-05-01-11-00-00-1.mp4",
                    Some("zlmediakit-mp4-writing"),
                ),
                (
                    "__defaultVhost__/record/live/cam1/2024-05-01/2024-05-01-10-00-00-0.mp4",
                    Some("zlmediakit-mp4"),
                ),
                ("live/cam1/hls.m3u8", None),
                ("live/cam1/2024-05-01/10/00-02_7.ts", Some("zlmediakit-hls")),
                ("live/cam1/2024-05-01/10/vod.m3u8", None),
                (
                    "snap/0123abcd/1714557600.jpeg",
                    Some("zlmediakit-snapshots"),
                ),
                (
                    "snap/0123abcd/1714557600.jpeg.tmp",
                    Some("zlmediakit-snap-partials"),
                ),
                ("index.html", None),
                ("webrtc/index.html", None),
            ],
        ),
        (
            "owncast",
            &[
                ("hls/stream.m3u8", None),
                ("hls/0/stream.m3u8", None),
                ("hls/0/stream-abc123-42.ts", Some("owncast-hls")),
                ("owncast.db", None),
                ("backup/owncastdb.bak", None),
                ("tmp/tempthumbnail.jpg", Some("owncast-thumbnail-partials")),
                ("tmp/thumbnail.jpg", None),
            ],
        ),
        (
            "azuracast",
            &[
                ("radio/media/song.mp3", None),
                (
                    "radio/temp/dj1/stream_20240501-100000.mp3.tmp",
                    Some("azuracast-live-partials"),
                ),
                // Finished, waiting for AzuraCast to move it: the only copy.
                ("radio/temp/dj1/stream_20240501-100000.mp3", None),
                (
                    "radio/recordings/dj1/stream_20240501-100000.mp3",
                    Some("azuracast-recordings"),
                ),
                ("radio/hls/live.m3u8", None),
                (
                    "radio/hls/aac_hifi_4_1714557600_3.aac",
                    Some("azuracast-hls"),
                ),
            ],
        ),
    ];
    for (name, paths) in cases {
        let cfg =
            with_recipes(&[name], false).unwrap_or_else(|e| panic!("{name} does not parse:\n{e}"));
        let classes = mediaretain::classify::Classifier::new(&cfg).unwrap();
        for (rel, want) in *paths {
            assert_eq!(
                classes.classify(name, Path::new(rel)),
                *want,
                "{name}: {rel}"
            );
        }
    }
}

#[test]
fn recipes_name_the_stream_of_each_servers_recordings() {
    // (recipe, path, the stream it belongs to, None: no stream). A writer's temporary name
    // (SRS's NAME.tmp) counts for the stream of its final name.
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("nginx-rtmp", "rec/cam1-1700000000.flv", Some("cam1")),
        ("nginx-rtmp", "rec/cam-2-1700000000.flv", Some("cam-2")),
        ("nginx-rtmp", "rec/cam1.flv", Some("cam1")),
        ("nginx-rtmp", "hls/cam1-17.ts", None),
        (
            "srs",
            "live/livestream.1420254068776.flv",
            Some("live/livestream"),
        ),
        (
            "srs",
            "live/livestream.1420254068776.flv.tmp",
            Some("live/livestream"),
        ),
        ("srs", "live/livestream-12.ts", None),
        (
            "zlmediakit",
            "record/live/cam1/2024-05-01/.2024-05-01-11-00-00-1.mp4",
            Some("live/cam1"),
        ),
        (
            "zlmediakit",
            "__defaultVhost__/record/live/cam1/2024-05-01/.2024-05-01-11-00-00-1.mp4",
            Some("live/cam1"),
        ),
        ("zlmediakit", "live/cam1/2024-05-01/10/00-02_7.ts", None),
    ];
    for (name, rel, want) in cases {
        let cfg =
            with_recipes(&[name], false).unwrap_or_else(|e| panic!("{name} does not parse:\n{e}"));
        let classes = mediaretain::classify::Classifier::new(&cfg).unwrap();
        let got = mediaretain::inuse::streams::stream_of(&cfg, &classes, name, Path::new(rel))
            .map(|(_, s)| s);
        assert_eq!(got.as_deref(), *want, "{name}: {rel}");
    }
}

#[test]
fn demo_config_passes_check_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join("target/demo/media")).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(root.join("config/demo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 store, 3 classes"));
}

/// Writes `text` as the config and returns check-config's (exit code, stderr).
fn check(text: &str) -> (i32, String) {
    let b = Box_::new("", "", "");
    std::fs::write(&b.config, text).unwrap();
    let r = b.cli(&["check-config"]);
    assert!(r.stdout.is_empty() || r.code == 0);
    (
        r.code,
        r.stderr.replace(&b.config.display().to_string(), "CONFIG"),
    )
}

const GOOD_HEAD: &str = "[daemon]\nstate_dir = \"state\"\n\n[[store]]\nname = \"media\"\nkind = \"local\"\nroot = \"media\"\n";

#[test]
fn bad_configs_name_file_line_and_column() {
    let cases: &[(&str, &str)] = &[
        // malformed TOML
        ("[daemon\nstate_dir = 1\n", "CONFIG:1:"),
        // unknown key, at its line
        (
            &format!("{GOOD_HEAD}colour = \"blue\"\n"),
            "CONFIG:8:1: unknown field `colour`",
        ),
        // bad unit
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"t\"\nstore = \"media\"\nmatch = [\"tmp/**\"]\nlifecycle = \"temporary\"\nttl = \"30 fortnights\"\n"
            ),
            "CONFIG:13:7: invalid duration \"30 fortnights\"",
        ),
        // unknown store, pointing at the value
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"t\"\nstore = \"nas\"\nmatch = [\"tmp/**\"]\nlifecycle = \"temporary\"\nttl = \"1h\"\n"
            ),
            "CONFIG:10:9: class \"t\": unknown store \"nas\" (stores: media)",
        ),
        // root that is not a directory (one that does not exist yet is not an error: the
        // daemon picks it up when it appears, tests/missing_root.rs)
        (
            "[daemon]\nstate_dir = \"state\"\n[[store]]\nname = \"m\"\nkind = \"local\"\nroot = \"/dev/null\"\n",
            "CONFIG:6:8: store \"m\": root /dev/null is not a directory",
        ),
        // typos: did you mean (issue 15)
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"t\"\nstore = \"media\"\nmatch = [\"tmp/**\"]\nlifecycle = \"temporary\"\nttl = \"1h\"\nquiet_perod = \"1s\"\n"
            ),
            "CONFIG:14:1: unknown field `quiet_perod`, expected one of `name`, `store`, `match`, `exclude`, `lifecycle`, `ttl`, `keep_for`, `max_count`, `max_total`, `age_from`, `quiet_period`, `protect_playlist_refs`, `part_suffixes`, `min_keep`, `pressure_priority`, `offload`, `stream`, `dedupe`; did you mean `quiet_period`?",
        ),
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"t\"\nstore = \"media\"\nmatch = [\"tmp/**\"]\nlifecycle = \"temporray\"\nttl = \"1h\"\n"
            ),
            "did you mean `temporary`?",
        ),
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"t\"\nstore = \"mdia\"\nmatch = [\"tmp/**\"]\nlifecycle = \"temporary\"\nttl = \"1h\"\n"
            ),
            "CONFIG:10:9: class \"t\": unknown store \"mdia\"; did you mean \"media\"? (stores: media)",
        ),
        // empty match, bad glob
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"t\"\nstore = \"media\"\nmatch = []\nlifecycle = \"temporary\"\nttl = \"1h\"\n"
            ),
            "CONFIG:11:9: class \"t\": match must list at least one glob",
        ),
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"t\"\nstore = \"media\"\nmatch = [\"tmp/[a\"]\nlifecycle = \"temporary\"\nttl = \"1h\"\n"
            ),
            "class \"t\": bad glob \"tmp/[a\"",
        ),
        // temporary without ttl
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"t\"\nstore = \"media\"\nmatch = [\"x\"]\nlifecycle = \"temporary\"\n"
            ),
            "lifecycle \"temporary\" needs ttl",
        ),
        // watermarks
        (
            &format!("{GOOD_HEAD}[watchdog]\nhigh = \"80%\"\nlow = \"85%\"\n"),
            "watchdog: low (85%) must be below high (80%)",
        ),
        (
            &format!("{GOOD_HEAD}[watchdog]\nhigh = \"180%\"\n"),
            "CONFIG:9:8: percentage \"180%\" must be between 0% and 100%",
        ),
        // a per-volume override inherits [watchdog] and is checked after inheriting
        (
            &format!(
                "{GOOD_HEAD}[watchdog]\nhigh = \"90%\"\n\n[[watchdog.volume]]\npath = \"media\"\nlow = \"95%\"\n"
            ),
            "CONFIG:13:7: watchdog.volume",
        ),
        (
            &format!("{GOOD_HEAD}[watchdog]\n\n[[watchdog.volume]]\npath = \"/nonexistent\"\n"),
            "CONFIG:11:8: watchdog.volume /nonexistent: No such file or directory",
        ),
        (
            &format!("{GOOD_HEAD}[watchdog]\nmin_free_inodes = \"60%\"\n"),
            "watchdog: min_free_inodes (60%) must be below 50%",
        ),
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"r\"\nstore = \"media\"\nmatch = [\"x\"]\nlifecycle = \"recording\"\nmin_keep = \"soon\"\n"
            ),
            "CONFIG:13:12: invalid duration \"soon\"",
        ),
        // duplicate store names
        (
            &format!(
                "{GOOD_HEAD}[[store]]\nname = \"media\"\nkind = \"local\"\nroot = \"media\"\n"
            ),
            "CONFIG:9:8: duplicate store name \"media\"",
        ),
        // nested roots, and our own state inside a store
        (
            &format!(
                "{GOOD_HEAD}[[store]]\nname = \"sub\"\nkind = \"local\"\nroot = \"media/sub\"\n"
            ),
            "overlaps the root of store \"media\"",
        ),
        (
            &GOOD_HEAD.replace("state_dir = \"state\"", "state_dir = \"media/.state\""),
            "CONFIG:2:13: daemon.state_dir",
        ),
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"r\"\nstore = \"media\"\nmatch = [\"**\"]\nlifecycle = \"recording\"\nmax_total = 0\n"
            ),
            "CONFIG:13:13: class \"r\": max_total must be above 0",
        ),
        (
            &GOOD_HEAD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\ngc_interval = \"400d\"",
            ),
            "daemon.gc_interval must be between 1s and 365d",
        ),
        // a stream that names no stream, and a broken regex (issue 16)
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"r\"\nstore = \"media\"\nmatch = [\"rec/**\"]\nlifecycle = \"recording\"\nstream = \"rec/**\"\n"
            ),
            "CONFIG:13:10: class \"r\": stream \"rec/**\" has no {stream}",
        ),
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"r\"\nstore = \"media\"\nmatch = [\"rec/**\"]\nlifecycle = \"recording\"\nstream = '(?P<stream>[a-'\n"
            ),
            "CONFIG:13:10: class \"r\": stream \"(?P<stream>[a-\" is not a valid regular expression",
        ),
        (
            &format!(
                "{GOOD_HEAD}[[class]]\nname = \"r\"\nstore = \"media\"\nmatch = [\"rec/**\"]\nlifecycle = \"recording\"\nstream = \"rec/{{stream}}/{{stream}}\"\n"
            ),
            "CONFIG:13:10: class \"r\": stream \"rec/{stream}/{stream}\" names {stream} more than once",
        ),
        // a store kind we do not have
        (
            &GOOD_HEAD.replace("\"local\"", "\"ftp\""),
            "CONFIG:6:8: unknown variant `ftp`",
        ),
    ];
    for (text, want) in cases {
        let (code, err) = check(text);
        assert_eq!(code, 78, "exit code for:\n{text}\nstderr: {err}");
        assert!(
            err.contains(want),
            "for config:\n{text}\nwanted {want:?} in:\n{err}"
        );
        assert!(
            err.starts_with("mediaretain: CONFIG:"),
            "one FILE:LINE:COL line per problem:\n{err}"
        );
    }
}

#[test]
fn several_problems_are_all_reported() {
    let text = format!(
        "{GOOD_HEAD}[[class]]\nname = \"t\"\nstore = \"nas\"\nmatch = []\nlifecycle = \"temporary\"\n"
    );
    let (code, err) = check(&text);
    assert_eq!(code, 78);
    assert_eq!(
        err.lines().count(),
        3,
        "unknown store, empty match, missing ttl:\n{err}"
    );
}

#[test]
fn unwritable_state_dir_and_missing_file_are_clear() {
    let b = Box_::new("", "", "");
    let r = Box_::new("", "", "").cli(&["check-config", "--config", "/nonexistent/config.toml"]);
    assert_eq!(r.code, 78);
    assert!(
        r.stderr
            .contains("/nonexistent/config.toml: cannot read config"),
        "{}",
        r.stderr
    );
    // A state_dir that is a file.
    std::fs::write(b.dir.path().join("state"), "").unwrap();
    let r = b.cli(&["check-config"]);
    assert_eq!(r.code, 78);
    assert!(r.stderr.contains("is not a directory"), "{}", r.stderr);
}

/// `conf.d/*.toml` beside the config is merged in name order: a drop-in's stores and
/// classes join the main file's (its relative paths resolve against its own directory),
/// its errors name its own file, a class defined twice names both places, and hidden
/// files (editor swap files, `.dpkg-new`) and other extensions are not read.
#[test]
fn conf_d_drop_ins_merge_in_name_order_with_located_errors() {
    let b = Box_::new("", "", "");
    let d = b.dir.path().join("conf.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::create_dir_all(b.dir.path().join("srs")).unwrap();
    let class = |name: &str, store: &str, glob: &str, keep: &str| {
        format!(
            "[[class]]\nname = \"{name}\"\nstore = \"{store}\"\nmatch = [\"{glob}\"]\nlifecycle = \"recording\"\nkeep_for = \"{keep}\"\n"
        )
    };
    // Name order, not creation order: 20- is written first and still merged second.
    std::fs::write(
        d.join("20-late.toml"),
        class("late", "media", "**/*.flv", "1d"),
    )
    .unwrap();
    std::fs::write(
        d.join("10-srs.toml"),
        format!(
            "[[store]]\nname = \"srs\"\nkind = \"local\"\nroot = \"../srs\"\n\n{}{}",
            class("srs-dvr", "srs", "**/*.flv", "2d"),
            class("early", "media", "**/*.flv", "3d")
        ),
    )
    .unwrap();
    std::fs::write(d.join(".10-srs.toml.swp"), "garbage = [").unwrap();
    std::fs::write(d.join("10-srs.toml.dpkg-old"), "garbage = [").unwrap();
    let r = b.cli(&["check-config"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("10-srs.toml + ")
            && r.stdout.contains("20-late.toml: ok (2 stores, 3 classes"),
        "{}",
        r.stdout
    );
    // First match wins within a store, in merge order: 10-srs.toml's class before 20-late's.
    b.file("x/a.flv", 10, std::time::Duration::from_secs(60));
    let r = b.cli(&["explain", "media:x/a.flv"]).ok();
    assert!(r.stdout.contains("class early"), "{}", r.stdout);
    // The drop-in's relative root resolved against conf.d/, not the main file's directory.
    std::fs::write(b.dir.path().join("srs/s.flv"), "x").unwrap();
    let r = b.cli(&["explain", "srs:s.flv"]).ok();
    assert!(r.stdout.contains("class srs-dvr"), "{}", r.stdout);

    // Errors: located in the file that has them; a duplicate class names its first place.
    std::fs::write(
        d.join("30-bad.toml"),
        format!("{}\n[[class]]\nname = \"x\"\nstore = \"nosuch\"\nmatch = [\"a\"]\nlifecycle = \"recording\"\n", class("early", "media", "*.mkv", "1d")),
    )
    .unwrap();
    let r = b.cli(&["check-config"]);
    assert_eq!(r.code, 78, "{}", r.stderr);
    let bad = d.join("30-bad.toml").display().to_string();
    let srs = d.join("10-srs.toml").display().to_string();
    assert!(
        r.stderr.contains(&format!(
            "{bad}:2:8: duplicate class name \"early\" (first defined at {srs}:"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "{bad}:10:9: class \"x\": unknown store \"nosuch\""
        )),
        "{}",
        r.stderr
    );
    // A syntax error in a drop-in: its own FILE:LINE:COL too.
    std::fs::write(d.join("30-bad.toml"), "[[class]]\nname = \n").unwrap();
    let r = b.cli(&["check-config"]);
    assert_eq!(r.code, 78);
    assert!(r.stderr.contains(&format!("{bad}:2:")), "{}", r.stderr);
}

/// A store with its own error (a missing root) is reported once: its classes get no
/// knock-on "unknown store" errors (issue 15).
#[test]
fn a_broken_store_gives_no_knock_on_errors() {
    let text = "[daemon]\nstate_dir = \"state\"\n[[store]]\nname = \"m\"\nkind = \"local\"\n\n[[class]]\nname = \"a\"\nstore = \"m\"\nmatch = [\"x/**\"]\nlifecycle = \"recording\"\n\n[[class]]\nname = \"b\"\nstore = \"m\"\nmatch = [\"y/**\"]\nlifecycle = \"recording\"\n";
    let (code, err) = check(text);
    assert_eq!(code, 78);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("CONFIG:4:8: store \"m\": a local store needs root"),
        "{err}"
    );
}

/// A key written twice is named, at its second occurrence, with where it was first
/// (issue 15: toml's bare "duplicate key").
#[test]
fn a_duplicate_key_is_named_at_its_second_occurrence() {
    let (code, err) = check(&format!("{GOOD_HEAD}name = \"other\"\n"));
    assert_eq!(code, 78);
    assert_eq!(
        err.trim(),
        "mediaretain: CONFIG:8:1: duplicate key `name` (first defined at CONFIG:5:1); each may appear once"
    );
    let (code, err) = check(&format!("{GOOD_HEAD}\n[daemon]\nsocket = \"s\"\n"));
    assert_eq!(code, 78);
    assert_eq!(
        err.trim(),
        "mediaretain: CONFIG:9:2: duplicate table `daemon` (first defined at CONFIG:1:1); each may appear once"
    );
}

/// A bare number where a duration, size or percentage belongs says what to write, with
/// the units (issue 15: `ttl = 600` said "expected a string").
#[test]
fn units_are_explained() {
    let class = |extra: &str| {
        format!(
            "{GOOD_HEAD}[[class]]\nname = \"t\"\nstore = \"media\"\nmatch = [\"x\"]\nlifecycle = \"temporary\"\n{extra}\n"
        )
    };
    for (text, want) in [
        (
            class("ttl = 600"),
            "CONFIG:13:7: 600 has no unit: expected a duration like \"10m\" (units: s, m, h, d, w); for instance \"600s\"",
        ),
        (
            class("ttl = \"10 fortnights\""),
            "CONFIG:13:7: invalid duration \"10 fortnights\"",
        ),
        (
            class("ttl = \"1h\"\nmax_total = 1.5"),
            "CONFIG:14:13: 1.5 is not a whole number of bytes: expected a size like \"500MiB\" (units: B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)",
        ),
        (
            class("ttl = \"1h\"\nmax_total = \"5 parsecs\""),
            "CONFIG:14:13: invalid size \"5 parsecs\": expected a size like \"500MiB\" (units: B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)",
        ),
        (
            format!("{GOOD_HEAD}[watchdog]\nhigh = 90\n"),
            "CONFIG:9:8: 90 has no unit: expected a percentage like \"90%\"; for instance \"90%\"",
        ),
    ] {
        let (code, err) = check(&text);
        assert_eq!(code, 78, "{text}\n{err}");
        assert!(
            err.contains(want),
            "for config:\n{text}\nwanted {want:?} in:\n{err}"
        );
    }
    // A bare integer is still a size in bytes.
    let (code, err) = check(&class("ttl = \"1h\"\nmax_total = 5000"));
    assert_eq!(code, 0, "{err}");
}

/// Every error is reported at the line of the key at fault, not at the table or the
/// store's `name` (issue 15: the credentials_file error pointed at `name`). Each case marks
/// the line it must name with `# <-`; a missing key is reported at the key that needs it.
#[test]
fn every_error_is_at_the_line_of_its_key() {
    let s3 = "[[store]]\nname = \"arc\"\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"b\"\n";
    let class = |lifecycle: &str, extra: &str| {
        format!(
            "[[class]]\nname = \"c\"\nstore = \"media\"\nmatch = [\"x/**\"]\nlifecycle = \"{lifecycle}\"\n{extra}\n"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{GOOD_HEAD}\n{s3}credentials_file = \"/nonexistent/creds\" # <-\n"),
            "credentials_file /nonexistent/creds",
        ),
        (
            format!(
                "{GOOD_HEAD}\n{}",
                s3.replace("endpoint = \"http", "endpoint = \"ftp")
                    .replace("ftp://127.0.0.1:9\"", "ftp://127.0.0.1:9\" # <-")
            ),
            "must start with https://",
        ),
        (
            format!("{GOOD_HEAD}\n{s3}prefix = \"../x\" # <-\n"),
            "prefix \"../x\" must be relative",
        ),
        (
            format!("{GOOD_HEAD}\n{s3}root = \"media\" # <-\n"),
            "root is for local stores",
        ),
        (
            format!("{GOOD_HEAD}bucket = \"b\" # <-\n"),
            "bucket is for kind = \"s3\" stores",
        ),
        (
            format!(
                "{GOOD_HEAD}\n{}",
                class("temporary # <-", "").replace("temporary # <-\"", "temporary\" # <-")
            ),
            "lifecycle \"temporary\" needs ttl",
        ),
        (
            format!(
                "{GOOD_HEAD}\n{}",
                class("temporary", "ttl = \"1h\"\nkeep_for = \"1d\" # <-")
            ),
            "keep_for is for segment and recording classes",
        ),
        (
            format!("{GOOD_HEAD}\n{}", class("recording", "ttl = \"1h\" # <-")),
            "ttl is for temporary classes",
        ),
        (
            format!(
                "{GOOD_HEAD}\n{}",
                class("recording", "part_suffixes = [\"a/b\"] # <-")
            ),
            "part_suffixes must be non-empty",
        ),
        (
            format!("{GOOD_HEAD}\n{}", class("recording", "max_count = 0 # <-")),
            "max_count must be above 0",
        ),
        (
            format!(
                "{GOOD_HEAD}\n{}",
                class("recording", "exclude = [\"/abs\"] # <-")
            ),
            "glob \"/abs\" must be relative",
        ),
        (
            format!(
                "{GOOD_HEAD}\n{}",
                class("recording", "offload = { to = \"media\" } # <-")
            ),
            "offload.to must name an S3 store",
        ),
        (
            GOOD_HEAD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\ngc_interval = \"400d\" # <-",
            ),
            "daemon.gc_interval must be between 1s and 365d",
        ),
        (
            GOOD_HEAD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\nclock_tolerance = \"1s\" # <-",
            ),
            "daemon.clock_tolerance must be between 10s and 1d",
        ),
        (
            GOOD_HEAD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\nclock_hold = \"60d\" # <-",
            ),
            "daemon.clock_hold must be at most 30d",
        ),
        (
            GOOD_HEAD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\nsocket_group = \"no-such-group-x\" # <-",
            ),
            "no-such-group-x",
        ),
        (
            GOOD_HEAD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\nsocket = \"media/s.sock\" # <-",
            ),
            "daemon.socket",
        ),
        (
            GOOD_HEAD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\nmax_delete_per_pass = { files = 0 } # <-",
            ),
            "max_delete_per_pass.files must be at least 1",
        ),
        (
            format!("{GOOD_HEAD}[watchdog]\ninterval = \"2h\" # <-\n"),
            "watchdog: interval must be above 0s and at most 1h",
        ),
        (
            format!("{GOOD_HEAD}[watchdog]\nhigh = \"80%\"\nlow = \"85%\" # <-\n"),
            "watchdog: low (85%) must be below high (80%)",
        ),
        (
            format!("{GOOD_HEAD}[watchdog]\nhigh = \"70%\" # <-\n"),
            "watchdog: low (80%) must be below high (70%)",
        ),
        (
            format!("{GOOD_HEAD}[watchdog]\nmin_free_inodes = \"60%\" # <-\n"),
            "min_free_inodes (60%) must be below 50%",
        ),
        (
            format!(
                "{GOOD_HEAD}\n{s3}\n[hooks]\nlisten = \"127.0.0.1:0\"\n[hooks.srs]\nstore = \"arc\" # <-\n"
            ),
            "hooks.srs: store \"arc\" is not a local store",
        ),
        (
            format!(
                "{GOOD_HEAD}\n[hooks]\nlisten = \"127.0.0.1:0\"\n[hooks.srs]\nplaylists = [\"a.m3u8\"] # <-\n"
            ),
            "hooks.srs: playlists need the store",
        ),
        (
            format!(
                "{GOOD_HEAD}\n[hooks]\nlisten = \"127.0.0.1:0\"\nallow_users = [\"no-such-user-mr\"] # <-\n"
            ),
            "hooks.allow_users: no such user \"no-such-user-mr\"",
        ),
        (
            format!("{GOOD_HEAD}\n[hooks]\nlisten = \"127.0.0.1:0\"\nconfirm = \"0s\" # <-\n"),
            "hooks.confirm 0s must be between 1s and 1h",
        ),
    ];
    for (text, want) in &cases {
        let line = text
            .lines()
            .position(|l| l.contains("# <-"))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("no marked line in:\n{text}"));
        let (code, err) = check(text);
        assert_eq!(code, 78, "for config:\n{text}\n{err}");
        let at = format!("mediaretain: CONFIG:{line}:");
        assert!(
            err.lines().any(|l| l.starts_with(&at) && l.contains(want)),
            "for config:\n{text}\nwanted {want:?} at line {line} in:\n{err}"
        );
    }
}

/// A value that holds a control character (here a newline, written `\n` in a TOML string)
/// is quoted in the error on the error's one line: every line of an error is located.
/// (Found by the mutation test of tests/faults.rs: a `\` inserted before an `n`.)
#[test]
fn an_error_quoting_a_newline_stays_on_its_located_line() {
    let path = std::path::Path::new("/etc/mediaretain/config.toml");
    let text = "[daemon]\nstate_dir = \"/s\"\n[[store]]\nname = \"m\"\nkind = \"local\"\nroot = \"/m\"\n[[class]]\nname = \"c\"\nstore = \"m\"\nmatch = [\"**\"]\nlifecycle = \"recordin\\ng\"\n";
    let Err(e) = mediaretain::config::Config::parse_bytes(path, text.as_bytes().to_vec(), false)
    else {
        panic!("an unknown lifecycle is an error");
    };
    let shown = e.to_string();
    for line in shown.lines() {
        assert!(
            line.starts_with("/etc/mediaretain/config.toml:11:"),
            "a line of the error is not located: {line:?} (whole error: {shown:?})"
        );
    }
    assert!(shown.contains("recordin\\ng"), "{shown}");
}

// A host name that is no node name (64 characters; Linux allows up to 64, node names 63)
// matters only to a box with S3 stores: its keys and claim markers are named by the node.
// A local-only box starts as before; one with an S3 store is told to set [daemon] node.
// Run in a UTS namespace of its own (root, as CI runs) so the machine's name is untouched.
#[test]
fn a_host_name_that_is_no_node_name_matters_only_with_s3_stores() {
    let long = "h".repeat(64);
    let run = |text: &str| {
        let b = Box_::new("", "", "");
        std::fs::write(&b.config, text).unwrap();
        let out = std::process::Command::new("unshare")
            .args(["--uts", "sh", "-c", "hostname \"$0\" && exec \"$@\""])
            .arg(&long)
            .arg(BIN)
            .args(["check-config", "--config"])
            .arg(&b.config)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&format!(
        "{GOOD_HEAD}\n[[class]]\nname = \"seg\"\nstore = \"media\"\nmatch = [\"**/*.ts\"]\nlifecycle = \"segment\"\nkeep_for = \"1h\"\n"
    ));
    assert_eq!(code, 0, "a local-only box: {err}");
    let (code, err) = run(&format!(
        "{GOOD_HEAD}\n[[store]]\nname = \"archive\"\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"b\"\n"
    ));
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("daemon.node is not set and the host name")
            && err.contains("set [daemon] node"),
        "{err}"
    );
}
