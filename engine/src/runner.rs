//! The model runner: turns a [`StepPlan`] into a `ForwardBatch`, runs the model over the KV cache
//! and returns the logits rows of the sequences that sample. Owns the model and the KV memory.

use crate::scheduler::{SeqId, StepPlan};
use candela_models::{CausalLm, ForwardBatch, KvCache, Result};

/// Model + KV memory.
pub struct ModelRunner {
    model: Box<dyn CausalLm>,
    kv: KvCache,
}

/// Logits of one step: `rows[i]` belongs to `seq_ids[i]`, each `vocab` wide.
pub struct StepLogits {
    /// Sequences that sample, in plan order.
    pub seq_ids: Vec<SeqId>,
    /// Row-major `[seq_ids.len(), vocab]`.
    pub logits: Vec<f32>,
    /// Row width.
    pub vocab: usize,
}

impl StepLogits {
    /// The logits row of the `i`-th sampling sequence.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.logits[i * self.vocab..(i + 1) * self.vocab]
    }
}

impl ModelRunner {
    /// Pairs a model with its KV memory.
    pub fn new(model: Box<dyn CausalLm>, kv: KvCache) -> Self {
        ModelRunner { model, kv }
    }

    /// The model.
    pub fn model(&self) -> &dyn CausalLm {
        self.model.as_ref()
    }

    /// Builds the batch for `plan` (logits only for sequences whose chunk reaches their end).
    pub fn prepare(&self, plan: &StepPlan) -> (ForwardBatch, Vec<SeqId>) {
        let mut batch = ForwardBatch::default();
        let mut sampling = Vec::new();
        let bs = self.kv.layout.block_size;
        for s in &plan.seqs {
            let last = batch.push_seq(&s.token_ids, s.start_pos, &s.block_table, bs);
            if s.sample {
                batch.logits_rows.push(last);
                sampling.push(s.seq_id);
            }
        }
        (batch, sampling)
    }

    /// Runs one step.
    pub fn execute(&mut self, plan: &StepPlan) -> Result<StepLogits> {
        let (batch, seq_ids) = self.prepare(plan);
        let logits = self.model.forward(&batch, &mut self.kv)?;
        Ok(StepLogits {
            seq_ids,
            logits,
            vocab: self.model.config().vocab_size,
        })
    }
}
