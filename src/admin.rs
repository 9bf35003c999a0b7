//! The admin HTTP listener: health, readiness and metrics for operators and orchestrators.
//!
//! - `GET /healthz`: 200 and `{"status":"ok","uptime_seconds":…,"connections":…,"rooms":…}` while
//!   the server runs; 503 and `{"status":"failed"}` once the hub has stopped (the server then
//!   shuts down and exits non-zero);
//! - `GET /readyz`: 200 while accepting clients, 503 once shutdown has begun;
//! - `GET /metrics`: the Prometheus text exposition of [`Metrics`].
//!
//! The listener stays up through a graceful shutdown (so probes see the 503) and stops when the
//! server's tasks are done.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::event::Event;
use crate::metrics::Metrics;

/// What the endpoints read.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) started: Instant,
    /// Cleared when shutdown begins.
    pub(crate) ready: Arc<AtomicBool>,
    /// Cleared when the hub has stopped while the server was meant to run.
    pub(crate) healthy: Arc<AtomicBool>,
    /// The pipeline's input, weakly held so it never keeps the pipeline open at shutdown.
    pub(crate) pipeline_input: mpsc::WeakSender<Event>,
}

/// Serves the endpoints on `listener` until `stop`.
pub(crate) async fn serve(listener: TcpListener, state: AdminState, stop: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("admin endpoints on http://{addr}");
    }
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(%error, "admin listener failed");
    }
}

async fn healthz(State(state): State<AdminState>) -> impl IntoResponse {
    let json = [(header::CONTENT_TYPE, "application/json")];
    if !state.healthy.load(Ordering::Relaxed) {
        let body = r#"{"status":"failed"}"#.to_owned();
        return (StatusCode::SERVICE_UNAVAILABLE, json, body);
    }
    let body = format!(
        r#"{{"status":"ok","uptime_seconds":{:.1},"connections":{},"rooms":{}}}"#,
        state.started.elapsed().as_secs_f64(),
        state.metrics.connected_clients.get(),
        state.metrics.rooms.get(),
    );
    (StatusCode::OK, json, body)
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) && state.healthy.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let depth = state
        .pipeline_input
        .upgrade()
        .map_or(0, |input| input.max_capacity() - input.capacity());
    state.metrics.pipeline_queue_depth.set(depth as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ready: bool, healthy: bool) -> AdminState {
        let (tx, _rx) = mpsc::channel(1);
        AdminState {
            metrics: Metrics::new(),
            started: Instant::now(),
            ready: Arc::new(AtomicBool::new(ready)),
            healthy: Arc::new(AtomicBool::new(healthy)),
            pipeline_input: tx.downgrade(),
        }
    }

    #[tokio::test]
    async fn a_stopped_hub_fails_both_probes() {
        let health = healthz(State(state(true, false))).await.into_response();
        assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
        let ready = readyz(State(state(true, false))).await.into_response();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        let health = healthz(State(state(true, true))).await.into_response();
        assert_eq!(health.status(), StatusCode::OK);
    }
}
