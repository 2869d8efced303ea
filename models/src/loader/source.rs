//! Locating a model from the `model` argument (as `vllm serve MODEL` takes it): an existing local
//! directory, an existing `.gguf` file, or a Hugging Face hub repo id looked up in the HF cache
//! (offline) or downloaded into it. Environment variables are read by the binary, not here: they
//! arrive in [`HubOptions`].

use crate::error::{ModelError, Result};
use crate::loader::hub;
use crate::loader::safetensors::{index_shards, INDEX_FILE};
use std::path::{Component, Path, PathBuf};

/// Where a model's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An HF-layout directory: config.json, safetensors weights, tokenizer files.
    Dir(PathBuf),
    /// A single GGUF file (weights, config and tokenizer all in its metadata).
    Gguf(PathBuf),
}

impl ModelSource {
    /// The directory or file.
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Dir(p) | ModelSource::Gguf(p) => p,
        }
    }
}

/// How to reach the Hugging Face hub and its local cache (vLLM's `--revision`, `--download-dir`,
/// and the `HF_TOKEN`, `HF_HUB_OFFLINE`, `HF_HOME`, `HF_ENDPOINT` variables, read by the binary).
#[derive(Clone, Default)]
pub struct HubOptions {
    /// Branch, tag or commit; `main` when unset.
    pub revision: Option<String>,
    /// The hub cache directory to use (vLLM `--download-dir`); overrides `hf_home`.
    pub download_dir: Option<PathBuf>,
    /// Access token for gated or private repos (`HF_TOKEN`, or the token file the binary read).
    pub token: Option<String>,
    /// Never touch the network; resolve repo ids from the cache only (`HF_HUB_OFFLINE`).
    pub offline: bool,
    /// `HF_HOME`; the cache is `$HF_HOME/hub`.
    pub hf_home: Option<PathBuf>,
    /// Hub base URL (`HF_ENDPOINT`); `https://huggingface.co` when unset.
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubOptions")
            .field("revision", &self.revision)
            .field("download_dir", &self.download_dir)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .field("hf_home", &self.hf_home)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl HubOptions {
    /// The revision to resolve: `revision` or `main`.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// The hub cache directory: `download_dir`, else `hf_home/hub`, else
    /// `~/.cache/huggingface/hub` (the home directory as the OS reports it).
    pub fn cache_dir(&self) -> Result<PathBuf> {
        if let Some(d) = &self.download_dir {
            return Ok(d.clone());
        }
        if let Some(h) = &self.hf_home {
            return Ok(h.join("hub"));
        }
        std::env::home_dir()
            .map(|h| h.join(".cache").join("huggingface").join("hub"))
            .ok_or_else(|| {
                ModelError::ModelLocation(
                    "cannot locate the Hugging Face cache: no home directory; set HF_HOME or --download-dir".into(),
                )
            })
    }
}

/// Whether `id` is a valid hub repo id: `name` or `org/name`, each part made of ASCII letters,
/// digits, `-`, `_` and `.`, not starting or ending with `-` or `.`, without `--` or `..`, at
/// most 96 characters.
pub fn is_valid_repo_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    id.len() <= 96
        && (1..=2).contains(&parts.len())
        && !id.contains("--")
        && !id.contains("..")
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !p.starts_with(['-', '.'])
                && !p.ends_with(['-', '.'])
        })
}

/// Whether the argument is clearly meant as a filesystem path rather than a repo id.
fn looks_like_path(model: &str) -> bool {
    let lower = model.to_ascii_lowercase();
    model.starts_with(['/', '.', '~'])
        || model.contains('\\')
        || lower.ends_with(".gguf")
        || lower.ends_with(".safetensors")
        || lower.ends_with(".json")
}

