//! `Engine`: loads a model, runs [`EngineCore`] on its own thread, and hands out an
//! [`EngineHandle`] through which requests go in (channel) and token events come out.

use crate::config::EngineConfig;
use crate::core::{AdmittedRequest, EngineCore};
use crate::error::EngineError;
use crate::load::{load, Loaded};
use crate::request::{Prompt, Request, RequestStream};
use crate::sampling::SamplingParams;
use crate::stats::EngineStats;
use crate::tokenizer::Tokenizer;
use candela_models::ModelConfig;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

enum Command {
    Add(AdmittedRequest),
    Abort(String),
    Shutdown,
}

/// Static facts about the served model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The model argument as given (path or hub id).
    pub model: String,
    /// Its config.
    pub config: ModelConfig,
    /// Longest sequence the engine accepts.
    pub max_model_len: usize,
    /// KV blocks in the pool.
    pub num_blocks: usize,
    /// Tokens per block.
    pub block_size: usize,
    /// Sampling defaults requests start from.
    pub default_params: SamplingParams,
    /// Bytes of weights one decode step reads.
    pub weight_bytes_per_token: usize,
}

/// A loaded engine, not yet running.
pub struct Engine {
    core: EngineCore,
    tokenizer: Arc<Tokenizer>,
    info: Arc<ModelInfo>,
    max_waiting: usize,
    seed: u64,
}

impl Engine {
    /// Resolves, loads and sizes everything `cfg` describes (blocking; may download).
    pub fn load(cfg: &EngineConfig) -> Result<Self, EngineError> {
        let Loaded {
            core,
            tokenizer,
            info,
        } = load(cfg)?;
        Ok(Engine {
            core,
            tokenizer,
            info: Arc::new(info),
            max_waiting: cfg.max_waiting_requests,
            seed: cfg.seed,
        })
    }

    /// Starts the engine thread.
    pub fn start(self) -> EngineHandle {
        let (tx, rx) = crossbeam_channel::unbounded();
        let alive = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(Mutex::new(EngineStats::default()));
        let thread = {
            let (alive, stats) = (alive.clone(), stats.clone());
            let mut core = self.core;
            std::thread::Builder::new()
                .name("candela-engine".into())
                .spawn(move || {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_loop(&mut core, &rx, &stats)
                    }));
                    if result.is_err() {
                        tracing::error!("engine loop panicked; the engine is dead");
                    }
                    alive.store(false, Ordering::SeqCst);
                })
                .expect("spawn engine thread")
        };
        EngineHandle {
            inner: Arc::new(HandleInner {
                tx,
                tokenizer: self.tokenizer,
                info: self.info,
                stats,
                alive,
                max_waiting: self.max_waiting,
                seed_rng: Mutex::new(self.seed),
                thread: Mutex::new(Some(thread)),
            }),
        }
    }
}

