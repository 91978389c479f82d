//! A store in an S3-compatible bucket (AWS, MinIO, Garage, R2, Ceph…) under a key prefix,
//! through the `object_store` crate.
//!
//! Every transfer streams: an upload holds at most `parts_in_flight + 1` parts in memory, a
//! fetch one network chunk, a listing one page. Copies are verified against what the
//! *server* computed — its ETag, `hex(md5)` for one part or
//! `hex(md5(md5(part 1) ‖ … ‖ md5(part N)))-N` for a multipart upload — never against
//! metadata we wrote ourselves. Deletion is verified: a key counts as deleted only once a
//! HEAD answered Not Found or a listing of its key range, begun after DeleteObjects
//! answered, no longer shows it (one listing per 1000-key batch instead of 1000 HEADs).
//! Backends differ (Garage 2.5.0 silently ignores conditional writes), so
//! [`S3Store::probe`] measures what a backend supports before anything relies on it.
//!
//! This file of about 1,400 lines on purpose: streaming upload with per-part and
//! whole-object ETag checks, verified bulk deletion, listing with upload cleanup, fetch and
//! the probe share one set of clients, one retry/deadline policy and the same ETag
//! arithmetic; split, each part would need the others' internals. Beside it: the failover
//! between a cluster's endpoints (failover.rs), control objects and bucket subresources
//! (control.rs), where the keys come from (credentials.rs).
//!
//! Orphaned multipart uploads (a crash between start and completion) are found by the
//! upload ids a caller persisted from [`Store::start_upload`], and also — where the
//! backend supports it — by [`S3Store::list_uploads`] (ListMultipartUploads through a
//! presigned URL, so object_store's own SigV4 signs it). Bucket subresources object_store
//! has no call for (`?lifecycle`) go the same way: [`S3Store::bucket_subresource`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::stream::{FuturesOrdered, StreamExt};
use futures::{Stream, TryStreamExt};
use md5::{Digest, Md5};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjPath;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{
    BackoffConfig, ClientOptions, HeaderMap, HeaderValue, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, PutPayload, RetryConfig, TagSet,
};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

mod control;
mod credentials;
mod failover;

pub use control::{ControlPut, ControlWrite, SubresourceAnswer};
pub use credentials::{CredentialSource, Credentials};
use failover::{Endpoint, is_unreachable};

use super::checksum::{MultipartEtag, hex, is_plain_md5, md5_hex, unquote};
use super::local_ops::check_copy;
use super::newfile::{NewFile, NewFileError};
use super::{ObjectInfo, Outcome, Store, StoreError, UploadId, Verified, is_plain_key};

/// Default multipart part size (S3 needs at least 5 MiB for every part but the last).
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;

/// Keys in one DeleteObjects request (the S3 maximum).
const DELETE_BATCH: usize = 1000;

/// Deletion batches with fewer keys than this are verified by one HEAD per key; larger
/// ones by one listing of their key range (see [`S3Store::delete_many`]).
pub const LIST_VERIFY_MIN: usize = 50;

/// What one round of deletion made of one key.
enum Round {
    /// Observed gone.
    Gone,
    /// Maybe still there; worth another round. The reason so far.
    Retry(String),
    /// Maybe still there; not worth retrying (denied). The reason.
    Fatal(String),
}

/// The longest run of whole leading directories that keys `a` and `b` share, as a
/// listing prefix (`None`: the bucket root). Every key between `a` and `b` in byte
/// order shares the byte prefix `a` and `b` share, so it lies under this directory.
fn common_dir<'a>(a: &'a str, b: &str) -> Option<&'a str> {
    let mut end = None;
    for ((i, x), y) in a.char_indices().zip(b.chars()) {
        if x != y {
            break;
        }
        if x == '/' {
            end = Some(i);
        }
    }
    end.map(|e| &a[..e])
}

/// A key that sorts just below `key`, for `start-after`: `key` without its last
/// character (and without the `/` that would then end it). Only keys that begin with it
/// sort between the two, so a listing from there reads little before reaching `key`.
/// `None` when nothing is left.
fn just_below(key: &str) -> Option<&str> {
    let mut s = key;
    s = &s[..s.char_indices().last()?.0];
    s = s.trim_end_matches('/');
    (!s.is_empty()).then_some(s)
}

