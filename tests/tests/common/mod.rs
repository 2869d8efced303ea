//! Shared helpers of the end-to-end tests: fixture paths, golden cases, engine construction and
//! running a request to completion.
#![allow(dead_code)]

use candela_engine::{
    Engine, EngineConfig, EngineHandle, FinishReason, GenerationConfigMode, Prompt, Request,
    RequestEvent, SamplingParams,
};
use std::path::PathBuf;

/// Path of a fixture directory.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures"
    ))
    .join(name)
}

/// The real SmolLM2 GGUF, if `scripts/fetch_smollm2.sh` has fetched it.
pub fn smollm2_gguf() -> Option<PathBuf> {
    let p = std::env::var_os("CANDELA_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/candela/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if p.exists() {
        Some(p)
    } else {
        assert!(
            std::env::var_os("CANDELA_REQUIRE_GGUF").is_none(),
            "SmolLM2 GGUF missing at {} (run scripts/fetch_smollm2.sh)",
            p.display()
        );
        eprintln!(
            "note: {} not found; run scripts/fetch_smollm2.sh",
            p.display()
        );
        None
    }
}

/// One golden case of a fixture.
pub struct GoldenCase {
    pub input_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
    pub margins: Vec<f32>,
    pub text: Option<String>,
    pub kind: String,
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The `cases` of a fixture's golden.json.
pub fn golden_cases(name: &str) -> Vec<GoldenCase> {
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("golden.json")).unwrap())
            .unwrap();
    g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| GoldenCase {
            input_ids: ids(&c["input_ids"]),
            greedy_ids: ids(&c["greedy_ids"]),
            margins: c["greedy_top1_top2_margin"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_f64().unwrap() as f32)
                .collect(),
            text: c["text"].as_str().map(String::from),
            kind: c["kind"].as_str().unwrap_or("text").to_string(),
        })
        .collect()
}

/// How many leading greedy ids are safe to compare: up to (excluding) the first step whose
/// recorded top1-top2 margin is below `tol`.
pub fn comparable_prefix(case: &GoldenCase, tol: f32) -> usize {
    case.margins
        .iter()
        .position(|&m| m < tol)
        .unwrap_or(case.greedy_ids.len())
}

/// Engine config for a fixture with small, test-friendly limits and vLLM's neutral sampling defaults.
pub fn test_config(model: impl Into<String>) -> EngineConfig {
    let mut cfg = EngineConfig::new(model);
    cfg.max_model_len = Some(256);
    cfg.kv_cache_memory_bytes = 32 << 20;
    cfg.generation_config = GenerationConfigMode::Vllm;
    // The fixtures store bf16, so `auto` would give a bf16 KV cache; these tests compare the
    // engine's plumbing with the goldens at f32-cache precision and size pools in f32 blocks.
    // The bf16 cache is tested in models/tests/fp8_kv.rs and by `auto_kv_cache_of_a_bf16_model`.
    cfg.kv_cache_dtype = "float32".into();
    cfg
}

/// Starts an engine.
pub fn start(cfg: &EngineConfig) -> EngineHandle {
    Engine::load(cfg)
        .unwrap_or_else(|e| panic!("loading {}: {e}", cfg.model))
        .start()
}

/// Greedy parameters: temperature 0, EOS ignored, `max_tokens` tokens.
pub fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        ..SamplingParams::default()
    }
}

/// Result of one finished sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: Option<FinishReason>,
}

/// Submits and waits for every sequence of a request; results indexed by sequence.
pub fn run(
    engine: &EngineHandle,
    id: &str,
    prompt: Prompt,
    params: SamplingParams,
) -> Vec<Finished> {
    let n = params.n.max(1);
    let mut stream = engine
        .submit(Request {
            id: id.into(),
            prompt,
            params,
            priority: 0,
        })
        .unwrap();
    collect(&mut stream.events, n)
}

/// Drains a request's events until all `n` sequences finished.
pub fn collect(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<RequestEvent>,
    n: usize,
) -> Vec<Finished> {
    let mut out = vec![
        Finished {
            token_ids: vec![],
            text: String::new(),
            finish_reason: None
        };
        n
    ];
    let mut done = 0;
    while done < n {
        match events.blocking_recv().expect("stream ended early") {
            RequestEvent::Delta(d) => {
                let f = &mut out[d.index];
                f.token_ids.extend(d.token_ids);
                f.text.push_str(&d.text);
                if d.finish_reason.is_some() {
                    f.finish_reason = d.finish_reason;
                    done += 1;
                }
            }
            RequestEvent::Error(e) => panic!("request failed: {e}"),
        }
    }
    out
}

/// Stats once the engine has published a snapshot with every KV block free (the last event of a
/// request is sent mid-step, the snapshot after the step). Panics after 10 s.
pub fn idle_stats(engine: &EngineHandle) -> candela_engine::EngineStats {
    let t = std::time::Instant::now();
    loop {
        let s = engine.stats();
        if s.num_free_blocks == s.num_blocks && s.num_running == 0 && s.num_waiting == 0 {
            return s;
        }
        assert!(t.elapsed().as_secs() < 10, "engine never went idle: {s:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
