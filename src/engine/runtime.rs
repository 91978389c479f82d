//! The running config: the validated [`Config`] with its compiled classifier and opened
//! stores, swapped whole on reload; and how CLI/API path arguments resolve into it.

use super::*;
use crate::store::local::{RootAbsent, RootFound};

/// A config with its compiled classifier and opened stores.
pub struct Runtime {
    /// The validated config.
    pub config: Config,
    /// Path → class.
    pub classifier: Classifier,
    /// Opened local stores, in config order.
    pub stores: Vec<LocalStore>,
    /// The volumes holding them, with their watchdog limits.
    pub volumes: Vec<(VolumeSpec, crate::config::Limits)>,
    /// S3 stores, in config order.
    pub remotes: Vec<Arc<crate::store::s3::S3Store>>,
    /// Local stores whose roots are missing or not mounted: nothing in them is indexed,
    /// planned, deleted or forgotten until they are back (docs/missing-roots.md).
    pub missing: Vec<MissingStore>,
    /// The roots of the opened local stores, as found when opened (to be remembered).
    pub found: Vec<(String, RootFound)>,
}

/// A local store whose root cannot be used now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MissingStore {
    /// The store.
    pub store: String,
    /// Its root.
    #[serde(with = "crate::spell::serde_path")]
    pub root: PathBuf,
    /// Missing or not mounted, and why.
    #[serde(flatten)]
    pub absent: RootAbsent,
}

