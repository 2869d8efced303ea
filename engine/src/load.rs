//! Building an engine from an `EngineConfig`: locate the model, load weights and tokenizer, read
//! sampling defaults, size the KV pool from the memory budget, and wire the scheduler.

use crate::config::{EngineConfig, GenerationConfigMode};
use crate::core::EngineCore;
use crate::engine::ModelInfo;
use crate::error::EngineError;
use crate::runner::ModelRunner;
use crate::sampling::{GenerationDefaults, SamplingParams};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::tokenizer::Tokenizer;
use candela_kernels::KvLayout;
use candela_models::kv_cache::KvCacheDType;
use candela_models::layers::QuantConfig;
use candela_models::loader::source::{resolve, ModelSource};
use candela_models::loader::{GgufWeights, SafetensorsWeights};
use candela_models::registry::load_model;
use candela_models::{KvCache, LoadOptions, ModelConfig, WeightDType, WeightSource};
use std::path::PathBuf;
use std::sync::Arc;

/// Everything `Engine::load` produces.
pub(crate) struct Loaded {
    pub core: EngineCore,
    pub tokenizer: Arc<Tokenizer>,
    pub info: ModelInfo,
}

fn tok_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer(e.to_string())
}

/// Loads the model, tokenizer and sampling defaults of `cfg.model`.
pub(crate) fn load(cfg: &EngineConfig) -> Result<Loaded, EngineError> {
    let source = resolve(&cfg.model, &cfg.hub)?;
    let (mcfg, weights, tokenizer, model_dir): (
        ModelConfig,
        Box<dyn WeightSource>,
        Tokenizer,
        Option<PathBuf>,
    ) = match &source {
        ModelSource::Dir(dir) => {
            let mcfg = ModelConfig::from_file(&dir.join("config.json"))?;
            let w = SafetensorsWeights::open(dir)?;
            (
                mcfg,
                Box::new(w),
                Tokenizer::from_dir(dir).map_err(tok_err)?,
                Some(dir.clone()),
            )
        }
        ModelSource::Gguf(path) => {
            let w = GgufWeights::open(path)?;
            let mcfg = w.config()?;
            (
                mcfg,
                Box::new(w),
                Tokenizer::from_gguf(path).map_err(tok_err)?,
                None,
            )
        }
    };
    let max_model_len = match cfg.max_model_len {
        Some(m) if m > mcfg.max_position_embeddings => {
            return Err(EngineError::Config(format!(
                "User-specified max_model_len ({m}) is greater than the derived max_model_len (max_position_embeddings={})",
                mcfg.max_position_embeddings
            )))
        }
        Some(0) => return Err(EngineError::Config("max_model_len must be positive".into())),
        Some(m) => m,
        None => mcfg.max_position_embeddings,
    };
    let started = std::time::Instant::now();
    let requested = cfg
        .quantization
        .as_deref()
        .filter(|q| !q.eq_ignore_ascii_case("none"))
        .map(str::parse)
        .transpose()?;
    let quant = QuantConfig::resolve(&mcfg, model_dir.as_deref(), requested)?;
    // `--kv-cache-dtype auto` is the model's dtype (vLLM): bf16 when the dense weights are
    // computed as bf16, i.e. `--dtype bfloat16`, or `auto` over a checkpoint that stores bf16
    // (judged by the final norm, which every supported architecture has; `auto` keeps the
    // stored values, so an f32-stored checkpoint computes in f32 whatever its `torch_dtype`).
    let model_bf16 = match cfg.dtype {
        WeightDType::BF16 => true,
        WeightDType::Auto => weights
            .get("model.norm.weight")
            .is_ok_and(|t| t.dtype() == candle_core::DType::BF16),
        WeightDType::F32 | WeightDType::F16 => false,
    };
    let kv_dtype = KvCacheDType::from_flag(&cfg.kv_cache_dtype, model_bf16)?;
    let model = load_model(
        &mcfg,
        weights.as_ref(),
        &LoadOptions::new(cfg.dtype)
            .with_quant(quant)
            .with_int4_activations(cfg.int4_activations),
    )?;
    drop(weights);
    tracing::info!(
        "loaded {} ({}) in {:.1}s",
        cfg.model,
        mcfg.architecture,
        started.elapsed().as_secs_f32()
    );

    let defaults = match &cfg.generation_config {
        GenerationConfigMode::Vllm => GenerationDefaults::default(),
        GenerationConfigMode::Auto => match &model_dir {
            Some(d) if d.join("generation_config.json").exists() => {
                GenerationDefaults::from_dir(d).map_err(|e| EngineError::Config(e.to_string()))?
            }
            _ => GenerationDefaults::default(),
        },
        GenerationConfigMode::Dir(d) => {
            GenerationDefaults::from_dir(d).map_err(|e| EngineError::Config(e.to_string()))?
        }
    };
    let default_params = match cfg.generation_config {
        GenerationConfigMode::Vllm => SamplingParams::default(),
        _ => SamplingParams::from_defaults(&defaults),
    };
    let mut eos_ids: Vec<u32> = tokenizer.eos_token_ids().to_vec();
    for id in defaults.eos_token_ids.iter().chain(&mcfg.eos_token_ids) {
        if !eos_ids.contains(id) {
            eos_ids.push(*id);
        }
    }

    let layout = KvLayout {
        block_size: cfg.block_size.max(1),
        n_kv_heads: mcfg.num_key_value_heads,
        head_dim: mcfg.head_dim,
    };
    let bytes_per_block = KvCache::bytes_per_block(mcfg.num_hidden_layers, layout, kv_dtype) as u64;
    let num_blocks = (cfg.kv_cache_memory_bytes / bytes_per_block) as usize;
    let max_tokens = num_blocks * layout.block_size;
    if max_tokens < max_model_len {
        return Err(EngineError::Config(format!(
            "The model's max seq len ({max_model_len}) is larger than the maximum number of tokens that can be stored in KV cache ({max_tokens}). Try increasing `VLLM_CPU_KVCACHE_SPACE` / `--kv-cache-memory-bytes` or decreasing `--max-model-len`."
        )));
    }
    tracing::info!(
        "KV cache ({} = {}): {num_blocks} blocks of {} tokens = {max_tokens} tokens, {:.2} GiB ({} bytes per block)",
        cfg.kv_cache_dtype,
        kv_dtype.name(),
        layout.block_size,
        (num_blocks as u64 * bytes_per_block) as f64 / (1u64 << 30) as f64,
        bytes_per_block
    );
    tracing::info!(
        "Maximum concurrency for {max_model_len} tokens per request: {:.2}x",
        max_tokens as f64 / max_model_len as f64
    );
    let kv = KvCache::new(mcfg.num_hidden_layers, num_blocks, layout, kv_dtype);
    let max_num_batched_tokens =
        cfg.max_num_batched_tokens
            .unwrap_or(if cfg.enable_chunked_prefill {
                crate::config::CHUNKED_PREFILL_TOKENS.max(cfg.max_num_seqs)
            } else {
                max_model_len.max(2048)
            });
    let scheduler = Scheduler::new(SchedulerConfig {
        max_num_seqs: cfg.max_num_seqs,
        max_num_batched_tokens,
        max_model_len,
        block_size: layout.block_size,
        num_blocks,
        enable_prefix_caching: cfg.enable_prefix_caching,
        enable_chunked_prefill: cfg.enable_chunked_prefill,
    });
    let tokenizer = Arc::new(tokenizer);
    let weight_bytes_per_token = model.weight_bytes_per_token();
    let core = EngineCore::new(
        scheduler,
        ModelRunner::new(model, kv),
        tokenizer.clone(),
        eos_ids,
        max_model_len,
    );
    let info = ModelInfo {
        model: cfg.model.clone(),
        config: mcfg,
        max_model_len,
        num_blocks,
        block_size: layout.block_size,
        default_params,
        weight_bytes_per_token,
    };
    Ok(Loaded {
        core,
        tokenizer,
        info,
    })
}
