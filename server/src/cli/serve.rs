//! `serve`: turns the parsed vLLM serve flags plus the environment into `HttpOptions` and an
//! `EngineConfig` (validating ranges and choices like vLLM), explains flags that do nothing on
//! this backend, and runs the HTTP server on a multi-threaded tokio runtime.

use super::dialect::{self, FlagValue, ParsedArgs};
use super::flags::{render_help, Kind, SERVE_FLAGS};
use super::CliError;
use crate::engine_args::{
    env_var, generation_config, hub_options, int4_activations, kv_cache_bytes, weight_dtype, Env,
};
use crate::http::{self, HttpOptions};
use candela_engine::EngineConfig;
use std::path::PathBuf;

/// Host bound when `--host` is not given (vLLM binds every interface).
pub const DEFAULT_HOST: &str = "0.0.0.0";
/// Port bound when `--port` is not given.
pub const DEFAULT_PORT: u16 = 8000;
/// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 30;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// HTTP server options.
    pub http: HttpOptions,
    /// Engine settings.
    pub engine: EngineConfig,
}

/// What the `serve` arguments asked for.
#[derive(Debug)]
pub enum ServeParse {
    /// `--help`: the text to print.
    Help(String),
    /// Serve with this config; `notes` are warnings to log (repeats, ignored flags).
    Run {
        /// The configuration.
        config: Box<ServeConfig>,
        /// Warnings to log once at startup.
        notes: Vec<String>,
        /// The flags given, one `--name value` each (API keys redacted), for the startup log.
        given: Vec<String>,
    },
}

/// Typed access to parsed values with range checks.
struct Values<'a>(&'a ParsedArgs);

impl Values<'_> {
    fn get(&self, name: &str) -> Option<&FlagValue> {
        self.0.values.get(name)
    }
    fn flag(&self, name: &str) -> Option<bool> {
        match self.get(name) {
            Some(FlagValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    /// `Some(None)` = given as `None`.
    fn string(&self, name: &str) -> Option<Option<String>> {
        match self.get(name)? {
            FlagValue::Str(s) => Some(Some(s.clone())),
            FlagValue::Null => Some(None),
            _ => None,
        }
    }
    fn opt_string(&self, name: &str) -> Option<String> {
        self.string(name).flatten()
    }
    fn int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(FlagValue::Int(v)) => Some(*v),
            _ => None,
        }
    }
    fn float(&self, name: &str) -> Option<f64> {
        match self.get(name) {
            Some(FlagValue::Float(v)) => Some(*v),
            _ => None,
        }
    }
    fn list(&self, name: &str) -> Option<Vec<String>> {
        match self.get(name)? {
            FlagValue::List(v) => Some(v.clone()),
            FlagValue::Null => Some(Vec::new()),
            _ => None,
        }
    }
    /// An integer that must be at least `min`.
    fn at_least(&self, name: &str, min: i64) -> Result<Option<usize>, CliError> {
        match self.int(name) {
            None => Ok(None),
            Some(v) if v >= min => Ok(Some(v as usize)),
            Some(v) => Err(CliError::usage(format!(
                "argument --{name}: must be at least {min}, got {v}"
            ))),
        }
    }
}

fn show(v: &FlagValue) -> String {
    match v {
        FlagValue::Bool(b) => b.to_string(),
        FlagValue::Null => "None".into(),
        FlagValue::Str(s) => s.clone(),
        FlagValue::Int(i) => i.to_string(),
        FlagValue::Float(f) => f.to_string(),
        FlagValue::List(l) => l.join(" "),
        FlagValue::Json(j) => j.to_string(),
    }
}

/// Parses `args` (everything after `serve`) for program `prog` (`vllm serve`, `candela serve`).
pub fn parse(prog: &str, args: &[String], env: &Env) -> Result<ServeParse, CliError> {
    // vLLM moves `--model M` in front, so a positional model next to it is surplus.
    let model_flag = args
        .iter()
        .any(|a| a == "--model" || a.starts_with("--model="));
    let parsed = dialect::parse(args, SERVE_FLAGS, usize::from(!model_flag))?;
    if let Some(kw) = &parsed.help {
        return Ok(ServeParse::Help(render_help(prog, kw.as_deref())));
    }
    let v = Values(&parsed);
    let mut notes = parsed.warnings.clone();
    let model = match (parsed.positionals.first(), v.opt_string("model")) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => {
            notes.push("With `vllm serve`, give the model as the positional argument; `--model` will be removed in a future vLLM version.".into());
            m
        }
        (None, None) => {
            return Err(CliError::usage(
                "the following arguments are required: model_tag",
            ))
        }
    };
    if model.trim().is_empty() {
        return Err(CliError::usage(
            "argument model_tag: the model must not be empty",
        ));
    }

    let http = http_options(&v, env)?;
    let engine = engine_config(&v, &model, env)?;
    notes.extend(ignored_notes(&v, &engine));
    let given = parsed
        .values
        .iter()
        .map(|(name, val)| match (name, val) {
            (&"api-key", FlagValue::List(keys)) => format!("--api-key <{} redacted>", keys.len()),
            (_, FlagValue::Bool(false)) => format!("--no-{name}"),
            (_, FlagValue::Bool(true)) => format!("--{name}"),
            _ => format!("--{name} {}", show(val)),
        })
        .collect();
    Ok(ServeParse::Run {
        config: Box::new(ServeConfig { http, engine }),
        notes,
        given,
    })
}

