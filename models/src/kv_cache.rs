//! The paged KV cache memory: one K and one V pool per layer, addressed by slot, stored as f32,
//! bf16 (`--kv-cache-dtype auto` for a bf16 model, or `bfloat16`) or as FP8 codes with a
//! per-tensor scale (`fp8`/`fp8_e4m3`, `fp8_e5m2`), converted on write and on read by the
//! attention kernels.
//!
//! The engine sizes it and hands out block ids; the model only writes and reads slots.

use crate::error::{ModelError, Result};
use candela_kernels::fp8::Fp8Format;
use candela_kernels::paged_attention::{
    paged_attention_bf16, paged_attention_fp8, reshape_and_cache_bf16, reshape_and_cache_fp8, Fp8Kv,
};
use candela_kernels::{paged_attention, reshape_and_cache, AttnSeq, KvLayout};
use half::bf16;
use std::str::FromStr;

/// Element type of the KV cache (vLLM's `--kv-cache-dtype`, with `auto` resolved by
/// [`KvCacheDType::from_flag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvCacheDType {
    /// f32: `auto` for f32 and f16 models on CPU (f16 weights are computed in f32).
    #[default]
    F32,
    /// bfloat16 (rounded to nearest even on write): `auto` for a bf16 model, as vLLM stores
    /// the cache in the model's dtype; half the bytes of f32.
    Bf16,
    /// FP8 E4M3 (what `fp8` means in vLLM): 3 mantissa bits, range ±448.
    Fp8E4M3,
    /// FP8 E5M2: 2 mantissa bits, range ±57344.
    Fp8E5M2,
}

impl KvCacheDType {
    /// Parses a `--kv-cache-dtype` value: `auto` is the model's dtype (`model_bf16`: the
    /// model computes in bfloat16) on CPU, i.e. bf16 for a bf16 model and f32 otherwise; the
    /// other names as [`FromStr`].
    pub fn from_flag(s: &str, model_bf16: bool) -> Result<Self> {
        match s {
            "auto" if model_bf16 => Ok(KvCacheDType::Bf16),
            "auto" => Ok(KvCacheDType::F32),
            other => other.parse(),
        }
    }

    /// Bytes per stored K or V element: 4 (f32), 2 (bf16) or 1 (FP8).
    pub fn element_bytes(self) -> usize {
        match self {
            KvCacheDType::F32 => std::mem::size_of::<f32>(),
            KvCacheDType::Bf16 => std::mem::size_of::<bf16>(),
            KvCacheDType::Fp8E4M3 | KvCacheDType::Fp8E5M2 => 1,
        }
    }

    /// The FP8 format, if any.
    pub fn fp8_format(self) -> Option<Fp8Format> {
        match self {
            KvCacheDType::F32 | KvCacheDType::Bf16 => None,
            KvCacheDType::Fp8E4M3 => Some(Fp8Format::E4M3),
            KvCacheDType::Fp8E5M2 => Some(Fp8Format::E5M2),
        }
    }

    /// vLLM's name of the stored type (`float32`, `bfloat16`, `fp8_e4m3`, `fp8_e5m2`).
    pub fn name(self) -> &'static str {
        match self {
            KvCacheDType::F32 => "float32",
            KvCacheDType::Bf16 => "bfloat16",
            KvCacheDType::Fp8E4M3 => "fp8_e4m3",
            KvCacheDType::Fp8E5M2 => "fp8_e5m2",
        }
    }
}

impl FromStr for KvCacheDType {
    type Err = ModelError;
    /// Parses an explicit type: `float32`, `bfloat16`, `fp8` (= `fp8_e4m3`) or `fp8_e5m2`
    /// (`auto` depends on the model: [`KvCacheDType::from_flag`]).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "float32" => Ok(KvCacheDType::F32),
            "bfloat16" => Ok(KvCacheDType::Bf16),
            "fp8" | "fp8_e4m3" => Ok(KvCacheDType::Fp8E4M3),
            "fp8_e5m2" => Ok(KvCacheDType::Fp8E5M2),
            other => Err(ModelError::Config(format!(
                "kv_cache_dtype {other:?} is not supported on CPU (supported: auto, bfloat16, fp8, fp8_e4m3, fp8_e5m2)"
            ))),
        }
    }
}

enum Store {
    F32 {
        k: Vec<f32>,
        v: Vec<f32>,
    },
    Bf16 {
        k: Vec<bf16>,
        v: Vec<bf16>,
    },
    Fp8 {
        k: Vec<u8>,
        v: Vec<u8>,
        format: Fp8Format,
    },
}

/// K and V storage of one layer, each `[num_blocks * block_size, n_kv_heads * head_dim]`
/// elements, and the per-tensor FP8 scales (1.0 unless set, as in vLLM; unused for f32).
pub struct LayerKv {
    store: Store,
    /// Keys are stored as `fp8(k / k_scale)`.
    pub k_scale: f32,
    /// Values are stored as `fp8(v / v_scale)`.
    pub v_scale: f32,
}

impl LayerKv {
    fn slots(&self, layout: KvLayout) -> usize {
        let n = match &self.store {
            Store::F32 { k, .. } => k.len(),
            Store::Bf16 { k, .. } => k.len(),
            Store::Fp8 { k, .. } => k.len(),
        };
        n / layout.slot_width().max(1)
    }

