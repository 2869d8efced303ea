//! `Linear`: `y = x Wᵀ + b` for row-major activations. Dense weights in their stored precision
//! ([`DenseMatrix`]: f32/bf16/f16, widened in registers) or int4
//! weights that stay packed ([`QuantLinear`], AWQ/GPTQ), picked per projection at load time, so
//! layers never know which. Fused projections load several HF weights as one matrix (q|k|v,
//! gate|up): dense ones are concatenated, int4 ones are concatenated in packed form, and parts
//! that cannot be merged (mixed dense/int4, act-order parts with different input permutations)
//! run as separate matmuls whose outputs are placed side by side.

use super::dense::DenseMatrix;
use super::quant::QuantLinear;
use super::tensor::fetch_vec;
use super::LoadOptions;
use crate::error::{ModelError, Result};
use crate::weights::WeightSource;

/// Whether a projection has a bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    /// No bias; a bias present in the checkpoint is never read.
    No,
    /// The checkpoint must hold `<prefix>.bias`.
    Yes,
    /// Use `<prefix>.bias` when the checkpoint has one (e.g. GPTQ's zero biases).
    IfPresent,
}

enum Kind {
    /// `[out_dim, in_dim]` in the stored precision.
    Dense(DenseMatrix),
    /// Packed int4.
    Int4(QuantLinear),
    /// Parts along the output dimension, each without bias, run one after another.
    Split(Vec<Linear>),
}

/// A projection from `in_dim` to `out_dim` features.
pub struct Linear {
    kind: Kind,
    /// `[out_dim]`.
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
}

impl Linear {
    /// Loads `<prefix>.weight` (`[out_dim, in_dim]`), or its int4 tensors when `opts.quant` is
    /// set and the checkpoint has `<prefix>.qweight`, and its bias.
    pub fn load(
        src: &dyn WeightSource,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: Bias,
        opts: &LoadOptions,
    ) -> Result<Self> {
        Self::load_fused(src, &[(prefix, out_dim)], in_dim, bias, opts)
    }

    /// Loads several projections of the same input as one, stacking their output rows in order.
    /// `parts` lists `(prefix, out_dim)`.
    pub fn load_fused(
        src: &dyn WeightSource,
        parts: &[(&str, usize)],
        in_dim: usize,
        bias: Bias,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let out_dim = parts.iter().map(|p| p.1).sum();
        let bias = load_bias(src, parts, bias, opts)?;
        let quantized: Vec<bool> = parts
            .iter()
            .map(|&(p, _)| is_quantized(src, p, opts))
            .collect::<Result<_>>()?;
        let kind = if quantized.iter().all(|&q| !q) {
            let mut weights = Vec::with_capacity(parts.len());
            for &(prefix, out) in parts {
                weights.push(DenseMatrix::load(
                    src,
                    &format!("{prefix}.weight"),
                    out,
                    in_dim,
                    opts,
                )?);
            }
            Kind::Dense(DenseMatrix::stack(weights)?)
        } else if let (true, Some(q)) = (quantized.iter().all(|&q| q), &opts.quant) {
            let loaded = parts
                .iter()
                .map(|&(p, out)| {
                    QuantLinear::load(src, p, in_dim, out, q).map(|l| {
                        l.with_activations(opts.int4_activations)
                            .with_bf16_prefill(opts.int4_bf16_prefill())
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut fused = QuantLinear::fuse(loaded)?;
            if fused.len() == 1 {
                Kind::Int4(fused.remove(0))
            } else {
                Kind::Split(
                    fused
                        .into_iter()
                        .map(|q| Linear {
                            in_dim,
                            out_dim: q.out_dim(),
                            kind: Kind::Int4(q),
                            bias: None,
                        })
                        .collect(),
                )
            }
        } else {
            let each = parts
                .iter()
                .map(|&p| Self::load_fused(src, &[p], in_dim, Bias::No, opts))
                .collect::<Result<Vec<_>>>()?;
            Kind::Split(each)
        };
        Ok(Linear {
            kind,
            bias,
            in_dim,
            out_dim,
        })
    }

    /// Wraps an existing `[out_dim, in_dim]` matrix (e.g. tied embeddings as the LM head).
    pub fn from_weight(weight: DenseMatrix) -> Result<Self> {
        let (out_dim, in_dim) = (weight.n(), weight.k());
        Ok(Linear {
            kind: Kind::Dense(weight),
            bias: None,
            in_dim,
            out_dim,
        })
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Bytes of weights (and bias) one forward pass reads.
    pub fn bytes(&self) -> usize {
        let w = match &self.kind {
            Kind::Dense(m) => m.bytes(),
            Kind::Int4(q) => q.packed_bytes(),
            Kind::Split(parts) => parts.iter().map(Linear::bytes).sum(),
        };
        w + self.bias.as_ref().map_or(0, |b| b.len() * 4)
    }

    /// `y[r] = x[r] Wᵀ + b` for each of the `rows` rows. Shapes: `x` `[rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        if x.len() != rows * self.in_dim {
            return Err(ModelError::Config(format!(
                "linear: input has {} values, expected {rows} x {}",
                x.len(),
                self.in_dim
            )));
        }
        let mut y = match &self.kind {
            Kind::Dense(w) => w.matmul(x, rows),
            Kind::Int4(q) => q.forward(x, rows)?,
            Kind::Split(parts) => {
                let mut y = vec![0.0f32; rows * self.out_dim];
                let mut col = 0;
                for p in parts {
                    let yp = p.forward(x, rows)?;
                    for (dst, src) in y
                        .chunks_exact_mut(self.out_dim)
                        .zip(yp.chunks_exact(p.out_dim))
                    {
                        dst[col..col + p.out_dim].copy_from_slice(src);
                    }
                    col += p.out_dim;
                }
                y
            }
        };
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

/// Whether `<prefix>` is loaded as int4: a quantization config is set, the module is not in
/// `modules_to_not_convert`, and the checkpoint has `<prefix>.qweight`. A packed weight without
/// a config (and without a dense `.weight`) is an error rather than a missing tensor.
fn is_quantized(src: &dyn WeightSource, prefix: &str, opts: &LoadOptions) -> Result<bool> {
    let packed = src.contains(&format!("{prefix}.qweight"));
    match &opts.quant {
        Some(q) => Ok(packed && !q.skips(prefix)),
        None if packed && !src.contains(&format!("{prefix}.weight")) => Err(ModelError::Config(format!(
            "{prefix} is stored quantized (qweight) but no quantization config was resolved for the model"
        ))),
        None => Ok(false),
    }
}

/// The concatenated bias of `parts` (zeros for parts without one), or `None` if none has one.
fn load_bias(
    src: &dyn WeightSource,
    parts: &[(&str, usize)],
    bias: Bias,
    opts: &LoadOptions,
) -> Result<Option<Vec<f32>>> {
    let mut biases: Vec<f32> = Vec::new();
    let mut any_bias = false;
    for &(prefix, out) in parts {
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
    Ok(any_bias.then_some(biases))
}
