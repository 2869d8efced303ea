//! Token embedding lookup (and its matrix, shared with the LM head when tied).

use super::tensor::{fetch, with_f32};
use super::LoadOptions;
use crate::error::{ModelError, Result};
use crate::weights::WeightSource;
use candle_core::Tensor;

/// `[vocab, hidden]` embedding table.
pub struct Embedding {
    table: Tensor,
    hidden: usize,
    vocab: usize,
}

impl Embedding {
    /// Loads `<name>` of shape `[vocab, hidden]`.
    pub fn load(src: &dyn WeightSource, name: &str, vocab: usize, hidden: usize, opts: &LoadOptions) -> Result<Self> {
        Ok(Embedding { table: fetch(src, name, &[vocab, hidden], opts)?, hidden, vocab })
    }

    /// The table, for a tied LM head.
    pub fn table(&self) -> &Tensor {
        &self.table
    }

    /// Rows of the table for `ids`: `[T]` → `[T, hidden]`. Ids past the vocab are an error.
    pub fn forward(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.vocab) {
            return Err(ModelError::Config(format!("token id {bad} is out of range for vocab size {}", self.vocab)));
        }
        with_f32(&self.table, |t| {
            let mut out = Vec::with_capacity(ids.len() * self.hidden);
            for &i in ids {
                out.extend_from_slice(&t[i as usize * self.hidden..][..self.hidden]);
            }
            out
        })
    }
}
