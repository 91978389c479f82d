//! One conformance suite for every [`Store`]: the local store (a temp dir), moto and a
//! single-node Garage, both real servers over HTTP on loopback, started by the tests.
//! Put, list, stat, delete (one and bulk, across the 1000-key batch boundary), verified
//! removal, multipart upload with a server-checked checksum, abort, streamed fetch,
//! prefix confinement; then what only S3 has: the capability probe, listing in-progress
//! uploads, flat memory on large transfers, and errors per key from a stopped server.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use mediaretain::store::checksum::{MultipartEtag, hex};
use mediaretain::store::local::LocalStore;
use mediaretain::store::s3::{Capabilities, S3Store};
use mediaretain::store::{Outcome, Store, StoreError};

use common::s3::S3Server;

/// Memory tests measure the whole process, so they run alone: they take this for writing,
/// every other test for reading.
static GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Deterministic pseudo-random bytes (incompressible, unlike zeros).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes `len` bytes of noise to `path` one MiB at a time; returns their MD5 (hex).
fn write_noise(path: &Path, len: usize) -> String {
    let mut f = std::fs::File::create(path).unwrap();
    let mut md5 = Md5::new();
    let mut left = len;
    let mut seed = len as u64;
    while left > 0 {
        let chunk = noise(seed, left.min(1 << 20));
        md5.update(&chunk);
        f.write_all(&chunk).unwrap();
        left -= chunk.len();
        seed += 1;
    }
    hex(&md5.finalize())
}

/// MD5 (hex) of a file, streamed.
fn md5_file(path: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let (mut md5, mut buf) = (Md5::new(), vec![0u8; 1 << 20]);
    loop {
        match f.read(&mut buf).unwrap() {
            0 => return hex(&md5.finalize()),
            n => md5.update(&buf[..n]),
        }
    }
}

/// The checksum a store should report for `data`: S3's multipart ETag for `part_size`
/// parts, or a plain MD5 where there are no parts (local).
fn expected_checksum(data: &[u8], part_size: Option<usize>) -> String {
    // An empty file is one plain PUT everywhere (servers refuse an empty part).
    let Some(size) = part_size.filter(|_| !data.is_empty()) else {
        return hex(&Md5::digest(data));
    };
    let mut etag = MultipartEtag::default();
    for part in data.chunks(size) {
        etag.push(&Md5::digest(part));
    }
    etag.finish()
}

/// Every key and size the store lists.
async fn listing(s: &impl Store) -> BTreeMap<String, u64> {
    s.list()
        .map_ok(|o| (o.key, o.size))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("listing {}: {e}", s.name()))
}

/// `/proc/self/status` field `field` in bytes.
fn proc_status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

/// Resets the process's peak RSS (VmHWM) to its current RSS and returns that RSS.
fn reset_peak_rss() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5")
        .expect("resetting VmHWM via /proc/self/clear_refs");
    proc_status("VmRSS:")
}

