//! Engine counters and gauges, published after every step for metrics and tests.

/// A snapshot of the engine's state (counters are cumulative since start).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineStats {
    /// Sequences running.
    pub num_running: usize,
    /// Sequences waiting (including preempted ones).
    pub num_waiting: usize,
    /// Fraction of KV blocks in use, 0..1.
    pub kv_usage: f64,
    /// Free KV blocks.
    pub num_free_blocks: usize,
    /// All KV blocks.
    pub num_blocks: usize,
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_queries: u64,
    /// Prompt tokens found in the prefix cache.
    pub prefix_hits: u64,
    /// Sequences preempted (recompute).
    pub num_preemptions: u64,
    /// Prompt tokens of admitted requests.
    pub prompt_tokens_total: u64,
    /// Tokens generated.
    pub generation_tokens_total: u64,
    /// Requests completed normally.
    pub requests_finished: u64,
    /// Requests aborted.
    pub requests_aborted: u64,
    /// Requests failed by an engine error.
    pub requests_failed: u64,
}
