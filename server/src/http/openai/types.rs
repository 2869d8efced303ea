//! Request bodies of the OpenAI-compatible endpoints (vLLM 0.33 field names; unknown fields are
//! ignored), and their translation into engine `SamplingParams` on top of the model's defaults.

use crate::http::error::ApiError;
use candela_engine::SamplingParams;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::HashMap;

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a final usage chunk.
    pub include_usage: Option<bool>,
    /// Add usage to every chunk (with `include_usage`).
    pub continuous_usage_stats: Option<bool>,
}

/// Sampling and output fields shared by chat and completions.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommonFields {
    /// Served model name (absent = the main name).
    pub model: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Nucleus mass.
    pub top_p: Option<f32>,
    /// Top-k (0 or -1 = off).
    pub top_k: Option<i32>,
    /// Min-p.
    pub min_p: Option<f32>,
    /// Repetition penalty.
    pub repetition_penalty: Option<f32>,
    /// Presence penalty.
    pub presence_penalty: Option<f32>,
    /// Frequency penalty.
    pub frequency_penalty: Option<f32>,
    /// Token id (as a string) → additive bias.
    pub logit_bias: Option<HashMap<String, f32>>,
    /// Random seed.
    pub seed: Option<i64>,
    /// Number of choices.
    pub n: Option<usize>,
    /// Stop strings.
    pub stop: Option<StopField>,
    /// Stop token ids.
    pub stop_token_ids: Option<Vec<u32>>,
    /// Keep stop strings in the output.
    pub include_stop_str_in_output: Option<bool>,
    /// Ignore EOS.
    pub ignore_eos: Option<bool>,
    /// Minimum output tokens.
    pub min_tokens: Option<usize>,
    /// Skip special tokens when detokenizing.
    pub skip_special_tokens: Option<bool>,
    /// Spaces between special tokens.
    pub spaces_between_special_tokens: Option<bool>,
    /// Scheduling priority (lower runs first).
    pub priority: Option<i32>,
    /// Add `prompt_token_ids` / `token_ids` to the response.
    pub return_token_ids: Option<bool>,
    /// Stream as server-sent events.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Tokenize the prompt with special tokens (BOS).
    pub add_special_tokens: Option<bool>,
    /// Prompt logprobs (not supported: the engine does not compute them).
    pub prompt_logprobs: Option<i64>,
    /// Beam search (not supported).
    pub use_beam_search: Option<bool>,
    /// Client-chosen request id.
    pub request_id: Option<String>,
}

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// Conversation messages.
    pub messages: Vec<Value>,
    /// Return logprobs of the chosen tokens.
    pub logprobs: Option<bool>,
    /// Alternatives per token (with `logprobs`).
    pub top_logprobs: Option<i64>,
    /// Output cap (deprecated name).
    pub max_tokens: Option<usize>,
    /// Output cap.
    pub max_completion_tokens: Option<usize>,
    /// Tools, passed to the chat template.
    pub tools: Option<Value>,
    /// Append the assistant turn header (default true).
    pub add_generation_prompt: Option<bool>,
    /// Leave the final message open for the model to continue.
    pub continue_final_message: Option<bool>,
    /// Documents for RAG templates.
    pub documents: Option<Value>,
    /// A per-request template (refused, as vLLM does without `--trust-request-chat-template`).
    pub chat_template: Option<String>,
    /// Extra template variables.
    pub chat_template_kwargs: Option<Value>,
    /// Prepend the last message's content when it has the response role.
    pub echo: Option<bool>,
    /// Shared fields.
    #[serde(flatten)]
    pub common: CommonFields,
}

/// `prompt` of a completions request.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    /// One text prompt.
    Text(String),
    /// One token-id prompt.
    Tokens(Vec<u32>),
    /// Several text prompts.
    Texts(Vec<String>),
    /// Several token-id prompts.
    TokenLists(Vec<Vec<u32>>),
}

/// `POST /v1/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The prompt(s).
    pub prompt: Option<PromptField>,
    /// Text after the completion (not supported).
    pub suffix: Option<String>,
    /// Prepend the prompt to the output.
    pub echo: Option<bool>,
    /// Number of top logprobs per token.
    pub logprobs: Option<usize>,
    /// Output cap: absent = 16, null = until the context is full (vLLM).
    #[serde(default = "default_completion_max", deserialize_with = "nullable")]
    pub max_tokens: Option<Option<usize>>,
    /// Shared fields.
    #[serde(flatten)]
    pub common: CommonFields,
}

fn default_completion_max() -> Option<Option<usize>> {
    Some(Some(16))
}

fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<usize>>, D::Error> {
    Option::<usize>::deserialize(d).map(Some)
}