fn run_loop(core: &mut EngineCore, rx: &Receiver<Command>, stats: &Mutex<EngineStats>) {
    loop {
        if !core.has_work() {
            match rx.recv() {
                Ok(cmd) => {
                    if !apply(core, cmd) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        while let Ok(cmd) = rx.try_recv() {
            if !apply(core, cmd) {
                return;
            }
        }
        core.step();
        if let Ok(mut s) = stats.lock() {
            *s = core.stats().clone();
        }
    }
}

fn apply(core: &mut EngineCore, cmd: Command) -> bool {
    match cmd {
        Command::Add(r) => core.add(r),
        Command::Abort(id) => core.abort(&id),
        Command::Shutdown => return false,
    }
    true
}

struct HandleInner {
    tx: Sender<Command>,
    tokenizer: Arc<Tokenizer>,
    info: Arc<ModelInfo>,
    stats: Arc<Mutex<EngineStats>>,
    alive: Arc<AtomicBool>,
    max_waiting: usize,
    seed_rng: Mutex<u64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A cheap, cloneable client of a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<HandleInner>,
}

impl EngineHandle {
    /// Tokenizes and validates `req` on the caller's thread, then queues it.
    pub fn submit(&self, req: Request) -> Result<RequestStream, EngineError> {
        if !self.is_alive() {
            return Err(EngineError::Dead);
        }
        let info = &self.inner.info;
        req.params.validate(info.config.vocab_size)?;
        let waiting = self.stats().num_waiting;
        if waiting >= self.inner.max_waiting {
            return Err(EngineError::Overloaded(waiting));
        }
        let prompt = match req.prompt {
            Prompt::Text {
                text,
                add_special_tokens,
            } => self
                .inner
                .tokenizer
                .encode(&text, add_special_tokens)
                .map_err(|e| EngineError::Tokenizer(e.to_string()))?,
            Prompt::Tokens(ids) => ids,
        };
        self.check_prompt(&prompt, req.params.max_tokens)?;
        let seed = req.params.seed.unwrap_or_else(|| self.next_seed());
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let prompt = Arc::new(prompt);
        let admitted = AdmittedRequest {
            id: req.id.clone(),
            prompt: prompt.clone(),
            params: Arc::new(req.params),
            seed,
            priority: req.priority,
            tx,
        };
        self.inner
            .tx
            .send(Command::Add(admitted))
            .map_err(|_| EngineError::Dead)?;
        Ok(RequestStream {
            id: req.id,
            prompt_token_ids: prompt,
            events,
        })
    }

    /// Checks a prompt against the vocabulary and `max_model_len` (messages as vLLM words them).
    pub fn check_prompt(
        &self,
        prompt: &[u32],
        max_tokens: Option<usize>,
    ) -> Result<(), EngineError> {
        let info = &self.inner.info;
        let max_len = info.max_model_len;
        if prompt.is_empty() {
            return Err(EngineError::InvalidParam {
                message: "The prompt cannot be empty.".into(),
                param: Some("prompt".into()),
            });
        }
        if let Some(&bad) = prompt
            .iter()
            .find(|&&t| t as usize >= info.config.vocab_size)
        {
            return Err(EngineError::InvalidParam {
                message: format!(
                    "Token id {bad} is out of vocabulary (vocab size {}).",
                    info.config.vocab_size
                ),
                param: Some("prompt".into()),
            });
        }
        if prompt.len() >= max_len {
            return Err(EngineError::TooLong {
                message: format!(
                    "The decoder prompt (length {}) is longer than the maximum model length of {max_len}. Make sure that `max_model_len` is no smaller than the number of text tokens (plus at least one generated token).",
                    prompt.len()
                ),
            });
        }
        if let Some(m) = max_tokens {
            if prompt.len() + m > max_len {
                return Err(EngineError::TooLong {
                    message: format!(
                        "This model's maximum context length is {max_len} tokens. However, you requested {} tokens ({} in the messages, {m} in the completion). Please reduce the length of the messages or completion.",
                        prompt.len() + m,
                        prompt.len()
                    ),
                });
            }
        }
        Ok(())
    }

    fn next_seed(&self) -> u64 {
        let mut s = self
            .inner
            .seed_rng
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^ (z >> 27)
    }

    /// Aborts a request (its KV blocks are freed on the engine thread's next turn).
    pub fn abort(&self, id: &str) {
        let _ = self.inner.tx.send(Command::Abort(id.to_string()));
    }

    /// The latest stats snapshot.
    pub fn stats(&self) -> EngineStats {
        self.inner
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.inner.tokenizer
    }

    /// Model facts.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// Whether the engine thread is still running.
    pub fn is_alive(&self) -> bool {
        self.inner.alive.load(Ordering::SeqCst)
    }

    /// Stops the engine thread (pending requests are dropped) and waits for it.
    pub fn shutdown(&self) {
        let _ = self.inner.tx.send(Command::Shutdown);
        if let Some(t) = self.inner.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}
