//! The `serve` flag table: every vLLM flag `candela serve` / `vllm serve` accepts, with its
//! value kind, choices, default (for `--help`) and, for flags that do nothing on this backend,
//! the reason logged when they are given. Also renders `--help` from the table.

/// How a flag takes its value (mirrors the argparse types vLLM derives from its config fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--x` / `--no-x`, no value (argparse `BooleanOptionalAction`).
    Bool,
    /// One string.
    Str,
    /// One integer (negative allowed).
    Int,
    /// One float.
    Float,
    /// One integer with an optional `k/m/g/t` (×1000ⁿ) or `K/M/G/T` (×1024ⁿ) suffix.
    HumanInt,
    /// As `HumanInt`, plus `-1`/`auto` meaning "derive it" (vLLM's `--max-model-len`).
    HumanIntOrAuto,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// One or more strings (argparse `nargs='+'`).
    Multi,
    /// A JSON object, also settable key by key with `--flag.key value`.
    Json,
}

/// `--help` section a flag is listed under (vLLM's config group names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// HTTP server and OpenAI frontend.
    Frontend,
    /// Model and weights.
    Model,
    /// KV cache.
    Cache,
    /// Scheduler limits.
    Scheduler,
    /// Multi-device execution.
    Parallel,
    /// LoRA adapters.
    Lora,
    /// Disaggregated prefill / KV transfer.
    KvTransfer,
    /// Logging.
    Observability,
}

impl Group {
    /// The section title.
    pub fn title(self) -> &'static str {
        match self {
            Group::Frontend => "Frontend",
            Group::Model => "ModelConfig",
            Group::Cache => "CacheConfig",
            Group::Scheduler => "SchedulerConfig",
            Group::Parallel => "ParallelConfig",
            Group::Lora => "LoRAConfig",
            Group::KvTransfer => "KVTransferConfig",
            Group::Observability => "ObservabilityConfig",
        }
    }
}

const ALL_GROUPS: [Group; 8] = [
    Group::Frontend,
    Group::Model,
    Group::Cache,
    Group::Scheduler,
    Group::Parallel,
    Group::Lora,
    Group::KvTransfer,
    Group::Observability,
];

/// One accepted flag.
#[derive(Debug, Clone, Copy)]
pub struct FlagSpec {
    /// Long name without the leading `--`, in dash form.
    pub name: &'static str,
    /// Short alias with its single dash (`-tp`), if vLLM has one.
    pub alias: Option<&'static str>,
    /// Value kind.
    pub kind: Kind,
    /// Whether the literal `None` (or an empty string) is accepted, meaning "unset".
    pub nullable: bool,
    /// Help section.
    pub group: Group,
    /// Default shown in `--help` (empty = none).
    pub default: &'static str,
    /// One-line help.
    pub help: &'static str,
    /// Why the flag has no effect here; logged once when the flag is given (`None` = honoured).
    pub ignored: Option<&'static str>,
}

/// `--dtype` choices.
pub const DTYPES: &[&str] = &["auto", "half", "float16", "bfloat16", "float", "float32"];
/// `--quantization` choices (vLLM's quantization methods; `None` is also accepted).
pub const QUANTIZATIONS: &[&str] = &[
    "awq",
    "awq_marlin",
    "gptq",
    "gptq_marlin",
    "gptq_marlin_24",
    "fp8",
    "fbgemm_fp8",
    "ptpc_fp8",
    "mxfp4",
    "modelopt",
    "modelopt_fp4",
    "compressed-tensors",
    "bitsandbytes",
    "gguf",
    "experts_int8",
    "moe_wna16",
    "quark",
    "torchao",
    "inc",
    "tpu_int8",
];
/// `--int4-activations` choices (candela's own flag).
pub const INT4_ACTIVATIONS: &[&str] = &["auto", "int8", "float32"];
/// `--kv-cache-dtype` choices.
pub const KV_CACHE_DTYPES: &[&str] = &[
    "auto",
    "bfloat16",
    "fp8",
    "fp8_e4m3",
    "fp8_e5m2",
    "fp8_inc",
    "fp8_ds_mla",
];
/// `--distributed-executor-backend` choices (`None` is also accepted).
pub const EXECUTORS: &[&str] = &["ray", "mp", "uni", "external_launcher"];
/// `--runner` choices.
pub const RUNNERS: &[&str] = &["auto", "generate", "pooling", "draft"];
/// `--convert` choices.
pub const CONVERTS: &[&str] = &["auto", "none", "embed", "classify", "reward"];
/// `--uvicorn-log-level` choices.
pub const LOG_LEVELS: &[&str] = &["critical", "error", "warning", "info", "debug", "trace"];
/// `--chat-template-content-format` choices.
pub const CONTENT_FORMATS: &[&str] = &["auto", "string", "openai"];

