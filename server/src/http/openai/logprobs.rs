//! Logprobs in the two OpenAI shapes: chat (`content: [{token, logprob, bytes, top_logprobs}]`)
//! and completions (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`). Token strings are
//! each id decoded alone, as vLLM does.

use candela_engine::tokenizer::Tokenizer;
use candela_engine::TokenLogprob;
use serde_json::{json, Map, Value};

/// Text of one token id on its own (special tokens kept).
pub fn token_str(tok: &Tokenizer, id: u32) -> String {
    tok.decode(&[id], false).unwrap_or_default()
}

fn clamp(lp: f32) -> f64 {
    if lp.is_nan() {
        -9999.0
    } else {
        (lp as f64).max(-9999.0)
    }
}

fn entry(tok: &Tokenizer, id: u32, lp: f32) -> Value {
    let s = token_str(tok, id);
    let bytes: Vec<u8> = s.as_bytes().to_vec();
    json!({"token": s, "logprob": clamp(lp), "bytes": bytes})
}

/// Chat logprobs `{"content": [...]}` for `lps`, with up to `top` alternatives per token.
pub fn chat(tok: &Tokenizer, lps: &[TokenLogprob], top: usize) -> Value {
    let content: Vec<Value> = lps
        .iter()
        .map(|lp| {
            let mut e = entry(tok, lp.token, lp.logprob);
            let tops: Vec<Value> = lp
                .top
                .iter()
                .take(top)
                .map(|&(id, l)| entry(tok, id, l))
                .collect();
            e["top_logprobs"] = Value::Array(tops);
            e
        })
        .collect();
    json!({ "content": content })
}

/// Builds completions logprobs incrementally (offsets continue across streamed chunks).
#[derive(Debug, Clone, Default)]
pub struct CompletionLogprobs {
    offset: usize,
}

impl CompletionLogprobs {
    /// Offsets start at `initial` (the echoed prompt's length, else 0).
    pub fn new(initial: usize) -> Self {
        Self { offset: initial }
    }

    /// The completions logprobs object for `lps`; `prompt` entries (echo) come first, with null
    /// logprobs since the engine does not score prompt tokens.
    pub fn build(&mut self, tok: &Tokenizer, prompt: &[u32], lps: &[TokenLogprob]) -> Value {
        let mut tokens = Vec::new();
        let mut token_logprobs = Vec::new();
        let mut top_logprobs = Vec::new();
        let mut text_offset = Vec::new();
        for &id in prompt {
            let s = token_str(tok, id);
            text_offset.push(self.offset);
            self.offset += s.chars().count();
            tokens.push(Value::String(s));
            token_logprobs.push(Value::Null);
            top_logprobs.push(Value::Null);
        }
        for lp in lps {
            let s = token_str(tok, lp.token);
            text_offset.push(self.offset);
            self.offset += s.chars().count();
            let mut top = Map::new();
            top.insert(s.clone(), clamp(lp.logprob).into());
            for &(id, l) in &lp.top {
                top.entry(token_str(tok, id)).or_insert(clamp(l).into());
            }
            tokens.push(Value::String(s));
            token_logprobs.push(clamp(lp.logprob).into());
            top_logprobs.push(Value::Object(top));
        }
        json!({
            "text_offset": text_offset,
            "token_logprobs": token_logprobs,
            "tokens": tokens,
            "top_logprobs": top_logprobs,
        })
    }
}