/// The conformance suite; `part_size` is the multipart part size (S3) or `None` (local),
/// `bulk` how many keys the bulk deletion removes at once.
async fn conformance(
    s: &impl Store,
    tmp: &Path,
    part_size: Option<usize>,
    bulk: usize,
) -> Duration {
    let t0 = Instant::now();
    let name = s.name().to_string();
    assert!(
        listing(s).await.is_empty(),
        "{name}: a fresh store lists nothing"
    );

    // put + stat, a small file and an empty one
    let small = tmp.join("small");
    std::fs::write(&small, b"hello, world").unwrap();
    let v = s.put_file("a/one.txt", &small).await.unwrap();
    assert_eq!(v.size, 12);
    assert_eq!(
        v.checksum,
        expected_checksum(b"hello, world", part_size),
        "{name}"
    );
    let st = s.stat("a/one.txt").await.unwrap().expect("stat after put");
    assert_eq!((st.key.as_str(), st.size), ("a/one.txt", 12));
    assert!(s.stat("a/nothing.txt").await.unwrap().is_none());
    let empty = tmp.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let v = s.put_file("a/empty", &empty).await.unwrap();
    assert_eq!((v.size, v.checksum), (0, expected_checksum(b"", part_size)));

    // multipart: three and a half parts, verified by the server's checksum
    let part = part_size.unwrap_or(5 << 20);
    let big = tmp.join("big");
    let len = part * 3 + part / 2;
    write_noise(&big, len);
    let data = std::fs::read(&big).unwrap();
    let v = s.put_file("b/c/big.bin", &big).await.unwrap();
    assert_eq!(v.size, len as u64);
    assert_eq!(v.checksum, expected_checksum(&data, part_size), "{name}");
    if part_size.is_some() {
        assert!(
            v.checksum.ends_with("-4"),
            "{name}: four parts: {}",
            v.checksum
        );
    }
    drop(data);

    // fetch: streamed back through a partial file, verified
    let back = tmp.join("back");
    let f = s.fetch("b/c/big.bin", &back).await.unwrap();
    assert_eq!(f.size, len as u64);
    assert_eq!(
        md5_file(&back),
        md5_file(&big),
        "{name}: fetched copy differs"
    );
    assert!(!tmp.join("back.part").exists(), "no partial file left");
    assert!(s.fetch("b/none.bin", &tmp.join("none")).await.is_err());
    assert!(!tmp.join("none").exists() && !tmp.join("none.part").exists());

    let want: BTreeMap<_, _> = [
        ("a/one.txt", 12),
        ("a/empty", 0),
        ("b/c/big.bin", len as u64),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(listing(s).await, want, "{name}: listing after puts");

    // abort: the id is spent, nothing appears
    let id = s.start_upload("c/aborted.bin").await.unwrap();
    s.abort_upload("c/aborted.bin", &id).await.unwrap();
    let late = s.finish_upload("c/aborted.bin", &id, &small).await;
    assert!(
        late.is_err(),
        "{name}: an aborted upload cannot complete: {late:?}"
    );
    assert!(s.stat("c/aborted.bin").await.unwrap().is_none());
    s.abort_upload("c/aborted.bin", &id)
        .await
        .expect("aborting twice is harmless");
    assert_eq!(
        listing(s).await,
        want,
        "{name}: an aborted upload lists nothing"
    );

    // keys that are not plain relative paths are refused, never resolved
    for bad in ["../escape", "/abs", "a/../one.txt", "", "a//b", "./a"] {
        let r = s.stat(bad).await;
        assert!(
            matches!(r, Err(StoreError::Outside { .. })),
            "{name}: stat {bad:?}: {r:?}"
        );
        let d = s.delete(bad).await;
        assert!(
            matches!(d, Outcome::Refused(_)),
            "{name}: delete {bad:?}: {d:?}"
        );
    }

    // delete one: verified, then already gone. A local store sees that before it acts;
    // S3's DeleteObjects reports an absent key deleted, and an S3 store does not spend a
    // HEAD per key to tell: it reports Deleted, which is true (observed gone afterwards).
    let already_gone = if part_size.is_some() {
        Outcome::Deleted
    } else {
        Outcome::Vanished
    };
    assert_eq!(s.delete("a/one.txt").await, Outcome::Deleted);
    assert_eq!(s.delete("a/one.txt").await, already_gone, "{name}");
    assert!(s.stat("a/one.txt").await.unwrap().is_none());

    // bulk delete, in the order given, each key its own result
    let keys: Vec<String> = (0..bulk)
        .map(|i| format!("bulk/{}/k{i:05}", i % 7))
        .collect();
    futures::stream::iter(&keys)
        .map(|k| s.put_file(k, &small))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    assert_eq!(listing(s).await.len(), bulk + 2);
    // Every 97th key stays: survivors inside the key ranges an S3 store lists to verify
    // its batches, which must neither be deleted nor confuse the verification.
    let survivors: Vec<String> = keys.iter().skip(3).step_by(97).cloned().collect();
    let mut asked: Vec<String> = keys
        .iter()
        .filter(|k| !survivors.contains(k))
        .cloned()
        .collect();
    let asked_len = asked.len();
    asked.insert(asked_len / 2, "bulk/never-there".into());
    asked.push("../outside".into());
    let t = Instant::now();
    let results = s.delete_many(&asked).await;
    let took = t.elapsed();
    assert_eq!(
        results.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        asked.iter().collect::<Vec<_>>(),
        "{name}: one result per key, in order"
    );
    for (k, o) in &results {
        let want = match k.as_str() {
            "bulk/never-there" => *o == already_gone,
            "../outside" => matches!(o, Outcome::Refused(_)),
            _ => *o == Outcome::Deleted,
        };
        assert!(want, "{name}: {k}: {o:?}");
    }
    eprintln!("{name}: bulk delete of {asked_len} keys took {took:?}");
    let left = listing(s).await;
    let mut want_left = vec!["a/empty".to_string(), "b/c/big.bin".to_string()];
    want_left.extend(survivors);
    want_left.sort();
    assert_eq!(
        left.keys().cloned().collect::<Vec<_>>(),
        want_left,
        "{name}"
    );

    // clean up through the same path
    let rest: Vec<String> = left.into_keys().collect();
    for (k, o) in s.delete_many(&rest).await {
        assert_eq!(o, Outcome::Deleted, "{name}: {k}");
    }
    assert!(listing(s).await.is_empty());
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_conformance() {
    let _g = GATE.read().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    // Outside the root, reachable only through symlinks inside it: never listed or deleted.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious.mp4"), b"keep").unwrap();
    let s = LocalStore::open("local", &root).unwrap();

    let took = conformance(&s, &tmp, None, 1100).await;
    eprintln!("local: conformance suite took {took:?}");

    std::os::unix::fs::symlink(&outside, root.join("dirlink")).unwrap();
    std::os::unix::fs::symlink(outside.join("precious.mp4"), root.join("filelink.mp4")).unwrap();
    assert!(
        listing(&s).await.is_empty(),
        "symlinks are not listed, nor followed"
    );
    let r = s
        .delete_many(&[
            "dirlink/precious.mp4".into(),
            "filelink.mp4".into(),
            "dirlink".into(),
        ])
        .await;
    assert!(
        r.iter().all(|(_, o)| matches!(o, Outcome::Refused(_))),
        "{r:?}"
    );
    assert!(
        s.put_file("dirlink/new.mp4", &tmp.join("small"))
            .await
            .is_err()
    );
    assert!(s.fetch("filelink.mp4", &tmp.join("x")).await.is_err());
    assert_eq!(
        std::fs::read(outside.join("precious.mp4")).unwrap(),
        b"keep"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
}

/// Runs the suite against `server` under prefix `box1`, with objects beside the prefix
/// (in the bucket root, and under `box10/`, which shares its first characters) that must
/// survive untouched; then the upload listing.
async fn s3_conformance(server: &S3Server, bulk: usize) {
    let whole = S3Store::new(server.settings("whole-bucket", "")).unwrap();
    let small = server.dir().join("beside");
    std::fs::write(&small, b"not yours").unwrap();
    for k in ["beside.bin", "box10/beside.bin", "box1-x/beside.bin"] {
        whole.put_file(k, &small).await.unwrap();
    }
    let settings = server.settings(&format!("{}-box1", server.kind), "box1/");
    let part_size = settings.part_size;
    let s = S3Store::new(settings).unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let took = conformance(&s, tmp.path(), Some(part_size), bulk).await;
    eprintln!(
        "{}: conformance suite took {took:?} (server start-up {:?})",
        server.kind, server.startup
    );

    // In-progress uploads are listed (to find orphans) and gone once aborted.
    let id = s.start_upload("orphan.bin").await.unwrap();
    let pending = s.list_uploads().await.unwrap();
    assert!(
        pending
            .iter()
            .any(|u| u.key == "orphan.bin" && u.upload_id == id),
        "{}: {pending:?}",
        server.kind
    );
    s.abort_upload("orphan.bin", &id).await.unwrap();
    let pending = s.list_uploads().await.unwrap();
    assert!(
        pending.iter().all(|u| u.upload_id != id),
        "{}: {pending:?}",
        server.kind
    );

    for k in ["beside.bin", "box10/beside.bin", "box1-x/beside.bin"] {
        assert!(
            whole.stat(k).await.unwrap().is_some(),
            "{}: {k} outside the prefix was touched",
            server.kind
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_conformance() {
    let _g = GATE.read().await;
    let server = S3Server::moto();
    s3_conformance(&server, 1100).await;
}

/// Probes `server`'s capabilities (and checks the probe leaves nothing behind).
async fn probe(server: &S3Server) -> Capabilities {
    let s = S3Store::new(server.settings(server.kind, "probe/")).unwrap();
    let caps = s.probe().await.unwrap();
    eprintln!("{} capabilities: {caps:?}", server.kind);
    assert!(
        listing(&s).await.is_empty(),
        "the probe cleans up after itself"
    );
    caps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_capabilities() {
    let _g = GATE.read().await;
    let caps = probe(&S3Server::moto()).await;
    let all_but_checksums = Capabilities {
        conditional_create: true,
        object_tags: true,
        checksum_sha256: false, // moto 5.2.1 stores a PUT whose x-amz-checksum is wrong
        etag_md5: true,
        multipart_etag_md5: true,
        list_uploads: true,
    };
    assert_eq!(caps, all_but_checksums);
}

/// A 112 MiB upload and fetch while the process's peak RSS is watched: memory is bounded
/// by the part size and parts in flight, never by the object.
async fn large_transfers_keep_memory_flat(server: &S3Server) {
    let settings = server.settings(server.kind, "big/");
    let (part, in_flight) = (settings.part_size as u64, settings.parts_in_flight as u64);
    let s = S3Store::new(settings).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("large.bin");
    let len = 112 << 20;
    let md5 = write_noise(&src, len);

    let before = reset_peak_rss();
    let t = Instant::now();
    let v = s.put_file("large.bin", &src).await.unwrap();
    let up = t.elapsed();
    let up_growth = proc_status("VmHWM:").saturating_sub(before);
    assert_eq!(v.size, len as u64);
    assert!(v.checksum.ends_with("-23"), "{}", v.checksum);

    let dest = tmp.path().join("fetched.bin");
    let before = reset_peak_rss();
    let t = Instant::now();
    s.fetch("large.bin", &dest).await.unwrap();
    let down = t.elapsed();
    let down_growth = proc_status("VmHWM:").saturating_sub(before);
    assert_eq!(md5_file(&dest), md5);
    eprintln!(
        "{}: 112 MiB upload {up:?}, peak RSS +{} MiB; fetch {down:?}, peak RSS +{} MiB",
        server.kind,
        up_growth >> 20,
        down_growth >> 20
    );
    // Parts in flight plus the one being read, and room for the HTTP client.
    let bound = (in_flight + 1) * part + (16 << 20);
    assert!(
        up_growth < bound,
        "upload grew RSS by {up_growth} bytes (bound {bound})"
    );
    assert!(
        down_growth < 16 << 20,
        "fetch grew RSS by {down_growth} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_large_transfers_keep_memory_flat() {
    let _g = GATE.write().await;
    large_transfers_keep_memory_flat(&S3Server::moto()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_large_transfers_keep_memory_flat() {
    let _g = GATE.write().await;
    large_transfers_keep_memory_flat(&S3Server::garage()).await;
}

/// A stopped server: every key gets its own failure naming the store — never success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_stopped_server_fails_per_key() {
    let _g = GATE.read().await;
    let mut server = S3Server::moto();
    let s = S3Store::new(server.settings("doomed", "p/")).unwrap();
    let small = server.dir().join("small");
    std::fs::write(&small, b"x").unwrap();
    let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    for k in &keys {
        s.put_file(k, &small).await.unwrap();
    }
    server.stop();
    let t = Instant::now();
    let results = s.delete_many(&keys).await;
    assert_eq!(results.len(), keys.len());
    for (k, o) in &results {
        match o {
            Outcome::Failed(why) => assert!(
                why.contains("\"doomed\"") && why.contains(k.as_str()),
                "{why}"
            ),
            o => panic!("{k}: {o:?} from a stopped server"),
        }
    }
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "bounded retries: {:?}",
        t.elapsed()
    );
    let e = s.stat("k0").await.unwrap_err().to_string();
    assert!(e.contains("\"doomed\"") && e.contains("k0"), "{e}");
    assert!(s.put_file("k9", &small).await.is_err());
    assert!(s.fetch("k0", &server.dir().join("f")).await.is_err());
    let listed: Vec<_> = s.list().collect().await;
    assert!(
        listed.iter().any(|r| r.is_err()),
        "listing a stopped server is an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_conformance() {
    let _g = GATE.read().await;
    let server = S3Server::garage();
    s3_conformance(&server, 1100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_capabilities() {
    let _g = GATE.read().await;
    let server = S3Server::garage();
    eprintln!("garage: started in {:?}", server.startup);
    let caps = probe(&server).await;
    // Measured (DESIGN.md): Garage 2.5.0 accepts a second If-None-Match: * PUT, and it
    // keeps no object tags; it does check x-amz-checksum-* values.
    let garage = Capabilities {
        conditional_create: false,
        object_tags: false,
        checksum_sha256: true,
        etag_md5: true,
        multipart_etag_md5: true,
        list_uploads: true,
    };
    assert_eq!(caps, garage);
}

/// Wrong credentials: every operation fails at once, naming the store, and deletions are
/// not retried (a denial does not heal by waiting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_denies_wrong_credentials_without_retrying() {
    let _g = GATE.read().await;
    let server = S3Server::garage();
    let good = S3Store::new(server.settings("garage", "p/")).unwrap();
    let small = server.dir().join("small");
    std::fs::write(&small, b"x").unwrap();
    good.put_file("k0", &small).await.unwrap();
    let mut settings = server.settings("badkey", "p/");
    settings.credentials.secret_access_key = "0".repeat(64);
    settings.retry.max_retries = 5;
    settings.retry.initial_backoff = Duration::from_secs(2);
    let bad = S3Store::new(settings).unwrap();
    let t = Instant::now();
    let e = bad.stat("k0").await.unwrap_err().to_string();
    assert!(e.contains("\"badkey\"") && e.contains("denied"), "{e}");
    let r = bad.delete_many(&["k0".into(), "k1".into()]).await;
    for (k, o) in &r {
        assert!(
            matches!(o, Outcome::Failed(why) if why.contains("\"badkey\"") && why.contains("denied")),
            "{k}: {o:?}"
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "denials are not retried: {:?}",
        t.elapsed()
    );
    assert!(
        good.stat("k0").await.unwrap().is_some(),
        "nothing was deleted"
    );
}
