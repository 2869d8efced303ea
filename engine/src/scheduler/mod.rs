//! Continuous batching: which sequences run each step and how many tokens each, vLLM-v1 style.
//!
//! Owns the waiting and running sets, each sequence's tokens (prompt + outputs) and computed
//! count, and the [`KvCacheManager`]. One token budget per step mixes decodes and prefill chunks
//! (prefill, chunked prefill and decode are one case: feed `tokens[n_computed..]`, as much as the
//! budget allows). Never touches a tensor; the runner turns a [`StepPlan`] into a batch.
//!
//! Policy (see [`Scheduler::schedule`]):
//! - running sequences first, in `(priority, arrival)` order, then waiting ones in the same order
//!   while the token budget, `max_num_seqs` and free blocks allow; admission stops at the first
//!   waiting sequence that does not fit (no overtaking), except held siblings, which are skipped;
//! - when a running sequence needs a block and none is free, the running sequence with the
//!   largest key (lowest priority, latest arrival) is preempted by recompute; no admissions happen
//!   in a step that preempted;
//! - with chunked prefill off, a prompt larger than the whole budget runs alone in a step (the only
//!   step allowed to exceed the budget) once nothing else is scheduled before it.

#[cfg(test)]
mod fake_model;
mod plan;
mod queue;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use thiserror::Error;

use crate::cache::{CacheConfig, KvCacheManager};
use queue::{QueueKey, SeqQueue};

/// Identifies a sequence (one completion choice) across the engine.
pub type SeqId = u64;

/// Limits of the scheduler and the shape of the KV pool it manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most sequences running at once (0 is treated as 1).
    pub max_num_seqs: usize,
    /// Token budget of one step, summed over all scheduled sequences (0 is treated as 1).
    pub max_num_batched_tokens: usize,
    /// Longest sequence (prompt + output) in tokens; a prompt must be shorter.
    pub max_model_len: usize,
    /// Token slots per KV block (0 is treated as 1).
    pub block_size: usize,
    /// Number of KV blocks in the pool.
    pub num_blocks: usize,
    /// Reuse cached full blocks across sequences.
    pub enable_prefix_caching: bool,
    /// Split prompts across steps to fit the token budget.
    pub enable_chunked_prefill: bool,
}

/// A sequence to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSeq {
    /// Caller-chosen id, unique among live sequences.
    pub seq_id: SeqId,
    /// Prompt token ids (non-empty, shorter than `max_model_len`).
    pub prompt: Vec<u32>,
    /// Smaller values are served first; ties go to the earlier arrival.
    pub priority: i32,
    /// Siblings sharing one prompt (`n > 1`) carry the same group id.
    pub group: Option<u64>,
}

/// One sequence's share of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledSeq {
    /// The sequence.
    pub seq_id: SeqId,
    /// Tokens to feed this step: `all_tokens[start_pos .. start_pos + n]`.
    pub token_ids: Vec<u32>,
    /// Position of `token_ids[0]` (= tokens already in the KV cache).
    pub start_pos: usize,
    /// Physical block ids covering positions 0 .. start_pos + n.
    pub block_table: Vec<u32>,
    /// True when this chunk reaches the last known token, so the engine samples a new token for it.
    pub sample: bool,
}

/// What the model runs in one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// Scheduled sequences: running ones first, then newly admitted ones.
    pub seqs: Vec<ScheduledSeq>,
    /// Sequences preempted this step (blocks freed, back in waiting, to be recomputed).
    pub preempted: Vec<SeqId>,
}

/// Snapshot of scheduler and KV-cache gauges and counters.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerStats {
    /// Sequences holding KV blocks.
    pub num_running: usize,
    /// Sequences queued (new or preempted).
    pub num_waiting: usize,
    /// Fraction of KV blocks in use, `0.0..=1.0`.
    pub kv_usage: f64,
    /// Cumulative prompt tokens looked up in the prefix cache at admission.
    pub prefix_queries: u64,
    /// Cumulative tokens found in the prefix cache at admission.
    pub prefix_hits: u64,
    /// Cumulative recompute preemptions.
    pub num_preemptions: u64,
    /// KV blocks with no user (cached ones included).
    pub num_free_blocks: usize,
    /// KV blocks in the pool.
    pub num_blocks: usize,
}

/// Why [`Scheduler::add`] refused a sequence.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchedulerError {
    /// The prompt has no tokens.
    #[error("prompt is empty")]
    EmptyPrompt,
    /// The prompt leaves no room for a generated token.
    #[error("prompt has {len} tokens; it must be shorter than max_model_len ({max_model_len})")]
    PromptTooLong {
        /// Prompt length in tokens.
        len: usize,
        /// The configured limit.
        max_model_len: usize,
    },
    /// The prompt plus one generated token needs more KV blocks than the pool has.
    #[error("prompt needs {needed} KV blocks but the pool has {num_blocks}")]
    PromptExceedsCache {
        /// Blocks for the prompt plus one generated token.
        needed: usize,
        /// Blocks in the pool.
        num_blocks: usize,
    },
    /// A live sequence already has this id.
    #[error("sequence {0} already exists")]
    DuplicateSeq(SeqId),
}

