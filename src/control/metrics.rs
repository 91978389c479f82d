//! `GET /metrics`, served: on the control socket (a route of [`super::server`]) and, with
//! `[metrics] listen`, on its own TCP listener for Prometheus. The figures themselves — the
//! families, their labels, the counters the engine bumps — are [`crate::metrics`], below the
//! engine; this is the door to them, beside the other listeners.

/// Serves `GET /metrics` on `listener` until `cancel` (`[metrics] listen`), within `limits`
/// (see [`crate::listen`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: std::sync::Arc<crate::engine::Engine>,
    limits: crate::listen::Limits,
    cancel: tokio_util::sync::CancellationToken,
) {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(handler))
        .with_state(engine);
    crate::listen::serve("metrics", listener, app, limits, cancel).await;
}

/// `GET /metrics`: the text exposition format, or 500 with the reason.
pub async fn handler(
    axum::extract::State(engine): axum::extract::State<std::sync::Arc<crate::engine::Engine>>,
) -> axum::response::Response {
    respond(engine).await
}

/// Renders the metrics of `engine` as an HTTP response.
pub async fn respond(engine: std::sync::Arc<crate::engine::Engine>) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let e = engine.clone();
    let answer = tokio::task::spawn_blocking(move || e.metrics_text()).await;
    if let Ok(Ok((_, true))) = &answer
        && engine.metrics().start_totals_read()
    {
        // Stale class totals: this scrape had the old ones; the next gets fresh ones.
        tokio::task::spawn_blocking(move || {
            engine.refresh_totals();
            engine.metrics().end_totals_read();
        });
    }
    match answer.map(|r| r.map(|(body, _)| body)) {
        Ok(Ok(body)) => {
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}\n"),
        )
            .into_response(),
    }
}
