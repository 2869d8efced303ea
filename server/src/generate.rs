//! `candela generate`: offline generation for local testing, streaming text as it is produced,
//! or printing one vLLM `RequestOutput`-shaped JSON object with `--json`.

use crate::engine_args::EngineArgs;
use candela_engine::{Engine, Prompt, Request, RequestEvent};
use clap::Args;
use serde_json::json;
use std::io::Write;

/// `candela generate` flags.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Model: local directory, .gguf file or hub id.
    #[arg(long)]
    pub model: String,
    /// Prompt text.
    #[arg(long)]
    pub prompt: String,
    /// Render the prompt as a single user message through the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Tokens to generate (default: the model's generation config, else 16 as vLLM).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Top-k cut (-1 or 0 = off).
    #[arg(long, allow_hyphen_values = true)]
    pub top_k: Option<i32>,
    /// Min-p cut.
    #[arg(long)]
    pub min_p: Option<f32>,
    /// Repetition penalty (1 = off).
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Keep generating past EOS.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Stop strings (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Print one JSON object shaped like vLLM's RequestOutput instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Engine flags.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Runs `candela generate`.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let cfg = args.engine.to_config(&args.model)?;
    let engine = Engine::load(&cfg)?.start();
    let info = engine.info().clone();
    let mut params = info.default_params.clone();
    if let Some(v) = args.max_tokens {
        params.max_tokens = Some(v);
    } else if params.max_tokens.is_none() {
        params.max_tokens = Some(16);
    }
    if let Some(v) = args.temperature {
        params.temperature = v;
    }
    if let Some(v) = args.top_p {
        params.top_p = v;
    }
    if let Some(v) = args.top_k {
        params.top_k = v;
    }
    if let Some(v) = args.min_p {
        params.min_p = v;
    }
    if let Some(v) = args.repetition_penalty {
        params.repetition_penalty = v;
    }
    params.seed = Some(args.engine.seed);
    params.ignore_eos = args.ignore_eos;
    params.stop = args.stop.clone();
    let prompt_text = if args.chat {
        let tok = engine.tokenizer();
        let template = tok
            .chat_template()
            .ok_or_else(|| anyhow::anyhow!("the model has no chat template"))?;
        let t = candela_engine::chat_template::ChatTemplate::new(
            template,
            tok.bos_token(),
            tok.eos_token(),
        )?;
        t.render(
            &[json!({"role": "user", "content": args.prompt})],
            true,
            json!({}),
        )?
    } else {
        args.prompt.clone()
    };
    // Chat-rendered text already holds its special tokens (HF: add_special_tokens=False).
    let prompt = Prompt::Text {
        text: prompt_text.clone(),
        add_special_tokens: !args.chat,
    };
    let mut stream = engine.submit(Request {
        id: "generate-0".into(),
        prompt,
        params,
        priority: 0,
    })?;
    let (mut text, mut ids, mut finish) = (String::new(), Vec::new(), None);
    let mut out = std::io::stdout().lock();
    while let Some(ev) = stream.events.blocking_recv() {
        match ev {
            RequestEvent::Delta(d) => {
                if !args.json {
                    write!(out, "{}", d.text)?;
                    out.flush()?;
                }
                text.push_str(&d.text);
                ids.extend(d.token_ids);
                if d.finish_reason.is_some() {
                    finish = d.finish_reason;
                    break;
                }
            }
            RequestEvent::Error(e) => anyhow::bail!("generation failed: {e}"),
        }
    }
    if args.json {
        let obj = json!({
            "request_id": stream.id,
            "prompt": prompt_text,
            "prompt_token_ids": *stream.prompt_token_ids,
            "outputs": [{
                "index": 0,
                "text": text,
                "token_ids": ids,
                "finish_reason": finish.map(|f| f.as_str()),
            }],
            "finished": true,
        });
        writeln!(out, "{obj}")?;
    } else {
        writeln!(out)?;
    }
    engine.shutdown();
    Ok(())
}