/// State of one live sequence.
#[derive(Debug)]
struct Seq {
    /// Prompt followed by every output token so far.
    tokens: Vec<u32>,
    n_prompt: usize,
    /// Leading tokens whose KV is computed (0 while waiting).
    n_computed: usize,
    key: QueueKey,
    group: Option<u64>,
    extra_key: Option<u64>,
    running: bool,
}

/// The continuous-batching scheduler; see the module docs for the policy.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    kv: KvCacheManager,
    seqs: HashMap<SeqId, Seq>,
    waiting: SeqQueue,
    running: SeqQueue,
    /// Group id -> the first admitted sibling, whose prompt the others wait for.
    group_leaders: HashMap<u64, SeqId>,
    next_arrival: u64,
    num_preemptions: u64,
}

impl Scheduler {
    /// An idle scheduler with an empty KV pool of `cfg.num_blocks` blocks.
    pub fn new(cfg: SchedulerConfig) -> Self {
        let cfg = SchedulerConfig {
            max_num_seqs: cfg.max_num_seqs.max(1),
            max_num_batched_tokens: cfg.max_num_batched_tokens.max(1),
            block_size: cfg.block_size.max(1),
            ..cfg
        };
        let kv = KvCacheManager::new(CacheConfig {
            num_blocks: cfg.num_blocks,
            block_size: cfg.block_size,
            enable_prefix_caching: cfg.enable_prefix_caching,
        });
        Self {
            cfg,
            kv,
            seqs: HashMap::new(),
            waiting: SeqQueue::default(),
            running: SeqQueue::default(),
            group_leaders: HashMap::new(),
            next_arrival: 0,
            num_preemptions: 0,
        }
    }

    /// Queue a new sequence (arrival order = call order). Errors (typed, thiserror) if prompt is
    /// empty, `prompt.len() >= max_model_len`, the prompt plus one token cannot fit in the whole
    /// pool, or the id is live. Never panics.
    pub fn add(&mut self, seq: NewSeq) -> Result<(), SchedulerError> {
        self.add_with_extra_key(seq, None)
    }

    /// [`add`](Self::add) with a prefix-cache extra key (cache salt or adapter id): sequences
    /// only share cached blocks with sequences added under the same key.
    pub fn add_with_extra_key(
        &mut self,
        seq: NewSeq,
        extra_key: Option<u64>,
    ) -> Result<(), SchedulerError> {
        let len = seq.prompt.len();
        if len == 0 {
            return Err(SchedulerError::EmptyPrompt);
        }
        if len >= self.cfg.max_model_len {
            return Err(SchedulerError::PromptTooLong {
                len,
                max_model_len: self.cfg.max_model_len,
            });
        }
        let needed = self.kv.blocks_for(len + 1);
        if needed > self.kv.num_blocks() {
            return Err(SchedulerError::PromptExceedsCache {
                needed,
                num_blocks: self.kv.num_blocks(),
            });
        }
        if self.seqs.contains_key(&seq.seq_id) {
            return Err(SchedulerError::DuplicateSeq(seq.seq_id));
        }
        let key = QueueKey {
            priority: seq.priority,
            arrival: self.next_arrival,
        };
        self.next_arrival += 1;
        self.waiting.insert(key, seq.seq_id);
        self.seqs.insert(
            seq.seq_id,
            Seq {
                tokens: seq.prompt,
                n_prompt: len,
                n_computed: 0,
                key,
                group: seq.group,
                extra_key,
                running: false,
            },
        );
        Ok(())
    }

    /// Remove a sequence wherever it is and free its blocks at once. Unknown ids are ignored.
    pub fn abort(&mut self, seq_id: SeqId) {
        let Some(seq) = self.seqs.remove(&seq_id) else {
            return;
        };
        if seq.running {
            self.running.remove(seq_id);
        } else {
            self.waiting.remove(seq_id);
        }
        self.kv.free(seq_id);
        if let Some(group) = seq.group {
            if self.group_leaders.get(&group) == Some(&seq_id) {
                self.group_leaders.remove(&group);
            }
        }
    }

    /// Same as abort, called when the engine decides a sequence finished (stop/length).
    pub fn finish(&mut self, seq_id: SeqId) {
        self.abort(seq_id);
    }

    /// Prompt plus output tokens of a live sequence.
    pub fn tokens(&self, seq_id: SeqId) -> Option<&[u32]> {
        self.seqs.get(&seq_id).map(|seq| seq.tokens.as_slice())
    }

    /// Current gauges and cumulative counters.
    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            num_running: self.running.len(),
            num_waiting: self.waiting.len(),
            kv_usage: self.kv.usage(),
            prefix_queries: self.kv.prefix_queries(),
            prefix_hits: self.kv.prefix_hits(),
            num_preemptions: self.num_preemptions,
            num_free_blocks: self.kv.num_free_blocks(),
            num_blocks: self.kv.num_blocks(),
        }
    }

    /// Whether any sequence is running or waiting.
    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    /// Forgets every cached block hash; running sequences keep their blocks. Always succeeds
    /// (returns true); the prefix-cache counters stay cumulative.
    pub fn reset_prefix_cache(&mut self) -> bool {
        self.kv.reset_prefix_cache()
    }
}
