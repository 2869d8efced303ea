//! What goes into the engine (a [`Request`]) and what comes out ([`RequestEvent`]s on a channel).

use crate::sampling::SamplingParams;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// A prompt as text or as token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Text, tokenized by the engine.
    Text {
        /// The text.
        text: String,
        /// Add the tokenizer's special tokens (BOS) as HF `add_special_tokens=True` does.
        add_special_tokens: bool,
    },
    /// Pre-tokenized ids.
    Tokens(Vec<u32>),
}

/// One generation request (with `params.n` output sequences).
#[derive(Debug, Clone)]
pub struct Request {
    /// Caller-chosen unique id.
    pub id: String,
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling and stopping parameters.
    pub params: SamplingParams,
    /// Scheduling priority: smaller runs earlier (vLLM semantics); 0 by default.
    pub priority: i32,
}

/// Why a sequence stopped, as the OpenAI API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// EOS, a stop token or a stop string.
    Stop,
    /// `max_tokens` or `max_model_len` reached.
    Length,
    /// Aborted by the client or the server.
    Abort,
}

impl FinishReason {
    /// The OpenAI string: `stop`, `length` or `abort`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }
}

/// What matched when a sequence stopped on a stop condition (vLLM's `stop_reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A `stop_token_ids` entry.
    Token(u32),
    /// A `stop` string.
    Text(String),
}

/// Log-probability of a sampled token and the top alternatives (natural log).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The sampled token.
    pub token: u32,
    /// Its log-probability under the model.
    pub logprob: f32,
    /// The most likely tokens, best first, when `logprobs` was requested.
    pub top: Vec<(u32, f32)>,
}

/// New output of one sequence since its previous event.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqDelta {
    /// Which of the `n` sequences.
    pub index: usize,
    /// New token ids (the EOS or stop token included, as vLLM does).
    pub token_ids: Vec<u32>,
    /// New text (held back while it could be the start of a stop string or a split character).
    pub text: String,
    /// One entry per new token when logprobs were requested.
    pub logprobs: Vec<TokenLogprob>,
    /// Set on the sequence's last event.
    pub finish_reason: Option<FinishReason>,
    /// The stop token or string, when that is why it finished.
    pub stop_reason: Option<StopReason>,
    /// When the engine first scheduled this sequence (its queue time ends there); `None` if it
    /// never ran (an abort while waiting).
    pub first_scheduled: Option<Instant>,
}

/// An event on a request's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestEvent {
    /// Output of one sequence.
    Delta(SeqDelta),
    /// The request failed; no further events follow.
    Error(String),
}

/// A submitted request: its prompt ids and the stream of its events.
pub struct RequestStream {
    /// The request id.
    pub id: String,
    /// Prompt token ids as the engine ran them.
    pub prompt_token_ids: Arc<Vec<u32>>,
    /// Events until every sequence has finished (or an error).
    pub events: mpsc::UnboundedReceiver<RequestEvent>,
}