    /// Writes the keys and values of `T` tokens into their slots. Shapes: `k`, `v`
    /// `[T, n_kv_heads * head_dim]`, `slot_mapping` `[T]`. Slots past the pool are an error.
    pub fn write(
        &mut self,
        k: &[f32],
        v: &[f32],
        slot_mapping: &[u32],
        layout: KvLayout,
    ) -> Result<()> {
        let (w, slots) = (layout.slot_width(), self.slots(layout));
        if k.len() != slot_mapping.len() * w || v.len() != k.len() {
            return Err(ModelError::Config(format!(
                "KV write: {} tokens but {} key values of width {w}",
                slot_mapping.len(),
                k.len()
            )));
        }
        if let Some(&s) = slot_mapping.iter().find(|&&s| s as usize >= slots) {
            return Err(ModelError::Config(format!(
                "KV slot {s} is outside the cache ({slots} slots)"
            )));
        }
        match &mut self.store {
            Store::F32 { k: kc, v: vc } => reshape_and_cache(k, v, kc, vc, slot_mapping, layout),
            Store::Bf16 { k: kc, v: vc } => {
                reshape_and_cache_bf16(k, v, kc, vc, slot_mapping, layout)
            }
            Store::Fp8 {
                k: kc,
                v: vc,
                format,
            } => {
                let fp8 = Fp8Kv {
                    format: *format,
                    k_scale: self.k_scale,
                    v_scale: self.v_scale,
                };
                reshape_and_cache_fp8(k, v, kc, vc, slot_mapping, layout, fp8)
            }
        }
        Ok(())
    }

    /// Paged causal attention of `q` `[T, n_heads * head_dim]` over this layer's cache into
    /// `out` (same shape); see `candela_kernels::paged_attention`. Block tables that point
    /// outside the pool or do not cover `context_len` are an error.
    pub fn attend(
        &self,
        q: &[f32],
        seqs: &[AttnSeq<'_>],
        n_heads: usize,
        layout: KvLayout,
        scale: f32,
        out: &mut [f32],
    ) -> Result<()> {
        let blocks = self.slots(layout) / layout.block_size.max(1);
        let rows = q.len() / (n_heads * layout.head_dim).max(1);
        if n_heads == 0 || !n_heads.is_multiple_of(layout.n_kv_heads.max(1)) || out.len() != q.len()
        {
            return Err(ModelError::Config(
                "attention: bad head counts or output size".into(),
            ));
        }
        for s in seqs {
            let covered = s.block_table.len() * layout.block_size;
            if s.context_len > covered
                || s.query_len > s.context_len
                || s.query_start + s.query_len > rows
            {
                return Err(ModelError::Config(format!(
                    "attention: sequence of {} tokens has a block table covering {covered}",
                    s.context_len
                )));
            }
            if let Some(&b) = s.block_table.iter().find(|&&b| b as usize >= blocks) {
                return Err(ModelError::Config(format!(
                    "attention: block {b} is outside the cache ({blocks} blocks)"
                )));
            }
        }
        match &self.store {
            Store::F32 { k, v } => paged_attention(q, k, v, seqs, n_heads, layout, scale, out),
            Store::Bf16 { k, v } => {
                paged_attention_bf16(q, k, v, seqs, n_heads, layout, scale, out)
            }
            Store::Fp8 { k, v, format } => {
                let fp8 = Fp8Kv {
                    format: *format,
                    k_scale: self.k_scale,
                    v_scale: self.v_scale,
                };
                paged_attention_fp8(q, k, v, fp8, seqs, n_heads, layout, scale, out)
            }
        }
        Ok(())
    }
}

/// Paged KV memory for all layers of a model.
pub struct KvCache {
    /// Per-layer storage.
    pub layers: Vec<LayerKv>,
    /// Shape of one layer's pool.
    pub layout: KvLayout,
    /// Blocks in each layer's pool.
    pub num_blocks: usize,
    /// Element type.
    pub dtype: KvCacheDType,
}

impl KvCache {
    /// Bytes of KV memory one block takes across all layers (K and V):
    /// `2 * n_layers * block_size * n_kv_heads * head_dim * dtype.element_bytes()`.
    pub fn bytes_per_block(n_layers: usize, layout: KvLayout, dtype: KvCacheDType) -> usize {
        2 * n_layers * layout.block_size * layout.slot_width() * dtype.element_bytes()
    }

    /// Allocates `num_blocks` zeroed blocks for `n_layers` layers.
    pub fn new(n_layers: usize, num_blocks: usize, layout: KvLayout, dtype: KvCacheDType) -> Self {
        let n = num_blocks * layout.block_size * layout.slot_width();
        let layers = (0..n_layers)
            .map(|_| LayerKv {
                store: match (dtype, dtype.fp8_format()) {
                    (_, Some(format)) => Store::Fp8 {
                        k: vec![0; n],
                        v: vec![0; n],
                        format,
                    },
                    (KvCacheDType::Bf16, None) => Store::Bf16 {
                        k: vec![bf16::ZERO; n],
                        v: vec![bf16::ZERO; n],
                    },
                    (_, None) => Store::F32 {
                        k: vec![0.0; n],
                        v: vec![0.0; n],
                    },
                },
                k_scale: 1.0,
                v_scale: 1.0,
            })
            .collect();
        KvCache {
            layers,
            layout,
            num_blocks,
            dtype,
        }
    }
}
