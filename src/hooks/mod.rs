//! The webhook receiver: media servers post what they already know — a recording is
//! finished, a stream started or stopped — and it becomes a registry fact at once, instead
//! of being guessed from quiet periods and playlist staleness. Off unless `[hooks] listen`
//! is set; loopback unless a token is set. One endpoint per dialect, `/hooks/<dialect>`
//! (then the token, then ZLMediaKit's event name, as path segments), answering in the shape
//! each server expects, fast: nginx-rtmp and SRS hold a publish until `on_publish` is
//! answered, so a well-formed stream event is always acknowledged.

pub mod dialect;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{Dialect, Hooks};
use crate::engine::{Engine, EngineError, fact_tag};
use dialect::Event;

/// The largest body accepted (real events are well under 4 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// How long an event's registry work may take before the server gets its answer anyway.
const DEADLINE: Duration = Duration::from_secs(5);

/// What the handler shares.
#[derive(Clone)]
struct Ctx {
    engine: Arc<Engine>,
    /// Wakes the offload worker (a finished recording of an offload class).
    offload_now: Arc<tokio::sync::Notify>,
}

/// Binds the receiver's address.
pub async fn bind(hooks: &Hooks) -> std::io::Result<TcpListener> {
    TcpListener::bind(hooks.listen).await
}

/// Serves until `cancel`, within `limits` (see [`crate::listen`]).
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    offload_now: Arc<tokio::sync::Notify>,
    limits: crate::listen::Limits,
    cancel: CancellationToken,
) {
    let app = Router::new().fallback(handle).with_state(Ctx {
        engine,
        offload_now,
    });
    crate::listen::serve("hooks", listener, app, limits, cancel).await;
}

fn reply(dialect: Option<Dialect>, status: StatusCode, error: Option<&str>) -> Response {
    let body = match dialect {
        Some(d) => dialect::answer(d, error),
        None => serde_json::json!({ "error": error.unwrap_or("") }),
    };
    let mut r = (status, axum::Json(body)).into_response();
    // nginx-rtmp reads the answer until the connection closes.
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// `/hooks/<dialect>[/<token>][/<event>]` → (dialect, event), or why not.
fn route(
    path: &str,
    token: Option<&str>,
) -> Result<(Dialect, Option<String>), (StatusCode, String)> {
    let mut parts = path.trim_start_matches('/').split('/');
    // The token never appears in an answer or a log line.
    let shown = match token {
        Some(t) if !t.is_empty() => path.replace(t, "<token>"),
        _ => path.to_string(),
    };
    let path = shown.as_str();
    if parts.next() != Some("hooks") {
        return Err((
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint {path:?}: hooks are posted to /hooks/<dialect> (nginx-rtmp, srs, zlmediakit, owncast)"
            ),
        ));
    }
    let name = parts.next().unwrap_or("");
    let Some(d) = Dialect::ALL.into_iter().find(|d| d.name() == name) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("unknown dialect {name:?}: one of nginx-rtmp, srs, zlmediakit, owncast"),
        ));
    };
    if let Some(t) = token {
        let given = parts.next().unwrap_or("");
        // Same time whatever the mismatch: compare every byte.
        let same = given.len() == t.len()
            && given
                .bytes()
                .zip(t.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0;
        if !same {
            return Err((
                StatusCode::FORBIDDEN,
                "missing or wrong token: post to /hooks/<dialect>/<token>".into(),
            ));
        }
    }
    let event = parts.next().filter(|e| !e.is_empty()).map(str::to_string);
    if parts.next().is_some() {
        return Err((StatusCode::NOT_FOUND, format!("no such endpoint {path:?}")));
    }
    Ok((d, event))
}