const fn flag(
    name: &'static str,
    kind: Kind,
    group: Group,
    default: &'static str,
    help: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        alias: None,
        kind,
        nullable: false,
        group,
        default,
        help,
        ignored: None,
    }
}

const fn nullable(mut f: FlagSpec) -> FlagSpec {
    f.nullable = true;
    f
}

const fn alias(mut f: FlagSpec, a: &'static str) -> FlagSpec {
    f.alias = Some(a);
    f
}

const fn ignored(mut f: FlagSpec, why: &'static str) -> FlagSpec {
    f.ignored = Some(why);
    f
}

use Group::*;
use Kind::*;

/// Every flag `serve` accepts, in `--help` order within each group.
pub static SERVE_FLAGS: &[FlagSpec] = &[
    // Frontend.
    nullable(flag("host", Str, Frontend, "0.0.0.0", "Host name to bind.")),
    flag("port", Int, Frontend, "8000", "Port number."),
    nullable(flag("served-model-name", Multi, Frontend, "", "Model name(s) used in the API; the first one is reported in metrics. Default: the model argument.")),
    nullable(flag("api-key", Multi, Frontend, "", "Require one of these keys as `Authorization: Bearer <key>` on /v1 routes (default: VLLM_API_KEY).")),
    nullable(flag("chat-template", Str, Frontend, "", "Chat template file path, or the template inline.")),
    ignored(flag("chat-template-content-format", Choice(CONTENT_FORMATS), Frontend, "auto", "How message content is rendered in the chat template."), "not configurable on this backend"),
    flag("response-role", Str, Frontend, "assistant", "Role name returned by chat completions."),
    flag("enable-auto-tool-choice", Bool, Frontend, "false", "Let the model choose tool calls (needs --tool-call-parser)."),
    nullable(flag("tool-call-parser", Str, Frontend, "", "Tool call parser for the model's tool-call format.")),
    ignored(flag("tool-parser-plugin", Str, Frontend, "", "Python plugin registering tool parsers."), "Python plugins cannot be loaded"),
    nullable(flag("reasoning-parser", Str, Frontend, "", "Reasoning parser that splits `reasoning` from `content`.")),
    flag("enable-request-id-headers", Bool, Frontend, "false", "Echo X-Request-Id on responses."),
    ignored(nullable(flag("lora-modules", Multi, Frontend, "", "LoRA adapters as name=path or JSON.")), "LoRA adapters are not supported yet"),
    ignored(flag("uvicorn-log-level", Choice(LOG_LEVELS), Frontend, "info", "HTTP server log level."), "set RUST_LOG or VLLM_LOGGING_LEVEL instead"),
    ignored(flag("disable-uvicorn-access-log", Bool, Frontend, "false", "Disable the HTTP access log."), "there is no uvicorn server"),
    ignored(flag("disable-fastapi-docs", Bool, Frontend, "false", "Disable /docs."), "there is no FastAPI app"),
    // Model.
    nullable(flag("model", Str, Model, "", "Model (hub id, local directory or .gguf file); prefer the positional argument.")),
    nullable(flag("tokenizer", Str, Model, "", "Tokenizer name or path (default: the model's).")),
    nullable(flag("revision", Str, Model, "", "Hub revision (branch, tag or commit).")),
    nullable(flag("download-dir", Str, Model, "", "Hub cache directory (default: $HF_HOME/hub).")),
    flag("load-format", Str, Model, "auto", "Weight format: auto, safetensors, gguf, ..."),
    flag("dtype", Choice(DTYPES), Model, "auto", "Weight precision; compute is f32 on CPU."),
    alias(nullable(flag("quantization", Choice(QUANTIZATIONS), Model, "None", "Weight quantization method (default: from the checkpoint).")), "-q"),
    flag("int4-activations", Choice(INT4_ACTIVATIONS), Model, "auto", "candela: int4 (AWQ/GPTQ) decode activations: int8 (per-group, integer dot products), float32 (exact), or auto (int8 with --dtype bfloat16, as vLLM's CPU W4A8, else float32)."),
    flag("max-model-len", HumanIntOrAuto, Model, "auto", "Context length (prompt + output); accepts 32k, 32K, -1/auto."),
    flag("seed", Int, Model, "0", "Engine seed."),
    flag("generation-config", Str, Model, "auto", "Sampling defaults: auto (model's generation_config.json), vllm, or a directory."),
    flag("runner", Choice(RUNNERS), Model, "auto", "Runner type."),
    flag("convert", Choice(CONVERTS), Model, "auto", "Adapt the model to another runner."),
    ignored(flag("trust-remote-code", Bool, Model, "false", "Trust remote code from the hub."), "no remote code is ever run; only built-in architectures load"),
    ignored(flag("enforce-eager", Bool, Model, "false", "Always run eagerly (no graph capture)."), "there is no graph capture on CPU"),
    ignored(flag("hf-overrides", Json, Model, "", "Overrides for the model's HF config (JSON)."), "config overrides are not supported yet"),
    ignored(flag("override-generation-config", Json, Model, "", "Overrides for sampling defaults (JSON)."), "use --generation-config instead"),
    ignored(flag("compilation-config", Json, Model, "", "torch.compile settings (JSON)."), "there is no graph compilation"),
    ignored(flag("enable-sleep-mode", Bool, Model, "false", "Allow the engine to sleep and free device memory."), "sleep mode is not supported"),
    // Cache.
    flag("block-size", Int, Cache, "16", "Tokens per KV block."),
    flag("enable-prefix-caching", Bool, Cache, "true", "Reuse KV blocks of shared prefixes."),
    ignored(flag("gpu-memory-utilization", Float, Cache, "0.92", "Fraction of device memory for the engine."), "the CPU KV budget is --kv-cache-memory-bytes or VLLM_CPU_KVCACHE_SPACE"),
    nullable(flag("kv-cache-memory-bytes", HumanInt, Cache, "", "KV cache budget in bytes (default: VLLM_CPU_KVCACHE_SPACE GiB, else 4 GiB).")),
    flag("kv-cache-dtype", Choice(KV_CACHE_DTYPES), Cache, "auto", "KV cache element type."),
    ignored(flag("swap-space", Float, Cache, "4", "CPU swap space per device in GiB."), "the KV cache already lives in host memory"),
    // Scheduler.
    flag("max-num-seqs", Int, Scheduler, "256", "Most sequences per step."),
    nullable(flag("max-num-batched-tokens", HumanInt, Scheduler, "", "Token budget per step (default 256 with chunked prefill).")),
    flag("enable-chunked-prefill", Bool, Scheduler, "true", "Split long prompts across steps."),
    // Parallel.
    alias(flag("tensor-parallel-size", Int, Parallel, "1", "Tensor-parallel ranks."), "-tp"),
    alias(flag("pipeline-parallel-size", Int, Parallel, "1", "Pipeline-parallel stages."), "-pp"),
    alias(flag("data-parallel-size", Int, Parallel, "1", "Data-parallel replicas."), "-dp"),
    nullable(flag("distributed-executor-backend", Choice(EXECUTORS), Parallel, "None", "Executor for multi-device runs.")),
    ignored(flag("disable-custom-all-reduce", Bool, Parallel, "false", "Use NCCL all-reduce only."), "there is no multi-device all-reduce"),
    // LoRA.
    ignored(flag("enable-lora", Bool, Lora, "false", "Enable LoRA adapters."), "LoRA adapters are not supported yet"),
    ignored(flag("max-loras", Int, Lora, "1", "Most LoRAs in one batch."), "LoRA adapters are not supported yet"),
    ignored(flag("max-lora-rank", Int, Lora, "16", "Largest LoRA rank."), "LoRA adapters are not supported yet"),
    ignored(nullable(flag("max-cpu-loras", Int, Lora, "", "Most LoRAs kept in CPU memory.")), "LoRA adapters are not supported yet"),
    // KV transfer.
    flag("kv-transfer-config", Json, KvTransfer, "", "Disaggregated prefill connector (JSON), e.g. {\"kv_connector\":\"LMCacheConnectorV1\",\"kv_role\":\"kv_producer\"}."),
    // Observability.
    flag("enable-log-requests", Bool, Observability, "false", "Log each request."),
    flag("disable-log-requests", Bool, Observability, "true", "Do not log requests (deprecated; the default)."),
    ignored(flag("disable-log-stats", Bool, Observability, "false", "Disable periodic stats logging."), "no periodic stats are logged; see /metrics"),
    ignored(nullable(flag("max-log-len", Int, Observability, "", "Longest prompt prefix printed in request logs.")), "prompt logging is not configurable here"),
];

