//! GGUF checkpoints of llama-family models (`general.architecture` llama or qwen2, GGUF v2/v3):
//! the file is validated and memory-mapped, a [`ModelConfig`] is synthesized from its metadata,
//! and tensors are served under HF names, dequantized to f32, in HF `[out, in]` layout and with the
//! llama q/k rows un-permuted back to the HF half-split rotary layout (see `gguf_names`).

use crate::config::{Activation, ModelConfig, RopeScaling};
use crate::error::{ModelError, Result};
use crate::loader::gguf_check::check_gguf_layout;
use crate::loader::gguf_names::{gguf_name, hf_name, rotary_rows, unpermute_rows, RotaryRows};
use crate::weights::WeightSource;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Architectures whose GGUF files this loader understands.
const SUPPORTED: &str = "llama, qwen2";

/// The model family named by `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Llama,
    Qwen2,
}

impl Arch {
    fn key(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }
}

/// A GGUF checkpoint seen as HF-named f32 tensors.
pub struct GgufWeights {
    path: PathBuf,
    mmap: Mmap,
    content: Content,
    arch: Arch,
    /// (attention heads, KV heads), for un-permuting llama q/k rows.
    heads: (usize, usize),
}

impl std::fmt::Debug for GgufWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWeights")
            .field("path", &self.path)
            .field("architecture", &self.arch)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

