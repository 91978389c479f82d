//! The one spelling of a path wherever it meets text: command-line arguments, text output,
//! JSON in and out (the CLI's `--json` and the control API), log and journald fields, and
//! audit reasons that quote a path.
//!
//! A Unix file name is bytes, not text: `rec/a\xffb.mp4` is a valid name that is not UTF-8.
//! Lossy conversion would print it as `rec/a�b.mp4` — the same as `rec/a\xfeb.mp4` — and
//! JSON cannot carry it at all. The spelling is lossless:
//!
//! - valid UTF-8 without a backslash or a control character is written as is (nearly every
//!   name: nothing changes for them, spaces and accents included);
//! - a byte that is not part of valid UTF-8 is written `\xNN` (two lowercase hex digits);
//! - a control character (U+0000–U+001F, U+007F–U+009F: newline, tab, escape…) is
//!   written as its UTF-8 bytes, each `\xNN`, so a name cannot break a line of `ls` or
//!   forge a log line;
//! - a backslash is written `\\`.
//!
//! Reading back ([`unspell`]): `\xNN` (hex digits in either case) is that byte, `\\` is one backslash,
//! and any other backslash is literal (so a name like `back\slash.mp4` typed as is still
//! works). `unspell(spell(b)) == b` for every byte string `b` (a property test checks it).
//!
//! Why not `bstr`'s `escape_bytes`: it also escapes the space (`\x20`) — common in
//! recording names — and reads `\n`, `\t`, `\r`, `\0` as control characters, so a name
//! containing a literal `\n` typed as is would be misread.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Whether `c` is written as `\xNN` bytes rather than as itself.
fn escaped(c: char) -> bool {
    c == '\\' || c.is_control()
}

/// `bytes` in the spelling, borrowed when it is already its own spelling.
pub fn spell(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(escaped) => Cow::Borrowed(s),
        _ => Cow::Owned(Spelled(bytes).to_string()),
    }
}

/// A path in the spelling.
pub fn path(p: &Path) -> Cow<'_, str> {
    spell(p.as_os_str().as_bytes())
}

/// Shows a path in the spelling (`format!("{}", spell::show(p))`), like `Path::display`
/// but lossless.
pub fn show(p: &Path) -> Spelled<'_> {
    Spelled(p.as_os_str().as_bytes())
}

/// Bytes shown in the spelling (see [`show`]). Width and fill are not applied: pad
/// [`path`]'s `str` instead.
#[derive(Clone, Copy)]
pub struct Spelled<'a>(pub &'a [u8]);

impl fmt::Display for Spelled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            let valid = chunk.valid();
            let mut rest = valid;
            while let Some(i) = rest.find(escaped) {
                f.write_str(&rest[..i])?;
                let c = rest[i..].chars().next().unwrap_or('\\');
                if c == '\\' {
                    f.write_str("\\\\")?;
                } else {
                    for b in c.encode_utf8(&mut [0; 4]).bytes() {
                        write!(f, "\\x{b:02x}")?;
                    }
                }
                rest = &rest[i + c.len_utf8()..];
            }
            f.write_str(rest)?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The bytes a spelling stands for: `\xNN` → that byte, `\\` → `\`, any other backslash
/// is literal. Borrowed when there is no backslash.
pub fn unspell(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'\\') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            match (
                b.get(i + 1),
                b.get(i + 2).copied().and_then(hex),
                b.get(i + 3).copied().and_then(hex),
            ) {
                (Some(b'\\'), _, _) => {
                    out.push(b'\\');
                    i += 2;
                    continue;
                }
                (Some(b'x'), Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 4;
                    continue;
                }
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// The path a spelling stands for.
pub fn unspell_path(s: &str) -> Cow<'_, Path> {
    match unspell(s) {
        Cow::Borrowed(b) => Cow::Borrowed(Path::new(OsStr::from_bytes(b))),
        Cow::Owned(v) => Cow::Owned(PathBuf::from(OsString::from_vec(v))),
    }
}

/// The canonical spelling of what `s` stands for (`\XFF` → `\xff`, a raw newline →
/// `\x0a`): how an argument is quoted back in messages.
pub fn canonical(s: &str) -> Cow<'_, str> {
    match unspell(s) {
        Cow::Borrowed(_) if !s.chars().any(escaped) => Cow::Borrowed(s),
        b => Cow::Owned(spell(&b).into_owned()),
    }
}

/// A command-line argument as a spelling: valid UTF-8 is taken as a spelling (so what `ls`
/// printed can be pasted back); anything else is raw bytes from the shell (`"$(printf
/// 'a\xffb')"`, bash's `$'a\xffb'`) and is spelled, so it stands for exactly those bytes.
pub fn from_arg(arg: OsString) -> String {
    match arg.into_string() {
        Ok(s) => s,
        Err(raw) => spell(raw.as_bytes()).into_owned(),
    }
}