/// What an HF-layout model directory lacks: `config.json` and/or its safetensors weights
/// (every shard its index names). Empty when complete.
pub(crate) fn missing_in_model_dir(dir: &Path) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    if !dir.join("config.json").is_file() {
        missing.push("config.json".to_string());
    }
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        missing.extend(
            index_shards(&index)?
                .into_iter()
                .filter(|s| !dir.join(s).is_file()),
        );
    } else {
        let has_weights = std::fs::read_dir(dir)
            .map_err(|source| ModelError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .any(|p| p.extension().is_some_and(|x| x == "safetensors") && p.is_file());
        if !has_weights {
            missing.push("model weights (*.safetensors)".to_string());
        }
    }
    Ok(missing)
}

fn check_local_dir(dir: &Path) -> Result<()> {
    let missing = missing_in_model_dir(dir)?;
    if missing.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "model directory {} is missing {}",
        dir.display(),
        missing.join(", ")
    );
    let ggufs: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
        })
        .map(|p| p.display().to_string())
        .collect();
    if let Some(g) = ggufs.first() {
        msg.push_str(&format!(
            "; to serve a GGUF checkpoint pass the file itself, e.g. {g}"
        ));
    }
    Err(ModelError::ModelLocation(msg))
}

/// Finds the model named by `model`.
///
/// * an existing directory → [`ModelSource::Dir`], if it holds config.json and safetensors
///   weights (else [`ModelError::ModelLocation`] listing what is missing);
/// * an existing `.gguf` file → [`ModelSource::Gguf`];
/// * otherwise a hub repo id (`org/name` or `name`): with `offline`, the snapshot in the HF cache
///   (or [`ModelError::Hub`] if absent); else config, tokenizer and safetensors files are
///   downloaded into the cache (network failures → [`ModelError::Hub`]) and the snapshot
///   directory is returned.
pub fn resolve(model: &str, opts: &HubOptions) -> Result<ModelSource> {
    if model.trim().is_empty() {
        return Err(ModelError::ModelLocation(
            "no model given: pass a model directory, a .gguf file or a Hugging Face repo id".into(),
        ));
    }
    let path = Path::new(model);
    if path.is_dir() {
        check_local_dir(path)?;
        return Ok(ModelSource::Dir(path.to_path_buf()));
    }
    if path.is_file() {
        if path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
        {
            return Ok(ModelSource::Gguf(path.to_path_buf()));
        }
        return Err(ModelError::ModelLocation(format!(
            "{model} is a file but not a .gguf checkpoint; pass the model directory that contains it, a .gguf file, or a hub repo id"
        )));
    }
    if looks_like_path(model) {
        return Err(ModelError::ModelLocation(format!(
            "model path {model} does not exist"
        )));
    }
    if !is_valid_repo_id(model) {
        return Err(ModelError::ModelLocation(format!(
            "model {model:?} is not an existing local path, and not a valid Hugging Face repo id (expected `org/name`)"
        )));
    }
    let rev = opts.revision();
    if rev.is_empty()
        || !Path::new(rev)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(ModelError::ModelLocation(format!(
            "invalid revision {rev:?}"
        )));
    }
    if opts.offline {
        let cache_dir = opts.cache_dir()?;
        let Some(snapshot) = hub::cached_snapshot(model, rev, &cache_dir) else {
            return Err(ModelError::Hub {
                repo: model.to_string(),
                msg: format!(
                    "model {model} is not in the local HF cache ({}, revision {rev}) and HF_HUB_OFFLINE is set",
                    cache_dir.display()
                ),
            });
        };
        let missing = missing_in_model_dir(&snapshot)?;
        if !missing.is_empty() {
            return Err(ModelError::Hub {
                repo: model.to_string(),
                msg: format!(
                    "the cached snapshot {} is incomplete (missing {}) and HF_HUB_OFFLINE is set",
                    snapshot.display(),
                    missing.join(", ")
                ),
            });
        }
        return Ok(ModelSource::Dir(snapshot));
    }
    hub::download(model, opts).map(ModelSource::Dir)
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
