//! Native bucket lifecycle as a backstop (issue 28 item 3): the remote rules of an S3 store
//! that the store can enforce itself, compiled into its bucket's lifecycle configuration, so
//! that a bucket whose boxes all died still expires.
//!
//! What compiles: a class of the store whose every `match` is a literal prefix followed by
//! `/**` (or `**`, the whole store), with no `exclude`, no earlier class of the store that
//! could claim keys under that prefix (first match wins; the store cannot tell them apart),
//! and an age limit (`ttl` / `keep_for`) counted from the mtime — for an object, its upload
//! time. It becomes `Expiration { Days = ceil(limit / 1 day) }` filtered by the store root
//! plus the literal prefix: stores run expiry at or after the midnight (UTC) following
//! upload + Days, so never before our own rule. The store's `abort_uploads_after` becomes
//! `AbortIncompleteMultipartUpload { DaysAfterInitiation = ceil }` over the whole root.
//! Everything else (count and size budgets, wildcard globs, excludes, `first_seen` ages)
//! stays mediaretain's alone and is listed with the reason.
//!
//! The store sees no pins and no leases: a pinned object under a compiled prefix would be
//! expired by it. `plan` and `check` name each one; `apply` refuses while there is one
//! (or while the pins are not known) unless the operator says `--expire-pinned`.
//!
//! Rule IDs are `mediaretain:OWNER:CLASS` (`#N` after it for the N-th of several `match`
//! globs) and `mediaretain:OWNER:STORE:abort-uploads`. `apply` replaces only this store's
//! rules of this owner — the rules it would write, and any other `mediaretain:OWNER:` rule
//! filtered within the store's root — and keeps every other rule of the bucket byte for
//! byte (other boxes', other tools').
//!
//! The lifecycle API is reached through [`S3Store::bucket_subresource`]: a URL presigned
//! by object_store's own SigV4 with `Content-MD5` signed into it (AWS requires it for
//! PutBucketLifecycleConfiguration; Garage 2.5.0 and moto accept it), so no second signing
//! implementation is needed.
//!
//! One file (about 700 lines of code, then its tests): compiling, the bucket's XML, the
//! merge that keeps other tools' rules and the drift report share the rule model; the
//! command's output is cli/lifecycle.rs.

use std::fmt::Write as _;

use md5::{Digest, Md5};
use object_store::{HeaderMap, HeaderValue};
use quick_xml::events::Event;
use serde::Serialize;

use crate::config::{AgeFrom, Config, S3Location};
use crate::store::s3::S3Store;
use crate::store::{Store, StoreError};
use crate::units::Dur;

/// Every rule ID we write starts with this.
pub const ID_PREFIX: &str = "mediaretain:";

/// The most rules AWS S3 takes in one bucket lifecycle configuration.
pub const MAX_RULES: usize = 1000;

/// The longest rule ID AWS S3 takes.
const MAX_ID: usize = 255;

/// One day, the stores' unit of lifecycle time.
const DAY: u128 = 86_400 * 1_000_000_000;

/// What can go wrong, each naming the store.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No store of that name, or not an S3 store.
    #[error("{0}")]
    BadStore(String),
    /// A request to the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store answered something we cannot read or did not expect.
    #[error("store {store:?}: {op}: {detail}")]
    Answer {
        /// Store name.
        store: String,
        /// The request.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// What a native rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "days", rename_all = "snake_case")]
pub enum Action {
    /// `Expiration { Days }`: objects this many days after their upload.
    Expire(u64),
    /// `AbortIncompleteMultipartUpload { DaysAfterInitiation }`.
    AbortUploads(u64),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, d, from) = match self {
            Action::Expire(d) => ("expire objects", d, "their upload"),
            Action::AbortUploads(d) => ("abort incomplete uploads", d, "they began"),
        };
        write!(
            f,
            "{what} {d} day{} after {from}",
            if *d == 1 { "" } else { "s" }
        )
    }
}

