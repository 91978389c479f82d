//! What media servers tell us (webhooks), made registry facts: a recording announced
//! complete is registered at once and tagged with what the event says; once it is
//! confirmed — held open for writing by no process, and unchanged (size, mtime, change
//! time, inode) for `[hooks] confirm` — it needs no quiet period and, if its class
//! offloads, is due for offload now. A claim is not a fact: one that does not hold is
//! dropped, and the file waits out its quiet period as if no hook came. The receiver
//! (`crate::hooks`) parses the dialects; this is the one place their facts enter the engine.

use super::*;

/// What became of one announced file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Announced {
    /// Store name.
    pub store: String,
    /// Relative path.
    #[serde(with = "crate::spell::serde_path")]
    pub path: PathBuf,
    /// Its class, if any matches.
    pub class: Option<String>,
    /// Its size (`size`, as every file object says it).
    #[serde(rename = "size")]
    pub bytes: u64,
    /// Its class offloads it: it is due for offload now.
    pub offload: bool,
    /// The tags it was given.
    pub tags: Vec<String>,
}

/// `key=value` as a tag: characters a tag may not hold become `_`, and it is cut to
/// 128 bytes. None when the value is empty.
pub fn fact_tag(key: &str, value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let mut t: String = format!("{key}={value}")
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    while t.len() > 128 {
        t.pop();
    }
    Some(t)
}

/// A file a server announced complete, as it was then: the version to confirm.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Store name.
    pub store: String,
    /// Relative path.
    pub path: PathBuf,
    /// Who said so (e.g. "nginx-rtmp recording").
    pub source: String,
    /// The tags it was given.
    pub tags: Vec<String>,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: Nanos,
    ctime: Nanos,
}

impl Claim {
    /// `store:path`, for messages.
    pub fn shown(&self) -> String {
        format!("{}:{}", self.store, crate::spell::show(&self.path))
    }
}

/// Whether a process holds the file (`dev`, `ino`) open for writing now, in words; an
/// error when some processes' files cannot be seen (nobody can vouch that it is closed).
fn writer_of(dev: u64, ino: u64) -> std::result::Result<Option<String>, String> {
    let snap = crate::inuse::Snapshot::take_watching(&std::collections::HashSet::from([dev]));
    if let Some(w) = snap.writers.iter().find(|w| w.dev == dev && w.ino == ino) {
        return Ok(Some(format!(
            "pid {} ({}) holds it open for writing",
            w.pid,
            std::fs::read_to_string(format!("/proc/{}/comm", w.pid))
                .map(|c| c.trim().to_string())
                .unwrap_or_else(|_| "?".into())
        )));
    }
    match snap.blind_spot() {
        Some(why) => Err(why),
        None => Ok(None),
    }
}

/// (dev, ino, size, mtime, ctime) of a stat.
fn version(st: &rustix::fs::Stat) -> (u64, u64, u64, Nanos, Nanos) {
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    (
        st.st_dev,
        st.st_ino,
        st.st_size as u64,
        ns(st.st_mtime, st.st_mtime_nsec as i64),
        ns(st.st_ctime, st.st_ctime_nsec as i64),
    )
}

impl Engine {
    /// A media server (`source`, e.g. "nginx-rtmp record_done") says the file at `abs`
    /// (an absolute path inside a local store) is complete. Registers it and adds `tags`;
    /// the claim comes back to be confirmed with [`Engine::confirm_complete`] after
    /// `[hooks] confirm` — nothing is shortened yet. Refused (bad input) outside every
    /// local store, for anything but a regular file, for a file that is not there, and for
    /// one modified after the event arrived (`received`: a file written again since, say by
    /// an appending recorder, is not the one announced).
    pub fn announce_complete(
        &self,
        abs: &Path,
        tags: &[String],
        source: &str,
        received: Nanos,
    ) -> Result<Claim> {
        let rt = self.runtime();
        // The path is the server's, byte for byte: spelled so that resolve reads it back.
        let arg = crate::spell::path(abs);
        let arg = arg.as_ref();
        if !abs.is_absolute() {
            return Err(EngineError::BadInput(format!(
                "{arg:?} is not an absolute path"
            )));
        }
        let (store, rel) = rt.resolve(arg)?;
        let Some(local) = rt.store(&store) else {
            return Err(EngineError::BadInput(format!(
                "{arg:?} is not in a local store"
            )));
        };
        let Some(st) = local.stat_full(&rel)? else {
            return Err(EngineError::BadInput(format!(
                "{arg:?}: no such regular file in store {store:?}"
            )));
        };
        self.apply_changes(&[(Arc::from(store.as_str()), rel.clone())])?;
        let mut reg = self.reg();
        if reg.get(&store, &rel)?.is_none() {
            return Err(EngineError::BadInput(format!(
                "{arg:?}: no such regular file in store {store:?}"
            )));
        }
        reg.set_tags(&store, &rel, tags, &[])?;
        drop(reg);
        let (dev, ino, size, mtime, ctime) = version(&st);
        if mtime > received {
            return Err(EngineError::BadInput(format!(
                "{arg:?} was modified after the event arrived: not marked complete"
            )));
        }
        Ok(Claim {
            store,
            path: rel,
            source: source.to_string(),
            tags: tags.to_vec(),
            dev,
            ino,
            size,
            mtime,
            ctime,
        })
    }

