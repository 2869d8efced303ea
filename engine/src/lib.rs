//! candela-engine: a stream of requests in, a stream of tokens out.
//!
//! Knows no HTTP. The scheduler and block cache never touch tensors; the runner turns a step plan
//! into a `ForwardBatch` for the model. Tokenization happens on the submitting thread.

pub mod cache;
pub mod chat_template;
pub mod config;
pub mod core;
pub mod detok;
pub mod engine;
pub mod error;
mod load;
pub mod request;
pub mod runner;
pub mod sampler;
pub mod sampling;
pub mod scheduler;
pub mod stats;
pub mod tokenizer;

pub use config::{EngineConfig, GenerationConfigMode};
pub use engine::{Engine, EngineHandle, ModelInfo};
pub use error::EngineError;
pub use request::{
    FinishReason, Prompt, Request, RequestEvent, RequestStream, SeqDelta, StopReason, TokenLogprob,
};
pub use sampling::SamplingParams;
pub use stats::EngineStats;