/// One rule of the bucket's lifecycle configuration that we write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NativeRule {
    /// `mediaretain:OWNER:CLASS`.
    pub id: String,
    /// The key prefix it filters by (store root + the class's literal prefix).
    pub prefix: String,
    /// What it does.
    #[serde(flatten)]
    pub action: Action,
    /// The class (None: the store's `abort_uploads_after`).
    pub class: Option<String>,
    /// The limit it comes from, as the config writes it (`keep_for = "36h"`).
    pub from: String,
}

/// A limit the store cannot enforce, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotCompiled {
    /// The class.
    pub class: String,
    /// Which of its limits (`keep_for = "7d"`, `max_count = 3`), or `class` for all.
    pub limit: String,
    /// Why the store cannot enforce it.
    pub reason: String,
}

/// A pinned object that a compiled rule would expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pinned {
    /// Its key relative to the store root (`STORE:KEY` names it).
    pub key: String,
    /// The rule that would expire it.
    pub rule: String,
}

/// The native rules one S3 store's config implies.
#[derive(Debug, Clone, Serialize)]
pub struct Compiled {
    /// The store.
    pub store: String,
    /// Its bucket.
    pub bucket: String,
    /// Its root in the bucket (`box1/`, `` for the whole bucket).
    pub root: String,
    /// Who the rules belong to (the `OWNER` of their IDs).
    pub owner: String,
    /// The rules to write.
    pub rules: Vec<NativeRule>,
    /// What stays mediaretain's alone.
    pub not_compiled: Vec<NotCompiled>,
}

/// The owner in rule IDs: this box's node for its own store, the store's name for a shared
/// one (every box compiles the same rules for it, so they are one set, not one per box).
pub fn owner(cfg: &Config, store: &str) -> String {
    match cfg.store(store).and_then(|s| s.s3.as_ref()) {
        Some(loc) if !loc.shared => cfg.daemon.node.clone(),
        _ => store.to_string(),
    }
}

