//! Per-sequence KV block tables on top of the [`BlockPool`], plus the prefix cache.
//!
//! Owns which blocks each sequence holds and which of its full blocks are registered under their
//! chained hash. Knows token ids (to hash them) but no tensors, no scheduling policy and no token
//! budget. Sequence ids are plain `u64` (the scheduler's `SeqId`).

use std::collections::HashMap;

use thiserror::Error;

use super::block_pool::BlockPool;
use super::hash::{extend_block_hashes, hash_block, BlockHash};

/// Size and behaviour of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Number of physical KV blocks.
    pub num_blocks: usize,
    /// Token slots per block (0 is treated as 1).
    pub block_size: usize,
    /// Hash full blocks and reuse them across sequences.
    pub enable_prefix_caching: bool,
}

/// Why a cache operation was refused. No operation panics; a refused one changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CacheError {
    /// Fewer blocks are free than the operation needs.
    #[error("not enough free KV blocks: need {needed}, {free} free")]
    NoFreeBlocks {
        /// Blocks the operation would take from the free queue.
        needed: usize,
        /// Blocks currently free.
        free: usize,
    },
    /// The sequence holds no blocks.
    #[error("unknown sequence {0}")]
    UnknownSeq(u64),
    /// The sequence already holds blocks, so it cannot be allocated as new.
    #[error("sequence {0} already holds KV blocks")]
    SeqExists(u64),
    /// A block of the cached prefix was evicted (or the cache reset) since the lookup.
    #[error("cached prefix is stale")]
    StalePrefix,
}

/// Result of a prefix-cache lookup: the longest chain of cached full blocks at the start of a
/// token sequence. The default value is the empty prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachedPrefix {
    blocks: Vec<u32>,
    hashes: Vec<BlockHash>,
    n_tokens: usize,
    n_queried: usize,
}

impl CachedPrefix {
    /// Physical ids of the cached blocks, in sequence order.
    pub fn blocks(&self) -> &[u32] {
        &self.blocks
    }

    /// Tokens covered by the cached blocks (`blocks().len() * block_size`); always less than the
    /// number of tokens looked up.
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }
}

/// Blocks held by one sequence.
#[derive(Debug)]
struct SeqBlocks {
    /// Block table: `blocks[i]` holds positions `i * block_size .. (i + 1) * block_size`.
    blocks: Vec<u32>,
    /// Chained hashes of the sequence's registered full blocks.
    hashes: Vec<BlockHash>,
    /// Leading blocks already offered to the prefix cache.
    n_registered: usize,
    extra_key: Option<u64>,
}

/// Allocates and frees the KV blocks of sequences and runs the prefix cache.
#[derive(Debug)]
pub struct KvCacheManager {
    pool: BlockPool,
    enable_prefix_caching: bool,
    seqs: HashMap<u64, SeqBlocks>,
    queries: u64,
    hits: u64,
}

impl KvCacheManager {
    /// A manager with every block free.
    pub fn new(cfg: CacheConfig) -> Self {
        Self {
            pool: BlockPool::new(cfg.num_blocks, cfg.block_size.max(1)),
            enable_prefix_caching: cfg.enable_prefix_caching,
            seqs: HashMap::new(),
            queries: 0,
            hits: 0,
        }
    }

    /// Token slots per block.
    pub fn block_size(&self) -> usize {
        self.pool.block_size()
    }

