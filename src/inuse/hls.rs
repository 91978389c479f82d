//! A one-pass reader of HLS playlists that extracts only what in-use protection needs:
//! whether it is a master playlist, the target duration, ENDLIST, each segment's URI and
//! EXTINF duration, and every `URI="…"` attribute of an EXT tag (init segments, keys,
//! LL-HLS parts, preload hints, rendition reports). URIs are slices of the playlist's own
//! bytes: nothing is allocated per segment but one 24-byte entry.
//!
//! Why not m3u8-rs (which this replaced, issue 10.4): for a 7.35 MB live playlist of 147k
//! segments it builds a `Vec` of tags and then a full `MediaSegment` per segment (strings,
//! a `Vec` of unknown tags, key and map clones); heaptrack of the release build over
//! `scripts/bench-playlists` put 145 MB (the segment `Vec`'s growth) + 113 MB (the tag
//! `Vec`) at its peak for one playlist, which with the listed-segment memory took a
//! one-shot `gc` to 265–283 MB RSS, over the unit's `MemoryMax=256M`.
//!
//! It reads what m3u8-rs 6.0.1 reads from every well-formed playlist (the differential
//! test in `playlist.rs` compares the two): `#EXTM3U` first (else an error), master
//! playlists recognised by the same first deciding tag, leading blanks of a line skipped,
//! CRLF or LF, the last EXTINF before a URI line giving its duration. Where m3u8-rs reads
//! malformed text surprisingly it lists fewer segments, never more — it stops at the first
//! line that is not UTF-8 or holds a lone CR, takes a line break inside a quoted attribute
//! as part of the value — while this reader keeps going line by line, so what it lists is
//! a superset on such text (the safe side: a listed segment is kept). It also does not turn
//! the junk after a numeric tag's value (`#EXT-X-TARGETDURATION:4junk`) into a URI.

/// What a playlist is.
pub enum Playlist<'a> {
    /// Lists other playlists, not segments.
    Master,
    Media(Media<'a>),
}

/// What a media playlist lists.
#[derive(Default)]
pub struct Media<'a> {
    /// `#EXT-X-TARGETDURATION`, seconds (0 if absent).
    pub target_duration: u64,
    /// `#EXT-X-ENDLIST` is there.
    pub end_list: bool,
    /// Segment URIs (as written) with their EXTINF durations in seconds, in order.
    pub segments: Vec<(&'a [u8], f32)>,
    /// Every `URI="…"` attribute of an EXT tag line, as written.
    pub attributes: Vec<&'a [u8]>,
}

/// Tags that decide a playlist is a master (true) or a media playlist (false), in the
/// order m3u8-rs tries them on each line until one decides.
const DECIDING: &[(&[u8], bool)] = &[
    (b"#EXT-X-STREAM-INF", true),
    (b"#EXT-X-I-FRAME-STREAM-INF", true),
    (b"#EXT-X-MEDIA", true), // not followed by '-' (#EXT-X-MEDIA-SEQUENCE)
    (b"#EXT-X-SESSION-KEY", true),
    (b"#EXT-X-SESSION-DATA", true),
    (b"#EXT-X-TARGETDURATION", false),
    (b"#EXT-X-MEDIA-SEQUENCE", false),
    (b"#EXT-X-DISCONTINUITY-SEQUENCE", false),
    (b"#EXT-X-ENDLIST", false),
    (b"#EXT-X-PLAYLIST-TYPE", false),
    (b"#EXT-X-I-FRAMES-ONLY", false),
    (b"#EXTINF", false),
    (b"#EXT-X-BYTERANGE", false),
    (b"#EXT-X-DISCONTINUITY", false),
    (b"#EXT-X-KEY", false),
    (b"#EXT-X-MAP", false),
    (b"#EXT-X-PROGRAM-DATE-TIME", false),
    (b"#EXT-X-DATERANGE", false),
];

