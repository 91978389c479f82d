//! The shipped systemd unit (`systemd/mediaretain.service`) carries the settings the
//! daemon relies on and passes `systemd-analyze verify` without a single warning.
//!
//! `systemd-analyze verify` checks that every `Exec*=` binary exists, so the test verifies a
//! copy whose `ExecStart=` points at the binary cargo just built. It never skips: without
//! `systemd-analyze` (Debian package `systemd`) it fails and says to run `.ci/run`, which
//! installs it.

mod common;

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

/// The worst exposure `systemd-analyze security` may give the shipped unit (issue 25, item 7).
const MAX_EXPOSURE: f64 = 2.0;

/// Issue 25, item 7: `systemd-analyze security --offline=true` on the shipped unit prints an
/// "Overall exposure level" of at most 2.0 (it was 2.9: the network, private mounts and the
/// umask were open). What stays exposed, and why the daemon needs it, is in docs/hardening.md;
/// the test names the items it reports, so a new one shows up in its failure.
#[test]
fn unit_exposure_is_at_most_two() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(UNIT_NAME);
    let (score, exposed, stdout) = exposure(&path);
    assert!(
        score <= MAX_EXPOSURE,
        "systemd-analyze security rates {UNIT_NAME} {score} (at most {MAX_EXPOSURE}); exposed: \
         {exposed:?}\n{stdout}"
    );
}

/// The shipped network drop-in (systemd/network.conf, for S3, hooks and metrics) beside the
/// unit: `systemd-analyze verify` passes silently, and it does open the network (the
/// exposure rises: 2.6 with systemd 252, as docs/hardening.md says).
#[test]
fn network_drop_in_verifies_and_opens_the_network() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
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
    let path = dir.path().join(UNIT_NAME);
    fs::write(&path, unit).unwrap();
    let d = dir.path().join(format!("{UNIT_NAME}.d"));
    fs::create_dir(&d).unwrap();
    fs::copy(root.join("systemd/network.conf"), d.join("network.conf")).unwrap();
    for f in [path.clone(), d.join("network.conf")] {
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && so.is_empty() && se.is_empty(),
        "verify with the network drop-in: {}\n{so}\n{se}",
        out.status
    );
    let (base, _, _) = exposure(&root.join("systemd").join(UNIT_NAME));
    let (with, exposed, _) = exposure(&path);
    assert!(
        with > base && exposed.iter().any(|e| e.starts_with("PrivateNetwork")),
        "the drop-in must open the network: {base} -> {with}, exposed {exposed:?}"
    );
}

