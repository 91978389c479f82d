//! The Debian package (issue 15), installed for real: `scripts/deb` packages the binary
//! under test (`MEDIARETAIN_DEB_BIN`: no release build, `cargo deb --no-build --fast`),
//! `dpkg -i` installs it, and the installed files are used as an operator would: `mediaretain
//! check-config` on the installed /etc config, `systemd-analyze verify` on the installed
//! unit, the man pages rendered (no groff warning) and the completions loaded; then the
//! installed daemon runs on the installed config and its control socket lets a member of the
//! package's `mediaretain` group in (status, a lease) and keeps everybody else out (exit 77).
//! `dpkg --purge` at the end — also when an assertion fails — leaves the machine as it was,
//! which the test checks too.
//!
//! Needs root (dpkg, a second user); without it, it skips with one line. CI runs as root.
//! `MEDIARETAIN_TEST_BIN=/path/to/old/mediaretain` packages another build.

mod common;
use common::*;

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PKG: &str = "mediaretain";
const GROUP: &str = "mediaretain";
const MEMBER: &str = "mr-member";
const OUTSIDER: &str = "mr-attacker";
const INSTALLED: &str = "/usr/bin/mediaretain";
const CONFIG: &str = "/etc/mediaretain/config.toml";
const UNIT: &str = "/usr/lib/systemd/system/mediaretain.service";
const SOCKET: &str = "/run/mediaretain/control.sock";
const STORE: &str = "/srv/mediaretain";
const STATE: &str = "/var/lib/mediaretain";

fn run(program: &str, args: &[&str]) -> Run {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
        .into()
}

fn id_of(flag: &str, name: &str) -> Option<u32> {
    let r = run("id", &[flag, name]);
    (r.code == 0)
        .then(|| r.stdout.trim().parse().ok())
        .flatten()
}

fn gid_of(group: &str) -> Option<u32> {
    let r = run("getent", &["group", group]);
    (r.code == 0)
        .then(|| r.stdout.split(':').nth(2)?.trim().parse().ok())
        .flatten()
}

/// A system user for the test (as tests/confinement.rs and scripts/test create them).
fn ensure_user(name: &str) {
    if id_of("-u", name).is_none() {
        let r = run(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
        );
        assert_eq!(r.code, 0, "useradd {name} (Debian package passwd): {r:?}");
    }
}

/// `program args` as user `name`, with the groups /etc/group gives it now.
fn as_user(name: &str, program: &str, args: &[&str]) -> Run {
    let (uid, gid) = (id_of("-u", name).unwrap(), id_of("-g", name).unwrap());
    let mut full = vec![
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--init-groups".into(),
        "--reset-env".into(),
        program.into(),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    run("setpriv", &full)
}

/// Undoes whatever the test got to, in reverse, also when it fails half-way: the daemon
/// stopped, the member out of the group, the package purged, the runtime directory gone.
struct Installed {
    daemon: Option<Child>,
    member_added: bool,
}

impl Installed {
    fn purge(&mut self) -> Run {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        if std::mem::take(&mut self.member_added) {
            run("gpasswd", &["-d", MEMBER, GROUP]);
        }
        // Where systemd runs the unit, RuntimeDirectory= removes it; here the daemon made it.
        let _ = fs::remove_dir_all("/run/mediaretain");
        run("dpkg", &["--purge", PKG])
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let r = self.purge();
        if r.code != 0 {
            eprintln!("dpkg --purge {PKG} failed: {r:?}");
        }
    }
}

/// The installed daemon on the installed config, until its socket answers.
fn start_daemon(log: &Path) -> Child {
    let mut child = Command::new(INSTALLED)
        .arg("run")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("MEDIARETAIN_CONFIG")
        .env_remove("MEDIARETAIN_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(SOCKET).is_err() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "the installed daemon exited ({st}) before its socket answered:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the installed daemon's socket {SOCKET} did not answer within 30 s:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn stop_daemon(mut child: Child, log: &Path) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(
                st.success(),
                "the installed daemon exited {st} on SIGTERM:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the installed daemon did not stop within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gunzip(path: &str) -> String {
    let mut out = String::new();
    let mut child = Command::new("gzip")
        .args(["-dc", path])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success(), "gzip -dc {path}");
    out
}

/// One package test at a time: each installs and purges the one package.
static DPKG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The package's state as dpkg-query says it ("installed", "half-configured", …).
fn pkg_status() -> String {
    let r = run("dpkg-query", &["-W", "-f=${Status}", PKG]);
    r.stdout
        .split_whitespace()
        .nth(2)
        .unwrap_or("not-installed")
        .to_owned()
}

/// Whether the package tests can run here (root), holding the lock while they do; also
/// refuses to touch an installation of somebody else's (or a leftover of a killed run).
fn may_install() -> Option<std::sync::MutexGuard<'static, ()>> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("tests/package.rs: skipped: dpkg -i needs root (CI runs as root)");
        return None;
    }
    let guard = DPKG.lock().unwrap_or_else(|e| e.into_inner());
    let status = pkg_status();
    assert_eq!(
        status, "not-installed",
        "the package {PKG} is on this machine ({status}); this test installs and purges it: \
         run `dpkg --purge {PKG}` first"
    );
    Some(guard)
}

