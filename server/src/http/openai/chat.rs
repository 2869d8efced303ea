//! `POST /v1/chat/completions`: render the conversation with the chat template, tokenize it
//! without special tokens (as vLLM), run it, and answer one `chat.completion` object or a stream of
//! `chat.completion.chunk` events.

use super::logprobs;
use super::render::{render_chat, RenderOptions};
use super::types::{resolve_max_tokens, sampling_params, stream_flags, ChatRequest};
use crate::http::error::{parse_json, ApiError};
use crate::http::generate::{
    base_request_id, finish_str, stop_reason_json, Event, Running, SeqOutput,
};
use crate::http::sse::{done_frame, frame, sse_response, ChunkBuilder};
use crate::http::state::{unix_now, AppState, InFlight, Ready};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use candela_engine::tokenizer::Tokenizer;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// What every chunk or response repeats.
#[derive(Clone)]
struct Meta {
    id: String,
    created: u64,
    model: String,
    role: String,
    n: usize,
    prompt_ids: Arc<Vec<u32>>,
    top_logprobs: Option<usize>,
    return_token_ids: bool,
    echo: Option<String>,
}

/// The handler.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let arrival = Instant::now();
    let guard = state.enter();
    let ready = state.ready()?;
    let req: ChatRequest = parse_json(&body)?;
    let model = state.resolve_model(req.common.model.as_deref())?;
    if req.chat_template.is_some() {
        return Err(ApiError::bad_param(
            "Chat template is passed with request, but --trust-request-chat-template is not set. Refused request with untrusted chat template.",
            "chat_template",
        ));
    }
    let opts = RenderOptions::from_request(
        req.add_generation_prompt,
        req.continue_final_message,
        req.tools.as_ref(),
        req.documents.as_ref(),
        req.chat_template_kwargs.as_ref(),
    )?;
    let text = render_chat(&ready, &req.messages, opts)?;
    let handle = &ready.handle;
    let add_special = req.common.add_special_tokens.unwrap_or(false);
    let prompt = handle
        .tokenizer()
        .encode(&text, add_special)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;

    let mut params = sampling_params(&handle.info().default_params, &req.common)?;
    let top = req.top_logprobs.unwrap_or(0);
    if top < 0 {
        return Err(ApiError::bad_param(
            format!("top_logprobs must be between 0 and 20, got {top}."),
            "top_logprobs",
        ));
    }
    let want_logprobs = req.logprobs.unwrap_or(false);
    if top > 0 && !want_logprobs {
        return Err(ApiError::bad_param(
            "when using `top_logprobs`, `logprobs` must be set to true.",
            "top_logprobs",
        ));
    }
    params.logprobs = want_logprobs.then_some(top as usize);
    let requested = req.max_completion_tokens.or(req.max_tokens);
    params.max_tokens = Some(resolve_max_tokens(handle, &prompt, requested)?);

    let base = match &req.common.request_id {
        Some(id) if !headers.contains_key("x-request-id") && !id.is_empty() => id.clone(),
        _ => base_request_id(&headers),
    };
    let role = state.cfg.response_role.clone();
    let echo = if req.echo.unwrap_or(false) {
        req.messages
            .last()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some(role.as_str()))
            .and_then(|m| super::render::normalize_messages(std::slice::from_ref(m)).ok())
            .and_then(|m| {
                m[0].get("content")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
    } else {
        None
    };
    let n = params.n.max(1);
    let priority = req.common.priority.unwrap_or(0);
    let running = Running::submit(&state, &ready, &base, prompt, params, priority, arrival)?;
    let meta = Meta {
        id: format!("chatcmpl-{base}"),
        created: unix_now(),
        model,
        role,
        n,
        prompt_ids: running.prompt_ids.clone(),
        top_logprobs: want_logprobs.then_some(top as usize),
        return_token_ids: req.common.return_token_ids.unwrap_or(false),
        echo,
    };
    let (stream, usage, continuous) = stream_flags(&req.common);
    if stream {
        return Ok(stream_response(
            meta, running, ready, guard, usage, continuous,
        ));
    }
    let outs = running.collect().await?;
    drop(guard);
    Ok(axum::Json(full_response(&meta, ready.handle.tokenizer(), outs)).into_response())
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": null,
    })
}

