//! What the engine's S3 parts — the stores (`remote.rs`), offload (`offload.rs`) and the
//! fleet (`fleet.rs`) — share below them: the small I/O runtime every S3 call runs to
//! completion on (the engine is synchronous: its callers run on blocking threads), the
//! shortest deadline of one request attempt, and the log line of a store's capabilities.
//! It sees nothing of the engine.

use std::future::Future;
use std::sync::OnceLock;

use tracing::info;

/// The shortest deadline of one S3 request attempt.
pub(super) const MIN_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `f` to completion on the S3 I/O runtime, from any thread (also from within another
/// runtime's blocking thread: it blocks a thread of its own).
pub fn io<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    static IO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = IO.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mediaretain-s3")
            .enable_all()
            .build()
            .expect("the S3 I/O runtime starts")
    });
    std::thread::scope(|s| {
        s.spawn(|| rt.block_on(f))
            .join()
            .expect("S3 I/O thread panicked")
    })
}

/// Logs what the probe found S3 store `store` supports.
pub(super) fn log_capabilities(store: &str, c: &crate::store::s3::Capabilities) {
    info!(
        store,
        conditional_create = c.conditional_create,
        object_tags = c.object_tags,
        checksum_sha256 = c.checksum_sha256,
        multipart_etag_md5 = c.multipart_etag_md5,
        list_uploads = c.list_uploads,
        "S3 store {store}: conditional create {}, object tags {}, server-checked sha256 {}, md5 multipart etags {}, list uploads {} (copies are verified by etag; claims and rules leases use conditional writes where honoured)",
        c.conditional_create,
        c.object_tags,
        c.checksum_sha256,
        c.multipart_etag_md5,
        c.list_uploads
    );
}
