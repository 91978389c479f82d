//! Live playlist references: every segment (and init segment, `EXT-X-MAP`) that a media
//! playlist (`.m3u8`) of the store lists is in use — players fetch exactly those — and
//! stays so for a grace period after it leaves the playlist (default: three target
//! durations). A playlist that cannot be parsed protects its whole directory.

use std::collections::HashMap;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use m3u8_rs::Playlist;

use crate::store::local::LocalStore;
use crate::units::Nanos;

/// The largest playlist we read; a bigger one is treated as unparsable.
const MAX_PLAYLIST: usize = 8 << 20;

/// A live playlist (no `#EXT-X-ENDLIST`) unchanged for this many target durations (and at
/// least [`DEAD_MIN`]) belongs to a stream that ended: it stops protecting what it lists,
/// after the removal grace.
const DEAD_TARGETS: i64 = 6;
const DEAD_MIN: Nanos = 10_000_000_000;

/// One segment as a playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// The playlist.
    pub playlist: PathBuf,
    /// RFC 8216 §6.2.2: once removed, it stays available for its own duration plus the
    /// playlist's (the longest it was in).
    pub grace: Nanos,
    /// Set for a live playlist that stopped changing (its stream ended): the moment it
    /// counts as dead, when its segments count as removed.
    pub dead_since: Option<Nanos>,
}

/// What the playlists of one store reference, as read at one instant.
#[derive(Debug, Default)]
pub struct Refs {
    /// Segment path → how it is listed.
    pub segments: HashMap<PathBuf, Listed>,
    /// Directories protected because their playlist could not be read: dir → why.
    pub broken: Vec<(PathBuf, String)>,
    /// What each playlist was (inode, size, mtime) just before it was read.
    pub stamps: Vec<(PathBuf, Stamp)>,
}

/// A playlist's identity at one instant: `None` when it is not there. A muxer that writes a
/// new version (renamed over the old one, or rewritten in place) changes it.
pub type Stamp = Option<(u64, u64, Nanos)>;

/// The stamp of playlist `pl` now.
pub fn stamp(store: &LocalStore, pl: &Path) -> Stamp {
    match store.stat(pl) {
        Ok(Some(m)) => Some((m.ino, m.size, m.mtime)),
        _ => None,
    }
}

/// Whether any of `stamps` differs from its playlist now.
pub fn changed(store: &LocalStore, stamps: &[(PathBuf, Stamp)]) -> bool {
    stamps.iter().any(|(pl, was)| stamp(store, pl) != *was)
}

/// Reads `playlists` (paths relative to the store root) of `store` at `now`.
pub fn read(store: &LocalStore, playlists: &[PathBuf], now: Nanos) -> Refs {
    let mut refs = Refs::default();
    for pl in playlists {
        let dir = pl.parent().unwrap_or(Path::new("")).to_path_buf();
        let st = stamp(store, pl);
        refs.stamps.push((pl.clone(), st));
        let text = match store.read_small(pl, MAX_PLAYLIST) {
            Ok(Some(t)) => t,
            Ok(None) => continue, // gone meanwhile
            Err(e) => {
                refs.broken
                    .push((dir, format!("{} cannot be read: {e}", pl.display())));
                continue;
            }
        };
        match m3u8_rs::parse_playlist_res(&text) {
            Ok(Playlist::MediaPlaylist(mp)) => {
                let secs = |d: f64| (d.max(0.0) * 1e9) as Nanos;
                let target = secs(mp.target_duration as f64).max(1_000_000_000);
                let total: Nanos = mp.segments.iter().map(|s| secs(s.duration as f64)).sum();
                let dead_since = st
                    .map(|(_, _, mtime)| mtime + (DEAD_TARGETS * target).max(DEAD_MIN))
                    .filter(|t| !mp.end_list && *t <= now);
                let listed = |grace: Nanos| Listed {
                    playlist: pl.clone(),
                    grace,
                    dead_since,
                };
                // Init segments, keys, parts and hints: for as long as the longest segment.
                let longest = mp.segments.iter().map(|s| secs(s.duration as f64)).max();
                let other = listed(total + longest.unwrap_or(target));
                for s in &mp.segments {
                    if let Some(p) = resolve(&dir, &s.uri) {
                        refs.segments
                            .insert(p, listed(secs(s.duration as f64) + total));
                    }
                }
                let segments = mp.segments.iter().flat_map(|s| {
                    s.map
                        .as_ref()
                        .map(|m| m.uri.as_str())
                        .into_iter()
                        .chain(s.key.as_ref().and_then(|k| k.uri.as_deref()))
                });
                // Low-latency parts, preload hints and the like: every URI="…" attribute of an
                // EXT tag, wherever the parser put (or dropped) the tag.
                let attributes = String::from_utf8_lossy(&text)
                    .lines()
                    .filter(|l| l.starts_with("#EXT"))
                    .filter_map(uri_attribute)
                    .collect::<Vec<_>>();
                for uri in segments.chain(attributes.iter().map(String::as_str)) {
                    if let Some(p) = resolve(&dir, uri) {
                        refs.segments.entry(p).or_insert_with(|| other.clone());
                    }
                }
            }
            Ok(Playlist::MasterPlaylist(_)) => {} // lists playlists, not segments
            Err(e) => {
                let why = format!(
                    "{} does not parse as HLS: {}",
                    pl.display(),
                    short(&format!("{e:?}"))
                );
                tracing::warn!(path = %pl.display(), reason = %why, "unparsable playlist; protecting its directory");
                refs.broken.push((dir, why));
            }
        }
    }
    refs
}

