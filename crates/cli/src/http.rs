//! The daemon's HTTP side (the loop is `bunker_ops::daemon`): `/metrics` (Prometheus text), `/healthz` (the scheduling loop is alive) and
//! `/status` (the health judgement as JSON). It only serves what the loop last published; nothing here
//! touches the repository.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use bunker_ops::daemon::Shared;

/// `/healthz` fails once the loop has not ticked for this long (it ticks several times a second, also
/// while a job runs).
const STALL: Duration = Duration::from_secs(60);

/// Binds `addr` now (so a taken port fails the start) and serves it on a thread of its own.
pub fn serve(addr: SocketAddr, state: Shared) -> Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the HTTP server's runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {addr}; is another process using it? choose another --listen"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .with_state(state);
    std::thread::spawn(move || {
        if let Err(e) = runtime.block_on(async move { axum::serve(listener, app).await }) {
            tracing::error!("the HTTP server stopped: {e}");
        }
    });
    Ok(bound)
}

async fn metrics(State(state): State<Shared>) -> Response {
    let text = state.read().map(|p| p.metrics.clone()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn healthz(State(state): State<Shared>) -> Response {
    let alive = state.read().map(|p| p.heartbeat.elapsed() < STALL).unwrap_or(false);
    if alive {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the scheduling loop is stuck\n").into_response()
    }
}

async fn status(State(state): State<Shared>) -> Response {
    match state.read().ok().and_then(|p| p.status.clone()) {
        Some(json) => axum::Json(json).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no status yet\n").into_response(),
    }
}