/// The spec whose long name (dash form, without `--`) is `name`.
pub fn by_name(specs: &'static [FlagSpec], name: &str) -> Option<&'static FlagSpec> {
    specs.iter().find(|f| f.name == name)
}

/// The spec whose short alias (with its dash, e.g. `-tp`) is `alias`.
pub fn by_alias(specs: &'static [FlagSpec], alias: &str) -> Option<&'static FlagSpec> {
    specs.iter().find(|f| f.alias == Some(alias))
}

fn metavar(f: &FlagSpec) -> String {
    match f.kind {
        Bool => String::new(),
        Str => " VALUE".into(),
        Int | HumanInt | HumanIntOrAuto => " N".into(),
        Float => " X".into(),
        Choice(c) => {
            let mut all: Vec<&str> = c.to_vec();
            if f.nullable {
                all.push("None");
            }
            format!(" {{{}}}", all.join(","))
        }
        Multi => " VALUE [VALUE ...]".into(),
        Json => " JSON".into(),
    }
}

/// `--help` for `prog` (e.g. `vllm serve`); with `keyword`, only flags whose name contains it
/// (or the group with that title), as vLLM's `--help=<keyword>`.
pub fn render_help(prog: &str, keyword: Option<&str>) -> String {
    let kw = keyword
        .map(|k| k.to_lowercase().replace('_', "-"))
        .filter(|k| k != "all");
    let mut out = format!(
        "usage: {prog} [model_tag] [options]\n\n\
         Start the OpenAI-compatible server. Flags follow vLLM: --a_b equals --a-b, --no-<flag> turns a\n\
         boolean off, --flag=value works, a repeated flag keeps its last value, and JSON flags can be\n\
         given key by key (--kv-transfer-config.kv_role kv_producer).\n\n\
         positional arguments:\n  model_tag             Model: hub id, local directory or .gguf file.\n"
    );
    for g in ALL_GROUPS {
        let group_match = kw.as_deref().is_some_and(|k| g.title().to_lowercase() == k);
        let flags: Vec<&FlagSpec> = SERVE_FLAGS
            .iter()
            .filter(|f| {
                f.group == g
                    && (kw.is_none()
                        || group_match
                        || kw.as_deref().is_some_and(|k| f.name.contains(k)))
            })
            .collect();
        if flags.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{}:\n", g.title()));
        for f in flags {
            let mut names = format!("--{}", f.name);
            if f.kind == Bool {
                names.push_str(&format!(", --no-{}", f.name));
            }
            if let Some(a) = f.alias {
                names.push_str(&format!(", {a}"));
            }
            let mut line = format!("  {names}{}\n        {}", metavar(f), f.help);
            if !f.default.is_empty() {
                line.push_str(&format!(" (default: {})", f.default));
            }
            if let Some(why) = f.ignored {
                line.push_str(&format!(" [accepted, no effect here: {why}]"));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push_str(
        "\n  -h, --help, --help=<keyword>\n        Show this help (or only the flags matching <keyword>).\n\n\
         Environment: VLLM_API_KEY, HF_TOKEN, HF_HOME, HF_HUB_OFFLINE, HF_ENDPOINT, VLLM_HOST_IP,\n\
         VLLM_CPU_KVCACHE_SPACE (GiB), VLLM_LOGGING_LEVEL / RUST_LOG.\n",
    );
    out
}
