//! The telemetry HTTP server: `/metrics` (Prometheus), `/healthz` (alive), `/readyz` (serving: receivers bound,
//! a non-empty pool, not draining), `/debug/pool` (the pool, weights and ring version as JSON), and the live
//! status page at `/` with its API, `/api/v1/status` (see [`status`](super::status)).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::status::{self, Status};
use crate::metrics::Metrics;

/// Readiness inputs shared by the parts of the process.
#[derive(Debug, Default)]
pub struct Health {
    pub receivers_bound: AtomicBool,
    pub draining: AtomicBool,
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Arc<Health>,
    status: Arc<Status>,
}

/// Binds the telemetry address and serves until `shutdown` fires (and samples the status page's rates until then).
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Arc<Health>,
    status: Arc<Status>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(Arc::clone(&status).sample(shutdown.clone()));
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/debug/pool", get(debug_pool))
        .with_state(AppState { metrics, health, status: Arc::clone(&status) })
        .merge(status::router(status));
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "telemetry server failed");
        }
    }))
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}

async fn ready(State(s): State<AppState>) -> Response {
    let has_pool = s.status.pool().ring.is_some();
    let bound = s.health.receivers_bound.load(Ordering::Relaxed);
    let draining = s.health.draining.load(Ordering::Relaxed);
    match (bound, has_pool, draining) {
        (true, true, false) => (StatusCode::OK, "ready\n").into_response(),
        (_, _, true) => (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response(),
        (false, _, _) => (StatusCode::SERVICE_UNAVAILABLE, "receivers not bound\n").into_response(),
        (_, false, _) => (StatusCode::SERVICE_UNAVAILABLE, "no backends in the pool\n").into_response(),
    }
}

async fn debug_pool(State(s): State<AppState>) -> Response {
    let view = s.status.pool().describe();
    axum::Json(view).into_response()
}
