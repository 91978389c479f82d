//! The one notion of "the stream of a path": templates with `{app}` and `{stream}` over
//! store-relative paths, used both ways.
//!
//! - Filled in ([`fill`]): `[hooks.<dialect>] playlists = ["hls/{stream}/*.m3u8"]` becomes
//!   the glob of one stream's playlists when its server says the stream started.
//! - Read back ([`StreamPattern`]): a class's `stream = "rec/{stream}/**"` names the stream
//!   a file belongs to, so that two recorders writing one stream can be told apart from two
//!   streams. A class may give a regular expression with a named group `(?P<stream>…)`
//!   instead, for layouts a glob cannot say.
//!
//! A template is a glob (the same syntax as `match`: `*` within one directory, `**` across)
//! in which `{stream}` (once) and `{app}` (at most once) stand for one or more characters
//! of one path component. Read back, the glob's own translation (globset's) is used, with
//! the two placeholders turned into named groups: a template means the same thing in
//! `match`, in `playlists` and in `stream`.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Stands for `{stream}` while the glob is compiled (a private-use character no file name
/// in a config is expected to contain; refused if one does).
const STREAM_MARK: char = '\u{E000}';
/// Stands for `{app}`.
const APP_MARK: char = '\u{E001}';

/// `template` with `{app}` and `{stream}` replaced by the literal text of `app` and
/// `stream` (escaped: an event's names are never glob syntax).
pub fn fill(template: &str, app: &str, stream: &str) -> String {
    // globset::escape leaves `\` alone, which config::glob reads as an escape.
    let lit = |s: &str| globset::escape(&s.replace('\\', "\\\\"));
    template
        .replace("{app}", &lit(app))
        .replace("{stream}", &lit(stream))
}

/// How a class names the stream of a path: a template or a regular expression, compiled.
#[derive(Clone)]
pub struct StreamPattern {
    /// As written in the config.
    source: String,
    /// Matches a store-relative path (as bytes), with the group `stream` and maybe `app`.
    re: regex::bytes::Regex,
}

impl StreamPattern {
    /// Compiles `source`: a regular expression when it has a named group `stream`
    /// (`(?P<stream>…)` or `(?<stream>…)`), else a template with `{stream}`.
    pub fn parse(source: &str) -> Result<StreamPattern, String> {
        let regex_form = source.contains("(?P<stream>") || source.contains("(?<stream>");
        let re = if regex_form {
            regex::bytes::Regex::new(source).map_err(|e| {
                format!(
                    "stream {source:?} is not a valid regular expression: {}",
                    one_line(&e.to_string())
                )
            })?
        } else {
            template_regex(source)?
        };
        if !re.capture_names().any(|n| n == Some("stream")) {
            return Err(format!(
                "stream {source:?} must name the stream: a template with {{stream}} (\"rec/{{stream}}/**\") or a regular expression with a group (?P<stream>…)"
            ));
        }
        Ok(StreamPattern {
            source: source.to_string(),
            re,
        })
    }

    /// As written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The stream `rel` (relative to its store's root) belongs to, in the lossless
    /// spelling of [`crate::spell`]: `app/stream` when the pattern names an app too, else
    /// `stream`. None: the path is not one of a stream (or the group matched nothing).
    pub fn stream_of(&self, rel: &Path) -> Option<String> {
        let caps = self.re.captures(rel.as_os_str().as_bytes())?;
        let stream = caps.name("stream").filter(|m| !m.is_empty())?;
        let stream = crate::spell::spell(stream.as_bytes());
        Some(match caps.name("app").filter(|m| !m.is_empty()) {
            Some(app) => format!("{}/{stream}", crate::spell::spell(app.as_bytes())),
            None => stream.into_owned(),
        })
    }
}

