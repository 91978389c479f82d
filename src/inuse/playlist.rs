//! Live playlist references: every segment (and init segment, `EXT-X-MAP`) that a media
//! playlist (`.m3u8`) of the store lists is in use — players fetch exactly those — and
//! stays so for a grace period after it leaves the playlist (default: three target
//! durations). A playlist that cannot be parsed protects its whole directory.

use std::collections::HashMap;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use m3u8_rs::Playlist;

use crate::store::local::LocalStore;
use crate::units::{ByteSize, Nanos, fmt_span, fmt_time};

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

/// Segments live playlists referenced, each kept in use until its grace runs out.
#[derive(Default)]
pub struct Memory {
    /// (store, segment) → who lists it, or since when it is no longer listed.
    /// Per store, by a 64-bit hash of the segment's path ([`seg_key`]), playlist names
    /// shared: a million listed segments must fit in the unit's MemoryMax. A collision can
    /// only make a file look listed — kept, never deleted.
    refs: HashMap<String, HashMap<u64, SegRef>>,
    /// store → directories protected by their playlist (unreadable, or changed and not
    /// re-read yet), with why.
    broken: HashMap<String, Vec<(PathBuf, String)>>,
    /// store → when its playlists were last looked at.
    read_at: HashMap<String, Nanos>,
    /// store → playlist → what it was when last read.
    lists: HashMap<String, HashMap<PathBuf, Listed>>,
    /// Bytes of playlists read since the current pass began.
    pass_bytes: u64,
}

/// A segment's playlist references.
struct SegRef {
    /// The playlist listing it now, if any.
    by: Option<Arc<Path>>,
    /// Further playlists listing it (rare: no allocation for one; boxed, 8 bytes instead
    /// of a Vec's 24 in each of a million entries).
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Arc<Path>>>>,
    /// The last playlist that listed it, when none does.
    last: Option<Arc<Path>>,
    /// When it left its last playlist.
    left: Nanos,
    /// In use until then, once no playlist lists it.
    until: Nanos,
    /// Its removal grace (RFC 8216 §6.2.2), the longest any playlist gave it.
    grace: Nanos,
    /// It left because its playlist stopped changing (the stream ended).
    dead: bool,
}

