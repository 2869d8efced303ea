//! `candela bench throughput`: offline throughput as `vllm bench throughput` measures it: N
//! random prompts submitted at once to an in-process engine (EOS ignored), the time until the
//! last one finishes, and requests/s, total tokens/s and output tokens/s over that time.

use super::dataset::{self, PromptInput, RandomSpec};
use crate::engine_args::EngineArgs;
use candela_engine::{Engine, Prompt, Request, RequestEvent};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// `bench throughput` flags.
#[derive(Debug, Clone, Args)]
pub struct ThroughputArgs {
    /// Model: local directory, .gguf file or hub id.
    #[arg(long)]
    pub model: String,
    /// Prompt tokens per request (random ids).
    #[arg(long, default_value_t = 256)]
    pub input_len: usize,
    /// Generated tokens per request.
    #[arg(long, default_value_t = 128)]
    pub output_len: usize,
    /// Requests, all submitted at once.
    #[arg(long, default_value_t = 32)]
    pub num_prompts: usize,
    /// Lengths drawn from [len·(1−r), len·(1+r)].
    #[arg(long, default_value_t = 0.0)]
    pub random_range_ratio: f64,
    /// Write the results as JSON (vLLM's keys).
    #[arg(long)]
    pub output_json: Option<PathBuf>,
    /// Engine flags.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Runs `bench throughput`.
pub fn run(args: ThroughputArgs) -> anyhow::Result<()> {
    let cfg = args.engine.to_config(&args.model)?;
    let engine = Engine::load(&cfg)?.start();
    let tok = engine.tokenizer().clone();
    let spec = RandomSpec {
        input_len: args.input_len,
        output_len: args.output_len,
        range_ratio: args.random_range_ratio,
        prefix_len: 0,
    };
    // Token-id prompts: the tokenizer only picks non-special ids, no text round trip.
    let reqs = dataset::random(&spec, args.num_prompts, 0, None)?;
    let vocab = engine.info().config.vocab_size.min(tok.vocab_size()).max(2) as u32;
    let mut params = engine.info().default_params.clone();
    params.temperature = 1.0;
    params.top_p = 1.0;
    params.ignore_eos = true;
    let start = Instant::now();
    let mut streams = Vec::with_capacity(reqs.len());
    for (i, r) in reqs.iter().enumerate() {
        let PromptInput::Tokens(ids) = &r.prompt else {
            unreachable!("token prompts")
        };
        let ids: Vec<u32> = ids
            .iter()
            .map(|&x| (x.wrapping_mul(2_654_435_761) >> 7) % vocab)
            .collect();
        let mut p = params.clone();
        p.max_tokens = Some(r.output_len);
        p.seed = Some(i as u64);
        let req = Request {
            id: format!("throughput-{i}"),
            prompt: Prompt::Tokens(ids),
            params: p,
            priority: 0,
        };
        streams.push(engine.submit(req)?);
    }
    let (mut prompt_tokens, mut output_tokens) = (0usize, 0usize);
    for s in streams.iter_mut() {
        prompt_tokens += s.prompt_token_ids.len();
        while let Some(ev) = s.events.blocking_recv() {
            match ev {
                RequestEvent::Delta(d) => {
                    output_tokens += d.token_ids.len();
                    if d.finish_reason.is_some() {
                        break;
                    }
                }
                RequestEvent::Error(e) => anyhow::bail!("request failed: {e}"),
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    engine.shutdown();
    let total = prompt_tokens + output_tokens;
    println!(
        "Throughput: {:.2} requests/s, {:.2} total tokens/s, {:.2} output tokens/s",
        reqs.len() as f64 / elapsed,
        total as f64 / elapsed,
        output_tokens as f64 / elapsed
    );
    println!("Total num prompt tokens:  {prompt_tokens}");
    println!("Total num output tokens:  {output_tokens}");
    if let Some(path) = &args.output_json {
        let j = json!({
            "elapsed_time": elapsed, "num_requests": reqs.len(), "total_num_tokens": total,
            "requests_per_second": reqs.len() as f64 / elapsed, "tokens_per_second": total as f64 / elapsed,
            "output_tokens_per_second": output_tokens as f64 / elapsed,
        });
        std::fs::write(path, serde_json::to_string_pretty(&j)?)?;
    }
    Ok(())
}
