//! GGUF ↔ HF conventions for llama-family checkpoints: tensor names (`blk.{i}.attn_q.weight` ↔
//! `model.layers.{i}.self_attn.q_proj.weight`) and the q/k row permutation llama.cpp's converter
//! applies for its interleaved rotary layout.
//!
//! llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel.permute`) rewrites the rows of q_proj and k_proj
//! (weights and biases) of llama models as
//! `w.reshape(n_head, 2, rows / n_head / 2, *rest).swapaxes(1, 2).reshape(w.shape)`, with
//! `n_head` = attention heads for q and KV heads for k, so that each rotary pair `(j, j + d/2)` of
//! the HF half-split layout becomes adjacent rows `(2j, 2j + 1)`. transformers'
//! `reverse_permute_weights` (`modeling_gguf_pytorch_utils.py`) undoes it with
//! `reshape(n_head, rows / n_head / 2, 2, *rest).swapaxes(2, 1)`; [`unpermute_rows`] is that inverse.
//! Qwen2 GGUFs use the NeoX (half-split) rotary layout and are stored unpermuted.

use crate::error::{ModelError, Result};
use candle_core::Tensor;

/// Per-layer tensors: HF suffix after `model.layers.{i}.` and GGUF suffix after `blk.{i}.`.
const LAYER_NAMES: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.o_proj.bias", "attn_output.bias"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

/// Whole-model tensors: HF name and GGUF name.
const GLOBAL_NAMES: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// Which rotary projection a tensor belongs to, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RotaryRows {
    /// q_proj weight or bias: rows grouped by attention head.
    Query,
    /// k_proj weight or bias: rows grouped by KV head.
    Key,
}

fn split_layer<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (idx, suffix) = rest.split_once('.')?;
    if idx.is_empty()
        || !idx.bytes().all(|b| b.is_ascii_digit())
        || (idx.len() > 1 && idx.starts_with('0'))
    {
        return None;
    }
    Some((idx.parse().ok()?, suffix))
}

/// The GGUF tensor name for an HF tensor name, if the name is one this mapping knows.
pub(crate) fn gguf_name(hf: &str) -> Option<String> {
    if let Some((_, g)) = GLOBAL_NAMES.iter().find(|(h, _)| *h == hf) {
        return Some((*g).to_string());
    }
    let (i, suffix) = split_layer(hf, "model.layers.")?;
    let (_, g) = LAYER_NAMES.iter().find(|(h, _)| *h == suffix)?;
    Some(format!("blk.{i}.{g}"))
}

/// The HF tensor name for a GGUF tensor name, if it has one.
pub(crate) fn hf_name(gguf: &str) -> Option<String> {
    if let Some((h, _)) = GLOBAL_NAMES.iter().find(|(_, g)| *g == gguf) {
        return Some((*h).to_string());
    }
    let (i, suffix) = split_layer(gguf, "blk.")?;
    let (h, _) = LAYER_NAMES.iter().find(|(_, g)| *g == suffix)?;
    Some(format!("model.layers.{i}.{h}"))
}

/// Whether the GGUF tensor `gguf` holds rotary q or k rows.
pub(crate) fn rotary_rows(gguf: &str) -> Option<RotaryRows> {
    let (_, suffix) = split_layer(gguf, "blk.")?;
    match suffix {
        "attn_q.weight" | "attn_q.bias" => Some(RotaryRows::Query),
        "attn_k.weight" | "attn_k.bias" => Some(RotaryRows::Key),
        _ => None,
    }
}

/// `(rows, half, rest)` of a q/k tensor split into `n_head` heads of rotary pairs.
fn head_split(name: &str, t: &Tensor, n_head: usize) -> Result<(usize, usize, usize)> {
    let dims = t.dims();
    let rows = dims.first().copied().unwrap_or(0);
    if n_head == 0 || rows == 0 || !rows.is_multiple_of(2 * n_head) {
        return Err(ModelError::Config(format!(
            "{name}: {rows} rows cannot be split into {n_head} heads of rotary pairs"
        )));
    }
    Ok((rows, rows / n_head / 2, dims[1..].iter().product()))
}

