//! Failover between the endpoints of one cluster: one client per endpoint; a request that
//! cannot reach its endpoint (refused, reset, timed out — not an answer, even a 5xx) marks
//! it dead with a doubling backoff and goes to the next; a dead endpoint must accept a TCP
//! connection before it is used again; a listing resumes after its last key elsewhere.

use super::*;

/// The first time an unreachable endpoint is left alone.
pub(super) const DEAD_MIN: Duration = Duration::from_secs(1);

/// The longest time an unreachable endpoint is left alone before it is tried again.
pub(super) const DEAD_MAX: Duration = Duration::from_secs(60);

/// One endpoint of the store's cluster, its client and whether it answers.
#[derive(Debug)]
pub(super) struct Endpoint {
    /// The URL, as configured.
    pub(super) url: String,
    /// `host:port`, for the TCP connect that tells whether a dead endpoint is back.
    pub(super) addr: String,
    pub(super) s3: Arc<AmazonS3>,
    pub(super) health: std::sync::Mutex<Health>,
}

/// An endpoint's recent failures.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// Marked dead until then (monotonic); `None`: alive.
    dead_until: Option<tokio::time::Instant>,
    /// The next time it is marked dead, for this long.
    backoff: Duration,
}

impl Endpoint {
    pub(super) fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        // A poisoned lock holds only timestamps: still meaningful.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// True when `e` (or an error it wraps) is a failure to reach the endpoint at all: the
/// connection was refused or reset, or an attempt timed out. Such a request may go to
/// another endpoint of the cluster; any answer from a server (even 5xx) is not one.
pub(super) fn is_unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    use std::io::ErrorKind as K;
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<HttpError>()
            && matches!(h.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout)
        {
            return true;
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && (r.is_connect() || r.is_timeout())
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::TimedOut
                    | K::HostUnreachable
                    | K::NetworkUnreachable
            )
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The state of one listing that moves to another endpoint when its own fails.
pub(super) struct Listing<'a> {
    store: &'a S3Store,
    dir: Option<ObjPath>,
    /// The last location yielded (or the starting offset): a listing resumed elsewhere
    /// starts after it.
    after: Option<ObjPath>,
    current: Option<(
        usize,
        futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>>,
    )>,
    /// Endpoints that failed in a row.
    failures: usize,
}

impl S3Store {
    /// The endpoints and whether each is reachable, in configured order: one marked dead is
    /// not until it answered again (a backoff that ran out is not an answer: the next
    /// request tries it first), so the status object and the metric never call an endpoint
    /// back before it is.
    pub fn endpoint_health(&self) -> Vec<(String, bool)> {
        self.endpoints
            .iter()
            .map(|e| (e.url.clone(), e.health().dead_until.is_none()))
            .collect()
    }

