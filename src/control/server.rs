//! The daemon side of the control socket.

use std::path::Path;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Extension, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::access::{Caller, Peer, Policy, Role};
use crate::engine::{Engine, EngineError, Mark};
use crate::registry::Filter;

/// A reload request to the daemon loop, answered with the reload's outcome.
pub type ReloadReply = oneshot::Sender<Result<usize, String>>;

/// What the handlers share.
#[derive(Clone)]
pub struct Ctl {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Reloads go through the daemon loop (it owns the watchers).
    pub reload: mpsc::Sender<ReloadReply>,
    /// Wakes the daemon loop for a pass soon (a released lease may free files).
    pub pass_soon: std::sync::Arc<tokio::sync::Notify>,
    /// Who may do what, by the peer's credentials.
    pub policy: Arc<Policy>,
}

/// The kernel's credentials of a connection's peer (None: unreadable, treated as a stranger).
#[derive(Clone, Debug)]
pub struct PeerInfo(pub Option<Peer>);

impl Connected<axum::serve::IncomingStream<'_, UnixListener>> for PeerInfo {
    fn connect_info(stream: axum::serve::IncomingStream<'_, UnixListener>) -> Self {
        PeerInfo(Peer::of(stream.io()).ok())
    }
}

/// What a `socket_group` member may call: the read endpoints and its own leases.
fn member_may(method: &Method, path: &str) -> bool {
    matches!(
        (method.as_str(), path),
        (
            "GET",
            "/v1/status" | "/v1/plan" | "/v1/leases" | "/v1/history" | "/metrics"
        ) | (
            "POST",
            "/v1/ls" | "/v1/explain" | "/v1/dupes" | "/v1/lease" | "/v1/renew" | "/v1/release"
        )
    )
}

fn forbidden(error: String) -> Response {
    ApiError(
        StatusCode::FORBIDDEN,
        ErrorBody {
            error,
            exit: crate::exit::NOPERM,
        },
    )
    .into_response()
}

/// Decides each request by the peer's credentials; the handlers see a [`Caller`].
async fn authorize(
    State(c): State<Ctl>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(peer) = peer.0 else {
        return forbidden("the control socket could not read the peer's credentials".into());
    };
    let caller = match c.policy.role(&peer) {
        Role::Admin => Caller::Admin,
        Role::Member if member_may(req.method(), req.uri().path()) => Caller::Client(peer.uid),
        Role::Member => {
            tracing::info!(action = "refuse_client", uid = peer.uid, pid = peer.pid, method = %req.method(), uri = %req.uri().path(), "socket client refused");
            return forbidden(format!(
                "uid {} may read and hold its own leases; {} {} needs root",
                peer.uid,
                req.method(),
                req.uri().path()
            ));
        }
        Role::Denied => {
            tracing::info!(action = "refuse_client", uid = peer.uid, pid = peer.pid, method = %req.method(), uri = %req.uri().path(), "socket client refused");
            return forbidden(format!(
                "uid {} may not use the control socket: only root, the daemon's user and members of [daemon] socket_group may",
                peer.uid
            ));
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

struct ApiError(StatusCode, ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match e {
            EngineError::BadInput(_) | EngineError::Config(_) | EngineError::Reload(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
            EngineError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            EngineError::StoreAbsent(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(
            status,
            ErrorBody {
                error: e.to_string(),
                exit: e.exit_code(),
            },
        )
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// A JSON request body, whatever its `Content-Type` (`curl -d` sends a form type): a body
/// that is not the request answers `{"error", "exit"}` — 400 for malformed JSON, 422 for
/// a well-formed body that is not the request (a missing or unknown field).
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                ApiError(
                    e.status(),
                    ErrorBody {
                        error: e.body_text(),
                        exit: crate::exit::DATAERR,
                    },
                )
            })?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            let status = if e.is_data() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::BAD_REQUEST
            };
            ApiError(
                status,
                ErrorBody {
                    error: format!("request body: {e}"),
                    exit: crate::exit::DATAERR,
                },
            )
        })
    }
}

/// The framework's own refusals, in the API's shape: no such endpoint, or not this method.
async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        ErrorBody {
            error: format!(
                "no endpoint {method} {}: see docs/api.md for the endpoints",
                uri.path()
            ),
            exit: crate::exit::USAGE,
        },
    )
}