/// S3 request failures; every variant names the store and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The settings cannot make a working client.
    #[error("store {store:?}: {detail}")]
    Config {
        /// Store name.
        store: String,
        /// What is wrong.
        detail: String,
    },
    /// Credentials could not be loaded.
    #[error("store {store:?}: credentials from {origin}: {detail}")]
    Credentials {
        /// Store name.
        store: String,
        /// A file path or "the environment".
        origin: String,
        /// What is wrong.
        detail: String,
    },
    /// The server refused our credentials or permissions; retrying will not help.
    #[error(
        "store {store:?}: {key}: {op} was denied (check the store's credentials and bucket permissions): {source}"
    )]
    Denied {
        /// Store name.
        store: String,
        /// The key (or the prefix for store-wide requests).
        key: String,
        /// The operation.
        op: &'static str,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A request failed (after object_store's bounded retries for transient errors).
    #[error("store {store:?}: {key}: {op}: {source}")]
    Request {
        /// Store name.
        store: String,
        /// The key (or the prefix for store-wide requests).
        key: String,
        /// The operation.
        op: &'static str,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Retry policy for transient failures (connection errors, 5xx, throttling); denials are
/// never retried.
#[derive(Clone, Debug)]
pub struct RetrySettings {
    /// Retries of one request, and rounds of per-key bulk-delete retries.
    pub max_retries: usize,
    /// First backoff; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Give up retrying one request after this long.
    pub retry_timeout: Duration,
    /// Connect timeout of one attempt.
    pub connect_timeout: Duration,
    /// Timeout of one attempt (a whole part or page, so generous).
    pub request_timeout: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(15),
            retry_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// Everything an [`S3Store`] is built from.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// Store name (for messages and logs).
    pub name: String,
    /// Endpoint URL (`https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:3900`).
    pub endpoint: String,
    /// Further endpoints of the same cluster (one bucket, same keys), tried in order when
    /// the ones before are unreachable (see [`S3Store`]'s failover).
    pub more_endpoints: Vec<String>,
    /// Region (`garage` for Garage, `us-east-1` for moto).
    pub region: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix (`box1/`); the store never lists or touches keys outside it.
    pub prefix: String,
    /// Virtual-hosted-style requests (`bucket.host`) instead of path style (`host/bucket`).
    pub virtual_hosted: bool,
    /// Allow plain HTTP to a non-loopback endpoint.
    pub allow_http: bool,
    /// Access keys.
    pub credentials: Credentials,
    /// Multipart part size in bytes.
    pub part_size: usize,
    /// Parts uploaded at once (memory: `(parts_in_flight + 1) × part_size`).
    pub parts_in_flight: usize,
    /// Requests in flight for bulk operations (HEADs, delete batches).
    pub concurrency: usize,
    /// Retries.
    pub retry: RetrySettings,
}

impl S3Settings {
    /// Settings with the defaults for everything but the location and credentials.
    pub fn new(
        name: &str,
        endpoint: &str,
        region: &str,
        bucket: &str,
        credentials: Credentials,
    ) -> S3Settings {
        S3Settings {
            name: name.into(),
            endpoint: endpoint.into(),
            more_endpoints: Vec::new(),
            region: region.into(),
            bucket: bucket.into(),
            prefix: String::new(),
            virtual_hosted: false,
            allow_http: false,
            credentials,
            part_size: DEFAULT_PART_SIZE,
            // (2 + 1) × 16 MiB stays under the 64 MB peak-RSS goal of the offload issue.
            parts_in_flight: 2,
            concurrency: 16,
            retry: RetrySettings::default(),
        }
    }
}

/// What a backend supports, measured by [`S3Store::probe`]; the daemon logs it and never
/// relies on a feature marked false.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// A second `If-None-Match: *` PUT of the same key is refused.
    pub conditional_create: bool,
    /// Object tags set on PUT are kept and read back (GetObjectTagging).
    pub object_tags: bool,
    /// A PUT with a wrong `x-amz-checksum-sha256` is refused (the server checks checksums).
    pub checksum_sha256: bool,
    /// A single-part ETag is the hex MD5 of the content.
    pub etag_md5: bool,
    /// A multipart ETag is `hex(md5(part md5s))-N`.
    pub multipart_etag_md5: bool,
    /// ListMultipartUploads answers, so orphaned uploads can be found without our ids.
    pub list_uploads: bool,
}

/// A multipart upload in progress, as ListMultipartUploads reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingUpload {
    /// Key relative to the prefix.
    pub key: String,
    /// The upload id (for [`Store::abort_upload`]).
    pub upload_id: UploadId,
    /// When it was started, as the server wrote it (RFC 3339).
    pub initiated: String,
}

/// A store in an S3-compatible bucket under a prefix.
///
/// Failover: with several endpoints (`endpoint` and `more_endpoints`, one cluster), each
/// has its own client; a request goes to the first endpoint not marked dead, and one that
/// cannot connect or times out marks its endpoint dead for a backoff (1 s doubling to 60 s)
/// and is sent again to the next. A dead endpoint whose backoff ran out gets a TCP connect
/// before it is used again. Verification is unchanged: every copy and deletion is checked
/// by whichever endpoint answers, against what the cluster reports.
#[derive(Debug)]
pub struct S3Store {
    name: String,
    /// The prefix without surrounding slashes; empty for the whole bucket.
    prefix: String,
    /// Every endpoint, the preferred first; never empty.
    endpoints: Vec<Endpoint>,
    settings: S3Settings,
    /// For the few requests object_store has no call for, sent to presigned URLs.
    http: reqwest::Client,
}

/// True when `host` is `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// True when a failure is about credentials or permissions (never worth retrying).
fn is_denied(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    if matches!(e, E::PermissionDenied { .. } | E::Unauthenticated { .. }) {
        return true;
    }
    let text = e.to_string();
    [
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "Forbidden",
    ]
    .iter()
    .any(|c| text.contains(c))
}

