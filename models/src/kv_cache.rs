//! The paged KV cache memory: one K and one V pool per layer, addressed by slot.
//!
//! The engine sizes it and hands out block ids; the model only writes and reads slots.

use candela_kernels::KvLayout;

/// K and V storage of one layer, each `[num_blocks * block_size, n_kv_heads * head_dim]` f32.
pub struct LayerKv {
    /// Keys.
    pub k: Vec<f32>,
    /// Values.
    pub v: Vec<f32>,
}

/// Paged KV memory for all layers of a model.
pub struct KvCache {
    /// Per-layer storage.
    pub layers: Vec<LayerKv>,
    /// Shape of one layer's pool.
    pub layout: KvLayout,
    /// Blocks in each layer's pool.
    pub num_blocks: usize,
}

impl KvCache {
    /// Bytes of KV memory one block takes across all layers (K and V, f32).
    pub fn bytes_per_block(n_layers: usize, layout: KvLayout) -> usize {
        2 * n_layers * layout.block_size * layout.slot_width() * std::mem::size_of::<f32>()
    }

    /// Allocates `num_blocks` zeroed blocks for `n_layers` layers.
    pub fn new(n_layers: usize, num_blocks: usize, layout: KvLayout) -> Self {
        let n = num_blocks * layout.block_size * layout.slot_width();
        let layers = (0..n_layers)
            .map(|_| LayerKv {
                k: vec![0.0; n],
                v: vec![0.0; n],
            })
            .collect();
        KvCache {
            layers,
            layout,
            num_blocks,
        }
    }
}
