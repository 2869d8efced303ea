//! The engine's error type, at the crate boundary. Each variant knows whether it is the client's
//! fault, so the HTTP layer maps it to a status code in one place.

use candela_models::ModelError;

/// Errors from loading or submitting to the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A request parameter is invalid (HTTP 400).
    #[error("{message}")]
    InvalidParam {
        /// Human-readable message, in vLLM's wording where vLLM has one.
        message: String,
        /// The offending field.
        param: Option<String>,
    },
    /// The prompt (plus requested output) does not fit `max_model_len` (HTTP 400).
    #[error("{message}")]
    TooLong {
        /// Message stating both lengths.
        message: String,
    },
    /// The engine loop has stopped (HTTP 503).
    #[error("the engine is not running")]
    Dead,
    /// Too many requests are waiting (HTTP 503).
    #[error("the engine queue is full ({0} requests waiting)")]
    Overloaded(usize),
    /// Tokenizer or chat template failure.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The engine configuration is unusable.
    #[error("invalid engine configuration: {0}")]
    Config(String),
}

impl EngineError {
    /// True when the request itself was bad (a 4xx, not the server's fault).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            EngineError::InvalidParam { .. }
                | EngineError::TooLong { .. }
                | EngineError::Tokenizer(_)
        )
    }
}

impl From<crate::sampling::ParamError> for EngineError {
    fn from(e: crate::sampling::ParamError) -> Self {
        EngineError::InvalidParam {
            message: e.message,
            param: Some(e.param.to_string()),
        }
    }
}
