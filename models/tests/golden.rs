//! Logits of our models against HF transformers goldens (float32 eager attention on CPU) for the
//! tiny random-weight fixtures in `../shared/fixtures/`.
//!
//! Tolerance: 2e-4 absolute on logits of magnitude 1–10. Both sides compute in f32 from the same
//! bf16-stored weights; only summation order differs (HF/MKL vs gemm + our kernels), which moves
//! results by a few ulps per op, well under 1e-4 at these sizes.

mod common;
use common::*;

use candela_kernels::KvLayout;
use candela_models::loader::safetensors::SafetensorsWeights;
use candela_models::registry::load_model;
use candela_models::{ForwardBatch, KvCache, LoadOptions, ModelConfig, WeightDType};

const TOL: f32 = 2e-4;

fn check_fixture(name: &str) {
    let dir = fixture(name);
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let weights = SafetensorsWeights::open(&dir).unwrap();
    let model = load_model(&cfg, &weights, &LoadOptions::new(WeightDType::Auto)).unwrap();
    let layout = KvLayout {
        block_size: 4,
        n_kv_heads: cfg.num_key_value_heads,
        head_dim: cfg.head_dim,
    };
    for (ci, case) in cases(name).iter().enumerate() {
        let all: Vec<u32> = case
            .input_ids
            .iter()
            .chain(&case.greedy_ids)
            .copied()
            .collect();
        let n_blocks = all.len().div_ceil(layout.block_size) + 1;
        // Blocks in reverse order so the table really is non-contiguous.
        let table: Vec<u32> = (0..n_blocks as u32).rev().collect();

        // 1. One prefill over prompt + greedy continuation: every row checked.
        let mut kv = KvCache::new(cfg.num_hidden_layers, n_blocks, layout, Default::default());
        let mut b = ForwardBatch::default();
        b.push_seq(&all[..all.len() - 1], 0, &table, layout.block_size);
        b.logits_rows = (0..all.len() - 1).collect();
        let logits = model.forward(&b, &mut kv).unwrap();
        for (r, row) in logits.chunks(cfg.vocab_size).enumerate() {
            let d = max_abs_diff(row, &case.logits[r]);
            assert!(d < TOL, "{name} case {ci} prefill row {r}: max |Δ| {d}");
        }

        // 2. Prompt prefill, then one decode step per greedy token through the cache.
        let mut kv = KvCache::new(cfg.num_hidden_layers, n_blocks, layout, Default::default());
        let p = case.input_ids.len();
        let mut b = ForwardBatch::default();
        let last = b.push_seq(&case.input_ids, 0, &table, layout.block_size);
        b.logits_rows = vec![last];
        let mut row = model.forward(&b, &mut kv).unwrap();
        for step in 0..case.greedy_ids.len() {
            let d = max_abs_diff(&row, &case.logits[p - 1 + step]);
            assert!(d < TOL, "{name} case {ci} decode step {step}: max |Δ| {d}");
            let mut b = ForwardBatch::default();
            let last = b.push_seq(
                &[case.greedy_ids[step]],
                p + step,
                &table,
                layout.block_size,
            );
            b.logits_rows = vec![last];
            row = model.forward(&b, &mut kv).unwrap();
        }
    }
}

#[test]
fn llama_matches_hf() {
    check_fixture("llama");
}

#[test]
fn qwen2_matches_hf() {
    check_fixture("qwen2");
}

#[test]
fn qwen2_tied_matches_hf() {
    check_fixture("qwen2-tied");
}