impl S3Store {
    /// Streams object `key` into `out` (a fresh file; `dest` names it in errors) and
    /// verifies its size, and its MD5 for a single-part object. Nothing is renamed.
    pub async fn fetch_into(
        &self,
        key: &str,
        out: std::fs::File,
        dest: &Path,
    ) -> Result<Verified, StoreError> {
        let path = self.path(key)?;
        let got = self
            .call(|s3| {
                let path = path.clone();
                async move { s3.get(&path).await }
            })
            .await
            .map_err(|e| self.err(key, "GET", e))?;
        let meta = got.meta.clone();
        let want_md5 = meta
            .e_tag
            .as_deref()
            .filter(|t| is_plain_md5(t))
            .map(|t| unquote(t).to_ascii_lowercase());
        let local = |e: std::io::Error| StoreError::io(&self.name, dest, e);
        let mut out = tokio::fs::File::from_std(out);
        let mut body = got.into_stream();
        let (mut n, mut md5) = (0u64, Md5::new());
        // One network chunk at a time: written before the next is polled.
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.err(key, "GET", e))?;
            md5.update(&chunk);
            out.write_all(&chunk).await.map_err(local)?;
            n += chunk.len() as u64;
        }
        out.flush().await.map_err(local)?;
        let sum = hex(&md5.finalize());
        check_copy(&self.name, key, meta.size, want_md5.as_deref(), n, &sum)?;
        Ok(Verified {
            size: n,
            checksum: meta
                .e_tag
                .as_deref()
                .map(unquote)
                .unwrap_or(&sum)
                .to_string(),
        })
    }

    /// Builds one client per endpoint; checks each endpoint (plain HTTP only to loopback
    /// or when allowed).
    pub fn new(settings: S3Settings) -> Result<S3Store, S3Error> {
        let config = |detail: String| S3Error::Config {
            store: settings.name.clone(),
            detail,
        };
        if settings.part_size < 5 * 1024 * 1024 || settings.parts_in_flight == 0 {
            return Err(config(
                "part_size must be at least 5 MiB and parts_in_flight at least 1".into(),
            ));
        }
        let mut endpoints = Vec::new();
        for endpoint in std::iter::once(&settings.endpoint).chain(&settings.more_endpoints) {
            let url = reqwest::Url::parse(endpoint)
                .map_err(|e| config(format!("endpoint {endpoint:?}: {e}")))?;
            let host = url.host_str().unwrap_or_default();
            match url.scheme() {
                "https" => {}
                "http" if settings.allow_http || is_loopback(host) => {}
                "http" => {
                    return Err(config(format!(
                        "endpoint {endpoint} is plain HTTP to a non-loopback host: use https, or set allow_http = true"
                    )));
                }
                s => {
                    return Err(config(format!(
                        "endpoint scheme {s:?}: expected https or http"
                    )));
                }
            }
            let addr = format!("{host}:{}", url.port_or_known_default().unwrap_or(443));
            let s3 = Self::builder(&settings, endpoint, HeaderMap::new())
                .build()
                .map_err(|e| config(e.to_string()))?;
            endpoints.push(Endpoint {
                url: endpoint.clone(),
                addr,
                s3: Arc::new(s3),
                health: Default::default(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(settings.retry.connect_timeout)
            .timeout(settings.retry.request_timeout)
            .build()
            .map_err(|e| config(e.to_string()))?;
        Ok(S3Store {
            name: settings.name.clone(),
            prefix: settings.prefix.trim_matches('/').to_string(),
            endpoints,
            settings,
            http,
        })
    }

    /// The object_store builder for `settings` at `endpoint`, sending `headers` with every
    /// request.
    fn builder(settings: &S3Settings, endpoint: &str, headers: HeaderMap) -> AmazonS3Builder {
        let r = &settings.retry;
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: r.initial_backoff,
                max_backoff: r.max_backoff,
                base: 2.0,
            },
            max_retries: r.max_retries,
            retry_timeout: r.retry_timeout,
        };
        let client = ClientOptions::new()
            .with_allow_http(true) // checked in `new`, by the rule above
            .with_connect_timeout(r.connect_timeout)
            .with_timeout(r.request_timeout)
            .with_default_headers(headers);
        let c = &settings.credentials;
        let mut b = AmazonS3Builder::new()
            .with_endpoint(endpoint.trim_end_matches('/'))
            .with_region(&settings.region)
            .with_bucket_name(&settings.bucket)
            .with_virtual_hosted_style_request(settings.virtual_hosted)
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(&c.secret_access_key)
            .with_retry(retry)
            .with_client_options(client);
        if let Some(t) = &c.session_token {
            b = b.with_token(t);
        }
        b
    }

    /// The prefix (without surrounding slashes).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The settings this store was built from.
    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// The bucket path of `key`, or a refusal when `key` is not a plain relative path.
    fn path(&self, key: &str) -> Result<ObjPath, StoreError> {
        let outside = || StoreError::Outside {
            store: self.name.clone(),
            path: key.into(),
        };
        if !is_plain_key(key) {
            return Err(outside());
        }
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        ObjPath::parse(full).map_err(|_| outside())
    }

    /// `key` relative to the prefix.
    fn rel_key<'a>(&self, loc: &'a ObjPath) -> &'a str {
        let s = loc.as_ref();
        if self.prefix.is_empty() {
            s
        } else {
            s.strip_prefix(&self.prefix)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(s)
        }
    }

    /// Wraps an object_store error of `op` on `key`.
    fn err(&self, key: &str, op: &'static str, e: object_store::Error) -> StoreError {
        let (store, key) = (self.name.clone(), key.to_string());
        let s3 = if is_denied(&e) {
            S3Error::Denied {
                store,
                key,
                op,
                source: Box::new(e),
            }
        } else {
            S3Error::Request {
                store,
                key,
                op,
                source: Box::new(e),
            }
        };
        StoreError::S3(s3)
    }

    fn info(&self, m: &ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            key: self.rel_key(&m.location).to_string(),
            size: m.size,
            last_modified: m.last_modified.timestamp_nanos_opt().unwrap_or(i64::MAX),
            e_tag: m.e_tag.as_deref().map(|t| unquote(t).to_string()),
        }
    }

    /// HEAD of `key`: `Ok(None)` when there is no such object.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key)?;
        let got = self
            .call(|s3| {
                let path = path.clone();
                async move { s3.head(&path).await }
            })
            .await;
        match got {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(key, "HEAD", e)),
        }
    }

    /// Sends a GET to a presigned URL for the bucket root with `query`, returning the body.
    async fn signed_get(
        &self,
        query: &[(&str, &str)],
        op: &'static str,
    ) -> Result<String, StoreError> {
        let failed = |detail: String| {
            StoreError::S3(S3Error::Request {
                store: self.name.clone(),
                key: self.prefix.clone(),
                op,
                source: detail.into(),
            })
        };
        let resp = self
            .signed_send(reqwest::Method::GET, &ObjPath::from(""), query)
            .await
            .map_err(failed)?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| failed(e.to_string()))?;
        if status.is_success() {
            Ok(body)
        } else if status == reqwest::StatusCode::FORBIDDEN
            || status == reqwest::StatusCode::UNAUTHORIZED
        {
            Err(StoreError::S3(S3Error::Denied {
                store: self.name.clone(),
                key: self.prefix.clone(),
                op,
                source: format!("HTTP {status}: {body}").into(),
            }))
        } else {
            Err(failed(format!("HTTP {status}: {body}")))
        }
    }

    /// Streams the already open local file `file` (named `src` in errors) into upload `id`,
    /// completes it and verifies the stored size and checksum: the caller opened it safely
    /// (beneath its store root, no link followed) and checked it is the planned version.
    pub async fn upload_from(
        &self,
        key: &str,
        id: &UploadId,
        file: tokio::fs::File,
        src: &Path,
    ) -> Result<Verified, StoreError> {
        let path = self.path(key)?;
        let mut file = file;
        let local = |e: std::io::Error| StoreError::io(&self.name, src, e);
        let verify = |detail: String| StoreError::Verify {
            store: self.name.clone(),
            key: key.into(),
            detail,
        };
        let expected = file.metadata().await.map_err(local)?.len();
        let part_size = self.settings.part_size;
        let mut etag = MultipartEtag::default();
        let mut parts: Vec<PartId> = Vec::new();
        let mut in_flight = FuturesOrdered::new();
        let (mut total, mut idx) = (0u64, 0usize);
        loop {
            let buf = Self::read_part(&mut file, part_size).await.map_err(local)?;
            let len = buf.len();
            if len == 0 {
                if idx == 0 {
                    return self.put_empty(key, &path, id).await;
                }
                break; // the file ended on a part boundary
            }
            let digest = Md5::digest(&buf);
            etag.push(&digest);
            total += len as u64;
            let payload = PutPayload::from(buf.freeze());
            // A part is idempotent (its number and content): safe to send again elsewhere.
            let (part_path, part_upload) = (path.clone(), id.0.clone());
            let put = self.call(move |s3| {
                let (path, upload, payload) =
                    (part_path.clone(), part_upload.clone(), payload.clone());
                async move { s3.put_part(&path, &upload, idx, payload).await }
            });
            in_flight.push_back(async move { (idx, hex(&digest), put.await) });
            idx += 1;
            // Bounded: at most `parts_in_flight` parts uploading, plus the one being read.
            while in_flight.len() >= self.settings.parts_in_flight {
                parts.push(self.part_done(key, in_flight.next().await)?);
            }
            if len < part_size {
                break;
            }
        }
        while let Some(done) = in_flight.next().await {
            parts.push(self.part_done(key, Some(done))?);
        }
        if total != expected {
            // A local failure, before anything completed: the key keeps what it had.
            return Err(local(std::io::Error::other(format!(
                "had {expected} bytes when opened, {total} were read: it changed while uploading"
            ))));
        }
        let want = etag.finish();
        // Sent again elsewhere only when it did not reach its endpoint (or timed out: then
        // the second answer may be NoSuchUpload, and the HEAD below decides).
        self.call(|s3| {
            let (path, upload, parts) = (path.clone(), id.0.clone(), parts.clone());
            async move { s3.complete_multipart(&path, &upload, parts).await }
        })
        .await
        .map_err(|e| self.err(key, "CompleteMultipartUpload", e))?;
        let Some(meta) = self.head(key).await? else {
            return Err(verify("absent right after its upload completed".into()));
        };
        let got = meta.e_tag.as_deref().map(unquote).unwrap_or_default();
        if meta.size != total || got != want {
            return Err(verify(format!(
                "uploaded {total} bytes with ETag {want}, the store reports {} bytes with ETag {got}",
                meta.size
            )));
        }
        Ok(Verified {
            size: meta.size,
            checksum: want,
        })
    }

    /// Multipart uploads in progress under the prefix (ListMultipartUploads, paged), to
    /// abort orphans whose ids were lost. Fails on backends without the call.
    pub async fn list_uploads(&self) -> Result<Vec<PendingUpload>, StoreError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Page {
            #[serde(default)]
            upload: Vec<Up>,
            #[serde(default)]
            is_truncated: bool,
            next_key_marker: Option<String>,
            next_upload_id_marker: Option<String>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Up {
            key: String,
            upload_id: String,
            #[serde(default)]
            initiated: String,
        }
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        let mut out = Vec::new();
        loop {
            let mut q = vec![("uploads", ""), ("prefix", prefix.as_str())];
            if !key_marker.is_empty() {
                q.push(("key-marker", &key_marker));
                q.push(("upload-id-marker", &id_marker));
            }
            let body = self.signed_get(&q, "ListMultipartUploads").await?;
            let page: Page = quick_xml::de::from_str(&body).map_err(|e| {
                StoreError::S3(S3Error::Request {
                    store: self.name.clone(),
                    key: self.prefix.clone(),
                    op: "ListMultipartUploads",
                    source: format!("unreadable answer: {e}").into(),
                })
            })?;
            for u in page.upload {
                let Some(key) = u.key.strip_prefix(&prefix) else {
                    continue; // never report (or let anyone abort) outside the prefix
                };
                out.push(PendingUpload {
                    key: key.to_string(),
                    upload_id: UploadId(u.upload_id),
                    initiated: u.initiated,
                });
            }
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(k), Some(i)) if k != key_marker || i != id_marker => {
                    (key_marker, id_marker) = (k, i);
                }
                _ => return Ok(out),
            }
        }
    }

    /// Measures what the backend supports, with a few small objects under
    /// `PREFIX/.mediaretain-probe/` that are deleted afterwards.
    pub async fn probe(&self) -> Result<Capabilities, StoreError> {
        let base = format!(".mediaretain-probe/{}", std::process::id());
        let body: &[u8] = b"mediaretain capability probe";
        let mut caps = Capabilities::default();
        let mut keys = Vec::new();
        // One endpoint for the whole probe: it measures the cluster, not failover. A first
        // request goes through the failover, so an endpoint that cannot be reached (a
        // cluster node down when the daemon starts) is marked dead before one is picked.
        let first = self.path(&format!("{base}/etag"))?;
        let _ = self
            .call(|s3| {
                let p = first.clone();
                async move { s3.head(&p).await }
            })
            .await;
        let at = self.pick().await;
        let s3 = self.endpoints[at].s3.clone();

        let key = format!("{base}/etag");
        let path = self.path(&key)?;
        keys.push(key.clone());
        let put = s3
            .put(&path, PutPayload::from_static(body))
            .await
            .map_err(|e| self.err(&key, "PUT", e))?;
        caps.etag_md5 = put.e_tag.as_deref().map(unquote) == Some(md5_hex(body).as_str());

        let key = format!("{base}/create");
        let path = self.path(&key)?;
        keys.push(key.clone());
        let create = PutOptions::from(PutMode::Create);
        let _ = s3.delete(&path).await;
        s3.put_opts(&path, PutPayload::from_static(body), create.clone())
            .await
            .map_err(|e| self.err(&key, "PUT If-None-Match", e))?;
        caps.conditional_create = match s3
            .put_opts(&path, PutPayload::from_static(body), create)
            .await
        {
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => true,
            Ok(_) => false,
            Err(e) => return Err(self.err(&key, "PUT If-None-Match", e)),
        };

        let key = format!("{base}/multipart");
        let path = self.path(&key)?;
        keys.push(key.clone());
        let id = s3
            .create_multipart(&path)
            .await
            .map_err(|e| self.err(&key, "CreateMultipartUpload", e))?;
        let part = s3
            .put_part(&path, &id, 0, PutPayload::from_static(body))
            .await;
        let done = match part {
            Ok(p) => s3.complete_multipart(&path, &id, vec![p]).await,
            Err(e) => Err(e),
        };
        match done {
            Ok(r) => {
                let mut want = MultipartEtag::default();
                want.push(&Md5::digest(body));
                caps.multipart_etag_md5 = r.e_tag.as_deref().map(unquote) == Some(&want.finish());
            }
            Err(e) => {
                let _ = s3.abort_multipart(&path, &id).await;
                return Err(self.err(&key, "multipart upload", e));
            }
        }

        let key = format!("{base}/tags");
        let path = self.path(&key)?;
        keys.push(key.clone());
        let mut tags = TagSet::default();
        tags.push("mediaretain-probe", "1");
        caps.object_tags = s3
            .put_opts(&path, PutPayload::from_static(body), PutOptions::from(tags))
            .await
            .is_ok()
            && self
                .signed_object_get(&path, &[("tagging", "")])
                .await
                .is_ok_and(|xml| xml.contains("mediaretain-probe"));

        // A client that sends a wrong SHA-256 checksum with every request: a server that
        // checks checksums refuses the PUT, one that ignores them stores it.
        let key = format!("{base}/checksum");
        let path = self.path(&key)?;
        keys.push(key.clone());
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-checksum-sha256",
            HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        );
        let liar = Self::builder(&self.settings, &self.endpoints[at].url, h)
            .build()
            .map_err(|e| self.err(&key, "build client", e))?;
        caps.checksum_sha256 = liar
            .put(&path, PutPayload::from_static(body))
            .await
            .is_err();

        caps.list_uploads = self.list_uploads().await.is_ok();

        for (key, outcome) in self.delete_many(&keys).await {
            if !matches!(outcome, Outcome::Deleted | Outcome::Vanished) {
                tracing::warn!(store = %self.name, key, outcome = outcome.word(), detail = outcome.detail(), "probe object left behind");
            }
        }
        Ok(caps)
    }

    /// GET of object `path` with `query` through a presigned URL.
    async fn signed_object_get(
        &self,
        path: &ObjPath,
        query: &[(&str, &str)],
    ) -> Result<String, String> {
        let resp = self.signed_send(reqwest::Method::GET, path, query).await?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("HTTP {status}: {body}"))
        }
    }

    /// One round of deletion of `pending` (sorted, no duplicates): DeleteObjects batches
    /// of up to [`DELETE_BATCH`] consecutive keys, a few batches at once, each verified as
    /// soon as its request has answered; what became of every key.
    async fn delete_round(&self, pending: &[ObjPath], gate: &Semaphore) -> Vec<(ObjPath, Round)> {
        // The futures are built up front (not in a `map` closure over borrowed batches),
        // which keeps the whole future `Send` as the trait requires.
        let batches: Vec<_> = pending
            .chunks(DELETE_BATCH)
            .map(|b| self.delete_batch(b, gate))
            .collect();
        futures::stream::iter(batches)
            .buffer_unordered(self.settings.concurrency.clamp(1, 8))
            .flat_map(futures::stream::iter)
            .collect()
            .await
    }

    /// Deletes one batch (a contiguous range of sorted keys) with one DeleteObjects
    /// request, then verifies it: by HEAD per key below [`LIST_VERIFY_MIN`] keys, else by
    /// listing the batch's key range, with a HEAD for any key the listing still shows.
    async fn delete_batch(&self, batch: &[ObjPath], gate: &Semaphore) -> Vec<(ObjPath, Round)> {
        let results: Vec<_> = {
            let _permit = gate.acquire().await;
            // Deleting is idempotent: a batch that could not reach its endpoint is sent
            // whole to the next one.
            let sent = self
                .call(|s3| {
                    let input: Vec<_> = batch.iter().cloned().map(Ok).collect();
                    async move {
                        let mut r: Vec<_> = s3
                            .delete_stream(futures::stream::iter(input).boxed())
                            .collect()
                            .await;
                        match r
                            .iter()
                            .position(|x| x.as_ref().is_err_and(|e| is_unreachable(e)))
                        {
                            Some(i) => Err(r.swap_remove(i).unwrap_err()),
                            None => Ok(r),
                        }
                    }
                })
                .await;
            match sent {
                Ok(r) => r,
                Err(e) => vec![Err(e)],
            }
        };
        let mut out = Vec::with_capacity(batch.len());
        let mut sent = Vec::with_capacity(batch.len());
        if results.len() == batch.len() {
            for (p, r) in batch.iter().zip(results) {
                match r {
                    // Not Found is what a bulk delete of an absent key may say: verified below.
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => sent.push(p.clone()),
                    Err(e) => {
                        let round = self.round_err(p, "DeleteObjects", e, "");
                        out.push((p.clone(), round));
                    }
                }
            }
        } else {
            // The whole request failed: every key of the batch shares its error.
            let text = results
                .into_iter()
                .find_map(|r| r.err())
                .map_or_else(|| "no answer".to_string(), |e| e.to_string());
            for p in batch {
                let e = object_store::Error::Generic {
                    store: "S3",
                    source: text.clone().into(),
                };
                out.push((p.clone(), self.round_err(p, "DeleteObjects", e, "")));
            }
        }
        if sent.len() < LIST_VERIFY_MIN {
            out.extend(self.head_verify(&sent, gate).await);
            return out;
        }
        match self.still_listed(&sent, gate).await {
            Ok(stragglers) => {
                let mut again = Vec::new();
                for p in sent {
                    if stragglers.binary_search(&p).is_ok() {
                        again.push(p);
                    } else {
                        out.push((p, Round::Gone));
                    }
                }
                if !again.is_empty() {
                    tracing::debug!(store = %self.name, keys = again.len(), "still listed after DeleteObjects");
                }
                out.extend(self.head_verify(&again, gate).await);
            }
            Err(why) => {
                tracing::debug!(store = %self.name, keys = sent.len(), error = %why, "verifying by HEAD instead of a listing");
                out.extend(self.head_verify(&sent, gate).await);
            }
        }
        out
    }

    /// The keys of `sorted` (ascending, at least one) that a listing of their key range —
    /// started after DeleteObjects answered for them — still shows, ascending.
    ///
    /// This listing *is* the verification for large batches, and it is sound because:
    /// - S3 (since December 2020), moto (one in-memory map) and Garage (a single node, or
    ///   a cluster in its default consistent mode: listings read a quorum) are
    ///   read-after-write consistent for listings, deletions included, so a key absent
    ///   from a listing that began after its DeleteObjects answered is absent from the
    ///   bucket — the same observation a HEAD answering Not Found makes;
    /// - the listing covers the whole range: it starts just below the smallest key
    ///   (`start-after` a proper prefix of it) under the longest directory every key of
    ///   the range shares, and is read in order to past the largest; a listing that is
    ///   not in strictly ascending order is refused (the caller then HEADs every key)
    ///   rather than trusted to be complete.
    ///
    /// On a backend whose listings lag, the error is on the safe side: a lagging listing
    /// shows a deleted key as still there, and that key then gets a HEAD.
    async fn still_listed(
        &self,
        sorted: &[ObjPath],
        gate: &Semaphore,
    ) -> Result<Vec<ObjPath>, String> {
        let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
            return Ok(Vec::new());
        };
        let dir = common_dir(first.as_ref(), last.as_ref());
        let dir = dir
            .map(ObjPath::parse)
            .transpose()
            .map_err(|e| e.to_string())?;
        let below = just_below(first.as_ref()).and_then(|b| ObjPath::parse(b).ok());
        let _permit = gate.acquire().await;
        let mut listing = std::pin::pin!(self.list_failover(dir, below.clone()));
        let mut prev = below.map(|b| b.to_string()).unwrap_or_default();
        let mut present = Vec::new();
        while let Some(m) = listing.next().await {
            let m = m.map_err(|e| self.err(&self.prefix, "LIST", e).to_string())?;
            let loc = m.location.as_ref();
            if loc <= prev.as_str() {
                return Err(format!("the listing is not in ascending order at {loc:?}"));
            }
            if loc > last.as_ref() {
                break;
            }
            if sorted.binary_search(&m.location).is_ok() {
                present.push(m.location.clone());
            }
            prev = loc.to_string();
        }
        Ok(present)
    }

    /// HEADs every key (bounded by `gate`): gone, still there, or unknown.
    async fn head_verify(&self, paths: &[ObjPath], gate: &Semaphore) -> Vec<(ObjPath, Round)> {
        let heads: Vec<_> = paths
            .iter()
            .map(|p| async move {
                let r = {
                    let _permit = gate.acquire().await;
                    self.call(|s3| {
                        let p = p.clone();
                        async move { s3.head(&p).await }
                    })
                    .await
                };
                let round = match r {
                    Err(object_store::Error::NotFound { .. }) => Round::Gone,
                    Ok(_) => Round::Retry(format!(
                        "store {:?}: {}: still present after the store acknowledged its deletion",
                        self.name,
                        self.rel_key(p)
                    )),
                    Err(e) => self.round_err(
                        p,
                        "HEAD",
                        e,
                        "deleted, but its removal could not be verified: ",
                    ),
                };
                (p.clone(), round)
            })
            .collect();
        futures::stream::iter(heads)
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await
    }

    /// A failed request on `path`: final when denied, else worth another round.
    fn round_err(
        &self,
        path: &ObjPath,
        op: &'static str,
        e: object_store::Error,
        lead: &str,
    ) -> Round {
        let denied = is_denied(&e);
        let text = format!("{lead}{}", self.err(self.rel_key(path), op, e));
        if denied {
            Round::Fatal(text)
        } else {
            Round::Retry(text)
        }
    }

    /// Reads up to `size` bytes of `file` (fewer only at its end).
    async fn read_part(file: &mut tokio::fs::File, size: usize) -> std::io::Result<BytesMut> {
        let mut buf = BytesMut::with_capacity(size);
        while buf.len() < size {
            // `read_buf` never grows the buffer past its capacity, so a part is one
            // allocation of `size` bytes.
            if file.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        Ok(buf)
    }
}