    /// Confirms `claim` after its confirmation window: no process holds the file open for
    /// writing, and it is the very version announced (size, mtime, change time, inode) —
    /// then the fact is recorded for that version (no quiet period for it; if its class
    /// offloads, due now). `Ok(Err(why))` when the claim does not hold: nothing is recorded,
    /// and the file waits out its quiet period as if no hook came.
    pub fn confirm_complete(
        &self,
        claim: &Claim,
    ) -> Result<std::result::Result<Announced, String>> {
        let rt = self.runtime();
        let Some(local) = rt.store(&claim.store) else {
            return Ok(Err(format!("store {:?} is gone", claim.store)));
        };
        let Some(st) = local.stat_full(&claim.path)? else {
            return Ok(Err("it is gone".into()));
        };
        let now_version = version(&st);
        let (_, _, size, mtime, _) = now_version;
        if now_version != (claim.dev, claim.ino, claim.size, claim.mtime, claim.ctime) {
            return Ok(Err(format!(
                "it changed since it was announced ({} then, {} now): still being written",
                crate::units::ByteSize(claim.size),
                crate::units::ByteSize(size)
            )));
        }
        match writer_of(claim.dev, claim.ino) {
            Ok(Some(w)) => return Ok(Err(format!("{w}: still being written"))),
            Ok(None) => {}
            Err(blind) => return Ok(Err(format!("no writer can be ruled out: {blind}"))),
        }
        // The registry's version of it is the one confirmed (a scan may be behind).
        self.apply_changes(&[(Arc::from(claim.store.as_str()), claim.path.clone())])?;
        let now = self.now();
        let mut reg = self.reg();
        let Some(e) = reg.get(&claim.store, &claim.path)? else {
            return Ok(Err("it is no longer registered".into()));
        };
        if (e.size, e.mtime) != (size, mtime) {
            return Ok(Err("the registry holds another version of it".into()));
        }
        reg.set_complete(&claim.store, &claim.path, size, mtime, now, &claim.source)?;
        drop(reg);
        let class = rt.class_of(&claim.store, &claim.path);
        let offload = class.is_some_and(|c| c.offload.is_some()) && e.copy.is_none();
        Ok(Ok(Announced {
            store: claim.store.clone(),
            path: claim.path.clone(),
            class: class.map(|c| c.name.clone()),
            bytes: size,
            offload,
            tags: claim.tags.clone(),
        }))
    }

    /// Whether a process holds the announced file open for writing now (checked when the
    /// claim arrives, so that an open recording is not waited on for nothing), in words.
    pub fn claim_writer(&self, claim: &Claim) -> Option<String> {
        writer_of(claim.dev, claim.ino).ok().flatten()
    }
}

impl Engine {
    /// A `dialect` server says stream `app`/`stream` started (`live`) or stopped. Its live
    /// playlists (by `[hooks.<dialect>] store` and `playlists`) are marked so: a stopped
    /// stream's playlists are retired now (their segments free after the RFC 8216 grace),
    /// a live one's are not declared dead for being stale. Returns how many playlists.
    pub fn stream_changed(
        &self,
        dialect: crate::config::Dialect,
        app: &str,
        stream: &str,
        live: bool,
    ) -> Result<usize> {
        let rt = self.runtime();
        let Some(server) = rt
            .config
            .hooks
            .as_ref()
            .and_then(|h| h.servers.get(&dialect))
        else {
            return Ok(0);
        };
        let (Some(store), false) = (&server.store, server.playlists.is_empty()) else {
            return Ok(0);
        };
        // The event's names are literal text in the patterns, never glob syntax.
        let mut set = globset::GlobSetBuilder::new();
        for p in &server.playlists {
            let p = crate::config::template::fill(p, app, stream);
            let g = crate::config::glob(&p)
                .map_err(|e| EngineError::BadInput(format!("playlist pattern {p:?}: {e}")))?;
            set.add(g);
        }
        let set = set
            .build()
            .map_err(|e| EngineError::BadInput(format!("playlist patterns: {e}")))?;
        let known = self
            .reg()
            .paths_ending(store, ".m3u8")?
            .into_iter()
            .filter(|p| set.is_match(p))
            .count();
        let key = format!("{}\0{app}\0{stream}", dialect.name());
        let now = self.now();
        self.inuse
            .stream_state(key, store, std::sync::Arc::new(set), live, now);
        Ok(known)
    }
}
