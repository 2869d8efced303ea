//! `EngineConfig`: everything the engine needs, validated once; subsystems copy out their part.

use candela_models::loader::source::HubOptions;
use candela_models::{Int4Activations, WeightDType};
use std::path::PathBuf;

/// Default step token budget with chunked prefill (vLLM's CPU server default is 2048). A CPU
/// step costs about the same per token from 256 rows up, so a smaller budget only changes
/// the order in which concurrent prompts finish prefilling: first come, first done instead of
/// all at the end of one long step. Measured with `candela bench serve` (Qwen2.5-0.5B shape,
/// bf16, 256 -> 128 tokens, 2 cores, same session): concurrency 8, TTFT p50 5.06 s at 2048,
/// 3.43 s at 1024, 2.55 s at 512, 1.77 s at 256 with output throughput 63-71 tok/s throughout
/// (noise); concurrency 32, 12.3 s / 10.7 s / 10.3 s at 2048 / 512 / 256, 114 tok/s each. A
/// single 2000-token prompt took 5.5-5.7 s either way. Raised to `max_num_seqs` if that is
/// larger, so every running sequence can decode in each step.
pub const CHUNKED_PREFILL_TOKENS: usize = 256;

/// Where sampling defaults come from (vLLM's `--generation-config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerationConfigMode {
    /// The model's generation_config.json (vLLM's default).
    Auto,
    /// vLLM's built-in defaults, ignoring the model's file.
    Vllm,
    /// A generation_config.json in this directory.
    Dir(PathBuf),
}

/// Engine settings, with the defaults vLLM's CPU backend uses where they apply.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Local directory, `.gguf` file or hub id.
    pub model: String,
    /// Hub access (revision, cache dir, token, offline).
    pub hub: HubOptions,
    /// Weight precision (compute is f32 on CPU).
    pub dtype: WeightDType,
    /// Longest sequence; `None` = the model's `max_position_embeddings`.
    pub max_model_len: Option<usize>,
    /// Tokens per KV block.
    pub block_size: usize,
    /// KV cache budget in bytes.
    pub kv_cache_memory_bytes: u64,
    /// Most sequences running at once.
    pub max_num_seqs: usize,
    /// Token budget per step; `None` = [`CHUNKED_PREFILL_TOKENS`] (at least `max_num_seqs`)
    /// with chunked prefill, vLLM's `max(max_model_len, 2048)` without.
    pub max_num_batched_tokens: Option<usize>,
    /// Reuse KV blocks across requests sharing a prefix.
    pub enable_prefix_caching: bool,
    /// Split long prompts across steps.
    pub enable_chunked_prefill: bool,
    /// Sampling defaults source.
    pub generation_config: GenerationConfigMode,
    /// Seed of the engine's RNG (per-request seeds are drawn from it when a request has none).
    pub seed: u64,
    /// Most requests allowed to wait before `submit` answers `Overloaded`.
    pub max_waiting_requests: usize,
    /// `--quantization` as given (`None` = from the checkpoint's config).
    pub quantization: Option<String>,
    /// `--kv-cache-dtype` (`auto` = the model's dtype: bf16 for a bf16 model, f32 otherwise;
    /// `bfloat16`, `fp8`/`fp8_e4m3`, `fp8_e5m2`).
    pub kv_cache_dtype: String,
    /// Activation precision of int4 (AWQ/GPTQ) projections in decode batches (candela's
    /// `--int4-activations`; the CLI's `auto` resolves to int8 with bfloat16 weights; the
    /// library default is float32).
    pub int4_activations: Int4Activations,
    /// `--tensor-parallel-size`.
    pub tensor_parallel_size: usize,
    /// `--pipeline-parallel-size`.
    pub pipeline_parallel_size: usize,
    /// `--data-parallel-size`.
    pub data_parallel_size: usize,
    /// `--distributed-executor-backend` (`ray`, `mp`, `uni`, `external_launcher`; `None` = auto).
    pub distributed_executor_backend: Option<String>,
    /// `VLLM_HOST_IP`: the address other ranks reach this node at.
    pub host_ip: Option<String>,
    /// `--kv-transfer-config` JSON object (e.g. LMCache PD: `kv_connector`, `kv_role`, ...).
    pub kv_transfer_config: Option<serde_json::Value>,
    /// `--trust-remote-code` (no remote code is ever run; only built-in architectures load).
    pub trust_remote_code: bool,
    /// `--enforce-eager` (no graph capture exists on CPU).
    pub enforce_eager: bool,
    /// `--swap-space` in GiB.
    pub swap_space_gib: f64,
    /// `--gpu-memory-utilization` (fraction of device memory; unused on CPU).
    pub gpu_memory_utilization: f64,
    /// `--enable-lora`.
    pub enable_lora: bool,
    /// `--max-loras`.
    pub max_loras: usize,
    /// `--max-lora-rank`.
    pub max_lora_rank: usize,
    /// `--runner` (`auto`, `generate`, `pooling`, `draft`).
    pub runner: String,
    /// `--convert` (`auto`, `none`, `embed`, `classify`).
    pub convert: String,
    /// `--tokenizer` (`None` = the model's own tokenizer).
    pub tokenizer: Option<String>,
    /// `--load-format` (`auto`, `safetensors`, `gguf`, ...).
    pub load_format: String,
}

impl EngineConfig {
    /// Defaults for `model` (4 GiB KV cache, block 16, prefix caching and chunked prefill on).
    pub fn new(model: impl Into<String>) -> Self {
        EngineConfig {
            model: model.into(),
            hub: HubOptions::default(),
            dtype: WeightDType::Auto,
            max_model_len: None,
            block_size: 16,
            kv_cache_memory_bytes: 4 << 30,
            max_num_seqs: 256,
            max_num_batched_tokens: None,
            enable_prefix_caching: true,
            enable_chunked_prefill: true,
            generation_config: GenerationConfigMode::Auto,
            seed: 0,
            max_waiting_requests: 4096,
            quantization: None,
            kv_cache_dtype: "auto".into(),
            int4_activations: Int4Activations::F32,
            tensor_parallel_size: 1,
            pipeline_parallel_size: 1,
            data_parallel_size: 1,
            distributed_executor_backend: None,
            host_ip: None,
            kv_transfer_config: None,
            trust_remote_code: false,
            enforce_eager: false,
            swap_space_gib: 4.0,
            gpu_memory_utilization: 0.92,
            enable_lora: false,
            max_loras: 1,
            max_lora_rank: 16,
            runner: "auto".into(),
            convert: "auto".into(),
            tokenizer: None,
            load_format: "auto".into(),
        }
    }
}