impl Store for S3Store {
    fn name(&self) -> &str {
        &self.name
    }

    fn list(&self) -> impl Stream<Item = Result<ObjectInfo, StoreError>> + Send + '_ {
        let prefix = (!self.prefix.is_empty()).then(|| ObjPath::from(self.prefix.as_str()));
        // object_store pages through ListObjectsV2 lazily: one page in memory at a time.
        // Control objects (claim markers, leases, status, probes) are never entries.
        self.list_failover(prefix, None)
            .try_filter(|m| {
                futures::future::ready(!crate::node::is_control_key(m.location.as_ref()))
            })
            .map_ok(|m| self.info(&m))
            .map_err(|e| self.err(&self.prefix, "LIST", e))
    }

    async fn stat(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        Ok(self.head(key).await?.map(|m| ObjectInfo {
            key: key.into(),
            ..self.info(&m)
        }))
    }

    async fn start_upload(&self, key: &str) -> Result<UploadId, StoreError> {
        let path = self.path(key)?;
        let id = self
            .call(|s3| {
                let path = path.clone();
                async move { s3.create_multipart(&path).await }
            })
            .await
            .map_err(|e| self.err(key, "CreateMultipartUpload", e))?;
        Ok(UploadId(id))
    }

    async fn finish_upload(
        &self,
        key: &str,
        id: &UploadId,
        src: &Path,
    ) -> Result<Verified, StoreError> {
        let file = tokio::fs::File::open(src)
            .await
            .map_err(|e| StoreError::io(&self.name, src, e))?;
        self.upload_from(key, id, file, src).await
    }

    async fn abort_upload(&self, key: &str, id: &UploadId) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let aborted = self
            .call(|s3| {
                let (path, upload) = (path.clone(), id.0.clone());
                async move { s3.abort_multipart(&path, &upload).await }
            })
            .await;
        match aborted {
            // Aborting twice is not an error: the upload is gone either way.
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, "AbortMultipartUpload", e)),
        }
    }

    async fn fetch(&self, key: &str, dest: &Path) -> Result<Verified, StoreError> {
        let local = |e: NewFileError| StoreError::io(&self.name, dest, e);
        let tmp = super::newfile::tmp_name("part");
        let mut out = NewFile::create(dest, None, &tmp, true).map_err(local)?;
        let file = out
            .file()
            .try_clone()
            .map_err(|e| StoreError::io(&self.name, dest, e))?;
        let v = self.fetch_into(key, file, dest).await?;
        out.commit(super::newfile::umask_mode()).map_err(local)?;
        Ok(v)
    }

    /// Deletes `keys` in rounds: each round sends DeleteObjects batches and verifies
    /// them (see [`S3Store::still_listed`]); keys not yet observed gone go to the next
    /// round after a backoff, up to `max_retries` rounds; denials are final at once.
    ///
    /// There is no look before: DeleteObjects reports an absent key as deleted, so an
    /// S3 store cannot tell [`Outcome::Vanished`] from [`Outcome::Deleted`] without a
    /// HEAD per key, and it reports both as `Deleted` — true either way, since the key
    /// was observed gone afterwards.
    async fn delete_many(&self, keys: &[String]) -> Vec<(String, Outcome)> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; keys.len()];
        // Sorted and without duplicates, so every batch is one contiguous key range.
        let mut targets: BTreeMap<ObjPath, Vec<usize>> = BTreeMap::new();
        for (i, key) in keys.iter().enumerate() {
            match self.path(key) {
                Ok(p) => targets.entry(p).or_default().push(i),
                Err(e) => outcomes[i] = Some(Outcome::Refused(e.to_string())),
            }
        }
        let gate = Semaphore::new(self.settings.concurrency.max(1));
        let mut pending: Vec<ObjPath> = targets.keys().cloned().collect();
        let mut backoff = self.settings.retry.initial_backoff;
        for round in 0..=self.settings.retry.max_retries {
            let last = round == self.settings.retry.max_retries;
            let mut again = Vec::new();
            for (p, r) in self.delete_round(&pending, &gate).await {
                let outcome = match r {
                    Round::Gone => Outcome::Deleted,
                    Round::Fatal(why) => Outcome::Failed(why),
                    Round::Retry(why) if last => Outcome::Failed(why),
                    Round::Retry(_) => {
                        again.push(p);
                        continue;
                    }
                };
                for &i in &targets[&p] {
                    outcomes[i] = Some(outcome.clone());
                }
            }
            if again.is_empty() {
                break;
            }
            tracing::debug!(store = %self.name, keys = again.len(), round, "retrying deletions");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.settings.retry.max_backoff);
            again.sort();
            pending = again;
        }
        keys.iter()
            .cloned()
            .zip(
                outcomes
                    .into_iter()
                    .map(|o| o.unwrap_or_else(|| Outcome::Failed("no result".into()))),
            )
            .collect()
    }
}

