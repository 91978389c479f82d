//! What a systemd unit (with its drop-ins) leaves the daemon, as far as `check-config`
//! can tell from the files: which paths are writable under `ProtectSystem=`,
//! `ProtectHome=`, `PrivateTmp=`, `ReadWritePaths=` and friends, and whether it may use the
//! network (`PrivateNetwork=`, `RestrictAddressFamilies=`, `IPAddressDeny=`). Only a
//! reading of the unit files, never systemd's answer: `check-config` warns on what it finds
//! and does not fail (docs/hardening.md says why).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use crate::config::Config;

/// The unit's file name.
pub const UNIT_NAME: &str = "mediaretain.service";

/// Where systemd looks for system units, most important first.
const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// What a path is inside the unit's mount namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Writable,
    ReadOnly,
    Inaccessible,
    /// Under `PrivateTmp=`: writable, but the unit's own (empty) `/tmp`, not the host's.
    PrivateTmp,
}

/// The sandbox settings of a unit and its drop-ins that decide what the daemon can reach.
#[derive(Debug)]
pub struct Sandbox {
    /// The unit file and the drop-ins read, in the order systemd applies them.
    pub files: Vec<PathBuf>,
    /// `--config` of `ExecStart=` (the default path without one).
    pub config: Option<PathBuf>,
    protect_system: String,
    protect_home: String,
    private_tmp: bool,
    private_network: bool,
    /// Path prefixes and what they are, from every setting above.
    rules: Vec<(PathBuf, Access)>,
    /// `RestrictAddressFamilies=`: None unrestricted; (allow list?, families).
    families: Option<(bool, Vec<String>)>,
    ip_deny: Vec<String>,
    ip_allow: Vec<String>,
}

/// The installed unit, if any: the first `mediaretain.service` of systemd's unit
/// directories.
pub fn installed() -> Option<PathBuf> {
    UNIT_DIRS
        .iter()
        .map(|d| Path::new(d).join(UNIT_NAME))
        .find(|p| p.is_file())
}

fn yes(v: &str) -> bool {
    matches!(v, "yes" | "true" | "on" | "1")
}

/// Splits a setting's value into words, honouring double and single quotes.
fn words(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in v.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// A path setting's entry without its `-` (ignore if missing) and `+` prefixes; None for
/// what cannot be judged here (specifiers, relative paths).
fn path_entry(w: &str) -> Option<PathBuf> {
    let p = w.trim_start_matches(['-', '+']);
    (p.starts_with('/') && !p.contains('%')).then(|| resolve(Path::new(p)))
}

/// `p` with its links resolved as far as it exists (systemd resolves them too), `.` and
/// `..` taken out.
fn resolve(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The unit's drop-ins, in the order systemd applies them (by file name; one in /etc
/// hides one of the same name in /run or /usr/lib), with `beside` (the unit's own
/// directory) read as the least important.
fn drop_ins(unit: &Path) -> Vec<PathBuf> {
    let name = unit
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| UNIT_NAME.into());
    let mut dirs: Vec<PathBuf> = Vec::new();
    for d in UNIT_DIRS {
        dirs.push(Path::new(d).join("service.d"));
        dirs.push(Path::new(d).join(format!("{name}.d")));
    }
    if let Some(parent) = unit.parent() {
        let beside = parent.join(format!("{name}.d"));
        if !dirs.contains(&beside) {
            dirs.push(beside);
        }
    }
    let mut by_name: BTreeMap<(bool, String), PathBuf> = BTreeMap::new();
    for d in dirs {
        let top = d.file_name().is_some_and(|n| n == "service.d");
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.ends_with(".conf") && e.path().is_file() {
                // Top-level service.d/ drop-ins come first; within each, by name.
                by_name.entry((!top, f)).or_insert_with(|| e.path());
            }
        }
    }
    by_name.into_values().collect()
}

