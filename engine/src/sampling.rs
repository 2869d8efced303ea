//! Per-request sampling parameters (vLLM's `SamplingParams`), their validation with vLLM's error
//! messages, and the model's own defaults read from `generation_config.json`.
//!
//! The fields, defaults and checks follow vLLM's OpenAI server; `GenerationDefaults` reproduces
//! vLLM's `--generation-config auto`: the model's defaults replace vLLM's, and the request then
//! overrides whatever it sets.

use std::path::Path;

/// Sampling parameters of one request, with vLLM's defaults (see [`Default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Number of output sequences to return for the prompt.
    pub n: usize,
    /// Softmax temperature; below 1e-5 sampling is greedy.
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of top tokens whose probability reaches `top_p`.
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens; 0 or -1 disables it (vLLM accepts both).
    pub top_k: i32,
    /// Drop tokens whose probability is below `min_p` times the most likely token's.
    pub min_p: f32,
    /// HF/vLLM repetition penalty over prompt and output tokens (1.0 = off).
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of every token already in the output.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per occurrence in the output.
    pub frequency_penalty: f32,
    /// Additive biases `(token id, bias)` applied to the raw logits.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the random draws; `None` lets the engine pick one per request.
    pub seed: Option<u64>,
    /// Stop strings: generation ends when the output text contains one of them.
    pub stop: Vec<String>,
    /// Token ids that end generation (in addition to the model's EOS).
    pub stop_token_ids: Vec<u32>,
    /// Keep the matched stop string in the returned text.
    pub include_stop_str_in_output: bool,
    /// Do not stop at the model's EOS tokens.
    pub ignore_eos: bool,
    /// Minimum number of output tokens before EOS or a stop token may be produced.
    pub min_tokens: usize,
    /// Maximum number of output tokens; `None` means until the model's context is full.
    pub max_tokens: Option<usize>,
    /// Number of top log-probabilities to return per output token (`None` = no logprobs).
    pub logprobs: Option<usize>,
    /// Leave special tokens out of the detokenized text.
    pub skip_special_tokens: bool,
    /// Put spaces between special tokens when detokenizing.
    pub spaces_between_special_tokens: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            n: 1,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: None,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            include_stop_str_in_output: false,
            ignore_eos: false,
            min_tokens: 0,
            max_tokens: None,
            logprobs: None,
            skip_special_tokens: true,
            spaces_between_special_tokens: true,
        }
    }
}

/// Largest number of top logprobs a request may ask for (vLLM's default `max_logprobs`).
pub const MAX_LOGPROBS: usize = 20;

/// Temperatures below this are treated as greedy decoding (vLLM's `_SAMPLING_EPS`).
pub const GREEDY_EPS: f32 = 1e-5;

/// An invalid sampling parameter, with vLLM's message and the name of the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// Human-readable message, worded like vLLM's.
    pub message: String,
    /// The request field at fault (e.g. `"temperature"`).
    pub param: &'static str,
}

fn bad(param: &'static str, message: String) -> Result<(), ParamError> {
    Err(ParamError { message, param })
}

impl SamplingParams {
    /// The parameters a request starts from under vLLM's `--generation-config auto`: vLLM's
    /// defaults with the model's `generation_config.json` values in their place.
    pub fn from_defaults(defaults: &GenerationDefaults) -> Self {
        let mut p = Self::default();
        if let Some(t) = defaults.temperature {
            p.temperature = t;
        }
        if let Some(v) = defaults.top_p {
            p.top_p = v;
        }
        if let Some(v) = defaults.top_k {
            p.top_k = v;
        }
        if let Some(v) = defaults.min_p {
            p.min_p = v;
        }
        if let Some(v) = defaults.repetition_penalty {
            p.repetition_penalty = v;
        }
        if let Some(v) = defaults.max_new_tokens {
            p.max_tokens = Some(v);
        }
        p
    }

    /// True when sampling is greedy (temperature below [`GREEDY_EPS`]).
    pub fn is_greedy(&self) -> bool {
        self.temperature < GREEDY_EPS
    }

