//! The pre-norm decoder stack shared by Llama-family architectures: embed → N × (norm, attention,
//! norm, MLP) → norm → LM head. Architectures differ only in the [`DecoderSpec`] they pass.

use super::attention::Attention;
use super::embedding::Embedding;
use super::linear::{Bias, Linear};
use super::mlp::GatedMlp;
use super::norm::RmsNorm;
use super::rope::RotaryEmbedding;
use super::LoadOptions;
use crate::batch::ForwardBatch;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::weights::WeightSource;
use crate::CausalLm;

/// What distinguishes one Llama-like architecture from another.
#[derive(Debug, Clone, Copy)]
pub struct DecoderSpec {
    /// Bias policy of the q/k/v projections.
    pub qkv_bias: Bias,
}

struct Layer {
    input_norm: RmsNorm,
    attn: Attention,
    post_norm: RmsNorm,
    mlp: GatedMlp,
}

/// A loaded pre-norm decoder-only transformer.
pub struct Decoder {
    cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: RotaryEmbedding,
}

impl Decoder {
    /// Loads every weight of `cfg`'s shape from `src` (HF names).
    pub fn load(
        cfg: &ModelConfig,
        src: &dyn WeightSource,
        spec: DecoderSpec,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let h = cfg.hidden_size;
        let embed = Embedding::load(src, "model.embed_tokens.weight", cfg.vocab_size, h, opts)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        let pb = crate::loader::progress_bar(cfg.num_hidden_layers as u64, "Loading layers");
        for i in 0..cfg.num_hidden_layers {
            pb.inc(1);
            let p = format!("model.layers.{i}");
            layers.push(Layer {
                input_norm: RmsNorm::load(
                    src,
                    &format!("{p}.input_layernorm.weight"),
                    h,
                    cfg.rms_norm_eps,
                    opts,
                )?,
                attn: Attention::load(src, &format!("{p}.self_attn"), cfg, spec.qkv_bias, opts)?,
                post_norm: RmsNorm::load(
                    src,
                    &format!("{p}.post_attention_layernorm.weight"),
                    h,
                    cfg.rms_norm_eps,
                    opts,
                )?,
                mlp: GatedMlp::load(src, &format!("{p}.mlp"), cfg, opts)?,
            });
        }
        pb.finish_and_clear();
        let norm = RmsNorm::load(src, "model.norm.weight", h, cfg.rms_norm_eps, opts)?;
        let has_head = src.contains("lm_head.weight") || src.contains("lm_head.qweight");
        let lm_head = if cfg.tie_word_embeddings || !has_head {
            if !cfg.tie_word_embeddings {
                return Err(ModelError::MissingTensor("lm_head.weight".into()));
            }
            Linear::from_weight(embed.table().clone())?
        } else {
            Linear::load(src, "lm_head", h, cfg.vocab_size, Bias::No, opts)?
        };
        Ok(Decoder {
            cfg: cfg.clone(),
            embed,
            layers,
            norm,
            lm_head,
            rope: RotaryEmbedding::new(cfg),
        })
    }
}

impl CausalLm for Decoder {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn weight_bytes_per_token(&self) -> usize {
        let norms = (2 * self.layers.len() + 1) * self.cfg.hidden_size * 4;
        let layers: usize = self
            .layers
            .iter()
            .map(|l| l.attn.bytes() + l.mlp.bytes())
            .sum();
        layers + norms + self.lm_head.bytes()
    }

    fn forward(&self, batch: &ForwardBatch, kv: &mut KvCache) -> Result<Vec<f32>> {
        let t = batch.num_tokens();
        if kv.layers.len() != self.layers.len() {
            return Err(ModelError::Config(
                "KV cache has the wrong number of layers".into(),
            ));
        }
        let rope = self.rope.cos_sin(&batch.positions);
        let layout = kv.layout;
        let mut residual = self.embed.forward(&batch.input_ids)?;
        let mut h = self.layers[0].input_norm.forward(&residual);
        for (i, layer) in self.layers.iter().enumerate() {
            let a = layer
                .attn
                .forward(&h, batch, &rope, &mut kv.layers[i], layout)?;
            h = layer.post_norm.add_forward(&mut residual, &a);
            let m = layer.mlp.forward(&h, t)?;
            h = match self.layers.get(i + 1) {
                Some(next) => next.input_norm.add_forward(&mut residual, &m),
                None => {
                    residual.iter_mut().zip(&m).for_each(|(r, x)| *r += x);
                    Vec::new()
                }
            };
        }
        let hd = self.cfg.hidden_size;
        let mut last = Vec::with_capacity(batch.logits_rows.len() * hd);
        for &r in &batch.logits_rows {
            last.extend_from_slice(&residual[r * hd..(r + 1) * hd]);
        }
        let normed = self.norm.forward(&last);
        self.lm_head.forward(&normed, batch.logits_rows.len())
    }
}
