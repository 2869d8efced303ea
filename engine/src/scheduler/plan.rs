//! One scheduling step: building a [`StepPlan`] and applying its results.
//!
//! Owns the step policy (budget, admission, preemption, sibling holding); the sequence state it
//! reads and writes lives in [`Scheduler`].

use super::{ScheduledSeq, Scheduler, SeqId, StepPlan};
use crate::cache::CacheError;

impl Scheduler {
    /// Plans the next step under one token budget.
    ///
    /// 1. Running sequences, in `(priority, arrival)` order: each gets its remaining tokens
    ///    (exactly 1 for a decode; a prefill chunk cut to the budget with chunked prefill on).
    ///    When its blocks cannot be allocated, the running sequence with the largest key is
    ///    preempted (possibly itself) until the allocation fits.
    /// 2. If nothing was preempted, waiting sequences in the same order, using the prefix cache
    ///    so `start_pos` skips cached tokens, while the budget, `max_num_seqs` and free blocks
    ///    allow. A sequence that does not fit stops admission for this step.
    pub fn schedule(&mut self) -> StepPlan {
        let mut plan = StepPlan::default();
        let mut budget = self.cfg.max_num_batched_tokens;
        self.schedule_running(&mut plan, &mut budget);
        if plan.preempted.is_empty() {
            self.admit_waiting(&mut plan, &mut budget);
        }
        plan
    }

    /// Called after the model ran `plan`: marks the scheduled tokens computed (registers full
    /// blocks in the prefix cache) and appends the sampled token of every seq whose
    /// ScheduledSeq.sample was true. `sampled` holds (seq_id, token) for exactly those.
    ///
    /// Entries for sequences aborted since `schedule`, stale entries, and tokens for sequences
    /// that were not due a sample are ignored.
    pub fn update(&mut self, plan: &StepPlan, sampled: &[(SeqId, u32)]) {
        for scheduled in &plan.seqs {
            let Some(seq) = self.seqs.get_mut(&scheduled.seq_id) else {
                continue;
            };
            if !seq.running || seq.n_computed != scheduled.start_pos {
                continue;
            }
            seq.n_computed =
                (scheduled.start_pos + scheduled.token_ids.len()).min(seq.tokens.len());
            self.kv
                .register_full_blocks(scheduled.seq_id, &seq.tokens, seq.n_computed);
        }
        for &(seq_id, token) in sampled {
            if let Some(seq) = self.seqs.get_mut(&seq_id) {
                if seq.running && seq.n_computed == seq.tokens.len() {
                    seq.tokens.push(token);
                }
            }
        }
    }

    /// Step 1 of [`schedule`](Self::schedule).
    fn schedule_running(&mut self, plan: &mut StepPlan, budget: &mut usize) {
        let mut idx = 0;
        while let Some(seq_id) = self.running.get(idx) {
            if *budget == 0 {
                break;
            }
            let Some(seq) = self.seqs.get(&seq_id) else {
                // Unreachable by construction; drop the dangling id rather than loop on it.
                self.running.remove(seq_id);
                continue;
            };
            let n_remaining = seq.tokens.len().saturating_sub(seq.n_computed);
            let n_computed = seq.n_computed;
            let Some(n_new) = self.chunk_len(n_remaining, *budget, plan.seqs.is_empty()) else {
                idx += 1;
                continue;
            };
            if !self.allocate_or_preempt(seq_id, n_computed + n_new, plan) {
                // The sequence preempted itself: it had the largest key, so none follow it.
                break;
            }
            plan.seqs.extend(self.scheduled_seq(seq_id, n_new));
            *budget = budget.saturating_sub(n_new);
            idx += 1;
        }
    }

    /// Grows `seq_id`'s blocks to cover `n_tokens`, preempting running sequences from the tail
    /// until it fits. Returns false if `seq_id` itself was preempted.
    fn allocate_or_preempt(&mut self, seq_id: SeqId, n_tokens: usize, plan: &mut StepPlan) -> bool {
        loop {
            let victim = match self.kv.allocate_slots(seq_id, n_tokens) {
                Ok(()) => return true,
                Err(CacheError::NoFreeBlocks { .. }) => self.running.last().unwrap_or(seq_id),
                // A running sequence without a block table: recompute it from scratch.
                Err(_) => seq_id,
            };
            self.preempt(victim, plan);
            if victim == seq_id {
                return false;
            }
        }
    }

