//! Weight fetching with shape checks and dtype rounding (small tensors: norms, biases).

use super::{LoadOptions, WeightDType};
use crate::error::{ModelError, Result};
use crate::weights::WeightSource;
use candle_core::{DType, Tensor};

/// Fetches `name`, checks it has `shape`, and returns it as contiguous f32 rounded per `opts`.
pub fn fetch(
    src: &dyn WeightSource,
    name: &str,
    shape: &[usize],
    opts: &LoadOptions,
) -> Result<Tensor> {
    let t = src.get(name)?;
    if t.dims() != shape {
        return Err(ModelError::ShapeMismatch {
            name: name.to_string(),
            expected: shape.to_vec(),
            got: t.dims().to_vec(),
        });
    }
    let t = match opts.dtype {
        WeightDType::Auto | WeightDType::F32 => t,
        WeightDType::BF16 => t.to_dtype(DType::BF16)?,
        WeightDType::F16 => t.to_dtype(DType::F16)?,
    };
    Ok(t.to_dtype(DType::F32)?.contiguous()?)
}

/// Fetches a tensor as a `Vec<f32>` (small tensors: norms, biases).
pub fn fetch_vec(
    src: &dyn WeightSource,
    name: &str,
    shape: &[usize],
    opts: &LoadOptions,
) -> Result<Vec<f32>> {
    Ok(fetch(src, name, shape, opts)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}
