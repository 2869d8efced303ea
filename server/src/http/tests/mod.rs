//! In-process tests of the HTTP layer: the router driven through tower's `oneshot` against a real
//! engine loaded from the tiny `qwen2` fixture (statuses, auth, shapes, metrics, disconnects).

mod api;
mod errors;

use super::app::app;
use super::state::{AppState, ServerConfig};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use candela_engine::{EngineConfig, GenerationConfigMode};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

/// The served name used by the tests.
pub const MODEL: &str = "qwen-test";

/// The fixture folder.
pub fn fixture() -> String {
    format!("{}/../../shared/fixtures/qwen2", env!("CARGO_MANIFEST_DIR"))
}

/// Test settings with `MODEL` as the served name.
pub fn config() -> ServerConfig {
    let mut c = ServerConfig::for_model(MODEL);
    c.model_root = fixture();
    c
}

/// A state with a loaded, warmed-up engine (64 MiB KV cache, max_model_len 512).
pub async fn ready_state(cfg: ServerConfig) -> Arc<AppState> {
    let mut ecfg = EngineConfig::new(fixture());
    ecfg.kv_cache_memory_bytes = 64 << 20;
    ecfg.max_model_len = Some(512);
    ecfg.generation_config = GenerationConfigMode::Vllm;
    let ready = super::load_engine(ecfg, cfg.chat_template.clone().as_deref())
        .await
        .expect("load the fixture");
    let state = AppState::new(cfg);
    state.set_ready(ready);
    state
}

/// Sends one request; returns status, headers and the whole body.
pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
    (parts.status, parts.headers, bytes)
}

/// A JSON POST.
pub fn post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// A GET.
pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

/// Parses a JSON body.
pub fn json(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The `data:` payloads of an SSE body (including `[DONE]`).
pub fn sse_events(bytes: &Bytes) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            f.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("bad frame {f:?}"))
                .to_string()
        })
        .collect()
}

/// The app of a ready state.
pub async fn ready_app() -> (Arc<AppState>, Router) {
    let state = ready_state(config()).await;
    let router = app(state.clone());
    (state, router)
}