    /// Recompute preemption: frees the blocks of `seq_id` at once (registered full blocks stay
    /// hashed, so re-admission can hit them), forgets its computed tokens and requeues it with
    /// its original key, which puts it ahead of every later arrival of its priority.
    fn preempt(&mut self, seq_id: SeqId, plan: &mut StepPlan) {
        self.running.remove(seq_id);
        self.kv.free(seq_id);
        if let Some(seq) = self.seqs.get_mut(&seq_id) {
            seq.n_computed = 0;
            seq.running = false;
            self.waiting.insert(seq.key, seq_id);
        }
        plan.preempted.push(seq_id);
        self.num_preemptions += 1;
        tracing::debug!(seq_id, "preempted (recompute)");
    }

    /// Step 2 of [`schedule`](Self::schedule).
    fn admit_waiting(&mut self, plan: &mut StepPlan, budget: &mut usize) {
        let mut idx = 0;
        while let Some(seq_id) = self.waiting.get(idx) {
            if *budget == 0 || self.running.len() >= self.cfg.max_num_seqs {
                break;
            }
            if self.is_held_sibling(seq_id) {
                idx += 1;
                continue;
            }
            let Some(seq) = self.seqs.get(&seq_id) else {
                self.waiting.remove(seq_id);
                continue;
            };
            let prefix = self.kv.find_cached_prefix(&seq.tokens, seq.extra_key);
            let n_cached = prefix.n_tokens();
            let n_remaining = seq.tokens.len().saturating_sub(n_cached);
            let Some(n_new) = self.chunk_len(n_remaining, *budget, plan.seqs.is_empty()) else {
                break;
            };
            let (key, group, extra_key) = (seq.key, seq.group, seq.extra_key);
            if self
                .kv
                .allocate_new_seq(seq_id, &prefix, n_cached + n_new, extra_key)
                .is_err()
            {
                break;
            }
            if let Some(seq) = self.seqs.get_mut(&seq_id) {
                seq.n_computed = n_cached;
                seq.running = true;
            }
            self.waiting.remove(seq_id);
            self.running.insert(key, seq_id);
            if let (Some(group), true) = (group, self.kv.prefix_caching_enabled()) {
                self.group_leaders.entry(group).or_insert(seq_id);
            }
            plan.seqs.extend(self.scheduled_seq(seq_id, n_new));
            *budget = budget.saturating_sub(n_new);
        }
    }

    /// Tokens to schedule for a sequence with `n_remaining` uncomputed tokens, or `None` if it
    /// cannot run this step. With chunked prefill off, work larger than the remaining budget
    /// runs whole only when it is `alone` (first in the step); that step exceeds the budget.
    fn chunk_len(&self, n_remaining: usize, budget: usize, alone: bool) -> Option<usize> {
        if n_remaining == 0 || budget == 0 {
            None
        } else if n_remaining <= budget {
            Some(n_remaining)
        } else if self.cfg.enable_chunked_prefill {
            Some(budget)
        } else if alone {
            Some(n_remaining)
        } else {
            None
        }
    }

    /// Whether `seq_id` is a sibling waiting for its group leader's prompt to be computed (so it
    /// can then hit the leader's cached blocks). Never true with prefix caching off.
    fn is_held_sibling(&self, seq_id: SeqId) -> bool {
        if !self.kv.prefix_caching_enabled() {
            return false;
        }
        let Some(group) = self.seqs.get(&seq_id).and_then(|seq| seq.group) else {
            return false;
        };
        match self.group_leaders.get(&group) {
            Some(&leader) if leader != seq_id => self
                .seqs
                .get(&leader)
                .is_some_and(|leader| leader.n_computed < leader.n_prompt),
            _ => false,
        }
    }

    /// The plan entry feeding `n_new` tokens of `seq_id` from its computed count on.
    fn scheduled_seq(&self, seq_id: SeqId, n_new: usize) -> Option<ScheduledSeq> {
        let seq = self.seqs.get(&seq_id)?;
        let start_pos = seq.n_computed;
        let end = start_pos + n_new;
        let token_ids = seq.tokens.get(start_pos..end)?.to_vec();
        let table = self.kv.block_table(seq_id);
        let n_blocks = self.kv.blocks_for(end).min(table.len());
        Some(ScheduledSeq {
            seq_id,
            token_ids,
            start_pos,
            block_table: table[..n_blocks].to_vec(),
            sample: end == seq.tokens.len(),
        })
    }
}