async fn wrong_method(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorBody {
            error: format!("{} does not take {method}", uri.path()),
            exit: crate::exit::USAGE,
        },
    )
}

async fn blocking<T: Send + 'static>(
    ctl: &Ctl,
    f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
) -> ApiResult<T> {
    let engine = ctl.engine.clone();
    match tokio::task::spawn_blocking(move || f(&engine)).await {
        Ok(r) => r.map(Json).map_err(ApiError::from),
        Err(e) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorBody {
                error: format!("internal error: {e}"),
                exit: crate::exit::SOFTWARE,
            },
        )),
    }
}

/// `GET /v1/plan?at=`: what `plan --at` takes ([`crate::units::parse_at`]).
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct PlanQuery {
    at: Option<String>,
}

/// A query string as `T`; one that is not answers 400 `{"error", "exit": 65}`.
struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| bad_request(e.body_text()))
    }
}

/// 400 with `{"error", "exit": 65}`: a request whose values are not understood.
fn bad_request(error: String) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        ErrorBody {
            error,
            exit: crate::exit::DATAERR,
        },
    )
}

async fn status(State(c): State<Ctl>) -> ApiResult<crate::engine::Status> {
    blocking(&c, |e| e.status()).await
}

async fn plan(
    State(c): State<Ctl>,
    Params(q): Params<PlanQuery>,
) -> ApiResult<crate::policy::Plan> {
    let now = c.engine.now();
    let at = match q.at {
        // A "+" left unescaped in a query reads as a space ("?at=+2h", "…08:00:00+01:00").
        Some(at) => crate::units::parse_at(&at, now)
            .or_else(|m| crate::units::parse_at(&at.replace(' ', "+"), now).map_err(|_| m))
            .map_err(|m| bad_request(format!("at: {m}")))?,
        None => now,
    };
    blocking(&c, move |e| e.plan_checked(at)).await
}

async fn gc(State(c): State<Ctl>, Body(r): Body<GcRequest>) -> ApiResult<crate::engine::GcReport> {
    blocking(&c, move |e| e.gc(r.dry_run, &trigger_of(&r.trigger), true)).await
}

async fn ls(
    State(c): State<Ctl>,
    Body(r): Body<LsRequest>,
) -> ApiResult<Vec<crate::registry::Entry>> {
    blocking(&c, move |e| {
        e.ls(
            &Filter {
                class: r.class,
                retained: r.retained,
                tag: r.tag,
                limit: r.limit,
            },
            r.in_use,
        )
    })
    .await
}

async fn dupes(
    State(c): State<Ctl>,
    Body(r): Body<crate::control::DupesRequest>,
) -> ApiResult<crate::engine::Dupes> {
    blocking(&c, move |e| e.dupes(r.class.as_deref())).await
}

async fn explain(
    State(c): State<Ctl>,
    Body(r): Body<PathRequest>,
) -> ApiResult<crate::engine::Explanation> {
    blocking(&c, move |e| e.explain(&r.path)).await
}

async fn retain(
    State(c): State<Ctl>,
    Body(r): Body<PathsRequest>,
) -> ApiResult<Vec<crate::engine::MarkResult>> {
    blocking(&c, move |e| {
        e.mark(&r.paths, &Mark::Retain(true), &trigger_of(&r.trigger))
    })
    .await
}

async fn unretain(
    State(c): State<Ctl>,
    Body(r): Body<PathsRequest>,
) -> ApiResult<Vec<crate::engine::MarkResult>> {
    blocking(&c, move |e| {
        e.mark(&r.paths, &Mark::Retain(false), &trigger_of(&r.trigger))
    })
    .await
}

async fn tag(
    State(c): State<Ctl>,
    Body(r): Body<TagRequest>,
) -> ApiResult<Vec<crate::engine::MarkResult>> {
    blocking(&c, move |e| {
        e.mark(
            &r.paths,
            &Mark::Tags {
                add: r.add,
                remove: r.remove,
            },
            &trigger_of(&r.trigger),
        )
    })
    .await
}

async fn lease(
    State(c): State<Ctl>,
    Extension(caller): Extension<Caller>,
    Body(r): Body<LeaseRequest>,
) -> ApiResult<crate::registry::Lease> {
    blocking(&c, move |e| e.lease(&r.path, r.ttl, &r.holder, caller)).await
}

