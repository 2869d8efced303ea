//! `Linear`: `y = x Wᵀ + b` for row-major activations; fused projections load several HF weights
//! as one matrix (q|k|v, gate|up) so a step runs one matmul instead of three.

use super::tensor::{fetch, fetch_vec, with_f32};
use super::LoadOptions;
use crate::error::Result;
use crate::weights::WeightSource;
use candle_core::{Device, Tensor};

/// Whether a projection has a bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    /// No bias; a bias present in the checkpoint is an error only if non-zero... never read.
    No,
    /// The checkpoint must hold `<prefix>.bias`.
    Yes,
    /// Use `<prefix>.bias` when the checkpoint has one (e.g. GPTQ's zero biases).
    IfPresent,
}

/// A dense projection from `in_dim` to `out_dim` features.
pub struct Linear {
    /// `[out_dim, in_dim]` f32.
    weight: Tensor,
    /// `[out_dim]`.
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
}

impl Linear {
    /// Loads `<prefix>.weight` (`[out_dim, in_dim]`) and its bias.
    pub fn load(src: &dyn WeightSource, prefix: &str, in_dim: usize, out_dim: usize, bias: Bias, opts: &LoadOptions) -> Result<Self> {
        Self::load_fused(src, &[(prefix, out_dim)], in_dim, bias, opts)
    }

    /// Loads several projections of the same input as one, stacking their output rows in order.
    /// `parts` lists `(prefix, out_dim)`.
    pub fn load_fused(src: &dyn WeightSource, parts: &[(&str, usize)], in_dim: usize, bias: Bias, opts: &LoadOptions) -> Result<Self> {
        let mut weights = Vec::with_capacity(parts.len());
        let mut biases: Vec<f32> = Vec::new();
        let mut any_bias = false;
        for &(prefix, out) in parts {
            weights.push(fetch(src, &format!("{prefix}.weight"), &[out, in_dim], opts)?);
            let bname = format!("{prefix}.bias");
            let want = match bias {
                Bias::No => false,
                Bias::Yes => true,
                Bias::IfPresent => src.contains(&bname),
            };
            if want {
                biases.extend(fetch_vec(src, &bname, &[out], opts)?);
                any_bias = true;
            } else {
                biases.extend(std::iter::repeat_n(0.0, out));
            }
        }
        let weight = if weights.len() == 1 { weights.pop().expect("one part") } else { Tensor::cat(&weights, 0)? };
        let out_dim = parts.iter().map(|p| p.1).sum();
        Ok(Linear { weight, bias: any_bias.then_some(biases), in_dim, out_dim })
    }

    /// Wraps an existing `[out_dim, in_dim]` f32 matrix (e.g. tied embeddings as the LM head).
    pub fn from_weight(weight: Tensor) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        Ok(Linear { weight, bias: None, in_dim, out_dim })
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `y[r] = x[r] Wᵀ + b` for each of the `rows` rows. Shapes: `x` `[rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        debug_assert_eq!(x.len(), rows * self.in_dim);
        let xt = Tensor::from_slice(x, (rows, self.in_dim), &Device::Cpu)?;
        let y = xt.matmul(&self.weight.t()?)?;
        let mut y = with_f32(&y.contiguous()?, |s| s.to_vec())?;
        if let Some(b) = &self.bias {
            for row in y.chunks_mut(self.out_dim) {
                for (v, bb) in row.iter_mut().zip(b) {
                    *v += bb;
                }
            }
        }
        Ok(y)
    }
}
