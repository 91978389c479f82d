//! Under systemd (stderr is the journal stream) the log goes to journald with structured
//! `MEDIARETAIN_*` fields. The test binds a datagram socket of its own at journald's fixed
//! path inside a private mount namespace (`unshare -m`, root) and reads what arrives.

mod common;
use common::*;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn deletions_reach_journald_with_structured_fields() {
    let b = Box_::new("", "", BASE_CLASSES);
    b.file("tmp/old.bin", 1234, Duration::from_secs(7200));
    let jdir = b.dir.path().join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    let sock = UnixDatagram::bind(jdir.join("socket")).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let err = b.dir.path().join("stderr");
    std::fs::write(&err, "").unwrap();
    let md = std::fs::metadata(&err).unwrap();

    // In a private mount namespace, our socket appears at /run/systemd/journal/socket.
    let script = r#"set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal
mount --bind "$JDIR" /run/systemd/journal
exec "$BIN" --config "$CONFIG" gc 2>>"$ERR" >/dev/null"#;
    let st = Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .env("JDIR", &jdir)
        .env("BIN", BIN)
        .env("CONFIG", &b.config)
        .env("ERR", &err)
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", format!("{}:{}", md.dev(), md.ino()))
        .status()
        .expect("unshare (util-linux) must be installed; run as root (.ci/run)");
    assert!(
        st.success(),
        "gc under unshare failed: {}",
        std::fs::read_to_string(&err).unwrap()
    );
    assert!(!b.path("tmp/old.bin").exists());

    let mut got = String::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !got.contains("MEDIARETAIN_ACTION=pass") {
        if let Ok(n) = sock.recv(&mut buf) {
            for (k, v) in parse_native(&buf[..n]) {
                got.push_str(&format!("{k}={v}\n"));
            }
            got.push_str("--\n");
        }
    }
    for field in [
        "MEDIARETAIN_ACTION=delete",
        "MEDIARETAIN_PATH=media:tmp/old.bin",
        "MEDIARETAIN_CLASS=tmp",
        "MEDIARETAIN_RULE=ttl",
        "MEDIARETAIN_BYTES=1234",
        "MEDIARETAIN_TRIGGER=cli",
        "SYSLOG_IDENTIFIER=mediaretain",
        "PRIORITY=6",
    ] {
        assert!(got.contains(field), "journal entries lack {field}:\n{got}");
    }
    assert!(got.contains("MEDIARETAIN_REASON=modified 2h"), "{got}");
    let plain = std::fs::read_to_string(&err).unwrap();
    assert!(
        plain.is_empty(),
        "nothing goes to stderr when it is the journal: {plain}"
    );
}

/// Decodes journald's native protocol: `KEY=VALUE\n`, or `KEY\n` + u64 LE length + value + `\n`.
fn parse_native(mut b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(nl) = b.iter().position(|&c| c == b'\n') {
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into(),
                String::from_utf8_lossy(&line[eq + 1..]).into(),
            ));
            b = &b[nl + 1..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(b[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let val = String::from_utf8_lossy(&b[nl + 9..nl + 9 + len]).into_owned();
            out.push((key, val));
            b = &b[(nl + 10 + len).min(b.len())..];
        }
    }
    out
}
