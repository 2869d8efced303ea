//! `candela generate` end to end: the binary loads a fixture, and `--json` prints a vLLM
//! RequestOutput-shaped object whose greedy ids equal the HF golden; bad flags fail cleanly.

use std::process::Command;

fn fixture(name: &str) -> String {
    format!(
        "{}/../../shared/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn generate_json_matches_golden() {
    for name in ["llama", "qwen2-awq", "llama-gptq", "llama-gptq-actorder"] {
        check_generate_json(name);
    }
}

fn check_generate_json(name: &str) {
    let dir = fixture(name);
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/golden.json")).unwrap())
            .unwrap();
    let case = &g["cases"][0];
    let out = Command::new(env!("CARGO_BIN_EXE_candela"))
        .args([
            "generate",
            "--model",
            &dir,
            "--prompt",
            case["text"].as_str().unwrap(),
            "--max-tokens",
            "16",
            "--temperature",
            "0",
            "--ignore-eos",
            "--json",
        ])
        .args([
            "--generation-config",
            "vllm",
            "--max-model-len",
            "256",
            "--kv-cache-memory-bytes",
            "16000000",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["prompt"], case["text"]);
    assert_eq!(v["prompt_token_ids"], case["input_ids"]);
    let o = &v["outputs"][0];
    assert_eq!(o["index"], 0);
    assert_eq!(o["finish_reason"], "length");
    let margins = case["greedy_top1_top2_margin"].as_array().unwrap();
    let n = margins
        .iter()
        .position(|m| m.as_f64().unwrap() < 1e-3)
        .unwrap_or(16);
    assert_eq!(
        o["token_ids"].as_array().unwrap()[..n],
        case["greedy_ids"].as_array().unwrap()[..n],
        "{name}"
    );
}

#[test]
fn generate_streams_text() {
    let out = Command::new(env!("CARGO_BIN_EXE_candela"))
        .args([
            "generate",
            "--model",
            &fixture("qwen2"),
            "--prompt",
            "Hello",
            "--max-tokens",
            "8",
            "--temperature",
            "0",
        ])
        .args([
            "--max-model-len",
            "128",
            "--kv-cache-memory-bytes",
            "16000000",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty());
}

#[test]
fn generate_reports_bad_model_cleanly() {
    let out = Command::new(env!("CARGO_BIN_EXE_candela"))
        .args(["generate", "--model", "/nonexistent/dir", "--prompt", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/dir") && !err.contains("panicked"),
        "{err}"
    );
}
