//! Under systemd (stderr is the journal stream) the log goes to journald with structured
//! `MEDIARETAIN_*` fields. The test binds a datagram socket of its own at journald's fixed
//! path inside a private mount namespace (`unshare -m`, root) and reads what arrives.

mod common;
use common::*;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

/// A journald stand-in: our datagram socket, and a command that runs `tail` (shell) inside a
/// private mount namespace where that socket is /run/systemd/journal/socket and stderr is
/// the "journal stream".
struct Journal {
    sock: UnixDatagram,
    err: std::path::PathBuf,
}

impl Journal {
    fn new(b: &Box_) -> Journal {
        let jdir = b.dir.path().join("journal");
        std::fs::create_dir_all(&jdir).unwrap();
        let sock = UnixDatagram::bind(jdir.join("socket")).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let err = b.dir.path().join("stderr");
        std::fs::write(&err, "").unwrap();
        Journal { sock, err }
    }

    fn command(&self, b: &Box_, tail: &str) -> Command {
        let md = std::fs::metadata(&self.err).unwrap();
        let script = format!(
            r#"set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal
mount --bind "$JDIR" /run/systemd/journal
{tail}"#
        );
        let mut c = Command::new("unshare");
        c.args(["-m", "sh", "-c", &script])
            .env("JDIR", b.dir.path().join("journal"))
            .env("BIN", BIN)
            .env("CONFIG", &b.config)
            .env("MEDIA", b.path(""))
            .env("ERR", &self.err)
            .env("RUST_LOG", "info")
            .env("JOURNAL_STREAM", format!("{}:{}", md.dev(), md.ino()));
        c
    }

    /// Entries as `KEY=VALUE` lines, `--` between entries, until `until` shows up or 10 s.
    fn read_until(&self, until: &str) -> String {
        let mut got = String::new();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !got.contains(until) {
            if let Ok(n) = self.sock.recv(&mut buf) {
                for (k, v) in parse_native(&buf[..n]) {
                    got.push_str(&format!("{k}={v}\n"));
                }
                got.push_str("--\n");
            }
        }
        got
    }
}

/// A stuck volume is a critical entry (priority 2), so `journalctl -p crit` finds it.
#[test]
fn a_stuck_volume_is_a_critical_journal_entry() {
    let classes = "[[class]]\nname = \"archive\"\nstore = \"media\"\nmatch = [\"archive/**\"]\nlifecycle = \"recording\"\nkeep_for = \"30d\"\n\n[watchdog]\nhigh = \"80%\"\nlow = \"60%\"\n";
    let b = Box_::new("", "", classes);
    let j = Journal::new(&b);
    let mut child = j
        .command(
            &b,
            r#"mount -t tmpfs -o size=16m tmpfs "$MEDIA"
mkdir "$MEDIA/archive"
head -c 15M /dev/zero > "$MEDIA/archive/kept.mkv"
exec "$BIN" --config "$CONFIG" run 2>>"$ERR" >/dev/null"#,
        )
        .spawn()
        .expect("unshare (util-linux) must be installed; run as root (.ci/run)");
    let got = j.read_until("MEDIARETAIN_ACTION=stuck");
    let _ = child.kill();
    let _ = child.wait();
    let stuck = got
        .split("--\n")
        .find(|e| e.contains("MEDIARETAIN_ACTION=stuck"))
        .unwrap_or_else(|| panic!("no stuck entry:\n{got}"));
    assert!(stuck.contains("PRIORITY=2"), "{stuck}");
    assert!(stuck.contains("is STUCK at"), "{stuck}");
    assert!(stuck.contains("MEDIARETAIN_PROTECTED=15728640"), "{stuck}");
    // Other errors stay at 3, warnings at 4: only the alarm is critical.
    assert!(
        got.split("--\n")
            .filter(|e| e.contains("PRIORITY=2"))
            .all(|e| e.contains("MEDIARETAIN_ACTION=stuck")),
        "{got}"
    );
}

#[test]
fn deletions_reach_journald_with_structured_fields() {
    let b = Box_::new("", "", BASE_CLASSES);
    b.file("tmp/old.bin", 1234, Duration::from_secs(7200));
    let j = Journal::new(&b);
    let st = j
        .command(
            &b,
            r#"exec "$BIN" --config "$CONFIG" gc 2>>"$ERR" >/dev/null"#,
        )
        .status()
        .expect("unshare (util-linux) must be installed; run as root (.ci/run)");
    let err = &j.err;
    assert!(
        st.success(),
        "gc under unshare failed: {}",
        std::fs::read_to_string(err).unwrap()
    );
    assert!(!b.path("tmp/old.bin").exists());
    let got = j.read_until("MEDIARETAIN_ACTION=pass");
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
    let plain = std::fs::read_to_string(err).unwrap();
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