/// The binary under test, packed as scripts/deb does it, into `tmp`.
fn build_deb(tmp: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deb = tmp.join("mediaretain.deb");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(root.join("scripts/deb"))
        .args(["--fast", "-o"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", tmp.join("target"))
        .env("MEDIARETAIN_DEB_BIN", bin())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let built: Run = out.into();
    assert_eq!(built.code, 0, "scripts/deb failed: {built:?}");
    eprintln!(
        "scripts/deb (no release build) took {:?}",
        started.elapsed()
    );
    deb
}

#[test]
fn deb_installs_a_working_service_and_purges_clean() {
    let Some(_lock) = may_install() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let had_group = gid_of(GROUP).is_some();

    // --- Build: the binary under test, packed as scripts/deb does it ----------------
    let deb = build_deb(tmp.path());

    // --- Install ------------------------------------------------------------------
    let mut pkg = Installed {
        daemon: None,
        member_added: false,
    };
    let r = run("dpkg", &["-i", deb.to_str().unwrap()]);
    assert_eq!(r.code, 0, "dpkg -i failed: {r:?}");

    for f in [
        INSTALLED,
        CONFIG,
        UNIT,
        "/usr/lib/sysusers.d/mediaretain.conf",
        "/usr/share/man/man1/mediaretain.1.gz",
        "/usr/share/man/man1/mediaretain-lease.1.gz",
        "/usr/share/bash-completion/completions/mediaretain",
        "/usr/share/zsh/vendor-completions/_mediaretain",
        "/usr/share/fish/vendor_completions.d/mediaretain.fish",
        "/usr/share/doc/mediaretain/README.md",
        "/usr/share/doc/mediaretain/docs/operations.md",
        "/usr/share/doc/mediaretain/docs/configuration.md",
        "/usr/share/doc/mediaretain/examples/mediaretain.toml",
        "/usr/share/doc/mediaretain/examples/network.conf",
    ] {
        assert!(Path::new(f).is_file(), "{f} is not installed");
    }
    let mode = fs::metadata(INSTALLED).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755, "{INSTALLED} mode {mode:o}");
    // Every recipe of config/recipes/, as shipped.
    for e in fs::read_dir(root.join("config/recipes")).unwrap() {
        let src = e.unwrap().path();
        let name = src.file_name().unwrap().to_str().unwrap().to_owned();
        let dest = PathBuf::from("/usr/share/doc/mediaretain/recipes").join(&name);
        assert_eq!(
            fs::read(&dest).unwrap_or_default(),
            fs::read(&src).unwrap(),
            "recipe {name} is not installed as {}",
            dest.display()
        );
    }
    // The config is a conffile (kept on upgrade), the packaged local-only one.
    let conffiles = run("dpkg-query", &["-W", "-f=${Conffiles}", PKG]);
    assert!(
        conffiles.stdout.contains(CONFIG),
        "{CONFIG} is not a conffile: {conffiles:?}"
    );
    let config = fs::read_to_string(CONFIG).unwrap();
    assert_eq!(
        config,
        fs::read_to_string(root.join("config/local.toml")).unwrap()
    );
    assert!(
        !config.contains("kind = \"s3\""),
        "the packaged config must be local-only"
    );
    // postinst: the store root and the socket's group.
    assert!(Path::new(STORE).is_dir(), "{STORE} was not created");
    let gid = gid_of(GROUP).expect("postinst did not create the group mediaretain");

    // --- The installed config is valid as installed, and under the installed unit ----
    let r = run(INSTALLED, &["check-config"]);
    assert_eq!(r.code, 0, "check-config on the installed {CONFIG}: {r:?}");
    assert!(
        r.stderr.is_empty(),
        "check-config warns about the packaged config under the packaged unit: {r:?}"
    );

    // --- The installed unit -------------------------------------------------------
    let unit = fs::read_to_string(UNIT).unwrap();
    assert!(
        unit.lines()
            .any(|l| l.starts_with(&format!("ExecStart={INSTALLED} run"))),
        "the installed unit must run {INSTALLED}"
    );
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ReadWritePaths=") && l.contains(STORE)),
        "the unit's ReadWritePaths= must cover the packaged store {STORE}"
    );
    let r = run("systemd-analyze", &["verify", UNIT]);
    assert!(
        r.code == 0 && r.stdout.is_empty() && r.stderr.is_empty(),
        "systemd-analyze verify {UNIT} must pass silently: {r:?}"
    );

    // --- Man pages: render without a warning; the sections --help has too -----------
    for e in fs::read_dir("/usr/share/man/man1").unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("mediaretain") {
            continue;
        }
        let page = tmp.path().join(name.trim_end_matches(".gz"));
        fs::write(&page, gunzip(p.to_str().unwrap())).unwrap();
        let r = run(
            "groff",
            &["-k", "-man", "-Tutf8", "-ww", "-z", page.to_str().unwrap()],
        );
        assert!(
            r.code == 0 && r.stderr.is_empty(),
            "groff warns about {name}: {r:?}"
        );
    }
    let r = Command::new("man")
        .args(["-l", "/usr/share/man/man1/mediaretain.1.gz"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man (Debian package man-db)");
    let man = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "man -l mediaretain.1.gz: {r:?}");
    for want in [
        "EXIT STATUS",
        "EXAMPLES",
        "STORE:KEY",
        "configuration error",
        "mediaretain lease",
    ] {
        assert!(man.contains(want), "man mediaretain lacks {want:?}:\n{man}");
    }

    // --- Completions: bash loads them ----------------------------------------------
    let r = run(
        "bash",
        &[
            "-c",
            ". /usr/share/bash-completion/completions/mediaretain && complete -p mediaretain",
        ],
    );
    assert!(
        r.code == 0 && r.stdout.contains("mediaretain"),
        "bash completion does not load: {r:?}"
    );
    for f in [
        "/usr/share/zsh/vendor-completions/_mediaretain",
        "/usr/share/fish/vendor_completions.d/mediaretain.fish",
    ] {
        let text = fs::read_to_string(f).unwrap();
        assert!(
            text.contains("check-config") && text.contains("lease"),
            "{f} does not complete the subcommands"
        );
    }

    // --- The socket: group mediaretain gets in, others do not -----------------------
    ensure_user(MEMBER);
    ensure_user(OUTSIDER);
    let r = run("usermod", &["-aG", GROUP, MEMBER]);
    assert_eq!(r.code, 0, "usermod -aG {GROUP} {MEMBER}: {r:?}");
    pkg.member_added = true;
    let log = tmp.path().join("daemon.log");
    pkg.daemon = Some(start_daemon(&log));

    let sock = fs::metadata(SOCKET).unwrap();
    assert_eq!(sock.mode() & 0o777, 0o660, "socket mode {:o}", sock.mode());
    assert_eq!(sock.gid(), gid, "the socket's group must be {GROUP}");
    let dir = fs::metadata("/run/mediaretain").unwrap();
    assert_eq!(dir.gid(), gid, "/run/mediaretain's group must be {GROUP}");
    assert_eq!(
        dir.mode() & 0o007,
        0,
        "/run/mediaretain must be closed to others"
    );
    assert_ne!(
        dir.mode() & 0o010,
        0,
        "/run/mediaretain must let {GROUP} through"
    );

    // A member needs no flag: the config (0644) names the socket.
    let r = as_user(MEMBER, INSTALLED, &["status"]);
    assert_eq!(r.code, 0, "status as a member of {GROUP}: {r:?}");
    assert!(r.stdout.contains("media"), "status as a member: {r:?}");
    let r = as_user(
        MEMBER,
        INSTALLED,
        &[
            "lease",
            "media:hls/**",
            "--ttl",
            "60s",
            "--holder",
            "pkg-test",
        ],
    );
    assert_eq!(r.code, 0, "lease as a member of {GROUP}: {r:?}");
    let id = r.stdout.trim().to_owned();
    let r = as_user(MEMBER, INSTALLED, &["release", &id]);
    assert_eq!(r.code, 0, "release {id} as a member: {r:?}");

    let r = as_user(OUTSIDER, INSTALLED, &["status"]);
    assert_eq!(r.code, 77, "status as a non-member must be refused: {r:?}");
    assert!(r.stderr.contains("permission denied"), "{r:?}");
    let r = as_user(
        OUTSIDER,
        INSTALLED,
        &["--socket", SOCKET, "lease", "media:**", "--ttl", "60s"],
    );
    assert_eq!(r.code, 77, "lease as a non-member must be refused: {r:?}");

    let daemon = pkg.daemon.take().unwrap();
    stop_daemon(daemon, &log);

    // --- Purge: nothing left behind -------------------------------------------------
    let r = pkg.purge();
    assert_eq!(r.code, 0, "dpkg --purge: {r:?}");
    for p in [
        INSTALLED,
        "/etc/mediaretain",
        UNIT,
        STORE,
        STATE,
        "/run/mediaretain",
        "/etc/systemd/system/multi-user.target.wants/mediaretain.service",
    ] {
        assert!(
            fs::symlink_metadata(p).is_err(),
            "{p} is left after dpkg --purge: {:?}",
            fs::read_dir(p).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
    }
    if !had_group {
        assert!(
            gid_of(GROUP).is_none(),
            "the group {GROUP} is left after dpkg --purge"
        );
    }
}

/// A drop-in of the test's, removed however the test ends.
struct DropIn(PathBuf);

impl Drop for DropIn {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        if let Some(d) = self.0.parent() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// The packaged config plus local stores `extra` (name, root).
fn config_with(root: &Path, extra: &[(&str, &Path)]) -> String {
    let mut text = fs::read_to_string(root.join("config/local.toml")).unwrap();
    for (name, dir) in extra {
        text += &format!("\n[[store]]\nname = {name:?}\nkind = \"local\"\nroot = {dir:?}\n");
    }
    text
}

/// Issue 25, item 5, as an operator meets it with dpkg:
/// - `check-config` warns (exit 0) when the installed unit would leave a store root
///   read-only, and stops once a drop-in in /etc/systemd/system/mediaretain.service.d/
///   lists it in ReadWritePaths=;
/// - `dpkg -i` over an installed package (an upgrade) with a broken /etc config fails and
///   prints check-config's FILE:LINE:COL; the running daemon runs on; the package stays
///   unconfigured until the config is fixed and `dpkg --configure` finishes;
/// - `dpkg --purge` removes the empty `.mediaretain-trash/` of every store root of the
///   config (read before the config goes), and leaves a full one and one that is a link.
///
/// Old code: no warning; `dpkg -i` exited 0 and printed no error; the trash was left.
#[test]
fn deb_checks_the_config_and_purge_removes_empty_trash() {
    let Some(_lock) = may_install() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let deb = build_deb(tmp.path());
    // Store roots outside ReadWritePaths= (and out of /tmp, the unit's private one).
    let roots = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let [rec, full, linked, elsewhere] = ["rec", "full", "linked", "elsewhere"].map(|d| {
        let p = roots.path().join(d);
        fs::create_dir(&p).unwrap();
        p.canonicalize().unwrap()
    });

    let mut pkg = Installed {
        daemon: None,
        member_added: false,
    };
    let r = run("dpkg", &["-i", deb.to_str().unwrap()]);
    assert_eq!(r.code, 0, "dpkg -i failed: {r:?}");

    // --- check-config under the installed unit --------------------------------------
    fs::write(CONFIG, config_with(root, &[("rec", &rec)])).unwrap();
    let r = run(INSTALLED, &["check-config"]);
    assert_eq!(r.code, 0, "a warning must not fail check-config: {r:?}");
    let want = format!(
        "store \"rec\": root {} is read-only under the unit",
        rec.display()
    );
    assert!(
        r.stderr.contains(&want) && r.stderr.contains(UNIT),
        "check-config must warn {want:?} naming {UNIT}: {r:?}"
    );
    assert!(
        !r.stderr.contains("\"media\""),
        "the packaged root is writable under the packaged unit: {r:?}"
    );
    let drop_in = DropIn(PathBuf::from(
        "/etc/systemd/system/mediaretain.service.d/pkg-test.conf",
    ));
    fs::create_dir_all(drop_in.0.parent().unwrap()).unwrap();
    fs::write(
        &drop_in.0,
        format!("[Service]\nReadWritePaths=-{}\n", rec.display()),
    )
    .unwrap();
    let r = run(INSTALLED, &["check-config"]);
    assert!(
        r.code == 0 && r.stderr.is_empty(),
        "check-config still warns with {} in place: {r:?}",
        drop_in.0.display()
    );
    drop(drop_in);

    // --- An upgrade with a broken config --------------------------------------------
    let log = tmp.path().join("daemon.log");
    pkg.daemon = Some(start_daemon(&log));
    let good = fs::read_to_string(CONFIG).unwrap();
    let broken = good.replacen("scan_interval = ", "scan_intervall = ", 1);
    assert_ne!(broken, good);
    let line = broken
        .lines()
        .position(|l| l.starts_with("scan_intervall"))
        .unwrap()
        + 1;
    fs::write(CONFIG, &broken).unwrap();
    let r = run("dpkg", &["-i", deb.to_str().unwrap()]);
    assert_ne!(
        r.code, 0,
        "dpkg -i with a broken {CONFIG} must fail (the daemon would not start): {r:?}"
    );
    let at = format!("{CONFIG}:{line}:1:");
    assert!(
        r.stderr.contains(&at) && r.stderr.contains("scan_intervall"),
        "dpkg -i must print check-config's error at {at}: {r:?}"
    );
    assert!(
        r.stderr.contains("dpkg --configure mediaretain"),
        "dpkg -i must say how to finish: {r:?}"
    );
    let st = pkg_status();
    assert_ne!(st, "installed", "the package must stay unconfigured");
    let d = pkg.daemon.as_mut().unwrap();
    assert!(
        d.try_wait().unwrap().is_none(),
        "the running daemon must run on"
    );
    let r = run(INSTALLED, &["--socket", SOCKET, "status"]);
    assert_eq!(r.code, 0, "the running daemon must still answer: {r:?}");
    // Hooks need the network, which the packaged unit does not give: an upgrade of a box
    // that uses them stops at that, and goes on once the shipped drop-in is installed.
    fs::write(
        CONFIG,
        format!("{good}\n[hooks]\nlisten = \"127.0.0.1:18089\"\n"),
    )
    .unwrap();
    let r = run("dpkg", &["--configure", PKG]);
    assert!(
        r.code != 0
            && r.stderr
                .contains("[hooks] listen 127.0.0.1:18089: PrivateNetwork=yes"),
        "dpkg --configure with hooks under the local-only unit must fail and say why: {r:?}"
    );
    let network = DropIn(PathBuf::from(
        "/etc/systemd/system/mediaretain.service.d/network.conf",
    ));
    let r = run(
        "install",
        &[
            "-D",
            "-m",
            "0644",
            "/usr/share/doc/mediaretain/examples/network.conf",
            network.0.to_str().unwrap(),
        ],
    );
    assert_eq!(
        r.code, 0,
        "the drop-in as docs/hardening.md installs it: {r:?}"
    );
    let r = run("dpkg", &["--configure", PKG]);
    assert!(
        r.code == 0 && !r.stderr.contains("[hooks]"),
        "dpkg --configure with the network drop-in: {r:?}"
    );
    drop(network);
    fs::write(CONFIG, &good).unwrap();
    assert_eq!(pkg_status(), "installed");
    let daemon = pkg.daemon.take().unwrap();
    stop_daemon(daemon, &log);

    // --- Purge: the empty trash of every root goes, nothing else ----------------------
    fs::write(
        CONFIG,
        config_with(root, &[("rec", &rec), ("full", &full), ("linked", &linked)]),
    )
    .unwrap();
    let trash = |p: &Path| p.join(".mediaretain-trash");
    for dir in [Path::new(STORE), &rec, &full] {
        fs::create_dir(trash(dir)).unwrap();
        fs::set_permissions(trash(dir), fs::Permissions::from_mode(0o700)).unwrap();
    }
    fs::write(
        trash(&full).join("kept.ts"),
        b"a file the daemon did not finish",
    )
    .unwrap();
    // A trash that is a link to an empty directory elsewhere: neither is removed.
    fs::create_dir(trash(&elsewhere)).unwrap();
    std::os::unix::fs::symlink(trash(&elsewhere), trash(&linked)).unwrap();
    let r = pkg.purge();
    assert_eq!(r.code, 0, "dpkg --purge: {r:?}");
    for gone in [trash(&rec), PathBuf::from(STORE)] {
        assert!(
            fs::symlink_metadata(&gone).is_err(),
            "{} is left after dpkg --purge: {r:?}",
            gone.display()
        );
    }
    assert!(
        trash(&full).join("kept.ts").is_file(),
        "a trash with a file in it must be left whole"
    );
    assert!(
        r.stderr
            .contains(&format!("{} is not empty", trash(&full).display())),
        "purge must say which trash it left: {r:?}"
    );
    assert!(
        fs::symlink_metadata(trash(&linked))
            .unwrap()
            .file_type()
            .is_symlink()
            && trash(&elsewhere).is_dir(),
        "a trash that is a link, and where it leads, must be left"
    );
}

/// What the package's man pages and completions are made of, as any user (no root): `--help`
/// has the PATH syntax, examples and every exit code; `generate` writes a page per visible
/// subcommand (none for itself) and the three completions.
#[test]
fn help_and_generated_files_carry_paths_examples_and_exit_codes() {
    let help = run(&bin(), &["--help"]);
    assert_eq!(help.code, 0, "{help:?}");
    for want in [
        "Paths:",
        "STORE:KEY",
        "Examples:",
        "Exit codes:",
        "mediaretain lease",
    ] {
        assert!(
            help.stdout.contains(want),
            "--help lacks {want:?}:\n{}",
            help.stdout
        );
    }
    for code in [0u8, 64, 65, 69, 70, 73, 74, 75, 77, 78] {
        assert!(
            help.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "--help does not explain exit code {code}:\n{}",
            help.stdout
        );
    }
    let short = run(&bin(), &["-h"]);
    assert!(
        short.stdout.contains("--help adds examples and exit codes"),
        "{short:?}"
    );
    let lease = run(&bin(), &["lease", "--help"]);
    assert!(
        lease.stdout.contains("Examples:") && lease.stdout.contains("--ttl 120s"),
        "{lease:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    let r = run(&bin(), &["generate", "man", man.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut pages: Vec<String> = fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for want in [
        "mediaretain.1",
        "mediaretain-lease.1",
        "mediaretain-check-config.1",
    ] {
        assert!(pages.iter().any(|p| p == want), "no {want} in {pages:?}");
    }
    assert!(
        !pages.iter().any(|p| p.contains("generate")),
        "the hidden generate subcommand must have no page: {pages:?}"
    );
    let top = fs::read_to_string(man.join("mediaretain.1")).unwrap();
    for want in [
        ".SH PATHS",
        ".SH EXAMPLES",
        ".SH \"EXIT STATUS\"",
        ".SH FILES",
    ] {
        assert!(top.contains(want), "mediaretain.1 lacks {want:?}");
    }
    let comp = dir.path().join("completions");
    let r = run(&bin(), &["generate", "completions", comp.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    for f in ["mediaretain.bash", "_mediaretain", "mediaretain.fish"] {
        let text = fs::read_to_string(comp.join(f)).unwrap_or_default();
        assert!(
            text.contains("check-config"),
            "completion {f} missing or empty"
        );
        assert!(
            !text.contains("generate"),
            "completion {f} offers the hidden generate"
        );
    }
}
