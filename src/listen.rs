//! Serving HTTP on a TCP port (the hook receiver and `[metrics] listen`) so that no client
//! can hold the daemon's descriptors or memory: a connection cap per listener; a
//! header-read timeout that also bounds a kept-alive connection's idle wait; a request
//! timeout around each handler (body read included); and a stall timeout that drops a
//! connection moving no byte at all (a client that never reads its answers). The caps are
//! derived from the descriptor limit minus [`FD_RESERVE`], kept for the core: the control
//! socket, scans, deletions and the registry.
//!
//! At the cap, a new connection takes the place of the one quiet longest among those with
//! no request in flight (an idle or half-sent one): a flood of idle connections then costs
//! the media server's hooks and Prometheus's scrapes nothing but a moment, instead of
//! waiting behind the flood for the timeouts. Only requests at work hold their place.
//!
//! `axum::serve` has none of these (and no timer for hyper's header timeout), hence this
//! accept loop around hyper's HTTP/1 connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Descriptors never handed to TCP clients: the control socket and its clients, the
/// registry's connections (three descriptors each with WAL), a scan's walk (one per
/// directory level), deletions, `/proc` reads, inotify, S3 connections.
pub const FD_RESERVE: u64 = 256;

/// The hook receiver's default cap. A media server posts a few hooks a second, each on a
/// connection that lives milliseconds (the answer says `Connection: close`); 128 leaves
/// room for bursts (many streams ending at once) with bounded cost.
pub const HOOKS_CONNECTIONS: usize = 128;

/// The metrics port's default cap. Prometheus scrapes every 15 s on one kept-alive
/// connection per server; 16 covers a few servers and a person with curl.
pub const METRICS_CONNECTIONS: usize = 16;

/// A request's header must be complete this long after the connection opened, or after
/// the previous answer on a kept-alive connection (hyper runs this one timer for both): a
/// media server or Prometheus sends its whole request at once.
pub const HEADER_READ: Duration = Duration::from_secs(10);

/// A request (its body read and its handler) is answered within this, or gets 408. Longer
/// than the hook handler's own 5 s deadline, so a slow registry still gets its answer.
pub const REQUEST: Duration = Duration::from_secs(15);

/// A connection that moves no byte either way this long is dropped. Longer than
/// [`REQUEST`], so a handler at work is never cut; catches a client that stops reading.
pub const STALL: Duration = Duration::from_secs(30);

/// The largest read buffer of a connection: headers beyond it are refused (431), so the
/// capped connections hold a few MiB at most.
const MAX_BUF: usize = 64 * 1024;

/// At shutdown, requests in flight get this long to finish (the daemon waits 5 s for all
/// its tasks); idle and half-sent connections are closed at once.
const DRAIN_GRACE: Duration = Duration::from_secs(3);

/// How long `accept` rests after a resource error (EMFILE, ENFILE, ENOBUFS, ENOMEM).
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);

// A handler at work (its deadline: REQUEST, the hook handler's own: 5 s) is never cut by
// the stall timeout; both default caps fit beside the reserve under the usual 1024.
const _: () = assert!(STALL.as_secs() > REQUEST.as_secs() && REQUEST.as_secs() > 5);
const _: () = assert!(HOOKS_CONNECTIONS as u64 + METRICS_CONNECTIONS as u64 + FD_RESERVE <= 1024);

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// See [`HEADER_READ`].
    pub header_read: Duration,
    /// See [`REQUEST`].
    pub request: Duration,
    /// See [`STALL`].
    pub stall: Duration,
}

impl Limits {
    /// The default timeouts with a cap of `max_connections`.
    pub fn with_cap(max_connections: usize) -> Limits {
        Limits {
            max_connections: max_connections.max(1),
            header_read: HEADER_READ,
            request: REQUEST,
            stall: STALL,
        }
    }
}

