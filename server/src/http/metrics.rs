//! `/metrics`: vLLM's `vllm:*` Prometheus series in the text exposition format. Gauges and token
//! counters come from the engine's `EngineStats` (minus the warm-up baseline); per-request
//! histograms and `request_success` are measured here, in the HTTP layer. The pre-0.11 `gpu_*`
//! names the production-stack router parses are emitted too.

use candela_engine::EngineStats;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// TTFT buckets (seconds), as vLLM.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// Inter-token / per-output-token buckets (seconds), as vLLM.
const TOKEN_LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// Request latency buckets (seconds), as vLLM.
const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
/// `n` parameter buckets, as vLLM.
const N_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];
/// Finish reasons with a `request_success` series from the start.
const REASONS: [&str; 4] = ["stop", "length", "abort", "error"];

/// 1-2-5 buckets up to `max` (vLLM's token-count histograms).
fn buckets_125(max: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut scale = 1usize;
    loop {
        for m in [1usize, 2, 5] {
            let v = m.saturating_mul(scale);
            if v > max {
                return out;
            }
            out.push(v as f64);
        }
        scale = scale.saturating_mul(10);
    }
}

#[derive(Debug, Clone)]
struct Hist {
    buckets: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Hist {
    fn new(buckets: &[f64]) -> Self {
        Self {
            buckets: buckets.to_vec(),
            counts: vec![0; buckets.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if let Some(i) = self.buckets.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Index of each histogram in [`Inner::hists`].
#[derive(Clone, Copy)]
enum H {
    Ttft,
    Itl,
    Tpot,
    E2e,
    Prefill,
    Decode,
    Inference,
    Queue,
    PromptTokens,
    GenTokens,
    ParamsN,
    ParamsMaxTokens,
}

const HISTS: [(H, &str, &str); 12] = [
    (
        H::Ttft,
        "time_to_first_token_seconds",
        "Time to first token, seconds.",
    ),
    (
        H::Itl,
        "inter_token_latency_seconds",
        "Time between consecutive output tokens, seconds.",
    ),
    (
        H::Tpot,
        "request_time_per_output_token_seconds",
        "Mean time per output token of a request after its first, seconds.",
    ),
    (
        H::E2e,
        "e2e_request_latency_seconds",
        "End-to-end request latency, seconds.",
    ),
    (
        H::Prefill,
        "request_prefill_time_seconds",
        "Time from first being scheduled to the first token, seconds.",
    ),
    (
        H::Decode,
        "request_decode_time_seconds",
        "Time from the first token to the last, seconds.",
    ),
    (
        H::Inference,
        "request_inference_time_seconds",
        "Time from first being scheduled to the last token, seconds.",
    ),
    (
        H::Queue,
        "request_queue_time_seconds",
        "Time from submission to first being scheduled, seconds.",
    ),
    (
        H::PromptTokens,
        "request_prompt_tokens",
        "Prompt tokens per request.",
    ),
    (
        H::GenTokens,
        "request_generation_tokens",
        "Generated tokens per request.",
    ),
    (
        H::ParamsN,
        "request_params_n",
        "The n parameter of requests.",
    ),
    (
        H::ParamsMaxTokens,
        "request_params_max_tokens",
        "The max_tokens parameter of requests.",
    ),
];

struct Inner {
    hists: Vec<Hist>,
    success: [u64; 4],
}

/// Timings of one output sequence, filled while its events arrive.
#[derive(Debug, Clone)]
pub struct SeqTiming {
    /// When the HTTP request arrived.
    pub arrival: Instant,
    /// When it was submitted to the engine.
    pub submitted: Instant,
    /// When the engine first scheduled it (from its deltas; `None` until then).
    pub scheduled: Option<Instant>,
    /// First output token.
    pub first_token: Option<Instant>,
    /// Latest output token.
    pub last_token: Option<Instant>,
    /// Output tokens so far.
    pub num_tokens: usize,
}

impl SeqTiming {
    /// A sequence of a request that arrived at `arrival` and was submitted at `submitted`.
    pub fn new(arrival: Instant, submitted: Instant) -> Self {
        Self {
            arrival,
            submitted,
            scheduled: None,
            first_token: None,
            last_token: None,
            num_tokens: 0,
        }
    }
}

/// HTTP-side metrics plus the renderer of the whole `/metrics` page.
pub struct Metrics {
    model_name: String,
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Empty metrics labelled with `model_name`.
    pub fn new(model_name: &str) -> Self {
        Self {
            model_name: model_name.to_string(),
            inner: Mutex::new(Inner {
                hists: HISTS
                    .iter()
                    .map(|(h, _, _)| Hist::new(default_buckets(*h, 0).as_slice()))
                    .collect(),
                success: [0; 4],
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Sizes the token-count histograms to `max_model_len` (1-2-5 buckets, as vLLM).
    pub fn set_max_model_len(&self, max_model_len: usize) {
        self.with(|i| {
            for h in [H::PromptTokens, H::GenTokens, H::ParamsMaxTokens] {
                let hist = &mut i.hists[h as usize];
                if hist.count == 0 {
                    *hist = Hist::new(&default_buckets(h, max_model_len));
                }
            }
        });
    }

    /// Records the parameters of an accepted request.
    pub fn observe_params(&self, n: usize, max_tokens: usize) {
        self.with(|i| {
            i.hists[H::ParamsN as usize].observe(n as f64);
            i.hists[H::ParamsMaxTokens as usize].observe(max_tokens as f64);
        });
    }

    /// Records `new_tokens` output tokens of a sequence arriving now.
    pub fn on_tokens(&self, t: &mut SeqTiming, new_tokens: usize) {
        if new_tokens == 0 {
            return;
        }
        let now = Instant::now();
        self.with(|i| match t.last_token {
            None => {
                i.hists[H::Ttft as usize].observe(secs(now - t.arrival));
            }
            Some(prev) => {
                let gap = secs(now - prev) / new_tokens as f64;
                for _ in 0..new_tokens {
                    i.hists[H::Itl as usize].observe(gap);
                }
            }
        });
        t.first_token.get_or_insert(now);
        t.last_token = Some(now);
        t.num_tokens += new_tokens;
    }

    /// Records a finished sequence (`reason` = `stop`, `length`, `abort` or `error`).
    pub fn on_finished(&self, t: &SeqTiming, prompt_tokens: usize, reason: &str) {
        let now = Instant::now();
        self.with(|i| {
            if let Some(k) = REASONS.iter().position(|r| *r == reason) {
                i.success[k] += 1;
            }
            let h = &mut i.hists;
            h[H::E2e as usize].observe(secs(now - t.arrival));
            // vLLM's split: queue = submitted → first scheduled, then prefill / inference from
            // there (a request that never ran counts its whole life as queue time).
            let scheduled = t.scheduled.unwrap_or(now);
            h[H::Queue as usize].observe(secs(scheduled.saturating_duration_since(t.submitted)));
            h[H::Inference as usize].observe(secs(now.saturating_duration_since(scheduled)));
            if let (Some(first), Some(last)) = (t.first_token, t.last_token) {
                h[H::Prefill as usize].observe(secs(first.saturating_duration_since(scheduled)));
                h[H::Decode as usize].observe(secs(last - first));
                if t.num_tokens > 1 {
                    let per = secs(last - first) / (t.num_tokens - 1) as f64;
                    h[H::Tpot as usize].observe(per);
                }
            }
            h[H::PromptTokens as usize].observe(prompt_tokens as f64);
            h[H::GenTokens as usize].observe(t.num_tokens as f64);
        });
    }

    /// Renders every series. `engine` = (current stats, warm-up baseline, block size) once loaded.
    pub fn render(&self, engine: Option<(&EngineStats, &EngineStats, usize)>) -> String {
        let labels = format!(
            "engine=\"0\",model_name=\"{}\"",
            escape_label(&self.model_name)
        );
        let mut out = String::with_capacity(16 * 1024);
        let zero = EngineStats::default();
        let (s, base, block_size) = engine.unwrap_or((&zero, &zero, 0));
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64;
        let gauges: [(&str, &str, f64); 4] = [
            (
                "num_requests_running",
                "Requests running in the engine.",
                s.num_running as f64,
            ),
            (
                "num_requests_waiting",
                "Requests waiting to run.",
                s.num_waiting as f64,
            ),
            (
                "kv_cache_usage_perc",
                "Fraction of KV-cache blocks in use (1 = full).",
                s.kv_usage,
            ),
            (
                "gpu_cache_usage_perc",
                "Fraction of KV-cache blocks in use (legacy name of kv_cache_usage_perc).",
                s.kv_usage,
            ),
        ];
        for (name, help, v) in gauges {
            family(&mut out, name, "gauge", help);
            sample(&mut out, name, &labels, v);
        }
        let queries = d(s.prefix_queries, base.prefix_queries);
        let hits = d(s.prefix_hits, base.prefix_hits);
        let rate = if queries > 0.0 { hits / queries } else { 0.0 };
        family(
            &mut out,
            "gpu_prefix_cache_hit_rate",
            "gauge",
            "Prefix-cache hit rate in tokens since start (legacy).",
        );
        sample(&mut out, "gpu_prefix_cache_hit_rate", &labels, rate);
        if engine.is_some() {
            let name = "cache_config_info";
            family(&mut out, name, "gauge", "KV-cache configuration.");
            let l = format!(
                "block_size=\"{block_size}\",engine=\"0\",num_gpu_blocks=\"{}\"",
                s.num_blocks
            );
            sample(&mut out, name, &l, 1.0);
        }
        let counters: [(&str, &str, f64); 7] = [
            (
                "prompt_tokens",
                "Prompt tokens processed.",
                d(s.prompt_tokens_total, base.prompt_tokens_total),
            ),
            (
                "generation_tokens",
                "Tokens generated.",
                d(s.generation_tokens_total, base.generation_tokens_total),
            ),
            (
                "num_preemptions",
                "Preemptions in the engine.",
                d(s.num_preemptions, base.num_preemptions),
            ),
            (
                "prefix_cache_queries",
                "Prompt tokens looked up in the prefix cache.",
                queries,
            ),
            (
                "prefix_cache_hits",
                "Prompt tokens found in the prefix cache.",
                hits,
            ),
            (
                "gpu_prefix_cache_queries",
                "Prompt tokens looked up in the prefix cache (legacy name).",
                queries,
            ),
            (
                "gpu_prefix_cache_hits",
                "Prompt tokens found in the prefix cache (legacy name).",
                hits,
            ),
        ];
        for (name, help, v) in counters {
            let total = format!("{name}_total");
            family(&mut out, &total, "counter", help);
            sample(&mut out, &total, &labels, v);
        }
        self.with(|i| {
            family(
                &mut out,
                "request_success_total",
                "counter",
                "Finished requests by finish reason.",
            );
            for (k, r) in REASONS.iter().enumerate() {
                let l = format!("{labels},finished_reason=\"{r}\"");
                sample(&mut out, "request_success_total", &l, i.success[k] as f64);
            }
            for (h, name, help) in HISTS {
                family(&mut out, name, "histogram", help);
                histogram(&mut out, name, &labels, &i.hists[h as usize]);
            }
        });
        out
    }
}

fn default_buckets(h: H, max_model_len: usize) -> Vec<f64> {
    match h {
        H::Ttft => TTFT_BUCKETS.to_vec(),
        H::Itl | H::Tpot => TOKEN_LATENCY_BUCKETS.to_vec(),
        H::E2e | H::Prefill | H::Decode | H::Inference | H::Queue => {
            REQUEST_LATENCY_BUCKETS.to_vec()
        }
        H::ParamsN => N_BUCKETS.to_vec(),
        H::PromptTokens | H::GenTokens | H::ParamsMaxTokens => buckets_125(max_model_len.max(1)),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP vllm:{name} {help}");
    let _ = writeln!(out, "# TYPE vllm:{name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, v: f64) {
    let _ = writeln!(out, "vllm:{name}{{{labels}}} {}", fmt_f64(v));
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Hist) {
    let mut cum = 0u64;
    for (b, c) in h.buckets.iter().zip(&h.counts) {
        cum += c;
        let l = format!("{labels},le=\"{}\"", fmt_f64(*b));
        sample(out, &format!("{name}_bucket"), &l, cum as f64);
    }
    let l = format!("{labels},le=\"+Inf\"");
    sample(out, &format!("{name}_bucket"), &l, h.count as f64);
    sample(out, &format!("{name}_sum"), labels, h.sum);
    sample(out, &format!("{name}_count"), labels, h.count as f64);
}

/// Float formatting as Prometheus' Python client writes it (`1.0`, `0.25`, `+Inf`).
fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