/// Parses `text`; an error says why it is not an HLS playlist.
pub fn parse(text: &[u8]) -> Result<Playlist<'_>, String> {
    let Some(body) = text.strip_prefix(b"#EXTM3U") else {
        let start = String::from_utf8_lossy(&text[..text.len().min(16)]).into_owned();
        return Err(format!("it does not begin with #EXTM3U (but {start:?})"));
    };
    if is_master(body) {
        return Ok(Playlist::Master);
    }
    let mut media = Media::default();
    let mut duration = 0.0f32; // of the next segment
    // The rest of the #EXTM3U line is read as a line of its own, as m3u8-rs does.
    for line in body.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = trim_start(line);
        if line.is_empty() {
            continue;
        }
        if line[0] != b'#' {
            media.segments.push((line, duration));
            duration = 0.0;
            continue;
        }
        if !line.starts_with(b"#EXT") {
            continue; // a comment
        }
        if let Some(v) = line.strip_prefix(b"#EXTINF:") {
            if let Some(d) = float(v) {
                duration = d;
            }
        } else if let Some(v) = line.strip_prefix(b"#EXT-X-TARGETDURATION:") {
            if let Some(t) = number(v) {
                media.target_duration = t;
            }
        } else if line.starts_with(b"#EXT-X-ENDLIST") {
            media.end_list = true;
        }
        let mut rest = line;
        while let Some(i) = find(rest, b"URI=\"") {
            rest = &rest[i + 5..];
            let Some(len) = rest.iter().position(|&c| c == b'"') else {
                break;
            };
            media.attributes.push(&rest[..len]);
            rest = &rest[len + 1..];
        }
    }
    Ok(Playlist::Media(media))
}

/// Whether the first line (after `#EXTM3U`) that begins with a deciding tag says master.
fn is_master(mut rest: &[u8]) -> bool {
    while !rest.is_empty() {
        let skip = rest
            .iter()
            .take_while(|&&c| c == b'\r' || c == b'\n')
            .count();
        rest = &rest[skip..];
        let verdict = DECIDING
            .iter()
            .find(|(tag, _)| {
                rest.starts_with(tag)
                    && (*tag != b"#EXT-X-MEDIA" || rest.get(tag.len()).is_some_and(|&c| c != b'-'))
            })
            .map(|&(_, master)| master);
        let end = rest
            .iter()
            .position(|&c| c == b'\r' || c == b'\n')
            .unwrap_or(rest.len());
        if std::str::from_utf8(&rest[..end]).is_err() {
            return false; // m3u8-rs stops looking (and reads a media playlist)
        }
        if let Some(master) = verdict {
            return master;
        }
        rest = match rest.get(end) {
            None => &[],
            Some(b'\n') => &rest[end + 1..],
            Some(_) if rest.get(end + 1) == Some(&b'\n') => &rest[end + 2..],
            Some(_) => return false, // a lone CR: m3u8-rs stops looking
        };
    }
    false
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|&&c| matches!(c, b' ' | b'\t' | b'\r'))
        .count();
    &s[n..]
}

fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// A leading `\d+(\.\d+)?`, as m3u8-rs reads EXTINF durations.
fn float(s: &[u8]) -> Option<f32> {
    let int = digits(s);
    if int == 0 {
        return None;
    }
    let mut end = int;
    if s.get(int) == Some(&b'.') {
        let frac = digits(&s[int + 1..]);
        if frac > 0 {
            end = int + 1 + frac;
        }
    }
    std::str::from_utf8(&s[..end]).ok()?.parse().ok()
}

/// A leading `\d+` that fits a u64.
fn number(s: &[u8]) -> Option<u64> {
    let n = digits(s);
    if n == 0 {
        return None;
    }
    std::str::from_utf8(&s[..n]).ok()?.parse().ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_is_told_by_its_first_deciding_tag() {
        let m = |t: &str| matches!(parse(t.as_bytes()), Ok(Playlist::Master));
        assert!(m("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"));
        assert!(m("#EXTM3U\r\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"a.m3u8\"\r\n"));
        assert!(!m(
            "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-STREAM-INF:B=1\n"
        ));
        assert!(!m("#EXTM3U\n#EXTINF:1,\na.ts\n"));
        assert!(
            parse(b"\xef\xbb\xbf#EXTM3U\n").is_err(),
            "m3u8-rs rejects a BOM"
        );
        assert!(parse(b"\x00\x01garbage").is_err());
    }

    #[test]
    fn durations_and_numbers_read_as_m3u8_rs_does() {
        assert_eq!(float(b"2.000,"), Some(2.0));
        assert_eq!(float(b"2.,"), Some(2.0));
        assert_eq!(float(b"-1,"), None);
        assert_eq!(number(b"4junk"), Some(4));
        assert_eq!(number(b"99999999999999999999999"), None);
    }
}
