//! Serving HTTP on a TCP port (the hook receiver and `[metrics] listen`) and on the control
//! socket so that no client can hold the daemon's descriptors or memory (on the control
//! socket: no client but root and the daemon's user, who are never capped, and who have
//! no request timeout there): a connection cap per listener; a
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
use std::future::Future;
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
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
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

/// The control socket's cap for peers other than root and the daemon's user (those are
/// never capped): a few consumers (`socket_group` members) leasing and reading.
pub const CONTROL_CONNECTIONS: usize = 64;

/// A request's header must be complete this long after the connection opened, or after
/// the previous answer on a kept-alive connection (hyper runs this one timer for both): a
/// media server or Prometheus sends its whole request at once.
pub const HEADER_READ: Duration = Duration::from_secs(10);

/// A request (its body read and its handler) is answered within this, or gets 408. Longer
/// than the hook handler's own 5 s deadline, so a slow registry still gets its answer.
pub const REQUEST: Duration = Duration::from_secs(15);

/// A connection that moves no byte either way this long, with no request at work, is
/// dropped: a client that stops reading its answers.
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
// The control socket's capped clients live within the reserve.
const _: () = assert!((CONTROL_CONNECTIONS as u64) < FD_RESERVE / 2);

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// See [`HEADER_READ`].
    pub header_read: Duration,
    /// See [`REQUEST`]; None on the control socket, where a pass or `rm -r` may take
    /// minutes.
    pub request: Option<Duration>,
    /// See [`STALL`].
    pub stall: Duration,
}

impl Limits {
    /// The default timeouts with a cap of `max_connections`.
    pub fn with_cap(max_connections: usize) -> Limits {
        Limits {
            max_connections: max_connections.max(1),
            header_read: HEADER_READ,
            request: Some(REQUEST),
            stall: STALL,
        }
    }

    /// The control socket's: [`CONTROL_CONNECTIONS`], no request timeout (a pass or an
    /// `rm -r` may take minutes), the same header and stall timeouts.
    pub fn control() -> Limits {
        Limits {
            request: None,
            ..Limits::with_cap(CONTROL_CONNECTIONS)
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
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
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

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
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

/// A listening socket that [`serve`] accepts from.
pub trait Listen: Send + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// What the handlers see of its peer, as `ConnectInfo<Self::Peer>`.
    type Peer: Clone + std::fmt::Debug + Send + Sync + 'static;
    /// The next connection.
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Io, Self::Peer)>> + Send;
    /// A peer served beyond the cap, never made to give way (root on the control socket).
    fn exempt(&self, _peer: &Self::Peer) -> bool {
        false
    }
}

impl Listen for TcpListener {
    type Io = TcpStream;
    type Peer = SocketAddr;
    fn accept(&self) -> impl Future<Output = std::io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// A Unix socket whose peers are told by `peer` and exempted from the cap by `exempt`.
pub struct UnixListen<P> {
    /// The socket.
    pub listener: UnixListener,
    /// The peer's credentials, read once at accept.
    pub peer: fn(&UnixStream) -> P,
    /// Whether a peer is served beyond the cap.
    pub exempt: fn(&P) -> bool,
}

impl<P: Clone + std::fmt::Debug + Send + Sync + 'static> Listen for UnixListen<P> {
    type Io = UnixStream;
    type Peer = P;
    async fn accept(&self) -> std::io::Result<(UnixStream, P)> {
        let (s, _) = self.listener.accept().await?;
        let p = (self.peer)(&s);
        Ok((s, p))
    }
    fn exempt(&self, peer: &P) -> bool {
        (self.exempt)(peer)
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
/// peer as `ConnectInfo<L::Peer>` (a TCP listener: its `SocketAddr`).
pub async fn serve<L: Listen>(
    name: &'static str,
    listener: L,
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
            _ if listener.exempt(&peer) => None,
            Ok(p) => Some(p),
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
                    p = permits.clone().acquire_owned() => Some(p.expect("the semaphore is never closed")),
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
        // An exempt peer's connection never gives way.
        if permit.is_some() {
            slots.push(slot.clone());
        }
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
async fn connection<S, P>(
    name: &'static str,
    stream: S,
    peer: P,
    router: Router,
    limits: Limits,
    counts: Arc<Counts>,
    cancel: CancellationToken,
    slot: Arc<Slot>,
    _permit: Option<OwnedSemaphorePermit>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    P: Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let activity = slot.activity.clone();
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let busy = slot.clone();
    let tower = TowerToHyperService::new(router);
    let request = limits.request;
    let late = counts.clone();
    let svc_peer = peer.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(svc_peer.clone()));
        let at_work = InFlight::new(&busy);
        let answer = hyper::service::Service::call(&tower, req);
        let (late, who) = (late.clone(), svc_peer.clone());
        async move {
            let _at_work = at_work;
            let Some(limit) = request else {
                return answer.await;
            };
            Ok::<Response, Infallible>(match tokio::time::timeout(limit, answer).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    late.request_timeouts.fetch_add(1, Ordering::Relaxed);
                    debug!(listener = name, peer = ?who, "request not completed within {limit:?}");
                    timed_out(limit)
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
        // A request at work is never cut here (its own timeout bounds it, where there is
        // one): while one is, the stall is looked at again each second.
        let quiet_until =
            (activity.last() + limits.stall).max(Instant::now() + Duration::from_secs(1));
        let wake = drain_by.map_or(quiet_until, |t| t.min(quiet_until));
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        counts.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    debug!(listener = name, peer = ?peer, error = %e, "connection closed");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake) => {
                if drain_by.is_some_and(|t| t <= Instant::now()) {
                    debug!(listener = name, peer = ?peer, "connection closed at shutdown");
                    return;
                }
                if activity.last() + limits.stall <= Instant::now()
                    && slot.in_flight.load(Ordering::Relaxed) == 0
                {
                    counts.stalled.fetch_add(1, Ordering::Relaxed);
                    debug!(listener = name, peer = ?peer, "connection dropped: no byte moved for {:?}", limits.stall);
                    return;
                }
            }
            _ = slot.evict.cancelled() => {
                debug!(listener = name, peer = ?peer, "connection closed to make room for a new one");
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