/// The store's root in its bucket: `PREFIX/NODE/` with `node_prefix`, else `PREFIX/`
/// (nothing for the whole bucket).
pub fn root(loc: &S3Location) -> String {
    let p = loc.root.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

/// Whole days, rounded up, at least one (a store's smallest lifecycle time).
pub fn days(d: Dur) -> u64 {
    (d.0.as_nanos().div_ceil(DAY) as u64).max(1)
}

/// The literal text of `glob` before its first special character.
fn literal_head(glob: &str) -> &str {
    let end = glob
        .find(['*', '?', '[', ']', '{', '}', '\\', '!'])
        .unwrap_or(glob.len());
    &glob[..end]
}

/// The key prefix (relative to the root) that `glob` matches exactly, when it is a literal
/// prefix followed by `/**` (`rec/**` → `rec/`), or `**` (the whole store → ``).
fn literal_prefix(glob: &str) -> Option<String> {
    if glob == "**" {
        return Some(String::new());
    }
    let head = glob.strip_suffix("/**")?;
    (!head.is_empty() && literal_head(head) == head && !head.starts_with('/'))
        .then(|| format!("{head}/"))
}

/// Compiles the remote rules of S3 store `store` of `cfg`.
pub fn compile(cfg: &Config, store: &str) -> Result<Compiled, LifecycleError> {
    let Some(s) = cfg.store(store) else {
        let known: Vec<&str> = cfg
            .stores
            .iter()
            .filter(|s| s.s3.is_some())
            .map(|s| s.name.as_str())
            .collect();
        return Err(LifecycleError::BadStore(format!(
            "no store {store:?} in the config (S3 stores: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let Some(loc) = &s.s3 else {
        return Err(LifecycleError::BadStore(format!(
            "store {store:?} is a local store: bucket lifecycle rules are for S3 stores"
        )));
    };
    let owner = owner(cfg, store);
    let root = root(loc);
    let mut out = Compiled {
        store: store.into(),
        bucket: loc.bucket.clone(),
        root: root.clone(),
        owner: owner.clone(),
        rules: Vec::new(),
        not_compiled: Vec::new(),
    };
    let classes: Vec<_> = cfg.classes.iter().filter(|c| c.store == store).collect();
    for (i, c) in classes.iter().enumerate() {
        let mut skip = |limit: String, reason: String| {
            out.not_compiled.push(NotCompiled {
                class: c.name.clone(),
                limit,
                reason,
            })
        };
        if let Some(n) = c.max_count {
            skip(
                format!("max_count = {n}"),
                "the store counts no objects: only mediaretain applies a count budget".into(),
            );
        }
        if let Some(b) = c.max_total {
            skip(
                format!("max_total = \"{b}\""),
                "the store sums no sizes: only mediaretain applies a size budget".into(),
            );
        }
        let (name, limit) = match (c.ttl, c.keep_for) {
            (Some(t), _) => ("ttl", t),
            (None, Some(k)) => ("keep_for", k),
            (None, None) => continue, // budgets only: said above
        };
        let what = format!("{name} = \"{limit}\"");
        let mut why = Vec::new();
        if c.age_from == AgeFrom::FirstSeen {
            why.push(
                "age_from = \"first_seen\": the store counts from the upload, which may be earlier"
                    .to_string(),
            );
        }
        if !c.exclude.is_empty() {
            why.push("it has exclude globs: a store's filter cannot leave keys out".into());
        }
        let mut prefixes = Vec::new();
        for p in &c.patterns {
            match literal_prefix(p) {
                Some(pre) => prefixes.push(pre),
                None => why.push(format!(
                    "match {p:?} is not a literal prefix followed by /** (the store filters by prefix only)"
                )),
            }
        }
        // First match wins: keys under the prefix that an earlier class could claim keep
        // that class's rule, which the store cannot tell apart.
        for pre in &prefixes {
            let earlier = classes[..i].iter().find(|e| {
                e.patterns.iter().any(|q| {
                    let h = literal_head(q);
                    h.starts_with(pre.as_str()) || pre.starts_with(h)
                })
            });
            if let Some(e) = earlier {
                why.push(format!(
                    "keys under {pre:?} may belong to the earlier class {:?} (first match wins)",
                    e.name
                ));
            }
        }
        if !why.is_empty() {
            skip(what, why.join("; "));
            continue;
        }
        let several = prefixes.len() > 1;
        for (n, pre) in prefixes.iter().enumerate() {
            let mut id = format!("{ID_PREFIX}{owner}:{}", c.name);
            if several {
                let _ = write!(id, "#{}", n + 1);
            }
            if id.len() > MAX_ID {
                out.not_compiled.push(NotCompiled {
                    class: c.name.clone(),
                    limit: what.clone(),
                    reason: format!("its rule ID would be longer than {MAX_ID} characters"),
                });
                continue;
            }
            out.rules.push(NativeRule {
                id,
                prefix: format!("{root}{pre}"),
                action: Action::Expire(days(limit)),
                class: Some(c.name.clone()),
                from: what.clone(),
            });
        }
    }
    out.rules.push(NativeRule {
        id: format!("{ID_PREFIX}{owner}:{store}:abort-uploads"),
        prefix: root,
        action: Action::AbortUploads(days(loc.abort_uploads_after)),
        class: None,
        from: format!("abort_uploads_after = \"{}\"", loc.abort_uploads_after),
    });
    Ok(out)
}

impl Compiled {
    /// Whether a rule of the bucket is this store's and this owner's: one we would write,
    /// or another `mediaretain:OWNER:` rule filtered within the store's root (a class since
    /// removed or no longer compiled).
    pub fn owns(&self, r: &BucketRule) -> bool {
        let Some(id) = &r.id else { return false };
        self.rules.iter().any(|w| &w.id == id)
            || (id.starts_with(&format!("{ID_PREFIX}{}:", self.owner))
                && r.prefix.starts_with(&self.root))
    }

    /// The pinned objects (keys relative to the root) a compiled expiry would take.
    pub fn pinned<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> Vec<Pinned> {
        let mut out = Vec::new();
        for key in keys {
            let full = format!("{}{key}", self.root);
            if let Some(r) = self
                .rules
                .iter()
                .find(|r| matches!(r.action, Action::Expire(_)) && full.starts_with(&r.prefix))
            {
                out.push(Pinned {
                    key: key.to_string(),
                    rule: r.id.clone(),
                });
            }
        }
        out
    }

    /// How the bucket's rules differ from what the config implies.
    pub fn drift(&self, bucket: &[BucketRule]) -> Vec<Drift> {
        let mut out = Vec::new();
        for want in &self.rules {
            match bucket.iter().find(|r| r.id.as_deref() == Some(&want.id)) {
                None => out.push(Drift {
                    id: want.id.clone(),
                    kind: DriftKind::Missing,
                    want: Some(describe(want)),
                    found: None,
                }),
                Some(got) if !got.is(want) => out.push(Drift {
                    id: want.id.clone(),
                    kind: DriftKind::Different,
                    want: Some(describe(want)),
                    found: Some(got.describe()),
                }),
                Some(_) => {}
            }
        }
        for got in bucket.iter().filter(|r| self.owns(r)) {
            let id = got.id.clone().unwrap_or_default();
            if !self.rules.iter().any(|w| w.id == id) {
                out.push(Drift {
                    id,
                    kind: DriftKind::Extra,
                    want: None,
                    found: Some(got.describe()),
                });
            }
        }
        out
    }

    /// The new configuration: the bucket's rules that are not ours, unchanged and in their
    /// order, then ours. None when that leaves no rule (the configuration is deleted).
    pub fn merged(&self, bucket: &[BucketRule]) -> Option<String> {
        let foreign: Vec<_> = bucket.iter().filter(|r| !self.owns(r)).collect();
        if foreign.is_empty() && self.rules.is_empty() {
            return None;
        }
        let mut x = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
        );
        for r in foreign {
            x.push_str(&r.raw);
        }
        for r in &self.rules {
            x.push_str(&render(r));
        }
        x.push_str("</LifecycleConfiguration>\n");
        Some(x)
    }
}

/// A rule as one line of text.
fn describe(r: &NativeRule) -> String {
    format!("{} under {:?}", r.action, r.prefix)
}

/// One rule as the lifecycle XML writes it.
fn render(r: &NativeRule) -> String {
    use quick_xml::escape::escape;
    let action = match r.action {
        Action::Expire(d) => format!("<Expiration><Days>{d}</Days></Expiration>"),
        Action::AbortUploads(d) => format!(
            "<AbortIncompleteMultipartUpload><DaysAfterInitiation>{d}</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
        ),
    };
    format!(
        "<Rule><ID>{}</ID><Filter><Prefix>{}</Prefix></Filter><Status>Enabled</Status>{action}</Rule>",
        escape(r.id.as_str()),
        escape(r.prefix.as_str())
    )
}

/// How one of our rules differs from the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The config implies it; the bucket lacks it.
    Missing,
    /// The bucket has it, otherwise than the config implies.
    Different,
    /// The bucket has a rule of ours the config no longer implies.
    Extra,
}

/// One difference between the bucket and the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The rule ID.
    pub id: String,
    /// What is wrong.
    pub kind: DriftKind,
    /// What the config implies.
    pub want: Option<String>,
    /// What the bucket has.
    pub found: Option<String>,
}

/// A rule of the bucket's configuration, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRule {
    /// Its XML, byte for byte (written back unchanged when it is not ours).
    pub raw: String,
    /// `ID`.
    pub id: Option<String>,
    /// `Status`.
    pub status: String,
    /// `Filter/Prefix` (or the legacy `Prefix`); `` for none.
    pub prefix: String,
    /// `Expiration/Days`.
    pub expire_days: Option<String>,
    /// `AbortIncompleteMultipartUpload/DaysAfterInitiation`.
    pub abort_days: Option<String>,
    /// Anything else it says (`Filter/And/Tag/Key`, `Transition/Days`…).
    pub other: Vec<String>,
}

