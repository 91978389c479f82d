//! Live playlist references: every segment (and init segment, `EXT-X-MAP`) that a media
//! playlist (`.m3u8`) of the store lists is in use — players fetch exactly those — and
//! stays so for a grace period after it leaves the playlist (default: three target
//! durations). A playlist that cannot be parsed protects its whole directory.

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

/// What one playlist references, as read at one instant.
#[derive(Debug, Default)]
pub struct One {
    /// What it was (inode, size, mtime) just before it was read.
    pub stamp: Stamp,
    /// The segments it lists (relative to the store root), each with its removal grace:
    /// RFC 8216 §6.2.2, its own duration plus the playlist's.
    pub segments: Vec<(PathBuf, Nanos)>,
    /// The grace of what it references besides segments (init segments, keys, parts,
    /// hints): the playlist's duration plus its longest segment.
    pub grace: Nanos,
    /// A live playlist (no `#EXT-X-ENDLIST`): it dies when it stops changing.
    pub live: bool,
    /// How long a live playlist may stay unchanged before it counts as dead: six target
    /// durations, at least 10 s.
    pub dead_after: Nanos,
    /// Why it protects its whole directory (unreadable, unparsable): (dir, why).
    pub broken: Option<(PathBuf, String)>,
    /// Bytes read.
    pub bytes: u64,
}

impl One {
    /// When a live playlist last changed at `mtime` counts as dead (its stream ended), if
    /// it does by `now`.
    pub fn dead_since(live: bool, dead_after: Nanos, mtime: Nanos, now: Nanos) -> Option<Nanos> {
        let t = mtime.saturating_add(dead_after);
        (live && t <= now).then_some(t)
    }
}

/// Reads playlist `pl` (relative to the store root) of `store`.
pub fn read_one(store: &LocalStore, pl: &Path) -> One {
    let dir = pl.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut one = One {
        stamp: stamp(store, pl),
        grace: DEFAULT_GRACE,
        dead_after: DEAD_MIN,
        ..Default::default()
    };
    let text = match store.read_small(pl, MAX_PLAYLIST) {
        Ok(Some(t)) => t,
        Ok(None) => return one, // gone meanwhile
        Err(e) => {
            one.broken = Some((dir, format!("{} cannot be read: {e}", pl.display())));
            return one;
        }
    };
    one.bytes = text.len() as u64;
    match m3u8_rs::parse_playlist_res(&text) {
        Ok(Playlist::MediaPlaylist(mp)) => {
            let secs = |d: f64| (d.max(0.0) * 1e9) as Nanos;
            let target = secs(mp.target_duration as f64).max(1_000_000_000);
            let total: Nanos = mp.segments.iter().map(|s| secs(s.duration as f64)).sum();
            let longest = mp.segments.iter().map(|s| secs(s.duration as f64)).max();
            one.grace = total + longest.unwrap_or(target);
            one.live = !mp.end_list;
            one.dead_after = (DEAD_TARGETS * target).max(DEAD_MIN);
            one.segments = mp
                .segments
                .iter()
                .filter_map(|s| Some((resolve(&dir, &s.uri)?, secs(s.duration as f64) + total)))
                .collect();
            let others = mp.segments.iter().flat_map(|s| {
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
            let grace = one.grace;
            one.segments.extend(
                others
                    .chain(attributes.iter().map(String::as_str))
                    .filter_map(|uri| resolve(&dir, uri))
                    .map(|p| (p, grace)),
            );
        }
        Ok(Playlist::MasterPlaylist(_)) => {} // lists playlists, not segments
        Err(e) => {
            let why = format!(
                "{} does not parse as HLS: {}",
                pl.display(),
                short(&format!("{e:?}"))
            );
            tracing::warn!(path = %pl.display(), reason = %why, "unparsable playlist; protecting its directory");
            one.broken = Some((dir, why));
        }
    }
    one
}

/// The grace of a playlist that says nothing (three target durations of 1 s).
const DEFAULT_GRACE: Nanos = 3_000_000_000;

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
    fn low_latency_parts_keys_and_hints_are_referenced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ll")).unwrap();
        let text = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART-INF:PART-TARGET=1.0\n\
#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-KEY:METHOD=AES-128,URI=\"key.bin\"\n\
#EXTINF:4.0,\nseg10.m4s\n#EXT-X-PART:DURATION=1.0,URI=\"seg11.part0.m4s\"\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg11.part1.m4s\"\n";
        std::fs::write(dir.path().join("ll/index.m3u8"), text).unwrap();
        let store = LocalStore::open("m", dir.path()).unwrap();
        let one = read_one(&store, Path::new("ll/index.m3u8"));
        let grace = |p: &str| {
            one.segments
                .iter()
                .find(|(q, _)| q == Path::new(p))
                .map(|(_, g)| *g)
        };
        for p in [
            "ll/seg10.m4s",
            "ll/init.mp4",
            "ll/key.bin",
            "ll/seg11.part0.m4s",
            "ll/seg11.part1.m4s",
        ] {
            assert!(grace(p).is_some(), "{p} missing from {:?}", one.segments);
        }
        assert_eq!(
            grace("ll/seg10.m4s"),
            Some(8_000_000_000),
            "its duration plus the playlist's"
        );
        assert!(one.live, "no ENDLIST");
    }
}
