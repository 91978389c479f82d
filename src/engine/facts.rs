//! What media servers tell us (webhooks), made registry facts: a recording announced
//! complete is registered at once, tagged with what the event says, needs no quiet period,
//! and — if its class offloads — is due for offload now. The receiver (`crate::hooks`)
//! parses the dialects; this is the one place their facts enter the engine.

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

impl Engine {
    /// A media server (`source`, e.g. "nginx-rtmp record_done") says the file at `abs`
    /// (an absolute path inside a local store) is complete. Registers it, adds `tags`, and
    /// records the fact for its current version — if that version is not newer than the
    /// event (`received`: a file written again since, say by an appending recorder, is
    /// not the one announced). Refused (bad input) outside every local store, for anything
    /// but a regular file, and for a file that is not there.
    pub fn announce_complete(
        &self,
        abs: &Path,
        tags: &[String],
        source: &str,
        received: Nanos,
    ) -> Result<Announced> {
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
        if local.stat(&rel)?.is_none() {
            return Err(EngineError::BadInput(format!(
                "{arg:?}: no such regular file in store {store:?}"
            )));
        }
        self.apply_changes(&[(Arc::from(store.as_str()), rel.clone())])?;
        let now = self.now();
        let mut reg = self.reg();
        let Some(e) = reg.get(&store, &rel)? else {
            return Err(EngineError::BadInput(format!(
                "{arg:?}: no such regular file in store {store:?}"
            )));
        };
        reg.set_tags(&store, &rel, tags, &[])?;
        if e.mtime > received {
            return Err(EngineError::BadInput(format!(
                "{arg:?} was modified after the event arrived: not marked complete"
            )));
        }
        reg.set_complete(&store, &rel, e.size, e.mtime, now, source)?;
        drop(reg);
        let class = rt.class_of(&store, &rel);
        let offload = class.is_some_and(|c| c.offload.is_some()) && e.copy.is_none();
        Ok(Announced {
            store,
            path: rel,
            class: class.map(|c| c.name.clone()),
            bytes: e.size,
            offload,
            tags: tags.to_vec(),
        })
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
