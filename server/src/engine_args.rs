//! Engine flags shared by `serve`, `generate` and `bench`, in vLLM's names, and their resolution
//! (with the environment variables vLLM reads) into an `EngineConfig`. Env is read only here.

use candela_engine::{EngineConfig, GenerationConfigMode};
use candela_models::loader::source::HubOptions;
use candela_models::WeightDType;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// `--dtype` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    /// The checkpoint's own precision.
    Auto,
    /// 32-bit float.
    #[value(alias = "float", alias = "fp32")]
    Float32,
    /// bfloat16.
    #[value(alias = "bf16")]
    Bfloat16,
    /// float16.
    #[value(alias = "half", alias = "fp16")]
    Float16,
}

/// Flags that configure the engine.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Weight precision; compute on CPU is f32 (faster than bf16 without AVX512-BF16).
    #[arg(long, value_enum, default_value = "auto")]
    pub dtype: DTypeArg,
    /// Longest sequence (prompt + output); default: the model's max_position_embeddings.
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// Tokens per KV block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// KV cache budget in bytes (default: VLLM_CPU_KVCACHE_SPACE GiB, else 4 GiB).
    #[arg(long)]
    pub kv_cache_memory_bytes: Option<u64>,
    /// Most sequences per step.
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    /// Token budget per step.
    #[arg(long)]
    pub max_num_batched_tokens: Option<usize>,
    /// Reuse KV blocks of shared prefixes (default on).
    #[arg(long, overrides_with = "no_enable_prefix_caching")]
    pub enable_prefix_caching: bool,
    /// Disable prefix caching.
    #[arg(long)]
    pub no_enable_prefix_caching: bool,
    /// Split long prompts across steps (default on).
    #[arg(long, overrides_with = "no_enable_chunked_prefill")]
    pub enable_chunked_prefill: bool,
    /// Disable chunked prefill.
    #[arg(long)]
    pub no_enable_chunked_prefill: bool,
    /// Sampling defaults: `auto` (model's generation_config.json), `vllm`, or a directory.
    #[arg(long, default_value = "auto")]
    pub generation_config: String,
    /// Engine seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Hub cache directory for downloads.
    #[arg(long)]
    pub download_dir: Option<PathBuf>,
    /// Hub revision (branch, tag or commit).
    #[arg(long)]
    pub revision: Option<String>,
}

impl EngineArgs {
    /// Builds the engine config for `model`, reading HF_TOKEN, HF_HOME, HF_HUB_OFFLINE and
    /// VLLM_CPU_KVCACHE_SPACE from the environment.
    pub fn to_config(&self, model: &str) -> anyhow::Result<EngineConfig> {
        let mut cfg = EngineConfig::new(model);
        cfg.dtype = match self.dtype {
            DTypeArg::Auto => WeightDType::Auto,
            DTypeArg::Float32 => WeightDType::F32,
            DTypeArg::Bfloat16 => WeightDType::BF16,
            DTypeArg::Float16 => WeightDType::F16,
        };
        cfg.max_model_len = self.max_model_len;
        cfg.block_size = self.block_size;
        cfg.kv_cache_memory_bytes = match (self.kv_cache_memory_bytes, std::env::var("VLLM_CPU_KVCACHE_SPACE")) {
            (Some(b), _) => b,
            (None, Ok(gib)) if !gib.trim().is_empty() && gib.trim() != "0" => {
                let g: f64 = gib.trim().parse().map_err(|_| anyhow::anyhow!("VLLM_CPU_KVCACHE_SPACE must be a number of GiB, got {gib:?}"))?;
                (g * (1u64 << 30) as f64) as u64
            }
            _ => 4 << 30,
        };
        cfg.max_num_seqs = self.max_num_seqs;
        cfg.max_num_batched_tokens = self.max_num_batched_tokens;
        cfg.enable_prefix_caching = !self.no_enable_prefix_caching;
        cfg.enable_chunked_prefill = !self.no_enable_chunked_prefill;
        cfg.generation_config = match self.generation_config.as_str() {
            "auto" => GenerationConfigMode::Auto,
            "vllm" => GenerationConfigMode::Vllm,
            dir => GenerationConfigMode::Dir(PathBuf::from(dir)),
        };
        cfg.seed = self.seed;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        cfg.hub = HubOptions {
            revision: self.revision.clone(),
            download_dir: self.download_dir.clone(),
            token: env("HF_TOKEN").or_else(|| env("HUGGING_FACE_HUB_TOKEN")),
            offline: env("HF_HUB_OFFLINE").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
            hf_home: env("HF_HOME").map(PathBuf::from),
            ..HubOptions::default()
        };
        Ok(cfg)
    }
}
