//! `POST /v1/completions`: one engine request per prompt (text, texts, token ids or lists of
//! them), `echo`, completions-shaped logprobs, and `text_completion` objects or SSE chunks.

use super::logprobs::CompletionLogprobs;
use super::types::{
    resolve_max_tokens, sampling_params, stream_flags, CompletionRequest, PromptField,
};
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
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// One prompt as submitted.
struct PromptInfo {
    ids: Arc<Vec<u32>>,
    /// The prompt as text (for `echo`).
    text: String,
}

/// What every chunk or response repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    n: usize,
    prompts: Vec<PromptInfo>,
    logprobs: Option<usize>,
    echo: bool,
    return_token_ids: bool,
}

impl Meta {
    fn prompt_tokens(&self) -> usize {
        self.prompts.iter().map(|p| p.ids.len()).sum()
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": null,
    })
}

/// The handler.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let arrival = Instant::now();
    let guard = state.enter();
    let ready = state.ready()?;
    let req: CompletionRequest = parse_json(&body)?;
    let model = state.resolve_model(req.common.model.as_deref())?;
    if req.suffix.is_some() {
        return Err(ApiError::bad_param(
            "suffix is not currently supported",
            "suffix",
        ));
    }
    let handle = &ready.handle;
    let tok = handle.tokenizer();
    let add_special = req.common.add_special_tokens.unwrap_or(true);
    let encode = |t: &str| {
        tok.encode(t, add_special)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    };
    let decode = |ids: &[u32]| tok.decode(ids, false).unwrap_or_default();
    let prompts: Vec<(Vec<u32>, String)> = match req.prompt {
        None => {
            return Err(ApiError::bad_param("`prompt` is required.", "prompt"));
        }
        Some(PromptField::Text(t)) => vec![(encode(&t)?, t)],
        Some(PromptField::Texts(ts)) => ts
            .into_iter()
            .map(|t| encode(&t).map(|ids| (ids, t)))
            .collect::<Result<_, _>>()?,
        Some(PromptField::Tokens(ids)) => vec![(ids.clone(), decode(&ids))],
        Some(PromptField::TokenLists(ls)) => ls
            .into_iter()
            .map(|ids| (ids.clone(), decode(&ids)))
            .collect(),
    };
    if prompts.is_empty() {
        return Err(ApiError::bad_param("The prompt cannot be empty.", "prompt"));
    }
    let mut params = sampling_params(&handle.info().default_params, &req.common)?;
    params.logprobs = req.logprobs;
    let requested = req.max_tokens.flatten();
    let mut jobs = Vec::with_capacity(prompts.len());
    for (ids, text) in prompts {
        let mut p = params.clone();
        p.max_tokens = Some(resolve_max_tokens(handle, &ids, requested)?);
        p.validate(handle.info().config.vocab_size)
            .map_err(candela_engine::EngineError::from)?;
        jobs.push((ids, text, p));
    }
    let base = match &req.common.request_id {
        Some(id) if !headers.contains_key("x-request-id") && !id.is_empty() => id.clone(),
        _ => base_request_id(&headers),
    };
    let n = params.n.max(1);
    let priority = req.common.priority.unwrap_or(0);
    let multi = jobs.len() > 1;
    let mut runs = Vec::with_capacity(jobs.len());
    let mut infos = Vec::with_capacity(jobs.len());
    for (i, (ids, text, p)) in jobs.into_iter().enumerate() {
        let id = if multi {
            format!("{base}-{i}")
        } else {
            base.clone()
        };
        let r = Running::submit(&state, &ready, &id, ids, p, priority, arrival)?;
        infos.push(PromptInfo {
            ids: r.prompt_ids.clone(),
            text,
        });
        runs.push(r);
    }
    let meta = Meta {
        id: format!("cmpl-{base}"),
        created: unix_now(),
        model,
        n,
        prompts: infos,
        logprobs: req.logprobs,
        echo: req.echo.unwrap_or(false),
        return_token_ids: req.common.return_token_ids.unwrap_or(false),
    };
    let (stream, with_usage, continuous) = stream_flags(&req.common);
    if stream {
        let streams = runs
            .into_iter()
            .enumerate()
            .map(|(i, r)| Box::pin(r.into_stream().map(move |e| (i, e))));
        let events = futures::stream::select_all(streams);
        let total = meta.prompts.len() * n;
        let builder = CompletionChunks {
            lp: (0..total).map(|_| None).collect(),
            used: vec![0; total],
            meta,
            ready,
            usage: with_usage,
            continuous,
            failed: false,
            _guard: guard,
        };
        return Ok(sse_response(events, builder, VecDeque::new()));
    }
    let outs = futures::future::join_all(runs.into_iter().map(Running::collect)).await;
    let mut all = Vec::with_capacity(outs.len());
    for o in outs {
        all.push(o?);
    }
    drop(guard);
    Ok(axum::Json(full_response(&meta, &ready, all)).into_response())
}

