//! S3-style entity tags computed while data streams by, so a copy is verified against the
//! value the *server* computes (its ETag), not against metadata we wrote ourselves.

use md5::{Digest, Md5};

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Hex MD5 of one buffer: the ETag S3 gives a single-part object or one upload part.
pub fn md5_hex(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}

/// The ETag of a multipart upload, built from its parts' MD5s in part order:
/// `hex(md5(md5(part 1) ‖ … ‖ md5(part N)))-N`.
#[derive(Default)]
pub struct MultipartEtag {
    digests: Md5,
    parts: usize,
}

impl MultipartEtag {
    /// Adds the next part's raw MD5 digest.
    pub fn push(&mut self, part_md5: &[u8]) {
        self.digests.update(part_md5);
        self.parts += 1;
    }

    /// The final tag.
    pub fn finish(self) -> String {
        format!("{}-{}", hex(&self.digests.finalize()), self.parts)
    }
}

/// The ETag without the quotes HTTP puts around it.
pub fn unquote(e_tag: &str) -> &str {
    e_tag.trim_matches('"')
}

/// True when `e_tag` is a plain MD5 of the content (a single-part upload), so a download
/// can be checked against it.
pub fn is_plain_md5(e_tag: &str) -> bool {
    let t = unquote(e_tag);
    t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_matches_the_s3_rule() {
        let (a, b) = (b"hello ".as_slice(), b"world".as_slice());
        let mut m = MultipartEtag::default();
        m.push(&Md5::digest(a));
        m.push(&Md5::digest(b));
        let mut both = Vec::from(Md5::digest(a).as_slice());
        both.extend_from_slice(&Md5::digest(b));
        assert_eq!(m.finish(), format!("{}-2", md5_hex(&both)));
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert!(is_plain_md5("\"d41d8cd98f00b204e9800998ecf8427e\""));
        assert!(!is_plain_md5("d41d8cd98f00b204e9800998ecf8427e-2"));
    }
}