    /// The endpoint the next request goes to: the first in configured order not marked
    /// dead. A dead one whose backoff ran out must first accept a TCP connection (a few
    /// concurrent callers may each try it); when every endpoint is dead, the one that
    /// comes back soonest.
    pub(super) async fn pick(&self) -> usize {
        if self.endpoints.len() == 1 {
            return 0;
        }
        let connect = self
            .settings
            .retry
            .connect_timeout
            .min(Duration::from_secs(2));
        for (i, ep) in self.endpoints.iter().enumerate() {
            let now = tokio::time::Instant::now();
            let due = {
                let mut h = ep.health();
                match h.dead_until {
                    None => return i,
                    Some(t) if t > now => false,
                    Some(_) => {
                        // Others skip it while this caller looks.
                        h.dead_until = Some(now + connect);
                        true
                    }
                }
            };
            if !due {
                continue;
            }
            let back = tokio::time::timeout(connect, tokio::net::TcpStream::connect(&ep.addr))
                .await
                .is_ok_and(|c| c.is_ok());
            if back {
                self.mark_alive(i);
                return i;
            }
            let mut h = ep.health();
            h.backoff = (h.backoff * 2).clamp(DEAD_MIN, DEAD_MAX);
            h.dead_until = Some(tokio::time::Instant::now() + h.backoff);
        }
        self.endpoints
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.health().dead_until)
            .map_or(0, |(i, _)| i)
    }

    /// Marks endpoint `i` dead for its next backoff after `e`.
    pub(super) fn mark_dead(&self, i: usize, e: &dyn std::fmt::Display) {
        if self.endpoints.len() == 1 {
            return;
        }
        let ep = &self.endpoints[i];
        let mut h = ep.health();
        let first = h.dead_until.is_none();
        h.backoff = if first {
            DEAD_MIN
        } else {
            (h.backoff * 2).clamp(DEAD_MIN, DEAD_MAX)
        };
        h.dead_until = Some(tokio::time::Instant::now() + h.backoff);
        let backoff = h.backoff;
        drop(h);
        if first {
            tracing::warn!(store = %self.name, endpoint = %ep.url, ?backoff, error = %e, "endpoint unreachable: requests go to the next endpoint");
        }
    }

    /// Whether an endpoint other than `i` may be tried now (not marked dead, or its time
    /// is up): when none may, a request that failed on `i` fails as it would with one
    /// endpoint, instead of spending its retries on endpoints known to be down — a cluster
    /// entirely down costs one request's deadline, not one per endpoint.
    pub(super) fn another_to_try(&self, i: usize) -> bool {
        let now = tokio::time::Instant::now();
        self.endpoints
            .iter()
            .enumerate()
            .any(|(j, e)| j != i && e.health().dead_until.is_none_or(|t| t <= now))
    }

    /// Marks endpoint `i` alive (it answered).
    pub(super) fn mark_alive(&self, i: usize) {
        let ep = &self.endpoints[i];
        let mut h = ep.health();
        if h.dead_until.take().is_some() {
            h.backoff = Duration::ZERO;
            drop(h);
            tracing::info!(store = %self.name, endpoint = %ep.url, "endpoint reachable again");
        }
    }

    /// Runs request `f` on the client of a live endpoint; when it cannot reach its
    /// endpoint, marks that one dead and runs it again on the next, up to once per
    /// endpoint. Only requests that are safe to send twice go through here (each is
    /// verified afterwards as before).
    pub(super) async fn call<T, F, Fut>(&self, f: F) -> object_store::Result<T>
    where
        F: Fn(Arc<AmazonS3>) -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut failures = 0;
        loop {
            let i = self.pick().await;
            match f(self.endpoints[i].s3.clone()).await {
                Err(e) if is_unreachable(&e) => {
                    self.mark_dead(i, &e);
                    failures += 1;
                    if failures >= self.endpoints.len() || !self.another_to_try(i) {
                        return Err(e);
                    }
                }
                r => {
                    self.mark_alive(i);
                    return r;
                }
            }
        }
    }

    /// A listing of `dir` (the bucket when `None`) after `offset`, in key order; one that
    /// cannot reach its endpoint goes on from its last key on the next endpoint.
    pub(super) fn list_failover(
        &self,
        dir: Option<ObjPath>,
        offset: Option<ObjPath>,
    ) -> impl Stream<Item = object_store::Result<ObjectMeta>> + Send + '_ {
        let state = Listing {
            store: self,
            dir,
            after: offset,
            current: None,
            failures: 0,
        };
        futures::stream::unfold(Some(state), |state| async move {
            let mut st = state?;
            loop {
                let (i, stream) = match &mut st.current {
                    Some((i, s)) => (*i, s),
                    None => {
                        let i = st.store.pick().await;
                        let s3 = &st.store.endpoints[i].s3;
                        let s = match &st.after {
                            Some(a) => s3.list_with_offset(st.dir.as_ref(), a),
                            None => s3.list(st.dir.as_ref()),
                        };
                        st.current = Some((i, s));
                        continue;
                    }
                };
                match stream.next().await {
                    None => {
                        st.store.mark_alive(i);
                        return None;
                    }
                    Some(Ok(m)) => {
                        st.store.mark_alive(i);
                        st.failures = 0;
                        st.after = Some(m.location.clone());
                        return Some((Ok(m), Some(st)));
                    }
                    Some(Err(e)) if is_unreachable(&e) => {
                        st.store.mark_dead(i, &e);
                        st.failures += 1;
                        st.current = None;
                        if st.failures >= st.store.endpoints.len() || !st.store.another_to_try(i) {
                            return Some((Err(e), None));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), None)),
                }
            }
        })
    }

    /// Sends `method` to a presigned URL for `path` with `query`, on a live endpoint
    /// (moving on to the next when one cannot be reached).
    pub(super) async fn signed_send(
        &self,
        method: reqwest::Method,
        path: &ObjPath,
        query: &[(&str, &str)],
    ) -> Result<reqwest::Response, String> {
        let mut failures = 0;
        loop {
            let i = self.pick().await;
            let opts = SignedUrlOptions::new().with_query(query.iter().copied());
            let url = self.endpoints[i]
                .s3
                .signed_url_opts(method.clone(), path, Duration::from_secs(300), &opts)
                .await
                .map_err(|e| e.to_string())?;
            match self.http.request(method.clone(), url).send().await {
                Err(e) if is_unreachable(&e) => {
                    self.mark_dead(i, &e);
                    failures += 1;
                    if failures >= self.endpoints.len() || !self.another_to_try(i) {
                        return Err(e.to_string());
                    }
                }
                Err(e) => return Err(e.to_string()),
                Ok(r) => {
                    self.mark_alive(i);
                    return Ok(r);
                }
            }
        }
    }
}
