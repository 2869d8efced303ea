//! `DenseMatrix`: a `[n, k]` weight kept in its stored precision (f32, bf16 or f16) and multiplied
//! by activations through `candela_kernels::dense` (f32, or rounded to bf16 for bf16 weights
//! unless `LoadOptions::dense_activations` asks for f32). Shared (`Arc`) so a tied LM head and the
//! embedding use one copy.

use super::{DenseActivations, LoadOptions, WeightDType};
use crate::error::{ModelError, Result};
use crate::weights::WeightSource;
use candela_kernels::dense::{matmul, matmul_exact, DenseWeight};
use candela_kernels::memory::huge_page_copy;
use candle_core::DType;
use half::{bf16, f16};
use std::sync::Arc;

/// Owned weight storage.
#[derive(Debug)]
pub enum DenseStore {
    /// f32 values.
    F32(Vec<f32>),
    /// bfloat16 values.
    BF16(Vec<bf16>),
    /// float16 values.
    F16(Vec<f16>),
}

/// A row-major `[n, k]` matrix (`n` output features, `k` input features).
#[derive(Debug, Clone)]
pub struct DenseMatrix {
    store: Arc<DenseStore>,
    n: usize,
    k: usize,
    /// Keep activations in f32 even where the kernel would round them (bf16 weights).
    exact: bool,
}

impl DenseMatrix {
    /// Loads `name`, checking it is `[n, k]`, stored per `opts.dtype`: `Auto` keeps the
    /// checkpoint's precision (bf16/f16/f32; anything else becomes f32), the others round to theirs.
    pub fn load(
        src: &dyn WeightSource,
        name: &str,
        n: usize,
        k: usize,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let t = src.get(name)?;
        if t.dims() != [n, k] {
            return Err(ModelError::ShapeMismatch {
                name: name.into(),
                expected: vec![n, k],
                got: t.dims().to_vec(),
            });
        }
        let target = match (opts.dtype, t.dtype()) {
            (WeightDType::Auto, d @ (DType::BF16 | DType::F16 | DType::F32)) => d,
            (WeightDType::Auto, _) | (WeightDType::F32, _) => DType::F32,
            (WeightDType::BF16, _) => DType::BF16,
            (WeightDType::F16, _) => DType::F16,
        };
        let flat = t.to_dtype(target)?.flatten_all()?;
        // Weights are streamed every decode step: keep them on huge pages where possible.
        let store = match target {
            DType::BF16 => DenseStore::BF16(huge_page_copy(&flat.to_vec1::<bf16>()?)),
            DType::F16 => DenseStore::F16(huge_page_copy(&flat.to_vec1::<f16>()?)),
            _ => DenseStore::F32(huge_page_copy(&flat.to_vec1::<f32>()?)),
        };
        Ok(DenseMatrix {
            store: Arc::new(store),
            n,
            k,
            exact: opts.dense_activations == DenseActivations::F32,
        })
    }

    /// Stacks matrices with the same `k` along `n` (fused q|k|v or gate|up), in the first one's
    /// precision.
    pub fn stack(parts: Vec<DenseMatrix>) -> Result<Self> {
        let k = parts
            .first()
            .map(|p| p.k)
            .ok_or_else(|| ModelError::Config("nothing to stack".into()))?;
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        let n = parts.iter().map(|p| p.n).sum();
        // Parts in the first one's precision are copied as stored; others go through f32.
        let store = match &*parts[0].store {
            DenseStore::F32(_) => DenseStore::F32(concat(
                &parts,
                |s| match s {
                    DenseStore::F32(v) => Some(v),
                    _ => None,
                },
                |x| x,
            )),
            DenseStore::BF16(_) => DenseStore::BF16(concat(
                &parts,
                |s| match s {
                    DenseStore::BF16(v) => Some(v),
                    _ => None,
                },
                bf16::from_f32,
            )),
            DenseStore::F16(_) => DenseStore::F16(concat(
                &parts,
                |s| match s {
                    DenseStore::F16(v) => Some(v),
                    _ => None,
                },
                f16::from_f32,
            )),
        };
        Ok(DenseMatrix {
            store: Arc::new(store),
            n,
            k,
            exact: parts[0].exact,
        })
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match &*self.store {
            DenseStore::F32(v) => v.len() * 4,
            DenseStore::BF16(v) => v.len() * 2,
            DenseStore::F16(v) => v.len() * 2,
        }
    }

    fn weight(&self) -> DenseWeight<'_> {
        match &*self.store {
            DenseStore::F32(v) => DenseWeight::F32(v),
            DenseStore::BF16(v) => DenseWeight::BF16(v),
            DenseStore::F16(v) => DenseWeight::F16(v),
        }
    }

    /// All values widened to f32 (tests, stacking).
    pub fn to_f32(&self) -> Vec<f32> {
        match &*self.store {
            DenseStore::F32(v) => v.clone(),
            DenseStore::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            DenseStore::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        }
    }

    /// Row `i` widened into `out` (`[k]`): an embedding lookup.
    pub fn row_into(&self, i: usize, out: &mut [f32]) {
        let r = i * self.k..(i + 1) * self.k;
        match &*self.store {
            DenseStore::F32(v) => out.copy_from_slice(&v[r]),
            DenseStore::BF16(v) => v[r].iter().zip(out).for_each(|(a, o)| *o = a.to_f32()),
            DenseStore::F16(v) => v[r].iter().zip(out).for_each(|(a, o)| *o = a.to_f32()),
        }
    }

    /// `x Wᵀ`: `[rows, k]` → `[rows, n]`.
    pub fn matmul(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = candela_kernels::pool::zeros(rows * self.n);
        if self.exact {
            matmul_exact(x, rows, self.weight(), self.n, self.k, &mut out);
        } else {
            matmul(x, rows, self.weight(), self.n, self.k, &mut out);
        }
        out
    }
}

/// Concatenates the parts' values: slices `same` recognises are copied as they are, the rest are
/// widened to f32 and converted with `from_f32`.
fn concat<T: Copy>(
    parts: &[DenseMatrix],
    same: impl Fn(&DenseStore) -> Option<&Vec<T>>,
    from_f32: impl Fn(f32) -> T,
) -> Vec<T> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.n * p.k).sum());
    for p in parts {
        match same(&p.store) {
            Some(v) => out.extend_from_slice(v),
            None => out.extend(p.to_f32().into_iter().map(&from_f32)),
        }
    }
    huge_page_copy(&out)
}
