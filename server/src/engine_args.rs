//! Engine flags shared by `generate` and `bench` (clap, vLLM names), and the environment
//! variables vLLM reads (HF_TOKEN, HF_HOME, HF_HUB_OFFLINE, HF_ENDPOINT,
//! VLLM_CPU_KVCACHE_SPACE), resolved from an explicit env map so `serve` parsing stays pure.
//! The process environment is read only here (`process_env`) and in `main`.

use candela_engine::{EngineConfig, GenerationConfigMode};
use candela_models::loader::source::HubOptions;
use candela_models::{Int4Activations, WeightDType};
use clap::{Args, ValueEnum};
use std::collections::HashMap;
use std::path::PathBuf;

/// Environment variables, by name (a snapshot of the process env, or a test's map).
pub type Env = HashMap<String, String>;

/// Default KV cache budget when neither `--kv-cache-memory-bytes` nor VLLM_CPU_KVCACHE_SPACE is set.
pub const DEFAULT_KV_CACHE_BYTES: u64 = 4 << 30;

/// Snapshot of the process environment (variables that are not valid UTF-8 are skipped).
pub fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// A non-empty variable.
pub fn env_var<'a>(env: &'a Env, key: &str) -> Option<&'a str> {
    env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// huggingface_hub's truthy spellings: 1, true, yes, on (any case).
fn env_flag(env: &Env, key: &str) -> bool {
    env_var(env, key).is_some_and(|v| {
        ["1", "true", "yes", "on"]
            .iter()
            .any(|t| v.eq_ignore_ascii_case(t))
    })
}

/// Hub access from the flags and HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), HF_HOME, HF_HUB_OFFLINE
/// and HF_ENDPOINT.
pub fn hub_options(
    env: &Env,
    revision: Option<String>,
    download_dir: Option<PathBuf>,
) -> HubOptions {
    let mut hub = HubOptions {
        revision,
        download_dir,
        ..HubOptions::default()
    };
    hub.token = env_var(env, "HF_TOKEN")
        .or_else(|| env_var(env, "HUGGING_FACE_HUB_TOKEN"))
        .map(str::to_string);
    hub.offline = env_flag(env, "HF_HUB_OFFLINE");
    hub.hf_home = env_var(env, "HF_HOME").map(PathBuf::from);
    hub.endpoint = env_var(env, "HF_ENDPOINT").map(|e| e.trim_end_matches('/').to_string());
    hub
}

/// KV cache budget: the explicit flag, else VLLM_CPU_KVCACHE_SPACE (GiB; 0 or empty = default),
/// else 4 GiB.
pub fn kv_cache_bytes(explicit: Option<u64>, env: &Env) -> Result<u64, String> {
    if let Some(b) = explicit {
        return Ok(b);
    }
    match env_var(env, "VLLM_CPU_KVCACHE_SPACE") {
        None | Some("0") => Ok(DEFAULT_KV_CACHE_BYTES),
        Some(gib) => match gib.parse::<f64>() {
            Ok(g) if g.is_finite() && g > 0.0 => Ok((g * (1u64 << 30) as f64) as u64),
            _ => Err(format!(
                "VLLM_CPU_KVCACHE_SPACE must be a positive number of GiB, got {gib:?}"
            )),
        },
    }
}

/// Maps vLLM's `--dtype` spellings to the weight precision.
pub fn weight_dtype(s: &str) -> Option<WeightDType> {
    Some(match s {
        "auto" => WeightDType::Auto,
        "float" | "float32" | "fp32" => WeightDType::F32,
        "bfloat16" | "bf16" => WeightDType::BF16,
        "half" | "float16" | "fp16" => WeightDType::F16,
        _ => return None,
    })
}

/// Maps `--generation-config` (`auto`, `vllm` or a directory).
pub fn generation_config(s: &str) -> GenerationConfigMode {
    match s {
        "auto" => GenerationConfigMode::Auto,
        "vllm" => GenerationConfigMode::Vllm,
        dir => GenerationConfigMode::Dir(PathBuf::from(dir)),
    }
}

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