async fn renew(
    State(c): State<Ctl>,
    Extension(caller): Extension<Caller>,
    Body(r): Body<LeaseIdRequest>,
) -> ApiResult<crate::registry::Lease> {
    let Some(ttl) = r.ttl else {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorBody {
                error: "renew needs a ttl".into(),
                exit: crate::exit::USAGE,
            },
        ));
    };
    blocking(&c, move |e| e.renew(r.id, ttl, caller)).await
}

async fn release(
    State(c): State<Ctl>,
    Extension(caller): Extension<Caller>,
    Body(r): Body<LeaseIdRequest>,
) -> ApiResult<Released> {
    let res = blocking(&c, move |e| {
        e.release(r.id, caller)
            .map(|()| Released { released: r.id })
    })
    .await;
    if res.is_ok() {
        c.pass_soon.notify_one();
    }
    res
}

/// `POST /v1/rm` (root and the daemon's user only: not in [`member_may`]). A body that is
/// not a well-formed request (an unknown field such as a misspelt `dry_run`) answers a
/// JSON error like every other refusal, and changes nothing.
async fn rm(
    State(c): State<Ctl>,
    Body(r): Body<crate::engine::RmRequest>,
) -> ApiResult<crate::engine::RmReport> {
    blocking(&c, move |e| e.rm(&r)).await
}

/// `GET /v1/history?since=1h&class=…`: a page of the audit, newest first (a read: members
/// may call it, like explain).
async fn history(
    State(c): State<Ctl>,
    Params(q): Params<crate::engine::HistoryRequest>,
) -> ApiResult<crate::engine::History> {
    blocking(&c, move |e| e.history(&q)).await
}

async fn leases(State(c): State<Ctl>) -> ApiResult<Vec<crate::registry::Lease>> {
    blocking(&c, |e| e.leases()).await
}

async fn clock_accept(State(c): State<Ctl>) -> ApiResult<Option<crate::clock::ClockJump>> {
    blocking(&c, |e| e.clock_accept()).await
}

async fn scan(State(c): State<Ctl>) -> ApiResult<Vec<crate::scan::ScanStats>> {
    blocking(&c, |e| e.scan_all()).await
}

async fn reload(State(c): State<Ctl>) -> ApiResult<ReloadResponse> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorBody {
                error: "the daemon is shutting down".into(),
                exit: crate::exit::UNAVAILABLE,
            },
        )
    };
    c.reload.send(tx).await.map_err(|_| unavailable())?;
    match rx.await.map_err(|_| unavailable())? {
        Ok(n) => Ok(Json(ReloadResponse { reclassified: n })),
        Err(msg) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorBody {
                error: msg,
                exit: crate::exit::CONFIG,
            },
        )),
    }
}

/// `GET /metrics`: Prometheus's text exposition format (see [`crate::metrics`]).
async fn metrics(State(c): State<Ctl>) -> Response {
    super::metrics::respond(c.engine.clone()).await
}

/// The routes.
pub fn router(ctl: Ctl) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/plan", get(plan))
        .route("/v1/gc", post(gc))
        .route("/v1/ls", post(ls))
        .route("/v1/explain", post(explain))
        .route("/v1/dupes", post(dupes))
        .route("/v1/retain", post(retain))
        .route("/v1/unretain", post(unretain))
        .route("/v1/tag", post(tag))
        .route("/v1/lease", post(lease))
        .route("/v1/renew", post(renew))
        .route("/v1/release", post(release))
        .route("/v1/leases", get(leases))
        .route("/v1/history", get(history))
        .route("/v1/rm", post(rm))
        .route("/v1/scan", post(scan))
        .route("/v1/reload", post(reload))
        .route("/v1/clock/accept", post(clock_accept))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .route_layer(middleware::from_fn_with_state(ctl.clone(), authorize))
        .with_state(ctl)
}

