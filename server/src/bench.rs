//! `candela bench latency`: in-process single-batch latency and decode speed (as `vllm bench
//! latency`), reported next to this machine's memory-bandwidth roofline measured in the same run.

use crate::engine_args::EngineArgs;
use candela_engine::{Engine, EngineHandle, Prompt, Request, RequestEvent};
use candela_models::ModelConfig;
use clap::{Args, Subcommand};
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// `candela bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Latency of one batch of requests, in process.
    Latency(LatencyArgs),
}

/// `bench latency` flags.
#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    /// Model: local directory, .gguf file or hub id.
    #[arg(long)]
    pub model: String,
    /// Prompt tokens per request (random ids).
    #[arg(long, default_value_t = 32)]
    pub input_len: usize,
    /// Generated tokens per request (EOS ignored).
    #[arg(long, default_value_t = 128)]
    pub output_len: usize,
    /// Concurrent requests.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Measured iterations.
    #[arg(long, default_value_t = 3)]
    pub num_iters: usize,
    /// Warm-up iterations.
    #[arg(long, default_value_t = 1)]
    pub num_iters_warmup: usize,
    /// Engine flags.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Runs a bench subcommand.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Latency(a) => latency(a),
    }
}

struct IterResult {
    total: Duration,
    ttft: Duration,
}

fn one_iter(engine: &EngineHandle, args: &LatencyArgs, it: usize) -> anyhow::Result<IterResult> {
    let vocab = engine.info().config.vocab_size.min(engine.tokenizer().vocab_size()).max(2) as u64;
    let mut params = engine.info().default_params.clone();
    params.temperature = 0.0;
    params.max_tokens = Some(args.output_len);
    params.ignore_eos = true;
    params.repetition_penalty = 1.0;
    let start = Instant::now();
    let mut streams = Vec::new();
    for b in 0..args.batch_size {
        let mut x = (it * 7919 + b * 104729 + 1) as u64;
        let ids: Vec<u32> = (0..args.input_len)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) % vocab) as u32
            })
            .collect();
        let req = Request { id: format!("bench-{it}-{b}"), prompt: Prompt::Tokens(ids), params: params.clone(), priority: 0 };
        streams.push(engine.submit(req)?);
    }
    let mut ttft = None;
    for s in streams.iter_mut() {
        while let Some(ev) = s.events.blocking_recv() {
            match ev {
                RequestEvent::Delta(d) => {
                    ttft.get_or_insert_with(|| start.elapsed());
                    if d.finish_reason.is_some() {
                        break;
                    }
                }
                RequestEvent::Error(e) => anyhow::bail!("request failed: {e}"),
            }
        }
    }
    Ok(IterResult { total: start.elapsed(), ttft: ttft.unwrap_or_default() })
}

/// Bytes of weights one decode step reads with f32 compute storage (the embedding reads one row).
fn weight_bytes_per_token(c: &ModelConfig) -> f64 {
    let (h, d) = (c.hidden_size as f64, c.head_dim as f64);
    let (nh, nkv, i) = (c.num_attention_heads as f64, c.num_key_value_heads as f64, c.intermediate_size as f64);
    let per_layer = h * (nh + 2.0 * nkv) * d + nh * d * h + 3.0 * h * i + 2.0 * h;
    let params = c.num_hidden_layers as f64 * per_layer + h + c.vocab_size as f64 * h;
    params * 4.0
}

/// Read bandwidth with all rayon threads over a 1 GiB buffer (bytes/s, best of 5).
pub fn measure_read_bandwidth() -> f64 {
    let n = (1usize << 30) / 8;
    let buf: Vec<u64> = (0..n as u64).collect();
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let s: u64 = buf.par_chunks(1 << 16).map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b))).sum();
        std::hint::black_box(s);
        best = best.max((n * 8) as f64 / t.elapsed().as_secs_f64());
    }
    best
}

fn latency(args: LatencyArgs) -> anyhow::Result<()> {
    let cfg = args.engine.to_config(&args.model)?;
    let engine = Engine::load(&cfg)?.start();
    for it in 0..args.num_iters_warmup {
        one_iter(&engine, &args, it)?;
    }
    let mut results = Vec::new();
    for it in 0..args.num_iters {
        results.push(one_iter(&engine, &args, 1000 + it)?);
    }
    engine.shutdown();
    let n = results.len() as f64;
    let avg = results.iter().map(|r| r.total.as_secs_f64()).sum::<f64>() / n;
    let ttft = results.iter().map(|r| r.ttft.as_secs_f64()).sum::<f64>() / n;
    let decode_tps = args.batch_size as f64 * (args.output_len.saturating_sub(1)) as f64 / (avg - ttft);
    let bw = measure_read_bandwidth();
    let bytes = weight_bytes_per_token(&engine.info().config);
    let roofline = bw / bytes;
    println!("Avg latency: {avg:.3} s ({} x {}->{} tokens)", args.batch_size, args.input_len, args.output_len);
    println!("Avg TTFT (prefill): {:.1} ms", ttft * 1e3);
    println!("Decode: {decode_tps:.2} tok/s ({:.1} ms/token per sequence)", 1e3 * args.batch_size as f64 / decode_tps);
    println!("Read bandwidth (same run, {} threads): {:.1} GB/s", rayon::current_num_threads(), bw / 1e9);
    println!("Weights read per decode step: {:.1} MB (f32 compute storage)", bytes / 1e6);
    println!("Roofline (batch 1): {roofline:.2} tok/s; decode at batch 1 reaches {:.0} % of it", 100.0 * decode_tps / args.batch_size as f64 / roofline);
    Ok(())
}
