//! Measurements of the S3 store layer itself against a single-node Garage, for the record
//! beside `scripts/bench-s3` (which measures rclone and the `mediaretain gc` binary on the
//! same kind of server). Ignored by default — they move gigabytes and 100k objects:
//!
//! ```text
//! cargo test --release --test s3_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Each prints seconds, MB/s or objects/s, and the process's peak RSS during the timed
//! part (VmHWM, reset just before it through `/proc/self/clear_refs`).

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use mediaretain::store::s3::{Credentials, S3Settings, S3Store};
use mediaretain::store::{Outcome, Store};
use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;

use common::s3::S3Server;

/// `/proc/self/status` field `field` in bytes.
fn proc_status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Resets the peak RSS (VmHWM) to the current RSS and returns that.
fn reset_peak_rss() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM");
    proc_status("VmRSS:")
}

/// A store on `server` under `prefix` with the production defaults (16 MiB parts, two in
/// flight, 16 requests at once), not the tests' small parts.
fn store(server: &S3Server, prefix: &str) -> S3Store {
    let creds = Credentials {
        access_key_id: server.key_id.clone(),
        secret_access_key: server.secret.clone(),
        session_token: None,
    };
    let mut s = S3Settings::new(
        "bench",
        &server.endpoint,
        &server.region,
        &server.bucket,
        creds,
    );
    s.prefix = prefix.into();
    S3Store::new(s).unwrap()
}

/// Writes `len` bytes of incompressible noise to `path`.
fn write_noise(path: &Path, len: u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..len / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.write_all(&x.to_le_bytes()).unwrap();
    }
    f.flush().unwrap();
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: moves 1 GiB; run with --ignored --nocapture"]
async fn garage_offload_1gib() {
    let server = S3Server::garage();
    let s = store(&server, "bench/");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("rec.bin");
    let len = 1u64 << 30;
    write_noise(&src, len);
    // Warm the page cache, as a just-finished recording would be.
    std::io::copy(
        &mut std::fs::File::open(&src).unwrap(),
        &mut std::io::sink(),
    )
    .unwrap();
    let base = reset_peak_rss();
    let t = Instant::now();
    let v = s.put_file("rec/rec.bin", &src).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let peak = proc_status("VmHWM:");
    assert_eq!(v.size, len);
    eprintln!(
        "store layer: put_file 1 GiB to garage: {secs:.2} s, {:.1} MB/s, peak RSS {:.1} MiB (+{:.1} MiB over {:.1} MiB before)",
        len as f64 / 1e6 / secs,
        mib(peak),
        mib(peak.saturating_sub(base)),
        mib(base)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: creates and deletes 100k objects; run with --ignored --nocapture"]
async fn garage_delete_100k() {
    let n = 100_000usize;
    let server = S3Server::garage();
    let s = store(&server, "bench/");
    let keys: Vec<String> = (0..n)
        .map(|i| format!("old/d{:03}/obj{i:06}", i / 1000))
        .collect();

    // Creating them is not timed: plain PUTs, 64 at once.
    let raw = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&server.endpoint)
            .with_region(&server.region)
            .with_bucket_name(&server.bucket)
            .with_access_key_id(&server.key_id)
            .with_secret_access_key(&server.secret)
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    let t = Instant::now();
    futures::stream::iter(keys.iter().map(|k| {
        let raw = Arc::clone(&raw);
        let path = ObjPath::from(format!("bench/{k}"));
        async move { raw.put(&path, "x".into()).await }
    }))
    .buffer_unordered(64)
    .try_collect::<Vec<_>>()
    .await
    .unwrap();
    let listed = s.list().try_collect::<Vec<_>>().await.unwrap().len();
    assert_eq!(listed, n);
    eprintln!(
        "created {n} objects in {:.1} s (not timed)",
        t.elapsed().as_secs_f64()
    );

    let base = reset_peak_rss();
    let t = Instant::now();
    let results = s.delete_many(&keys).await;
    let secs = t.elapsed().as_secs_f64();
    let peak = proc_status("VmHWM:");
    let deleted = results
        .iter()
        .filter(|(_, o)| *o == Outcome::Deleted)
        .count();
    let left = s.list().try_collect::<Vec<_>>().await.unwrap().len();
    eprintln!(
        "store layer: delete_many {n} objects on garage: {secs:.2} s ({:.0} objects/s), {deleted} deleted (verified), {left} left, peak RSS {:.1} MiB (+{:.1} MiB)",
        n as f64 / secs,
        mib(peak),
        mib(peak.saturating_sub(base))
    );
    assert_eq!(deleted, n);
    assert_eq!(left, 0);
}