/// The cap for a listener wanting `wanted` connections, when `listeners` TCP listeners
/// share descriptor limit `nofile`: each gets at most an equal share of what
/// [`FD_RESERVE`] leaves, and at least one.
pub fn cap(wanted: usize, nofile: u64, listeners: usize) -> usize {
    let share = nofile.saturating_sub(FD_RESERVE) / listeners.max(1) as u64;
    (wanted as u64).min(share).max(1) as usize
}

/// When a connection last moved a byte, in milliseconds after `base`.
struct Activity {
    base: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
    fn touch(&self) {
        self.last
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// A stream that notes each read or write that moved bytes.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One connection as its listener sees it, to pick which gives way at the cap.
struct Slot {
    activity: Arc<Activity>,
    /// Requests being handled (their place is never taken).
    in_flight: AtomicU64,
    /// Closes the connection at once.
    evict: CancellationToken,
}

/// Counts a request in flight on its slot while alive.
struct InFlight(Arc<Slot>);

impl InFlight {
    fn new(slot: &Arc<Slot>) -> InFlight {
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(slot.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts of one listener, for the summary after a saturation episode.
#[derive(Default)]
struct Counts {
    /// Connections closed to make room for a new one.
    evicted: AtomicU64,
    /// Connections closed by the header-read timeout (idle or half-sent).
    header_timeouts: AtomicU64,
    /// Connections dropped by the stall timeout.
    stalled: AtomicU64,
    /// Requests answered 408 by the request timeout.
    request_timeouts: AtomicU64,
}

/// Serves `router` on `listener` within `limits` until `cancel`; then stops accepting,
/// lets requests in flight finish and closes idle connections. The handlers see the
/// peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let counts = Arc::new(Counts::default());
    let conns = TaskTracker::new();
    // The open connections (with a few just closed, pruned at the cap).
    let mut slots: Vec<Arc<Slot>> = Vec::new();
    let mut saturated: Option<Instant> = None;
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        // One connection at a time is accepted before it has a place: at most cap + 1
        // descriptors, and beyond that connections wait in the kernel's backlog.
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    accept_failed(name, &e, &mut last_accept_warning).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if saturated.is_none() {
                    saturated = Some(Instant::now());
                    warn!(
                        listener = name,
                        cap = limits.max_connections,
                        "{name}: {} connections open, its cap; idle ones give way to new ones, and are closed after {:?} anyway",
                        limits.max_connections,
                        limits.header_read
                    );
                }
                slots.retain(|s| Arc::strong_count(s) > 1);
                if let Some(i) = slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.in_flight.load(Ordering::Relaxed) == 0)
                    .min_by_key(|(_, s)| s.activity.last())
                    .map(|(i, _)| i)
                {
                    slots.swap_remove(i).evict.cancel();
                    counts.evicted.fetch_add(1, Ordering::Relaxed);
                }
                // Every place busy with a request: wait for one to end (bounded by the
                // request timeout).
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = cancel.cancelled() => break,
                }
            }
        };
        // The episode ends once half the cap is free again: one line for it, not one per
        // connection.
        if let Some(since) = saturated
            && permits.available_permits() + 1 >= limits.max_connections.div_ceil(2)
        {
            saturated = None;
            info!(
                listener = name,
                seconds = since.elapsed().as_secs(),
                evicted = counts.evicted.swap(0, Ordering::Relaxed),
                header_timeouts = counts.header_timeouts.swap(0, Ordering::Relaxed),
                stalled = counts.stalled.swap(0, Ordering::Relaxed),
                request_timeouts = counts.request_timeouts.swap(0, Ordering::Relaxed),
                "{name}: back under its connection cap after {:?}",
                since.elapsed()
            );
        }
        let slot = Arc::new(Slot {
            activity: Arc::new(Activity::new()),
            in_flight: AtomicU64::new(0),
            evict: CancellationToken::new(),
        });
        if slots.len() >= 2 * limits.max_connections {
            slots.retain(|s| Arc::strong_count(s) > 1);
        }
        slots.push(slot.clone());
        conns.spawn(connection(
            name,
            stream,
            peer,
            router.clone(),
            limits,
            counts.clone(),
            cancel.clone(),
            slot,
            permit,
        ));
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

/// An accept error: a connection that went away before we took it is nothing; running out
/// of descriptors or memory is said at most once a minute, and accepting rests a moment
/// instead of spinning.
async fn accept_failed(name: &str, e: &std::io::Error, last: &mut Option<Instant>) {
    let resource = matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    );
    if !resource {
        debug!(listener = name, error = %e, "accept failed");
        return;
    }
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        warn!(listener = name, error = %e, "{name}: cannot accept a connection: {e}; pausing");
    }
    tokio::time::sleep(ACCEPT_PAUSE).await;
}

