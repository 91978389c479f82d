//! Live playlist references: every segment (and init segment, `EXT-X-MAP`) that a media
//! playlist (`.m3u8`) of the store lists is in use — players fetch exactly those — and
//! stays so for a grace period after it leaves the playlist (default: three target
//! durations). A playlist that cannot be parsed protects its whole directory.
//!
//! DASH manifests (`.mpd`, read by mpd.rs) are playlists here too: what an MPD names is
//! in use while it names it, and after it left, until its availability end (ISO/IEC
//! 23009-1 §5.3.9.5.3: availability start + duration + `timeShiftBufferDepth`) and at
//! least the MPD's `minimumUpdatePeriod` (plus its longest segment) from the reading that
//! first missed it — a client may hold the previous MPD that long. See docs/dash.md.
//!
//! One file (about 880 lines of code, then its tests) because it is one memory: reading a
//! playlist, what it lists, what departed and until when are updated together, and kept
//! compact (16 bytes per segment, shared departure records) so that a box with millions of
//! listed segments stays within the unit's MemoryMax — see BENCHMARKS.md, "Hostile
//! playlists". Parsing itself is in hls.rs (HLS) and mpd.rs (DASH).

use std::collections::HashMap;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::{hls, mpd};

use crate::store::local::LocalStore;
use crate::units::{ByteSize, Nanos, fmt_span, fmt_time};

/// The largest playlist we read; a bigger one is treated as unparsable.
const MAX_PLAYLIST: usize = 8 << 20;

/// A live playlist (no `#EXT-X-ENDLIST`) unchanged for this many target durations (and at
/// least [`DEAD_MIN`]) belongs to a stream that ended: it stops protecting what it lists,
/// after the removal grace.
const DEAD_TARGETS: i64 = 6;
const DEAD_MIN: Nanos = 10_000_000_000;

/// A muxer writes its last playlist as the stream stops: written this long after its
/// server said the stream stopped, a playlist still counts as stopped then.
const STOP_SLACK: Nanos = 2_000_000_000;

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
    /// An MPD's: each segment's availability end (ns since the epoch, 0: none), in the
    /// order of `segments`. Empty for an HLS playlist.
    pub ends: Vec<Nanos>,
    /// At its first reading by this process, files of its directories written within
    /// twice this and not listed may have just left it: they are kept this long. An HLS
    /// playlist's `grace`; an MPD's time-shift window plus two segments plus its `grace`.
    pub recent: Nanos,
    /// What it lists depends on the time it is read (an MPD's `SegmentTemplate@duration`):
    /// it is read again even when unchanged.
    pub timed: bool,
}

impl One {
    /// When a live playlist last changed at `mtime` counts as dead (its stream ended), if
    /// it does by `now`.
    pub fn dead_since(live: bool, dead_after: Nanos, mtime: Nanos, now: Nanos) -> Option<Nanos> {
        let t = mtime.saturating_add(dead_after);
        (live && t <= now).then_some(t)
    }
}

/// Whether `pl` is a DASH manifest (else an HLS playlist).
pub fn is_mpd(pl: &Path) -> bool {
    pl.extension().is_some_and(|x| x == "mpd")
}

/// Reads playlist `pl` (relative to the store root) of `store`, at `now` (an MPD's
/// template without a timeline names the segments around it).
pub fn read_one(store: &LocalStore, pl: &Path, now: Nanos) -> One {
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
    if is_mpd(pl) {
        read_mpd(&mut one, dir, pl, &text, now);
    } else {
        read_text(&mut one, dir, pl, &text);
    }
    one.recent = one.recent.max(one.grace);
    one
}

