//! `POST /tokenize` (a prompt, or chat messages rendered with the chat template) and
//! `POST /detokenize`, with vLLM's request and response fields.

use super::error::{parse_json, ApiError};
use super::openai::render::{render_chat, RenderOptions};
use super::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// `POST /tokenize` body: `prompt` or `messages`.
#[derive(Debug, Deserialize)]
struct TokenizeRequest {
    model: Option<String>,
    prompt: Option<String>,
    messages: Option<Vec<Value>>,
    add_special_tokens: Option<bool>,
    add_generation_prompt: Option<bool>,
    continue_final_message: Option<bool>,
    chat_template_kwargs: Option<Value>,
    tools: Option<Value>,
    documents: Option<Value>,
    return_token_strs: Option<bool>,
}

/// `POST /detokenize` body.
#[derive(Debug, Deserialize)]
struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<u32>,
}

/// `POST /tokenize`.
pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ready = state.ready()?;
    let req: TokenizeRequest = parse_json(&body)?;
    state.resolve_model(req.model.as_deref())?;
    let tok = ready.handle.tokenizer();
    let ids = match (&req.prompt, &req.messages) {
        (Some(p), None) => tok.encode(p, req.add_special_tokens.unwrap_or(true)),
        (None, Some(m)) => {
            let opts = RenderOptions::from_request(
                req.add_generation_prompt,
                req.continue_final_message,
                req.tools.as_ref(),
                req.documents.as_ref(),
                req.chat_template_kwargs.as_ref(),
            )?;
            let text = render_chat(&ready, m, opts)?;
            tok.encode(&text, req.add_special_tokens.unwrap_or(false))
        }
        _ => {
            return Err(ApiError::bad_request(
                "Exactly one of `prompt` or `messages` must be given.",
            ))
        }
    }
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let token_strs = req.return_token_strs.unwrap_or(false).then(|| {
        ids.iter()
            .map(|&i| tok.id_to_token(i).unwrap_or_default())
            .collect::<Vec<_>>()
    });
    Ok(Json(json!({
        "count": ids.len(),
        "max_model_len": ready.handle.info().max_model_len,
        "tokens": ids,
        "token_strs": token_strs,
    })))
}

/// `POST /detokenize`.
pub async fn detokenize(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ready = state.ready()?;
    let req: DetokenizeRequest = parse_json(&body)?;
    state.resolve_model(req.model.as_deref())?;
    let vocab = ready.handle.info().config.vocab_size;
    if let Some(bad) = req.tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(ApiError::bad_param(
            format!("Token id {bad} is out of vocabulary (vocab size {vocab})."),
            "tokens",
        ));
    }
    let text = ready
        .handle
        .tokenizer()
        .decode(&req.tokens, false)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(json!({ "prompt": text })))
}
