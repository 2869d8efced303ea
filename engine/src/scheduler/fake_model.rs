//! Test support: a fake paged model and a step driver for the scheduler tests.
//!
//! The fake model stores token ids in its paged KV slots and samples a token that hashes the whole
//! context read back through the block table, so a wrong table, a bad prefix hit or a lost token
//! changes the output.

use std::collections::HashMap;

use super::{Scheduler, SchedulerConfig, SeqId, StepPlan};

/// A model with a paged KV store of token ids; the sampled token is a hash of the whole context
/// as read through the block table.
pub(super) struct FakeModel {
    block_size: usize,
    kv: Vec<Vec<Option<u32>>>,
}

impl FakeModel {
    pub(super) fn new(cfg: &SchedulerConfig) -> Self {
        Self {
            block_size: cfg.block_size,
            kv: vec![vec![None; cfg.block_size]; cfg.num_blocks],
        }
    }

    pub(super) fn run(&mut self, plan: &StepPlan) -> Vec<(SeqId, u32)> {
        let bs = self.block_size;
        let mut sampled = Vec::new();
        for s in &plan.seqs {
            let end = s.start_pos + s.token_ids.len();
            assert_eq!(s.block_table.len(), end.div_ceil(bs), "table covers 0..end");
            for (i, &token) in s.token_ids.iter().enumerate() {
                let pos = s.start_pos + i;
                self.kv[s.block_table[pos / bs] as usize][pos % bs] = Some(token);
            }
            if s.sample {
                let context = (0..end).map(|p| self.kv[s.block_table[p / bs] as usize][p % bs]);
                let hash = context.fold(17u64, |h, t| {
                    (h ^ u64::from(t.expect("context written"))).wrapping_mul(0x100_0000_01b3)
                });
                sampled.push((s.seq_id, (hash % 50_000) as u32));
            }
        }
        sampled
    }
}

/// Runs schedule/model/update until no work is left, finishing each sequence after `max_new`
/// outputs and checking per-step invariants. Returns each sequence's outputs and every plan.
pub(super) fn drive(
    s: &mut Scheduler,
    model: &mut FakeModel,
    max_new: usize,
) -> (HashMap<SeqId, Vec<u32>>, Vec<StepPlan>) {
    let prompt_lens: HashMap<SeqId, usize> =
        s.seqs.iter().map(|(&id, q)| (id, q.n_prompt)).collect();
    let mut outputs = HashMap::new();
    let mut plans = Vec::new();
    for _ in 0..10_000 {
        if !s.has_work() {
            return (outputs, plans);
        }
        let plan = s.schedule();
        let n_tokens: usize = plan.seqs.iter().map(|q| q.token_ids.len()).sum();
        assert!(n_tokens <= s.cfg.max_num_batched_tokens || plan.seqs.len() == 1);
        assert!(plan.seqs.iter().all(|q| !q.token_ids.is_empty()));
        assert!(plan.seqs.len() <= s.cfg.max_num_seqs);
        assert!(s.stats().num_running <= s.cfg.max_num_seqs);
        for &victim in &plan.preempted {
            assert!(s.kv.block_table(victim).is_empty(), "victim's blocks freed");
        }
        let sampled = model.run(&plan);
        s.update(&plan, &sampled);
        for (id, _) in sampled {
            let tokens = s.tokens(id).expect("live");
            let n_prompt = prompt_lens[&id];
            if tokens.len() - n_prompt >= max_new {
                outputs.insert(id, tokens[n_prompt..].to_vec());
                s.finish(id);
            }
        }
        plans.push(plan);
    }
    panic!("scheduler did not drain");
}

/// Schedules one step and feeds back the fake model's samples.
pub(super) fn step(s: &mut Scheduler, model: &mut FakeModel) -> StepPlan {
    let plan = s.schedule();
    let sampled = model.run(&plan);
    s.update(&plan, &sampled);
    plan
}