/// A regex error on one line (the crate's message draws a caret under the pattern).
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The regular expression of a template: the glob's own translation, the placeholders
/// turned into groups of one or more characters within one path component.
fn template_regex(source: &str) -> Result<regex::bytes::Regex, String> {
    let bad = |why: &str| {
        Err(format!(
            "stream {source:?} {why} (a template is a glob relative to the store root with {{stream}} once and {{app}} at most once, like \"rec/{{stream}}/**\" or \"{{app}}/{{stream}}-*.flv\")"
        ))
    };
    if source.contains([STREAM_MARK, APP_MARK]) {
        return bad("contains a reserved character (U+E000 or U+E001)");
    }
    if source.starts_with('/') {
        return bad("must be relative to the store root");
    }
    match source.matches("{stream}").count() {
        0 => return bad("has no {stream}"),
        1 => {}
        _ => return bad("names {stream} more than once"),
    }
    if source.matches("{app}").count() > 1 {
        return bad("names {app} more than once");
    }
    let marked = source
        .replace("{stream}", &STREAM_MARK.to_string())
        .replace("{app}", &APP_MARK.to_string());
    let glob = match super::glob(&marked) {
        Ok(g) => g,
        Err(e) => return bad(&format!("is not a valid glob: {}", e.kind())),
    };
    // globset writes a non-ASCII character as its UTF-8 bytes, each `\xNN`.
    let escaped = |c: char| {
        let mut b = [0u8; 4];
        c.encode_utf8(&mut b)
            .bytes()
            .map(|x| format!("\\x{x:02x}"))
            .collect::<String>()
    };
    let (s, a) = (escaped(STREAM_MARK), escaped(APP_MARK));
    let re = glob.regex();
    let re = re
        .replace(&s, "(?P<stream>[^/]+)")
        .replace(&a, "(?P<app>[^/]+)");
    // A placeholder inside `[...]` leaves the group text inside a class: no such group.
    match regex::bytes::Regex::new(&re) {
        Ok(r) if r.capture_names().any(|n| n == Some("stream")) => Ok(r),
        _ => bad("uses {stream} or {app} where a name cannot stand (inside [...])"),
    }
}

impl fmt::Debug for StreamPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StreamPattern").field(&self.source).finish()
    }
}

impl PartialEq for StreamPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl serde::Serialize for StreamPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for StreamPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StreamPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(p: &str, path: &str) -> Option<String> {
        StreamPattern::parse(p).unwrap().stream_of(Path::new(path))
    }

    #[test]
    fn templates_name_the_stream_of_a_path() {
        assert_eq!(
            of("rec/{stream}/**", "rec/cam1/a.flv").as_deref(),
            Some("cam1")
        );
        assert_eq!(
            of("rec/{stream}/**", "rec/cam1/x/a.flv").as_deref(),
            Some("cam1")
        );
        assert_eq!(of("rec/{stream}/**", "hls/cam1/a.ts"), None);
        // nginx-rtmp record_unique: the stream name may itself contain '-'.
        assert_eq!(
            of("{app}/{stream}-*.flv", "live/cam-1-1733000000.flv").as_deref(),
            Some("live/cam-1")
        );
        // SRS: [app]/[stream].[timestamp].flv
        assert_eq!(
            of(
                "**/{app}/{stream}.*.flv",
                "objs/nginx/html/live/room.1733.flv"
            )
            .as_deref(),
            Some("live/room")
        );
        assert_eq!(of("rec/{stream}.flv", "rec/a/b.flv"), None, "one component");
        // Odd bytes are spelled, never lost.
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"rec/a\xffb/1.flv"));
        assert_eq!(
            StreamPattern::parse("rec/{stream}/*.flv")
                .unwrap()
                .stream_of(p)
                .as_deref(),
            Some("a\\xffb")
        );
    }

    #[test]
    fn regexes_with_a_named_group() {
        assert_eq!(
            of(r"^rec/(?P<stream>[^/_]+)_\d+\.flv$", "rec/room9_17.flv").as_deref(),
            Some("room9")
        );
        assert_eq!(
            of(r"^rec/(?P<stream>[^/_]+)_\d+\.flv$", "rec/room9.flv"),
            None
        );
    }

    #[test]
    fn bad_patterns_say_why() {
        for (p, want) in [
            ("rec/**", "has no {stream}"),
            ("{stream}/{stream}", "more than once"),
            ("/rec/{stream}", "relative"),
            ("rec/[{stream}]", "[...]"),
            ("rec/{stream}/a[", "not a valid glob"),
            ("(?P<stream>[)", "not a valid regular expression"),
        ] {
            let e = StreamPattern::parse(p).unwrap_err();
            assert!(e.contains(want), "{p}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn fill_escapes_the_names() {
        assert_eq!(
            fill("hls/{app}/{stream}/*.m3u8", "a*", "s"),
            "hls/a[*]/s/*.m3u8"
        );
    }
}