/// Serves one connection, holding its `permit` until it is closed.
#[allow(clippy::too_many_arguments)]
async fn connection(
    name: &'static str,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    counts: Arc<Counts>,
    cancel: CancellationToken,
    slot: Arc<Slot>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = slot.activity.clone();
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let busy = slot.clone();
    let tower = TowerToHyperService::new(router);
    let request = limits.request;
    let late = counts.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let at_work = InFlight::new(&busy);
        let answer = hyper::service::Service::call(&tower, req);
        let late = late.clone();
        async move {
            let _at_work = at_work;
            Ok::<Response, Infallible>(match tokio::time::timeout(request, answer).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    late.request_timeouts.fetch_add(1, Ordering::Relaxed);
                    debug!(listener = name, peer = %peer, "request not completed within {request:?}");
                    timed_out(request)
                }
            })
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(MAX_BUF);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut drain_by: Option<Instant> = None;
    loop {
        let quiet_until = activity.last() + limits.stall;
        let wake = drain_by.map_or(quiet_until, |t| t.min(quiet_until));
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        counts.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    debug!(listener = name, peer = %peer, error = %e, "connection closed");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake) => {
                if drain_by.is_some_and(|t| t <= Instant::now()) {
                    debug!(listener = name, peer = %peer, "connection closed at shutdown");
                    return;
                }
                if activity.last() + limits.stall <= Instant::now() {
                    counts.stalled.fetch_add(1, Ordering::Relaxed);
                    debug!(listener = name, peer = %peer, "connection dropped: no byte moved for {:?}", limits.stall);
                    return;
                }
            }
            _ = slot.evict.cancelled() => {
                debug!(listener = name, peer = %peer, "connection closed to make room for a new one");
                return;
            }
            // Answers in flight are finished (within DRAIN_GRACE), then the connection
            // closes; an idle one closes at once.
            _ = cancel.cancelled(), if drain_by.is_none() => {
                drain_by = Some(Instant::now() + DRAIN_GRACE);
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The answer to a request that did not complete in time.
fn timed_out(after: Duration) -> Response {
    let body = serde_json::json!({
        "error": format!("the request was not completed within {after:?}"),
        "exit": crate::exit::TEMPFAIL,
    });
    let mut r = (StatusCode::REQUEST_TIMEOUT, axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_the_reserve_to_the_core() {
        // A raised limit: the defaults.
        assert_eq!(cap(HOOKS_CONNECTIONS, 65536, 2), HOOKS_CONNECTIONS);
        assert_eq!(cap(METRICS_CONNECTIONS, 65536, 2), METRICS_CONNECTIONS);
        // The usual soft limit of 1024 still fits both defaults beside the reserve.
        assert_eq!(cap(HOOKS_CONNECTIONS, 1024, 2), HOOKS_CONNECTIONS);
        // A tight limit: equal shares of what the reserve leaves.
        assert_eq!(cap(HOOKS_CONNECTIONS, 356, 2), 50);
        assert_eq!(cap(HOOKS_CONNECTIONS, 356, 1), 100);
        // Below the reserve: one connection at a time, never zero (that would hang).
        assert_eq!(cap(HOOKS_CONNECTIONS, 100, 2), 1);
    }
}
