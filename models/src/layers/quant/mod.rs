//! Int4 weight-only quantization (AWQ, GPTQ) behind [`super::linear::Linear`]: the typed config
//! (`config.rs`), the two checkpoint formats (`awq.rs`, `gptq.rs`) and [`QuantLinear`], a
//! projection whose weights stay packed at 4 bits (plus f16 group scales and integer zeros) in
//! the kernel layout of `candela_kernels::int4` and are dequantized inside the matmul.

mod awq;
pub mod config;
mod gptq;

pub use config::{QuantConfig, QuantFormat, QuantMethod, SUPPORTED_METHODS};

use super::Int4Activations;
use crate::error::{ModelError, Result};
use crate::weights::WeightSource;
use candela_kernels::int4::GEMV_MAX_ROWS;
use candela_kernels::{Int4Impl, Int4Weights};
use candle_core::DType;

/// `(group_size, groups)` of a `[k in, n out]` projection packed 8 nibbles per int32, after
/// checking both dimensions are multiples of 8 (`format` names the checkpoint type in errors).
fn group_layout(
    prefix: &str,
    format: &str,
    k: usize,
    n: usize,
    cfg: &QuantConfig,
) -> Result<(usize, usize)> {
    if !k.is_multiple_of(8) || !n.is_multiple_of(8) {
        return Err(ModelError::Config(format!(
            "{prefix}: {format} needs in/out features that are multiples of 8, got {k}/{n}"
        )));
    }
    let gs = cfg.group_size.unwrap_or(k);
    Ok((gs, k.div_ceil(gs)))
}

/// Fetches an int32 tensor with shape `shape` as a vector.
fn ints(src: &dyn WeightSource, name: &str, shape: &[usize]) -> Result<Vec<i32>> {
    let t = src.get(name)?;
    check_shape(name, t.dims(), shape)?;
    if t.dtype() != DType::I32 {
        return Err(ModelError::Config(format!(
            "{name} has dtype {:?}, expected int32",
            t.dtype()
        )));
    }
    Ok(t.flatten_all()?.to_vec1::<i32>()?)
}

/// Fetches a scale tensor as f16 bit patterns (f16 as stored; other float dtypes are rounded to f16).
fn f16_bits(src: &dyn WeightSource, name: &str, shape: &[usize]) -> Result<Vec<u16>> {
    let t = src.get(name)?;
    check_shape(name, t.dims(), shape)?;
    let v = t
        .to_dtype(DType::F16)?
        .flatten_all()?
        .to_vec1::<half::f16>()?;
    Ok(v.into_iter().map(half::f16::to_bits).collect())
}

fn check_shape(name: &str, got: &[usize], expected: &[usize]) -> Result<()> {
    if got != expected {
        return Err(ModelError::ShapeMismatch {
            name: name.to_string(),
            expected: expected.to_vec(),
            got: got.to_vec(),
        });
    }
    Ok(())
}

/// A quantized projection `y = x Wᵀ` from `in_dim` to `out_dim` features, W packed at 4 bits.
#[derive(Debug, Clone)]
pub struct QuantLinear {
    w: Int4Weights,
    /// Act-order: kernel input position → original input channel, `[in_dim]`.
    perm: Option<Vec<u32>>,
    /// The kernel implementation of decode-sized batches (exact or int8 activations).
    imp: Int4Impl,
    /// The kernel implementation of batches of more than `GEMV_MAX_ROWS` rows (exact or bf16
    /// activations).
    prefill: Int4Impl,
}

impl QuantLinear {
    /// Loads `<prefix>.qweight` and friends of a `[out_dim, in_dim]` projection in `cfg`'s format.
    pub fn load(
        src: &dyn WeightSource,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        cfg: &QuantConfig,
    ) -> Result<Self> {
        match cfg.format {
            QuantFormat::AwqGemm => Ok(QuantLinear {
                w: awq::load(src, prefix, in_dim, out_dim, cfg)?,
                perm: None,
                imp: Int4Impl::best(),
                prefill: Int4Impl::best(),
            }),
            QuantFormat::GptqV1 | QuantFormat::GptqV2 => {
                let (w, perm) = gptq::load(src, prefix, in_dim, out_dim, cfg)?;
                Ok(QuantLinear {
                    w,
                    perm,
                    imp: Int4Impl::best(),
                    prefill: Int4Impl::best(),
                })
            }
        }
    }

