//! The pool of physical KV blocks: ref counts, the LRU free queue and the hash -> block map.
//!
//! Owns block ids only; it knows no tensors and no sequences. Invariants:
//! - a block is in the free queue exactly when its ref count is 0;
//! - a cached (hashed) block stays findable by hash while it sits in the free queue, and loses
//!   its hash only when it is reallocated (lazy eviction) or the prefix cache is reset;
//! - the hash map holds at most one block per hash, and a block's recorded hash always maps back
//!   to that block.

use std::collections::HashMap;

use super::hash::BlockHash;

/// Marks a missing neighbour (or an empty end) in the free list.
const NIL: usize = usize::MAX;

/// O(1) LRU queue of free blocks: an intrusive doubly linked list over block ids.
///
/// Allocation pops the head (least recently freed); freeing appends at the tail.
#[derive(Debug)]
struct FreeQueue {
    prev: Vec<usize>,
    next: Vec<usize>,
    in_queue: Vec<bool>,
    head: usize,
    tail: usize,
    len: usize,
}

impl FreeQueue {
    /// A queue holding every block, in id order.
    fn full(num_blocks: usize) -> Self {
        let mut queue = Self {
            prev: vec![NIL; num_blocks],
            next: vec![NIL; num_blocks],
            in_queue: vec![false; num_blocks],
            head: NIL,
            tail: NIL,
            len: 0,
        };
        for block in 0..num_blocks {
            queue.push_back(block);
        }
        queue
    }

    fn push_back(&mut self, block: usize) {
        if self.in_queue[block] {
            return;
        }
        self.prev[block] = self.tail;
        self.next[block] = NIL;
        if self.tail == NIL {
            self.head = block;
        } else {
            self.next[self.tail] = block;
        }
        self.tail = block;
        self.in_queue[block] = true;
        self.len += 1;
    }

    fn pop_front(&mut self) -> Option<usize> {
        let block = self.head;
        if block == NIL {
            return None;
        }
        self.remove(block);
        Some(block)
    }

    fn remove(&mut self, block: usize) {
        if !self.in_queue[block] {
            return;
        }
        let (prev, next) = (self.prev[block], self.next[block]);
        if prev == NIL {
            self.head = next;
        } else {
            self.next[prev] = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.prev[next] = prev;
        }
        self.prev[block] = NIL;
        self.next[block] = NIL;
        self.in_queue[block] = false;
        self.len -= 1;
    }

    #[cfg(test)]
    fn order(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut cur = self.head;
        while cur != NIL {
            out.push(cur);
            cur = self.next[cur];
        }
        out
    }
}

/// `num_blocks` KV blocks of `block_size` token slots each, identified by `u32` ids
/// `0..num_blocks`.
#[derive(Debug)]
pub struct BlockPool {
    block_size: usize,
    ref_counts: Vec<u32>,
    hashes: Vec<Option<BlockHash>>,
    free: FreeQueue,
    cached: HashMap<BlockHash, u32>,
}