impl BucketRule {
    /// Whether it is exactly rule `want`.
    fn is(&self, want: &NativeRule) -> bool {
        let (e, a) = match want.action {
            Action::Expire(d) => (Some(d.to_string()), None),
            Action::AbortUploads(d) => (None, Some(d.to_string())),
        };
        self.status == "Enabled"
            && self.prefix == want.prefix
            && self.expire_days == e
            && self.abort_days == a
            && self.other.is_empty()
    }

    /// The rule as one line of text.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = &self.expire_days {
            parts.push(format!("expire objects {d} days after their upload"));
        }
        if let Some(d) = &self.abort_days {
            parts.push(format!(
                "abort incomplete uploads {d} days after they began"
            ));
        }
        parts.extend(self.other.iter().map(|o| format!("also {o}")));
        if parts.is_empty() {
            parts.push("no action".into());
        }
        format!(
            "{} under {:?}{}",
            parts.join(", "),
            self.prefix,
            if self.status == "Enabled" {
                String::new()
            } else {
                format!(" (status {:?})", self.status)
            }
        )
    }
}

/// Reads a bucket's lifecycle configuration (GetBucketLifecycleConfiguration's answer).
pub fn parse(xml: &str) -> Result<Vec<BucketRule>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut rules = Vec::new();
    // Element names below the document element; the rule being read and its leaves.
    let mut path: Vec<String> = Vec::new();
    let mut rule: Option<(usize, Vec<(String, String)>)> = None;
    let mut text = String::new();
    let mut had_child = false;
    loop {
        let before = reader.buffer_position() as usize;
        let ev = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.error_position()))?;
        match ev {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if path.len() == 1 && name == "Rule" {
                    rule = Some((before, Vec::new()));
                }
                path.push(name);
                text.clear();
                had_child = false;
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if let Some((_, leaves)) = &mut rule {
                    let mut p = path[2..].to_vec();
                    p.push(name);
                    leaves.push((p.join("/"), String::new()));
                }
                had_child = true;
            }
            Event::Text(t) => {
                text.push_str(&t.decode().map_err(|e| e.to_string())?);
            }
            Event::CData(t) => {
                text.push_str(&t.decode().map_err(|e| e.to_string())?);
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_string()
                    }
                };
                text.push_str(&c);
            }
            Event::End(_) => {
                if path.len() == 2 {
                    if let Some((start, leaves)) = rule.take() {
                        let end = reader.buffer_position() as usize;
                        rules.push(rule_of(xml[start..end].to_string(), leaves));
                    }
                } else if path.len() > 2
                    && let Some((_, leaves)) = &mut rule
                    && !had_child
                {
                    leaves.push((path[2..].join("/"), text.trim().to_string()));
                }
                path.pop();
                text.clear();
                had_child = true;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(rules)
}