/// Flags that configure the engine (for `generate` and `bench`; `serve` has its own table).
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
    /// Token budget per step (default 256 with chunked prefill, else max(max-model-len, 2048)).
    #[arg(long)]
    pub max_num_batched_tokens: Option<usize>,
    /// Reuse KV blocks of shared prefixes (default on).
    #[arg(long, overrides_with = "no_enable_prefix_caching")]
    pub enable_prefix_caching: bool,
    /// Disable prefix caching.
    #[arg(long, overrides_with = "enable_prefix_caching")]
    pub no_enable_prefix_caching: bool,
    /// Split long prompts across steps (default on).
    #[arg(long, overrides_with = "no_enable_chunked_prefill")]
    pub enable_chunked_prefill: bool,
    /// Disable chunked prefill.
    #[arg(long, overrides_with = "enable_chunked_prefill")]
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
    /// Weight quantization method (default: from the checkpoint's quantization_config).
    #[arg(long, short = 'q')]
    pub quantization: Option<String>,
    /// KV cache precision: auto (the model's dtype: bf16 for a bf16 model, else f32), bfloat16,
    /// fp8 (= fp8_e4m3) or fp8_e5m2.
    #[arg(long, default_value = "auto")]
    pub kv_cache_dtype: String,
    /// Activations of int4 (AWQ/GPTQ) projections in decode batches: int8 (quantized per group,
    /// integer dot products), float32 (exact), or auto (int8 with `--dtype bfloat16`, float32
    /// otherwise).
    #[arg(long, value_enum, default_value = "auto")]
    pub int4_activations: Int4ActArg,
}

/// `--int4-activations` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Int4ActArg {
    /// Int8 with `--dtype bfloat16`, else float32 (see [`int4_activations`]).
    Auto,
    /// Per-group int8 activations.
    Int8,
    /// Exact f32 activations.
    Float32,
}

/// Resolves an `--int4-activations` value (`auto`, `int8` or `float32`; anything else is
/// `auto`) against the weight dtype: `auto` is int8 with bfloat16, as vLLM's CPU backend
/// quantizes AWQ/GPTQ activations per token to int8 for bf16 models (`VLLM_CPU_INT4_W4A8`,
/// on by default), and exact float32 otherwise (the precision the user asked for).
pub fn int4_activations(arg: &str, dtype: WeightDType) -> Int4Activations {
    match arg {
        "int8" => Int4Activations::Int8,
        "float32" => Int4Activations::F32,
        _ if dtype == WeightDType::BF16 => Int4Activations::Int8,
        _ => Int4Activations::F32,
    }
}

impl EngineArgs {
    /// Builds the engine config for `model`, reading the environment of this process.
    pub fn to_config(&self, model: &str) -> anyhow::Result<EngineConfig> {
        self.to_config_with_env(model, &process_env())
    }

    /// Builds the engine config for `model` with `env` as the environment.
    pub fn to_config_with_env(&self, model: &str, env: &Env) -> anyhow::Result<EngineConfig> {
        let mut cfg = EngineConfig::new(model);
        cfg.dtype = match self.dtype {
            DTypeArg::Auto => WeightDType::Auto,
            DTypeArg::Float32 => WeightDType::F32,
            DTypeArg::Bfloat16 => WeightDType::BF16,
            DTypeArg::Float16 => WeightDType::F16,
        };
        cfg.max_model_len = self.max_model_len;
        cfg.block_size = self.block_size;
        cfg.kv_cache_memory_bytes =
            kv_cache_bytes(self.kv_cache_memory_bytes, env).map_err(anyhow::Error::msg)?;
        cfg.max_num_seqs = self.max_num_seqs;
        cfg.max_num_batched_tokens = self.max_num_batched_tokens;
        cfg.enable_prefix_caching = !self.no_enable_prefix_caching;
        cfg.enable_chunked_prefill = !self.no_enable_chunked_prefill;
        cfg.generation_config = generation_config(&self.generation_config);
        cfg.seed = self.seed;
        cfg.quantization = self.quantization.clone();
        cfg.kv_cache_dtype = self.kv_cache_dtype.clone();
        cfg.int4_activations = match self.int4_activations {
            Int4ActArg::Auto => int4_activations("auto", cfg.dtype),
            Int4ActArg::Int8 => Int4Activations::Int8,
            Int4ActArg::Float32 => Int4Activations::F32,
        };
        cfg.hub = hub_options(env, self.revision.clone(), self.download_dir.clone());
        cfg.host_ip = env_var(env, "VLLM_HOST_IP").map(str::to_string);
        Ok(cfg)
    }
}
