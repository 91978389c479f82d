//! Validation: the file as written (`raw`) becomes the [`Config`] model, every problem found
//! reported with its `FILE:LINE:COL` — all of them, not only the first. One method per
//! section (daemon, stores, classes, watchdog), then the checks across sections.
//! Every rule sits beside its message; a new section is one more method. The stores
//! (local roots, S3 locations and their keys, offload targets) are in stores.rs, the
//! classes in class.rs; here the validator itself, the daemon, dedupe, metrics, hooks and
//! watchdog sections. Sources: the main file and each `conf.d/` drop-in, each error located
//! in its own.

mod class;
mod stores;

use std::collections::HashMap;

use super::*;
/// One file being validated: the main config or a drop-in of `conf.d/`.
pub(super) struct Source<'a> {
    /// Locates its spans.
    pub locate: Locator<'a>,
    /// Its relative paths resolve against this directory (the file's own).
    pub base: PathBuf,
}

/// What a state directory says of the S3 roots its registry used: the default of an S3
/// store's `node_prefix` keeps an upgraded box's layout (its copies stay where they are),
/// and turns node prefixes on for a new box or a store new to this box.
enum Used {
    /// No registry there (a new box), or not looked at (no file-system checks).
    Nothing,
    /// A registry from before node prefixes: every S3 store used its plain prefix.
    Plain,
    /// The roots recorded by a start since ([`crate::node::ROOTS_FILE`]).
    Roots(HashMap<String, String>),
}

impl Used {
    fn read(state_dir: &Path) -> Used {
        match std::fs::read(state_dir.join(crate::node::ROOTS_FILE)) {
            Ok(b) => Used::Roots(serde_json::from_slice(&b).unwrap_or_default()),
            Err(_) if state_dir.join("registry.db").exists() => Used::Plain,
            Err(_) => Used::Nothing,
        }
    }

    /// The default of `node_prefix` for store `name` with plain prefix `base`: off where
    /// the store was used under `base`, else on.
    fn node_prefix(&self, name: &str, base: &str) -> bool {
        match self {
            Used::Nothing => true,
            Used::Plain => false,
            Used::Roots(r) => r.get(name).is_none_or(|root| root != base),
        }
    }
}

/// Where something was written: (index of its source, span).
type Place = (usize, Range<usize>);

struct Validator<'a> {
    sources: Vec<Source<'a>>,
    /// The source being read; spans given to [`Validator::err`] are in it.
    cur: usize,
    fs_checks: bool,
    diags: Vec<Diagnostic>,
    /// `[daemon] node`, for the roots of node-prefixed S3 stores.
    node: String,
    /// No `[daemon] node` and a host name that is no node name: an error only for a config
    /// with S3 stores (a box without them never uses its node name).
    unnamed: Option<(Range<usize>, String)>,
    /// What the state directory says of the S3 roots used before, for the default of
    /// `node_prefix` (see [`Used`]).
    used: Used,
}

