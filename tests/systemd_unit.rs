//! The shipped systemd unit (`systemd/mediaretain.service`) carries the settings the
//! daemon relies on and passes `systemd-analyze verify` without a single warning.
//!
//! `systemd-analyze verify` checks that every `Exec*=` binary exists, so the test verifies a
//! copy whose `ExecStart=` points at the binary cargo just built. It never skips: without
//! `systemd-analyze` (Debian package `systemd`) it fails and says to run `.ci/run`, which
//! installs it.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// File name of the unit; verify derives the unit name (and its type) from it.
const UNIT_NAME: &str = "mediaretain.service";
/// Where the unit expects the daemon binary in production.
const INSTALLED_BIN: &str = "/usr/bin/mediaretain";

fn unit_source() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(UNIT_NAME);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `key=value` settings of the unit, ignoring comments and blank lines.
fn settings(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// Quotes a path for an `Exec*=` command line (`%` would start a specifier).
fn exec_path(path: &str) -> String {
    assert!(
        !path.contains(['"', '\\']) && !path.contains(char::is_control),
        "binary path {path:?} cannot be written into a unit file unescaped"
    );
    format!("\"{}\"", path.replace('%', "%%"))
}

#[test]
fn unit_has_required_settings() {
    let unit = unit_source();
    let settings = settings(&unit);
    let value = |key: &str| {
        settings
            .iter()
            .find_map(|&(k, v)| (k == key).then_some(v))
            .unwrap_or_else(|| panic!("{UNIT_NAME} has no active {key}= setting:\n{unit}"))
    };

    assert_eq!(value("Type"), "notify");
    assert!(
        value("ExecStart").starts_with(&format!("{INSTALLED_BIN} run")),
        "ExecStart= must run {INSTALLED_BIN} run …, got {:?}",
        value("ExecStart")
    );
    // Issue 25: a reload waits for its outcome (a refused config fails `systemctl reload`)
    // and the socket keeps the socket_group across it (systemd re-owns RuntimeDirectory=).
    assert!(
        value("ExecReload").starts_with(INSTALLED_BIN) && value("ExecReload").ends_with(" reload"),
        "ExecReload= must run `{INSTALLED_BIN} … reload`, got {:?}",
        value("ExecReload")
    );
    assert_eq!(value("Group"), "mediaretain");
    assert!(!value("WatchdogSec").is_empty(), "WatchdogSec= must be set");
    assert_eq!(value("StateDirectory"), "mediaretain");
    assert_eq!(value("RuntimeDirectory"), "mediaretain");
    assert_eq!(value("ConfigurationDirectory"), "mediaretain");
    assert_eq!(value("ProtectSystem"), "strict");
    // A broken config exits 78 (EX_CONFIG): restarting cannot fix it (issue 15); nor a
    // lost or damaged registry, 65 (issue 23).
    let prevent: Vec<&str> = value("RestartPreventExitStatus")
        .split_whitespace()
        .collect();
    assert!(
        prevent.contains(&"78") && prevent.contains(&"65"),
        "RestartPreventExitStatus= must hold 78 and 65, got {prevent:?}"
    );
    assert!(
        ["yes", "true", "on", "1"].contains(&value("NoNewPrivileges")),
        "NoNewPrivileges= must be enabled, got {:?}",
        value("NoNewPrivileges")
    );
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`systemd-analyze --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "systemd-analyze is not installed: run `bash .ci/run` \
             (or `apt-get install systemd`) to run this test"
        ),
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    }

    // Point ExecStart= at the freshly built binary; everything else stays as shipped.
    let bin = exec_path(env!("CARGO_BIN_EXE_mediaretain"));
    let unit: String = unit_source()
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("Exec") {
                l.replace(INSTALLED_BIN, &bin)
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();

    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join(UNIT_NAME);
    fs::write(&path, &unit).expect("write unit copy");
    // verify warns about executable or world-writable unit files; don't depend on the umask.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod unit copy");

    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.is_empty() && stderr.is_empty(),
        "`systemd-analyze verify {}` must succeed silently\n\
         status: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- unit ---\n{unit}",
        path.display(),
        out.status,
    );
}
