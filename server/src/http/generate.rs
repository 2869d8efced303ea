//! One engine request as the HTTP layer sees it: submission, its event stream with per-sequence
//! metrics, accumulation of full outputs for non-streaming answers, and the drop guard that aborts
//! the engine request (freeing its KV blocks) when the client goes away first.

use super::error::ApiError;
use super::metrics::SeqTiming;
use super::state::{random_id, AppState, Ready};
use candela_engine::{
    FinishReason, Prompt, Request, RequestEvent, SamplingParams, SeqDelta, StopReason, TokenLogprob,
};
use futures::Stream;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

/// What a running request yields.
#[derive(Debug)]
pub enum Event {
    /// New output of one sequence.
    Delta(SeqDelta),
    /// The request failed; nothing follows.
    Error(String),
}

/// A submitted engine request; aborts it when dropped before every sequence has finished.
pub struct Running {
    state: Arc<AppState>,
    ready: Arc<Ready>,
    /// The engine's request id.
    pub engine_id: String,
    /// Prompt token ids.
    pub prompt_ids: Arc<Vec<u32>>,
    events: UnboundedReceiver<RequestEvent>,
    timings: Vec<SeqTiming>,
    finished: Vec<bool>,
    done: bool,
}

impl Running {
    /// Submits `prompt_ids` with `params` under a unique engine id derived from `base_id`.
    pub fn submit(
        state: &Arc<AppState>,
        ready: &Arc<Ready>,
        base_id: &str,
        prompt_ids: Vec<u32>,
        params: SamplingParams,
        priority: i32,
        arrival: Instant,
    ) -> Result<Self, ApiError> {
        let engine_id = format!("{base_id}-{}", &random_id()[..8]);
        let n = params.n.max(1);
        let max_tokens = params.max_tokens.unwrap_or(0);
        let stream = ready.handle.submit(Request {
            id: engine_id.clone(),
            prompt: Prompt::Tokens(prompt_ids),
            params,
            priority,
        })?;
        state.track(&engine_id);
        if !state.cfg.disable_log_requests {
            tracing::info!(
                "request {engine_id}: {} prompt tokens, n={n}, max_tokens={max_tokens}",
                stream.prompt_token_ids.len()
            );
        }
        state.metrics.observe_params(n, max_tokens);
        let submitted = Instant::now();
        Ok(Self {
            state: state.clone(),
            ready: ready.clone(),
            engine_id,
            prompt_ids: stream.prompt_token_ids,
            events: stream.events,
            timings: vec![SeqTiming::new(arrival, submitted); n],
            finished: vec![false; n],
            done: false,
        })
    }

    /// The next event, or `None` once every sequence has finished (or after an error).
    pub async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        match self.events.recv().await {
            Some(RequestEvent::Delta(d)) => {
                let i = d.index;
                if let Some(t) = self.timings.get_mut(i) {
                    t.scheduled = t.scheduled.or(d.first_scheduled);
                    self.state.metrics.on_tokens(t, d.token_ids.len());
                }
                if let Some(reason) = d.finish_reason {
                    if let (Some(t), Some(f)) = (self.timings.get(i), self.finished.get_mut(i)) {
                        if !*f {
                            *f = true;
                            let plen = self.prompt_ids.len();
                            self.state.metrics.on_finished(t, plen, reason.as_str());
                        }
                    }
                    if self.finished.iter().all(|f| *f) {
                        self.finish();
                    }
                }
                Some(Event::Delta(d))
            }
            Some(RequestEvent::Error(e)) => {
                self.record_unfinished("error");
                self.finish();
                Some(Event::Error(e))
            }
            None => {
                self.record_unfinished("abort");
                self.finish();
                Some(Event::Error("the engine dropped the request".into()))
            }
        }
    }

    fn record_unfinished(&mut self, reason: &str) {
        let plen = self.prompt_ids.len();
        for (t, f) in self.timings.iter().zip(self.finished.iter_mut()) {
            if !*f {
                *f = true;
                self.state.metrics.on_finished(t, plen, reason);
            }
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.state.untrack(&self.engine_id);
    }

    /// The events as a stream (the stream owns the request: dropping it aborts).
    pub fn into_stream(self) -> impl Stream<Item = Event> + Send {
        futures::stream::unfold(self, |mut r| async move { r.next().await.map(|e| (e, r)) })
    }

    /// Runs to completion and returns each sequence's full output (index order).
    pub async fn collect(mut self) -> Result<Vec<SeqOutput>, ApiError> {
        let mut outs: Vec<SeqOutput> = (0..self.finished.len())
            .map(|_| SeqOutput::default())
            .collect();
        while let Some(ev) = self.next().await {
            match ev {
                Event::Delta(d) => {
                    if let Some(o) = outs.get_mut(d.index) {
                        o.push(d);
                    }
                }
                Event::Error(e) => return Err(ApiError::internal(e)),
            }
        }
        Ok(outs)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            self.ready.handle.abort(&self.engine_id);
            self.record_unfinished("abort");
            self.state.untrack(&self.engine_id);
            tracing::debug!("aborted request {} (client gone)", self.engine_id);
        }
    }
}

/// The accumulated output of one sequence.
#[derive(Debug, Clone, Default)]
pub struct SeqOutput {
    /// Generated text.
    pub text: String,
    /// Generated token ids.
    pub token_ids: Vec<u32>,
    /// Per-token logprobs (when requested).
    pub logprobs: Vec<TokenLogprob>,
    /// Why it stopped.
    pub finish_reason: Option<FinishReason>,
    /// What matched when it stopped on a stop condition.
    pub stop_reason: Option<StopReason>,
}

impl SeqOutput {
    /// Appends one event's output.
    pub fn push(&mut self, d: SeqDelta) {
        self.text.push_str(&d.text);
        self.token_ids.extend_from_slice(&d.token_ids);
        self.logprobs.extend(d.logprobs);
        if d.finish_reason.is_some() {
            self.finish_reason = d.finish_reason;
            self.stop_reason = d.stop_reason;
        }
    }
}

/// `finish_reason` as OpenAI reports it.
pub fn finish_str(r: Option<FinishReason>) -> serde_json::Value {
    r.map(|r| serde_json::Value::from(r.as_str()))
        .unwrap_or(serde_json::Value::Null)
}

/// vLLM's `stop_reason`: the stop token id, the stop string, or null (EOS / length).
pub fn stop_reason_json(r: &Option<StopReason>) -> serde_json::Value {
    match r {
        Some(StopReason::Token(t)) => (*t).into(),
        Some(StopReason::Text(s)) => s.clone().into(),
        None => serde_json::Value::Null,
    }
}

/// The request id base: the client's `X-Request-Id` when present, else a random id.
pub fn base_request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(random_id)
}
