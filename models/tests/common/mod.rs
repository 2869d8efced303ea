//! Shared by the golden tests of this crate: fixture paths, the golden cases with their
//! reference logits, and small comparisons.
#![allow(dead_code)]

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