/// What MPD `pl` (in `dir`) names, read from its `text` at `now` into `one`.
fn read_mpd(one: &mut One, dir: PathBuf, pl: &Path, text: &[u8], now: Nanos) {
    match mpd::parse(text, now) {
        Ok(m) => {
            let longest = m.segments.iter().map(|n| n.duration).max().unwrap_or(0);
            let longest = longest.max(1_000_000_000);
            if m.dynamic {
                // A client may hold the MPD it read last for minimumUpdatePeriod, then
                // fetch a segment of it: that long after the segment left, plus the
                // segment. Without the attribute the MPD is never updated; its segments
                // are kept like an HLS playlist's, three of them.
                let period = m.min_update.unwrap_or(2 * longest);
                one.grace = period.saturating_add(longest);
                one.live = true;
                one.dead_after = DEAD_TARGETS
                    .saturating_mul(period.max(longest))
                    .max(DEAD_MIN);
                one.recent = (m.time_shift.unwrap_or(0))
                    .saturating_add(2 * longest)
                    .saturating_add(one.grace);
            } else {
                one.grace = DEFAULT_GRACE.max(3 * longest);
            }
            one.timed = m.timed;
            one.segments.reserve(m.segments.len());
            one.ends.reserve(m.segments.len());
            for n in m.segments {
                if let Some(p) = resolve_bytes(&dir, n.uri.as_bytes()) {
                    one.segments.push((p, 0));
                    one.ends.push(n.end);
                }
            }
        }
        Err(e) => {
            let why = format!(
                "{} does not parse as a DASH MPD: {}",
                pl.display(),
                short(&e)
            );
            tracing::warn!(path = %pl.display(), reason = %why, "unparsable MPD; protecting its directory");
            one.broken = Some((dir, why));
        }
    }
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
                    Some((
                        resolve_bytes(&dir, uri)?,
                        secs(d as f64).saturating_add(total),
                    ))
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
    /// Listed by none any more, in use until its grace runs out: segment → its
    /// departure and grace. As compact as a listing: a stream that ends moves all its
    /// playlist listed here at once.
    gone: HashMap<u64, Gone>,
    /// Departures ([`Gone::at`]): segments that left one playlist at one instant share one.
    departures: HashMap<u32, Departure>,
    next_departure: u32,
    /// Listed by an MPD: segment → its availability end (ns since the epoch), kept at
    /// least that long after it leaves (ISO/IEC 23009-1 §5.3.9.5.3).
    ends: HashMap<u64, Nanos>,
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
#[derive(Clone, Copy)]
struct Gone {
    /// How it left ([`Segs::departures`]).
    at: u32,
    /// Its removal grace, the longest any playlist gave it, in milliseconds rounded up.
    grace_ms: u32,
}

/// Segments leaving a playlist at one instant.
struct Departure {
    /// The last playlist that listed them.
    last: Arc<Path>,
    /// When they left it.
    left: Nanos,
    /// The playlist's grace then: each stays in use until `left` plus the longer of this
    /// and its own.
    grace: Nanos,
    /// They left because the playlist stopped changing (the stream ended).
    dead: bool,
}

impl Segs {
    /// A new departure.
    fn depart(&mut self, d: Departure) -> u32 {
        while self.departures.contains_key(&self.next_departure) {
            self.next_departure = self.next_departure.wrapping_add(1);
        }
        let id = self.next_departure;
        self.next_departure = self.next_departure.wrapping_add(1);
        self.departures.insert(id, d);
        id
    }

    /// Since when and until when gone segment `g` is in use, with its grace and how it
    /// left.
    fn gone(&self, g: Gone) -> Option<(&Departure, Nanos, Nanos)> {
        let d = self.departures.get(&g.at)?;
        let grace = from_ms(g.grace_ms);
        Some((d, d.left.saturating_add(grace.max(d.grace)), grace))
    }
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

    /// Playlist `pl` lists `key` with `grace` (and `end`, its availability end if an MPD
    /// gives one: else 0).
    fn list(&mut self, key: u64, pl: u32, grace: Nanos, end: Nanos) {
        if end > 0 {
            let e = self.ends.entry(key).or_insert(end);
            *e = (*e).max(end);
        }
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
        let before = self.gone.remove(&key).map_or(0, |g| from_ms(g.grace_ms));
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
        let listed = &self.listed;
        self.ends.retain(|k, _| listed.contains_key(k));
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
    /// Read again at every refresh, even unchanged ([`One::timed`]).
    timed: bool,
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
/// The words of a refusal waiting for a playlist the pass's budget left unread (the
/// engine asks for another pass soon when it sees them).
pub const READ_AGAIN: &str = "it is read again at the next pass";

impl Memory {
    /// Why `path` of `store` is in use by a playlist, if it is.
    pub fn reason(&self, store: &str, path: &Path, now: Nanos) -> Option<String> {
        if let Some(segs) = self.refs.get(store) {
            let key = seg_key(path);
            if let Some(l) = segs.listed.get(&key) {
                let name = segs.name(l.by);
                let pl = name.display();
                if is_mpd(name) {
                    return Some(match segs.ends.get(&key) {
                        Some(&end) => format!(
                            "listed by MPD {pl}; available until {} (ISO/IEC 23009-1 §5.3.9.5.3), and kept at least until then",
                            fmt_time(end)
                        ),
                        None => format!("listed by MPD {pl}"),
                    });
                }
                return Some(format!("referenced by playlist {pl}"));
            }
            if let Some((d, until, grace)) = segs.gone.get(&key).and_then(|&g| segs.gone(g)) {
                let last = d.last.display();
                let what = if is_mpd(&d.last) { "MPD" } else { "playlist" };
                if until > now && d.dead {
                    return Some(format!(
                        "listed by {what} {last}, which stopped changing (the stream ended); kept until {} (removal grace {})",
                        fmt_time(until),
                        fmt_span(grace.max(d.grace))
                    ));
                }
                if until > now && is_mpd(&d.last) {
                    return Some(format!(
                        "left MPD {last} at {}; kept until {} (its availability end, and at least the MPD's minimumUpdatePeriod and its longest segment after it left: ISO/IEC 23009-1 §5.3.9.5.3)",
                        fmt_time(d.left),
                        fmt_time(until)
                    ));
                }
                if until > now {
                    return Some(format!(
                        "left playlist {last} at {}; kept until {} (its duration plus the playlist's, RFC 8216 §6.2.2)",
                        fmt_time(d.left),
                        fmt_time(until)
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
        let at = segs.depart(Departure {
            last: Arc::from(pl),
            left: now,
            grace,
            dead,
        });
        let Segs {
            listed,
            more,
            gone,
            ends,
            ..
        } = segs;
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
            // An MPD's segment stays until its availability end at least.
            let until_end = ends.remove(seg).map_or(0, |e| e.saturating_sub(now));
            gone.insert(
                *seg,
                Gone {
                    at,
                    grace_ms: l.grace_ms.max(to_ms(until_end)),
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
    /// its grace from `now`; a live playlist that stopped changing dies. `said` is what its
    /// media server last said about a playlist's stream (a webhook): (live, since).
    pub fn refresh(
        &mut self,
        store: &LocalStore,
        lists: Vec<PathBuf>,
        now: Nanos,
        said: &dyn Fn(&Path) -> Option<(bool, Nanos)>,
    ) {
        self.refresh_first(store, lists, &[], now, said)
    }

    /// [`Playlists::refresh`], reading first the playlists of `first` (the directories the
    /// pass deletes from), smallest first, then the others, smallest first: big playlists
    /// elsewhere never use up the budget before the one that decides this pass's files.
    pub fn refresh_first(
        &mut self,
        store: &LocalStore,
        lists: Vec<PathBuf>,
        first: &[&Path],
        now: Nanos,
        said: &dyn Fn(&Path) -> Option<(bool, Nanos)>,
    ) {
        let name = store.name().to_string();
        let known = self.lists.remove(&name).unwrap_or_default();
        let mut listed = HashMap::with_capacity(lists.len());
        let mut stamped: Vec<(PathBuf, Stamp)> = lists
            .into_iter()
            .map(|pl| {
                let st = stamp(store, &pl);
                (pl, st)
            })
            .collect();
        stamped.sort_by_key(|(pl, st)| {
            let dir = pl.parent().unwrap_or(Path::new(""));
            (!first.contains(&dir), st.map_or(0, |s| s.1))
        });
        // A pass reads at most as many bytes as the playlists hold together (once
        // through), within [1 MiB, 32 MiB]: however busy their writers, a pass costs at
        // most about twice what reading them once does.
        let total: u64 = stamped.iter().filter_map(|(_, s)| s.map(|s| s.1)).sum();
        let budget = total.clamp(PLAYLIST_PASS_BYTES_MIN, PLAYLIST_PASS_BYTES);
        for (pl, stamp) in stamped {
            if let Some(l) = known.get(&pl).filter(|l| l.stamp == stamp && !l.timed) {
                listed.insert(pl, l.clone()); // unchanged: what it lists is known
                continue;
            }
            if self.pass_bytes >= budget {
                // Over this pass's budget: what it lists now is not known, so its
                // whole directory is protected until a later pass reads it.
                let dir = pl.parent().unwrap_or(Path::new("")).to_path_buf();
                let why = format!(
                    "{} changed; {READ_AGAIN}, in a few seconds (playlists are read at most {} per pass)",
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
                    timed: false,
                });
                l.broken = Some((dir, why));
                listed.insert(pl, l);
                continue;
            }
            let one = read_one(store, &pl, now);
            self.pass_bytes += one.bytes;
            {
                let keep: std::collections::HashSet<u64> =
                    one.segments.iter().map(|(p, _)| seg_key(p)).collect();
                match known.get(&pl) {
                    Some(old) => self.drop_listing(&name, &pl, &keep, old.grace, now, false),
                    // First read by this process (a start, a one-shot command): what it
                    // listed a moment ago is unknown, so every recent file of its
                    // directory that it does not list may have just left it.
                    None => self.protect_recent(store, &pl, &one, &keep, now),
                }
            }
            let segs = self.refs.entry(name.clone()).or_default();
            let id = segs.id(&pl);
            if !known.contains_key(&pl) {
                // New: room for what it lists at once. (Not for one read again: what it
                // lists is mostly there already, and room for all of it anew could double
                // the table for good.)
                segs.listed.reserve(one.segments.len());
            }
            for (i, (seg, grace)) in one.segments.into_iter().enumerate() {
                let end = one.ends.get(i).copied().unwrap_or(0);
                segs.list(seg_key(&seg), id, grace, end);
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
                    timed: one.timed,
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
        // what it lists counts as removed from then on (a VOD playlist never dies). Its
        // server's word comes first: a stream it says stopped ends its playlists then
        // (unless written again since: a new publish), one it says is live never dies of
        // staleness.
        for (pl, l) in listed.iter_mut() {
            let mtime = l.stamp.map(|s| s.2);
            let died = match said(pl) {
                // (A VOD playlist, with ENDLIST, stays what it is: viewers may be watching.)
                // Its segments leave when it was last written, if after the word: a
                // stop (even a forged one) never gives a segment less than its RFC 8216
                // §6.2.2 grace from the last playlist that listed it.
                Some((false, t))
                    if l.live && mtime.is_none_or(|m| m <= t.saturating_add(STOP_SLACK)) =>
                {
                    Some(mtime.map_or(t, |m| m.max(t)))
                }
                Some((true, _)) => None,
                _ => mtime.and_then(|m| One::dead_since(l.live, l.dead_after, m, now)),
            };
            if let (Some(t), false) = (died, l.dead) {
                l.dead = true;
                self.drop_listing(&name, pl, &none, l.grace, t, true);
            }
        }
        if let Some(segs) = self.refs.get_mut(&name) {
            let Segs {
                gone, departures, ..
            } = segs;
            let mut used = std::collections::HashSet::new();
            gone.retain(|_, g| {
                let until = departures.get(&g.at).map_or(0, |d| {
                    d.left.saturating_add(from_ms(g.grace_ms).max(d.grace))
                });
                if until > now {
                    used.insert(g.at);
                }
                until > now
            });
            departures.retain(|id, _| used.contains(id));
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

    /// At the first reading of playlist `pl` (read as `one`) by this process: every file
    /// of its directory (for an MPD, of the directories of what it names too: SRS writes
    /// its fragments beneath the MPD's) that it does not list (`keep`) and that is recent
    /// enough to have left it lately stays in use for `one.recent` from now. A restart or
    /// a one-shot command does not know what the playlist listed a moment ago; a segment
    /// written more than twice that ago left it (if ever) long enough ago to be free.
    fn protect_recent(
        &mut self,
        store: &LocalStore,
        pl: &Path,
        one: &One,
        keep: &std::collections::HashSet<u64>,
        now: Nanos,
    ) {
        let grace = one.recent;
        let mut dirs = vec![pl.parent().unwrap_or(Path::new(""))];
        if is_mpd(pl) {
            for (seg, _) in &one.segments {
                let d = seg.parent().unwrap_or(Path::new(""));
                // A handful of directories (one per representation at most, in practice).
                if !dirs.contains(&d) && dirs.len() < 16 {
                    dirs.push(d);
                }
            }
        }
        let since = now.saturating_sub(grace.saturating_mul(2));
        let segs = self.refs.entry(store.name().to_string()).or_default();
        let mut at = None;
        for f in dirs.iter().flat_map(|d| store.names_ending(d, "")) {
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
                let at = *at.get_or_insert_with(|| {
                    segs.depart(Departure {
                        last: Arc::from(pl),
                        left: now,
                        grace,
                        dead: false,
                    })
                });
                segs.gone.insert(
                    key,
                    Gone {
                        at,
                        grace_ms: to_ms(grace),
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
pub(super) fn resolve_bytes(dir: &Path, uri: &[u8]) -> Option<PathBuf> {
    if uri.windows(3).any(|w| w == b"://") {
        return None;
    }
    let end = uri
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(uri.len());
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
        let one = read_one(&store, Path::new("ll/index.m3u8"), 0);
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
    #[test]
    fn hostile_playlists_are_read_in_bounded_memory_and_protect_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("h")).unwrap();
        let store = LocalStore::open("m", dir.path()).unwrap();
        let broken = |name: &str| {
            let one = read_one(&store, &Path::new("h").join(name), 0);
            assert!(one.segments.is_empty(), "{name}");
            one.broken.unwrap_or_default()
        };
        // 1 GiB (sparse): only MAX_PLAYLIST + 1 bytes are read.
        let f = std::fs::File::create(dir.path().join("h/huge.m3u8")).unwrap();
        f.set_len(1 << 30).unwrap();
        let (d, why) = broken("huge.m3u8");
        assert_eq!(d, Path::new("h"));
        assert!(
            why.contains("cannot be read") && why.contains("larger than"),
            "{why}"
        );
        // A 100 MB line without a newline, after #EXTM3U.
        let mut line = b"#EXTM3U\n".to_vec();
        line.resize(100 << 20, b'a');
        std::fs::write(dir.path().join("h/line.m3u8"), &line).unwrap();
        assert!(broken("line.m3u8").1.contains("larger than"));
        // Binary garbage within the size bound.
        let garbage: Vec<u8> = (0..(4u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(dir.path().join("h/garbage.m3u8"), &garbage).unwrap();
        let why = broken("garbage.m3u8").1;
        assert!(
            why.contains("does not parse as HLS: it does not begin with #EXTM3U"),
            "{why}"
        );
        // A line of nearly MAX_PLAYLIST bytes is one (unmatchable) segment name, no more.
        let mut long = b"#EXTM3U\n#EXTINF:2,\n".to_vec();
        long.resize(MAX_PLAYLIST - 1, b'a');
        long.push(b'\n');
        std::fs::write(dir.path().join("h/long.m3u8"), &long).unwrap();
        let one = read_one(&store, Path::new("h/long.m3u8"), 0);
        assert!(one.broken.is_none());
        assert_eq!(one.segments.len(), 1);
    }
    #[test]
    fn a_segment_listed_twice_stays_until_its_last_playlist_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("s")).unwrap();
        let store = LocalStore::open("m", dir.path()).unwrap();
        let write = |name: &str, segs: &[&str]| {
            let mut t = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
            for s in segs {
                t.push_str(&format!("#EXTINF:2.0,\n{s}\n"));
            }
            t.push_str("#EXT-X-ENDLIST\n"); // VOD: never dies of staying unchanged
            std::fs::write(dir.path().join("s").join(name), t).unwrap();
        };
        let lists = || vec![PathBuf::from("s/a.m3u8"), PathBuf::from("s/b.m3u8")];
        let why = |m: &Memory, seg: &str, now| m.reason("m", &Path::new("s").join(seg), now);
        let s = 1_000_000_000;
        let now = fmt_now();
        write("a.m3u8", &["x.ts", "y.ts"]);
        write("b.m3u8", &["y.ts"]);
        let mut m = Memory::default();
        m.refresh(&store, lists(), now, &|_| None);
        assert_eq!(
            why(&m, "x.ts", now).unwrap(),
            "referenced by playlist s/a.m3u8"
        );
        // Smaller playlists are read first: b names y.
        assert_eq!(
            why(&m, "y.ts", now).unwrap(),
            "referenced by playlist s/b.m3u8"
        );
        assert_eq!(why(&m, "z.ts", now), None);
        // a drops both: y is still b's; x left a, kept for a's grace (4 s + 2 s).
        write("a.m3u8", &["z.ts"]);
        m.refresh(&store, lists(), now + s, &|_| None);
        assert_eq!(
            why(&m, "y.ts", now + s).unwrap(),
            "referenced by playlist s/b.m3u8"
        );
        let x = why(&m, "x.ts", now + s).unwrap();
        assert!(x.starts_with("left playlist s/a.m3u8 at "), "{x}");
        assert!(why(&m, "x.ts", now + 7 * s - 1).is_some());
        m.refresh(&store, lists(), now + 7 * s, &|_| None);
        assert_eq!(why(&m, "x.ts", now + 7 * s), None, "its grace ran out");
        // b goes from the registry: y left b.
        m.refresh(
            &store,
            vec![PathBuf::from("s/a.m3u8")],
            now + 8 * s,
            &|_| None,
        );
        let y = why(&m, "y.ts", now + 8 * s).unwrap();
        assert!(y.starts_with("left playlist s/b.m3u8 at "), "{y}");
        // Many playlists come and go: their numbers are reused, listings stay right.
        for k in 0..200 {
            let name = format!("t{k}.m3u8");
            write(&name, &[&format!("t{k}.ts")]);
            let l = vec![PathBuf::from("s/a.m3u8"), Path::new("s").join(&name)];
            m.refresh(&store, l, now + (9 + k) * s, &|_| None);
        }
        let t = now + 300 * s;
        assert_eq!(
            why(&m, "z.ts", t).unwrap(),
            "referenced by playlist s/a.m3u8"
        );
        assert_eq!(
            why(&m, "t199.ts", t).unwrap(),
            "referenced by playlist s/t199.m3u8"
        );
        assert!(m.refs["m"].names.len() <= 2 * 2 + 64 + 1);
    }

    fn fmt_now() -> Nanos {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as Nanos
    }
}

/// The reader against m3u8-rs, which it replaced: the same listed names, graces, life and
/// verdict on real muxers' playlists and odd but valid ones.
#[cfg(test)]
mod differential {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// What the former reader (m3u8-rs) made of `text`, as read_one did.
    fn with_m3u8_rs(dir: &Path, text: &[u8]) -> One {
        use m3u8_rs::Playlist;
        let mut one = One {
            grace: DEFAULT_GRACE,
            dead_after: DEAD_MIN,
            ..Default::default()
        };
        match m3u8_rs::parse_playlist_res(text) {
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
                    .filter_map(|s| Some((resolve(dir, &s.uri)?, secs(s.duration as f64) + total)))
                    .collect();
                let others = mp.segments.iter().flat_map(|s| {
                    s.map
                        .as_ref()
                        .map(|m| m.uri.clone())
                        .into_iter()
                        .chain(s.key.as_ref().and_then(|k| k.uri.clone()))
                });
                let attributes = String::from_utf8_lossy(text)
                    .lines()
                    .filter(|l| l.starts_with("#EXT"))
                    .filter_map(|l| {
                        let start = l.find("URI=\"")? + 5;
                        let len = l[start..].find('"')?;
                        Some(l[start..start + len].to_string())
                    })
                    .collect::<Vec<_>>();
                let grace = one.grace;
                let extra: Vec<_> = others
                    .chain(attributes)
                    .filter_map(|uri| resolve(dir, &uri))
                    .map(|p| (p, grace))
                    .collect();
                one.segments.extend(extra);
            }
            Ok(Playlist::MasterPlaylist(_)) => {}
            Err(_) => one.broken = Some((dir.to_path_buf(), String::new())),
        }
        one
    }

    fn ours(dir: &Path, text: &[u8]) -> One {
        let mut one = One {
            grace: DEFAULT_GRACE,
            dead_after: DEAD_MIN,
            ..Default::default()
        };
        read_text(&mut one, dir.to_path_buf(), Path::new("p/index.m3u8"), text);
        one
    }

    type Summary = (BTreeSet<(PathBuf, Nanos)>, Nanos, bool, Nanos, bool);

    fn summary(o: &One) -> Summary {
        (
            o.segments.iter().cloned().collect(),
            o.grace,
            o.live,
            o.dead_after,
            o.broken.is_some(),
        )
    }

    fn same(text: &str) {
        let dir = Path::new("p");
        let (a, b) = (
            ours(dir, text.as_bytes()),
            with_m3u8_rs(dir, text.as_bytes()),
        );
        assert_eq!(summary(&a), summary(&b), "{text}");
    }

    #[test]
    fn real_and_odd_playlists_list_what_m3u8_rs_lists() {
        // ffmpeg 5.1 (-f hls, TS, sliding window), then fMP4 with a segment name that needs
        // escaping and a query string.
        same(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:2\n\
#EXTINF:1.000000,\nindex2.ts\n#EXTINF:1.000000,\nindex3.ts\n#EXTINF:1.000000,\nindex4.ts\n\
#EXTINF:1.000000,\nindex5.ts\n#EXTINF:1.000000,\nindex6.ts\n",
        );
        same(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n\
#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.000000,\nseg%20000.m4s?x\n\
#EXTINF:1.000000,\nseg%20001.m4s?x\n#EXT-X-ENDLIST\n",
        );
        // nginx-rtmp's hls module.
        same(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:12\n#EXT-X-TARGETDURATION:3\n\
#EXT-X-DISCONTINUITY\n#EXTINF:3.000,\n12.ts\n#EXTINF:2.967,\n13.ts\n#EXTINF:3.033,\n14.ts\n",
        );
        // CRLF, comments, blank lines, leading blanks, titles, absolute and foreign URIs,
        // byte ranges, keys, dates, LL-HLS parts, hints and rendition reports.
        same(
            "#EXTM3U\r\n# a comment\r\n\r\n#EXT-X-TARGETDURATION:4\r\n\
#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/k1.bin\",IV=0x1\r\n\
#EXT-X-PROGRAM-DATE-TIME:2026-12-03T11:00:00.000Z\r\n#EXTINF:4.0,a title\r\n\
  /hls/abs/seg1.ts\r\n#EXT-X-BYTERANGE:1000@0\r\n#EXTINF:3.5,\r\nhttps://cdn.example/seg2.ts\r\n\
#EXTINF:4,\r\n../up/seg3.ts?token=abc#frag\r\n\
#EXT-X-PART:DURATION=1.0,INDEPENDENT=YES,URI=\"seg4.part0.m4s\"\r\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg4.part1.m4s\"\r\n\
#EXT-X-RENDITION-REPORT:URI=\"../alt/index.m3u8\",LAST-MSN=4\r\n",
        );
        same(
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=1600000\nhigh/index.m3u8\n",
        );
        same("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n");
        same("#EXTM3U\n");
        same("#EXTM3U\n#EXTINF:2.5,\nlast-without-newline.ts");
        same("#EXTM3U\n#EXT-X-ENDLIST\n");
        same("\u{feff}#EXTM3U\n#EXTINF:2,\na.ts\n");
        same("not a playlist\n");
        same("");
    }

    /// One line of a well-formed media playlist.
    fn line() -> impl Strategy<Value = String> {
        let uri = prop_oneof![
            "[a-z0-9_-]{1,12}\\.(ts|m4s|mp4)",
            "\\.\\./[a-z]{1,6}/[a-z0-9]{1,8}\\.ts",
            "/[a-z]{1,6}/[a-z0-9]{1,8}\\.ts",
            "[a-z0-9]{1,8}%20[a-z]{1,4}\\.ts\\?[a-z]=[0-9]{1,3}",
            "https://cdn\\.example/[a-z]{1,8}\\.ts",
        ];
        prop_oneof![
            4 => uri.clone(),
            4 => ("[0-9]{1,3}(\\.[0-9]{1,6})?", "[a-zA-Z ]{0,8}")
                .prop_map(|(d, t)| format!("#EXTINF:{d},{t}")),
            1 => "[0-9]{1,2}".prop_map(|t| format!("#EXT-X-TARGETDURATION:{t}")),
            1 => "[0-9]{1,6}".prop_map(|n| format!("#EXT-X-MEDIA-SEQUENCE:{n}")),
            1 => Just("#EXT-X-ENDLIST".to_string()),
            1 => Just("#EXT-X-DISCONTINUITY".to_string()),
            1 => Just("# a comment".to_string()),
            1 => Just(String::new()),
            1 => "[0-9]{1,5}@[0-9]{1,5}".prop_map(|r| format!("#EXT-X-BYTERANGE:{r}")),
            1 => uri.clone().prop_map(|u| format!("#EXT-X-MAP:URI=\"{u}\"")),
            1 => uri.clone().prop_map(|u| format!("#EXT-X-KEY:METHOD=AES-128,URI=\"{u}\",IV=0x0")),
            1 => uri.clone().prop_map(|u| format!("#EXT-X-PART:DURATION=0.5,URI=\"{u}\"")),
            1 => uri.prop_map(|u| format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{u}\"")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn generated_playlists_list_what_m3u8_rs_lists(
            lines in proptest::collection::vec(line(), 0..40),
            crlf in any::<bool>(),
            indent in any::<bool>(),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut text = format!("#EXTM3U{nl}");
            for l in &lines {
                // Blanks before a line are skipped by both (the old attribute scan only
                // saw tags at the start of a line, so tags stay there).
                let pad = if indent && !l.starts_with('#') { "  \t" } else { "" };
                text.push_str(&format!("{pad}{l}{nl}"));
            }
            same(&text);
        }
    }
}

/// DASH MPDs through the same memory: what they name is in use, and after it left until
/// its availability end and at least minimumUpdatePeriod (plus its longest segment).
#[cfg(test)]
mod dash {
    use super::*;

    const S: Nanos = 1_000_000_000;

    fn real_now() -> Nanos {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as Nanos
    }

    /// nginx-rtmp's MPD shape: `times` (ms) of 1 s fragments of `d/s-<t>.m4v`.
    fn mpd(kind: &str, ast: Nanos, tsbd: &str, times: &[u64]) -> String {
        let ast = chrono::DateTime::from_timestamp(ast / S, 0)
            .unwrap()
            .to_rfc3339();
        let mut t = format!(
            "<?xml version=\"1.0\"?>\n<MPD type=\"{kind}\" availabilityStartTime=\"{ast}\" minimumUpdatePeriod=\"PT1S\" timeShiftBufferDepth=\"{tsbd}\" mediaPresentationDuration=\"PT60S\">\n<Period start=\"PT0S\"><AdaptationSet><Representation id=\"v\" bandwidth=\"1\">\n<SegmentTemplate timescale=\"1000\" media=\"s-$Time$.m4v\" initialization=\"s-init.m4v\"><SegmentTimeline>\n"
        );
        for x in times {
            t.push_str(&format!("<S t=\"{x}\" d=\"1000\"/>\n"));
        }
        t.push_str("</SegmentTimeline></SegmentTemplate></Representation></AdaptationSet></Period></MPD>\n");
        t
    }

    struct Box {
        dir: tempfile::TempDir,
        store: LocalStore,
    }

    impl Box {
        fn new() -> Box {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("d")).unwrap();
            let store = LocalStore::open("m", dir.path()).unwrap();
            Box { dir, store }
        }
        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.dir.path().join("d").join(name), text).unwrap();
        }
        fn refresh(&self, m: &mut Memory, now: Nanos) {
            let lists = vec![PathBuf::from("d/s.mpd")];
            m.refresh(&self.store, lists, now, &|_| None);
        }
    }

    fn why(m: &Memory, seg: &str, now: Nanos) -> Option<String> {
        m.reason("m", &Path::new("d").join(seg), now)
    }

    #[test]
    fn a_fragment_stays_until_its_availability_end_or_the_update_period_after_it_left() {
        let b = Box::new();
        let ast = real_now() / S * S - 13 * S;
        // Fragment 10000 is available from AST + 11 s until + 1 s + TSBD 5 s = AST + 17 s.
        b.write(
            "s.mpd",
            &mpd("dynamic", ast, "PT5S", &[10_000, 11_000, 12_000]),
        );
        let mut m = Memory::default();
        b.refresh(&mut m, ast + 13 * S);
        let w = why(&m, "s-10000.m4v", ast + 13 * S).unwrap();
        assert!(
            w.starts_with("listed by MPD d/s.mpd; available until ")
                && w.contains(&fmt_time(ast + 17 * S))
                && w.contains("§5.3.9.5.3"),
            "{w}"
        );
        assert!(why(&m, "s-init.m4v", ast + 13 * S).is_some());
        assert_eq!(why(&m, "s-9000.m4v", ast + 13 * S), None);
        // It leaves at AST + 14 s: kept to its availability end (AST + 17 s), past the
        // minimumUpdatePeriod and longest segment (AST + 16 s).
        b.write(
            "s.mpd",
            &mpd("dynamic", ast, "PT5S", &[11_000, 12_000, 13_000]),
        );
        b.refresh(&mut m, ast + 14 * S);
        let w = why(&m, "s-10000.m4v", ast + 14 * S).unwrap();
        assert!(w.starts_with("left MPD d/s.mpd at "), "{w}");
        assert!(
            w.contains(&format!("kept until {}", fmt_time(ast + 17 * S))),
            "{w}"
        );
        // (Graces are kept in whole milliseconds, rounded up.)
        const MS: Nanos = 1_000_000;
        assert!(why(&m, "s-10000.m4v", ast + 17 * S - 1).is_some());
        assert_eq!(why(&m, "s-10000.m4v", ast + 17 * S + MS), None);
        // Without a time-shift window (TSBD 0), the update period rules: left + 1 s + 1 s.
        let mut m = Memory::default();
        b.write("s.mpd", &mpd("dynamic", ast, "PT0S", &[11_000, 12_000]));
        b.refresh(&mut m, ast + 14 * S);
        b.write("s.mpd", &mpd("dynamic", ast, "PT0S", &[12_000, 13_000]));
        b.refresh(&mut m, ast + 15 * S);
        assert!(why(&m, "s-11000.m4v", ast + 17 * S - 1).is_some());
        assert_eq!(why(&m, "s-11000.m4v", ast + 17 * S + MS), None);
    }

    #[test]
    fn a_restart_keeps_what_may_have_just_left_and_frees_what_left_long_ago() {
        let b = Box::new();
        let now = real_now();
        let ast = now / S * S - 20 * S;
        b.write("s.mpd", &mpd("dynamic", ast, "PT5S", &[18_000, 19_000]));
        b.write("s-17000.m4v", "just left");
        b.write("s-1000.m4v", "left long ago");
        b.write("s-raw.m4v", "being written");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(b.dir.path().join("d/s-1000.m4v"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        // A new process (a restart, a one-shot command) reads the MPD for the first time.
        let mut m = Memory::default();
        b.refresh(&mut m, now);
        let w = why(&m, "s-17000.m4v", now).unwrap();
        assert!(w.starts_with("left MPD d/s.mpd at "), "{w}");
        // recent = TSBD 5 s + 2 segments + grace (1 s + 1 s) = 9 s.
        assert!(why(&m, "s-17000.m4v", now + 9 * S - 1).is_some());
        assert_eq!(why(&m, "s-17000.m4v", now + 9 * S), None);
        assert!(why(&m, "s-raw.m4v", now).is_some());
        assert_eq!(why(&m, "s-1000.m4v", now), None);
    }

    #[test]
    fn a_static_mpd_protects_while_it_exists_and_a_stale_live_one_stops() {
        let b = Box::new();
        let now = real_now();
        b.write("s.mpd", &mpd("static", now, "PT5S", &[0, 1000]));
        let mut m = Memory::default();
        b.refresh(&mut m, now);
        let hour = now + 3600 * S;
        b.refresh(&mut m, hour);
        assert_eq!(why(&m, "s-0.m4v", hour).unwrap(), "listed by MPD d/s.mpd");
        // A live MPD unchanged for 6 minimumUpdatePeriods (at least 10 s) is dead: what it
        // named is kept for its grace from then (its availability ends are long past).
        let b = Box::new();
        let ast = now / S * S - 600 * S;
        b.write("s.mpd", &mpd("dynamic", ast, "PT5S", &[598_000, 599_000]));
        let mut m = Memory::default();
        b.refresh(&mut m, now);
        assert!(
            why(&m, "s-599000.m4v", now)
                .unwrap()
                .starts_with("listed by MPD")
        );
        b.refresh(&mut m, now + 11 * S);
        let w = why(&m, "s-599000.m4v", now + 11 * S).unwrap();
        assert!(w.contains("MPD d/s.mpd, which stopped changing"), "{w}");
        // Dead at its mtime (written just after `now`) + 10 s, kept 1 s + 1 s more.
        assert_eq!(why(&m, "s-599000.m4v", now + 13 * S), None);
    }

    #[test]
    fn an_unparsable_mpd_protects_its_directory() {
        let b = Box::new();
        b.write("s.mpd", "<MPD><Period>");
        let mut m = Memory::default();
        b.refresh(&mut m, real_now());
        b.write("s-1.m4v", "x");
        let w = why(&m, "s-1.m4v", real_now()).unwrap();
        assert!(
            w.contains("does not parse as a DASH MPD: it ends before </MPD>"),
            "{w}"
        );
    }
}
