//! Checkpoint loading: locating a model (local dir, GGUF file, hub id) and reading its weights.

pub mod gguf;
mod gguf_check;
mod gguf_names;
mod hub;
pub mod progress;
pub mod safetensors;
#[cfg(test)]
mod scratch;
pub mod source;

pub use gguf::GgufWeights;
pub use progress::progress_bar;
pub use safetensors::SafetensorsWeights;
pub use source::{resolve, HubOptions, ModelSource};
