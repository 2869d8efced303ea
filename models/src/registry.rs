//! The one table of architectures: HF `architectures[0]` → loader.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::layers::LoadOptions;
use crate::weights::WeightSource;
use crate::{arch, CausalLm};

type Loader = fn(&ModelConfig, &dyn WeightSource, &LoadOptions) -> Result<Box<dyn CausalLm>>;

const ARCHITECTURES: &[(&str, Loader)] = &[
    ("LlamaForCausalLM", arch::llama::load),
    ("Qwen2ForCausalLM", arch::qwen2::load),
];

/// Names of all supported architectures.
pub fn supported() -> Vec<&'static str> {
    ARCHITECTURES.iter().map(|a| a.0).collect()
}

/// Builds the model `cfg.architecture` names from `src`.
pub fn load_model(
    cfg: &ModelConfig,
    src: &dyn WeightSource,
    opts: &LoadOptions,
) -> Result<Box<dyn CausalLm>> {
    let loader = ARCHITECTURES
        .iter()
        .find(|a| a.0 == cfg.architecture)
        .map(|a| a.1)
        .ok_or_else(|| ModelError::UnsupportedArchitecture {
            name: cfg.architecture.clone(),
            supported: supported().join(", "),
        })?;
    loader(cfg, src, opts)
}
