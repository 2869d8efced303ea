//! The model's tokenizer: a shared `tokenizers::Tokenizer` plus what vLLM reads around it
//! (special tokens, BOS handling, chat template, EOS ids from `generation_config.json`).
//!
//! Two sources: an HF checkpoint folder (`tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`) and a GGUF file whose metadata holds a byte-level BPE
//! (`tokenizer.ggml.model = "gpt2"`), rebuilt here into an equivalent `tokenizers` pipeline.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use serde_json::Value as Json;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::sampling::GenerationDefaults;

/// Errors from loading or running a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A configuration file or GGUF key is malformed.
    #[error("invalid tokenizer config ({what}): {message}")]
    Config {
        /// Which file or key.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// The GGUF tokenizer kind is not supported.
    #[error("unsupported GGUF tokenizer model {0:?}: only byte-level BPE (\"gpt2\") is supported")]
    Unsupported(String),
    /// The `tokenizers` library failed while encoding or decoding.
    #[error("tokenizer error: {0}")]
    Tokenizers(String),
}

/// Result of tokenizer operations.
pub type Result<T> = std::result::Result<T, TokenizerError>;

fn config_err(what: &str, message: impl ToString) -> TokenizerError {
    TokenizerError::Config {
        what: what.to_string(),
        message: message.to_string(),
    }
}

fn io_err(path: &Path, e: impl ToString) -> TokenizerError {
    TokenizerError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn tk_err(e: impl ToString) -> TokenizerError {
    TokenizerError::Tokenizers(e.to_string())
}

/// How `encode(.., add_special_tokens = true)` treats BOS beyond what the post-processor does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BosPolicy {
    /// Trust the post-processor.
    AsIs,
    /// Prepend BOS (config asks for it, post-processor does not add it).
    Prepend(u32),
    /// Remove a leading BOS (config disables it, post-processor adds it).
    Strip(u32),
}

/// A loaded tokenizer; cheap to clone (the vocabulary is shared).
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: Arc<tokenizers::Tokenizer>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
    eos_ids: Vec<u32>,
    special_ids: BTreeSet<u32>,
    chat_template: Option<String>,
    bos_policy: BosPolicy,
}

/// Reads a JSON file; `Ok(None)` if it does not exist.
fn read_json(path: &Path) -> Result<Option<Json>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| config_err(&path.display().to_string(), e))
}