/// One remembered reference: listed now (`until` is `None`), or removed and kept until.
#[derive(Debug, Clone, PartialEq)]
pub struct Remembered {
    /// The playlist that listed it.
    pub playlist: PathBuf,
    /// Its removal grace.
    pub grace: Nanos,
    /// When it was last seen listed.
    pub listed_at: Nanos,
    /// Removed (or its playlist went dead): in use until then.
    pub until: Option<Nanos>,
    /// Its playlist went dead (the stream ended) rather than dropping it.
    pub dead: bool,
}

/// What live playlists referenced, remembered for the removal grace — also across a
/// restart: the engine keeps it in the registry.
#[derive(Debug, Default)]
pub struct Memory {
    /// (store, segment) → its reference.
    pub refs: HashMap<(String, PathBuf), Remembered>,
    /// store → directories of unreadable playlists, with why.
    pub broken: HashMap<String, Vec<(PathBuf, String)>>,
    /// store → when its playlists were last read.
    pub read_at: HashMap<String, Nanos>,
    /// store → what its playlists were when read.
    pub stamps: HashMap<String, Vec<(PathBuf, Stamp)>>,
}

impl Memory {
    /// Takes in a reading of `store`'s playlists at `now`: a segment no longer listed left
    /// now (not at the last reading that listed it — it may have stayed until a moment ago),
    /// so it stays in use for its grace from now.
    pub fn update(&mut self, store: &str, refs: Refs, now: Nanos) {
        let mut listed = refs.segments;
        for ((s, seg), r) in self.refs.iter_mut() {
            if s != store {
                continue;
            }
            match listed.remove(seg) {
                Some(l) => {
                    r.playlist = l.playlist;
                    r.grace = r.grace.max(l.grace);
                    match l.dead_since {
                        Some(t) => {
                            r.until = Some(r.until.unwrap_or(t.saturating_add(r.grace)));
                            r.dead = true;
                        }
                        None => (r.listed_at, r.until, r.dead) = (now, None, false),
                    }
                }
                None if r.until.is_none() => r.until = Some(now.saturating_add(r.grace)),
                None => {}
            }
        }
        for (seg, l) in listed {
            let until = l.dead_since.map(|t| t.saturating_add(l.grace));
            self.refs.insert(
                (store.to_string(), seg),
                Remembered {
                    playlist: l.playlist,
                    grace: l.grace,
                    listed_at: now,
                    until,
                    dead: until.is_some(),
                },
            );
        }
        self.refs.retain(|_, r| r.until.is_none_or(|u| u > now));
        self.broken.insert(store.to_string(), refs.broken);
        self.stamps.insert(store.to_string(), refs.stamps);
        self.read_at.insert(store.to_string(), now);
    }

    /// Why `path` of `store` is in use by a playlist, if it is.
    pub fn reason(&self, store: &str, path: &Path, now: Nanos) -> Option<String> {
        use crate::units::{fmt_span, fmt_time};
        if let Some(r) = self.refs.get(&(store.to_string(), path.to_path_buf())) {
            match r.until {
                None => return Some(format!("referenced by playlist {}", r.playlist.display())),
                Some(u) if u > now && r.dead => {
                    return Some(format!(
                        "listed by playlist {}, which stopped changing (the stream ended); kept until {} (removal grace {})",
                        r.playlist.display(),
                        fmt_time(u),
                        fmt_span(r.grace)
                    ));
                }
                Some(u) if u > now => {
                    return Some(format!(
                        "left playlist {}; kept until {} (its duration plus the playlist's, {}, RFC 8216 §6.2.2)",
                        r.playlist.display(),
                        fmt_time(u),
                        fmt_span(r.grace)
                    ));
                }
                Some(_) => {}
            }
        }
        self.broken
            .get(store)?
            .iter()
            .find(|(dir, _)| path.starts_with(dir))
            .map(|(_, why)| format!("in the directory of an unreadable playlist ({why})"))
    }
}

