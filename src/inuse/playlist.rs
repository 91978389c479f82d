//! Live playlist references: every segment (and init segment, `EXT-X-MAP`) that a media
//! playlist (`.m3u8`) of the store lists is in use — players fetch exactly those — and
//! stays so for a grace period after it leaves the playlist (default: three target
//! durations). A playlist that cannot be parsed protects its whole directory.

use std::collections::HashMap;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

#[path = "hls.rs"]
mod hls;

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
    read_text(&mut one, dir, pl, &text);
    one
}

/// What playlist `pl` (in `dir`) lists, read from its `text` into `one`.
fn read_text(one: &mut One, dir: PathBuf, pl: &Path, text: &[u8]) {
    match hls::parse(text) {
        Ok(hls::Playlist::Media(mp)) => {
            let secs = |d: f64| (d.max(0.0) * 1e9) as Nanos;
            let target = secs(mp.target_duration as f64).max(1_000_000_000);
            // Saturating: a hostile EXTINF (a 40-digit duration) must not wrap the grace.
            let total: Nanos = mp
                .segments
                .iter()
                .fold(0, |t: Nanos, s| t.saturating_add(secs(s.1 as f64)));
            let longest = mp.segments.iter().map(|s| secs(s.1 as f64)).max();
            one.grace = total.saturating_add(longest.unwrap_or(target));
            one.live = !mp.end_list;
            one.dead_after = (DEAD_TARGETS * target).max(DEAD_MIN);
            one.segments = mp
                .segments
                .iter()
                .filter_map(|&(uri, d)| {
                    Some((resolve_bytes(&dir, uri)?, secs(d as f64).saturating_add(total)))
                })
                .collect();
            // Init segments, keys, low-latency parts, preload hints and the like: every
            // URI="…" attribute of an EXT tag.
            let grace = one.grace;
            one.segments.extend(
                mp.attributes
                    .iter()
                    .filter_map(|uri| resolve_bytes(&dir, uri))
                    .map(|p| (p, grace)),
            );
        }
        Ok(hls::Playlist::Master) => {} // lists playlists, not segments
        Err(e) => {
            let why = format!("{} does not parse as HLS: {}", pl.display(), short(&e));
            tracing::warn!(path = %pl.display(), reason = %why, "unparsable playlist; protecting its directory");
            one.broken = Some((dir, why));
        }
    }
}

/// The grace of a playlist that says nothing (three target durations of 1 s).
const DEFAULT_GRACE: Nanos = 3_000_000_000;