    /// Chooses the activation precision (loading picks exact f32).
    pub fn with_activations(mut self, a: Int4Activations) -> Self {
        self.imp = match a {
            Int4Activations::Int8 => Int4Impl::best_q8(),
            Int4Activations::F32 => Int4Impl::best(),
        };
        self
    }

    /// Chooses the prefill activation precision: bf16 (where the CPU has bf16 dot products)
    /// or exact f32 (what loading picks).
    pub fn with_bf16_prefill(mut self, bf16: bool) -> Self {
        self.prefill = if bf16 {
            Int4Impl::best_bf16()
        } else {
            Int4Impl::best()
        };
        self
    }

    /// Stacks projections of the same input along the output dimension, staying packed.
    /// Adjacent parts with the same input permutation and group size are merged; the result has
    /// one element unless act-order parts permute their inputs differently.
    pub fn fuse(parts: Vec<QuantLinear>) -> Result<Vec<QuantLinear>> {
        let mut out: Vec<QuantLinear> = Vec::new();
        let mut run: Vec<QuantLinear> = Vec::new();
        for p in parts {
            if let Some(last) = run.last() {
                if last.perm != p.perm
                    || last.imp != p.imp
                    || last.prefill != p.prefill
                    || last.w.group_size() != p.w.group_size()
                    || last.w.k() != p.w.k()
                {
                    out.push(Self::concat(std::mem::take(&mut run))?);
                }
            }
            run.push(p);
        }
        if !run.is_empty() {
            out.push(Self::concat(run)?);
        }
        Ok(out)
    }

    fn concat(mut run: Vec<QuantLinear>) -> Result<QuantLinear> {
        if run.len() == 1 {
            return run
                .pop()
                .ok_or_else(|| ModelError::Config("empty fused projection".into()));
        }
        let (perm, imp, prefill) = (run[0].perm.clone(), run[0].imp, run[0].prefill);
        let w = Int4Weights::concat(run.into_iter().map(|p| p.w).collect())
            .map_err(|e| ModelError::Config(e.to_string()))?;
        Ok(QuantLinear {
            w,
            perm,
            imp,
            prefill,
        })
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        self.w.k()
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.w.n()
    }

    /// Bytes of packed weights, scales and zeros.
    pub fn packed_bytes(&self) -> usize {
        self.w.packed_bytes()
    }

    /// `x Wᵀ` for `rows` rows: `x` `[rows, in]` → `[rows, out]` (f32, no bias).
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let (k, n) = (self.w.k(), self.w.n());
        if x.len() != rows * k {
            return Err(ModelError::Config(format!(
                "quantized linear: input has {} values, expected {rows} x {k}",
                x.len()
            )));
        }
        let mut y = vec![0.0f32; rows * n];
        let permuted;
        let xs = match &self.perm {
            None => x,
            Some(p) => {
                permuted = x
                    .chunks_exact(k)
                    .flat_map(|row| p.iter().map(move |&i| row[i as usize]))
                    .collect::<Vec<f32>>();
                &permuted
            }
        };
        let imp = if rows > GEMV_MAX_ROWS {
            self.prefill
        } else {
            self.imp
        };
        self.w
            .matmul_with(imp, xs, rows, &mut y)
            .map_err(|e| ModelError::Config(e.to_string()))?;
        Ok(y)
    }

    /// The dense `[out, in]` f32 weight in the original input-channel order (tests only).
    pub fn dequantize(&self) -> Vec<f32> {
        let d = self.w.dequantize();
        let k = self.w.k();
        let Some(p) = &self.perm else { return d };
        let mut w = vec![0.0; d.len()];
        for (dst, src) in w.chunks_exact_mut(k).zip(d.chunks_exact(k)) {
            for (pos, &i) in p.iter().enumerate() {
                dst[i as usize] = src[pos];
            }
        }
        w
    }
}

/// Dense `[out, in]` f32 weight of `<prefix>` computed directly from the checkpoint's packed
/// tensors by the format's definition, independent of the kernel repacking (a test oracle).
pub fn unpack_checkpoint(
    src: &dyn WeightSource,
    prefix: &str,
    in_dim: usize,
    out_dim: usize,
    cfg: &QuantConfig,
) -> Result<Vec<f32>> {
    match cfg.format {
        QuantFormat::AwqGemm => awq::unpack(src, prefix, in_dim, out_dim, cfg),
        QuantFormat::GptqV1 | QuantFormat::GptqV2 => {
            gptq::unpack(src, prefix, in_dim, out_dim, cfg)
        }
    }
}
