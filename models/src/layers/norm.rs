//! RMSNorm layer (weights + epsilon) over the kernels' row op.

use super::tensor::fetch_vec;
use super::LoadOptions;
use crate::error::Result;
use crate::weights::WeightSource;
use candela_kernels::norm;

/// Root-mean-square normalisation with a learned scale.
pub struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    /// Loads `<name>` of shape `[dim]`.
    pub fn load(
        src: &dyn WeightSource,
        name: &str,
        dim: usize,
        eps: f64,
        opts: &LoadOptions,
    ) -> Result<Self> {
        Ok(RmsNorm {
            weight: fetch_vec(src, name, &[dim], opts)?,
            eps: eps as f32,
        })
    }

    /// `[rows, dim]` → normalised `[rows, dim]`.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        norm::rms_norm(x, &self.weight, self.eps, &mut out);
        out
    }

    /// `residual += x`, returns `rms_norm(residual)`.
    pub fn add_forward(&self, residual: &mut [f32], x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        norm::add_rms_norm(residual, x, &self.weight, self.eps, &mut out);
        out
    }
}