/// llama.cpp's converter permutation (HF half-split rows → GGUF interleaved rows); the loader
/// only needs the inverse, the tests check both directions.
#[cfg(test)]
pub(crate) fn permute_rows(name: &str, t: &Tensor, n_head: usize) -> Result<Tensor> {
    let (_, half, rest) = head_split(name, t, n_head)?;
    Ok(t.reshape((n_head, 2, half, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(t.shape())?)
}

/// The inverse of [`permute_rows`] (GGUF interleaved rows → HF half-split rows).
pub(crate) fn unpermute_rows(name: &str, t: &Tensor, n_head: usize) -> Result<Tensor> {
    let (_, half, rest) = head_split(name, t, n_head)?;
    Ok(t.reshape((n_head, half, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(t.shape())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn names_map_both_ways() {
        let cases = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
            (
                "model.layers.0.input_layernorm.weight",
                "blk.0.attn_norm.weight",
            ),
            (
                "model.layers.12.post_attention_layernorm.weight",
                "blk.12.ffn_norm.weight",
            ),
            (
                "model.layers.3.self_attn.q_proj.weight",
                "blk.3.attn_q.weight",
            ),
            ("model.layers.3.self_attn.k_proj.bias", "blk.3.attn_k.bias"),
            (
                "model.layers.3.self_attn.v_proj.weight",
                "blk.3.attn_v.weight",
            ),
            (
                "model.layers.3.self_attn.o_proj.weight",
                "blk.3.attn_output.weight",
            ),
            (
                "model.layers.29.mlp.gate_proj.weight",
                "blk.29.ffn_gate.weight",
            ),
            ("model.layers.29.mlp.up_proj.weight", "blk.29.ffn_up.weight"),
            (
                "model.layers.29.mlp.down_proj.weight",
                "blk.29.ffn_down.weight",
            ),
        ];
        for (hf, g) in cases {
            assert_eq!(gguf_name(hf).as_deref(), Some(g), "{hf}");
            assert_eq!(hf_name(g).as_deref(), Some(hf), "{g}");
        }
        for bad in [
            "model.layers.x.mlp.up_proj.weight",
            "model.layers.01.mlp.up_proj.weight",
            "model.layers..mlp",
            "foo",
        ] {
            assert_eq!(gguf_name(bad), None, "{bad}");
        }
        assert_eq!(hf_name("rope_freqs.weight"), None);
        assert_eq!(rotary_rows("blk.0.attn_q.weight"), Some(RotaryRows::Query));
        assert_eq!(rotary_rows("blk.7.attn_k.bias"), Some(RotaryRows::Key));
        assert_eq!(rotary_rows("blk.7.attn_v.weight"), None);
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().unwrap()
    }

    #[test]
    fn permutation_matches_llama_cpp_layout() {
        // One head, head_dim 4: HF rows (r0, r1 | r2, r3) are pairs (r0, r2), (r1, r3);
        // llama.cpp stores them interleaved as r0, r2, r1, r3.
        let hf = Tensor::new(
            &[[0f32, 0.5], [1., 1.5], [2., 2.5], [3., 3.5]],
            &Device::Cpu,
        )
        .unwrap();
        let g = permute_rows("q", &hf, 1).unwrap();
        assert_eq!(
            rows(&g),
            vec![vec![0., 0.5], vec![2., 2.5], vec![1., 1.5], vec![3., 3.5]]
        );
        assert_eq!(rows(&unpermute_rows("q", &g, 1).unwrap()), rows(&hf));
    }

    #[test]
    fn unpermute_inverts_permute_for_weights_and_biases() {
        // 3 KV heads of head_dim 8 over 5 input columns, plus a bias.
        let w = Tensor::arange(0f32, 24. * 5., &Device::Cpu)
            .unwrap()
            .reshape((24, 5))
            .unwrap();
        for n_head in [1, 2, 3, 6] {
            let raw = permute_rows("k", &w, n_head).unwrap();
            assert_ne!(rows(&raw), rows(&w));
            let back = unpermute_rows("k", &raw, n_head).unwrap();
            assert_eq!(rows(&back), rows(&w));
            // And the other way round: forward-permuting the un-permuted tensor gives the raw one.
            let un = unpermute_rows("k", &w, n_head).unwrap();
            assert_eq!(rows(&permute_rows("k", &un, n_head).unwrap()), rows(&w));
        }
        let b = Tensor::arange(0f32, 24., &Device::Cpu).unwrap();
        let raw = permute_rows("k", &b, 3).unwrap();
        assert_eq!(
            unpermute_rows("k", &raw, 3)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            b.to_vec1::<f32>().unwrap()
        );
        assert!(unpermute_rows("k", &b, 5).is_err());
        assert!(unpermute_rows("k", &b, 0).is_err());
    }
}