fn http_options(v: &Values, env: &Env) -> Result<HttpOptions, CliError> {
    let port = match v.int("port") {
        None => DEFAULT_PORT,
        Some(p) => u16::try_from(p).map_err(|_| {
            CliError::usage(format!("argument --port: invalid port: {p} (0-65535)"))
        })?,
    };
    // `--api-key` (any number of keys) overrides VLLM_API_KEY.
    let api_keys = match v.list("api-key") {
        Some(keys) if !keys.is_empty() => keys,
        _ => env_var(env, "VLLM_API_KEY")
            .map(|k| vec![k.to_string()])
            .unwrap_or_default(),
    };
    let enable_auto_tool_choice = v.flag("enable-auto-tool-choice").unwrap_or(false);
    let tool_call_parser = v.opt_string("tool-call-parser");
    if enable_auto_tool_choice && tool_call_parser.is_none() {
        return Err(CliError::usage(
            "--enable-auto-tool-choice requires --tool-call-parser to be set",
        ));
    }
    // vLLM no longer logs requests unless asked (--enable-log-requests); --disable-log-requests wins.
    let disable_log_requests = v.flag("disable-log-requests").unwrap_or(false)
        || !v.flag("enable-log-requests").unwrap_or(false);
    Ok(HttpOptions {
        host: v
            .opt_string("host")
            .unwrap_or_else(|| DEFAULT_HOST.to_string()),
        port,
        served_model_names: v.list("served-model-name").unwrap_or_default(),
        api_keys,
        enable_request_id_headers: v.flag("enable-request-id-headers").unwrap_or(false),
        chat_template: v.opt_string("chat-template"),
        response_role: v
            .opt_string("response-role")
            .unwrap_or_else(|| "assistant".to_string()),
        disable_log_requests,
        enable_auto_tool_choice,
        tool_call_parser,
        reasoning_parser: v.opt_string("reasoning-parser"),
        shutdown_timeout_secs: SHUTDOWN_TIMEOUT_SECS,
    })
}

fn engine_config(v: &Values, model: &str, env: &Env) -> Result<EngineConfig, CliError> {
    let mut cfg = EngineConfig::new(model);
    if let Some(d) = v.opt_string("dtype") {
        cfg.dtype = weight_dtype(&d)
            .ok_or_else(|| CliError::usage(format!("argument --dtype: invalid choice: '{d}'")))?;
    }
    cfg.max_model_len = match v.int("max-model-len") {
        None | Some(-1) => None,
        Some(n) if n > 0 => Some(n as usize),
        Some(n) => {
            return Err(CliError::usage(format!(
                "argument --max-model-len: must be positive, -1 or auto, got {n}"
            )))
        }
    };
    cfg.block_size = v.at_least("block-size", 1)?.unwrap_or(cfg.block_size);
    let kv_explicit = v.at_least("kv-cache-memory-bytes", 1)?.map(|b| b as u64);
    cfg.kv_cache_memory_bytes = kv_cache_bytes(kv_explicit, env).map_err(|e| CliError {
        code: 2,
        message: e,
    })?;
    cfg.max_num_seqs = v.at_least("max-num-seqs", 1)?.unwrap_or(cfg.max_num_seqs);
    cfg.max_num_batched_tokens = v.at_least("max-num-batched-tokens", 1)?;
    cfg.enable_prefix_caching = v.flag("enable-prefix-caching").unwrap_or(true);
    cfg.enable_chunked_prefill = v.flag("enable-chunked-prefill").unwrap_or(true);
    cfg.generation_config = generation_config(
        &v.opt_string("generation-config")
            .unwrap_or_else(|| "auto".into()),
    );
    if let Some(seed) = v.int("seed") {
        cfg.seed = u64::try_from(seed).map_err(|_| {
            CliError::usage(format!("argument --seed: must be non-negative, got {seed}"))
        })?;
    }
    cfg.hub = hub_options(
        env,
        v.opt_string("revision"),
        v.opt_string("download-dir").map(PathBuf::from),
    );
    cfg.host_ip = env_var(env, "VLLM_HOST_IP").map(str::to_string);
    cfg.quantization = v.opt_string("quantization");
    cfg.kv_cache_dtype = v.opt_string("kv-cache-dtype").unwrap_or(cfg.kv_cache_dtype);
    cfg.int4_activations = int4_activations(
        v.opt_string("int4-activations")
            .as_deref()
            .unwrap_or("auto"),
        cfg.dtype,
    );
    cfg.tensor_parallel_size = v.at_least("tensor-parallel-size", 1)?.unwrap_or(1);
    cfg.pipeline_parallel_size = v.at_least("pipeline-parallel-size", 1)?.unwrap_or(1);
    cfg.data_parallel_size = v.at_least("data-parallel-size", 1)?.unwrap_or(1);
    cfg.distributed_executor_backend = v.opt_string("distributed-executor-backend");
    cfg.kv_transfer_config = match v.get("kv-transfer-config") {
        Some(FlagValue::Json(j)) => Some(check_kv_transfer(j)?),
        _ => None,
    };
    cfg.trust_remote_code = v.flag("trust-remote-code").unwrap_or(false);
    cfg.enforce_eager = v.flag("enforce-eager").unwrap_or(false);
    if let Some(gib) = v.float("swap-space") {
        if gib < 0.0 {
            return Err(CliError::usage(format!(
                "argument --swap-space: must be non-negative, got {gib}"
            )));
        }
        cfg.swap_space_gib = gib;
    }
    if let Some(u) = v.float("gpu-memory-utilization") {
        if !(u > 0.0 && u <= 1.0) {
            return Err(CliError::usage(format!(
                "argument --gpu-memory-utilization: must be in (0, 1], got {u}"
            )));
        }
        cfg.gpu_memory_utilization = u;
    }
    cfg.enable_lora = v.flag("enable-lora").unwrap_or(false);
    cfg.max_loras = v.at_least("max-loras", 1)?.unwrap_or(cfg.max_loras);
    cfg.max_lora_rank = v.at_least("max-lora-rank", 1)?.unwrap_or(cfg.max_lora_rank);
    cfg.runner = v.opt_string("runner").unwrap_or(cfg.runner);
    cfg.convert = v.opt_string("convert").unwrap_or(cfg.convert);
    cfg.tokenizer = v.opt_string("tokenizer").filter(|t| t != model);
    cfg.load_format = v.opt_string("load-format").unwrap_or(cfg.load_format);
    Ok(cfg)
}

