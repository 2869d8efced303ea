//! Logits of our models against HF transformers goldens (float32 eager attention on CPU) for the
//! tiny random-weight fixtures in `../shared/fixtures/`.
//!
//! Tolerance: 2e-4 absolute on logits of magnitude 1–10. Both sides compute in f32 from the same
//! bf16-stored weights; only summation order differs (HF/MKL vs gemm + our kernels), which moves
//! results by a few ulps per op, well under 1e-4 at these sizes. Greedy ids must equal the goldens
//! up to the first step whose top1−top2 margin is below `2 * TOL`.

mod common;
use common::*;

use candela_models::{LoadOptions, WeightDType};

const TOL: f32 = 2e-4;

fn check_fixture(name: &str) {
    check_teacher_forced(name, LoadOptions::new(WeightDType::Auto), TOL);
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
