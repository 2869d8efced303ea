//! `EngineCore`: the synchronous step loop body — admit, schedule, run, sample, detokenize, emit.
//!
//! Single-threaded and deterministic; `engine.rs` drives it from its own thread. Per-sequence
//! state (outputs, detokenizer, seed) lives here; the scheduler only sees token ids.

use crate::detok::IncrementalDetokenizer;
use crate::request::{FinishReason, RequestEvent, SeqDelta, StopReason, TokenLogprob};
use crate::runner::ModelRunner;
use crate::sampler::{sample, SampleContext};
use crate::sampling::SamplingParams;
use crate::scheduler::{NewSeq, Scheduler, SeqId};
use crate::stats::EngineStats;
use crate::tokenizer::Tokenizer;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// A request admitted by the handle: tokenized and validated.
pub struct AdmittedRequest {
    /// Request id.
    pub id: String,
    /// Prompt ids.
    pub prompt: Arc<Vec<u32>>,
    /// Parameters (validated).
    pub params: Arc<SamplingParams>,
    /// Base seed; sequence `i` uses a seed derived from it.
    pub seed: u64,
    /// Scheduling priority.
    pub priority: i32,
    /// Where events go.
    pub tx: UnboundedSender<RequestEvent>,
}

struct SeqState {
    req_id: String,
    index: usize,
    prompt: Arc<Vec<u32>>,
    params: Arc<SamplingParams>,
    output: Vec<u32>,
    seed: u64,
    detok: IncrementalDetokenizer,
    first_scheduled: Option<Instant>,
}

struct ReqState {
    seq_ids: Vec<SeqId>,
    tx: UnboundedSender<RequestEvent>,
    unfinished: usize,
}

/// The engine's state machine.
pub struct EngineCore {
    scheduler: Scheduler,
    runner: ModelRunner,
    tokenizer: Arc<Tokenizer>,
    eos_ids: Vec<u32>,
    max_model_len: usize,
    seqs: HashMap<SeqId, SeqState>,
    requests: HashMap<String, ReqState>,
    next_seq_id: SeqId,
    stats: EngineStats,
}

