//! Chained content hashes of full KV blocks, the keys of the prefix cache.
//!
//! Owns the byte encoding of a block hash and nothing else: it knows no block ids, ref counts or
//! sequences. The encoding is part of the wire contract (KV blocks may later move between engines
//! by these hashes), so it must stay stable across processes, machines and restarts; changing it
//! requires bumping the domain string of [`BlockHash::ROOT`].

use sha2::{Digest, Sha256};

/// 128-bit content hash of a full block and, through the chain, of every token before it.
///
/// `h_i = H(h_{i-1}, tokens of block i, extra_key)` with `h_{-1} = BlockHash::ROOT`.
/// `H` is SHA-256 over this little-endian message, truncated to its first 16 bytes read as a
/// little-endian `u128`:
///
/// | bytes        | content                                                      |
/// |--------------|--------------------------------------------------------------|
/// | 16           | parent hash, `u128` little-endian                            |
/// | 1            | `0x00` when `extra_key` is `None`, `0x01` when it is `Some`   |
/// | 0 or 8       | `extra_key` as `u64` little-endian (only when `Some`)         |
/// | 4            | number of tokens in the block, `u32` little-endian            |
/// | 4 per token  | each token id, `u32` little-endian                            |
///
/// `ROOT` is the first 16 bytes of `SHA-256(b"candela/kv-block-hash/v1")`, read little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u128);

impl BlockHash {
    /// Parent hash of the first block of every sequence (`h_{-1}`).
    pub const ROOT: BlockHash = BlockHash(0x61a5_9fcb_8dbf_a060_2b72_7bd9_e3e9_2e52);
}

/// Hash of one block given its parent's hash, its token ids and an optional extra key
/// (a cache salt or adapter id; sequences with different keys never share blocks).
pub fn hash_block(parent: BlockHash, tokens: &[u32], extra_key: Option<u64>) -> BlockHash {
    let mut hasher = Sha256::new();
    hasher.update(parent.0.to_le_bytes());
    match extra_key {
        None => hasher.update([0u8]),
        Some(key) => {
            hasher.update([1u8]);
            hasher.update(key.to_le_bytes());
        }
    }
    // A block never holds anywhere near u32::MAX tokens; saturate rather than wrap.
    let n_tokens = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
    hasher.update(n_tokens.to_le_bytes());
    let mut buf = [0u8; 256];
    for chunk in tokens.chunks(buf.len() / 4) {
        for (dst, token) in buf.chunks_exact_mut(4).zip(chunk) {
            dst.copy_from_slice(&token.to_le_bytes());
        }
        hasher.update(&buf[..chunk.len() * 4]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    BlockHash(u128::from_le_bytes(first))
}

/// Appends to `hashes` the chained hashes of the full blocks of `tokens` that it does not yet
/// hold, so `hashes[i]` covers `tokens[i * block_size .. (i + 1) * block_size]`.
///
/// A trailing partial block is not hashed. `block_size == 0` hashes nothing.
pub fn extend_block_hashes(
    hashes: &mut Vec<BlockHash>,
    tokens: &[u32],
    block_size: usize,
    extra_key: Option<u64>,
) {
    if block_size == 0 {
        return;
    }
    let n_full = tokens.len() / block_size;
    for i in hashes.len()..n_full {
        let parent = if i == 0 {
            BlockHash::ROOT
        } else {
            hashes[i - 1]
        };
        let block = &tokens[i * block_size..(i + 1) * block_size];
        hashes.push(hash_block(parent, block, extra_key));
    }
}

/// Chained hashes of all full blocks of `tokens` (see [`extend_block_hashes`]).
pub fn block_hashes(tokens: &[u32], block_size: usize, extra_key: Option<u64>) -> Vec<BlockHash> {
    let mut hashes = Vec::new();
    extend_block_hashes(&mut hashes, tokens, block_size, extra_key);
    hashes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_the_documented_digest() {
        let digest = Sha256::digest(b"candela/kv-block-hash/v1");
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        assert_eq!(BlockHash::ROOT, BlockHash(u128::from_le_bytes(first)));
    }

    /// Expected values were computed independently (Python hashlib) from the documented encoding,
    /// so any change to the encoding fails here.
    #[test]
    fn encoding_is_pinned() {
        let h0 = hash_block(BlockHash::ROOT, &[1, 2, 3, 4], None);
        assert_eq!(h0, BlockHash(0xdb47_5b85_12fb_a2ed_9c3a_43f6_5b3c_6a6e));
        let h1 = hash_block(h0, &[5, 6, 7, 8], None);
        assert_eq!(h1, BlockHash(0x20c5_e809_a7db_9e83_102f_98a0_f7d8_162b));
        let salted = hash_block(BlockHash::ROOT, &[1, 2, 3, 4], Some(7));
        assert_eq!(salted, BlockHash(0x0690_2a1d_177d_77d3_695e_0b27_6357_2ea3));
        assert_eq!(
            block_hashes(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 4, None),
            vec![h0, h1]
        );
    }

    #[test]
    fn hash_is_sensitive_to_every_input() {
        let base = hash_block(BlockHash::ROOT, &[10, 20, 30], None);
        assert_eq!(base, hash_block(BlockHash::ROOT, &[10, 20, 30], None));
        let others = [
            hash_block(BlockHash::ROOT, &[10, 20, 31], None),
            hash_block(BlockHash::ROOT, &[20, 10, 30], None),
            hash_block(BlockHash(1), &[10, 20, 30], None),
            hash_block(BlockHash::ROOT, &[10, 20, 30], Some(0)),
            hash_block(BlockHash::ROOT, &[10, 20, 30], Some(1)),
            hash_block(BlockHash::ROOT, &[10, 20], None),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(base, *other, "variant {i}");
        }
    }

    #[test]
    fn chain_depends_on_earlier_blocks() {
        let a = block_hashes(&[1, 2, 3, 4, 5, 6], 2, None);
        let b = block_hashes(&[9, 2, 3, 4, 5, 6], 2, None);
        assert_eq!(a.len(), 3);
        assert!(a.iter().zip(&b).all(|(x, y)| x != y));
    }

    #[test]
    fn extend_hashes_only_new_full_blocks() {
        let tokens: Vec<u32> = (0..10).collect();
        let mut hashes = block_hashes(&tokens[..5], 4, Some(3));
        assert_eq!(hashes.len(), 1);
        extend_block_hashes(&mut hashes, &tokens, 4, Some(3));
        assert_eq!(hashes, block_hashes(&tokens, 4, Some(3)));
        assert_eq!(hashes.len(), 2);
        assert!(block_hashes(&tokens, 0, None).is_empty());
    }
}
