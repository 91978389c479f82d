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
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 stores, 3 classes"));
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
        // root that does not exist
        (
            "[daemon]\nstate_dir = \"state\"\n[[store]]\nname = \"m\"\nkind = \"local\"\nroot = \"/nonexistent/x\"\n",
            "CONFIG:6:8: store \"m\": root /nonexistent/x is not accessible",
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
            "CONFIG:11:1: watchdog.volume",
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
            "max_count and max_total must be above 0",
        ),
        (
            &GOOD_HEAD.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\ngc_interval = \"400d\"",
            ),
            "daemon.gc_interval must be between 1s and 365d",
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