fn full_response(meta: &Meta, ready: &Ready, outs: Vec<Vec<SeqOutput>>) -> Value {
    let tok = ready.handle.tokenizer();
    let mut completion = 0;
    let mut choices = Vec::new();
    for (p, seqs) in outs.into_iter().enumerate() {
        let prompt = &meta.prompts[p];
        for (i, o) in seqs.into_iter().enumerate() {
            completion += o.token_ids.len();
            let (text, echo_ids): (String, &[u32]) = if meta.echo {
                (format!("{}{}", prompt.text, o.text), &prompt.ids[..])
            } else {
                (o.text.clone(), &[])
            };
            let logprobs = meta
                .logprobs
                .map(|_| CompletionLogprobs::new(0).build(tok, echo_ids, &o.logprobs));
            choices.push(json!({
                "index": p * meta.n + i,
                "text": text,
                "logprobs": logprobs,
                "finish_reason": finish_str(o.finish_reason),
                "stop_reason": stop_reason_json(&o.stop_reason),
                "prompt_logprobs": null,
                "prompt_token_ids": meta.return_token_ids.then_some(&*prompt.ids),
                "token_ids": meta.return_token_ids.then_some(&o.token_ids),
            }));
        }
    }
    json!({
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
        "service_tier": null,
        "system_fingerprint": null,
        "usage": usage(meta.prompt_tokens(), completion),
        "kv_transfer_params": null,
    })
}

struct CompletionChunks {
    meta: Meta,
    ready: Arc<Ready>,
    usage: bool,
    continuous: bool,
    /// Per choice: the logprobs builder, created with the choice's first chunk.
    lp: Vec<Option<CompletionLogprobs>>,
    /// Per choice: tokens generated so far.
    used: Vec<usize>,
    failed: bool,
    _guard: InFlight,
}

impl ChunkBuilder for CompletionChunks {
    type Item = (usize, Event);

    fn on_event(&mut self, (p, ev): (usize, Event), out: &mut VecDeque<Bytes>) {
        let d = match ev {
            Event::Delta(d) => d,
            Event::Error(e) => {
                if !self.failed {
                    self.failed = true;
                    out.push_back(frame(&ApiError::internal(e).body()));
                }
                return;
            }
        };
        let idx = p * self.meta.n + d.index;
        let (Some(prompt), Some(used), Some(lp)) = (
            self.meta.prompts.get(p),
            self.used.get_mut(idx),
            self.lp.get_mut(idx),
        ) else {
            return;
        };
        *used += d.token_ids.len();
        let first = lp.is_none();
        let lp = lp.get_or_insert_with(|| CompletionLogprobs::new(0));
        let finished = d.finish_reason.is_some();
        let echo = first && self.meta.echo;
        let has_lp = self.meta.logprobs.is_some() && !d.logprobs.is_empty();
        if d.text.is_empty() && !finished && !echo && !has_lp && !self.meta.return_token_ids {
            return;
        }
        let tok = self.ready.handle.tokenizer();
        let (text, echo_ids): (String, &[u32]) = if echo {
            (format!("{}{}", prompt.text, d.text), &prompt.ids[..])
        } else {
            (d.text.clone(), &[])
        };
        let logprobs = self
            .meta
            .logprobs
            .map(|_| lp.build(tok, echo_ids, &d.logprobs));
        let mut choice = json!({
            "index": idx,
            "text": text,
            "logprobs": logprobs,
            "finish_reason": finish_str(d.finish_reason),
            "stop_reason": stop_reason_json(&d.stop_reason),
        });
        if self.meta.return_token_ids {
            if first {
                choice["prompt_token_ids"] = json!(&*prompt.ids);
            }
            choice["token_ids"] = json!(d.token_ids);
        }
        let mut chunk = json!({
            "id": self.meta.id,
            "object": "text_completion",
            "created": self.meta.created,
            "model": self.meta.model,
            "choices": [choice],
        });
        if self.continuous {
            chunk["usage"] = usage(prompt.ids.len(), *used);
        }
        out.push_back(frame(&chunk));
    }

    fn on_end(&mut self, out: &mut VecDeque<Bytes>) {
        if self.usage && !self.failed {
            let completion = self.used.iter().sum();
            let chunk = json!({
                "id": self.meta.id,
                "object": "text_completion",
                "created": self.meta.created,
                "model": self.meta.model,
                "choices": [],
                "usage": usage(self.meta.prompt_tokens(), completion),
            });
            out.push_back(frame(&chunk));
        }
        out.push_back(done_frame());
    }
}