/// Segments live playlists referenced, each kept in use until its grace runs out.
#[derive(Default)]
pub struct Memory {
    /// Per store: which segments its playlists list, and which left one recently.
    refs: HashMap<String, Segs>,
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

/// The segments of one store's playlists, by a 64-bit hash of the segment's path
/// ([`seg_key`]). A collision can only make a file look listed — kept, never deleted.
///
/// Compact because a million listed segments must fit in the unit's MemoryMax with room
/// to spare: a listed segment is 16 bytes of a hash table (its key, its first playlist's
/// number, its grace in milliseconds), 17 MB per million at 7/8 load where the former map
/// of full records took 81 bytes a slot (issue 10.4). What is rare has maps of its own:
/// segments listed by more than one playlist, and segments that left their playlists and
/// are still within their grace.
#[derive(Default)]
struct Segs {
    /// Listed now: segment → its first playlist and grace.
    listed: HashMap<u64, Listing>,
    /// Listed by further playlists too: segment → their numbers.
    more: HashMap<u64, Vec<u32>>,
    /// Listed by none any more, in use until its grace runs out.
    gone: HashMap<u64, Gone>,
    /// Playlist numbers ([`Listing::by`]) → names.
    names: Vec<Arc<Path>>,
    ids: HashMap<Arc<Path>, u32>,
}

/// A listed segment.
#[derive(Clone, Copy)]
struct Listing {
    /// The number of the playlist listing it ([`Segs::names`]).
    by: u32,
    /// Its removal grace (RFC 8216 §6.2.2), the longest any playlist gave it, in
    /// milliseconds rounded up (49 days at most; the playlist's own grace still applies
    /// when it leaves).
    grace_ms: u32,
}

/// A segment no playlist lists any more.
struct Gone {
    /// The last playlist that listed it.
    last: Arc<Path>,
    /// When it left its last playlist.
    left: Nanos,
    /// In use until then.
    until: Nanos,
    /// Its removal grace, the longest any playlist gave it.
    grace: Nanos,
    /// It left because its playlist stopped changing (the stream ended).
    dead: bool,
}

fn to_ms(n: Nanos) -> u32 {
    u32::try_from((n.max(0) as u64).div_ceil(1_000_000)).unwrap_or(u32::MAX)
}

fn from_ms(ms: u32) -> Nanos {
    ms as Nanos * 1_000_000
}

impl Segs {
    /// The number of playlist `pl`.
    fn id(&mut self, pl: &Path) -> u32 {
        if let Some(&id) = self.ids.get(pl) {
            return id;
        }
        let id = self.names.len() as u32;
        let name: Arc<Path> = Arc::from(pl);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    fn name(&self, id: u32) -> &Path {
        self.names
            .get(id as usize)
            .map_or(Path::new("?"), |p| p.as_ref())
    }

    /// Whether `key` is listed or within its grace.
    fn contains(&self, key: u64) -> bool {
        self.listed.contains_key(&key) || self.gone.contains_key(&key)
    }

    /// Playlist `pl` lists `key` with `grace`.
    fn list(&mut self, key: u64, pl: u32, grace: Nanos) {
        if let Some(l) = self.listed.get_mut(&key) {
            l.grace_ms = l.grace_ms.max(to_ms(grace));
            if l.by != pl {
                let more = self.more.entry(key).or_default();
                if !more.contains(&pl) {
                    more.push(pl);
                }
            }
            return;
        }
        let before = self.gone.remove(&key).map_or(0, |g| g.grace);
        self.listed.insert(
            key,
            Listing {
                by: pl,
                grace_ms: to_ms(before.max(grace)),
            },
        );
    }

    /// Numbers only the playlists in `keep` (those a store still has), so that names of
    /// playlists long gone do not pile up.
    fn renumber(&mut self, keep: impl Iterator<Item = PathBuf>) {
        let names: Vec<Arc<Path>> = keep.map(|p| Arc::from(p.as_path())).collect();
        let ids: HashMap<Arc<Path>, u32> = names
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        let map = |old: u32| {
            let name = self.names.get(old as usize)?;
            ids.get(name).copied()
        };
        let old: Vec<Option<u32>> = (0..self.names.len() as u32).map(map).collect();
        let at = |id: u32| old.get(id as usize).copied().flatten();
        // A listing by a playlist no longer kept was dropped (drop_listing) before.
        self.listed.retain(|_, l| match at(l.by) {
            Some(id) => {
                l.by = id;
                true
            }
            None => false,
        });
        self.more.retain(|_, m| {
            m.retain_mut(|id| match at(*id) {
                Some(new) => {
                    *id = new;
                    true
                }
                None => false,
            });
            !m.is_empty()
        });
        self.names = names;
        self.ids = ids;
    }
}

/// The key of segment `path` in [`Segs`].
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
        if let Some(segs) = self.refs.get(store) {
            let key = seg_key(path);
            if let Some(l) = segs.listed.get(&key) {
                let pl = segs.name(l.by).display();
                return Some(format!("referenced by playlist {pl}"));
            }
            if let Some(r) = segs.gone.get(&key) {
                let last = r.last.display();
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
        let Some(segs) = self.refs.get_mut(store) else {
            return;
        };
        let Some(&id) = segs.ids.get(pl) else {
            return; // it never listed anything
        };
        let Segs {
            listed, more, gone, ..
        } = segs;
        let last: Arc<Path> = Arc::from(pl);
        listed.retain(|seg, l| {
            if keep.contains(seg) {
                return true;
            }
            if l.by != id {
                if let Some(m) = more.get_mut(seg)
                    && let Some(i) = m.iter().position(|&p| p == id)
                {
                    m.swap_remove(i);
                    if m.is_empty() {
                        more.remove(seg);
                    }
                }
                return true;
            }
            if let Some(m) = more.get_mut(seg)
                && let Some(next) = m.pop()
            {
                if m.is_empty() {
                    more.remove(seg);
                }
                l.by = next;
                return true;
            }
            let g = from_ms(l.grace_ms);
            gone.insert(
                *seg,
                Gone {
                    last: last.clone(),
                    left: now,
                    until: now.saturating_add(g.max(grace)),
                    grace: g,
                    dead,
                },
            );
            false
        });
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
            let segs = self.refs.entry(name.clone()).or_default();
            let id = segs.id(&pl);
            segs.listed.reserve(one.segments.len());
            for (seg, grace) in one.segments {
                segs.list(seg_key(&seg), id, grace);
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
        if let Some(segs) = self.refs.get_mut(&name) {
            segs.gone.retain(|_, r| r.until > now);
            if segs.names.len() > 2 * listed.len() + 64 {
                segs.renumber(listed.keys().cloned());
            }
            // Give memory back after a big playlist went, not at every refresh.
            if segs.listed.capacity() > 4 * segs.listed.len().max(4096) {
                segs.listed.shrink_to_fit();
            }
            if segs.gone.capacity() > 4 * segs.gone.len().max(4096) {
                segs.gone.shrink_to_fit();
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
        let segs = self.refs.entry(store.name().to_string()).or_default();
        for f in store.names_ending(dir, "") {
            let key = seg_key(&f);
            if keep.contains(&key) || f == pl || segs.contains(key) {
                continue;
            }
            if store
                .stat(&f)
                .ok()
                .flatten()
                .is_some_and(|m| m.mtime >= since)
            {
                segs.gone.insert(
                    key,
                    Gone {
                        last: shared.clone(),
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

/// Decodes `%XX` escapes (invalid ones are kept as written).
fn percent_decode(b: &[u8]) -> Vec<u8> {
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
#[cfg(test)]
fn resolve(dir: &Path, uri: &str) -> Option<PathBuf> {
    resolve_bytes(dir, uri.as_bytes())
}

/// [`resolve`] of a URI as written in the playlist (not necessarily UTF-8).
fn resolve_bytes(dir: &Path, uri: &[u8]) -> Option<PathBuf> {
    if uri.windows(3).any(|w| w == b"://") {
        return None;
    }
    let end = uri.iter().position(|&c| c == b'?' || c == b'#').unwrap_or(uri.len());
    let decoded = std::ffi::OsString::from_vec(percent_decode(&uri[..end]));
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