/// A special-token field of `tokenizer_config.json`: a string, `{"content": ..}` or null.
fn token_field(cfg: &Json, key: &str) -> Option<String> {
    match cfg.get(key)? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// `chat_template` is a string or a list of `{name, template}`; the list's "default" is used.
fn chat_template_field(cfg: &Json) -> Option<String> {
    match cfg.get("chat_template")? {
        Json::String(s) => Some(s.clone()),
        Json::Array(items) => items
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
        _ => None,
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json`, `tokenizer_config.json` (special tokens, `add_bos_token`,
    /// `chat_template`, `added_tokens_decoder`), a separate `chat_template.jinja` if present,
    /// and the EOS ids of `generation_config.json` from a checkpoint folder.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tok_path = dir.join("tokenizer.json");
        let inner =
            tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| io_err(&tok_path, e))?;
        let cfg = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Json::Null);
        // Tokens the config marks special (tokenizer.json's own flags are added in `assemble`).
        let special_ids = cfg
            .get("added_tokens_decoder")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, t)| t.get("special").and_then(Json::as_bool) == Some(true))
            .filter_map(|(id, _)| id.parse().ok())
            .collect();
        let mut chat_template = chat_template_field(&cfg);
        let jinja = dir.join("chat_template.jinja");
        if chat_template.is_none() && jinja.exists() {
            chat_template = Some(std::fs::read_to_string(&jinja).map_err(|e| io_err(&jinja, e))?);
        }
        let gen = GenerationDefaults::from_dir(dir)
            .map_err(|e| config_err("generation_config.json", e))?;
        let class = cfg
            .get("tokenizer_class")
            .and_then(Json::as_str)
            .unwrap_or_default();
        // HF's Llama/Gemma tokenizers rebuild their post-processor from add_bos_token (default
        // true); the other classes use tokenizer.json's post-processor as it is.
        let enforce_bos = class.contains("Llama") || class.contains("Gemma");
        let add_bos = cfg
            .get("add_bos_token")
            .and_then(Json::as_bool)
            .unwrap_or(true);
        let mut tok = Self::assemble(
            inner,
            token_field(&cfg, "bos_token"),
            token_field(&cfg, "eos_token"),
            token_field(&cfg, "pad_token"),
            chat_template,
            special_ids,
        );
        if enforce_bos {
            tok.set_bos_policy(add_bos)?;
        }
        tok.add_eos_ids(&gen.eos_token_ids);
        Ok(tok)
    }

    fn assemble(
        inner: tokenizers::Tokenizer,
        bos_token: Option<String>,
        eos_token: Option<String>,
        pad_token: Option<String>,
        chat_template: Option<String>,
        mut special_ids: BTreeSet<u32>,
    ) -> Self {
        special_ids.extend(
            inner
                .get_added_tokens_decoder()
                .iter()
                .filter(|(_, t)| t.special)
                .map(|(id, _)| *id),
        );
        let eos_ids = eos_token
            .as_deref()
            .and_then(|t| inner.token_to_id(t))
            .into_iter()
            .collect();
        Self {
            inner: Arc::new(inner),
            bos_token,
            eos_token,
            pad_token,
            eos_ids,
            special_ids,
            chat_template,
            bos_policy: BosPolicy::AsIs,
        }
    }

    fn add_eos_ids(&mut self, ids: &[u32]) {
        for &id in ids {
            if !self.eos_ids.contains(&id) {
                self.eos_ids.push(id);
            }
        }
    }

    /// Makes `encode(.., true)` start with BOS exactly when `add_bos` says so.
    fn set_bos_policy(&mut self, add_bos: bool) -> Result<()> {
        let Some(bos) = self
            .bos_token
            .as_deref()
            .and_then(|t| self.inner.token_to_id(t))
        else {
            return Ok(());
        };
        let probe = self.inner.encode_fast("", true).map_err(tk_err)?;
        let post_adds = probe.get_ids().first() == Some(&bos);
        self.bos_policy = match (add_bos, post_adds) {
            (true, false) => BosPolicy::Prepend(bos),
            (false, true) => BosPolicy::Strip(bos),
            _ => BosPolicy::AsIs,
        };
        Ok(())
    }

    /// Builds the tokenizer stored in a GGUF file's metadata. Only byte-level BPE
    /// (`tokenizer.ggml.model = "gpt2"`) is supported; sentencepiece ("llama") is an error.
    pub fn from_gguf(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| io_err(path, e))?;
        Self::from_gguf_metadata(&content.metadata)
    }

    /// Builds the tokenizer from already-read GGUF metadata (see [`Tokenizer::from_gguf`]).
    pub fn from_gguf_metadata(meta: &Meta) -> Result<Self> {
        let model = gguf_str(meta, "tokenizer.ggml.model")?
            .ok_or_else(|| config_err("tokenizer.ggml.model", "missing"))?;
        if model != "gpt2" {
            return Err(TokenizerError::Unsupported(model.to_string()));
        }
        let tokens = gguf_strings(meta, "tokenizer.ggml.tokens")?;
        let merges = gguf_strings(meta, "tokenizer.ggml.merges")?;
        let types = match meta.get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(gguf_file::Value::Array(items)) => items
                .iter()
                .map(gguf_int)
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| config_err("tokenizer.ggml.token_type", "not integers"))?,
            Some(_) => return Err(config_err("tokenizer.ggml.token_type", "not an array")),
        };
        if types.len() != tokens.len() {
            return Err(config_err("tokenizer.ggml.token_type", "wrong length"));
        }
        let mut vocab = Vocab::default();
        for (id, tok) in tokens.iter().enumerate() {
            vocab.entry(tok.to_string()).or_insert(id as u32);
        }
        let merges = merges
            .iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) if !b.contains(' ') => Ok((a.to_string(), b.to_string())),
                _ => Err(config_err("tokenizer.ggml.merges", m)),
            })
            .collect::<Result<Vec<_>>>()?;
        let pre = gguf_str(meta, "tokenizer.ggml.pre")?.unwrap_or("default");
        let (pre_tokenizer, ignore_merges) = gguf_pre_tokenizer(pre)?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| config_err("tokenizer.ggml.merges", e))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner
            .with_pre_tokenizer(Some(pre_tokenizer))
            .with_post_processor(Some(ByteLevel::new(false, false, false)))
            .with_decoder(Some(ByteLevel::default()));
        let added = |kind: i64, special: bool| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|(_, &t)| t == kind)
                .map(|(s, _)| AddedToken::from(*s, special))
                .collect()
        };
        inner.add_special_tokens(&added(3, true)); // control
        inner.add_tokens(&added(4, false)); // user-defined
        let token_of = |key: &str| -> Option<String> {
            let id = meta.get(key).and_then(gguf_int)?;
            tokens.get(usize::try_from(id).ok()?).map(|s| s.to_string())
        };
        let bos = token_of("tokenizer.ggml.bos_token_id");
        let eos = token_of("tokenizer.ggml.eos_token_id");
        let pad = token_of("tokenizer.ggml.padding_token_id");
        let template = gguf_str(meta, "tokenizer.chat_template")?.map(str::to_string);
        let add_bos = matches!(
            meta.get("tokenizer.ggml.add_bos_token"),
            Some(gguf_file::Value::Bool(true))
        );
        let mut tok = Self::assemble(inner, bos, eos, pad, template, BTreeSet::new());
        if add_bos {
            tok.set_bos_policy(true)?;
        }
        Ok(tok)
    }

    /// Token ids of `text`; with `add_special_tokens` the post-processor's specials (and BOS where
    /// the config asks for it) are added. Special-token strings in `text` map to their ids.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, add_special_tokens);
        let mut ids = enc.map_err(tk_err)?.get_ids().to_vec();
        match self.bos_policy {
            BosPolicy::Prepend(bos) if add_special_tokens => ids.insert(0, bos),
            BosPolicy::Strip(bos) if add_special_tokens && ids.first() == Some(&bos) => {
                ids.remove(0);
            }
            _ => {}
        }
        Ok(ids)
    }

    /// Text of `ids`; unknown ids are ignored, like HF.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(tk_err)
    }

    /// Ids that end generation: the tokenizer's EOS, then `generation_config.json`'s `eos_token_id`s.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The BOS token string, if the model has one.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The EOS token string, if the model has one.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The padding token string, if configured.
    pub fn pad_token(&self) -> Option<&str> {
        self.pad_token.as_deref()
    }

    /// Number of tokens including added tokens (the model's embedding may be larger).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// True for added tokens marked special (skipped by `decode(.., true)`).
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    /// The vocabulary string of `id` (byte-level form, e.g. `"Ġthe"`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a vocabulary string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The model's chat template (Jinja source), if it ships one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &Arc<tokenizers::Tokenizer> {
        &self.inner
    }
}

/// Any GGUF integer value as `i64`.
fn gguf_int(v: &gguf_file::Value) -> Option<i64> {
    let unsigned = v.to_u64().ok().and_then(|x| i64::try_from(x).ok());
    unsigned
        .or_else(|| v.to_i64().ok())
        .or_else(|| v.to_i32().ok().map(i64::from))
}

/// GGUF metadata as read by candle.
pub type Meta = std::collections::HashMap<String, gguf_file::Value>;

fn gguf_str<'a>(meta: &'a Meta, key: &str) -> Result<Option<&'a str>> {
    match meta.get(key) {
        None => Ok(None),
        Some(gguf_file::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(config_err(key, "not a string")),
    }
}

fn gguf_strings<'a>(meta: &'a Meta, key: &str) -> Result<Vec<&'a str>> {
    match meta.get(key) {
        Some(gguf_file::Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                gguf_file::Value::String(s) => Ok(s.as_str()),
                _ => Err(config_err(key, "not a string array")),
            })
            .collect(),
        _ => Err(config_err(key, "missing or not an array")),
    }
}

/// Llama-3 split pattern (digits in runs of up to three).
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2 split pattern (single digits).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer for a GGUF `tokenizer.ggml.pre` name (llama.cpp's pre-tokenizer types), and
/// whether BPE should look up whole words before merging (Llama-3's `ignore_merges`).
fn gguf_pre_tokenizer(pre: &str) -> Result<(PreTokenizerWrapper, bool)> {
    let gpt2 = || PreTokenizerWrapper::from(ByteLevel::new(false, true, true));
    let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
        let regex = SplitPattern::Regex(pattern.to_string());
        let split = Split::new(regex, SplitDelimiterBehavior::Isolated, false);
        let split = split
            .map_err(|e| config_err("tokenizer.ggml.pre", e))?
            .into();
        Ok(Sequence::new(vec![split, ByteLevel::new(false, true, false).into()]).into())
    };
    Ok(match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" | "exaone" | "minerva" => (
            Sequence::new(vec![Digits::new(true).into(), gpt2()]).into(),
            false,
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => {
            (split(LLAMA3_PATTERN)?, true)
        }
        "qwen2" | "qwen35" | "deepseek-r1-qwen" | "megrez" | "hunyuan" => {
            (split(QWEN2_PATTERN)?, false)
        }
        "default" | "gpt2" | "gpt-2" | "phi-2" | "olmo" | "jais" => (gpt2(), false),
        other => {
            tracing::warn!("unknown GGUF pre-tokenizer {other:?}; using the GPT-2 split");
            (gpt2(), false)
        }
    })
}

#[cfg(test)]
#[path = "tokenizer_tests.rs"]
pub(crate) mod tests;