impl Runtime {
    /// Opens every store of `config` whose root can be used now; `last` has the roots as
    /// they were when last used (the registry remembers them). The others are `missing`.
    pub fn new(config: Config, last: &HashMap<String, RootFound>) -> Result<Runtime> {
        let (mut stores, mut missing, mut found) = (Vec::new(), Vec::new(), Vec::new());
        for s in config.stores.iter().filter(|s| s.is_local()) {
            let opened = crate::store::local::find_root(
                &s.root,
                s.require_mount,
                last.get(&s.name).copied(),
            )
            .and_then(|f| {
                // Gone between the look and the open: missing all the same.
                LocalStore::open(&s.name, &s.root)
                    .map(|l| (l, f))
                    .map_err(|e| RootAbsent::Missing(e.to_string()))
            });
            match opened {
                Ok((l, f)) => {
                    stores.push(l);
                    found.push((s.name.clone(), f));
                }
                Err(absent) => missing.push(MissingStore {
                    store: s.name.clone(),
                    root: s.root.clone(),
                    absent,
                }),
            }
        }
        let gone = |name: &String| missing.iter().any(|m| &m.store == name);
        let volumes = crate::watchdog::volumes(&config)
            .into_iter()
            .filter_map(|mut v| {
                // A missing store's path says nothing of its volume (the parent's).
                v.stores.retain(|s| !gone(s));
                (!v.stores.is_empty()).then_some(v)
            })
            .map(|v| {
                let l = crate::watchdog::limits_of(&config, &v).clone();
                (v, l)
            })
            .collect();
        let remotes = config
            .stores
            .iter()
            .filter_map(|s| s.s3.as_ref().map(|loc| remote::open(&s.name, loc)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Runtime {
            classifier: Classifier::new(&config)?,
            config,
            stores,
            volumes,
            remotes,
            missing,
            found,
        })
    }

    pub(super) fn store(&self, name: &str) -> Option<&LocalStore> {
        self.stores.iter().find(|s| s.name() == name)
    }

    /// Why local store `name` cannot be used now (None: it can, or it is not local).
    pub fn missing(&self, name: &str) -> Option<&MissingStore> {
        self.missing.iter().find(|m| m.store == name)
    }

    /// The error for an operation on a file of missing store `m`.
    pub(super) fn absent_error(m: &MissingStore) -> EngineError {
        EngineError::StoreAbsent(format!(
            "store {:?} is {} ({}): its root {} is {}; its files are kept in the registry and nothing in it is touched until it is back",
            m.store,
            match m.absent {
                RootAbsent::Missing(_) => "missing",
                RootAbsent::NotMounted(_) => "not mounted",
            },
            match &m.absent {
                RootAbsent::Missing(w) | RootAbsent::NotMounted(w) => w,
            },
            crate::spell::show(&m.root),
            match m.absent {
                RootAbsent::Missing(_) => "not there",
                RootAbsent::NotMounted(_) => "the bare directory of the parent filesystem",
            }
        ))
    }

    /// The class `path` of `store` falls in under the running config.
    pub(super) fn class_of(&self, store: &str, path: &Path) -> Option<&Class> {
        self.classifier
            .classify(store, path)
            .and_then(|c| self.config.class(c))
    }

    /// Resolves a CLI/API path argument: an absolute path inside a store root, or
    /// `STORE:KEY`, in the lossless spelling of [`crate::spell`] (`rec/a\xffb.mp4` names
    /// the bytes). Anything else — or anything with `..` — is refused.
    pub fn resolve(&self, arg: &str) -> Result<(String, PathBuf)> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = crate::spell::unspell(arg);
        let shown = crate::spell::spell(&bytes);
        // An overlong argument is named by its start only.
        let cut: String = shown.chars().take(200).collect();
        let refuse = |why: &str| {
            EngineError::BadInput(format!(
                "\"{cut}\"{} {why}; give an absolute path inside a store root or STORE:KEY (stores: {})",
                if cut.len() < shown.len() { "…" } else { "" },
                self.stores
                    .iter()
                    .map(|s| format!("{}={}", s.name(), crate::spell::show(s.root())))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        // No file can have such a name: bad input, not an I/O failure further down.
        if bytes.contains(&0) {
            return Err(refuse("contains a NUL byte"));
        }
        if bytes.len() > libc::PATH_MAX as usize {
            return Err(refuse(&format!(
                "is longer than {} bytes (PATH_MAX)",
                libc::PATH_MAX
            )));
        }
        if bytes.split(|&b| b == b'/').any(|c| c.len() > 255) {
            return Err(refuse("has a name longer than 255 bytes (NAME_MAX)"));
        }
        let p = Path::new(std::ffi::OsStr::from_bytes(&bytes));
        if p.is_absolute() {
            if p.components().any(|c| matches!(c, Component::ParentDir)) {
                return Err(refuse("contains '..'"));
            }
            if let Some(m) = self
                .missing
                .iter()
                .filter(|m| p.starts_with(&m.root))
                .max_by_key(|m| m.root.as_os_str().len())
            {
                return Err(Runtime::absent_error(m));
            }
            let hit = self
                .stores
                .iter()
                .filter_map(|s| p.strip_prefix(s.root()).ok().map(|rel| (s, rel)))
                .max_by_key(|(s, _)| s.root().as_os_str().len());
            return match hit {
                Some((s, rel)) if is_confined(rel) => Ok((s.name().to_string(), canonical(rel))),
                _ => Err(refuse("is not inside any store root")),
            };
        }
        if let Some(colon) = bytes.iter().position(|&b| b == b':') {
            let (store, key) = (
                &bytes[..colon],
                Path::new(std::ffi::OsStr::from_bytes(&bytes[colon + 1..])),
            );
            if let Some(m) = std::str::from_utf8(store)
                .ok()
                .and_then(|s| self.missing(s))
            {
                return Err(Runtime::absent_error(m));
            }
            let known =
                |s: &str| self.store(s).is_some() || self.remotes.iter().any(|r| r.name() == s);
            let Some(store) = std::str::from_utf8(store).ok().filter(|s| known(s)) else {
                return Err(refuse(&format!(
                    "names unknown store \"{}\"",
                    crate::spell::spell(store)
                )));
            };
            if !is_confined(key) {
                return Err(refuse("has a key that is not a plain relative path"));
            }
            return Ok((store.to_string(), canonical(key)));
        }
        Err(refuse("is neither absolute nor STORE:KEY"))
    }
}

/// The one spelling of a confined relative path the registry uses: `a//b/./c/` → `a/b/c`,
/// so a pin or tag given with a stray slash lands on the file's own entry.
fn canonical(rel: &Path) -> PathBuf {
    rel.components().collect()
}