/// A rule from its XML and its leaves (`Filter/Prefix` → text).
fn rule_of(raw: String, leaves: Vec<(String, String)>) -> BucketRule {
    let mut r = BucketRule {
        raw,
        id: None,
        status: String::new(),
        prefix: String::new(),
        expire_days: None,
        abort_days: None,
        other: Vec::new(),
    };
    for (k, v) in leaves {
        match k.as_str() {
            "ID" => r.id = Some(v),
            "Status" => r.status = v,
            "Filter/Prefix" | "Prefix" => r.prefix = v,
            "Filter" => {}
            "Expiration/Days" => r.expire_days = Some(v),
            "AbortIncompleteMultipartUpload/DaysAfterInitiation" => r.abort_days = Some(v),
            _ => r.other.push(if v.is_empty() {
                k
            } else {
                format!("{k} = {v}")
            }),
        }
    }
    r
}

/// Reads the bucket's lifecycle rules (none when it has no configuration).
pub async fn read(s3: &S3Store) -> Result<Vec<BucketRule>, LifecycleError> {
    const OP: &str = "GetBucketLifecycleConfiguration";
    let a = s3
        .bucket_subresource(
            reqwest::Method::GET,
            "lifecycle",
            HeaderMap::new(),
            None,
            OP,
        )
        .await?;
    let bad = |detail: String| LifecycleError::Answer {
        store: s3.name().to_string(),
        op: OP,
        detail,
    };
    match a.status {
        200 => parse(&a.body).map_err(|e| bad(format!("unreadable answer: {e}"))),
        404 if a.body.contains("NoSuchLifecycleConfiguration") || a.body.is_empty() => {
            Ok(Vec::new())
        }
        s => Err(bad(format!("HTTP {s}: {}", a.body.trim()))),
    }
}