impl Sandbox {
    /// Reads `unit` and its drop-ins.
    pub fn read(unit: &Path) -> std::io::Result<Sandbox> {
        let mut files = vec![unit.to_path_buf()];
        files.extend(drop_ins(unit));
        let mut sb = Sandbox {
            files: Vec::new(),
            config: None,
            protect_system: "no".into(),
            protect_home: "no".into(),
            private_tmp: false,
            private_network: false,
            rules: Vec::new(),
            families: None,
            ip_deny: Vec::new(),
            ip_allow: Vec::new(),
        };
        let mut rw = Vec::new();
        let mut ro = Vec::new();
        let mut gone = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f)?;
            sb.files.push(f.clone());
            let mut section = String::new();
            let mut joined = String::new();
            for raw in text.lines() {
                // A line ending in a backslash goes on.
                if let Some(part) = raw.strip_suffix('\\') {
                    joined.push_str(part);
                    joined.push(' ');
                    continue;
                }
                joined.push_str(raw);
                let line = std::mem::take(&mut joined);
                let line = line.trim();
                if line.is_empty() || line.starts_with(['#', ';']) {
                    continue;
                }
                if line.starts_with('[') {
                    section = line.to_owned();
                    continue;
                }
                if section != "[Service]" {
                    continue;
                }
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                let (k, v) = (k.trim(), v.trim());
                let list = |l: &mut Vec<PathBuf>| {
                    if v.is_empty() {
                        l.clear();
                    }
                    l.extend(words(v).iter().filter_map(|w| path_entry(w)));
                };
                match k {
                    "ExecStart" => {
                        let w = words(v);
                        if !w.is_empty() {
                            let at = w.iter().position(|a| a == "--config");
                            let inline = w.iter().find_map(|a| a.strip_prefix("--config="));
                            sb.config = Some(PathBuf::from(
                                at.and_then(|i| w.get(i + 1))
                                    .map(String::as_str)
                                    .or(inline)
                                    .unwrap_or(crate::config::DEFAULT_PATH),
                            ));
                        }
                    }
                    "ProtectSystem" => {
                        sb.protect_system = match v {
                            "strict" | "full" => v.to_owned(),
                            v if yes(v) => "yes".into(),
                            _ => "no".into(),
                        }
                    }
                    "ProtectHome" => {
                        sb.protect_home = match v {
                            "read-only" | "tmpfs" => v.to_owned(),
                            v if yes(v) => "yes".into(),
                            _ => "no".into(),
                        }
                    }
                    "PrivateTmp" => sb.private_tmp = yes(v),
                    "PrivateNetwork" => sb.private_network = yes(v),
                    "ReadWritePaths" => list(&mut rw),
                    "ReadOnlyPaths" => list(&mut ro),
                    "InaccessiblePaths" => list(&mut gone),
                    "StateDirectory" | "CacheDirectory" | "LogsDirectory" | "RuntimeDirectory" => {
                        let base = match k {
                            "StateDirectory" => "/var/lib",
                            "CacheDirectory" => "/var/cache",
                            "LogsDirectory" => "/var/log",
                            _ => "/run",
                        };
                        for w in words(v) {
                            // "name" or "name:alias"
                            let name = w.split(':').next().unwrap_or_default();
                            if !name.is_empty() && !name.contains('%') {
                                dirs.push(resolve(&Path::new(base).join(name)));
                            }
                        }
                    }
                    "RestrictAddressFamilies" => {
                        if v.is_empty() {
                            sb.families = None;
                            continue;
                        }
                        let (deny, v) = match v.strip_prefix('~') {
                            Some(rest) => (true, rest),
                            None => (false, v),
                        };
                        let listed: Vec<String> = if v.trim() == "none" {
                            Vec::new()
                        } else {
                            words(v)
                        };
                        match &mut sb.families {
                            None => sb.families = Some((!deny, listed)),
                            // Same kind: the lists add up; the other kind takes away.
                            Some((allow, l)) if *allow != deny => l.extend(listed),
                            Some((_, l)) => l.retain(|f| !listed.contains(f)),
                        }
                    }
                    "IPAddressDeny" | "IPAddressAllow" => {
                        let l = if k == "IPAddressDeny" {
                            &mut sb.ip_deny
                        } else {
                            &mut sb.ip_allow
                        };
                        if v.is_empty() {
                            l.clear();
                        }
                        l.extend(words(v));
                    }
                    _ => {}
                }
            }
        }
        let ro_at = |p: &str| (PathBuf::from(p), Access::ReadOnly);
        match sb.protect_system.as_str() {
            "strict" => sb.rules.push(ro_at("/")),
            "full" => sb
                .rules
                .extend(["/usr", "/boot", "/efi", "/etc"].map(ro_at)),
            "yes" => sb.rules.extend(["/usr", "/boot", "/efi"].map(ro_at)),
            _ => {}
        }
        if sb.protect_system == "strict" {
            // The API filesystems stay writable.
            for p in ["/dev", "/proc", "/sys"] {
                sb.rules.push((PathBuf::from(p), Access::Writable));
            }
        }
        let home = match sb.protect_home.as_str() {
            "read-only" | "tmpfs" => Some(Access::ReadOnly),
            "yes" => Some(Access::Inaccessible),
            _ => None,
        };
        if let Some(a) = home {
            for p in ["/home", "/root", "/run/user"] {
                sb.rules.push((PathBuf::from(p), a));
            }
        }
        if sb.private_tmp {
            for p in ["/tmp", "/var/tmp"] {
                sb.rules.push((PathBuf::from(p), Access::PrivateTmp));
            }
        }
        sb.rules
            .extend(gone.into_iter().map(|p| (p, Access::Inaccessible)));
        sb.rules
            .extend(ro.into_iter().map(|p| (p, Access::ReadOnly)));
        sb.rules
            .extend(rw.into_iter().map(|p| (p, Access::Writable)));
        sb.rules
            .extend(dirs.into_iter().map(|p| (p, Access::Writable)));
        Ok(sb)
    }

    /// What `path` is under the unit: the most specific rule covering it wins (as the
    /// mounts systemd stacks); among rules on the same path, the last read.
    fn access(&self, path: &Path) -> Access {
        let path = resolve(path);
        // ReadWritePaths= beneath /tmp name the unit's own /tmp, not the host's.
        if self.private_tmp && (path.starts_with("/tmp") || path.starts_with("/var/tmp")) {
            return Access::PrivateTmp;
        }
        self.rules
            .iter()
            .filter(|(p, _)| path.starts_with(p))
            .max_by_key(|(p, _)| p.components().count())
            .map(|&(_, a)| a)
            .unwrap_or(Access::Writable)
    }

    /// Why the unit keeps the daemon from writing `path`, and what to do, if it does.
    fn unwritable(&self, path: &Path) -> Option<(String, String)> {
        let rw = format!(
            "add `ReadWritePaths=-{}` in a drop-in (`systemctl edit mediaretain`)",
            path.display()
        );
        match self.access(path) {
            Access::Writable => None,
            Access::ReadOnly => Some((
                format!(
                    "is read-only under the unit (ProtectSystem={}, ProtectHome={}, no ReadWritePaths= covers it)",
                    self.protect_system, self.protect_home
                ),
                rw,
            )),
            Access::Inaccessible => Some((
                "is inaccessible under the unit (ProtectHome=yes or InaccessiblePaths=)".into(),
                format!("set ProtectHome=read-only and {rw}"),
            )),
            Access::PrivateTmp => Some((
                "is under /tmp, which is the unit's own (PrivateTmp=yes): the daemon would see an empty directory, not this one".into(),
                "keep it out of /tmp and /var/tmp".into(),
            )),
        }
    }

    /// Why the unit keeps the daemon from the network `what` needs (talking to `ip`, if
    /// known), if it does.
    fn offline(&self, ip: Option<IpAddr>) -> Option<String> {
        if self.private_network {
            return Some("PrivateNetwork=yes gives the daemon no network".into());
        }
        let fams: &[&str] = match ip {
            Some(IpAddr::V4(_)) => &["AF_INET"],
            Some(IpAddr::V6(_)) => &["AF_INET6"],
            None => &["AF_INET", "AF_INET6"],
        };
        if let Some((allow, listed)) = &self.families {
            let ok = |f: &&str| listed.iter().any(|l| l == f) == *allow;
            if !fams.iter().any(ok) {
                return Some(format!(
                    "RestrictAddressFamilies= does not allow {}",
                    fams.join(" or ")
                ));
            }
        }
        let covers = |list: &[String]| {
            list.iter().any(|e| match e.as_str() {
                "any" => true,
                "localhost" => ip.is_some_and(|ip| ip.is_loopback()),
                e => match (ip, e.split_once('/')) {
                    (Some(ip), Some((net, bits))) => net_contains(net, bits, ip),
                    (Some(ip), None) => e.parse::<IpAddr>().is_ok_and(|a| a == ip),
                    // An endpoint by name: any address listed may be its.
                    (None, _) => true,
                },
            })
        };
        if covers(&self.ip_deny) && !covers(&self.ip_allow) {
            return Some(match ip {
                Some(ip) => format!("IPAddressDeny= blocks {ip} and no IPAddressAllow= lets it through"),
                None => "IPAddressDeny= blocks every address; name the endpoint's (or any) in IPAddressAllow=".into(),
            });
        }
        None
    }

    /// What `cfg` needs that this unit withholds, one line each; `true` where the daemon
    /// would not start or would lose what it has now (its state, the network it uses),
    /// `false` where one store would go unmanaged.
    pub fn warnings(&self, cfg: &Config) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        for s in cfg.stores.iter().filter(|s| s.is_local()) {
            if let Some((why, fix)) = self.unwritable(&s.root) {
                out.push((
                    false,
                    format!(
                        "store {:?}: root {} {why}, so nothing would be deleted there: {fix}",
                        s.name,
                        s.root.display()
                    ),
                ));
            }
        }
        let socket_dir = cfg.daemon.socket.parent().unwrap_or(Path::new("/"));
        let mut own = vec![("daemon.state_dir", cfg.daemon.state_dir.as_path())];
        if resolve(socket_dir) != resolve(&cfg.daemon.state_dir) {
            own.push(("the directory of daemon.socket", socket_dir));
        }
        for (what, p) in own {
            if let Some((why, fix)) = self.unwritable(p) {
                out.push((
                    true,
                    format!(
                        "{what} {} {why}, so the daemon would not start: {fix}",
                        p.display()
                    ),
                ));
            }
        }
        let mut net: Vec<(String, Option<IpAddr>)> = Vec::new();
        if let Some(h) = &cfg.hooks {
            net.push((format!("[hooks] listen {}", h.listen), Some(h.listen.ip())));
        }
        if let Some(m) = &cfg.metrics {
            net.push((
                format!("[metrics] listen {}", m.listen),
                Some(m.listen.ip()),
            ));
        }
        let endpoints = cfg.stores.iter().filter_map(|s| {
            let l = s.s3.as_ref()?;
            Some(
                std::iter::once(&l.endpoint)
                    .chain(&l.more_endpoints)
                    .map(move |e| (s, e.clone())),
            )
        });
        for (s, endpoint) in endpoints.flatten() {
            let ip = endpoint
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split(['/', '?']).next())
                .and_then(|hp| {
                    hp.parse::<std::net::SocketAddr>()
                        .map(|a| a.ip())
                        .ok()
                        .or_else(|| hp.parse().ok())
                        .or_else(|| hp.rsplit_once(':').and_then(|(h, _)| h.parse().ok()))
                });
            net.push((format!("store {:?} (S3 at {endpoint})", s.name), ip));
        }
        for (what, ip) in net {
            if let Some(why) = self.offline(ip) {
                out.push((true, format!(
                    "{what}: {why}; the unit is made for a local-only config: give it the network with the drop-in of docs/hardening.md (install -D -m 0644 /usr/share/doc/mediaretain/examples/network.conf /etc/systemd/system/mediaretain.service.d/network.conf)"
                )));
            }
        }
        out
    }
}

