//! `ForwardBatch`: the flattened tokens of one engine step, as the model sees them.

/// One sequence's share of a [`ForwardBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqInput {
    /// Row of the sequence's first token in the batch.
    pub query_start: usize,
    /// Tokens of this sequence in the batch (a prefill chunk, or 1 for a decode).
    pub query_len: usize,
    /// Tokens in the KV cache after this step: cached prefix + `query_len`.
    pub context_len: usize,
    /// Physical KV blocks covering positions `0..context_len`.
    pub block_table: Vec<u32>,
}

/// The tokens of one step for every scheduled sequence, flattened ("varlen").
///
/// Invariants: `input_ids`, `positions` and `slot_mapping` have one entry per token `T`;
/// sequences are contiguous and in order; `logits_rows` lists the rows whose next-token logits
/// are wanted (usually the last row of each sequence that samples).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardBatch {
    /// Token ids, `[T]`.
    pub input_ids: Vec<u32>,
    /// Position of each token in its sequence, `[T]`.
    pub positions: Vec<u32>,
    /// KV cache slot (`block * block_size + offset`) of each token, `[T]`.
    pub slot_mapping: Vec<u32>,
    /// Per-sequence layout, `[B]`.
    pub seqs: Vec<SeqInput>,
    /// Rows of the batch to compute logits for, `[L]`.
    pub logits_rows: Vec<usize>,
}

impl ForwardBatch {
    /// Appends a sequence chunk: `tokens` at positions `start_pos..`, cached in `block_table`.
    /// Returns the batch row of the chunk's last token.
    pub fn push_seq(
        &mut self,
        tokens: &[u32],
        start_pos: usize,
        block_table: &[u32],
        block_size: usize,
    ) -> usize {
        let query_start = self.input_ids.len();
        for (i, &t) in tokens.iter().enumerate() {
            let pos = start_pos + i;
            self.input_ids.push(t);
            self.positions.push(pos as u32);
            let blk = block_table[pos / block_size];
            self.slot_mapping
                .push(blk * block_size as u32 + (pos % block_size) as u32);
        }
        self.seqs.push(SeqInput {
            query_start,
            query_len: tokens.len(),
            context_len: start_pos + tokens.len(),
            block_table: block_table.to_vec(),
        });
        self.input_ids.len() - 1
    }

    /// Number of tokens `T`.
    pub fn num_tokens(&self) -> usize {
        self.input_ids.len()
    }
}
