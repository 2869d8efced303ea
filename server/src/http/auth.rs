//! API-key authentication as vLLM does it: with keys configured, paths under `/v1`, `/v2`,
//! `/inference` and `/cohere` need `Authorization: Bearer <key>` (OPTIONS exempt), else
//! `401 {"error": "Unauthorized"}`. Keys are compared in constant time over SHA-256 digests.

use super::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

const PROTECTED: [&str; 4] = ["/v1", "/v2", "/inference", "/cohere"];

fn is_protected(path: &str) -> bool {
    PROTECTED
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// True when `header` is `Bearer <one of keys>`.
pub fn authorized(header: Option<&str>, keys: &[String]) -> bool {
    let given = Sha256::digest(header.unwrap_or("").as_bytes());
    let mut ok = subtle::Choice::from(0u8);
    for k in keys {
        let want = Sha256::digest(format!("Bearer {k}").as_bytes());
        ok |= given.as_slice().ct_eq(want.as_slice());
    }
    bool::from(ok)
}

/// The middleware.
pub async fn require_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let keys = &state.cfg.api_keys;
    if keys.is_empty() || req.method() == Method::OPTIONS || !is_protected(req.uri().path()) {
        return next.run(req).await;
    }
    let h = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if authorized(h, keys) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"error": "Unauthorized"}"#,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_paths() {
        let keys = vec!["a".to_string(), "bb".to_string()];
        assert!(authorized(Some("Bearer a"), &keys));
        assert!(authorized(Some("Bearer bb"), &keys));
        assert!(!authorized(Some("Bearer b"), &keys));
        assert!(!authorized(Some("a"), &keys));
        assert!(!authorized(None, &keys));
        assert!(is_protected("/v1/models") && is_protected("/v1"));
        assert!(!is_protected("/v1x") && !is_protected("/health") && !is_protected("/tokenize"));
    }
}