/// Binds the socket at `path` with mode 0660, owned by the daemon's user and `group`
/// (`socket_group`; else the daemon's group). A stale socket is replaced; a live one (a
/// daemon of another state directory configured with the same socket) or anything that is
/// not a socket is refused.
///
/// There is no moment at which the socket is reachable with other permissions: it is bound
/// inside a fresh 0700 directory (through that directory's descriptor), given its mode and
/// group there, and only then renamed into place. A missing parent directory is created
/// 0750; with a `group`, the parent directory — when the daemon's user owns it — is given
/// that group and group search permission, so members can reach the socket.
pub fn bind(path: &Path, group: Option<u32>) -> std::io::Result<UnixListener> {
    use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
    use std::os::unix::fs::DirBuilderExt;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::other("not a socket path"));
    };
    if !dir.as_os_str().is_empty() && !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)?;
    }
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let dfd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if let Some(gid) = group {
        let st = rustix::fs::fstat(&dfd)?;
        if st.st_uid == rustix::process::geteuid().as_raw() {
            if st.st_gid != gid {
                rustix::fs::fchown(&dfd, None, Some(rustix::fs::Gid::from_raw(gid)))?;
            }
            let mode = (st.st_mode & 0o7777) | 0o010;
            if mode != st.st_mode & 0o7777 {
                rustix::fs::fchmod(&dfd, Mode::from_raw_mode(mode))?;
            }
        }
    }
    match rustix::fs::statat(&dfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st)
            if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket =>
        {
            return Err(std::io::Error::other(
                "exists and is not a socket; refusing to replace it",
            ));
        }
        Ok(_) if std::os::unix::net::UnixStream::connect(path).is_ok() => {
            return Err(std::io::Error::other("another daemon answers on it"));
        }
        Ok(_) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    // A private directory beside the socket (same filesystem, so rename works).
    let prefix = format!(".{}.", name.to_string_lossy());
    let tmp_name = format!("{prefix}{}.tmp", std::process::id());
    // Left by a start that died between bind and rename: ours (same name pattern, owned by
    // us), removed without following anything.
    if let Ok(entries) = rustix::fs::Dir::read_from(&dfd) {
        let me = rustix::process::geteuid().as_raw();
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let ours = rustix::fs::statat(&dfd, n.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| st.st_uid == me);
            if n.starts_with(&prefix) && n.ends_with(".tmp") && ours {
                let _ = rustix::fs::unlinkat(&dfd, format!("{n}/sock"), AtFlags::empty());
                let _ = rustix::fs::unlinkat(&dfd, n.as_str(), AtFlags::REMOVEDIR);
            }
        }
    }
    rustix::fs::mkdirat(&dfd, &tmp_name, Mode::from_raw_mode(0o700))?;
    let result = (|| {
        let tfd = rustix::fs::openat(
            &dfd,
            &tmp_name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&tfd)?;
        if st.st_uid != rustix::process::geteuid().as_raw() || st.st_mode & 0o077 != 0 {
            return Err(std::io::Error::other(
                "the private directory for binding was tampered with",
            ));
        }
        use std::os::fd::AsRawFd;
        let at = std::path::PathBuf::from(format!("/proc/self/fd/{}/sock", tfd.as_raw_fd()));
        let l = UnixListener::bind(&at)?;
        rustix::fs::chmodat(&tfd, "sock", Mode::from_raw_mode(0o660), AtFlags::empty())?;
        if let Some(gid) = group {
            rustix::fs::chownat(
                &tfd,
                "sock",
                None,
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        rustix::fs::renameat_with(&tfd, "sock", &dfd, name, RenameFlags::empty())?;
        Ok(l)
    })();
    let _ = rustix::fs::unlinkat(&dfd, format!("{tmp_name}/sock"), AtFlags::empty());
    let _ = rustix::fs::unlinkat(&dfd, &tmp_name, AtFlags::REMOVEDIR);
    result
}

/// Serves until `cancel`: root and the daemon's user without a cap, anyone else (a
/// `socket_group` member) within [`crate::listen::Limits::control`], so no member's idle
/// connections can take the daemon's descriptors or keep root waiting.
pub async fn serve(listener: UnixListener, ctl: Ctl, cancel: CancellationToken) {
    let listen = crate::listen::UnixListen {
        listener,
        peer: |s| PeerInfo(Peer::of(s).ok()),
        exempt: |p: &PeerInfo| {
            p.0.as_ref()
                .is_some_and(|p| p.uid == 0 || p.uid == rustix::process::geteuid().as_raw())
        },
    };
    let limits = crate::listen::Limits::control();
    crate::listen::serve("control", listen, router(ctl), limits, cancel).await;
}
