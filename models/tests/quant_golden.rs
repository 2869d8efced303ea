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
//!
//! The default decode path (`Int4Activations::Int8`: activations rounded per group to
//! `max|x|/127` steps, integer dot products) is checked too, with `TOL_INT8` = 0.25: each
//! activation moves by up to half a step (≤ 0.4 % of its group's largest value), which through
//! 2 layers measured 0.085 (qwen2-awq), 0.110 (llama-gptq) and 0.102 (act-order) on these
//! fixtures' logits of magnitude 1–10; the bound is about 2x that. Greedy ids must still equal
//! the goldens wherever the recorded margin is at least 0.5. A wrong scale, zero point or
//! nibble order moves logits by whole units and fails it.
//!
//! `--dtype bfloat16` (dense weights rounded to bf16; on AVX512_BF16 CPUs the int4 prefill GEMM
//! multiplies bf16-rounded activations by the exact codes `q − z`, scales applied per group in
//! f32) is checked with `TOL_BF16` = 0.1: 2⁻⁹ relative rounding per activation and per dense
//! weight measured 0.039 (qwen2-awq), 0.039 (llama-gptq) and 0.034 (act-order) worst on these
//! logits; the bound is about 2.5x that (the dense bf16 goldens allow 0.3).

mod common;
use common::*;

use candela_models::layers::quant::{unpack_checkpoint, QuantLinear};
use candela_models::layers::{QuantConfig, QuantMethod};
use candela_models::loader::safetensors::SafetensorsWeights;
use candela_models::registry::load_model;
use candela_models::{Int4Activations, LoadOptions, ModelConfig, WeightDType};
use candle_core::Device;

const TOL: f32 = 2e-4;
const TOL_INT8: f32 = 0.25;
const TOL_BF16: f32 = 0.1;
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
    let exact = LoadOptions::new(WeightDType::Auto).with_int4_activations(Int4Activations::F32);
    check_teacher_forced(name, exact, TOL);
    let int8 = LoadOptions::new(WeightDType::Auto).with_int4_activations(Int4Activations::Int8);
    check_teacher_forced(name, int8, TOL_INT8);
    // `--dtype bfloat16`: dense weights rounded to bf16, int4 prefill on bf16 activations.
    let bf16 = LoadOptions::new(WeightDType::BF16);
    assert!(bf16.int4_bf16_prefill());
    let worst = check_teacher_forced(name, bf16, TOL_BF16);
    eprintln!("{name} --dtype bfloat16: worst logit error {worst}");
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
