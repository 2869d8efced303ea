//! Shared by the golden tests of this crate: fixture paths, the golden cases with their
//! reference logits, small comparisons, and the teacher-forced golden check every dense and
//! quantized fixture goes through.
#![allow(dead_code)]

use candela_kernels::KvLayout;
use candela_models::layers::QuantConfig;
use candela_models::loader::safetensors::SafetensorsWeights;
use candela_models::registry::load_model;
use candela_models::{ForwardBatch, KvCache, LoadOptions, ModelConfig};
use candle_core::{Device, Tensor};
use std::path::PathBuf;

/// Path of a fixture directory under `../shared/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures"
    ))
    .join(name)
}

/// One golden case: prompt, greedy continuation, its top1-top2 margins and HF's logits rows
/// (`[len(input_ids) + 16, vocab]`).
pub struct Case {
    pub input_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
    pub margins: Vec<f32>,
    pub logits: Vec<Vec<f32>>,
}

/// Every case of a fixture's golden.json with its logits from reference/golden.safetensors.
pub fn cases(name: &str) -> Vec<Case> {
    let dir = fixture(name);
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join("reference/golden.safetensors"), &Device::Cpu)
            .unwrap();
    let ids = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect::<Vec<_>>()
    };
    golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let t: &Tensor = &tensors[c["logits_key"].as_str().unwrap()];
            Case {
                input_ids: ids(&c["input_ids"]),
                greedy_ids: ids(&c["greedy_ids"]),
                margins: c["greedy_top1_top2_margin"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_f64().unwrap() as f32)
                    .collect(),
                logits: t.to_vec2::<f32>().unwrap(),
            }
        })
        .collect()
}

/// Largest absolute elementwise difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Index of the largest value (first one on ties).
pub fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0 as u32
}

/// Loads fixture `name` with `opts` (its quantization resolved from the directory) and checks
/// HF's logits teacher-forced, for every case:
/// 1. one prefill over prompt + greedy continuation (the GEMM kernels): every row within `tol`;
/// 2. prompt prefill, then one decode step per golden token through a paged cache whose block
///    table is reversed, i.e. non-contiguous (the GEMV kernels): every step within `tol`, and the
///    argmax equal to the golden id up to the first step whose recorded top1−top2 margin is
///    below `2 * tol` (a flip there is rounding, not a bug).
///
/// Returns the largest |Δlogit| seen.
pub fn check_teacher_forced(name: &str, opts: LoadOptions, tol: f32) -> f32 {
    let dir = fixture(name);
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let weights = SafetensorsWeights::open(&dir).unwrap();
    let quant = QuantConfig::resolve(&cfg, Some(&dir), None).unwrap();
    let model = load_model(&cfg, &weights, &opts.with_quant(quant)).unwrap();
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

        let mut kv = KvCache::new(cfg.num_hidden_layers, n_blocks, layout, Default::default());
        let mut b = ForwardBatch::default();
        b.push_seq(&all[..all.len() - 1], 0, &table, layout.block_size);
        b.logits_rows = (0..all.len() - 1).collect();
        let logits = model.forward(&b, &mut kv).unwrap();
        for (r, row) in logits.chunks(cfg.vocab_size).enumerate() {
            let d = max_abs_diff(row, &case.logits[r]);
            worst = worst.max(d);
            assert!(
                d < tol,
                "{name} case {ci} prefill row {r}: max |Δ| {d} ≥ {tol}"
            );
        }

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
            assert!(
                d < tol,
                "{name} case {ci} decode step {step}: max |Δ| {d} ≥ {tol}"
            );
            ids_checked &= case.margins[step] >= 2.0 * tol;
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
    worst
}
