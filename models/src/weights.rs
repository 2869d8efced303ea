//! Where weights come from: a name-addressed source of tensors in HF naming, whatever the file format.

use crate::error::Result;
use candle_core::Tensor;

/// A checkpoint seen as HF-named tensors (`model.layers.0.self_attn.q_proj.weight`, ...).
///
/// Implementations: safetensors directories (memory-mapped) and GGUF files (dequantized, renamed
/// and with q/k rows un-permuted to the HF rotary layout).
pub trait WeightSource: Send + Sync {
    /// The tensor called `name`, in its stored dtype (GGUF quantized blocks come back as f32), on CPU.
    fn get(&self, name: &str) -> Result<Tensor>;
    /// Whether the checkpoint holds a tensor called `name`.
    fn contains(&self, name: &str) -> bool;
}
