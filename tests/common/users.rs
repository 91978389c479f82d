//! The test users: `mr-attacker`, a second Unix user for attacks, and `mr-member`, in the
//! group `mr-consumers` that the tests name as `socket_group`. Created when missing (once
//! per machine; another test binary may create them at the same moment, so the result is
//! what counts). Needs root, as CI runs the suite.

use std::process::{Command, Stdio};
use std::sync::Mutex;

pub const ATTACKER: &str = "mr-attacker";
pub const MEMBER: &str = "mr-member";
pub const GROUP: &str = "mr-consumers";

static USERS: Mutex<()> = Mutex::new(());

/// `id FLAG NAME` as a number (`-u`: uid, `-g`: gid), if the user exists.
pub fn id_of(flag: &str, name: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, name]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The (uid, gid) of test user `name`, creating it (and the group, for the member) first
/// if missing.
pub fn user(name: &str) -> (u32, u32) {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (a second user, setpriv), as CI runs it"
    );
    let _one = USERS.lock().unwrap_or_else(|e| e.into_inner());
    let has_group = Command::new("getent")
        .args(["group", GROUP])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_group {
        let _ = Command::new("groupadd")
            .args(["--system", GROUP])
            .status()
            .expect("groupadd (Debian package passwd)");
    }
    if id_of("-u", name).is_none() {
        let mut c = Command::new("useradd");
        c.args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ]);
        if name == MEMBER {
            c.args(["-G", GROUP]);
        }
        let _ = c
            .arg(name)
            .status()
            .expect("useradd (Debian package passwd)");
    }
    (
        id_of("-u", name).unwrap_or_else(|| panic!("no user {name}")),
        id_of("-g", name).unwrap_or_else(|| panic!("no group of {name}")),
    )
}

/// `program` run as test user `name`: its own uid, gid and supplementary groups, a reset
/// environment, nothing of root's.
pub fn as_user(name: &str, program: &str) -> Command {
    let (uid, gid) = user(name);
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--init-groups")
        .arg("--reset-env")
        .arg(program);
    c
}