fn full_response(meta: &Meta, tok: &Tokenizer, outs: Vec<SeqOutput>) -> Value {
    let completion: usize = outs.iter().map(|o| o.token_ids.len()).sum();
    let choices: Vec<Value> = outs
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let content = match &meta.echo {
                Some(e) => format!("{e}{}", o.text),
                None => o.text.clone(),
            };
            json!({
                "index": i,
                "message": {
                    "role": meta.role,
                    "content": content,
                    "refusal": null,
                    "annotations": null,
                    "audio": null,
                    "function_call": null,
                    "tool_calls": [],
                    "reasoning": null,
                    "reasoning_content": null,
                },
                "logprobs": meta.top_logprobs.map(|k| logprobs::chat(tok, &o.logprobs, k)),
                "finish_reason": finish_str(o.finish_reason),
                "stop_reason": stop_reason_json(&o.stop_reason),
                "token_ids": meta.return_token_ids.then_some(&o.token_ids),
            })
        })
        .collect();
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
        "service_tier": null,
        "system_fingerprint": null,
        "usage": usage(meta.prompt_ids.len(), completion),
        "prompt_logprobs": null,
        "prompt_token_ids": meta.return_token_ids.then_some(&*meta.prompt_ids),
        "kv_transfer_params": null,
    })
}

struct ChatChunks {
    meta: Meta,
    ready: Arc<Ready>,
    usage: bool,
    continuous: bool,
    per_choice: Vec<usize>,
    failed: bool,
    _guard: InFlight,
}

impl ChatChunks {
    /// A chunk; `used` = completion tokens for its usage field (continuous stats, final chunk).
    fn chunk(&self, choices: Vec<Value>, used: Option<usize>) -> Value {
        let mut c = json!({
            "id": self.meta.id,
            "object": "chat.completion.chunk",
            "created": self.meta.created,
            "model": self.meta.model,
            "choices": choices,
        });
        if let Some(used) = used {
            c["usage"] = usage(self.meta.prompt_ids.len(), used);
        }
        c
    }

    fn initial(&self) -> VecDeque<Bytes> {
        let mut q = VecDeque::new();
        for i in 0..self.meta.n {
            let choice = json!({
                "index": i,
                "delta": {"role": self.meta.role, "content": ""},
                "logprobs": null,
                "finish_reason": null,
            });
            let mut c = self.chunk(vec![choice], self.continuous.then_some(0));
            if self.meta.return_token_ids {
                c["prompt_token_ids"] = json!(&*self.meta.prompt_ids);
            }
            q.push_back(frame(&c));
        }
        if let Some(e) = &self.meta.echo {
            for i in 0..self.meta.n {
                let choice = json!({
                    "index": i,
                    "delta": {"content": e},
                    "logprobs": null,
                    "finish_reason": null,
                });
                q.push_back(frame(
                    &self.chunk(vec![choice], self.continuous.then_some(0)),
                ));
            }
        }
        q
    }
}

impl ChunkBuilder for ChatChunks {
    type Item = Event;

    fn on_event(&mut self, ev: Event, out: &mut VecDeque<Bytes>) {
        match ev {
            Event::Delta(d) => {
                let used = match self.per_choice.get_mut(d.index) {
                    Some(u) => {
                        *u += d.token_ids.len();
                        *u
                    }
                    None => 0,
                };
                let finished = d.finish_reason.is_some();
                let has_lp = self.meta.top_logprobs.is_some() && !d.logprobs.is_empty();
                if d.text.is_empty() && !finished && !has_lp && !self.meta.return_token_ids {
                    return;
                }
                let tok = self.ready.handle.tokenizer();
                let mut choice = json!({
                    "index": d.index,
                    "delta": {"content": d.text},
                    "logprobs": self.meta.top_logprobs.map(|k| logprobs::chat(tok, &d.logprobs, k)),
                    "finish_reason": finish_str(d.finish_reason),
                });
                if finished {
                    choice["stop_reason"] = stop_reason_json(&d.stop_reason);
                }
                if self.meta.return_token_ids {
                    choice["token_ids"] = json!(d.token_ids);
                }
                out.push_back(frame(
                    &self.chunk(vec![choice], self.continuous.then_some(used)),
                ));
            }
            Event::Error(e) => {
                self.failed = true;
                out.push_back(frame(&ApiError::internal(e).body()));
            }
        }
    }

    fn on_end(&mut self, out: &mut VecDeque<Bytes>) {
        if self.usage && !self.failed {
            let total = self.per_choice.iter().sum();
            out.push_back(frame(&self.chunk(Vec::new(), Some(total))));
        }
        out.push_back(done_frame());
    }
}

fn stream_response(
    meta: Meta,
    running: Running,
    ready: Arc<Ready>,
    guard: InFlight,
    usage: bool,
    continuous: bool,
) -> Response {
    let builder = ChatChunks {
        per_choice: vec![0; meta.n],
        meta,
        ready,
        usage,
        continuous,
        failed: false,
        _guard: guard,
    };
    let initial = builder.initial();
    sse_response(Box::pin(running.into_stream()), builder, initial)
}