    /// Checks every field like vLLM does; `vocab_size` bounds the token ids in `logit_bias`.
    pub fn validate(&self, vocab_size: usize) -> Result<(), ParamError> {
        if self.n < 1 {
            return bad("n", format!("n must be at least 1, got {}.", self.n));
        }
        if !(-2.0..=2.0).contains(&self.presence_penalty) {
            return bad(
                "presence_penalty",
                format!(
                    "presence_penalty must be in [-2, 2], got {:?}.",
                    self.presence_penalty
                ),
            );
        }
        if !(-2.0..=2.0).contains(&self.frequency_penalty) {
            return bad(
                "frequency_penalty",
                format!(
                    "frequency_penalty must be in [-2, 2], got {:?}.",
                    self.frequency_penalty
                ),
            );
        }
        if self.repetition_penalty.is_nan() || self.repetition_penalty <= 0.0 {
            return bad(
                "repetition_penalty",
                format!(
                    "repetition_penalty must be greater than zero, got {:?}.",
                    self.repetition_penalty
                ),
            );
        }
        if self.temperature.is_nan() || self.temperature < 0.0 {
            return bad(
                "temperature",
                format!(
                    "temperature must be non-negative, got {:?}.",
                    self.temperature
                ),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(
                "top_p",
                format!("top_p must be in (0, 1], got {:?}.", self.top_p),
            );
        }
        if self.top_k < -1 {
            return bad(
                "top_k",
                format!(
                    "top_k must be 0 (disable), or at least 1, got {}.",
                    self.top_k
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(
                "min_p",
                format!("min_p must be in [0, 1], got {:?}.", self.min_p),
            );
        }
        if let Some(max) = self.max_tokens {
            if max < 1 {
                return bad(
                    "max_tokens",
                    format!("max_tokens must be at least 1, got {max}."),
                );
            }
            if self.min_tokens > max {
                return bad(
                    "min_tokens",
                    format!(
                        "min_tokens must be less than or equal to max_tokens={max}, got {}.",
                        self.min_tokens
                    ),
                );
            }
        }
        if let Some(k) = self.logprobs {
            if k > MAX_LOGPROBS {
                return bad(
                    "logprobs",
                    format!(
                        "Requested sample logprobs of {k}, which is greater than max allowed: {MAX_LOGPROBS}"
                    ),
                );
            }
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return bad("stop", "stop cannot contain an empty string.".to_string());
        }
        let out_of_vocab: Vec<u32> = self
            .logit_bias
            .iter()
            .map(|&(id, _)| id)
            .filter(|&id| id as usize >= vocab_size)
            .collect();
        if !out_of_vocab.is_empty() {
            return bad(
                "logit_bias",
                format!(
                    "token_id(s) {out_of_vocab:?} in logit_bias contain out-of-vocab token ids. \
                     Vocabulary size: {vocab_size}"
                ),
            );
        }
        if let Some((_, b)) = self.logit_bias.iter().find(|(_, b)| !b.is_finite()) {
            return bad(
                "logit_bias",
                format!("logit_bias values must be finite, got {b:?}."),
            );
        }
        Ok(())
    }
}

/// Error reading a `generation_config.json`.
#[derive(Debug, thiserror::Error)]
pub enum GenerationConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON or a field has the wrong type.
    #[error("invalid generation config: {0}")]
    Parse(String),
}

/// The sampling defaults and EOS ids a model ships in its `generation_config.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationDefaults {
    /// Default temperature.
    pub temperature: Option<f32>,
    /// Default nucleus threshold.
    pub top_p: Option<f32>,
    /// Default top-k.
    pub top_k: Option<i32>,
    /// Default min-p.
    pub min_p: Option<f32>,
    /// Default repetition penalty.
    pub repetition_penalty: Option<f32>,
    /// Default cap on new tokens (becomes the default `max_tokens`).
    pub max_new_tokens: Option<usize>,
    /// EOS token ids (`eos_token_id` may be a number or a list).
    pub eos_token_ids: Vec<u32>,
}

impl GenerationDefaults {
    /// Reads `dir/generation_config.json`; a missing file gives empty defaults.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, GenerationConfigError> {
        let path = dir.as_ref().join("generation_config.json");
        if !path.exists() {
            return Ok(Self::default());
        }
        Self::from_file(&path)
    }

    /// Reads one `generation_config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, GenerationConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| GenerationConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_str(&text)
    }

    /// Parses the JSON text of a `generation_config.json`.
    pub fn from_json_str(text: &str) -> Result<Self, GenerationConfigError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| GenerationConfigError::Parse(e.to_string()))?;
        Self::from_json(&v)
    }

    /// Extracts the defaults from a parsed `generation_config.json`; unknown keys are ignored.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, GenerationConfigError> {
        let obj = v
            .as_object()
            .ok_or_else(|| GenerationConfigError::Parse("expected a JSON object".into()))?;
        let float = |key: &str| -> Result<Option<f32>, GenerationConfigError> {
            match obj.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x.as_f64().map(|f| Some(f as f32)).ok_or_else(|| {
                    GenerationConfigError::Parse(format!("{key} must be a number, got {x}"))
                }),
            }
        };
        let int = |key: &str| -> Result<Option<i64>, GenerationConfigError> {
            match obj.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x.as_i64().map(Some).ok_or_else(|| {
                    GenerationConfigError::Parse(format!("{key} must be an integer, got {x}"))
                }),
            }
        };
        let top_k = int("top_k")?
            .map(|k| i32::try_from(k).map_err(|_| GenerationConfigError::Parse("top_k".into())))
            .transpose()?;
        let max_new_tokens = int("max_new_tokens")?
            .map(|k| {
                usize::try_from(k)
                    .map_err(|_| GenerationConfigError::Parse("max_new_tokens".into()))
            })
            .transpose()?;
        Ok(Self {
            temperature: float("temperature")?,
            top_p: float("top_p")?,
            top_k,
            min_p: float("min_p")?,
            repetition_penalty: float("repetition_penalty")?,
            max_new_tokens,
            eos_token_ids: token_id_list(obj.get("eos_token_id"))?,
        })
    }
}

/// Parses an `eos_token_id`-style field: absent, null, a number or a list of numbers.
pub(crate) fn token_id_list(
    v: Option<&serde_json::Value>,
) -> Result<Vec<u32>, GenerationConfigError> {
    let one = |x: &serde_json::Value| {
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| GenerationConfigError::Parse(format!("invalid token id {x}")))
    };
    match v {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items.iter().map(one).collect(),
        Some(x) => Ok(vec![one(x)?]),
    }
}

#[cfg(test)]
#[path = "sampling_tests.rs"]
mod tests;