/// The value of a `URI="…"` attribute in an EXT tag line.
fn uri_attribute(line: &str) -> Option<String> {
    let start = line.find("URI=\"")? + 5;
    let len = line[start..].find('"')?;
    Some(line[start..start + len].to_string())
}

/// Decodes `%XX` escapes (invalid ones are kept as written).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

/// A segment URI as a path relative to the store root: relative to the playlist's
/// directory, or rooted at the store for `/…`; query and fragment dropped; URLs with a
/// scheme, and anything escaping the root, are not ours.
fn resolve(dir: &Path, uri: &str) -> Option<PathBuf> {
    if uri.contains("://") {
        return None;
    }
    let uri = uri.split(['?', '#']).next()?;
    let decoded = std::ffi::OsString::from_vec(percent_decode(uri));
    let uri = Path::new(&decoded);
    let joined = match uri.strip_prefix("/") {
        Ok(abs) => abs.to_path_buf(),
        Err(_) => dir.join(uri),
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_resolve_inside_the_store_only() {
        let d = Path::new("hls/live");
        assert_eq!(resolve(d, "seg1.ts"), Some("hls/live/seg1.ts".into()));
        assert_eq!(
            resolve(d, "../v2/seg1.ts?token=x"),
            Some("hls/v2/seg1.ts".into())
        );
        assert_eq!(resolve(d, "/hls/init.mp4"), Some("hls/init.mp4".into()));
        assert_eq!(resolve(d, "../../../../etc/passwd"), None);
        assert_eq!(resolve(d, "https://cdn.example/seg1.ts"), None);
        assert_eq!(resolve(d, "my%20seg.ts"), Some("hls/live/my seg.ts".into()));
        assert_eq!(resolve(d, "100%"), Some("hls/live/100%".into()));
    }

    #[test]
    fn a_removed_segment_is_kept_for_its_grace_from_the_reading_that_missed_it() {
        const S: Nanos = 1_000_000_000;
        let listed = |grace| {
            let mut r = Refs::default();
            r.segments.insert(
                "hls/a.ts".into(),
                Listed {
                    playlist: "hls/i.m3u8".into(),
                    grace,
                    dead_since: None,
                },
            );
            r
        };
        let mut m = Memory::default();
        let a = Path::new("hls/a.ts");
        m.update("m", listed(5 * S), 0);
        assert!(m.reason("m", a, 0).unwrap().starts_with("referenced"));
        // Still listed at 10 s (last seen), gone at the reading of 12 s: kept until 17 s.
        m.update("m", listed(5 * S), 10 * S);
        m.update("m", Refs::default(), 12 * S);
        assert!(
            m.reason("m", a, 16 * S)
                .unwrap()
                .starts_with("left playlist")
        );
        assert_eq!(m.reason("m", a, 17 * S), None);
        m.update("m", Refs::default(), 18 * S);
        assert!(m.refs.is_empty(), "forgotten once its grace is over");
    }

    #[test]
    fn low_latency_parts_keys_and_hints_are_referenced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ll")).unwrap();
        let text = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART-INF:PART-TARGET=1.0\n\
#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-KEY:METHOD=AES-128,URI=\"key.bin\"\n\
#EXTINF:4.0,\nseg10.m4s\n#EXT-X-PART:DURATION=1.0,URI=\"seg11.part0.m4s\"\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg11.part1.m4s\"\n";
        std::fs::write(dir.path().join("ll/index.m3u8"), text).unwrap();
        let store = LocalStore::open("m", dir.path()).unwrap();
        let refs = read(&store, &[PathBuf::from("ll/index.m3u8")], 0);
        for p in [
            "ll/seg10.m4s",
            "ll/init.mp4",
            "ll/key.bin",
            "ll/seg11.part0.m4s",
            "ll/seg11.part1.m4s",
        ] {
            assert!(
                refs.segments.contains_key(Path::new(p)),
                "{p} missing from {:?}",
                refs.segments.keys()
            );
        }
        assert_eq!(
            refs.segments[Path::new("ll/seg10.m4s")].grace,
            8_000_000_000,
            "its duration plus the playlist's"
        );
    }
}
