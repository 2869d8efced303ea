//! Paged KV-cache bookkeeping: the block pool, chained block hashes and per-sequence block tables
//! with prefix caching.
//!
//! Owns block ids, ref counts and hashes; never touches a tensor (the runner owns the KV memory)
//! and knows no scheduling policy.

pub mod block_pool;
pub mod hash;
pub mod manager;

pub use block_pool::BlockPool;
pub use hash::{block_hashes, extend_block_hashes, hash_block, BlockHash};
pub use manager::{CacheConfig, CacheError, CachedPrefix, KvCacheManager};
