//! Typed HF `config.json`: parsed once at the edge into structs and enums; models read fields, never strings.

use crate::error::{ModelError, Result};
use serde::Deserialize;
use std::path::Path;

/// Activation of the gated MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// x * sigmoid(x).
    Silu,
    /// tanh-approximated GELU.
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_new")]
    Gelu,
}

/// Rotary position embedding frequency scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Llama 3.x frequency-dependent scaling.
    Llama3 {
        /// Context extension factor.
        factor: f64,
        /// Low-frequency boundary factor.
        low_freq_factor: f64,
        /// High-frequency boundary factor.
        high_freq_factor: f64,
        /// Pre-training context length.
        original_max_position_embeddings: usize,
    },
    /// Positions divided by `factor`.
    Linear {
        /// Scale factor.
        factor: f64,
    },
}

/// One entry or a list, as HF writes `eos_token_id`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl OneOrMany {
    /// All ids as a vector.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            OneOrMany::One(x) => vec![*x],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    vocab_size: usize,
    #[serde(default = "default_act")]
    hidden_act: Activation,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    torch_dtype: Option<String>,
    #[serde(default)]
    bos_token_id: Option<OneOrMany>,
    #[serde(default)]
    eos_token_id: Option<OneOrMany>,
    #[serde(default)]
    quantization_config: Option<serde_json::Value>,
    #[serde(default)]
    use_sliding_window: bool,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10000.0
}
fn default_max_pos() -> usize {
    4096
}
fn default_act() -> Activation {
    Activation::Silu
}

/// The fields of a decoder-only transformer config that our architectures use.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// `architectures[0]`, e.g. `LlamaForCausalLM`.
    pub architecture: String,
    /// `model_type`, e.g. `llama`.
    pub model_type: String,
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA); equals `num_attention_heads` for MHA.
    pub num_key_value_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// Whether `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Rows of the embedding / logits width.
    pub vocab_size: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// Whether q/k/v projections carry biases (Qwen2 always; Llama if `attention_bias`).
    pub attention_bias: bool,
    /// `torch_dtype` of the checkpoint, if stated.
    pub torch_dtype: Option<String>,
    /// BOS id from config.json.
    pub bos_token_id: Option<u32>,
    /// EOS ids from config.json.
    pub eos_token_ids: Vec<u32>,
    /// Raw `quantization_config`, typed by the quantization layer.
    pub quantization_config: Option<serde_json::Value>,
    /// Qwen2's `use_sliding_window` (unsupported when true).
    pub use_sliding_window: bool,
}

impl ModelConfig {
    /// Parses a config.json file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Parses config.json text and checks it for consistency.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
        let architecture = raw
            .architectures
            .first()
            .cloned()
            .ok_or_else(|| ModelError::Config("config.json has no `architectures`".into()))?;
        let rope_scaling = parse_rope_scaling(raw.rope_scaling.as_ref())?;
        let attention_bias = raw
            .attention_bias
            .unwrap_or(architecture.starts_with("Qwen2"));
        let cfg = ModelConfig {
            model_type: raw.model_type.unwrap_or_default(),
            architecture,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads.max(1)),
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta: raw.rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings,
            vocab_size: raw.vocab_size,
            hidden_act: raw.hidden_act,
            attention_bias,
            torch_dtype: raw.torch_dtype,
            bos_token_id: raw.bos_token_id.and_then(|b| b.to_vec().first().copied()),
            eos_token_ids: raw.eos_token_id.map(|e| e.to_vec()).unwrap_or_default(),
            quantization_config: raw.quantization_config,
            use_sliding_window: raw.use_sliding_window,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the invariants the layers rely on.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 || self.head_dim == 0 {
            return bad("head counts and head_dim must be positive".into());
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} must be even for RoPE", self.head_dim));
        }
        if self.hidden_size == 0 || self.vocab_size == 0 || self.num_hidden_layers == 0 {
            return bad("hidden_size, vocab_size and num_hidden_layers must be positive".into());
        }
        Ok(())
    }
}

fn parse_rope_scaling(v: Option<&serde_json::Value>) -> Result<RopeScaling> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::None);
    };
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("default");
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64());
    let need =
        |k: &str| f(k).ok_or_else(|| ModelError::Config(format!("rope_scaling.{k} missing")));
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: need("factor")?,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: need("factor")?,
            low_freq_factor: need("low_freq_factor")?,
            high_freq_factor: need("high_freq_factor")?,
            original_max_position_embeddings: need("original_max_position_embeddings")? as usize,
        }),
        other => Err(ModelError::Config(format!(
            "rope_scaling type {other:?} is not supported (supported: default, linear, llama3)"
        ))),
    }
}