/// Whether `net`/`bits` (an `IPAddressAllow=` entry) holds `ip`.
fn net_contains(net: &str, bits: &str, ip: IpAddr) -> bool {
    let Ok(bits) = bits.parse::<u32>() else {
        return false;
    };
    match (net.parse::<IpAddr>(), ip) {
        (Ok(IpAddr::V4(n)), IpAddr::V4(a)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (Ok(IpAddr::V6(n)), IpAddr::V6(a)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_nets() {
        assert_eq!(words(r#"-/a "/b c" '/d'"#), ["-/a", "/b c", "/d"]);
        assert!(net_contains("127.0.0.0", "8", "127.1.2.3".parse().unwrap()));
        assert!(!net_contains("10.0.0.0", "8", "127.1.2.3".parse().unwrap()));
        assert!(net_contains("::", "0", "::1".parse().unwrap()));
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let dir = tempfile::tempdir().unwrap();
        // Not mediaretain.service: the host's drop-ins for that name must not count here.
        let name = "mr-unit-test.service";
        let unit = dir.path().join(name);
        std::fs::write(
            &unit,
            "[Service]\nExecStart=/usr/bin/mediaretain run --config /etc/x.toml\n\
             ProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\nStateDirectory=mediaretain\n\
             ReadWritePaths=-/srv/a /home/u/rec\nReadOnlyPaths=/srv/a/ro\n\
             ReadWritePaths=-/tmp/x\n[Install]\nReadWritePaths=/opt\n",
        )
        .unwrap();
        let sb = Sandbox::read(&unit).unwrap();
        assert_eq!(sb.config.as_deref(), Some(Path::new("/etc/x.toml")));
        let a = |p: &str| sb.access(Path::new(p));
        assert_eq!(a("/srv/a/b"), Access::Writable);
        assert_eq!(a("/srv/a/ro/c"), Access::ReadOnly);
        assert_eq!(a("/srv/b"), Access::ReadOnly);
        assert_eq!(a("/opt/x"), Access::ReadOnly, "[Install] is not [Service]");
        assert_eq!(a("/home/u/rec/d"), Access::Writable);
        assert_eq!(a("/home/v"), Access::Inaccessible);
        assert_eq!(a("/tmp/x/y"), Access::PrivateTmp);
        assert_eq!(a("/var/lib/mediaretain"), Access::Writable);
        // An empty assignment in a drop-in resets the list.
        let d = dir.path().join(format!("{name}.d"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            d.join("z.conf"),
            "[Service]\nReadWritePaths=\nProtectHome=read-only\n",
        )
        .unwrap();
        let sb = Sandbox::read(&unit).unwrap();
        assert_eq!(sb.access(Path::new("/srv/a/b")), Access::ReadOnly);
        assert_eq!(sb.access(Path::new("/home/v")), Access::ReadOnly);
    }
}
