//! Token embedding lookup (and its matrix, shared with the LM head when tied).

use super::dense::DenseMatrix;
use super::LoadOptions;
use crate::error::{ModelError, Result};
use crate::weights::WeightSource;

/// `[vocab, hidden]` embedding table.
pub struct Embedding {
    table: DenseMatrix,
    hidden: usize,
    vocab: usize,
}

impl Embedding {
    /// Loads `<name>` of shape `[vocab, hidden]`.
    pub fn load(
        src: &dyn WeightSource,
        name: &str,
        vocab: usize,
        hidden: usize,
        opts: &LoadOptions,
    ) -> Result<Self> {
        Ok(Embedding {
            table: DenseMatrix::load(src, name, vocab, hidden, opts)?,
            hidden,
            vocab,
        })
    }

    /// The table, for a tied LM head.
    pub fn table(&self) -> &DenseMatrix {
        &self.table
    }

    /// Rows of the table for `ids`: `[T]` → `[T, hidden]`. Ids past the vocab are an error.
    pub fn forward(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.vocab) {
            return Err(ModelError::Config(format!(
                "token id {bad} is out of range for vocab size {}",
                self.vocab
            )));
        }
        let mut out = vec![0.0; ids.len() * self.hidden];
        for (&i, row) in ids.iter().zip(out.chunks_mut(self.hidden)) {
            self.table.row_into(i as usize, row);
        }
        Ok(out)
    }
}