/// The key of segment `path` in [`PlaylistMemory::refs`].
fn seg_key(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// A playlist as last read.
#[derive(Clone)]
struct Listed {
    stamp: Stamp,
    grace: Nanos,
    broken: Option<(PathBuf, String)>,
    /// No ENDLIST: it dies when unchanged for `dead_after`.
    live: bool,
    dead_after: Nanos,
    /// Its listing was dropped because it died.
    dead: bool,
}

/// Playlists are re-read when any of them changed since the last reading (a stat each, per
/// deletion chunk) and at least this often (to find new playlists in the registry). Only
/// the playlists that changed are read again.
const PLAYLIST_REFRESH: Nanos = 1_000_000_000;

/// At most this many bytes of playlists are read per pass (and at least the smaller bound
/// may be); a playlist that changes again after that protects its whole directory until
/// the next pass reads it.
const PLAYLIST_PASS_BYTES: u64 = 32 << 20;
const PLAYLIST_PASS_BYTES_MIN: u64 = 1 << 20;

impl Memory {
    /// Why `path` of `store` is in use by a playlist, if it is.
    pub fn reason(&self, store: &str, path: &Path, now: Nanos) -> Option<String> {
        if let Some(r) = self.refs.get(store).and_then(|m| m.get(&seg_key(path))) {
            if let Some(pl) = &r.by {
                return Some(format!("referenced by playlist {}", pl.display()));
            }
            let last = r.last.as_deref().unwrap_or(Path::new("?")).display();
            if r.until > now && r.dead {
                return Some(format!(
                    "listed by playlist {last}, which stopped changing (the stream ended); kept until {} (removal grace {})",
                    fmt_time(r.until),
                    fmt_span(r.grace)
                ));
            }
            if r.until > now {
                return Some(format!(
                    "left playlist {last} at {}; kept until {} (its duration plus the playlist's, RFC 8216 §6.2.2)",
                    fmt_time(r.left),
                    fmt_time(r.until)
                ));
            }
        }
        self.broken
            .get(store)?
            .iter()
            .find(|(dir, _)| path.starts_with(dir))
            .map(|(_, why)| format!("in the directory of an unreadable playlist ({why})"))
    }

    /// Playlist `pl` of `store` no longer lists the segments of `refs` not in `keep`: they
    /// stay in use for `grace` from `now` unless another playlist lists them.
    fn drop_listing(
        &mut self,
        store: &str,
        pl: &Path,
        keep: &std::collections::HashSet<u64>,
        grace: Nanos,
        now: Nanos,
        dead: bool,
    ) {
        let Some(refs) = self.refs.get_mut(store) else {
            return;
        };
        for (seg, r) in refs.iter_mut() {
            if keep.contains(seg) {
                continue;
            }
            let more = r.more.as_deref_mut();
            if r.by.as_deref() == Some(pl) {
                r.by = more.and_then(Vec::pop);
            } else if let Some((m, i)) =
                more.and_then(|m| m.iter().position(|p| **p == *pl).map(|i| (m, i)))
            {
                m.swap_remove(i);
                continue;
            } else {
                continue;
            }
            if r.by.is_none() {
                r.last = Some(Arc::from(pl));
                r.left = now;
                r.until = now.saturating_add(r.grace.max(grace));
                r.dead = dead;
            }
        }
    }

    /// Whether what was read of `store`'s playlists still holds at `now`: read less than
    /// [`PLAYLIST_REFRESH`] ago, no playlist changed since, and `on_disk` (playlists found
    /// in the directories a pass is about to delete from) all known.
    pub fn fresh(&self, store: &LocalStore, on_disk: &[PathBuf], now: Nanos) -> bool {
        self.read_at
            .get(store.name())
            .is_some_and(|t| now - t < PLAYLIST_REFRESH)
            && self.lists.get(store.name()).is_some_and(|lists| {
                on_disk.iter().all(|p| lists.contains_key(p))
                    && lists.iter().all(|(pl, l)| stamp(store, pl) == l.stamp)
            })
    }

    /// A pass begins: its budget of playlist bytes is whole again.
    pub fn start_pass(&mut self) {
        self.pass_bytes = 0;
    }

    /// Reads again those of `lists` (the playlists of `store`) that changed since they were
    /// last read, within this pass's byte budget; what they no longer list stays in use for
    /// its grace from `now`; a live playlist that stopped changing dies.
    pub fn refresh(&mut self, store: &LocalStore, lists: Vec<PathBuf>, now: Nanos) {
        let name = store.name().to_string();
        let known = self.lists.remove(&name).unwrap_or_default();
        let mut listed = HashMap::with_capacity(lists.len());
        let stamped: Vec<(PathBuf, Stamp)> = lists
            .into_iter()
            .map(|pl| {
                let st = stamp(store, &pl);
                (pl, st)
            })
            .collect();
        // A pass reads at most as many bytes as the playlists hold together (once
        // through), within [1 MiB, 32 MiB]: however busy their writers, a pass costs at
        // most about twice what reading them once does.
        let total: u64 = stamped.iter().filter_map(|(_, s)| s.map(|s| s.1)).sum();
        let budget = total.clamp(PLAYLIST_PASS_BYTES_MIN, PLAYLIST_PASS_BYTES);
        for (pl, stamp) in stamped {
            if let Some(l) = known.get(&pl).filter(|l| l.stamp == stamp) {
                listed.insert(pl, l.clone()); // unchanged: what it lists is known
                continue;
            }
            if self.pass_bytes >= budget {
                // Over this pass's budget: what it lists now is not known, so its
                // whole directory is protected until a later pass reads it.
                let dir = pl.parent().unwrap_or(Path::new("")).to_path_buf();
                let why = format!(
                    "{} changed; it is read again at the next pass (playlists are read at most {} per pass)",
                    pl.display(),
                    ByteSize(budget)
                );
                let mut l = known.get(&pl).cloned().unwrap_or(Listed {
                    stamp: None,
                    grace: 0,
                    broken: None,
                    live: false,
                    dead_after: 0,
                    dead: false,
                });
                l.broken = Some((dir, why));
                listed.insert(pl, l);
                continue;
            }
            let one = read_one(store, &pl);
            self.pass_bytes += one.bytes;
            {
                let keep: std::collections::HashSet<u64> =
                    one.segments.iter().map(|(p, _)| seg_key(p)).collect();
                match known.get(&pl) {
                    Some(old) => self.drop_listing(&name, &pl, &keep, old.grace, now, false),
                    // First read by this process (a start, a one-shot command): what it
                    // listed a moment ago is unknown, so every recent file of its
                    // directory that it does not list may have just left it.
                    None => self.protect_recent(store, &pl, &keep, one.grace, now),
                }
            }
            let shared: Arc<Path> = Arc::from(pl.as_path());
            let refs = self.refs.entry(name.clone()).or_default();
            for (seg, grace) in one.segments {
                let r = refs.entry(seg_key(&seg)).or_insert_with(|| SegRef {
                    by: None,
                    more: None,
                    last: None,
                    left: now,
                    until: now,
                    grace,
                    dead: false,
                });
                r.grace = r.grace.max(grace);
                r.dead = false;
                match &r.by {
                    None => r.by = Some(shared.clone()),
                    Some(p) if **p == *pl => {}
                    Some(_) => {
                        let more = r.more.get_or_insert_with(Default::default);
                        if !more.iter().any(|p| **p == *pl) {
                            more.push(shared.clone());
                        }
                    }
                }
            }
            listed.insert(
                pl,
                Listed {
                    stamp: one.stamp,
                    grace: one.grace,
                    broken: one.broken,
                    live: one.live,
                    dead_after: one.dead_after,
                    dead: false,
                },
            );
        }
        // Playlists gone from the registry no longer list anything.
        let none = std::collections::HashSet::new();
        for (pl, l) in &known {
            if !listed.contains_key(pl) {
                self.drop_listing(&name, pl, &none, l.grace, now, false);
            }
        }
        // A live playlist unchanged for its dead_after belongs to a stream that ended:
        // what it lists counts as removed from then on (a VOD playlist never dies).
        for (pl, l) in listed.iter_mut() {
            let mtime = l.stamp.map(|s| s.2);
            let died = mtime.and_then(|m| One::dead_since(l.live, l.dead_after, m, now));
            if let (Some(t), false) = (died, l.dead) {
                l.dead = true;
                self.drop_listing(&name, pl, &none, l.grace, t, true);
            }
        }
        if let Some(refs) = self.refs.get_mut(&name) {
            refs.retain(|_, r| r.by.is_some() || r.until > now);
            // Give memory back after a big playlist went, not at every refresh.
            if refs.capacity() > 4 * refs.len().max(4096) {
                refs.shrink_to_fit();
            }
        }
        let broken = listed.values().filter_map(|l| l.broken.clone()).collect();
        self.broken.insert(name.clone(), broken);
        self.lists.insert(name.clone(), listed);
        self.read_at.insert(name, now);
    }

    /// At the first reading of playlist `pl` by this process: every file of its directory
    /// that it does not list (`keep`) and that is recent enough to have left it within the
    /// last `grace` stays in use for `grace` from now. A restart or a one-shot command
    /// does not know what the playlist listed a moment ago; a segment written more than
    /// twice the grace ago left it (if ever) long enough ago to be free.
    fn protect_recent(
        &mut self,
        store: &LocalStore,
        pl: &Path,
        keep: &std::collections::HashSet<u64>,
        grace: Nanos,
        now: Nanos,
    ) {
        let dir = pl.parent().unwrap_or(Path::new(""));
        let since = now.saturating_sub(grace.saturating_mul(2));
        let shared: Arc<Path> = Arc::from(pl);
        let refs = self.refs.entry(store.name().to_string()).or_default();
        for f in store.names_ending(dir, "") {
            let key = seg_key(&f);
            if keep.contains(&key) || f == pl || refs.contains_key(&key) {
                continue;
            }
            if store
                .stat(&f)
                .ok()
                .flatten()
                .is_some_and(|m| m.mtime >= since)
            {
                refs.insert(
                    key,
                    SegRef {
                        by: None,
                        more: None,
                        last: Some(shared.clone()),
                        left: now,
                        until: now.saturating_add(grace),
                        grace,
                        dead: false,
                    },
                );
            }
        }
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
