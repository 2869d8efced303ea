//! The router: every endpoint, the auth and request-id middleware, the body limit, and
//! FastAPI-style JSON 404/405 answers for unknown paths and methods.

use super::auth::require_key;
use super::error::ApiError;
use super::health::{health, load, metrics, version};
use super::models::list_models;
use super::openai::chat::chat_completions;
use super::openai::completions::completions;
use super::state::{random_id, AppState};
use super::tokenize::{detokenize, tokenize};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// Largest request body accepted.
const BODY_LIMIT: usize = 64 << 20;

/// The application with all routes, for `axum::serve` or tower's `oneshot` in tests.
pub fn app(state: Arc<AppState>) -> Router {
    let echo_ids = state.cfg.enable_request_id_headers;
    let router = Router::new()
        .route("/health", get(health))
        .route("/ping", get(health).post(health))
        .route("/version", get(version))
        .route("/load", get(load))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/invocations", post(invocations))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(state.clone(), require_key))
        .with_state(state);
    if echo_ids {
        router.layer(from_fn(echo_request_id))
    } else {
        router
    }
}

/// `POST /invocations` (SageMaker): chat when the body has `messages`, else completions.
async fn invocations(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v: serde_json::Value = super::error::parse_json(&body)?;
    if v.get("messages").is_some() {
        chat_completions(state, headers, body).await
    } else if v.get("prompt").is_some() {
        completions(state, headers, body).await
    } else {
        Err(ApiError::bad_request(
            "Cannot tell the request type: expected `messages` or `prompt`.",
        ))
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"detail": "Method Not Allowed"})),
    )
        .into_response()
}

/// `--enable-request-id-headers`: answer with the request's `X-Request-Id` (or a new one).
async fn echo_request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .cloned()
        .or_else(|| HeaderValue::from_str(&random_id()).ok());
    let mut resp = next.run(req).await;
    if let Some(id) = id {
        resp.headers_mut().insert("x-request-id", id);
    }
    resp
}
