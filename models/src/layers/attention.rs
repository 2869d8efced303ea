//! Self-attention block: fused qkv projection, RoPE, cache write, paged attention, output projection.

use super::linear::{Bias, Linear};
use super::rope::CosSin;
use super::LoadOptions;
use crate::batch::ForwardBatch;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::kv_cache::LayerKv;
use crate::weights::WeightSource;
use candela_kernels::{rope::apply_rope, AttnSeq, KvLayout};

/// Grouped-query attention with rotary positions over the paged cache.
pub struct Attention {
    qkv: Linear,
    o_proj: Linear,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Loads `<prefix>.{q,k,v,o}_proj`; `qkv_bias` says whether q/k/v carry biases.
    pub fn load(
        src: &dyn WeightSource,
        prefix: &str,
        cfg: &ModelConfig,
        qkv_bias: Bias,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let (h, nh, nkv, d) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let (q, k, v) = (
            format!("{prefix}.q_proj"),
            format!("{prefix}.k_proj"),
            format!("{prefix}.v_proj"),
        );
        let qkv = Linear::load_fused(
            src,
            &[(&q, nh * d), (&k, nkv * d), (&v, nkv * d)],
            h,
            qkv_bias,
            opts,
        )?;
        let o_proj = Linear::load(
            src,
            &format!("{prefix}.o_proj"),
            nh * d,
            h,
            Bias::IfPresent,
            opts,
        )?;
        Ok(Attention {
            qkv,
            o_proj,
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: d,
        })
    }

    /// Bytes of weights one forward pass reads.
    pub fn bytes(&self) -> usize {
        self.qkv.bytes() + self.o_proj.bytes()
    }

    /// `x` `[T, hidden]` (normalised) → attention output `[T, hidden]`; writes this step's K/V
    /// into `kv` at the batch's slots first, so each token also sees itself.
    pub fn forward(
        &self,
        x: &[f32],
        batch: &ForwardBatch,
        rope: &CosSin,
        kv: &mut LayerKv,
        layout: KvLayout,
    ) -> Result<Vec<f32>> {
        let t = batch.num_tokens();
        let (nh, nkv, d) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let qkv = self.qkv.forward(x, t)?;
        let (wq, wk) = (nh * d, nkv * d);
        let mut q = Vec::with_capacity(t * wq);
        let mut k = Vec::with_capacity(t * wk);
        let mut v = Vec::with_capacity(t * wk);
        for row in qkv.chunks(wq + 2 * wk) {
            q.extend_from_slice(&row[..wq]);
            k.extend_from_slice(&row[wq..wq + wk]);
            v.extend_from_slice(&row[wq + wk..]);
        }
        apply_rope(&mut q, &rope.cos, &rope.sin, nh, d);
        apply_rope(&mut k, &rope.cos, &rope.sin, nkv, d);
        kv.write(&k, &v, &batch.slot_mapping, layout)?;
        let seqs: Vec<AttnSeq<'_>> = batch
            .seqs
            .iter()
            .map(|s| AttnSeq {
                query_start: s.query_start,
                query_len: s.query_len,
                context_len: s.context_len,
                block_table: &s.block_table,
            })
            .collect();
        let mut attn = vec![0.0; t * wq];
        kv.attend(&q, &seqs, nh, layout, 1.0 / (d as f32).sqrt(), &mut attn)?;
        self.o_proj.forward(&attn, t)
    }
}
