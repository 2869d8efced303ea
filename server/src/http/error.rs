//! OpenAI/vLLM error responses (`{"error": {"message", "type", "param", "code"}}`), the mapping
//! from `EngineError` to HTTP status codes, and JSON body parsing whose failures are 400s in that
//! shape (instead of axum's plain-text 415/422).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use candela_engine::EngineError;
use serde::de::DeserializeOwned;
use serde_json::json;

/// An error answered to the client in vLLM's `ErrorResponse` shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// vLLM's error type string (`BadRequestError`, `NotFoundError`, ...).
    pub kind: &'static str,
    /// The offending request field, when known.
    pub param: Option<String>,
}

impl ApiError {
    /// 400 `BadRequestError`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "BadRequestError",
            param: None,
        }
    }

    /// 400 `BadRequestError` naming the field at fault.
    pub fn bad_param(message: impl Into<String>, param: &str) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::bad_request(message)
        }
    }

    /// 404 for a model name that is not served (vLLM's wording).
    pub fn model_not_found(name: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{name}` does not exist."),
            kind: "NotFoundError",
            param: Some("model".to_string()),
        }
    }

    /// 503, typed like vLLM's graceful HTTP errors (the status phrase).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "Service Unavailable",
            param: None,
        }
    }

    /// 500 `InternalServerError`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "InternalServerError",
            param: None,
        }
    }

    /// The JSON body (`{"error": {...}}`), also used for mid-stream SSE error events.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.status.as_u16(),
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status.as_u16())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidParam { message, param } => Self {
                param,
                ..Self::bad_request(message)
            },
            EngineError::TooLong { message } => Self::bad_request(message),
            EngineError::Tokenizer(m) => Self::bad_request(m),
            EngineError::Dead => {
                Self::unavailable("The engine is not running (it stopped after an error).")
            }
            EngineError::Overloaded(n) => {
                Self::unavailable(format!("Request queue full ({n} requests waiting)."))
            }
            other => Self::internal(other.to_string()),
        }
    }
}

/// Parses a request body, turning serde's error into a 400 that names the problem.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; a JSON object is expected.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "Invalid JSON in the request body"
        } else {
            "Invalid request"
        };
        ApiError::bad_request(format!("{what}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_statuses() {
        let e: ApiError = EngineError::InvalidParam {
            message: "bad".into(),
            param: Some("top_p".into()),
        }
        .into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body()["error"]["param"], "top_p");
        assert_eq!(e.body()["error"]["code"], 400);
        let e: ApiError = EngineError::Overloaded(3).into();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let e: ApiError = EngineError::Dead.into();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let e = ApiError::model_not_found("x");
        assert_eq!(
            e.body()["error"]["message"],
            "The model `x` does not exist."
        );
        assert_eq!(e.body()["error"]["type"], "NotFoundError");
    }

    #[test]
    fn malformed_json_is_a_400() {
        let e = parse_json::<serde_json::Value>(b"{nope").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("Invalid JSON"));
        assert!(parse_json::<serde_json::Value>(b"  ").is_err());
    }
}
