//! The webhook receiver: media servers post what they already know — a recording is
//! finished, a stream started or stopped — instead of it being guessed from quiet periods
//! and playlist staleness. Off unless `[hooks] listen` is set. A post is believed only from
//! whoever proves who they are: the token in its URL, or (loopback) a socket the kernel
//! says is root's or an allowed user's ([`peer`]); anything else is a 403, counted, not
//! logged each. A word is still a claim: a finished recording becomes a registry fact only
//! once confirmed (see [`crate::engine::Claim`]). One endpoint per dialect,
//! `/hooks/<dialect>` (then the token, then ZLMediaKit's event name, as path segments),
//! answering in the shape each server expects, fast: nginx-rtmp and SRS hold a publish
//! until `on_publish` is answered, so a well-formed stream event is always acknowledged.

pub mod dialect;
pub mod peer;

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

/// After `window` from the latest claim about file `key`, records it as a fact if it still
/// holds (see [`Engine::confirm_complete`]); else the file waits out its quiet period.
async fn confirm(cx: Ctx, d: Dialect, key: pending::Key, window: Duration) {
    loop {
        let Some((claim, at)) = pending::current(&key) else {
            return;
        };
        if tokio::time::Instant::now() < at + window {
            tokio::time::sleep_until(at + window).await;
            continue;
        }
        let engine = cx.engine.clone();
        let c = claim.clone();
        let shown = claim.shown();
        let result = tokio::task::spawn_blocking(move || engine.confirm_complete(&c)).await;
        match result {
            Ok(Ok(Ok(a))) => {
                info!(action = "complete", dialect = d.name(), path = %shown, class = a.class.as_deref().unwrap_or(""), bytes = a.bytes, "{} says {shown} is complete ({}), confirmed: unchanged for {window:?} and open for writing nowhere{}", d.name(), crate::units::ByteSize(a.bytes), if a.offload { "; offloading it now" } else { "" });
                if a.offload {
                    cx.offload_now.notify_one();
                }
            }
            Ok(Ok(Err(why))) => {
                info!(action = "complete_unconfirmed", dialect = d.name(), path = %shown, "{} said {shown} is complete, but {why}: not marked complete; it waits out its quiet period", d.name());
            }
            Ok(Err(e)) => {
                error!(dialect = d.name(), path = %shown, error = %e, "confirming a hook's claim failed; not marked complete");
            }
            Err(e) => {
                error!(dialect = d.name(), path = %shown, error = %e, "confirming a hook's claim failed; not marked complete");
            }
        }
        if pending::finish(&key, at) {
            return;
        }
    }
}

/// The claims being confirmed, one per file: a newer claim about a file replaces the one
/// waiting and starts its window again, so that a server repeating its word (or a flood of
/// it) costs one wait and one check, and the word checked is the latest.
mod pending {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::Mutex;
    use tokio::time::Instant;

    use crate::engine::Claim;

    /// A file: (store, path).
    pub type Key = (String, PathBuf);

    type Waiting = HashMap<Key, (Claim, Instant)>;

    static CLAIMS: Mutex<Option<Waiting>> = Mutex::new(None);

    fn with<T>(f: impl FnOnce(&mut Waiting) -> T) -> T {
        let mut g = CLAIMS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(g.get_or_insert_with(HashMap::new))
    }

    /// The file of `c`.
    pub fn key(c: &Claim) -> Key {
        (c.store.clone(), c.path.clone())
    }

    /// Files `c` to be confirmed (replacing the claim waiting, if any); true when none was
    /// waiting (a confirmation must be started).
    pub fn offer(c: Claim) -> bool {
        with(|w| w.insert(key(&c), (c, Instant::now())).is_none())
    }

    /// The claim waiting for `key`, and when it came.
    pub fn current(key: &Key) -> Option<(Claim, Instant)> {
        with(|w| w.get(key).cloned())
    }

    /// The claim of `key` that came at `at` was checked: it is done unless a newer one
    /// came meanwhile (false: that one waits its own window).
    pub fn finish(key: &Key, at: Instant) -> bool {
        with(|w| match w.get(key) {
            Some((_, t)) if *t == at => {
                w.remove(key);
                true
            }
            Some(_) => false,
            None => true,
        })
    }
}

/// Refused unauthenticated hooks are counted, not logged each: the first at once, then
/// how many more each minute while they keep coming (a flood must not flood the journal,
/// whose rate limit would then drop the daemon's real errors).
mod refusals {
    use std::sync::Mutex;
    use std::time::Duration;

    /// How often the count is logged while refusals go on.
    pub const EVERY: Duration = Duration::from_secs(60);

    /// Refusals since the last line, and the last one's reason (None: no window open).
    static WINDOW: Mutex<Option<(u64, String)>> = Mutex::new(None);

    fn lock() -> std::sync::MutexGuard<'static, Option<(u64, String)>> {
        WINDOW
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One more refusal for `why`.
    pub fn count(why: &str) {
        let mut w = lock();
        if let Some((n, last)) = w.as_mut() {
            *n += 1;
            *last = why.to_string();
            return;
        }
        *w = Some((0, String::new()));
        drop(w);
        tracing::warn!(
            action = "hook_refused",
            "hook refused: {why}; more refusals are counted and logged once a minute"
        );
        tokio::spawn(async {
            loop {
                tokio::time::sleep(EVERY).await;
                let mut w = lock();
                match w.as_mut() {
                    Some((n, last)) if *n > 0 => {
                        tracing::warn!(
                            action = "hook_refused",
                            refused = *n,
                            "{n} more hooks refused in the last minute (the last: {last})"
                        );
                        *n = 0;
                    }
                    _ => {
                        *w = None;
                        return;
                    }
                }
            }
        });
    }
}

