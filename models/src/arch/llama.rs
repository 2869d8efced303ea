//! `LlamaForCausalLM` (Llama 2/3.x, SmolLM2): pre-norm decoder, SwiGLU, GQA, RoPE with optional
//! Llama 3 scaling, q/k/v biases only when `attention_bias` is set, tied or untied LM head.

use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::decoder::{Decoder, DecoderSpec};
use crate::layers::linear::Bias;
use crate::layers::LoadOptions;
use crate::weights::WeightSource;
use crate::CausalLm;

/// Builds a Llama model from HF-named weights.
pub fn load(
    cfg: &ModelConfig,
    src: &dyn WeightSource,
    opts: &LoadOptions,
) -> Result<Box<dyn CausalLm>> {
    let qkv_bias = if cfg.attention_bias {
        Bias::Yes
    } else {
        Bias::IfPresent
    };
    Ok(Box::new(Decoder::load(
        cfg,
        src,
        DecoderSpec { qkv_bias },
        opts,
    )?))
}
