//! Live playlist references: every segment (and init segment, `EXT-X-MAP`) that a media
//! playlist (`.m3u8`) of the store lists is in use — players fetch exactly those — and
//! stays so for a grace period after it leaves the playlist (default: three target
//! durations). A playlist that cannot be parsed protects its whole directory.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use m3u8_rs::Playlist;

use crate::store::local::LocalStore;
use crate::units::Nanos;

/// The largest playlist we read; a bigger one is treated as unparsable.
const MAX_PLAYLIST: usize = 8 << 20;

/// What the playlists of one store reference, as read at one instant.
#[derive(Debug, Default)]
pub struct Refs {
    /// Segment path → (playlist that lists it, grace after it leaves).
    pub segments: HashMap<PathBuf, (PathBuf, Nanos)>,
    /// Directories protected because their playlist could not be read: dir → why.
    pub broken: Vec<(PathBuf, String)>,
}

/// Reads `playlists` (paths relative to the store root) of `store`.
pub fn read(store: &LocalStore, playlists: &[PathBuf]) -> Refs {
    let mut refs = Refs::default();
    for pl in playlists {
        let dir = pl.parent().unwrap_or(Path::new("")).to_path_buf();
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
                let grace = (3 * mp.target_duration.max(1) as i64).saturating_mul(1_000_000_000);
                let uris = mp
                    .segments
                    .iter()
                    .flat_map(|s| std::iter::once(&s.uri).chain(s.map.as_ref().map(|m| &m.uri)));
                for uri in uris {
                    if let Some(p) = resolve(&dir, uri) {
                        refs.segments.insert(p, (pl.clone(), grace));
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
    let joined = match uri.strip_prefix('/') {
        Some(abs) => PathBuf::from(abs),
        None => dir.join(uri),
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
    }
}
