//! The `[[store]]` tables: local roots (which must not nest), S3 locations with their
//! node prefixes, shared stores and endpoints, and the offload targets whose key spaces
//! must not overlap.

use super::*;

impl Validator<'_> {
    /// Offload keys are `SOURCE/PATH` beneath the target's prefix, unique per local file
    /// within one target; two S3 stores whose key spaces overlap (same endpoint and bucket,
    /// one prefix inside the other) would let a copy land on another store's key.
    pub(super) fn check_offload_targets(
        &mut self,
        stores: &[Store],
        classes: &[Class],
        spans: &HashMap<String, Place>,
    ) {
        let targets: HashSet<&str> = classes
            .iter()
            .filter_map(|c| c.offload.as_ref().map(|o| o.to.as_str()))
            .collect();
        // By root: a node-prefixed store's keys are under PREFIX/NODE/.
        let space = |l: &S3Location| {
            let p = l.root.trim_matches('/');
            let p = if p.is_empty() {
                String::new()
            } else {
                format!("{p}/")
            };
            let endpoints: HashSet<String> = std::iter::once(&l.endpoint)
                .chain(&l.more_endpoints)
                .map(|e| e.trim_end_matches('/').to_string())
                .collect();
            (endpoints, l.bucket.clone(), p)
        };
        let s3: Vec<(&str, KeySpace)> = stores
            .iter()
            .filter_map(|s| s.s3.as_ref().map(|l| (s.name.as_str(), space(l))))
            .collect();
        let shared: HashSet<&str> = stores
            .iter()
            .filter(|s| s.s3.as_ref().is_some_and(|l| l.shared))
            .map(|s| s.name.as_str())
            .collect();
        for (i, (a, (ea, ba, pa))) in s3.iter().enumerate() {
            for (b, (eb, bb, pb)) in &s3[i + 1..] {
                // A shared store spans the node-prefixed stores of its bucket by design;
                // offloads never go to it (checked with the classes).
                if shared.contains(a) != shared.contains(b) {
                    continue;
                }
                // One cluster when they share an endpoint.
                let overlap = !ea.is_disjoint(eb)
                    && ba == bb
                    && (pa.starts_with(pb.as_str()) || pb.starts_with(pa.as_str()));
                if overlap && (targets.contains(a) || targets.contains(b)) {
                    let (src, span) = spans.get(*b).cloned().unwrap_or((0, 0..0));
                    self.cur = src;
                    self.err(
                        span,
                        format!("store {b:?}: its keys overlap those of store {a:?} (bucket {bb:?}, roots {pa:?} and {pb:?}), and offloaded copies go to one of them: give each S3 store a prefix of its own"),
                    );
                }
            }
        }
    }

    /// The `[[store]]`s of the current source, added to `stores`; `spans` holds where
    /// each store is named (for duplicates and errors found after all are read).
    pub(super) fn stores(
        &mut self,
        raw: Vec<raw::StoreTable>,
        stores: &mut Vec<Store>,
        spans: &mut HashMap<String, Place>,
    ) {
        for s in raw {
            let name = s.name.get_ref().clone();
            if name.is_empty() || name.contains([':', '/']) || name.trim() != name {
                self.err(s.name.span(), format!("store name {name:?} must be non-empty, without ':', '/' or surrounding spaces"));
            } else if let Some(first) = spans.get(&name) {
                let first = self.at(first);
                self.err(
                    s.name.span(),
                    format!("duplicate store name {name:?} (first defined at {first})"),
                );
            } else {
                spans.insert(name.clone(), (self.cur, s.name.span()));
            }
            let store = match s.kind {
                StoreKind::Local => self.local_store(&s, name, stores),
                StoreKind::S3 => self.s3_store(&s, name),
            };
            stores.extend(store);
        }
    }

    /// A `kind = "local"` store; `others` are the stores read before it.
    fn local_store(
        &mut self,
        s: &raw::StoreTable,
        name: String,
        others: &[Store],
    ) -> Option<Store> {
        let s3_keys = [
            ("endpoint", s.endpoint.as_ref().map(Spanned::span)),
            ("bucket", s.bucket.as_ref().map(Spanned::span)),
            ("region", s.region.as_ref().map(Spanned::span)),
            ("prefix", s.prefix.as_ref().map(Spanned::span)),
            (
                "credentials_file",
                s.credentials_file.as_ref().map(Spanned::span),
            ),
            (
                "virtual_hosted",
                s.virtual_hosted.as_ref().map(Spanned::span),
            ),
            ("allow_http", s.allow_http.as_ref().map(Spanned::span)),
            (
                "abort_uploads_after",
                s.abort_uploads_after.as_ref().map(Spanned::span),
            ),
            ("retry_timeout", s.retry_timeout.as_ref().map(Spanned::span)),
            ("node_prefix", s.node_prefix.as_ref().map(Spanned::span)),
            ("shared", s.shared.as_ref().map(Spanned::span)),
            (
                "remote_rules_node",
                s.remote_rules_node.as_ref().map(Spanned::span),
            ),
            ("rules_lease", s.rules_lease.as_ref().map(Spanned::span)),
        ];
        let span = s.name.span();
        for (k, at) in s3_keys {
            if let Some(at) = at {
                self.err(
                    at,
                    format!("store {name:?}: {k} is for kind = \"s3\" stores"),
                );
            }
        }
        let Some(root_spanned) = &s.root else {
            self.err(span, format!("store {name:?}: a local store needs root"));
            return None;
        };
        let root = self.resolve(root_spanned.get_ref());
        if let Some(problem) = self.fs_checks.then(|| root_problem(&root)).flatten() {
            self.err(
                root_spanned.span(),
                format!("store {name:?}: root {} {problem}", root.display()),
            );
        }
        let root = root.canonicalize().unwrap_or(root);
        // A file belongs to one store: pins, classes and confinement are per store.
        if let Some(other) = others.iter().find(|o: &&Store| {
            o.is_local() && (o.root.starts_with(&root) || root.starts_with(&o.root))
        }) {
            self.err(
                    root_spanned.span(),
                    format!("store {name:?}: root {} overlaps the root of store {:?} ({}); store roots must not nest", root.display(), other.name, other.root.display()),
                );
        }
        Some(Store {
            name,
            kind: s.kind,
            root,
            prune_empty_dirs: s
                .prune_empty_dirs
                .as_ref()
                .is_some_and(|p| *p.get_ref())
                .then_some(s.prune_grace),
            watch: s.watch,
            require_mount: s.require_mount.as_ref().map(|r| *r.get_ref()),
            s3: None,
        })
    }

    /// A `kind = "s3"` store.
    fn s3_store(&mut self, s: &raw::StoreTable, name: String) -> Option<Store> {
        let span = s.name.span();
        for (key, at) in [
            ("root", s.root.as_ref().map(Spanned::span)),
            (
                "prune_empty_dirs",
                s.prune_empty_dirs.as_ref().map(Spanned::span),
            ),
            ("require_mount", s.require_mount.as_ref().map(Spanned::span)),
        ] {
            if let Some(at) = at {
                self.err(at, format!("store {name:?}: {key} is for local stores; an S3 store has endpoint, bucket and prefix"));
            }
        }
        let (Some(endpoint), Some(bucket)) = (&s.endpoint, &s.bucket) else {
            self.err(
                span,
                format!("store {name:?}: an S3 store needs endpoint and bucket"),
            );
            return None;
        };
        let (endpoint_span, all) = (endpoint.span(), endpoint.get_ref().0.clone());
        let bucket = bucket.get_ref().clone();
        if all.is_empty() {
            self.err(
                endpoint_span.clone(),
                format!("store {name:?}: endpoint lists no URL"),
            );
        }
        for (i, endpoint) in all.iter().enumerate() {
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                self.err(endpoint_span.clone(), format!("store {name:?}: endpoint {endpoint:?} must start with https:// (or http:// for loopback or with allow_http)"));
            }
            let norm = |e: &str| e.trim_end_matches('/').to_string();
            if all[..i].iter().any(|e| norm(e) == norm(endpoint)) {
                self.err(
                    endpoint_span.clone(),
                    format!("store {name:?}: endpoint {endpoint:?} is listed twice"),
                );
            }
        }
        let mut all = all.into_iter();
        let endpoint = all.next().unwrap_or_default();
        let more_endpoints: Vec<String> = all.collect();
        let prefix = s
            .prefix
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_default();
        if prefix.starts_with('/') || prefix.split('/').any(|x| x == "..") {
            self.err(
                s.prefix.as_ref().map(Spanned::span).unwrap_or(span.clone()),
                format!("store {name:?}: prefix {prefix:?} must be relative, without '..'"),
            );
        }
        let credentials_file = s
            .credentials_file
            .as_ref()
            .map(|f| (f.span(), self.resolve(f.get_ref())));
        if let Some((at, f, Err(e))) = credentials_file
            .as_ref()
            .filter(|_| self.fs_checks)
            .map(|(at, f)| (at, f, std::fs::metadata(f)))
        {
            self.err(
                at.clone(),
                format!("store {name:?}: credentials_file {}: {e}", f.display()),
            );
        }
        let credentials_file = credentials_file.map(|(_, f)| f);
        let val = |v: &Option<Spanned<bool>>| v.as_ref().map(|v| *v.get_ref());
        let dur = |v: &Option<Spanned<Dur>>| v.as_ref().map(|v| *v.get_ref());
        let shared = val(&s.shared).unwrap_or(false);
        // A shared store spans every box's keys: it has no node level of its own.
        // Unset: on, but an upgraded box keeps the plain prefix its registry used.
        let node_prefix = val(&s.node_prefix)
            .unwrap_or_else(|| !shared && self.used.node_prefix(&name, prefix.trim_matches('/')));
        if shared && node_prefix {
            self.err(
                s.node_prefix.as_ref().map(Spanned::span).unwrap_or(span.clone()),
                format!("store {name:?}: a shared store spans the keys of every box: node_prefix must be false"),
            );
        }
        for (key, at) in [
            (
                "remote_rules_node",
                s.remote_rules_node.as_ref().map(Spanned::span),
            ),
            ("rules_lease", s.rules_lease.as_ref().map(Spanned::span)),
        ] {
            if let Some(at) = at.filter(|_| !shared) {
                self.err(
                    at,
                    format!("store {name:?}: {key} is for shared stores (shared = true)"),
                );
            }
        }
        if let Some(n) = &s.remote_rules_node
            && !crate::node::valid_node(n.get_ref())
        {
            self.err(
                n.span(),
                format!(
                    "store {name:?}: remote_rules_node {:?} is no valid node name",
                    n.get_ref()
                ),
            );
        }
        let rules_lease = dur(&s.rules_lease).unwrap_or_else(raw::d_rules_lease);
        if !(2..=3600).contains(&rules_lease.0.as_secs()) {
            self.err(
                s.rules_lease
                    .as_ref()
                    .map(Spanned::span)
                    .unwrap_or(span.clone()),
                format!("store {name:?}: rules_lease must be between 2s and 1h"),
            );
        }
        let base = prefix.trim_matches('/');
        let root = match (node_prefix, base.is_empty()) {
            (false, _) => base.to_string(),
            (true, true) => self.node.clone(),
            (true, false) => format!("{base}/{}", self.node),
        };
        Some(Store {
            name,
            kind: s.kind,
            root: PathBuf::new(),
            prune_empty_dirs: None,
            watch: false,
            require_mount: None,
            s3: Some(S3Location {
                endpoint,
                more_endpoints,
                region: s
                    .region
                    .as_ref()
                    .map(|r| r.get_ref().clone())
                    .unwrap_or_else(|| "us-east-1".into()),
                bucket,
                prefix,
                virtual_hosted: val(&s.virtual_hosted).unwrap_or(false),
                allow_http: val(&s.allow_http).unwrap_or(false),
                credentials_file,
                abort_uploads_after: dur(&s.abort_uploads_after)
                    .unwrap_or(Dur(std::time::Duration::from_secs(86400))),
                retry_timeout: dur(&s.retry_timeout)
                    .unwrap_or(Dur(std::time::Duration::from_secs(120))),
                node_prefix,
                root,
                shared,
                remote_rules_node: s.remote_rules_node.as_ref().map(|n| n.get_ref().clone()),
                rules_lease,
            }),
        })
    }
}

/// Why `root` cannot serve as a store root, if it cannot.
fn root_problem(root: &Path) -> Option<String> {
    match std::fs::metadata(root) {
        // A disk or share not there yet: the daemon runs the other stores and picks this
        // one up when it appears (docs/missing-roots.md).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(format!("is not accessible: {e}")),
        Ok(md) if !md.is_dir() => Some("is not a directory".into()),
        Ok(_) => std::fs::read_dir(root)
            .err()
            .map(|e| format!("is not readable: {e}")),
    }
}