impl S3Store {
    /// An empty file: servers refuse an empty part (Garage: "Empty body"), so the upload
    /// is aborted — which also proves the id was still live — and a plain PUT stores it.
    async fn put_empty(
        &self,
        key: &str,
        path: &ObjPath,
        id: &UploadId,
    ) -> Result<Verified, StoreError> {
        let aborted = self
            .call(|s3| {
                let (path, upload) = (path.clone(), id.0.clone());
                async move { s3.abort_multipart(&path, &upload).await }
            })
            .await;
        match aborted {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::NoUpload {
                    store: self.name.clone(),
                    key: key.into(),
                    upload_id: id.0.clone(),
                });
            }
            Err(e) => return Err(self.err(key, "AbortMultipartUpload", e)),
        }
        let put = self
            .call(|s3| {
                let path = path.clone();
                async move { s3.put(&path, PutPayload::default()).await }
            })
            .await
            .map_err(|e| self.err(key, "PUT", e))?;
        let want = md5_hex(b"");
        let got = self.head(key).await?;
        match got {
            Some(m) if m.size == 0 && m.e_tag.as_deref().map(unquote) == Some(&want) => {
                Ok(Verified {
                    size: 0,
                    checksum: want,
                })
            }
            other => Err(StoreError::Verify {
                store: self.name.clone(),
                key: key.into(),
                detail: format!(
                    "stored an empty object (ETag {:?}), the store reports {:?}",
                    put.e_tag,
                    other.map(|m| (m.size, m.e_tag))
                ),
            }),
        }
    }

    /// Checks one finished part: uploaded, and its server ETag is the MD5 we computed.
    fn part_done(
        &self,
        key: &str,
        done: Option<(usize, String, object_store::Result<PartId>)>,
    ) -> Result<PartId, StoreError> {
        let Some((idx, md5, r)) = done else {
            return Err(StoreError::PartMismatch {
                store: self.name.clone(),
                key: key.into(),
                detail: "a part went missing".into(),
            });
        };
        let part = r.map_err(|e| self.err(key, "UploadPart", e))?;
        if unquote(&part.content_id) != md5 {
            return Err(StoreError::PartMismatch {
                store: self.name.clone(),
                key: key.into(),
                detail: format!(
                    "part {} was stored with ETag {}, but its MD5 is {md5}",
                    idx + 1,
                    part.content_id
                ),
            });
        }
        Ok(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "id".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        }
    }

    #[test]
    fn listing_ranges_cover_every_key_between_the_ends() {
        assert_eq!(
            common_dir("box1/bulk/0/k1", "box1/bulk/6/k9"),
            Some("box1/bulk")
        );
        assert_eq!(common_dir("box1/a/x", "box1/a/x"), Some("box1/a"));
        // A key that is a prefix of another is a file, not a directory.
        assert_eq!(common_dir("a/b", "a/b/c"), Some("a"));
        assert_eq!(common_dir("a/bc", "a/bd"), Some("a"));
        assert_eq!(common_dir("a", "b/c"), None);
        assert_eq!(common_dir("x/é/1", "x/é/2"), Some("x/é"));

        assert_eq!(just_below("box1/k00500"), Some("box1/k0050"));
        assert_eq!(just_below("a/b/c"), Some("a/b"));
        assert_eq!(just_below("a/é"), Some("a"));
        assert_eq!(just_below("k"), None);
        // Below the key, and nothing that sorts between them can be a shorter key.
        for k in ["box1/k00500", "a/b/c", "a/é", "a/b/cd/e"] {
            let b = just_below(k).unwrap();
            assert!(b < k && k.starts_with(b), "{k}: {b}");
        }
    }

    #[test]
    fn a_refused_connection_marks_its_endpoint_dead_and_the_request_moves_on() {
        // Two loopback ports nobody listens on: both refuse at once.
        let closed = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (a, b) = (closed(), closed());
        let mut s = S3Settings::new(
            "arch",
            &format!("http://127.0.0.1:{a}"),
            "garage",
            "b",
            creds(),
        );
        s.more_endpoints = vec![format!("http://127.0.0.1:{b}/")];
        s.retry.max_retries = 0;
        s.retry.retry_timeout = Duration::from_secs(1);
        let store = S3Store::new(s).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let health = |store: &S3Store| -> Vec<bool> {
            store
                .endpoint_health()
                .into_iter()
                .map(|(_, up)| up)
                .collect()
        };
        assert_eq!(health(&store), [true, true]);
        let e = rt.block_on(store.stat("k")).unwrap_err().to_string();
        // Tried on both, in order: the error is the second endpoint's.
        assert!(e.contains(&format!("127.0.0.1:{b}")), "{e}");
        assert_eq!(health(&store), [false, false]);
        // Both known down: the next request fails on one, without trying the other.
        let e = rt.block_on(store.stat("k")).unwrap_err().to_string();
        assert!(e.contains(&format!("127.0.0.1:{a}")), "{e}");
        // A single endpoint is never marked: there is nowhere else to go.
        let one = S3Store::new(S3Settings::new(
            "arch",
            &format!("http://127.0.0.1:{a}"),
            "garage",
            "b",
            creds(),
        ))
        .unwrap();
        let mut one_settings = one.settings().clone();
        one_settings.retry.max_retries = 0;
        let one = S3Store::new(one_settings).unwrap();
        assert!(rt.block_on(one.stat("k")).is_err());
        assert_eq!(health(&one), [true]);
    }

    #[test]
    fn plain_http_only_to_loopback_or_when_allowed() {
        let make = |endpoint: &str, allow_http: bool| {
            let mut s = S3Settings::new("arch", endpoint, "garage", "b", creds());
            s.allow_http = allow_http;
            S3Store::new(s)
        };
        for ok in [
            "http://127.0.0.1:3900",
            "http://localhost:9000",
            "http://[::1]:3900",
            "https://s3.example.com",
        ] {
            assert!(make(ok, false).is_ok(), "{ok}");
        }
        let e = make("http://10.0.0.5:3900", false).unwrap_err().to_string();
        assert!(e.contains("\"arch\"") && e.contains("allow_http"), "{e}");
        assert!(make("http://10.0.0.5:3900", true).is_ok());
        assert!(make("ftp://127.0.0.1", true).is_err());
    }

    #[test]
    fn credentials_files_plain_and_ini() {
        let plain = Credentials::parse(
            "# archive\naws_access_key_id = GK123\naws_secret_access_key = \"s3cr3t\"\n",
        )
        .unwrap();
        assert_eq!(plain.access_key_id, "GK123");
        assert_eq!(plain.secret_access_key, "s3cr3t");
        assert!(plain.session_token.is_none());
        let ini = Credentials::parse(
            "[other]\naws_access_key_id = X\naws_secret_access_key = Y\n\n[default]\n\
             aws_access_key_id=A\naws_secret_access_key=B\naws_session_token=T\n",
        )
        .unwrap();
        assert_eq!(
            (ini.access_key_id.as_str(), ini.secret_access_key.as_str()),
            ("A", "B")
        );
        assert_eq!(ini.session_token.as_deref(), Some("T"));
        assert!(Credentials::parse("aws_access_key_id = A\n").is_err());
        assert!(Credentials::parse("[a]\naws_access_key_id=A\n[b]\n").is_err());
        assert!(Credentials::parse("garbage\n").is_err());
        let dbg = format!("{ini:?}");
        assert!(
            dbg.contains("<redacted>") && !dbg.contains("\"B\"") && !dbg.contains("\"T\""),
            "{dbg}"
        );
        let missing = Credentials::from_file("arch", Path::new("/nonexistent/creds"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("\"arch\"") && missing.contains("/nonexistent/creds"));
    }
}
