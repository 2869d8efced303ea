//! Operational endpoints: `/health` (200 with an empty body once the engine is warm and alive,
//! else 503), `/ping`, `/version`, `/load` and `/metrics`.

use super::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// `GET /health` (and `/ping`).
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.ready() {
        Ok(_) => StatusCode::OK.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// `GET /version`.
pub async fn version() -> Json<serde_json::Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// `GET /load`: requests being served now.
pub async fn load(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({ "server_load": state.in_flight() }))
}

/// `GET /metrics` in the Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let engine = state.engine();
    let stats = engine.as_ref().map(|r| r.handle.stats());
    let text = match (&engine, &stats) {
        (Some(r), Some(s)) => {
            state
                .metrics
                .render(Some((s, &r.baseline, r.handle.info().block_size)))
        }
        _ => state.metrics.render(None),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