/// `systemd-analyze security --offline=true UNIT`: the overall exposure, the items marked
/// exposed, and what it printed.
fn exposure(path: &Path) -> (f64, Vec<String>, String) {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(path)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze (Debian package systemd, `bash .ci/run`): {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "systemd-analyze security printed no \"Overall exposure level\" ({}):\n{stdout}\n{stderr}",
                out.status
            )
        });
    // "→ Overall exposure level for mediaretain.service: 1.8 OK 🙂"
    let score: f64 = line
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"));
    let exposed: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with('✗'))
        .map(|l| {
            l.trim_start_matches('✗')
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    (score, exposed, stdout)
}

/// `check-config --unit UNIT` as any user: (exit code, stderr).
fn check_config_under(config: &Path, unit: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mediaretain"))
        .args(["check-config", "--config"])
        .arg(config)
        .arg("--unit")
        .arg(unit)
        .env_remove("MEDIARETAIN_CONFIG")
        .output()
        .expect("run mediaretain check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 25, item 5: `check-config --unit` warns (exit 0) where the shipped unit keeps the
/// daemon from a store root (ProtectSystem=strict without a ReadWritePaths= for it; a
/// private /tmp) or from the network ([hooks] under PrivateNetwork=), and stops warning
/// once a drop-in beside the unit opens them: ReadWritePaths= for the root,
/// systemd/network.conf (the shipped network drop-in) for the hooks. Old code: no
/// `--unit` option (exit 64), and `check-config` said "ok".
#[test]
fn check_config_warns_what_the_unit_withholds() {
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Not under /tmp (the unit's private /tmp is a case of its own, below).
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let b = base.path();
    for d in ["store", "state", "unit"] {
        fs::create_dir(b.join(d)).unwrap();
    }
    let tmp_store = tempfile::tempdir_in("/tmp").unwrap();
    // Under another name: drop-ins of the host's (tests/package.rs installs some for
    // mediaretain.service) must not count here.
    let name = "mr-check-test.service";
    let unit = b.join("unit").join(name);
    fs::copy(root_dir.join("systemd").join(UNIT_NAME), &unit).unwrap();
    let config = b.join("config.toml");
    let write = |hooks: bool, extra_store: Option<&Path>| {
        let mut text = format!(
            "[daemon]\nstate_dir = {state:?}\nsocket = {sock:?}\n\n\
             [[store]]\nname = \"media\"\nkind = \"local\"\nroot = {store:?}\n\n\
             [[class]]\nname = \"tmp\"\nstore = \"media\"\nmatch = [\"tmp/**\"]\n\
             lifecycle = \"temporary\"\nttl = \"30m\"\n",
            state = b.join("state"),
            sock = b.join("state/control.sock"),
            store = b.join("store"),
        );
        if let Some(p) = extra_store {
            text += &format!("\n[[store]]\nname = \"scratch\"\nkind = \"local\"\nroot = {p:?}\n");
        }
        if hooks {
            text += "\n[hooks]\nlisten = \"127.0.0.1:8089\"\n";
        }
        fs::write(&config, text).unwrap();
    };

    write(true, Some(tmp_store.path()));
    let (code, err) = check_config_under(&config, &unit);
    assert_eq!(code, 0, "warnings must not fail check-config: {err}");
    let store = b.join("store").canonicalize().unwrap();
    let want_ro = format!(
        "store \"media\": root {} is read-only under the unit",
        store.display()
    );
    assert!(err.contains(&want_ro), "no warning {want_ro:?}:\n{err}");
    assert!(
        err.contains(&format!("`ReadWritePaths=-{}`", store.display())),
        "the warning must say which ReadWritePaths= to add:\n{err}"
    );
    assert!(
        err.contains("store \"scratch\"") && err.contains("PrivateTmp=yes"),
        "a root under /tmp must be named as the unit's private /tmp:\n{err}"
    );
    assert!(
        err.contains("daemon.state_dir") && err.contains("would not start"),
        "a read-only state_dir must be named:\n{err}"
    );
    assert!(
        err.contains("[hooks] listen 127.0.0.1:8089: PrivateNetwork=yes"),
        "hooks under PrivateNetwork=yes must be named:\n{err}"
    );
    assert!(err.lines().all(|l| l.starts_with("warning: ")), "{err}");
    // --strict (the package's postinst): what stops the daemon, or takes its network, fails.
    let out = Command::new(env!("CARGO_BIN_EXE_mediaretain"))
        .args(["check-config", "--strict", "--config"])
        .arg(&config)
        .arg("--unit")
        .arg(&unit)
        .output()
        .unwrap();
    let strict = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "--strict must fail: {strict}");
    assert!(
        strict
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains("[hooks]"))
            && strict
                .lines()
                .any(|l| l.starts_with("warning: ") && l.contains("\"media\"")),
        "--strict: the hooks an error, a read-only root still a warning:\n{strict}"
    );

    // A drop-in beside the unit opens the two directories; the shipped one, the network.
    let d = b.join("unit").join(format!("{name}.d"));
    fs::create_dir(&d).unwrap();
    fs::write(
        d.join("paths.conf"),
        format!(
            "[Service]\nReadWritePaths=-{} -{}\n",
            b.join("store").display(),
            b.join("state").display()
        ),
    )
    .unwrap();
    fs::copy(
        root_dir.join("systemd/network.conf"),
        d.join("network.conf"),
    )
    .unwrap();
    write(true, None);
    let (code, err) = check_config_under(&config, &unit);
    assert!(
        code == 0 && err.is_empty(),
        "warned after the drop-ins ({code}):\n{err}"
    );

    // Without the network drop-in, the hooks are named again.
    fs::remove_file(d.join("network.conf")).unwrap();
    let (_, err) = check_config_under(&config, &unit);
    assert!(
        err.contains("[hooks]"),
        "hooks without the network drop-in:\n{err}"
    );
}

/// The seccomp filter systemd installs for the unit's `RestrictAddressFamilies=AF_UNIX`
/// (the same check: `socket(2)` of any other family fails with `EAFNOSUPPORT`), set in the
/// child before it runs the daemon.
fn unix_sockets_only(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: building plain BPF instructions.
    let filter: Vec<libc::sock_filter> = unsafe {
        vec![
            // nr
            libc::BPF_STMT((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0),
            libc::BPF_JUMP(
                (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                libc::SYS_socket as u32,
                0,
                3,
            ),
            // args[0], the family (low half)
            libc::BPF_STMT((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 16),
            libc::BPF_JUMP(
                (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                libc::AF_UNIX as u32,
                1,
                0,
            ),
            libc::BPF_STMT(
                libc::BPF_RET as u16,
                libc::SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32,
            ),
            libc::BPF_STMT(libc::BPF_RET as u16, libc::SECCOMP_RET_ALLOW),
        ]
    };
    // SAFETY: only prctl(2) between fork and exec; the filter outlives the call.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The unit gives the daemon `AF_UNIX` sockets only (issue 25, item 7). Under that filter
/// the daemon starts, answers on its socket and deletes what is due (a local config needs
/// no other family); one with `[hooks]` fails at start (exit 73) with a line naming the
/// network drop-in. Old code: the same exit, but "Address family not supported" alone.
#[test]
fn daemon_runs_on_unix_sockets_only_and_names_the_network_drop_in() {
    use common::*;
    use std::time::Duration;
    let b = Box_::new("", "", BASE_CLASSES);
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(&b.config).arg("run");
    cmd.env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(b.dir.path().join("daemon.log")).unwrap());
    unix_sockets_only(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let log = || fs::read_to_string(b.dir.path().join("daemon.log")).unwrap_or_default();
    let sock = b.state().join("control.sock");
    wait_for("the daemon's socket", Duration::from_secs(20), || {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the daemon exited ({st}) under AF_UNIX only:\n{}", log());
        }
        std::os::unix::net::UnixStream::connect(&sock).is_ok() && {
            let st = b.cli(&["status", "--json"]).json();
            !st["activity"]["last_scan_at"].is_null()
        }
    });
    let old = b.file("tmp/old.bin", 1000, Duration::from_secs(7200));
    b.cli(&["scan"]).ok();
    let r = b.cli(&["gc"]);
    assert_eq!(r.code, 0, "gc through the daemon under AF_UNIX only: {r:?}");
    assert!(
        !old.exists(),
        "a file due was not deleted: {r:?}\n{}",
        log()
    );
    let _ = child.kill();
    let _ = child.wait();

    b.write_config(
        "",
        "",
        &format!("{BASE_CLASSES}\n[hooks]\nlisten = \"127.0.0.1:18090\"\n"),
    );
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(&b.config).arg("run");
    cmd.env_remove("NOTIFY_SOCKET");
    unix_sockets_only(&mut cmd);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(73), "hooks without AF_INET: {err}");
    assert!(
        err.contains("hooks.listen 127.0.0.1:18090")
            && err.contains("/usr/share/doc/mediaretain/examples/network.conf"),
        "the start failure must name the network drop-in:\n{err}"
    );
}
