//! Tests of `tokenizer.rs`.
use super::*;

/// Folder of a fixture under `shared/fixtures`.
pub(crate) fn fixture(name: &str) -> String {
    format!(
        "{}/../../shared/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A fixture's `golden.json`.
pub(crate) fn golden(name: &str) -> Json {
    let text = std::fs::read_to_string(format!("{}/golden.json", fixture(name))).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The SmolLM2 GGUF, or `None` (with a note) when it is not on this machine.
pub(crate) fn smollm2_gguf() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("CANDELA_SMOLLM2_GGUF")
        .map(Into::into)
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            Some(Path::new(&home).join(".cache/candela/SmolLM2-135M-Instruct.Q4_1.gguf"))
        })?;
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "note: {} is absent; skipping the SmolLM2 GGUF test",
            path.display()
        );
        None
    }
}

pub(crate) const FIXTURES: [&str; 3] = ["llama", "qwen2", "gpt-oss"];

fn check_golden(tok: &Tokenizer, g: &Json) {
    for case in g["tokenizer_cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let add = case
            .get("add_special_tokens")
            .and_then(Json::as_bool)
            .unwrap_or(true);
        let want = ids(&case["ids"]);
        assert_eq!(tok.encode(text, add).unwrap(), want, "{text:?} add={add}");
        let decoded = case.get("decoded").and_then(Json::as_str).unwrap_or(text);
        assert_eq!(tok.decode(&want, false).unwrap(), decoded);
        if let Some(skip) = case.get("decoded_skip_special").and_then(Json::as_str) {
            assert_eq!(tok.decode(&want, true).unwrap(), skip);
        }
    }
    let multi = g.get("chat_multi_turn").into_iter();
    for case in g["cases"].as_array().unwrap().iter().chain(multi) {
        let add = case
            .get("add_special_tokens")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text, add).unwrap(),
            ids(&case["input_ids"]),
            "{text:?}"
        );
    }
}

#[test]
fn fixture_tokenizers_match_golden() {
    for name in FIXTURES {
        let tok = Tokenizer::from_dir(fixture(name)).unwrap();
        check_golden(&tok, &golden(name));
        assert!(tok.chat_template().is_some());
    }
}

#[test]
fn fixture_special_tokens_and_eos() {
    let llama = Tokenizer::from_dir(fixture("llama")).unwrap();
    assert_eq!(llama.bos_token(), Some("<|begin_of_text|>"));
    assert_eq!(llama.eos_token(), Some("<|eot_id|>"));
    assert_eq!(llama.eos_token_ids(), &[484, 481]);
    assert!(llama.is_special(480) && !llama.is_special(39));
    assert_eq!(llama.vocab_size(), 485);
    assert_eq!(llama.id_to_token(220).as_deref(), Some("Ġ"));
    let qwen = Tokenizer::from_dir(fixture("qwen2")).unwrap();
    assert_eq!(qwen.eos_token_ids(), &[482, 480]);
    assert_eq!(qwen.bos_token(), None);
    assert_eq!(qwen.pad_token(), Some("<|endoftext|>"));
    let oss = Tokenizer::from_dir(fixture("gpt-oss")).unwrap();
    assert_eq!(oss.eos_token_ids(), &[482, 481, 488]);
    assert!(Tokenizer::from_dir(fixture("no-such-fixture")).is_err());
}

#[test]
fn smollm2_gguf_matches_golden() {
    let Some(path) = smollm2_gguf() else { return };
    let tok = Tokenizer::from_gguf(path).unwrap();
    check_golden(&tok, &golden("smollm2-135m-instruct"));
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_token(), Some("<|im_start|>"));
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert_eq!(tok.eos_token_ids(), &[2]);
    assert!(tok.is_special(0) && tok.is_special(16) && !tok.is_special(17));
    assert!(tok.chat_template().unwrap().contains("<|im_start|>"));
}

#[test]
fn sentencepiece_gguf_is_unsupported() {
    use gguf_file::Value as V;
    let mut meta = std::collections::HashMap::new();
    meta.insert(
        "tokenizer.ggml.model".to_string(),
        V::String("llama".into()),
    );
    let err = Tokenizer::from_gguf_metadata(&meta).unwrap_err();
    assert!(
        matches!(err, TokenizerError::Unsupported(ref m) if m == "llama"),
        "{err}"
    );
    meta.insert("tokenizer.ggml.model".to_string(), V::String("gpt2".into()));
    assert!(matches!(
        Tokenizer::from_gguf_metadata(&meta),
        Err(TokenizerError::Config { .. })
    ));
}
