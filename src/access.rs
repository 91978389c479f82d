//! Who may do what on the control socket, by the peer's kernel credentials.
//!
//! Root and the daemon's own user may do everything. Members of `[daemon] socket_group`
//! (by the peer process's primary or supplementary groups, as the kernel reports them with
//! `SO_PEERCRED` / `SO_PEERGROUPS`) may read (status, plan, ls, explain, leases) and take,
//! renew and release their own leases. Anybody else is refused.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Access-control failures.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// `socket_group` names no group.
    #[error("socket_group {name:?}: no such group")]
    NoGroup {
        /// The configured name.
        name: String,
    },
    /// The group database could not be read.
    #[error("socket_group {name:?}: {source}")]
    Lookup {
        /// The configured name.
        name: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// The gid of group `name` (through NSS, like `getent group`).
pub fn group_gid(name: &str) -> Result<u32, AccessError> {
    let cname = CString::new(name).map_err(|_| AccessError::NoGroup { name: name.into() })?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    loop {
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives `grp`'s use.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut out,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(AccessError::Lookup {
                name: name.into(),
                source: std::io::Error::from_raw_os_error(rc),
            });
        }
        if out.is_null() {
            return Err(AccessError::NoGroup { name: name.into() });
        }
        return Ok(grp.gr_gid);
    }
}

/// The uid of user `name` (through NSS, like `getent passwd`); `Ok(None)` when there is
/// no such user.
pub fn user_uid(name: &str) -> std::io::Result<Option<u32>> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    loop {
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives `pwd`'s use.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut out,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        return Ok((!out.is_null()).then_some(pwd.pw_uid));
    }
}

/// The credentials of a connected peer, from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Process id at connect time.
    pub pid: Option<i32>,
}

/// `SO_PEERGROUPS` (Linux 4.13); the libc crate does not export it for every target.
const SO_PEERGROUPS: libc::c_int = 59;

impl Peer {
    /// Reads the credentials of the process at the other end of `sock`.
    pub fn of(sock: &tokio::net::UnixStream) -> std::io::Result<Peer> {
        let cred = sock.peer_cred()?;
        // SAFETY: the stream owns the descriptor for the duration of this call.
        let fd = unsafe { BorrowedFd::borrow_raw(sock.as_raw_fd()) };
        Ok(Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            groups: peer_groups(fd).unwrap_or_default(),
            pid: cred.pid(),
        })
    }

    /// Whether the peer runs with group `gid` (primary or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

fn peer_groups(fd: BorrowedFd<'_>) -> std::io::Result<Vec<u32>> {
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` has room for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            groups.truncate(len as usize / std::mem::size_of::<libc::gid_t>());
            return Ok(groups);
        }
        let err = std::io::Error::last_os_error();
        let want = len as usize / std::mem::size_of::<libc::gid_t>();
        if err.raw_os_error() == Some(libc::ERANGE) && want > groups.len() && want <= 65536 {
            groups.resize(want, 0);
            continue;
        }
        return Err(err);
    }
}

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Root or the daemon's own user: everything.
    Admin,
    /// A member of `socket_group`: read, and its own leases.
    Member,
    /// Anybody else: nothing.
    Denied,
}

/// The access policy of a running daemon.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The daemon's effective uid.
    pub daemon_uid: u32,
    /// `socket_group`, resolved at start.
    pub group: Option<u32>,
}

impl Policy {
    /// The policy for this process with `socket_group` resolved.
    pub fn new(socket_group: Option<&str>) -> Result<Policy, AccessError> {
        Ok(Policy {
            daemon_uid: rustix::process::geteuid().as_raw(),
            group: socket_group.map(group_gid).transpose()?,
        })
    }

    /// What `peer` may do.
    pub fn role(&self, peer: &Peer) -> Role {
        if peer.uid == 0 || peer.uid == self.daemon_uid {
            Role::Admin
        } else if self.group.is_some_and(|g| peer.in_group(g)) {
            Role::Member
        } else {
            Role::Denied
        }
    }
}

/// Who is asking, as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Root, the daemon's user, or a one-shot command holding the state lock.
    Admin,
    /// A socket_group member with this uid: only its own leases.
    Client(u32),
}

impl Caller {
    /// The uid recorded as a new lease's owner.
    pub fn owner_uid(&self) -> u32 {
        match self {
            Caller::Admin => rustix::process::geteuid().as_raw(),
            Caller::Client(uid) => *uid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_group_resolves_and_nonsense_does_not() {
        assert_eq!(group_gid("root").unwrap(), 0);
        assert!(matches!(
            group_gid("no-such-group-mediaretain"),
            Err(AccessError::NoGroup { .. })
        ));
    }

    #[test]
    fn roles() {
        let p = Policy {
            daemon_uid: 0,
            group: Some(1234),
        };
        let peer = |uid, gid, groups: &[u32]| Peer {
            uid,
            gid,
            groups: groups.to_vec(),
            pid: None,
        };
        assert_eq!(p.role(&peer(0, 0, &[])), Role::Admin);
        assert_eq!(p.role(&peer(1000, 1234, &[])), Role::Member);
        assert_eq!(p.role(&peer(1000, 100, &[5, 1234])), Role::Member);
        assert_eq!(p.role(&peer(1000, 100, &[5])), Role::Denied);
    }

    #[test]
    fn peer_of_a_socketpair_is_us() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, _b) = tokio::net::UnixStream::pair().unwrap();
            let p = Peer::of(&a).unwrap();
            assert_eq!(p.uid, rustix::process::geteuid().as_raw());
            assert_eq!(p.pid, Some(std::process::id() as i32));
        });
    }
}
