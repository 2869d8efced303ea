//! `candela bench serve`: loads any OpenAI-compatible server the way `vllm bench serve` does
//! (same flags, metrics, printed summary and result-JSON keys): builds the prompts, checks the
//! server with one test request, sends the requests at Poisson/gamma arrival times under a
//! concurrency cap while a progress bar runs, and reports the metrics.

use super::arrivals::send_times;
use super::client::{Endpoint, Outcome};
use super::dataset::{self, RandomSpec, SampleRequest};
use super::metrics::{self, Goodput, Record};
use candela_engine::tokenizer::Tokenizer;
use clap::Args;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// `bench serve` flags (vLLM's names).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// `openai` (/v1/completions) or `openai-chat` (/v1/chat/completions).
    #[arg(long, alias = "endpoint-type", default_value = "openai", value_parser = ["openai", "openai-chat"])]
    pub backend: String,
    /// Server URL (`http://host:port`); overrides --host/--port.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Server host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// API path (default: the backend's).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Model (also where the tokenizer is looked for); default: the server's first model.
    #[arg(long)]
    pub model: Option<String>,
    /// Name sent in the `model` field, when the server serves --model under another name.
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Tokenizer: a directory with tokenizer.json, or a .gguf (default: --model when local).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// `random` or `custom` (JSONL: {"prompt": ..., "output_tokens": ...} per line).
    #[arg(long, default_value = "random", value_parser = ["random", "custom"])]
    pub dataset_name: String,
    /// Path of the custom dataset.
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    /// Output tokens of custom lines without `output_tokens`.
    #[arg(long, default_value_t = 256)]
    pub custom_output_len: usize,
    /// Random prompt tokens per request (after the prefix).
    #[arg(long, default_value_t = 1024)]
    pub random_input_len: usize,
    /// Output tokens per request.
    #[arg(long, default_value_t = 128)]
    pub random_output_len: usize,
    /// Lengths drawn from [len·(1−r), len·(1+r)].
    #[arg(long, default_value_t = 0.0)]
    pub random_range_ratio: f64,
    /// Random tokens shared by all prompts.
    #[arg(long, default_value_t = 0)]
    pub random_prefix_len: usize,
    /// Requests to send.
    #[arg(long, default_value_t = 1000)]
    pub num_prompts: usize,
    /// Requests per second (`inf`: all at once).
    #[arg(long, default_value = "inf")]
    pub request_rate: f64,
    /// Gamma shape of the arrival gaps (1 = Poisson).
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Most requests in flight at once.
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Send `ignore_eos: true`.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Seed of the dataset and the arrival times.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// SLOs for goodput, `KEY:MS` with KEY ttft, tpot or e2el.
    #[arg(long, num_args = 1..)]
    pub goodput: Vec<String>,
    /// Metrics whose statistics are reported (comma-separated).
    #[arg(long, default_value = "ttft,tpot,itl,e2el")]
    pub percentile_metrics: String,
    /// Percentiles reported (comma-separated).
    #[arg(long, default_value = "99")]
    pub metric_percentiles: String,
    /// Warm-up requests before the measured run (not measured).
    #[arg(long, default_value_t = 0)]
    pub num_warmups: usize,
    /// JSON object merged into every request body.
    #[arg(long)]
    pub extra_body: Option<String>,
    /// Seconds to retry the first test request while the server starts (0: one try).
    #[arg(long, default_value_t = 0)]
    pub ready_check_timeout_sec: u64,
    /// Write the results as JSON.
    #[arg(long)]
    pub save_result: bool,
    /// Directory of the result file.
    #[arg(long)]
    pub result_dir: Option<PathBuf>,
    /// Name of the result file.
    #[arg(long)]
    pub result_filename: Option<String>,
    /// Label stored in the result (default: the backend).
    #[arg(long)]
    pub label: Option<String>,
    /// Hide the progress bar.
    #[arg(long)]
    pub disable_tqdm: bool,
}

/// Runs `bench serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

/// The tokenizer of --tokenizer, else of --model when it is a local directory or .gguf.
fn load_tokenizer(args: &ServeArgs) -> anyhow::Result<Option<Tokenizer>> {
    let path = match (&args.tokenizer, &args.model) {
        (Some(t), _) => t.clone(),
        (None, Some(m)) if Path::new(m).exists() => PathBuf::from(m),
        _ => return Ok(None),
    };
    let tok = if path.extension().is_some_and(|e| e == "gguf") {
        Tokenizer::from_gguf(&path)?
    } else {
        Tokenizer::from_dir(&path)?
    };
    Ok(Some(tok))
}

fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// Output tokens of a request: the server's usage, else the tokenizer, else the text chunks.
fn output_len(o: &Outcome, tok: Option<&Tokenizer>) -> usize {
    if let Some(n) = o.usage_tokens {
        return n;
    }
    tok.and_then(|t| t.encode(&o.generated_text, false).ok())
        .map_or(o.chunks, |ids| ids.len())
}

async fn run_async(args: ServeArgs) -> anyhow::Result<()> {
    let chat = args.backend == "openai-chat";
    let path = args.endpoint.clone().unwrap_or_else(|| {
        if chat {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        }
        .into()
    });
    let base = args
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}:{}", args.host, args.port));
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let goodput = Goodput::parse(&args.goodput)?;
    let selected = parse_list(&args.percentile_metrics);
    let ps: Vec<f64> = parse_list(&args.metric_percentiles)
        .iter()
        .map(|p| p.parse())
        .collect::<Result<_, _>>()?;
    let extra_body: Option<Value> = args
        .extra_body
        .as_deref()
        .map(serde_json::from_str)
        .transpose()?;
    anyhow::ensure!(
        extra_body.as_ref().is_none_or(Value::is_object),
        "--extra-body must be a JSON object"
    );

    let tok = load_tokenizer(&args)?;
    anyhow::ensure!(
        tok.is_some() || !chat,
        "openai-chat needs text prompts: pass --tokenizer"
    );
    // One extra request (last) is the start-up test prompt, so no measured prompt is cached by it.
    let n = args.num_prompts + 1;
    let mut requests: Vec<SampleRequest> = match args.dataset_name.as_str() {
        "custom" => {
            let p = args
                .dataset_path
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("--dataset-name custom needs --dataset-path"))?;
            dataset::custom(p, n, args.custom_output_len, tok.as_ref())?
        }
        _ => {
            let spec = RandomSpec {
                input_len: args.random_input_len,
                output_len: args.random_output_len,
                range_ratio: args.random_range_ratio,
                prefix_len: args.random_prefix_len,
            };
            dataset::random(&spec, n, args.seed, tok.as_ref())?
        }
    };
    let test = requests.pop().expect("n >= 1");
    if tok.is_none() {
        eprintln!("note: no tokenizer; prompts are token ids and output tokens come from the server's usage");
    }

    let mut ep = Endpoint::new(&url, chat, String::new())?;
    ep.api_key = std::env::var("OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    ep.extra_body = extra_body;
    ep.ignore_eos = args.ignore_eos;
    ep.model = match (&args.served_model_name, &args.model) {
        (Some(s), _) => s.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => {
            let models = ep.get_json("/v1/models").await?;
            models["data"][0]["id"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("the server lists no model"))?
                .to_string()
        }
    };
    let ep = Arc::new(ep);

    println!("Starting initial single prompt test run...");
    let deadline = Instant::now() + Duration::from_secs(args.ready_check_timeout_sec);
    loop {
        let o = ep.send(&test.prompt, test.output_len.min(16)).await;
        if o.success {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "initial test run failed: {}",
            o.error
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("Initial test run completed. Starting main benchmark run...");
    if args.num_warmups > 0 {
        println!("Warming up with {} requests...", args.num_warmups);
        let warm: Vec<_> = (0..args.num_warmups)
            .map(|_| ep.send(&test.prompt, test.output_len))
            .collect();
        futures::future::join_all(warm).await;
    }
    println!(
        "Traffic request rate: {}",
        if args.request_rate.is_infinite() {
            "inf".into()
        } else {
            args.request_rate.to_string()
        }
    );
    let process = if args.burstiness == 1.0 {
        "Poisson process"
    } else {
        "Gamma distribution"
    };
    println!("Burstiness factor: {:?} ({process})", args.burstiness);
    println!(
        "Maximum request concurrency: {}",
        args.max_concurrency
            .map_or("None".into(), |c| c.to_string())
    );

    let load_start = load_average();
    let times = send_times(
        requests.len(),
        args.request_rate,
        args.burstiness,
        args.seed,
    )?;
    let bar = if args.disable_tqdm {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(requests.len() as u64)
    };
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{percent:>3}%|{wide_bar}| {pos}/{len} [{elapsed_precise}<{eta_precise}]",
    )?);
    let sem = Arc::new(tokio::sync::Semaphore::new(
        args.max_concurrency
            .unwrap_or(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(requests.len());
    for (req, at) in requests.iter().zip(&times) {
        let (ep, sem, bar, prompt, max) = (
            ep.clone(),
            sem.clone(),
            bar.clone(),
            req.prompt.clone(),
            req.output_len,
        );
        let at = t0 + Duration::from_secs_f64(*at);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            let start = t0.elapsed().as_secs_f64();
            let o = ep.send(&prompt, max).await;
            bar.inc(1);
            (start, o)
        }));
    }
    let mut outcomes: Vec<(f64, Outcome)> = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await?);
    }
    let duration = t0.elapsed().as_secs_f64();
    bar.finish();
    let load_end = load_average();

    let records: Vec<Record> = outcomes
        .iter()
        .zip(&requests)
        .map(|((start, o), r)| Record {
            success: o.success,
            prompt_len: r.prompt_len,
            output_len: if o.success {
                output_len(o, tok.as_ref())
            } else {
                0
            },
            ttft: o.ttft,
            itl: o.itl.clone(),
            e2el: o.e2el,
            start: *start,
        })
        .collect();
    let m = metrics::calculate(&records, duration, goodput.as_ref(), &ps);
    print!(
        "{}",
        metrics::summary(&m, args.max_concurrency, args.request_rate, &selected)
    );
    if let Some(e) = outcomes.iter().find(|(_, o)| !o.success) {
        eprintln!("first error: {}", e.1.error);
    }

    if args.save_result {
        let mut j = metrics::result_json(&m, &selected);
        let date = utc_stamp(SystemTime::now());
        let model_id = ep.model.clone();
        let meta = json!({
            "date": date, "endpoint_type": args.backend, "backend": args.backend,
            "label": args.label.clone().unwrap_or_else(|| args.backend.clone()),
            "model_id": model_id, "tokenizer_id": args.tokenizer.as_ref().map(|p| p.display().to_string()).or(args.model.clone()),
            "num_prompts": args.num_prompts,
            "request_rate": if args.request_rate.is_infinite() { json!("inf") } else { json!(args.request_rate) },
            "burstiness": args.burstiness, "max_concurrency": args.max_concurrency,
            "input_lens": records.iter().map(|r| r.prompt_len).collect::<Vec<_>>(),
            "output_lens": records.iter().map(|r| r.output_len).collect::<Vec<_>>(),
            "ttfts": outcomes.iter().map(|(_, o)| o.ttft).collect::<Vec<_>>(),
            "itls": outcomes.iter().map(|(_, o)| o.itl.clone()).collect::<Vec<_>>(),
            "generated_texts": outcomes.iter().map(|(_, o)| o.generated_text.clone()).collect::<Vec<_>>(),
            "errors": outcomes.iter().map(|(_, o)| o.error.clone()).collect::<Vec<_>>(),
            "load_average_start": load_start, "load_average_end": load_end,
        });
        if let Value::Object(meta) = meta {
            j.extend(meta);
        }
        let name = args.result_filename.clone().unwrap_or_else(|| {
            let c = args
                .max_concurrency
                .map_or(String::new(), |c| format!("-concurrency{c}"));
            let rate = if args.request_rate.is_infinite() {
                "inf".into()
            } else {
                args.request_rate.to_string()
            };
            let base = model_id.rsplit('/').next().unwrap_or(&model_id).to_string();
            format!(
                "{}-{rate}qps{c}-{base}-{}.json",
                args.backend,
                date.replace(['-', ':'], "").replace('T', "-")
            )
        });
        let dir = args
            .result_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(name);
        std::fs::write(&file, serde_json::to_string_pretty(&Value::Object(j))?)?;
        println!("Results saved to {}", file.display());
    }
    Ok(())
}

/// The 1/5/15-minute load averages (Linux), for the result file.
fn load_average() -> Option<Vec<f64>> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        s.split_whitespace()
            .take(3)
            .filter_map(|x| x.parse().ok())
            .collect(),
    )
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(utc_stamp(t), "2024-02-29T12:34:56");
    }

    #[test]
    fn output_tokens_prefer_usage() {
        let o = Outcome {
            usage_tokens: Some(7),
            chunks: 3,
            ..Default::default()
        };
        assert_eq!(output_len(&o, None), 7);
        let o = Outcome {
            chunks: 3,
            ..Default::default()
        };
        assert_eq!(output_len(&o, None), 3);
    }
}