impl BlockPool {
    /// A pool with every block free and nothing cached. `block_size` is in tokens.
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        // Block ids are u32; a larger pool is unrepresentable, so clamp instead of wrapping.
        let num_blocks = num_blocks.min(u32::MAX as usize);
        Self {
            block_size,
            ref_counts: vec![0; num_blocks],
            hashes: vec![None; num_blocks],
            free: FreeQueue::full(num_blocks),
            cached: HashMap::new(),
        }
    }

    /// Token slots per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Total number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.ref_counts.len()
    }

    /// Blocks with ref count 0 (cached or not); all of them can be allocated.
    pub fn num_free_blocks(&self) -> usize {
        self.free.len
    }

    /// Fraction of blocks in use (ref count > 0), in `0.0..=1.0`; 0 for an empty pool.
    pub fn usage(&self) -> f64 {
        let total = self.num_blocks();
        if total == 0 {
            return 0.0;
        }
        (total - self.num_free_blocks()) as f64 / total as f64
    }

    /// Ref count of `block`, 0 for an unknown id.
    pub fn ref_count(&self, block: u32) -> u32 {
        self.ref_counts.get(block as usize).copied().unwrap_or(0)
    }

    /// Hash under which `block` is cached, if any.
    pub fn block_hash(&self, block: u32) -> Option<BlockHash> {
        self.hashes.get(block as usize).copied().flatten()
    }

    /// The cached block holding `hash`, whether in use or free.
    pub fn lookup(&self, hash: BlockHash) -> Option<u32> {
        self.cached.get(&hash).copied()
    }

    /// Takes `n` blocks from the head of the free queue (least recently freed first) with ref
    /// count 1, evicting their cached hashes. Returns `None`, changing nothing, when fewer than
    /// `n` blocks are free.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.num_free_blocks() {
            return None;
        }
        let mut blocks = Vec::with_capacity(n);
        while blocks.len() < n {
            let block = self.free.pop_front()?;
            self.evict(block);
            self.ref_counts[block] = 1;
            blocks.push(block as u32);
        }
        Some(blocks)
    }

    /// Adds one reference to each block, taking free ones (e.g. prefix-cache hits) out of the
    /// free queue with their hash kept. Unknown ids are ignored.
    pub fn touch(&mut self, blocks: &[u32]) {
        for &block in blocks {
            let idx = block as usize;
            let Some(count) = self.ref_counts.get_mut(idx) else {
                continue;
            };
            if *count == 0 {
                self.free.remove(idx);
            }
            *count = count.saturating_add(1);
        }
    }

    /// Drops one reference from each block; blocks reaching 0 are appended to the tail of the
    /// free queue in the given order (so pass a sequence's blocks tail-first: its last blocks
    /// are then evicted first). Unknown ids and blocks already free are ignored.
    pub fn free<I: IntoIterator<Item = u32>>(&mut self, blocks: I) {
        for block in blocks {
            let idx = block as usize;
            let Some(count) = self.ref_counts.get_mut(idx) else {
                continue;
            };
            if *count == 0 {
                tracing::warn!(block, "freeing a block that is already free");
                continue;
            }
            *count -= 1;
            if *count == 0 {
                self.free.push_back(idx);
            }
        }
    }

    /// Records that `block` holds the full block with chained hash `hash`. Returns false (and
    /// changes nothing) when another block already holds `hash`, when `block` already has a hash,
    /// or when `block` is unknown.
    pub fn cache_block(&mut self, block: u32, hash: BlockHash) -> bool {
        let idx = block as usize;
        match self.hashes.get(idx) {
            Some(None) if !self.cached.contains_key(&hash) => {
                self.hashes[idx] = Some(hash);
                self.cached.insert(hash, block);
                true
            }
            _ => false,
        }
    }

    /// Forgets every cached hash, of free and in-use blocks alike. In-use blocks keep working;
    /// they just can no longer be shared. Always succeeds (returns true).
    pub fn reset_prefix_cache(&mut self) -> bool {
        self.cached.clear();
        self.hashes.iter_mut().for_each(|hash| *hash = None);
        true
    }

    /// Drops the hash of a block that is being reallocated.
    fn evict(&mut self, idx: usize) {
        if let Some(hash) = self.hashes[idx].take() {
            if self.cached.get(&hash) == Some(&(idx as u32)) {
                self.cached.remove(&hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: u128) -> BlockHash {
        BlockHash(x)
    }

    #[test]
    fn allocate_and_free_track_ref_counts() {
        let mut pool = BlockPool::new(4, 16);
        assert_eq!(pool.num_free_blocks(), 4);
        assert_eq!(pool.usage(), 0.0);
        let a = pool.allocate(3).expect("3 of 4 free");
        assert_eq!(a, vec![0, 1, 2]);
        assert_eq!(pool.num_free_blocks(), 1);
        assert_eq!(pool.usage(), 0.75);
        assert!(pool.allocate(2).is_none());
        assert_eq!(
            pool.num_free_blocks(),
            1,
            "failed allocation changes nothing"
        );
        pool.touch(&[1]);
        assert_eq!(pool.ref_count(1), 2);
        pool.free([1]);
        assert_eq!(pool.ref_count(1), 1);
        assert_eq!(pool.num_free_blocks(), 1, "still referenced");
        pool.free(a.iter().rev().copied());
        assert_eq!(pool.num_free_blocks(), 4);
        // Double free and unknown ids are ignored.
        pool.free([0, 99]);
        pool.touch(&[99]);
        assert_eq!(pool.num_free_blocks(), 4);
        assert_eq!(pool.ref_count(0), 0);
    }

    #[test]
    fn free_queue_is_lru_with_tail_blocks_first() {
        let mut pool = BlockPool::new(6, 4);
        let seq_a = pool.allocate(3).expect("free");
        let seq_b = pool.allocate(2).expect("free");
        // Free sequence a tail-first, then b tail-first.
        pool.free(seq_a.iter().rev().copied());
        pool.free(seq_b.iter().rev().copied());
        assert_eq!(pool.free.order(), vec![5, 2, 1, 0, 4, 3]);
        // Allocation takes from the head: the never-used block, then a's tail.
        assert_eq!(pool.allocate(3), Some(vec![5, 2, 1]));
    }

    #[test]
    fn touch_removes_from_the_middle_of_the_queue() {
        let mut pool = BlockPool::new(4, 4);
        pool.touch(&[2]);
        assert_eq!(pool.free.order(), vec![0, 1, 3]);
        pool.touch(&[0]);
        pool.touch(&[3]);
        assert_eq!(pool.free.order(), vec![1]);
        pool.free([3, 0, 2]);
        assert_eq!(pool.free.order(), vec![1, 3, 0, 2]);
    }

    #[test]
    fn cached_blocks_evict_lazily() {
        let mut pool = BlockPool::new(2, 4);
        let blocks = pool.allocate(2).expect("free");
        assert!(pool.cache_block(blocks[0], h(7)));
        assert!(!pool.cache_block(blocks[1], h(7)), "hash already held");
        assert!(!pool.cache_block(blocks[0], h(8)), "block already hashed");
        pool.free([blocks[0], blocks[1]]);
        // Free but still findable.
        assert_eq!(pool.lookup(h(7)), Some(blocks[0]));
        assert_eq!(pool.block_hash(blocks[0]), Some(h(7)));
        // A hit can be revived without losing its hash.
        pool.touch(&[blocks[0]]);
        assert_eq!(pool.num_free_blocks(), 1);
        pool.free([blocks[0]]);
        // Queue is now [1, 0]: the first allocation does not evict the cached block...
        assert_eq!(pool.allocate(1), Some(vec![1]));
        assert_eq!(pool.lookup(h(7)), Some(0));
        // ...the second one reallocates it and drops the hash.
        assert_eq!(pool.allocate(1), Some(vec![0]));
        assert_eq!(pool.lookup(h(7)), None);
        assert_eq!(pool.block_hash(0), None);
    }

    #[test]
    fn reset_forgets_all_hashes() {
        let mut pool = BlockPool::new(2, 4);
        let blocks = pool.allocate(2).expect("free");
        assert!(pool.cache_block(blocks[0], h(1)));
        pool.free([blocks[0]]);
        assert!(pool.cache_block(blocks[1], h(2)));
        assert!(pool.reset_prefix_cache());
        assert_eq!(pool.lookup(h(1)), None);
        assert_eq!(pool.lookup(h(2)), None);
        assert_eq!(pool.block_hash(blocks[1]), None);
        assert_eq!(pool.ref_count(blocks[1]), 1, "in-use blocks stay in use");
    }

    #[test]
    fn empty_pool_is_harmless() {
        let mut pool = BlockPool::new(0, 16);
        assert_eq!(pool.usage(), 0.0);
        assert_eq!(pool.allocate(0), Some(vec![]));
        assert!(pool.allocate(1).is_none());
    }
}