/// `#[serde(with = "crate::spell::serde_path")]` for a `PathBuf` field: a JSON string in
/// the spelling, both ways.
pub mod serde_path {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the spelling.
    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::path(p))
    }

    /// Reads a spelling.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let s = String::deserialize(d)?;
        Ok(super::unspell_path(&s).into_owned())
    }
}

/// `#[serde(with = "crate::spell::serde_opt_path")]` for an `Option<PathBuf>` field.
pub mod serde_opt_path {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the spelling, or null.
    pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_str(&super::path(p)),
            None => s.serialize_none(),
        }
    }

    /// Reads a spelling, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        Ok(s.map(|s| super::unspell_path(&s).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normal_names_are_written_as_is() {
        for n in [
            "rec/cam 1/2026-11-22 08.00.mp4",
            "hls/s1/seg-00042.ts",
            "été/ümlaut ☃.mkv",
            "",
        ] {
            assert!(matches!(spell(n.as_bytes()), Cow::Borrowed(x) if x == n));
            assert!(matches!(unspell(n), Cow::Borrowed(x) if x == n.as_bytes()));
        }
    }

    #[test]
    fn odd_names_are_escaped() {
        assert_eq!(spell(b"rec/a\xffb.mp4"), r"rec/a\xffb.mp4");
        assert_eq!(spell(b"rec/a\xfeb.mp4"), r"rec/a\xfeb.mp4");
        assert_eq!(spell(br"rec/back\slash.mp4"), r"rec/back\\slash.mp4");
        assert_eq!(spell(b"a\nb\x7f\0"), r"a\x0ab\x7f\x00");
        assert_eq!(spell("a\u{85}b".as_bytes()), r"a\xc2\x85b");
        // A truncated multi-byte sequence: each byte on its own.
        assert_eq!(spell(b"x\xe2\x98"), r"x\xe2\x98");
        assert_eq!(
            show(Path::new(OsStr::from_bytes(b"a\xff"))).to_string(),
            r"a\xff"
        );
    }

    #[test]
    fn reading_is_lenient_about_other_backslashes() {
        assert_eq!(&*unspell(r"back\slash"), br"back\slash");
        assert_eq!(&*unspell(r"a\xFFb"), b"a\xffb");
        assert_eq!(&*unspell(r"a\x4"), br"a\x4");
        assert_eq!(&*unspell(r"a\xg0"), br"a\xg0");
        assert_eq!(&*unspell(r"end\"), br"end\");
        assert_eq!(&*unspell(r"\\\xff\\"), b"\\\xff\\");
        assert_eq!(canonical(r"a\xFF"), r"a\xff");
        assert_eq!(canonical(r"a\XFF"), r"a\\XFF");
        assert_eq!(canonical("a\nb"), r"a\x0ab");
        assert_eq!(canonical(r"back\slash"), r"back\\slash");
    }

    #[test]
    fn every_short_byte_string_reads_back() {
        // Exhaustive over all strings of up to 2 bytes, and 3 bytes over an alphabet that
        // holds every interesting class (backslash, 'x', hex digits, controls, invalid).
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for v in [vec![a], vec![a, b]] {
                    assert_eq!(&*unspell(&spell(&v)), &v[..], "{v:?}");
                }
            }
        }
        let alphabet = [
            b'\\', b'x', b'f', b'0', b'A', b'g', b'\n', 0, 0x7f, 0xc2, 0x85, 0xff, b'/',
        ];
        for &a in &alphabet {
            for &b in &alphabet {
                for &c in &alphabet {
                    let v = [a, b, c];
                    assert_eq!(&*unspell(&spell(&v)), &v[..], "{v:?}");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        #[test]
        fn unspell_inverts_spell(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = spell(&v);
            prop_assert_eq!(&*unspell(&s), &v[..]);
            // The spelling is text with no control character: one line, any JSON.
            prop_assert!(!s.chars().any(char::is_control));
            // Spelling is canonical: spelling what it stands for gives it back.
            prop_assert_eq!(canonical(&s), s.clone());
        }

        #[test]
        fn unspell_inverts_spell_on_backslash_heavy_input(
            v in proptest::collection::vec(prop_oneof![Just(b'\\'), Just(b'x'), Just(b'a'), Just(b'7'), Just(0xffu8), any::<u8>()], 0..32)
        ) {
            let s = spell(&v);
            prop_assert_eq!(&*unspell(&s), &v[..]);
        }
    }
}