/// Writes `xml` as the bucket's lifecycle configuration, or deletes it (None).
pub async fn write(s3: &S3Store, xml: Option<&str>) -> Result<(), LifecycleError> {
    let (op, a) = match xml {
        Some(x) => {
            const OP: &str = "PutBucketLifecycleConfiguration";
            let md5 = base64_std(&Md5::digest(x.as_bytes()));
            let mut h = HeaderMap::new();
            h.insert(
                "content-md5",
                HeaderValue::from_str(&md5).expect("base64 is a header value"),
            );
            h.insert("content-type", HeaderValue::from_static("application/xml"));
            let body = bytes::Bytes::from(x.to_string());
            let a = s3
                .bucket_subresource(reqwest::Method::PUT, "lifecycle", h, Some(body), OP)
                .await?;
            (OP, a)
        }
        None => {
            const OP: &str = "DeleteBucketLifecycle";
            let a = s3
                .bucket_subresource(
                    reqwest::Method::DELETE,
                    "lifecycle",
                    HeaderMap::new(),
                    None,
                    OP,
                )
                .await?;
            (OP, a)
        }
    };
    if (200..300).contains(&a.status) {
        Ok(())
    } else {
        Err(LifecycleError::Answer {
            store: s3.name().to_string(),
            op,
            detail: format!("HTTP {}: {}", a.status, a.body.trim()),
        })
    }
}

/// Standard base64 with padding (RFC 4648 §4), for `Content-MD5`.
fn base64_std(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(classes: &str) -> Config {
        let text = format!(
            "[daemon]\nstate_dir = \"/tmp/x\"\nnode = \"box1\"\n\n[[store]]\nname = \"archive\"\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:1\"\nbucket = \"b\"\nprefix = \"\"\n{classes}"
        );
        Config::parse_with(std::path::Path::new("/tmp/t.toml"), &text, false).unwrap()
    }

    fn class(name: &str, globs: &str, extra: &str) -> String {
        format!(
            "\n[[class]]\nname = \"{name}\"\nstore = \"archive\"\nmatch = [{globs}]\nlifecycle = \"recording\"\n{extra}\n"
        )
    }

    #[test]
    fn days_round_up_never_earlier() {
        let d = |s: &str| days(s.parse::<Dur>().unwrap());
        assert_eq!(d("36h"), 2);
        assert_eq!(d("24h"), 1);
        assert_eq!(d("1d"), 1);
        assert_eq!(d("25h"), 2);
        assert_eq!(d("0s"), 1);
        assert_eq!(d("90d"), 90);
        assert_eq!(d("1m"), 1);
    }

    #[test]
    fn only_literal_prefixes_compile() {
        assert_eq!(literal_prefix("rec/**").as_deref(), Some("rec/"));
        assert_eq!(literal_prefix("a/b c/**").as_deref(), Some("a/b c/"));
        assert_eq!(literal_prefix("**").as_deref(), Some(""));
        for p in [
            "rec/*.mp4",
            "rec/**/*.mp4",
            "{a,b}/**",
            "rec**",
            "r?c/**",
            "/**",
            "rec/",
        ] {
            assert_eq!(literal_prefix(p), None, "{p}");
        }
    }

    #[test]
    fn a_config_compiles_what_the_store_can_enforce() {
        let c = cfg(&[
            class("rec", "\"rec/**\"", "keep_for = \"36h\"\nmax_count = 3"),
            class("wild", "\"hls/**/*.ts\"", "keep_for = \"1d\""),
            class("shadowed", "\"rec/old/**\"", "keep_for = \"90d\""),
            class(
                "ex",
                "\"ex/**\"",
                "keep_for = \"1d\"\nexclude = [\"ex/keep/**\"]",
            ),
            class("budget", "\"b/**\"", "max_total = \"1 GiB\""),
        ]
        .concat());
        let out = compile(&c, "archive").unwrap();
        let ids: Vec<_> = out.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "mediaretain:box1:rec",
                "mediaretain:box1:archive:abort-uploads"
            ]
        );
        assert_eq!(out.rules[0].prefix, "box1/rec/");
        assert_eq!(out.rules[0].action, Action::Expire(2));
        assert_eq!(out.rules[1].prefix, "box1/");
        assert_eq!(out.rules[1].action, Action::AbortUploads(1));
        let why = |class: &str| {
            out.not_compiled
                .iter()
                .filter(|n| n.class == class)
                .map(|n| format!("{}: {}", n.limit, n.reason))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        assert!(why("rec").starts_with("max_count = 3"), "{}", why("rec"));
        assert!(
            why("wild").contains("not a literal prefix"),
            "{}",
            why("wild")
        );
        assert!(
            why("shadowed").contains("earlier class \"rec\""),
            "{}",
            why("shadowed")
        );
        assert!(why("ex").contains("exclude"), "{}", why("ex"));
        assert!(why("budget").contains("max_total"), "{}", why("budget"));
        assert!(
            compile(&c, "nope")
                .unwrap_err()
                .to_string()
                .contains("archive")
        );
    }

    #[test]
    fn a_bucket_configuration_reads_back_and_merges_keeping_foreign_rules() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Rule><ID>theirs &amp; co</ID><Filter><And><Prefix>logs/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></And></Filter><Status>Enabled</Status><Transition><Days>30</Days><StorageClass>GLACIER</StorageClass></Transition></Rule>
  <Rule><ID>mediaretain:box1:rec</ID><Filter><Prefix>box1/rec/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>3</Days></Expiration></Rule>
  <Rule><ID>mediaretain:box1:gone</ID><Filter><Prefix>box1/old/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>3</Days></Expiration></Rule>
  <Rule><ID>mediaretain:box9:rec</ID><Prefix>box9/rec/</Prefix><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>
