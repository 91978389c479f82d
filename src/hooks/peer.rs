//! Who is on the other end of a loopback TCP connection: the kernel knows the owner of the
//! peer's socket — the socket whose local address is the peer's and whose remote address
//! is our listener's. Asked by its four addresses over `NETLINK_SOCK_DIAG` (one lookup,
//! whatever the number of sockets), else found in `/proc/net/tcp` and `/proc/net/tcp6`
//! (a listing of every socket: 20 ms with a thousand of them). A remote peer has no socket
//! here: only a token can vouch for it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `TIME_WAIT` (include/net/tcp_states.h): such rows show uid 0 whoever owned the socket.
const TIME_WAIT: u8 = 0x06;

/// The uid owning the socket at `peer` connected to our listener at `ours` (whose address
/// may be unspecified, `0.0.0.0` or `::`: then any local address with its port), or None
/// when no row matches or the rows that match disagree.
pub fn uid_of(peer: SocketAddr, ours: SocketAddr) -> Option<u32> {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    // Our side of the connection: the listener's address, or (listening on every address)
    // most likely the very address the peer came from.
    let ip = ours.ip().to_canonical();
    let ours_here = SocketAddr::new(
        if ip.is_unspecified() { peer.ip() } else { ip },
        ours.port(),
    );
    match diag_uid(peer, ours_here) {
        Ok(Some(uid)) => Some(uid),
        Ok(None) if !ip.is_unspecified() => None,
        // Not found that way (the peer came to another of our addresses), or no netlink
        // (a unit without AF_NETLINK): the listings.
        Ok(None) | Err(_) => listed_uid(peer, ours),
    }
}

