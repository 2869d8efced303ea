//! `Qwen2ForCausalLM` (Qwen2, Qwen2.5): the Llama layout plus mandatory q/k/v biases; embeddings
//! tied in the small sizes. Sliding-window attention is off in every released Qwen2.5 config.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::layers::decoder::{Decoder, DecoderSpec};
use crate::layers::linear::Bias;
use crate::layers::LoadOptions;
use crate::weights::WeightSource;
use crate::CausalLm;

/// Builds a Qwen2 model from HF-named weights.
pub fn load(
    cfg: &ModelConfig,
    src: &dyn WeightSource,
    opts: &LoadOptions,
) -> Result<Box<dyn CausalLm>> {
    if cfg.use_sliding_window {
        return Err(ModelError::Config(
            "Qwen2 with use_sliding_window=true is not supported".into(),
        ));
    }
    Ok(Box::new(Decoder::load(
        cfg,
        src,
        DecoderSpec {
            qkv_bias: Bias::Yes,
        },
        opts,
    )?))
}
