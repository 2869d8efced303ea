//! Bad input gives clear errors, never a panic: missing/corrupt files, unsupported architecture,
//! mismatched shapes, prompts over `max_model_len`, invalid sampling values.

mod common;
use candela_engine::{Engine, EngineError, Prompt, Request, SamplingParams};
use common::*;
use std::path::{Path, PathBuf};

/// A scratch copy of a fixture (top-level files only) that a test may damage.
fn scratch_copy(name: &str, tag: &str) -> PathBuf {
    let dst =
        std::env::temp_dir().join(format!("candela-bad-{}-{tag}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    dst
}

fn load_err(dir: &Path) -> String {
    match Engine::load(&test_config(dir.to_string_lossy())) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(p, v.to_string()).unwrap();
}

#[test]
fn missing_model_dir() {
    let msg = load_err(Path::new("/nonexistent/candela-model"));
    assert!(msg.contains("/nonexistent/candela-model"), "{msg}");
}

#[test]
fn missing_weights() {
    let d = scratch_copy("qwen2", "noweights");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let msg = load_err(&d);
    assert!(msg.contains("safetensors"), "{msg}");
}

#[test]
fn corrupt_weights() {
    let d = scratch_copy("qwen2", "corrupt");
    let p = d.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_err(&d);
    assert!(
        msg.contains("corrupt") || msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn corrupt_config() {
    let d = scratch_copy("qwen2", "badjson");
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    let msg = load_err(&d);
    assert!(msg.contains("config"), "{msg}");
}

#[test]
fn unsupported_architecture() {
    let d = scratch_copy("qwen2", "arch");
    edit_config(&d, |v| {
        v["architectures"] = serde_json::json!(["MambaForCausalLM"])
    });
    let msg = load_err(&d);
    assert!(
        msg.contains("MambaForCausalLM") && msg.contains("Qwen2ForCausalLM"),
        "{msg}"
    );
}

#[test]
fn mismatched_shapes() {
    let d = scratch_copy("llama", "shape");
    edit_config(&d, |v| v["intermediate_size"] = serde_json::json!(96));
    let msg = load_err(&d);
    assert!(msg.contains("shape") && msg.contains("96"), "{msg}");
}

#[test]
fn missing_tensor() {
    let d = scratch_copy("llama", "layers");
    edit_config(&d, |v| v["num_hidden_layers"] = serde_json::json!(3));
    let msg = load_err(&d);
    assert!(msg.contains("model.layers.2"), "{msg}");
}

#[test]
fn max_model_len_over_the_model_limit() {
    let mut cfg = test_config(fixture("qwen2").to_string_lossy());
    cfg.max_model_len = Some(1 << 20);
    let msg = Engine::load(&cfg).err().expect("should fail").to_string();
    assert!(msg.contains("max_model_len"), "{msg}");
}

#[test]
fn prompt_too_long_and_bad_params() {
    let e = start(&test_config(fixture("qwen2").to_string_lossy()));
    let submit = |prompt: Vec<u32>, params: SamplingParams| {
        e.submit(Request {
            id: "x".into(),
            prompt: Prompt::Tokens(prompt),
            params,
            priority: 0,
        })
    };
    match submit(vec![5; 300], greedy(4)) {
        Err(EngineError::TooLong { message }) => assert!(
            message.contains("300") && message.contains("256"),
            "{message}"
        ),
        other => panic!("expected TooLong, got {:?}", other.err()),
    }
    match submit(vec![5; 250], greedy(10)) {
        Err(EngineError::TooLong { message }) => assert!(
            message.contains("260") && message.contains("256"),
            "{message}"
        ),
        other => panic!("expected TooLong, got {:?}", other.err()),
    }
    for (params, param) in [
        (
            SamplingParams {
                temperature: -1.0,
                ..greedy(4)
            },
            "temperature",
        ),
        (
            SamplingParams {
                top_p: 0.0,
                ..greedy(4)
            },
            "top_p",
        ),
        (
            SamplingParams {
                top_k: -5,
                ..greedy(4)
            },
            "top_k",
        ),
        (
            SamplingParams {
                min_p: 1.5,
                ..greedy(4)
            },
            "min_p",
        ),
        (
            SamplingParams {
                repetition_penalty: 0.0,
                ..greedy(4)
            },
            "repetition_penalty",
        ),
        (SamplingParams { n: 0, ..greedy(4) }, "n"),
        (
            SamplingParams {
                max_tokens: Some(0),
                ..greedy(4)
            },
            "max_tokens",
        ),
        (
            SamplingParams {
                logit_bias: vec![(100_000, 1.0)],
                ..greedy(4)
            },
            "logit_bias",
        ),
    ] {
        match submit(vec![5; 4], params) {
            Err(EngineError::InvalidParam { param: Some(p), .. }) => assert_eq!(p, param),
            other => panic!("{param}: expected InvalidParam, got {:?}", other.err()),
        }
    }
    assert!(matches!(
        submit(vec![], greedy(4)),
        Err(EngineError::InvalidParam { .. })
    ));
    assert!(matches!(
        submit(vec![9999], greedy(4)),
        Err(EngineError::InvalidParam { .. })
    ));
    // The engine is unharmed.
    assert_eq!(
        run(&e, "ok", Prompt::Tokens(vec![5, 6, 7]), greedy(3))[0]
            .token_ids
            .len(),
        3
    );
    e.shutdown();
}