impl Validator<'_> {
    fn err(&mut self, span: Range<usize>, msg: impl Into<String>) {
        let d = self.sources[self.cur].locate.at(span, msg.into());
        self.diags.push(d);
    }

    /// `FILE:LINE:COL` of `place`, for errors that name where else something is.
    fn at(&self, place: &Place) -> String {
        let d = self.sources[place.0]
            .locate
            .at(place.1.clone(), String::new());
        format!("{}:{}:{}", d.file.display(), d.line, d.col)
    }

    /// Makes `p` absolute against the config's directory, folding `.` and `..`.
    fn resolve(&self, p: &Path) -> PathBuf {
        normalize(&self.sources[self.cur].base.join(p))
    }

    /// Limits from `t`, unset keys taken from `inherit` (else the defaults), validated.
    fn limits(
        &mut self,
        t: &raw::VolumeTable,
        inherit: Option<&Limits>,
        span: Range<usize>,
        what: &str,
    ) -> Limits {
        let val = |p: &Option<Spanned<Percent>>| p.as_ref().map(|p| *p.get_ref());
        let l = Limits {
            enabled: t.enabled.or(inherit.map(|i| i.enabled)).unwrap_or(true),
            high: val(&t.high)
                .or(inherit.map(|i| i.high))
                .unwrap_or(raw::d_high()),
            low: val(&t.low)
                .or(inherit.map(|i| i.low))
                .unwrap_or(raw::d_low()),
            horizon: t
                .horizon
                .or(inherit.map(|i| i.horizon))
                .unwrap_or(Dur::ZERO),
            min_free: t.min_free.or(inherit.and_then(|i| i.min_free)),
            min_free_inodes: val(&t.min_free_inodes)
                .or(inherit.map(|i| i.min_free_inodes))
                .unwrap_or(raw::d_inodes()),
        };
        // At the key that makes the pair wrong: the one written here (low first).
        let at = |p: &Option<Spanned<Percent>>| p.as_ref().map(|p| p.span());
        if l.low.0 >= l.high.0 {
            self.err(
                at(&t.low).or(at(&t.high)).unwrap_or(span.clone()),
                format!("{what}: low ({}) must be below high ({})", l.low, l.high),
            );
        }
        if l.min_free_inodes.0 >= 50.0 {
            self.err(
                at(&t.min_free_inodes).unwrap_or(span),
                format!(
                    "{what}: min_free_inodes ({}) must be below 50%",
                    l.min_free_inodes
                ),
            );
        }
        l
    }

    fn validate(&mut self, raw: raw::File, drop_ins: Vec<raw::DropIn>, path: &Path) -> Config {
        let state_dir_span = raw.daemon.get_ref().state_dir.span();
        let socket_span = raw
            .daemon
            .get_ref()
            .socket
            .as_ref()
            .map(|s| s.span())
            .unwrap_or(state_dir_span.clone());
        let daemon = self.daemon(raw.daemon);
        // Stores of every file first: a class may name a store of another file.
        let mut stores = Vec::new();
        let mut store_spans = HashMap::new();
        let mut store_tables = vec![(0, raw.store)];
        let mut class_tables = vec![(0, raw.class)];
        let mut hook_tables = vec![(0, raw.hooks)];
        for (i, d) in drop_ins.into_iter().enumerate() {
            store_tables.push((i + 1, d.store));
            class_tables.push((i + 1, d.class));
            hook_tables.push((i + 1, d.hooks));
        }
        for (src, list) in store_tables {
            self.cur = src;
            self.stores(list, &mut stores, &mut store_spans);
        }
        self.cur = 0;
        if let Some((span, msg)) = self.unnamed.take()
            && stores.iter().any(|s| !s.is_local())
        {
            self.err(span, msg);
        }
        // Our own files must never be candidates for deletion.
        for (what, p, span) in [
            ("state_dir", &daemon.state_dir, &state_dir_span),
            ("socket", &daemon.socket, &socket_span),
        ] {
            if let Some(st) = stores
                .iter()
                .find(|st| st.is_local() && p.starts_with(&st.root))
            {
                self.err(
                    span.clone(),
                    format!("daemon.{what} {} is inside the root of store {:?}; keep mediaretain's own files outside every store", p.display(), st.name),
                );
            }
        }
        let mut names = HashMap::new();
        let mut classes = Vec::new();
        for (src, list) in class_tables {
            self.cur = src;
            for c in list {
                classes.push(self.class(c, &stores, &store_spans, &mut names));
            }
        }
        self.check_offload_targets(&stores, &classes, &store_spans);
        self.cur = 0;
        let watchdog = self.watchdog(raw.watchdog, &stores);
        let hooks = self.hooks(hook_tables, &stores);
        let metrics = raw.metrics.map(|m| self.metrics(m));
        let dedupe = raw.dedupe.map(|d| self.dedupe(d)).unwrap_or_default();
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        Config {
            path,
            drop_ins: Vec::new(),
            daemon,
            stores,
            classes,
            watchdog,
            hooks,
            metrics,
            dedupe,
        }
    }

    /// `[dedupe]`: `rate = "64MiB/s"` (or "unlimited").
    fn dedupe(&mut self, raw: Spanned<raw::DedupeTable>) -> DedupeSettings {
        let d = raw.into_inner();
        let Some(rate) = d.rate else {
            return DedupeSettings::default();
        };
        let text = rate.get_ref().trim();
        if text.eq_ignore_ascii_case("unlimited") {
            return DedupeSettings { rate: None };
        }
        let parsed = text
            .strip_suffix("/s")
            .ok_or_else(|| "a rate ends in \"/s\"".to_string())
            .and_then(|b| b.parse::<ByteSize>());
        match parsed {
            Ok(b) if b.0 > 0 => DedupeSettings { rate: Some(b.0) },
            Ok(_) => {
                self.err(
                    rate.span(),
                    "dedupe.rate must be above 0 (or \"unlimited\")",
                );
                DedupeSettings::default()
            }
            Err(e) => {
                self.err(
                    rate.span(),
                    format!("dedupe.rate {text:?} must be bytes per second, like \"64MiB/s\" or \"unlimited\" ({e})"),
                );
                DedupeSettings::default()
            }
        }
    }

    /// `[metrics]`: a TCP address, loopback unless `allow_remote = true` says otherwise
    /// (the metrics name stores, classes and mount points; there is no authentication).
    fn metrics(&mut self, raw: Spanned<raw::MetricsTable>) -> MetricsListen {
        let m = raw.into_inner();
        let listen = match m.listen.get_ref().parse::<std::net::SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.err(
                    m.listen.span(),
                    format!(
                        "metrics.listen {:?} must be an address and port, like \"127.0.0.1:9464\"",
                        m.listen.get_ref()
                    ),
                );
                std::net::SocketAddr::from(([127, 0, 0, 1], 0))
            }
        };
        if !listen.ip().is_loopback() && !m.allow_remote {
            self.err(
                m.listen.span(),
                format!("metrics.listen {listen} is not a loopback address: anyone who reaches it reads the metrics (store, class and volume names, sizes) without authentication; set metrics.allow_remote = true if that is intended"),
            );
        }
        MetricsListen { listen }
    }

    /// `[hooks]` of the main file (`tables[0]`) and the `[hooks.<dialect>]` tables of every
    /// file: a drop-in may map its server's events (not move the listener); a dialect
    /// mapped twice is an error naming both places. Without `[hooks] listen` in the main
    /// file, webhooks are off and the drop-ins' tables are only checked.
    fn hooks(
        &mut self,
        tables: Vec<(usize, Option<Spanned<raw::HooksTable>>)>,
        stores: &[Store],
    ) -> Option<Hooks> {
        let mut main: Option<Listener> = None;
        let mut servers = std::collections::BTreeMap::new();
        let mut seen: HashMap<Dialect, Place> = HashMap::new();
        for (src, t) in tables {
            let Some(t) = t else { continue };
            self.cur = src;
            let span = t.span();
            let h = t.into_inner();
            if src == 0 {
                main = self.listener(&h, span);
            } else if let Some(k) = h
                .listen
                .as_ref()
                .map(|l| l.span())
                .or(h.token.as_ref().map(|t| t.span()))
                .or(h.allow_users.as_ref().map(|t| t.span()))
                .or(h.allow_uids.as_ref().map(|t| t.span()))
                .or(h.confirm.as_ref().map(|t| t.span()))
            {
                self.err(k, "hooks.listen and hooks.token belong in the main config file, as do allow_users, allow_uids and confirm (one listener for every server); a drop-in may only add [hooks.<dialect>] tables");
            }
            for (d, t) in [
                (Dialect::NginxRtmp, h.nginx_rtmp),
                (Dialect::Srs, h.srs),
                (Dialect::Zlmediakit, h.zlmediakit),
                (Dialect::Owncast, h.owncast),
            ] {
                let Some(t) = t else { continue };
                if let Some(first) = seen.get(&d) {
                    let at = self.at(first);
                    self.err(
                        t.span(),
                        format!("[hooks.{}] is defined twice: first at {at}", d.name()),
                    );
                    continue;
                }
                seen.insert(d, (src, t.span()));
                let server = self.server_hooks(d, t, stores);
                servers.insert(d, server);
            }
        }
        self.cur = 0;
        let l = main?;
        Some(Hooks {
            listen: l.listen,
            token: l.token,
            allow_uids: l.allow_uids,
            confirm: l.confirm,
            servers,
        })
    }

    /// `[hooks] listen`, `token`, `allow_users`, `allow_uids` and `confirm` of the main file
    /// (None: no listener, webhooks off).
    fn listener(&mut self, h: &raw::HooksTable, span: Range<usize>) -> Option<Listener> {
        let Some(l) = &h.listen else {
            self.err(span, "[hooks] needs listen = \"ADDRESS:PORT\" (like \"127.0.0.1:8089\"), where media servers post their events");
            return None;
        };
        let listen = match l.get_ref().parse::<std::net::SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.err(
                    l.span(),
                    format!(
                        "hooks.listen {:?} must be an address and port, like \"127.0.0.1:8089\"",
                        l.get_ref()
                    ),
                );
                std::net::SocketAddr::from(([127, 0, 0, 1], 0))
            }
        };
        let token = h.token.as_ref().map(|t| t.get_ref().clone());
        if let Some(t) = &h.token {
            let ok = t.get_ref().len() >= 16
                && t.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
            if !ok {
                self.err(t.span(), "hooks.token must be at least 16 characters of A-Z, a-z, 0-9, '-', '_', '.', '~' (it travels in the URL path)");
            }
        }
        if !listen.ip().is_loopback() && token.is_none() {
            self.err(
                l.span(),
                format!("hooks.listen {listen} is not a loopback address: set hooks.token too, so that only your media servers can post events"),
            );
        }
        // Root may post anyway (it can read the token); the rest by name or number.
        let mut allow_uids = vec![0];
        if let Some(names) = &h.allow_users {
            for name in names.get_ref() {
                match crate::access::user_uid(name) {
                    Ok(Some(uid)) => allow_uids.push(uid),
                    Ok(None) => self.err(
                        names.span(),
                        format!("hooks.allow_users: no such user {name:?} (a user whose media server posts hooks from this machine)"),
                    ),
                    Err(e) => self.err(
                        names.span(),
                        format!("hooks.allow_users: user {name:?} could not be looked up: {e}"),
                    ),
                }
            }
        }
        if let Some(uids) = &h.allow_uids {
            allow_uids.extend(uids.get_ref());
        }
        allow_uids.sort_unstable();
        allow_uids.dedup();
        let confirm = h
            .confirm
            .as_ref()
            .map_or(Dur(std::time::Duration::from_secs(5)), |c| *c.get_ref());
        if let Some(c) = &h.confirm
            && !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(3600))
                .contains(&c.get_ref().0)
        {
            self.err(
                c.span(),
                format!("hooks.confirm {} must be between 1s and 1h: an announced file must stay unchanged that long before it counts as complete", c.get_ref()),
            );
        }
        Some(Listener {
            listen,
            token,
            allow_uids,
            confirm,
        })
    }

    /// One `[hooks.<dialect>]` table, resolved against its own file; each error at the key
    /// at fault.
    fn server_hooks(
        &mut self,
        d: Dialect,
        t: Spanned<raw::ServerHooksTable>,
        stores: &[Store],
    ) -> ServerHooks {
        let t = t.into_inner();
        let what = format!("hooks.{}", d.name());
        let playlists_span = t.playlists.as_ref().map(|p| p.span()).unwrap_or(0..0);
        let playlists = t.playlists.map(Spanned::into_inner).unwrap_or_default();
        match &t.store {
            Some(s)
                if !stores
                    .iter()
                    .any(|x| &x.name == s.get_ref() && x.is_local()) =>
            {
                self.err(
                    s.span(),
                    format!("{what}: store {:?} is not a local store", s.get_ref()),
                )
            }
            None if !playlists.is_empty() => self.err(
                playlists_span.clone(),
                format!("{what}: playlists need the store they are in (store = \"…\")"),
            ),
            _ => {}
        }
        for p in &playlists {
            let probe = template::fill(p, "a", "s");
            if p.starts_with('/') || glob(&probe).is_err() {
                self.err(playlists_span.clone(), format!("{what}: playlist pattern {p:?} must be a glob relative to the store root ({{app}} and {{stream}} stand for the event's)"));
            }
        }
        let mut paths = Vec::new();
        let paths_span = t.paths.as_ref().map(|p| p.span()).unwrap_or(0..0);
        for (from, to) in t.paths.map(Spanned::into_inner).unwrap_or_default() {
            let to = self.resolve(&to);
            if !from.starts_with('/') {
                self.err(paths_span.clone(), format!("{what}: paths key {from:?} must be absolute (the path as the server sees it)"));
            }
            paths.push((PathBuf::from(from), to));
        }
        // The longest prefix first, so that the most specific mapping applies.
        paths.sort_by_key(|(f, _)| std::cmp::Reverse(f.as_os_str().len()));
        ServerHooks {
            store: t.store.map(Spanned::into_inner),
            playlists,
            paths,
        }
    }

    /// `[daemon]`.
    fn daemon(&mut self, raw: Spanned<raw::DaemonTable>) -> Daemon {
        let dspan = raw.span();
        let d = raw.into_inner();
        let (max_files, files_span, max_bytes) = match d.max_delete_per_pass {
            Some(g) => {
                let span = g.span();
                let g = g.into_inner();
                match g.files {
                    Some(f) => (*f.get_ref(), f.span(), g.bytes),
                    None => (raw::d_files(), span, g.bytes),
                }
            }
            None => (raw::d_files(), dspan.clone(), raw::d_bytes()),
        };
        let state_dir = self.resolve(d.state_dir.get_ref());
        if self.fs_checks {
            self.used = Used::read(&state_dir);
        }
        if let Some(md) = std::fs::metadata(&state_dir)
            .ok()
            .filter(|_| self.fs_checks)
        {
            if !md.is_dir() {
                self.err(
                    d.state_dir.span(),
                    format!("state_dir {} is not a directory", state_dir.display()),
                );
            } else if rustix::fs::access(&state_dir, rustix::fs::Access::WRITE_OK).is_err() {
                self.err(
                    d.state_dir.span(),
                    format!("state_dir {} is not writable", state_dir.display()),
                );
            }
        }
        let socket = d
            .socket
            .as_ref()
            .map(|s| self.resolve(s.get_ref()))
            .unwrap_or_else(|| state_dir.join("control.sock"));
        if let Some(g) = d.socket_group.as_ref().filter(|_| self.fs_checks)
            && let Err(e) = crate::access::group_gid(g.get_ref())
        {
            self.err(g.span(), e.to_string());
        }
        if max_files == 0 {
            self.err(files_span, "max_delete_per_pass.files must be at least 1");
        }
        let interval = |v: &Option<Spanned<Dur>>, default: Dur| match v {
            Some(v) => (*v.get_ref(), v.span()),
            None => (default, dspan.clone()),
        };
        let (scan_interval, scan_span) = interval(&d.scan_interval, raw::d_scan());
        let (gc_interval, gc_span) = interval(&d.gc_interval, raw::d_gc());
        let (clock_tolerance, tol_span) = interval(&d.clock_tolerance, raw::d_clock_tolerance());
        let (clock_hold, hold_span) = interval(&d.clock_hold, raw::d_clock_hold());
        let (fleet_heartbeat, beat_span) = interval(&d.fleet_heartbeat, raw::d_fleet_heartbeat());
        let node = match &d.node {
            Some(n) => {
                if !crate::node::valid_node(n.get_ref()) {
                    self.err(n.span(), format!("daemon.node {:?} must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", n.get_ref()));
                }
                n.get_ref().clone()
            }
            None => {
                let host = crate::node::host_name();
                if !crate::node::valid_node(&host) {
                    self.unnamed = Some((
                        dspan.clone(),
                        format!(
                            "daemon.node is not set and the host name {host:?} is no valid node name (1 to 63 letters, digits, '.', '_' or '-'), which the S3 stores' keys and claim markers need: set [daemon] node"
                        ),
                    ));
                }
                host
            }
        };
        if fleet_heartbeat.0.as_secs() < 1 || fleet_heartbeat.0.as_secs() > 3600 {
            self.err(
                beat_span,
                "daemon.fleet_heartbeat must be between 1s and 1h",
            );
        }
        self.node = node.clone();
        let daemon = Daemon {
            state_dir,
            socket,
            scan_interval,
            gc_interval,
            max_delete_files: max_files,
            max_delete_bytes: max_bytes,
            audit_retention: d.audit_retention,
            audit_max_records: d.audit_max_records.max(1),
            socket_group: d.socket_group.map(Spanned::into_inner),
            max_leases_per_uid: d.max_leases_per_uid,
            clock_tolerance,
            clock_hold,
            node,
            fleet_heartbeat,
        };
        if clock_tolerance.0.as_secs() < 10 || clock_tolerance.0.as_secs() > 86_400 {
            self.err(
                tol_span,
                "daemon.clock_tolerance must be between 10s and 1d",
            );
        }
        if clock_hold.0.as_secs() > 30 * 86_400 {
            self.err(hold_span, "daemon.clock_hold must be at most 30d");
        }
        for (name, v, span, min) in [
            ("scan_interval", scan_interval, scan_span, 1),
            ("gc_interval", gc_interval, gc_span, 1),
        ] {
            if v.0.as_secs() < min || v.0.as_secs() > MAX_INTERVAL_SECS {
                self.err(
                    span,
                    format!("daemon.{name} must be between {min}s and 365d"),
                );
            }
        }
        daemon
    }

    /// `[watchdog]` and its `[[watchdog.volume]]`s.
    fn watchdog(&mut self, raw: Option<Spanned<raw::Watchdog>>, stores: &[Store]) -> Watchdog {
        let (wspan, w) = match raw {
            Some(w) => (w.span(), w.into_inner()),
            None => (0..0, raw::Watchdog::default()),
        };
        let interval = w
            .interval
            .as_ref()
            .map(|i| *i.get_ref())
            .unwrap_or(raw::d_interval());
        if interval.0.is_zero() || interval.0.as_secs() > 3600 {
            self.err(
                w.interval
                    .as_ref()
                    .map(Spanned::span)
                    .unwrap_or(wspan.clone()),
                "watchdog: interval must be above 0s and at most 1h",
            );
        }
        let base = raw::VolumeTable {
            path: Spanned::new(0..0, PathBuf::new()),
            enabled: Some(w.enabled),
            high: w.high.clone(),
            low: w.low.clone(),
            horizon: Some(w.horizon),
            min_free: w.min_free,
            min_free_inodes: w.min_free_inodes.clone(),
        };
        let limits = self.limits(&base, None, wspan.clone(), "watchdog");
        let mut volumes: Vec<VolumeLimits> = Vec::new();
        for v in &w.volume {
            let span = v.span();
            let v = v.get_ref();
            let path = self.resolve(v.path.get_ref());
            let what = format!("watchdog.volume {}", path.display());
            if self.fs_checks {
                match std::fs::metadata(&path) {
                    Err(e) => self.err(v.path.span(), format!("{what}: {e}")),
                    Ok(md) => {
                        use std::os::unix::fs::MetadataExt;
                        let dev_of = |p: &Path| std::fs::metadata(p).ok().map(|m| m.dev());
                        if !stores
                            .iter()
                            .any(|s| s.is_local() && dev_of(&s.root) == Some(md.dev()))
                        {
                            self.err(
                                v.path.span(),
                                format!("{what}: no local store lies on this volume"),
                            );
                        }
                        if volumes.iter().any(|o| dev_of(&o.path) == Some(md.dev())) {
                            self.err(
                                v.path.span(),
                                format!(
                                    "{what}: another [[watchdog.volume]] names the same volume"
                                ),
                            );
                        }
                    }
                }
            }
            let limits = self.limits(v, Some(&limits), span, &what);
            volumes.push(VolumeLimits { path, limits });
        }
        Watchdog {
            interval,
            limits,
            volumes,
        }
    }
}

/// Validates `raw`, read from `path`, and the `drop_ins` merged after it: `sources[0]` is
/// the main file, `sources[i]` the i-th drop-in. With `fs_checks` false, nothing on this
/// machine is looked at.
pub(super) fn validate(
    raw: raw::File,
    drop_ins: Vec<raw::DropIn>,
    sources: Vec<Source<'_>>,
    path: &Path,
    fs_checks: bool,
) -> Result<Config, Vec<Diagnostic>> {
    let mut v = Validator {
        sources,
        cur: 0,
        fs_checks,
        diags: Vec::new(),
        node: String::new(),
        unnamed: None,
        used: Used::Nothing,
    };
    let cfg = v.validate(raw, drop_ins, path);
    if v.diags.is_empty() {
        Ok(cfg)
    } else {
        Err(v.diags)
    }
}

/// `[hooks]` of the main file, checked.
struct Listener {
    listen: std::net::SocketAddr,
    token: Option<String>,
    allow_uids: Vec<u32>,
    confirm: Dur,
}

/// An S3 store's key space: its endpoints (one cluster), bucket and prefix (`p/` or "").
type KeySpace = (HashSet<String>, String, String);