/// The owner of the socket at `local` connected to `remote`, asked of the kernel by its four
/// addresses (`sock_diag(7)`, `inet_diag_req_v2` without `NLM_F_DUMP`); `Ok(None)` when
/// there is no such socket (or only its `TIME_WAIT` remains).
fn diag_uid(local: SocketAddr, remote: SocketAddr) -> std::io::Result<Option<u32>> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NETLINK_SOCK_DIAG: i32 = 4;
    const NLMSG_ERROR: u16 = 2;
    let family = match (local, remote) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => libc::AF_INET,
        (SocketAddr::V6(_), SocketAddr::V6(_)) => libc::AF_INET6,
        _ => return Ok(None),
    };
    // SAFETY: a plain socket(2) call; the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: valid pointer and length for SO_RCVTIMEO.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let addr16 = |a: IpAddr| -> [u8; 16] {
        let mut b = [0u8; 16];
        match a {
            IpAddr::V4(v) => b[..4].copy_from_slice(&v.octets()),
            IpAddr::V6(v) => b = v.octets(),
        }
        b
    };
    let mut req = Vec::with_capacity(72);
    req.extend_from_slice(&72u32.to_ne_bytes()); // nlmsg_len
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    req.push(family as u8);
    req.push(libc::IPPROTO_TCP as u8);
    req.push(0); // no extensions
    req.push(0);
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // any state
    req.extend_from_slice(&local.port().to_be_bytes());
    req.extend_from_slice(&remote.port().to_be_bytes());
    req.extend_from_slice(&addr16(local.ip()));
    req.extend_from_slice(&addr16(remote.ip()));
    req.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    req.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    debug_assert_eq!(req.len(), 72);
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: valid buffer and address for the call.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = [0u8; 8192];
    // SAFETY: valid buffer for the call.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let msg = &buf[..n as usize];
    let u16_at = |i: usize| msg.get(i..i + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |i: usize| {
        msg.get(i..i + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    match u16_at(4) {
        Some(SOCK_DIAG_BY_FAMILY) => {}
        Some(NLMSG_ERROR) => {
            let errno = u32_at(16).map_or(0, |e| -(e as i32));
            return match errno {
                libc::ENOENT => Ok(None),
                e => Err(std::io::Error::from_raw_os_error(e)),
            };
        }
        _ => return Err(std::io::Error::other("an unexpected sock_diag answer")),
    }
    // inet_diag_msg: family, state, timer, retrans, the 48-byte id, expires, rqueue,
    // wqueue, then uid (offset 64 within it, 16 after the header).
    let state = msg.get(17).copied();
    if state == Some(TIME_WAIT) {
        return Ok(None);
    }
    Ok(u32_at(16 + 64))
}

/// [`uid_of`] from the listings of every socket.
fn listed_uid(peer: SocketAddr, ours: SocketAddr) -> Option<u32> {
    let mut found: Option<u32> = None;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for uid in matching(&text, peer, ours) {
            match found {
                Some(u) if u != uid => return None, // ambiguous: vouch for nobody
                _ => found = Some(uid),
            }
        }
    }
    found
}

/// The uids of the rows of a `/proc/net/tcp{,6}` table (`text`) for the socket at `peer`
/// connected to `ours`.
fn matching(text: &str, peer: SocketAddr, ours: SocketAddr) -> Vec<u32> {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let ours_ip = ours.ip().to_canonical();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, remote) = (addr(f.get(1)?)?, addr(f.get(2)?)?);
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            let uid = f.get(7)?.parse::<u32>().ok()?;
            let ok = state != TIME_WAIT
                && local == peer
                && remote.port() == ours.port()
                && (ours_ip.is_unspecified() || remote.ip() == ours_ip);
            ok.then_some(uid)
        })
        .collect()
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word as the
/// kernel holds it (network order bytes, printed as a native integer), the port as a
/// number. Mapped IPv4 addresses come back as IPv4.
fn addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b)).to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows as a little-endian kernel writes them.
    #[test]
    fn rows_name_the_owner_of_the_peers_socket() {
        if cfg!(target_endian = "big") {
            return;
        }
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F99 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A2B4 0100007F:1F99 01 00000000:00000000 00:00000000 00000000  1001        0 200 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F99 0100007F:A2B4 01 00000000:00000000 00:00000000 00000000     0        0 201 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:A2B5 0100007F:1F99 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";
        let ours: SocketAddr = "127.0.0.1:8089".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:41652".parse().unwrap();
        assert_eq!(matching(v4, peer, ours), vec![1001]);
        // A TIME_WAIT row (uid 0 whoever owned it) vouches for nobody.
        let gone: SocketAddr = "127.0.0.1:41653".parse().unwrap();
        assert!(matching(v4, gone, ours).is_empty());
        // A listener on 0.0.0.0: its port decides; a mapped peer address is the same peer.
        let any: SocketAddr = "0.0.0.0:8089".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:41652".parse().unwrap();
        assert_eq!(matching(v4, mapped, any), vec![1001]);
        // Another port is another listener.
        let other: SocketAddr = "127.0.0.1:8090".parse().unwrap();
        assert!(matching(v4, peer, other).is_empty());

        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:A2B4 00000000000000000000000001000000:1F99 01 00000000:00000000 00:00000000 00000000   998        0 300 1
";
        let ours6: SocketAddr = "[::1]:8089".parse().unwrap();
        let peer6: SocketAddr = "[::1]:41652".parse().unwrap();
        assert_eq!(matching(v6, peer6, ours6), vec![998]);
    }

    /// This very process's connection, looked up in the real tables.
    #[test]
    fn a_real_loopback_connection_is_ours() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(uid_of(peer, l.local_addr().unwrap()), Some(me));
        // Each way of asking finds it.
        assert_eq!(diag_uid(peer, l.local_addr().unwrap()).unwrap(), Some(me));
        assert_eq!(listed_uid(peer, l.local_addr().unwrap()), Some(me));
        // Nothing at another port.
        let other = SocketAddr::new(peer.ip(), peer.port().wrapping_add(1));
        assert_eq!(diag_uid(other, l.local_addr().unwrap()).unwrap(), None);
    }
}
