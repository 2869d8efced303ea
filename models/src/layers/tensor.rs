//! Weight fetching with shape checks and dtype rounding, and raw f32 access to CPU tensors.

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

/// Runs `f` on the f32 data of a contiguous CPU tensor without copying it.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(ModelError::Config("tensor is not on the CPU".into()));
    };
    let data = cpu.as_slice::<f32>()?;
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| ModelError::Config("tensor is not contiguous".into()))?;
    Ok(f(&data[start..end]))
}