/// Applies the request's sampling fields over the model's defaults (`max_tokens` is set by the
/// caller, once the prompt length is known).
pub fn sampling_params(
    defaults: &SamplingParams,
    c: &CommonFields,
) -> Result<SamplingParams, ApiError> {
    if c.use_beam_search == Some(true) {
        return Err(ApiError::bad_param(
            "Beam search is not supported by this server.",
            "use_beam_search",
        ));
    }
    if c.prompt_logprobs.is_some_and(|k| k != 0) {
        return Err(ApiError::bad_param(
            "prompt_logprobs is not supported by this server.",
            "prompt_logprobs",
        ));
    }
    let mut p = defaults.clone();
    p.max_tokens = None;
    if let Some(v) = c.temperature {
        p.temperature = v;
    }
    if let Some(v) = c.top_p {
        p.top_p = v;
    }
    if let Some(v) = c.top_k {
        p.top_k = v;
    }
    if let Some(v) = c.min_p {
        p.min_p = v;
    }
    if let Some(v) = c.repetition_penalty {
        p.repetition_penalty = v;
    }
    if let Some(v) = c.presence_penalty {
        p.presence_penalty = v;
    }
    if let Some(v) = c.frequency_penalty {
        p.frequency_penalty = v;
    }
    if let Some(bias) = &c.logit_bias {
        let mut out = Vec::with_capacity(bias.len());
        for (k, v) in bias {
            let id: u32 = k.trim().parse().map_err(|_| {
                ApiError::bad_param(
                    format!("logit_bias keys must be token ids, got {k:?}."),
                    "logit_bias",
                )
            })?;
            out.push((id, v.clamp(-100.0, 100.0)));
        }
        out.sort_by_key(|(id, _)| *id);
        p.logit_bias = out;
    }
    p.seed = c.seed.map(|s| s as u64);
    if let Some(n) = c.n {
        p.n = n;
    }
    match &c.stop {
        Some(StopField::One(s)) => p.stop = vec![s.clone()],
        Some(StopField::Many(v)) => p.stop = v.clone(),
        None => {}
    }
    if let Some(v) = &c.stop_token_ids {
        p.stop_token_ids = v.clone();
    }
    if let Some(v) = c.include_stop_str_in_output {
        p.include_stop_str_in_output = v;
    }
    if let Some(v) = c.ignore_eos {
        p.ignore_eos = v;
    }
    if let Some(v) = c.min_tokens {
        p.min_tokens = v;
    }
    if let Some(v) = c.skip_special_tokens {
        p.skip_special_tokens = v;
    }
    if let Some(v) = c.spaces_between_special_tokens {
        p.spaces_between_special_tokens = v;
    }
    Ok(p)
}

/// vLLM's output cap: the smallest of the room left in the context, the request's value and the
/// model's default. Fails (with both lengths in the message) when the prompt does not fit.
pub fn resolve_max_tokens(
    handle: &candela_engine::EngineHandle,
    prompt: &[u32],
    requested: Option<usize>,
) -> Result<usize, ApiError> {
    if requested == Some(0) {
        return Err(ApiError::bad_param(
            "max_tokens must be at least 1, got 0.",
            "max_tokens",
        ));
    }
    handle.check_prompt(prompt, requested)?;
    let info = handle.info();
    let room = info.max_model_len.saturating_sub(prompt.len());
    let mut m = room;
    for v in [requested, info.default_params.max_tokens]
        .into_iter()
        .flatten()
    {
        m = m.min(v);
    }
    Ok(m.max(1))
}

/// Whether to stream, and the usage options.
pub fn stream_flags(c: &CommonFields) -> (bool, bool, bool) {
    let stream = c.stream.unwrap_or(false);
    let o = c.stream_options.clone().unwrap_or_default();
    let usage = stream && o.include_usage.unwrap_or(false);
    let continuous = usage && o.continuous_usage_stats.unwrap_or(false);
    (stream, usage, continuous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_max_tokens_absent_null_and_set() {
        let r: CompletionRequest = serde_json::from_str(r#"{"prompt":"x"}"#).unwrap();
        assert_eq!(r.max_tokens, Some(Some(16)));
        let r: CompletionRequest =
            serde_json::from_str(r#"{"prompt":"x","max_tokens":null}"#).unwrap();
        assert_eq!(r.max_tokens, Some(None));
        let r: CompletionRequest =
            serde_json::from_str(r#"{"prompt":[[1,2],[3]],"max_tokens":5,"foo":1}"#).unwrap();
        assert_eq!(r.max_tokens, Some(Some(5)));
        assert!(matches!(r.prompt, Some(PromptField::TokenLists(_))));
    }

    #[test]
    fn request_fields_override_defaults() {
        let body = r#"{"messages":[],"temperature":0,"stop":"x","logit_bias":{"5":200},"seed":-1}"#;
        let r: ChatRequest = serde_json::from_str(body).unwrap();
        let d = SamplingParams {
            top_k: 20,
            ..Default::default()
        };
        let p = sampling_params(&d, &r.common).unwrap();
        assert_eq!((p.temperature, p.top_k), (0.0, 20));
        assert_eq!(p.stop, vec!["x".to_string()]);
        assert_eq!(p.logit_bias, vec![(5, 100.0)]);
        assert_eq!(p.seed, Some(u64::MAX));
        let bad: ChatRequest =
            serde_json::from_str(r#"{"messages":[],"logit_bias":{"a":1}}"#).unwrap();
        assert!(sampling_params(&d, &bad.common).is_err());
    }
}