</LifecycleConfiguration>"#;
        let rules = parse(xml).unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[0].id.as_deref(), Some("theirs & co"));
        assert!(
            rules[0].other.iter().any(|o| o == "Filter/And/Tag/Key = k"),
            "{:?}",
            rules[0]
        );
        assert!(
            rules[0].raw.starts_with("<Rule><ID>theirs &amp; co</ID>"),
            "{}",
            rules[0].raw
        );
        assert!(rules[0].raw.ends_with("</Rule>"));
        assert_eq!(rules[3].prefix, "box9/rec/");

        let c = compile(
            &cfg(&class("rec", "\"rec/**\"", "keep_for = \"36h\"")),
            "archive",
        )
        .unwrap();
        let drift = c.drift(&rules);
        let kinds: Vec<_> = drift.iter().map(|d| (d.id.as_str(), d.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("mediaretain:box1:rec", DriftKind::Different),
                ("mediaretain:box1:archive:abort-uploads", DriftKind::Missing),
                ("mediaretain:box1:gone", DriftKind::Extra),
            ]
        );
        let merged = c.merged(&rules).unwrap();
        let again = parse(&merged).unwrap();
        assert_eq!(
            again[0].raw, rules[0].raw,
            "a foreign rule is kept byte for byte"
        );
        assert_eq!(again[1].raw, rules[3].raw, "another box's rule is kept");
        assert!(c.drift(&again).is_empty(), "{:?}", c.drift(&again));
        assert_eq!(again.len(), 4);
    }

    #[test]
    fn pinned_objects_under_an_expiry_are_named() {
        let c = compile(
            &cfg(&class("rec", "\"rec/**\"", "keep_for = \"1d\"")),
            "archive",
        )
        .unwrap();
        let p = c.pinned(["rec/a.mp4", "other/b.mp4"]);
        assert_eq!(
            p,
            [Pinned {
                key: "rec/a.mp4".into(),
                rule: "mediaretain:box1:rec".into()
            }]
        );
    }

    #[test]
    fn base64_as_rfc4648() {
        assert_eq!(base64_std(b""), "");
        assert_eq!(base64_std(b"f"), "Zg==");
        assert_eq!(base64_std(b"fo"), "Zm8=");
        assert_eq!(base64_std(b"foo"), "Zm9v");
        assert_eq!(base64_std(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_std(&Md5::digest(b"")), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }
}