async fn handle(
    State(cx): State<Ctx>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    req: Request,
) -> Response {
    let received = cx.engine.now();
    let rt = cx.engine.runtime();
    let Some(hooks) = rt.config.hooks.clone() else {
        return reply(
            None,
            StatusCode::NOT_FOUND,
            Some("the hook receiver is off ([hooks] is not configured)"),
        );
    };
    // Without a token only this machine may post (the config refuses a public address
    // without one; this holds whatever the socket is bound to).
    if hooks.token.is_none() && !peer.ip().is_loopback() {
        warn!(action = "hook_refused", peer = %peer, "hook from {peer} refused: without hooks.token only loopback may post");
        return reply(
            None,
            StatusCode::FORBIDDEN,
            Some("without hooks.token only loopback may post hooks"),
        );
    }
    let (d, event) = match route(req.uri().path(), hooks.token.as_deref()) {
        Ok(x) => x,
        Err((status, why)) => {
            warn!(action = "hook_refused", "hook refused: {why}");
            return reply(None, status, Some(&why));
        }
    };
    let refuse = |status: StatusCode, why: &str| {
        warn!(
            action = "hook_refused",
            dialect = d.name(),
            "{} hook refused: {why}",
            d.name()
        );
        reply(Some(d), status, Some(why))
    };
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY} bytes"),
            );
        }
    };
    // nginx-rtmp's `notify_method get` puts every field in the query string.
    let body = match (d, &method) {
        (Dialect::NginxRtmp, &Method::GET) => axum::body::Bytes::from(query.into_bytes()),
        (_, &Method::POST) => {
            let want = match d {
                Dialect::NginxRtmp => "application/x-www-form-urlencoded",
                _ => "application/json",
            };
            if ctype != want {
                return refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!("Content-Type {ctype:?}: {} posts {want}", d.name()),
                );
            }
            body
        }
        _ => return refuse(StatusCode::METHOD_NOT_ALLOWED, "hooks are POSTed"),
    };
    let server = hooks.servers.get(&d).cloned().unwrap_or_default();
    let ev = match dialect::parse(d, event.as_deref(), &body, &server) {
        Ok(ev) => ev,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, &why),
    };
    match ev {
        Event::Ignored(what) => {
            debug!(dialect = d.name(), event = %what, "hook ignored");
            reply(Some(d), StatusCode::OK, None)
        }
        // A finished segment (SRS on_hls, ZLMediaKit on_record_ts): a playlist and its quiet
        // period already protect it, and a fact per segment would only grow the registry.
        Event::Complete {
            path,
            recording: false,
            ..
        } => {
            debug!(dialect = d.name(), path = %crate::spell::show(&path), "segment complete (noted, nothing recorded)");
            reply(Some(d), StatusCode::OK, None)
        }
        Event::Complete {
            path,
            tags,
            recording,
        } => {
            let tags: Vec<String> = tags.iter().filter_map(|(k, v)| fact_tag(k, v)).collect();
            let source = format!(
                "{} {}",
                d.name(),
                if recording { "recording" } else { "segment" }
            );
            let engine = cx.engine.clone();
            let p = path.clone();
            let job = tokio::task::spawn_blocking(move || {
                engine.announce_complete(&p, &tags, &source, received)
            });
            match tokio::time::timeout(DEADLINE, job).await {
                Ok(Ok(Ok(a))) => {
                    let shown = format!("{}:{}", a.store, crate::spell::show(&a.path));
                    if recording {
                        info!(action = "complete", dialect = d.name(), path = %shown, class = a.class.as_deref().unwrap_or(""), bytes = a.bytes, "{} says {shown} is complete ({}); tagged {}{}", d.name(), crate::units::ByteSize(a.bytes), a.tags.join(" "), if a.offload { "; offloading it now" } else { "" });
                    } else {
                        debug!(action = "complete", dialect = d.name(), path = %shown, "segment complete");
                    }
                    if a.offload {
                        cx.offload_now.notify_one();
                    }
                    reply(Some(d), StatusCode::OK, None)
                }
                Ok(Ok(Err(e @ EngineError::BadInput(_)))) => {
                    refuse(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string())
                }
                Ok(Ok(Err(e))) => {
                    error!(dialect = d.name(), path = %crate::spell::show(&path), error = %e, "recording a hook's fact failed");
                    reply(
                        Some(d),
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Some(&e.to_string()),
                    )
                }
                Ok(Err(e)) => reply(
                    Some(d),
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(&e.to_string()),
                ),
                Err(_) => {
                    warn!(dialect = d.name(), path = %crate::spell::show(&path), "a hook's fact took longer than {DEADLINE:?}; it completes in the background");
                    reply(Some(d), StatusCode::ACCEPTED, None)
                }
            }
        }
        Event::Stream { app, stream, live } => {
            let engine = cx.engine.clone();
            let (a, s) = (app.clone(), stream.clone());
            let job = tokio::task::spawn_blocking(move || engine.stream_changed(d, &a, &s, live));
            match tokio::time::timeout(DEADLINE, job).await {
                Ok(Ok(Ok(n))) => {
                    info!(action = if live { "stream_live" } else { "stream_stopped" }, dialect = d.name(), app = %app, stream = %stream, "{} stream {app}/{stream} {}: {n} playlists", d.name(), if live { "started" } else { "stopped" });
                }
                Ok(Ok(Err(e))) => {
                    warn!(dialect = d.name(), app = %app, stream = %stream, error = %e, "a stream event could not be applied")
                }
                _ => {
                    warn!(dialect = d.name(), app = %app, stream = %stream, "a stream event took longer than {DEADLINE:?}")
                }
            }
            // A publish waits on this answer: never refuse a stream for our own trouble.
            reply(Some(d), StatusCode::OK, None)
        }
    }
}