/// Checks the fields vLLM's `KVTransferConfig` constrains.
fn check_kv_transfer(j: &serde_json::Value) -> Result<serde_json::Value, CliError> {
    const ROLES: [&str; 3] = ["kv_producer", "kv_consumer", "kv_both"];
    let err = |m: String| CliError::usage(format!("argument --kv-transfer-config: {m}"));
    if let Some(role) = j.get("kv_role") {
        if !role.as_str().is_some_and(|r| ROLES.contains(&r)) {
            return Err(err(format!(
                "kv_role must be one of {}, got {role}",
                ROLES.join(", ")
            )));
        }
    }
    if let Some(c) = j.get("kv_connector") {
        if !c.is_string() && !c.is_null() {
            return Err(err(format!("kv_connector must be a string, got {c}")));
        }
    }
    if j.get("kv_connector").and_then(|c| c.as_str()).is_some() && j.get("kv_role").is_none() {
        return Err(err("kv_role is required when kv_connector is set".into()));
    }
    Ok(j.clone())
}

/// One line per given flag that has no effect on this backend.
fn ignored_notes(v: &Values, cfg: &EngineConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let mut note = |flag: String, why: &str| {
        notes.push(format!(
            "{flag} is accepted and ignored on this backend ({why})"
        ))
    };
    for spec in SERVE_FLAGS {
        let (Some(why), Some(val)) = (spec.ignored, v.get(spec.name)) else {
            continue;
        };
        match val {
            FlagValue::Bool(false) | FlagValue::Null => {}
            FlagValue::Bool(true) => note(format!("--{}", spec.name), why),
            _ if spec.kind == Kind::Json => note(format!("--{}", spec.name), why),
            other => note(format!("--{} {}", spec.name, show(other)), why),
        }
    }
    for (name, size) in [
        ("tensor", cfg.tensor_parallel_size),
        ("pipeline", cfg.pipeline_parallel_size),
        ("data", cfg.data_parallel_size),
    ] {
        if size > 1 {
            note(format!("--{name}-parallel-size {size}"), "multi-device execution is not built yet: the whole model runs on a single device for now");
        }
    }
    if let Some(b) = cfg
        .distributed_executor_backend
        .as_deref()
        .filter(|b| *b != "uni")
    {
        note(
            format!("--distributed-executor-backend {b}"),
            "everything runs in this one process for now",
        );
    }
    if let Some(q) = &cfg.quantization {
        note(
            format!("--quantization {q}"),
            "weights load in the checkpoint's own format",
        );
    }
    if !matches!(cfg.runner.as_str(), "auto" | "generate") {
        note(
            format!("--runner {}", cfg.runner),
            "only generative models are served",
        );
    }
    if !matches!(cfg.convert.as_str(), "auto" | "none") {
        note(
            format!("--convert {}", cfg.convert),
            "only generative models are served",
        );
    }
    if !matches!(cfg.load_format.as_str(), "auto" | "safetensors" | "gguf") {
        note(
            format!("--load-format {}", cfg.load_format),
            "weights load from safetensors or GGUF as found",
        );
    }
    if let Some(t) = &cfg.tokenizer {
        note(
            format!("--tokenizer {t}"),
            "the tokenizer is loaded from the model",
        );
    }
    notes
}

/// Runs the server until SIGTERM/SIGINT on a multi-threaded tokio runtime.
pub fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("candela-http")
        .build()?;
    rt.block_on(http::run(cfg.http, cfg.engine))
}
