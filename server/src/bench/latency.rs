//! `candela bench latency`: in-process single-batch latency and decode speed (as `vllm bench
//! latency`), reported next to this machine's memory-bandwidth roofline measured in the same run.

use crate::engine_args::EngineArgs;
use candela_engine::{Engine, EngineHandle, Prompt, Request, RequestEvent};
use candela_kernels::memory::ReadProbe;
use clap::Args;
use std::time::{Duration, Instant};

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

struct IterResult {
    total: Duration,
    ttft: Duration,
}

fn one_iter(engine: &EngineHandle, args: &LatencyArgs, it: usize) -> anyhow::Result<IterResult> {
    let vocab = engine
        .info()
        .config
        .vocab_size
        .min(engine.tokenizer().vocab_size())
        .max(2) as u64;
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
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) % vocab) as u32
            })
            .collect();
        let req = Request {
            id: format!("bench-{it}-{b}"),
            prompt: Prompt::Tokens(ids),
            params: params.clone(),
            priority: 0,
        };
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
    Ok(IterResult {
        total: start.elapsed(),
        ttft: ttft.unwrap_or_default(),
    })
}

/// Read bandwidth with all rayon threads over a 1 GiB buffer (bytes/s, best of 5).
pub fn measure_read_bandwidth() -> f64 {
    ReadProbe::new(1 << 30).best_of(5)
}

/// Runs `bench latency`.
pub fn run(args: LatencyArgs) -> anyhow::Result<()> {
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
    let decode_tps =
        args.batch_size as f64 * (args.output_len.saturating_sub(1)) as f64 / (avg - ttft);
    let bw = measure_read_bandwidth();
    let bytes = engine.info().weight_bytes_per_token as f64;
    let roofline = bw / bytes;
    println!(
        "Avg latency: {avg:.3} s ({} x {}->{} tokens)",
        args.batch_size, args.input_len, args.output_len
    );
    println!("Avg TTFT (prefill): {:.1} ms", ttft * 1e3);
    println!(
        "Decode: {decode_tps:.2} tok/s ({:.1} ms/token per sequence)",
        1e3 * args.batch_size as f64 / decode_tps
    );
    println!(
        "Read bandwidth (same run, {} threads): {:.1} GB/s",
        rayon::current_num_threads(),
        bw / 1e9
    );
    println!(
        "Weights read per decode step: {:.1} MB (as stored: f32/bf16/f16 dense, int4 packed)",
        bytes / 1e6
    );
    println!(
        "Roofline (batch 1): {roofline:.2} tok/s; decode at batch 1 reaches {:.0} % of it",
        100.0 * decode_tps / args.batch_size as f64 / roofline
    );
    Ok(())
}