/// Mixes a request seed and a sequence index into that sequence's seed (splitmix64).
fn seq_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed.wrapping_add((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl EngineCore {
    /// Assembles a core from its parts.
    pub fn new(
        scheduler: Scheduler,
        runner: ModelRunner,
        tokenizer: Arc<Tokenizer>,
        eos_ids: Vec<u32>,
        max_model_len: usize,
    ) -> Self {
        EngineCore {
            scheduler,
            runner,
            tokenizer,
            eos_ids,
            max_model_len,
            seqs: HashMap::new(),
            requests: HashMap::new(),
            next_seq_id: 0,
            stats: EngineStats::default(),
        }
    }

    /// Whether any request is waiting or running.
    pub fn has_work(&self) -> bool {
        !self.requests.is_empty()
    }

    /// Counters and gauges as of the last step.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Queues a request's `n` sequences. Duplicate ids get an error event.
    pub fn add(&mut self, req: AdmittedRequest) {
        if self.requests.contains_key(&req.id) {
            let _ = req.tx.send(RequestEvent::Error(format!(
                "request id {:?} is already running",
                req.id
            )));
            return;
        }
        let n = req.params.n.max(1);
        let group = (n > 1).then_some(self.next_seq_id);
        let mut seq_ids = Vec::with_capacity(n);
        for index in 0..n {
            let seq_id = self.next_seq_id;
            self.next_seq_id += 1;
            let detok = IncrementalDetokenizer::new(
                &self.tokenizer,
                &req.prompt,
                req.params.skip_special_tokens,
                req.params.stop.clone(),
                req.params.include_stop_str_in_output,
            );
            let added = self.scheduler.add(NewSeq {
                seq_id,
                prompt: req.prompt.to_vec(),
                priority: req.priority,
                group,
            });
            if let Err(e) = added {
                for s in &seq_ids {
                    self.scheduler.abort(*s);
                    self.seqs.remove(s);
                }
                let _ = req.tx.send(RequestEvent::Error(e.to_string()));
                return;
            }
            self.seqs.insert(
                seq_id,
                SeqState {
                    req_id: req.id.clone(),
                    index,
                    prompt: req.prompt.clone(),
                    params: req.params.clone(),
                    output: Vec::new(),
                    seed: seq_seed(req.seed, index),
                    detok,
                    first_scheduled: None,
                },
            );
            seq_ids.push(seq_id);
        }
        self.stats.prompt_tokens_total += req.prompt.len() as u64;
        self.requests.insert(
            req.id,
            ReqState {
                seq_ids,
                tx: req.tx,
                unfinished: n,
            },
        );
        self.refresh_gauges();
    }

    /// Aborts a request: its blocks are freed at once and each unfinished sequence gets a final
    /// `abort` event (if anyone is still listening).
    pub fn abort(&mut self, req_id: &str) {
        let Some(req) = self.requests.remove(req_id) else {
            return;
        };
        for sid in req.seq_ids {
            self.scheduler.abort(sid);
            if let Some(st) = self.seqs.remove(&sid) {
                let _ = req.tx.send(RequestEvent::Delta(SeqDelta {
                    index: st.index,
                    token_ids: Vec::new(),
                    text: String::new(),
                    logprobs: Vec::new(),
                    finish_reason: Some(FinishReason::Abort),
                    stop_reason: None,
                    first_scheduled: st.first_scheduled,
                }));
            }
        }
        self.stats.requests_aborted += 1;
        self.refresh_gauges();
    }

    /// Runs one engine step. Returns false when there was nothing to run.
    pub fn step(&mut self) -> bool {
        let plan = self.scheduler.schedule();
        self.stats.num_preemptions += plan.preempted.len() as u64;
        if plan.seqs.is_empty() {
            self.refresh_gauges();
            return false;
        }
        let now = Instant::now();
        for s in &plan.seqs {
            if let Some(st) = self.seqs.get_mut(&s.seq_id) {
                st.first_scheduled.get_or_insert(now);
            }
        }
        let mut logits = match self.runner.execute(&plan) {
            Ok(l) => l,
            Err(e) => {
                // The batch failed as a whole: fail its requests, keep the engine (and the others) going.
                let ids: Vec<String> = plan
                    .seqs
                    .iter()
                    .filter_map(|s| self.seqs.get(&s.seq_id).map(|st| st.req_id.clone()))
                    .collect();
                for id in ids {
                    self.fail(&id, &format!("model execution failed: {e}"));
                }
                self.refresh_gauges();
                return true;
            }
        };
        let mut sampled = Vec::with_capacity(logits.seq_ids.len());
        for i in 0..logits.seq_ids.len() {
            let sid = logits.seq_ids[i];
            let Some(st) = self.seqs.get(&sid) else {
                continue;
            };
            let ctx = SampleContext {
                prompt_ids: &st.prompt,
                output_ids: &st.output,
                eos_ids: &self.eos_ids,
                seed: st.seed,
            };
            let params = st.params.clone();
            sampled.push((sid, sample(logits.row_mut(i), &params, &ctx)));
        }
        let tokens: Vec<(SeqId, u32)> = sampled.iter().map(|(s, x)| (*s, x.token)).collect();
        self.scheduler.update(&plan, &tokens);
        self.stats.generation_tokens_total += tokens.len() as u64;
        for (sid, s) in sampled {
            let lp = TokenLogprob {
                token: s.token,
                logprob: s.logprob,
                top: s.top_logprobs,
            };
            self.on_token(sid, lp);
        }
        self.refresh_gauges();
        true
    }

    fn on_token(&mut self, sid: SeqId, lp: TokenLogprob) {
        let Some(st) = self.seqs.get_mut(&sid) else {
            return;
        };
        let token = lp.token;
        st.output.push(token);
        let p = &st.params;
        let n_out = st.output.len();
        let mut finish = None;
        let mut stop_reason = None;
        let mut text = String::new();
        if !p.ignore_eos && self.eos_ids.contains(&token) {
            finish = Some(FinishReason::Stop);
        } else if p.stop_token_ids.contains(&token) {
            finish = Some(FinishReason::Stop);
            stop_reason = Some(StopReason::Token(token));
        } else {
            match st.detok.push(token) {
                Ok(step) => {
                    text = step.delta;
                    if let Some(s) = step.stop {
                        if n_out >= p.min_tokens {
                            finish = Some(FinishReason::Stop);
                            stop_reason = Some(StopReason::Text(s));
                        }
                    }
                }
                Err(e) => {
                    let id = st.req_id.clone();
                    self.fail(&id, &format!("detokenization failed: {e}"));
                    return;
                }
            }
        }
        if finish.is_none()
            && (p.max_tokens.is_some_and(|m| n_out >= m)
                || st.prompt.len() + n_out >= self.max_model_len)
        {
            finish = Some(FinishReason::Length);
        }
        if finish.is_some() && stop_reason.is_none() {
            text.push_str(&st.detok.finish().unwrap_or_default());
        }
        let logprobs = if p.logprobs.is_some() {
            vec![lp]
        } else {
            Vec::new()
        };
        let delta = SeqDelta {
            index: st.index,
            token_ids: vec![token],
            text,
            logprobs,
            finish_reason: finish,
            stop_reason,
            first_scheduled: st.first_scheduled,
        };
        let req_id = st.req_id.clone();
        if finish.is_some() {
            self.seqs.remove(&sid);
            self.scheduler.finish(sid);
        }
        let Some(req) = self.requests.get_mut(&req_id) else {
            return;
        };
        if req.tx.send(RequestEvent::Delta(delta)).is_err() {
            // Nobody listens any more (client gone): free everything now.
            self.abort(&req_id);
            return;
        }
        if finish.is_some() {
            req.unfinished -= 1;
            if req.unfinished == 0 {
                self.requests.remove(&req_id);
                self.stats.requests_finished += 1;
            }
        }
    }

    fn fail(&mut self, req_id: &str, msg: &str) {
        let Some(req) = self.requests.remove(req_id) else {
            return;
        };
        for sid in req.seq_ids {
            self.scheduler.abort(sid);
            self.seqs.remove(&sid);
        }
        let _ = req.tx.send(RequestEvent::Error(msg.to_string()));
        self.stats.requests_failed += 1;
    }

    fn refresh_gauges(&mut self) {
        let s = self.scheduler.stats();
        self.stats.num_running = s.num_running;
        self.stats.num_waiting = s.num_waiting;
        self.stats.kv_usage = s.kv_usage;
        self.stats.prefix_queries = s.prefix_queries;
        self.stats.prefix_hits = s.prefix_hits;
        self.stats.num_free_blocks = s.num_free_blocks;
        self.stats.num_blocks = s.num_blocks;
    }
}
