//! candela-models: model architectures over a paged KV cache.
//!
//! A model maps `(weights, ForwardBatch, KvCache)` to logits. It owns no KV memory and no request
//! state; the engine decides which tokens run and where their keys and values live.

pub mod arch;
pub mod batch;
pub mod config;
pub mod error;
pub mod kv_cache;
pub mod layers;
pub mod loader;
pub mod registry;
pub mod weights;

pub use batch::{ForwardBatch, SeqInput};
pub use config::ModelConfig;
pub use error::{ModelError, Result};
pub use kv_cache::KvCache;
pub use layers::{DenseActivations, Int4Activations, LoadOptions, WeightDType};
pub use weights::WeightSource;

/// A causal language model over a paged KV cache.
pub trait CausalLm: Send + Sync {
    /// The config the model was built from.
    fn config(&self) -> &ModelConfig;
    /// Bytes of weights one decode step reads (all projections, norms and the LM head; the
    /// embedding lookup reads one row): the numerator of the memory-bandwidth roofline.
    fn weight_bytes_per_token(&self) -> usize;
    /// Runs one step: writes the batch's K/V into `kv` and returns the next-token logits of
    /// `batch.logits_rows`, row-major `[logits_rows.len(), vocab_size]` f32.
    fn forward(&self, batch: &ForwardBatch, kv: &mut KvCache) -> Result<Vec<f32>>;
}
