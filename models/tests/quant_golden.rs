//! Int4 checkpoints (AutoAWQ GEMM `qwen2-awq`, AutoGPTQ `llama-gptq`, act-order
//! `llama-gptq-actorder`) against the fixtures' references in `../shared/fixtures/`:
//! 1. unpacking: the checkpoint's packed tensors, unpacked by the format's definition and by
//!    our kernel repacking (act-order permutation undone), equal `reference/dequant.safetensors`
//!    bit for bit;
//! 2. logits at every prompt and decode position (one prefill over prompt + continuation, i.e.
//!    the GEMM kernels, and prompt prefill + one decode step per token through the paged cache,
//!    i.e. the GEMV kernels) within `TOL` of the HF goldens, and greedy ids equal up to the first
//!    step whose recorded top1−top2 margin is below `2 * TOL`.
//!
//! Tolerance: 2e-4 absolute on logits of magnitude 1–10, the same as the dense goldens. The
//! goldens were computed in f32 from the dequantized weights, and our kernels dequantize each
//! weight exactly (`(q − z)·s` with an f16 scale and a 4-bit code is exact in f32), so the only
//! difference is summation order inside the matmuls (per-group partial sums, 8-lane
//! accumulators), a few ulps per op — the same budget as the dense path.

mod common;
use common::*;

use candela_kernels::KvLayout;
use candela_models::layers::quant::{unpack_checkpoint, QuantLinear};
use candela_models::layers::{QuantConfig, QuantMethod};
use candela_models::loader::safetensors::SafetensorsWeights;
use candela_models::registry::load_model;
use candela_models::{ForwardBatch, KvCache, LoadOptions, ModelConfig, WeightDType};
use candle_core::Device;

const TOL: f32 = 2e-4;
const FIXTURES: [&str; 3] = ["qwen2-awq", "llama-gptq", "llama-gptq-actorder"];

fn open(name: &str) -> (ModelConfig, SafetensorsWeights, QuantConfig) {
    let dir = fixture(name);
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let quant = QuantConfig::resolve(&cfg, Some(&dir), None)
        .unwrap()
        .expect("fixture is quantized");
    (cfg, SafetensorsWeights::open(&dir).unwrap(), quant)
}

#[test]
fn unpacked_weights_equal_the_reference_dequantization() {
    for name in FIXTURES {
        let (_, weights, quant) = open(name);
        let reference = candle_core::safetensors::load(
            fixture(name).join("reference/dequant.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(reference.len(), 3, "{name}");
        for (tensor_name, t) in &reference {
            let prefix = tensor_name.strip_suffix(".weight").unwrap();
            let (out_dim, in_dim) = t.dims2().unwrap();
            let want: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let unpacked = unpack_checkpoint(&weights, prefix, in_dim, out_dim, &quant).unwrap();
            assert!(
                unpacked
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name} {prefix}: unpack differs"
            );
            let repacked = QuantLinear::load(&weights, prefix, in_dim, out_dim, &quant).unwrap();
            assert!(
                repacked
                    .dequantize()
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name} {prefix}: repack differs"
            );
            // 4 bits per weight plus one f16 scale and one u8 zero per group.
            assert_eq!(
                repacked.packed_bytes(),
                out_dim * in_dim / 2 + out_dim * in_dim.div_ceil(32) * 3
            );
        }
    }
}

fn check_logits(name: &str) {
    let (cfg, weights, quant) = open(name);
    let model = load_model(
        &cfg,
        &weights,
        &LoadOptions::new(WeightDType::Auto).with_quant(Some(quant)),
    )
    .unwrap();
    let layout = KvLayout {
        block_size: 4,
        n_kv_heads: cfg.num_key_value_heads,
        head_dim: cfg.head_dim,
    };
    let mut worst = 0.0f32;
    for (ci, case) in cases(name).iter().enumerate() {
        let all: Vec<u32> = case
            .input_ids
            .iter()
            .chain(&case.greedy_ids)
            .copied()
            .collect();
        let n_blocks = all.len().div_ceil(layout.block_size) + 1;
        let table: Vec<u32> = (0..n_blocks as u32).rev().collect();

        // 1. One prefill over prompt + greedy continuation (GEMM kernels): every row checked.
        let mut kv = KvCache::new(cfg.num_hidden_layers, n_blocks, layout, Default::default());
        let mut b = ForwardBatch::default();
        b.push_seq(&all[..all.len() - 1], 0, &table, layout.block_size);
        b.logits_rows = (0..all.len() - 1).collect();
        let logits = model.forward(&b, &mut kv).unwrap();
        for (r, row) in logits.chunks(cfg.vocab_size).enumerate() {
            let d = max_abs_diff(row, &case.logits[r]);
            worst = worst.max(d);
            assert!(d < TOL, "{name} case {ci} prefill row {r}: max |Δ| {d}");
        }

        // 2. Prompt prefill, then one decode step (GEMV kernels) per greedy token.
        let mut kv = KvCache::new(cfg.num_hidden_layers, n_blocks, layout, Default::default());
        let p = case.input_ids.len();
        let mut b = ForwardBatch::default();
        let last = b.push_seq(&case.input_ids, 0, &table, layout.block_size);
        b.logits_rows = vec![last];
        let mut row = model.forward(&b, &mut kv).unwrap();
        let mut ids_checked = true;
        for step in 0..case.greedy_ids.len() {
            let d = max_abs_diff(&row, &case.logits[p - 1 + step]);
            worst = worst.max(d);
            assert!(d < TOL, "{name} case {ci} decode step {step}: max |Δ| {d}");
            ids_checked &= case.margins[step] >= 2.0 * TOL;
            if ids_checked {
                assert_eq!(
                    argmax(&row),
                    case.greedy_ids[step],
                    "{name} case {ci} greedy id at step {step}"
                );
            }
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
    eprintln!("{name}: max |Δlogit| over all prompt and decode positions = {worst:e}");
}

#[test]
fn qwen2_awq_matches_hf() {
    check_logits("qwen2-awq");
}

#[test]
fn llama_gptq_matches_hf() {
    check_logits("llama-gptq");
}

#[test]
fn llama_gptq_actorder_matches_hf() {
    check_logits("llama-gptq-actorder");
}

#[test]
fn quantized_checkpoint_errors_are_clear() {
    let (cfg, weights, _) = open("qwen2-awq");
    // Loading packed weights without a resolved config names the problem.
    let err = load_model(&cfg, &weights, &LoadOptions::new(WeightDType::Auto))
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("stored quantized"), "{err}");
    // --quantization gptq against an AWQ checkpoint: vLLM's message.
    let err = QuantConfig::resolve(&cfg, None, Some(QuantMethod::Gptq))
        .unwrap_err()
        .to_string();
    assert!(err.contains("(awq) does not match the quantization method specified in the `quantization` argument (gptq)"), "{err}");
    // Marlin aliases read the same checkpoints.
    let (cfg, _, _) = open("llama-gptq");
    let q = QuantConfig::resolve(&cfg, None, Some(QuantMethod::GptqMarlin))
        .unwrap()
        .unwrap();
    assert_eq!(q.method, QuantMethod::GptqMarlin);
}

#[test]
fn quantize_config_json_is_the_fallback() {
    let (mut cfg, _, from_config) = open("llama-gptq-actorder");
    cfg.quantization_config = None;
    let from_dir = QuantConfig::resolve(&cfg, Some(&fixture("llama-gptq-actorder")), None)
        .unwrap()
        .unwrap();
    assert_eq!(from_dir, from_config);
    assert!(from_dir.desc_act);
}
