//! The daemon side of the control socket.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::*;
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

#[derive(Deserialize, Serialize, Default)]
struct PlanQuery {
    at: Option<i64>,
}

async fn status(State(c): State<Ctl>) -> ApiResult<crate::engine::Status> {
    blocking(&c, |e| e.status()).await
}

async fn plan(State(c): State<Ctl>, Query(q): Query<PlanQuery>) -> ApiResult<crate::policy::Plan> {
    blocking(&c, move |e| e.plan(q.at.unwrap_or_else(|| e.now()))).await
}

async fn gc(State(c): State<Ctl>, Json(r): Json<GcRequest>) -> ApiResult<crate::engine::GcReport> {
    blocking(&c, move |e| e.gc(r.dry_run, &trigger_of(&r.trigger), true)).await
}

async fn ls(
    State(c): State<Ctl>,
    Json(r): Json<LsRequest>,
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

async fn explain(
    State(c): State<Ctl>,
    Json(r): Json<PathRequest>,
) -> ApiResult<crate::engine::Explanation> {
    blocking(&c, move |e| e.explain(&r.path)).await
}

async fn retain(
    State(c): State<Ctl>,
    Json(r): Json<PathsRequest>,
) -> ApiResult<Vec<crate::engine::MarkResult>> {
    blocking(&c, move |e| {
        e.mark(&r.paths, &Mark::Retain(true), &trigger_of(&r.trigger))
    })
    .await
}

async fn unretain(
    State(c): State<Ctl>,
    Json(r): Json<PathsRequest>,
) -> ApiResult<Vec<crate::engine::MarkResult>> {
    blocking(&c, move |e| {
        e.mark(&r.paths, &Mark::Retain(false), &trigger_of(&r.trigger))
    })
    .await
}

async fn tag(
    State(c): State<Ctl>,
    Json(r): Json<TagRequest>,
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
    Json(r): Json<LeaseRequest>,
) -> ApiResult<crate::registry::Lease> {
    blocking(&c, move |e| e.lease(&r.path, r.ttl, &r.holder)).await
}

async fn renew(
    State(c): State<Ctl>,
    Json(r): Json<LeaseIdRequest>,
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
    blocking(&c, move |e| e.renew(r.id, ttl)).await
}

async fn release(State(c): State<Ctl>, Json(r): Json<LeaseIdRequest>) -> ApiResult<Released> {
    let res = blocking(&c, move |e| {
        e.release(r.id).map(|()| Released { released: r.id })
    })
    .await;
    if res.is_ok() {
        c.pass_soon.notify_one();
    }
    res
}

async fn leases(State(c): State<Ctl>) -> ApiResult<Vec<crate::registry::Lease>> {
    blocking(&c, |e| e.leases()).await
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

/// The routes.
pub fn router(ctl: Ctl) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/plan", get(plan))
        .route("/v1/gc", post(gc))
        .route("/v1/ls", post(ls))
        .route("/v1/explain", post(explain))
        .route("/v1/retain", post(retain))
        .route("/v1/unretain", post(unretain))
        .route("/v1/tag", post(tag))
        .route("/v1/lease", post(lease))
        .route("/v1/renew", post(renew))
        .route("/v1/release", post(release))
        .route("/v1/leases", get(leases))
        .route("/v1/scan", post(scan))
        .route("/v1/reload", post(reload))
        .with_state(ctl)
}

/// Binds the socket at `path` with mode 0660. A stale socket is replaced; a live one (a
/// daemon of another state directory configured with the same socket) or anything that is
/// not a socket is refused.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if !md.file_type().is_socket() => {
            return Err(std::io::Error::other(
                "exists and is not a socket; refusing to replace it",
            ));
        }
        Ok(_) if std::os::unix::net::UnixStream::connect(path).is_ok() => {
            return Err(std::io::Error::other("another daemon answers on it"));
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serves until `cancel`.
pub async fn serve(listener: UnixListener, ctl: Ctl, cancel: CancellationToken) {
    let app = router(ctl);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "control socket failed");
    }
}