fn corrupt(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Corrupt {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// An integer metadata value as u64 (negative or non-integer values give `None`).
fn as_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(x.into()),
        Value::U16(x) => Some(x.into()),
        Value::U32(x) => Some(x.into()),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

/// A float metadata value as f64; f32 values keep their shortest decimal form (1e-5, not
/// 9.99999974e-6).
fn as_f64(v: &Value) -> Option<f64> {
    match *v {
        Value::F32(x) => x.to_string().parse().ok(),
        Value::F64(x) => Some(x),
        _ => as_u64(v).map(|x| x as f64),
    }
}

impl GgufWeights {
    /// Opens and validates a GGUF file. Truncated or malformed files give
    /// [`ModelError::Corrupt`]; architectures other than llama and qwen2 give
    /// [`ModelError::UnsupportedArchitecture`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ModelError::MissingFile(path.clone())
            } else {
                ModelError::Io {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        // SAFETY: the map is read-only; like every mmap-based loader we rely on the file not being
        // modified or truncated by another process while it is mapped.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        check_gguf_layout(&path, &mmap)?;
        let content = Content::read(&mut Cursor::new(&mmap[..]))
            .map_err(|e| corrupt(&path, format!("cannot parse GGUF header: {e}")))?;
        let file_len = mmap.len() as u64;
        for (name, info) in &content.tensor_infos {
            let elems = info.shape.elem_count();
            let block = info.ggml_dtype.block_size();
            let bytes = elems
                .is_multiple_of(block)
                .then(|| (elems / block).checked_mul(info.ggml_dtype.type_size()))
                .flatten()
                .ok_or_else(|| corrupt(&path, format!("tensor {name:?} has {elems} elements, not a whole number of {:?} blocks", info.ggml_dtype)))?;
            let end = content
                .tensor_data_offset
                .checked_add(info.offset)
                .and_then(|s| s.checked_add(bytes as u64));
            if end.is_none_or(|end| end > file_len) {
                return Err(corrupt(
                    &path,
                    format!("tensor {name:?} data runs past the end of the {file_len}-byte file (truncated?)"),
                ));
            }
        }
        let arch = match content.metadata.get("general.architecture") {
            Some(Value::String(s)) if s == "llama" => Arch::Llama,
            Some(Value::String(s)) if s == "qwen2" => Arch::Qwen2,
            Some(Value::String(s)) => {
                return Err(ModelError::UnsupportedArchitecture {
                    name: s.clone(),
                    supported: SUPPORTED.into(),
                })
            }
            _ => return Err(corrupt(&path, "metadata lacks general.architecture")),
        };
        let mut this = Self {
            path,
            mmap,
            content,
            arch,
            heads: (0, 0),
        };
        let heads = this.req_usize("attention.head_count")?;
        let kv = this.opt_usize("attention.head_count_kv")?.unwrap_or(heads);
        this.heads = (heads, kv);
        Ok(this)
    }

    /// The file this was opened from (the tokenizer is built from the same file's metadata).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All GGUF metadata key/values (`general.*`, `llama.*`, `tokenizer.ggml.*`, ...).
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// `general.architecture`: `llama` or `qwen2`.
    pub fn architecture(&self) -> &'static str {
        self.arch.key()
    }

    /// HF names of the tensors in the file, sorted (GGUF tensors with no HF name, such as
    /// `rope_freqs.weight`, are left out).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .content
            .tensor_infos
            .keys()
            .filter_map(|g| hf_name(g))
            .collect();
        v.sort_unstable();
        v
    }

    fn arch_key(&self, key: &str) -> String {
        format!("{}.{key}", self.arch.key())
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        let full = self.arch_key(key);
        match self.content.metadata.get(&full) {
            None => Ok(None),
            Some(v) => as_u64(v)
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| {
                    ModelError::Config(format!(
                        "GGUF metadata {full} = {v:?} is not a non-negative integer"
                    ))
                }),
        }
    }

    fn req_usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| {
            ModelError::Config(format!("GGUF metadata lacks {}", self.arch_key(key)))
        })
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        let full = self.arch_key(key);
        match self.content.metadata.get(&full) {
            None => Ok(None),
            Some(v) => as_f64(v).map(Some).ok_or_else(|| {
                ModelError::Config(format!("GGUF metadata {full} = {v:?} is not a number"))
            }),
        }
    }

    fn token_id(&self, key: &str) -> Option<u32> {
        self.content
            .metadata
            .get(&format!("tokenizer.ggml.{key}"))
            .and_then(as_u64)
            .and_then(|x| u32::try_from(x).ok())
    }

    fn rope_scaling(&self) -> Result<RopeScaling> {
        if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            return Err(ModelError::Config(
                "GGUF carries rope_freqs.weight (Llama 3.1-style per-frequency RoPE factors), which is not supported yet; use the HF safetensors checkpoint".into(),
            ));
        }
        let kind = match self
            .content
            .metadata
            .get(&self.arch_key("rope.scaling.type"))
        {
            Some(Value::String(s)) => s.as_str(),
            Some(v) => {
                return Err(ModelError::Config(format!(
                    "rope.scaling.type {v:?} is not a string"
                )))
            }
            None => "none",
        };
        let factor = match self.opt_f64("rope.scaling.factor")? {
            Some(f) => Some(f),
            None => self.opt_f64("rope.scale_linear")?,
        };
        match (kind, factor) {
            ("none", None) => Ok(RopeScaling::None),
            ("none" | "linear", Some(factor)) => Ok(if factor == 1.0 {
                RopeScaling::None
            } else {
                RopeScaling::Linear { factor }
            }),
            (other, _) => Err(ModelError::Config(format!(
                "GGUF rope scaling {other:?} is not supported (supported: none, linear)"
            ))),
        }
    }

    /// Synthesizes the HF-style config from the GGUF metadata and tensor shapes.
    pub fn config(&self) -> Result<ModelConfig> {
        let hidden_size = self.req_usize("embedding_length")?;
        let (heads, kv_heads) = self.heads;
        let rope_dim = self.opt_usize("rope.dimension_count")?;
        let head_dim = match self.opt_usize("attention.key_length")? {
            Some(d) => d,
            None => rope_dim.unwrap_or(hidden_size / heads.max(1)),
        };
        if rope_dim.is_some_and(|r| r != head_dim) {
            return Err(ModelError::Config(format!(
                "rope.dimension_count {rope_dim:?} differs from head_dim {head_dim}: partial rotary is not supported"
            )));
        }
        let rms_norm_eps = self
            .opt_f64("attention.layer_norm_rms_epsilon")?
            .ok_or_else(|| {
                ModelError::Config(format!(
                    "GGUF metadata lacks {}",
                    self.arch_key("attention.layer_norm_rms_epsilon")
                ))
            })?;
        let embd_rows = self
            .content
            .tensor_infos
            .get("token_embd.weight")
            .and_then(|t| t.shape.dims().first().copied());
        let n_tokens = match self.content.metadata.get("tokenizer.ggml.tokens") {
            Some(Value::Array(v)) => Some(v.len()),
            _ => None,
        };
        let vocab_size = embd_rows
            .or(self.opt_usize("vocab_size")?)
            .or(n_tokens)
            .ok_or_else(|| ModelError::Config("cannot tell the vocabulary size: no token_embd.weight, vocab_size or tokenizer.ggml.tokens".into()))?;
        let eos = self.token_id("eos_token_id");
        let mut eos_token_ids: Vec<u32> = eos.into_iter().collect();
        for extra in [self.token_id("eot_token_id"), self.token_id("eom_token_id")]
            .into_iter()
            .flatten()
        {
            if !eos_token_ids.contains(&extra) {
                eos_token_ids.push(extra);
            }
        }
        let (architecture, attention_bias) = match self.arch {
            Arch::Llama => (
                "LlamaForCausalLM",
                self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            ),
            Arch::Qwen2 => ("Qwen2ForCausalLM", true),
        };
        let cfg = ModelConfig {
            architecture: architecture.into(),
            model_type: self.arch.key().into(),
            hidden_size,
            intermediate_size: self.req_usize("feed_forward_length")?,
            num_hidden_layers: self.req_usize("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps,
            rope_theta: self.opt_f64("rope.freq_base")?.unwrap_or(10_000.0),
            rope_scaling: self.rope_scaling()?,
            max_position_embeddings: self.opt_usize("context_length")?.unwrap_or(4096),
            tie_word_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            vocab_size,
            hidden_act: Activation::Silu,
            attention_bias,
            torch_dtype: None,
            bos_token_id: self.token_id("bos_token_id"),
            eos_token_ids,
            quantization_config: None,
            use_sliding_window: false,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl WeightSource for GgufWeights {
    fn get(&self, name: &str) -> Result<Tensor> {
        let g = gguf_name(name)
            .filter(|g| self.content.tensor_infos.contains_key(g))
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        let q = self
            .content
            .tensor(&mut Cursor::new(&self.mmap[..]), &g, &Device::Cpu)
            .map_err(|e| corrupt(&self.path, format!("cannot read tensor {g:?}: {e}")))?;
        let t = q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?;
        match (self.arch, rotary_rows(&g)) {
            (Arch::Llama, Some(RotaryRows::Query)) => unpermute_rows(name, &t, self.heads.0),
            (Arch::Llama, Some(RotaryRows::Key)) => unpermute_rows(name, &t, self.heads.1),
            _ => Ok(t),
        }
    }

    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.content.tensor_infos.contains_key(&g))
    }
}

#[cfg(test)]
#[path = "gguf_tests.rs"]
mod tests;