    /// Total number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.pool.num_blocks()
    }

    /// Blocks with ref count 0 (including cached ones that can still be hit).
    pub fn num_free_blocks(&self) -> usize {
        self.pool.num_free_blocks()
    }

    /// Fraction of blocks in use, `0.0..=1.0`.
    pub fn usage(&self) -> f64 {
        self.pool.usage()
    }

    /// Whether prefix caching is on.
    pub fn prefix_caching_enabled(&self) -> bool {
        self.enable_prefix_caching
    }

    /// Cumulative tokens looked up in the prefix cache by admitted sequences.
    pub fn prefix_queries(&self) -> u64 {
        self.queries
    }

    /// Cumulative tokens found in the prefix cache by admitted sequences.
    pub fn prefix_hits(&self) -> u64 {
        self.hits
    }

    /// Blocks needed to hold `n_tokens` positions.
    pub fn blocks_for(&self, n_tokens: usize) -> usize {
        n_tokens.div_ceil(self.block_size())
    }

    /// Block table of `seq_id` (empty for an unknown sequence).
    pub fn block_table(&self, seq_id: u64) -> &[u32] {
        self.seqs.get(&seq_id).map_or(&[], |seq| &seq.blocks)
    }

    /// Longest chain of cached full blocks at the start of `tokens`, capped at
    /// `(tokens.len() - 1) / block_size` blocks so at least one token is left to compute.
    ///
    /// Only looks: the prefix-cache counters move when the prefix is used by
    /// [`allocate_new_seq`](Self::allocate_new_seq), so a sequence that fails admission and is
    /// looked up again is not counted twice. Empty when prefix caching is off.
    pub fn find_cached_prefix(&self, tokens: &[u32], extra_key: Option<u64>) -> CachedPrefix {
        if !self.enable_prefix_caching {
            return CachedPrefix::default();
        }
        let block_size = self.block_size();
        let max_blocks = tokens.len().saturating_sub(1) / block_size;
        let mut prefix = CachedPrefix {
            n_queried: tokens.len(),
            ..CachedPrefix::default()
        };
        let mut parent = BlockHash::ROOT;
        for block_tokens in tokens.chunks_exact(block_size).take(max_blocks) {
            let hash = hash_block(parent, block_tokens, extra_key);
            let Some(block) = self.pool.lookup(hash) else {
                break;
            };
            prefix.blocks.push(block);
            prefix.hashes.push(hash);
            parent = hash;
        }
        prefix.n_tokens = prefix.blocks.len() * block_size;
        prefix
    }

    /// Gives a sequence that holds no blocks a block table covering `n_tokens` positions: the
    /// blocks of `prefix` (from [`find_cached_prefix`](Self::find_cached_prefix) in the same
    /// step), then fresh blocks. Counts the lookup in the prefix-cache counters. `extra_key` must
    /// be the one used for the lookup; it is kept for hashing the sequence's later blocks.
    pub fn allocate_new_seq(
        &mut self,
        seq_id: u64,
        prefix: &CachedPrefix,
        n_tokens: usize,
        extra_key: Option<u64>,
    ) -> Result<(), CacheError> {
        if self.seqs.contains_key(&seq_id) {
            return Err(CacheError::SeqExists(seq_id));
        }
        let fresh = prefix
            .blocks
            .iter()
            .zip(&prefix.hashes)
            .all(|(&block, &hash)| {
                self.pool.block_hash(block) == Some(hash) && self.pool.lookup(hash) == Some(block)
            });
        if !fresh || prefix.blocks.len() != prefix.hashes.len() {
            return Err(CacheError::StalePrefix);
        }
        let n_new = self
            .blocks_for(n_tokens)
            .saturating_sub(prefix.blocks.len());
        // Cached blocks with no other user sit in the free queue and leave it when touched.
        let n_revived = prefix
            .blocks
            .iter()
            .filter(|&&block| self.pool.ref_count(block) == 0)
            .count();
        let free = self.pool.num_free_blocks();
        if n_new + n_revived > free {
            return Err(CacheError::NoFreeBlocks {
                needed: n_new + n_revived,
                free,
            });
        }
        self.pool.touch(&prefix.blocks);
        let Some(new_blocks) = self.pool.allocate(n_new) else {
            self.pool.free(prefix.blocks.iter().rev().copied());
            return Err(CacheError::NoFreeBlocks {
                needed: n_new,
                free,
            });
        };
        let mut blocks = prefix.blocks.clone();
        blocks.extend(new_blocks);
        self.seqs.insert(
            seq_id,
            SeqBlocks {
                blocks,
                hashes: prefix.hashes.clone(),
                n_registered: prefix.blocks.len(),
                extra_key,
            },
        );
        if self.enable_prefix_caching {
            self.queries += prefix.n_queried as u64;
            self.hits += prefix.n_tokens as u64;
        }
        Ok(())
    }

    /// Grows the block table of `seq_id` so it covers `n_tokens` positions. Refused, changing
    /// nothing, when not enough blocks are free.
    pub fn allocate_slots(&mut self, seq_id: u64, n_tokens: usize) -> Result<(), CacheError> {
        let n_needed = self.blocks_for(n_tokens);
        let seq = self
            .seqs
            .get_mut(&seq_id)
            .ok_or(CacheError::UnknownSeq(seq_id))?;
        let n_new = n_needed.saturating_sub(seq.blocks.len());
        if n_new == 0 {
            return Ok(());
        }
        let free = self.pool.num_free_blocks();
        let new_blocks = self.pool.allocate(n_new).ok_or(CacheError::NoFreeBlocks {
            needed: n_new,
            free,
        })?;
        seq.blocks.extend(new_blocks);
        Ok(())
    }

    /// Registers the full blocks of `tokens[..n_computed]` (the sequence's tokens whose KV is now
    /// computed) under their chained hashes. A hash already held by another block keeps that
    /// mapping. Does nothing when prefix caching is off or the sequence is unknown.
    pub fn register_full_blocks(&mut self, seq_id: u64, tokens: &[u32], n_computed: usize) {
        if !self.enable_prefix_caching {
            return;
        }
        let block_size = self.pool.block_size();
        let Some(seq) = self.seqs.get_mut(&seq_id) else {
            return;
        };
        let n_full = (n_computed.min(tokens.len()) / block_size).min(seq.blocks.len());
        if n_full <= seq.n_registered {
            return;
        }
        let computed = &tokens[..n_full * block_size];
        extend_block_hashes(&mut seq.hashes, computed, block_size, seq.extra_key);
        for (&block, &hash) in seq.blocks[..n_full]
            .iter()
            .zip(&seq.hashes)
            .skip(seq.n_registered)
        {
            self.pool.cache_block(block, hash);
        }
        seq.n_registered = n_full;
    }

    /// Releases every block of `seq_id`, tail first so its last blocks are evicted first. Blocks
    /// shared with other sequences stay in use; registered blocks stay findable until
    /// reallocated. Unknown ids are ignored.
    pub fn free(&mut self, seq_id: u64) {
        if let Some(seq) = self.seqs.remove(&seq_id) {
            self.pool.free(seq.blocks.into_iter().rev());
        }
    }

    /// Forgets every cached block hash (see [`BlockPool::reset_prefix_cache`]); sequences keep
    /// their blocks. Always succeeds (returns true). The hit/query counters are cumulative and
    /// are not reset.
    pub fn reset_prefix_cache(&mut self) -> bool {
        self.pool.reset_prefix_cache()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(num_blocks: usize, enable_prefix_caching: bool) -> KvCacheManager {
        KvCacheManager::new(CacheConfig {
            num_blocks,
            block_size: 4,
            enable_prefix_caching,
        })
    }

    /// Admits `tokens` as `seq_id`, computes all of them and registers its full blocks.
    fn run_seq(m: &mut KvCacheManager, seq_id: u64, tokens: &[u32]) -> CachedPrefix {
        let prefix = m.find_cached_prefix(tokens, None);
        m.allocate_new_seq(seq_id, &prefix, tokens.len(), None)
            .expect("enough blocks");
        m.register_full_blocks(seq_id, tokens, tokens.len());
        prefix
    }

    #[test]
    fn prefix_hits_cover_full_blocks_and_leave_one_token() {
        let mut m = manager(16, true);
        let tokens: Vec<u32> = (100..110).collect();
        let first = run_seq(&mut m, 1, &tokens);
        assert_eq!(first.n_tokens(), 0);
        assert_eq!((m.prefix_queries(), m.prefix_hits()), (10, 0));

        // Same 10 tokens: the 2 full blocks hit, the partial third does not.
        let again = m.find_cached_prefix(&tokens, None);
        assert_eq!(again.blocks(), &m.block_table(1)[..2]);
        assert_eq!(again.n_tokens(), 8);
        // Exactly 8 tokens: only one block may hit so one token is left to compute.
        assert_eq!(m.find_cached_prefix(&tokens[..8], None).n_tokens(), 4);
        assert_eq!(m.find_cached_prefix(&tokens[..4], None).n_tokens(), 0);
        assert_eq!(m.find_cached_prefix(&[], None).n_tokens(), 0);
        // A different token in block 0 breaks the whole chain; a different key too.
        let mut other = tokens.clone();
        other[0] = 7;
        assert_eq!(m.find_cached_prefix(&other, None).n_tokens(), 0);
        assert_eq!(m.find_cached_prefix(&tokens, Some(1)).n_tokens(), 0);
        assert_eq!(m.prefix_queries(), 10, "lookups alone are not counted");

        m.allocate_new_seq(2, &again, tokens.len() + 1, None)
            .expect("enough blocks");
        assert_eq!((m.prefix_queries(), m.prefix_hits()), (20, 8));
        let table = m.block_table(2);
        assert_eq!(&table[..2], &m.block_table(1)[..2]);
        assert_eq!(table.len(), 3);
        assert_ne!(table[2], m.block_table(1)[2]);
    }

    #[test]
    fn freed_blocks_stay_hashed_until_reallocated() {
        let mut m = manager(4, true);
        let tokens: Vec<u32> = (0..9).collect();
        run_seq(&mut m, 1, &tokens);
        let table = m.block_table(1).to_vec();
        m.free(1);
        assert_eq!(m.num_free_blocks(), 4);
        assert!(m.block_table(1).is_empty());
        let hit = m.find_cached_prefix(&tokens, None);
        assert_eq!(hit.blocks(), &table[..2]);
        // Reviving the 2 cached blocks plus 1 new block needs 3 of the 4 free blocks.
        m.allocate_new_seq(2, &hit, 9, None).expect("fits");
        assert_eq!(m.num_free_blocks(), 1);
        assert_eq!(&m.block_table(2)[..2], &table[..2]);
    }

    #[test]
    fn shared_blocks_survive_one_owner_freeing() {
        let mut m = manager(8, true);
        let tokens: Vec<u32> = (0..9).collect();
        run_seq(&mut m, 1, &tokens);
        run_seq(&mut m, 2, &tokens);
        assert_eq!(
            m.num_free_blocks(),
            8 - 4,
            "two shared blocks + two own tails"
        );
        m.free(1);
        assert_eq!(m.num_free_blocks(), 5);
        m.free(2);
        assert_eq!(m.num_free_blocks(), 8);
    }

    #[test]
    fn allocation_failure_changes_nothing() {
        let mut m = manager(3, true);
        let tokens: Vec<u32> = (0..8).collect();
        run_seq(&mut m, 1, &tokens);
        assert_eq!(
            m.allocate_slots(1, 13),
            Err(CacheError::NoFreeBlocks { needed: 2, free: 1 })
        );
        assert_eq!(m.block_table(1).len(), 2);
        assert_eq!(m.num_free_blocks(), 1);
        assert_eq!(m.allocate_slots(1, 9), Ok(()));
        assert_eq!(m.block_table(1).len(), 3);
        let prefix = CachedPrefix::default();
        assert_eq!(
            m.allocate_new_seq(2, &prefix, 1, None),
            Err(CacheError::NoFreeBlocks { needed: 1, free: 0 })
        );
        assert_eq!(
            m.allocate_new_seq(1, &prefix, 1, None),
            Err(CacheError::SeqExists(1))
        );
        assert_eq!(m.allocate_slots(9, 1), Err(CacheError::UnknownSeq(9)));
        assert_eq!((m.prefix_queries(), m.prefix_hits()), (8, 0));
    }

    #[test]
    fn stale_prefix_is_refused() {
        let mut m = manager(2, true);
        let tokens: Vec<u32> = (0..5).collect();
        run_seq(&mut m, 1, &tokens);
        m.free(1);
        let hit = m.find_cached_prefix(&tokens, None);
        assert_eq!(hit.n_tokens(), 4);
        assert!(m.reset_prefix_cache());
        assert_eq!(
            m.allocate_new_seq(2, &hit, 5, None),
            Err(CacheError::StalePrefix)
        );
        assert_eq!(m.find_cached_prefix(&tokens, None).n_tokens(), 0);
    }

    #[test]
    fn duplicate_content_keeps_the_first_mapping() {
        let mut m = manager(8, true);
        let tokens: Vec<u32> = (0..5).collect();
        // Both admitted before either registered, so neither hits.
        for seq_id in [1, 2] {
            let prefix = m.find_cached_prefix(&tokens, None);
            m.allocate_new_seq(seq_id, &prefix, 5, None).expect("fits");
        }
        m.register_full_blocks(1, &tokens, 5);
        m.register_full_blocks(2, &tokens, 5);
        let hit = m.find_cached_prefix(&tokens, None);
        assert_eq!(hit.blocks(), &m.block_table(1)[..1]);
    }

    #[test]
    fn prefix_caching_off_never_hits() {
        let mut m = manager(8, false);
        let tokens: Vec<u32> = (0..9).collect();
        run_seq(&mut m, 1, &tokens);
        m.free(1);
        run_seq(&mut m, 2, &tokens);
        assert_eq!(m.find_cached_prefix(&tokens, None).n_tokens(), 0);
        assert_eq!((m.prefix_queries(), m.prefix_hits()), (0, 0));
    }

    #[test]
    fn partial_computation_registers_only_computed_full_blocks() {
        let mut m = manager(8, true);
        let tokens: Vec<u32> = (0..12).collect();
        let prefix = m.find_cached_prefix(&tokens, None);
        m.allocate_new_seq(1, &prefix, 6, None).expect("fits");
        m.register_full_blocks(1, &tokens, 6);
        assert_eq!(m.find_cached_prefix(&tokens, None).n_tokens(), 4);
        m.allocate_slots(1, 12).expect("fits");
        m.register_full_blocks(1, &tokens, 12);
        assert_eq!(m.find_cached_prefix(&tokens, None).n_tokens(), 8);
        assert_eq!(
            m.find_cached_prefix(&[tokens.clone(), vec![1]].concat(), None)
                .n_tokens(),
            12
        );
    }
}
