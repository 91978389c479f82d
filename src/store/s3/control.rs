//! The fleet's small objects beside the media: control objects (`.mediaretain/…`: claim
//! markers, rules leases, status objects) written in one PUT, conditionally where the
//! store honours it, and bucket subresources object_store has no call for (`?lifecycle`),
//! sent through a presigned URL so that object_store's own SigV4 signs them.

use super::*;

impl S3Store {
    /// Writes the small object `key` (relative to the prefix) in one PUT: the fleet's
    /// control objects (`.mediaretain/status.json`), never a copy of a file.
    pub async fn put_small(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let payload = PutPayload::from(body);
        self.call(|s3| {
            let (path, payload) = (path.clone(), payload.clone());
            async move { s3.put(&path, payload).await }
        })
        .await
        .map_err(|e| self.err(key, "PUT", e))?;
        Ok(())
    }

    /// Reads the small object `key` (relative to the prefix) whole, with the time the
    /// server says it was last written; `Ok(None)` when there is none. At most `limit`
    /// bytes are read (a longer object is an error, not a memory hazard).
    pub async fn get_small(
        &self,
        key: &str,
        limit: usize,
    ) -> Result<Option<(Vec<u8>, crate::units::Nanos)>, StoreError> {
        let path = self.path(key)?;
        let got = self
            .call(|s3| {
                let path = path.clone();
                async move { s3.get(&path).await }
            })
            .await;
        let got = match got {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(key, "GET", e)),
        };
        let modified = got.meta.last_modified.timestamp_nanos_opt().unwrap_or(0);
        if got.meta.size > limit as u64 {
            return Err(StoreError::Verify {
                store: self.name.clone(),
                key: key.into(),
                detail: format!("{} bytes, more than the {limit} expected", got.meta.size),
            });
        }
        let body = got.bytes().await.map_err(|e| self.err(key, "GET", e))?;
        Ok(Some((body.to_vec(), modified)))
    }

    /// The directories directly under `dir` (relative to the prefix; "" for the prefix
    /// itself), by one listing with a delimiter: their names, without `dir`.
    pub async fn subdirs(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let full = [self.prefix.as_str(), dir.trim_matches('/')]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let at = (!full.is_empty()).then(|| ObjPath::from(full.as_str()));
        let listed = self
            .call(|s3| {
                let at = at.clone();
                async move { s3.list_with_delimiter(at.as_ref()).await }
            })
            .await
            .map_err(|e| self.err(dir, "LIST", e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }
}

/// How a control object (`.mediaretain/…`: claim marker, rules lease) is written.
#[derive(Clone, Debug)]
pub enum ControlWrite {
    /// Unconditionally.
    Overwrite,
    /// Only if the key is absent (`If-None-Match: *`).
    Create,
    /// Only if the object still has this ETag (`If-Match`).
    Update(String),
}

/// What a conditional write of a control object came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlPut {
    /// Written; the server's ETag of what we wrote.
    Written(String),
    /// Refused by its condition: the key exists, or no longer has the ETag given.
    Refused,
}

impl S3Store {
    /// The body and ETag of control object `key` (relative to the root); `None` if absent.
    pub async fn control_get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        let path = self.path(key)?;
        let got = match self
            .call(|s3| {
                let path = path.clone();
                async move { s3.get(&path).await }
            })
            .await
        {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(key, "GET", e)),
        };
        let etag = got.meta.e_tag.clone().unwrap_or_default();
        let body = got.bytes().await.map_err(|e| self.err(key, "GET", e))?;
        Ok(Some((body.to_vec(), etag)))
    }

    /// The ETag of control object `key` now (a HEAD); `None` if absent.
    pub async fn control_etag(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.head(key).await?.map(|m| m.e_tag.unwrap_or_default()))
    }

    /// Writes control object `key` as `how` says: one single-part PUT (multipart uploads
    /// cannot be conditional).
    pub async fn control_put(
        &self,
        key: &str,
        body: Vec<u8>,
        how: ControlWrite,
    ) -> Result<ControlPut, StoreError> {
        let path = self.path(key)?;
        let mode = match how {
            ControlWrite::Overwrite => PutMode::Overwrite,
            ControlWrite::Create => PutMode::Create,
            ControlWrite::Update(e_tag) => PutMode::Update(object_store::UpdateVersion {
                e_tag: Some(e_tag),
                version: None,
            }),
        };
        // Sent again on the next endpoint only when this one could not be reached: a
        // conditional write that did land then comes back Refused — taken for lost (a
        // claim looked at again, a lease given up), the safe side.
        let payload = PutPayload::from(body);
        match self
            .call(|s3| {
                let (path, payload, mode) = (path.clone(), payload.clone(), mode.clone());
                async move { s3.put_opts(&path, payload, PutOptions::from(mode)).await }
            })
            .await
        {
            Ok(r) => Ok(ControlPut::Written(r.e_tag.unwrap_or_default())),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. })
            // An If-Match of a key that is gone.
            | Err(object_store::Error::NotFound { .. }) => Ok(ControlPut::Refused),
            Err(e) => Err(self.err(key, "PUT", e)),
        }
    }
}

/// `e` and its causes on one line (`error sending request: … Connection refused`).
pub(super) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = std::fmt::Write::write_fmt(&mut text, format_args!(": {c}"));
        cause = c.source();
    }
    text
}

/// The answer to a bucket subresource request ([`S3Store::bucket_subresource`]).
#[derive(Clone, Debug)]
pub struct SubresourceAnswer {
    /// HTTP status.
    pub status: u16,
    /// The body (XML).
    pub body: String,
}

impl S3Store {
    /// Sends `method` to the bucket's subresource `sub` (`?lifecycle`), a call object_store
    /// has none for, through a URL presigned by object_store's own SigV4 with `headers`
    /// (e.g. `Content-MD5`) signed into it. Any HTTP status is an answer (a bucket without
    /// a lifecycle answers 404); a denial (401/403) and a failed request are errors.
    pub async fn bucket_subresource(
        &self,
        method: reqwest::Method,
        sub: &str,
        headers: HeaderMap,
        body: Option<bytes::Bytes>,
        op: &'static str,
    ) -> Result<SubresourceAnswer, StoreError> {
        let failed = |detail: String| {
            StoreError::S3(S3Error::Request {
                store: self.name.clone(),
                key: format!("bucket {}", self.settings.bucket),
                op,
                source: detail.into(),
            })
        };
        let mut opts = SignedUrlOptions::new().with_query([(sub, "")]);
        for (name, value) in &headers {
            opts = opts.with_signed_header(name.clone(), value.clone());
        }
        let url = self.endpoints[self.pick().await]
            .s3
            .signed_url_opts(
                method.clone(),
                &ObjPath::from(""),
                Duration::from_secs(300),
                &opts,
            )
            .await
            .map_err(|e| self.err(&format!("bucket {}", self.settings.bucket), op, e))?;
        let mut req = self.http.request(method, url).headers(headers);
        if let Some(b) = body {
            req = req.body(b);
        }
        // Without the URL: a presigned URL is a credential for as long as it lives.
        let resp = req
            .send()
            .await
            .map_err(|e| failed(with_causes(&e.without_url())))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| failed(with_causes(&e.without_url())))?;
        if status == reqwest::StatusCode::FORBIDDEN || status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(StoreError::S3(S3Error::Denied {
                store: self.name.clone(),
                key: format!("bucket {}", self.settings.bucket),
                op,
                source: format!("HTTP {status}: {body}").into(),
            }));
        }
        Ok(SubresourceAnswer {
            status: status.as_u16(),
            body,
        })
    }
}
