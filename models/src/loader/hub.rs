//! The Hugging Face hub side of model resolution: finding a repo's snapshot in the local HF cache
//! (`models--org--name/refs/<rev>` → `snapshots/<commit>/`) and downloading a checkpoint's
//! config, tokenizer and safetensors files into that cache with `hf_hub`.

use crate::error::{ModelError, Result};
use crate::loader::safetensors::{index_shards, INDEX_FILE};
use crate::loader::source::{missing_in_model_dir, HubOptions};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Files fetched when the repo has them.
const OPTIONAL_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

fn hub_err(repo: &str, msg: impl Into<String>) -> ModelError {
    ModelError::Hub {
        repo: repo.to_string(),
        msg: msg.into(),
    }
}

/// The cached snapshot directory of `repo_id` at `revision` (a branch or tag resolved through
/// `refs/`, or a commit hash), if it exists and holds a config.json.
pub(crate) fn cached_snapshot(repo_id: &str, revision: &str, cache_dir: &Path) -> Option<PathBuf> {
    let repo_dir = cache_dir.join(Repo::model(repo_id.to_string()).folder_name());
    let commit = match std::fs::read_to_string(repo_dir.join("refs").join(revision)) {
        Ok(s) => s.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    if commit.is_empty() || commit.contains(['/', '\\']) || commit.contains("..") {
        return None;
    }
    let snapshot = repo_dir.join("snapshots").join(commit);
    snapshot.join("config.json").is_file().then_some(snapshot)
}

/// Downloads `repo_id`'s checkpoint into the cache (reusing files already there) and returns the
/// snapshot directory. When the hub cannot be reached but the cache holds a complete snapshot,
/// that snapshot is used with a warning.
pub(crate) fn download(repo_id: &str, opts: &HubOptions) -> Result<PathBuf> {
    let run = std::panic::AssertUnwindSafe(|| download_inner(repo_id, opts));
    match std::panic::catch_unwind(run) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(hub_err(
                repo_id,
                format!("the hub client failed unexpectedly: {what}"),
            ))
        }
    }
}

fn download_inner(repo_id: &str, opts: &HubOptions) -> Result<PathBuf> {
    let cache_dir = opts.cache_dir()?;
    let rev = opts.revision();
    let mut builder = ApiBuilder::from_cache(Cache::new(cache_dir.clone()))
        .with_token(opts.token.clone())
        .with_progress(true);
    if let Some(endpoint) = &opts.endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    let api = builder
        .build()
        .map_err(|e| hub_err(repo_id, format!("cannot set up the hub client: {e}")))?;
    let repo = |r: &str| Repo::with_revision(repo_id.to_string(), RepoType::Model, r.to_string());
    let info = match api.repo(repo(rev)).info() {
        Ok(info) => info,
        Err(e) => {
            if let Some(snapshot) = cached_snapshot(repo_id, rev, &cache_dir) {
                if missing_in_model_dir(&snapshot).is_ok_and(|m| m.is_empty()) {
                    tracing::warn!(
                        "cannot reach the Hugging Face hub ({e}); using the cached snapshot {}",
                        snapshot.display()
                    );
                    return Ok(snapshot);
                }
            }
            return Err(hub_err(
                repo_id,
                format!(
                    "{e} (check the repo id and revision {rev:?}; gated or private repos need HF_TOKEN; \
                     set HF_HUB_OFFLINE=1 to use only the local cache at {})",
                    cache_dir.display()
                ),
            ));
        }
    };
    let sha = info.sha;
    if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(hub_err(
            repo_id,
            format!("the hub returned an invalid commit id {sha:?}"),
        ));
    }
    let files: HashSet<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let cache = Cache::new(cache_dir.clone());
    // Point refs/<sha> at the commit so that files already in snapshots/<sha> are reused.
    cache
        .repo(repo(&sha))
        .create_ref(&sha)
        .map_err(|source| ModelError::Io {
            path: cache_dir.clone(),
            source,
        })?;
    let pinned = api.repo(repo(&sha));
    let fetch = |f: &str| {
        pinned
            .get(f)
            .map_err(|e| hub_err(repo_id, format!("downloading {f} at {sha}: {e}")))
    };

    if !files.contains("config.json") {
        let mut msg = "the repository has no config.json".to_string();
        if files
            .iter()
            .any(|f| f.to_ascii_lowercase().ends_with(".gguf"))
        {
            msg.push_str(
                "; it looks like a GGUF repository: download the .gguf file and pass its path",
            );
        }
        return Err(hub_err(repo_id, msg));
    }
    let config = fetch("config.json")?;
    if !files.contains("tokenizer.json") {
        return Err(hub_err(
            repo_id,
            "the repository has no tokenizer.json (needed for the tokenizer)",
        ));
    }
    fetch("tokenizer.json")?;
    for f in OPTIONAL_FILES.iter().filter(|f| files.contains(**f)) {
        fetch(f)?;
    }
    if files.contains(INDEX_FILE) {
        let index = fetch(INDEX_FILE)?;
        for shard in index_shards(&index)? {
            fetch(&shard)?;
        }
    } else if files.contains("model.safetensors") {
        fetch("model.safetensors")?;
    } else {
        let mut weights: Vec<&str> = files
            .iter()
            .copied()
            .filter(|f| f.ends_with(".safetensors") && !f.contains('/'))
            .collect();
        if weights.is_empty() {
            return Err(hub_err(
                repo_id,
                "the repository has no safetensors weights (only safetensors checkpoints and GGUF files are supported)",
            ));
        }
        weights.sort_unstable();
        for f in weights {
            fetch(f)?;
        }
    }
    if rev != sha {
        if let Err(e) = cache.repo(repo(rev)).create_ref(&sha) {
            tracing::warn!("cannot record {repo_id}@{rev} -> {sha} in the HF cache: {e}");
        }
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| hub_err(repo_id, "downloaded config.json has no parent directory"))
}