fn reply(dialect: Option<Dialect>, status: StatusCode, error: Option<&str>) -> Response {
    let body = match dialect {
        Some(d) => dialect::answer(d, error),
        None => {
            let exit = match status {
                StatusCode::FORBIDDEN => crate::exit::NOPERM,
                StatusCode::NOT_FOUND => crate::exit::USAGE,
                _ => crate::exit::DATAERR,
            };
            serde_json::json!({ "error": error.unwrap_or(""), "exit": exit })
        }
    };
    let mut r = (status, axum::Json(body)).into_response();
    // nginx-rtmp reads the answer until the connection closes.
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// How a hook proved who posted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// The path carries the token.
    Token,
    /// A loopback peer whose socket belongs to an allowed user.
    Uid(u32),
}

/// Whether `a` and `b` are equal, in the same time whatever the mismatch.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Who posted: the token anywhere in the path (`/hooks/<dialect>/<token>`, or a server
/// that puts it first), else the owner of a loopback peer's socket if `[hooks]` allows it.
/// Returns the path's segments without the token, or why not (no path text in it: a
/// misplaced token must not reach a log line).
async fn authenticate(
    path: &str,
    peer: std::net::SocketAddr,
    hooks: &Hooks,
) -> Result<(Vec<String>, Auth), String> {
    let mut segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    if let Some(t) = hooks.token.as_deref()
        && let Some(i) = segs.iter().position(|s| same(s, t))
    {
        segs.remove(i);
        return Ok((segs, Auth::Token));
    }
    let ip = peer.ip().to_canonical();
    if !ip.is_loopback() {
        return Err(format!(
            "a hook from {peer} without the token: only a loopback peer may post without it"
        ));
    }
    let ours = hooks.listen;
    let uid = tokio::task::spawn_blocking(move || peer::uid_of(peer, ours))
        .await
        .ok()
        .flatten();
    match uid {
        Some(uid) if hooks.allow_uids.contains(&uid) => Ok((segs, Auth::Uid(uid))),
        Some(uid) => Err(format!(
            "a hook from uid {uid} ({peer}) without the token: uid {uid} is not in hooks.allow_users or hooks.allow_uids"
        )),
        None => Err(format!(
            "a hook from {peer} without the token: the owner of its socket is not known"
        )),
    }
}

/// `["hooks", <dialect>, <event>?]` (the token taken out) → (dialect, event), or why not.
/// Unknown segments are never shown: one may be a token posted in the wrong place.
fn route(segs: &[String]) -> Result<(Dialect, Option<String>), (StatusCode, String)> {
    let mut parts = segs.iter().map(String::as_str);
    if parts.next() != Some("hooks") {
        return Err((
            StatusCode::NOT_FOUND,
            "no such endpoint: hooks are posted to /hooks/<dialect> (nginx-rtmp, srs, zlmediakit, owncast)".into(),
        ));
    }
    let name = parts.next().unwrap_or("");
    let Some(d) = Dialect::ALL.into_iter().find(|d| d.name() == name) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!(
                "unknown dialect (the second path segment, {} bytes, not shown): post to /hooks/<dialect>[/<token>], the dialect one of nginx-rtmp, srs, zlmediakit, owncast",
                name.len()
            ),
        ));
    };
    let event = parts.next().filter(|e| !e.is_empty()).map(str::to_string);
    // Only ZLMediaKit names its event in the URL: anything else there is a wrong token.
    if parts.next().is_some() || (event.is_some() && d != Dialect::Zlmediakit) {
        return Err((
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint under /hooks/{}: a wrong token, or too many path segments",
                d.name()
            ),
        ));
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
    // Nothing is read, parsed or logged for a peer that has not said who it is: a local
    // user could forge a recorder's word, and a flood of them must not flood the journal.
    let (segs, auth) = match authenticate(req.uri().path(), peer, &hooks).await {
        Ok(x) => x,
        Err(why) => {
            refusals::count(&why);
            return reply(None, StatusCode::FORBIDDEN, Some(&why));
        }
    };
    let (d, event) = match route(&segs) {
        Ok(x) => x,
        Err((status, why)) => {
            warn!(action = "hook_refused", "hook refused: {why}");
            return reply(None, status, Some(&why));
        }
    };
    debug!(dialect = d.name(), auth = ?auth, "hook authenticated");
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
                let claim = engine.announce_complete(&p, &tags, &source, received)?;
                let writer = engine.claim_writer(&claim);
                Ok::<_, EngineError>((claim, writer))
            });
            match tokio::time::timeout(DEADLINE, job).await {
                Ok(Ok(Ok((claim, writer)))) => {
                    let shown = claim.shown();
                    if let Some(w) = writer {
                        // A server's word about a file still open: it waits out its quiet
                        // period as if no hook came.
                        info!(action = "complete_unconfirmed", dialect = d.name(), path = %shown, "{} says {shown} is complete, but {w}: not marked complete; it waits out its quiet period", d.name());
                    } else {
                        info!(action = "complete_claimed", dialect = d.name(), path = %shown, "{} says {shown} is complete; tagged {}; confirming it stays unchanged for {}", d.name(), claim.tags.join(" "), hooks.confirm);
                        let key = pending::key(&claim);
                        if pending::offer(claim) {
                            tokio::spawn(confirm(cx.clone(), d, key, hooks.confirm.0));
                        } else {
                            debug!(dialect = d.name(), path = %shown, "{shown} was announced again: its confirmation window starts again");
                        }
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
                    warn!(dialect = d.name(), path = %crate::spell::show(&path), "a hook's claim took longer than {DEADLINE:?} to check; it is not marked complete");
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
