//! Tests of model resolution: local directories and GGUF files, bad arguments, and the HF cache
//! (offline hits and misses, and the unreachable-hub fallback).

use super::*;
use crate::loader::scratch::ScratchDir;

const FIXTURES: &str = "/work/shared/fixtures";

fn location_msg(r: Result<ModelSource>) -> String {
    match r {
        Err(ModelError::ModelLocation(m)) => m,
        other => panic!("expected ModelLocation, got {other:?}"),
    }
}

fn hub_msg(r: Result<ModelSource>) -> String {
    match r {
        Err(ModelError::Hub { msg, .. }) => msg,
        other => panic!("expected Hub error, got {other:?}"),
    }
}

fn offline_in(cache: &Path) -> HubOptions {
    HubOptions {
        download_dir: Some(cache.to_path_buf()),
        offline: true,
        ..Default::default()
    }
}

/// Lays out `models--org--name` in an HF cache with `refs/main` → `commit` and a snapshot
/// holding `files`.
fn fake_cache_repo(cache: &ScratchDir, repo_dir: &str, commit: &str, files: &[&str]) -> PathBuf {
    cache.write(
        &format!("{repo_dir}/refs/main"),
        format!("{commit}\n").as_bytes(),
    );
    for f in files {
        cache.write(&format!("{repo_dir}/snapshots/{commit}/{f}"), b"{}");
    }
    cache.path().join(repo_dir).join("snapshots").join(commit)
}

#[test]
fn local_dir_resolves_to_dir() {
    let dir = Path::new(FIXTURES).join("llama");
    if !dir.is_dir() {
        eprintln!("skipping: fixtures not found at {}", dir.display());
        return;
    }
    let src = resolve(dir.to_str().unwrap(), &HubOptions::default()).unwrap();
    assert_eq!(src, ModelSource::Dir(dir.clone()));
    assert_eq!(src.path(), dir.as_path());
}

#[test]
fn local_gguf_resolves_to_gguf() {
    let d = ScratchDir::new("src-gguf");
    let p = d.write("SmolLM2.Q4_1.GGUF", b"GGUF");
    let src = resolve(p.to_str().unwrap(), &HubOptions::default()).unwrap();
    assert_eq!(src, ModelSource::Gguf(p));
    let other = d.write("config.json", b"{}");
    assert!(
        location_msg(resolve(other.to_str().unwrap(), &HubOptions::default()))
            .contains("not a .gguf")
    );
}

#[test]
fn missing_paths_and_bad_ids_are_clear_errors() {
    let opts = HubOptions::default();
    for p in [
        "/definitely/not/here",
        "./nope",
        "../nope/model",
        "missing.gguf",
    ] {
        let m = location_msg(resolve(p, &opts));
        assert!(m.contains("does not exist") && m.contains(p), "{m}");
    }
    for id in [
        "a/b/c",
        "-org/name",
        "org/name-",
        "org--x/name",
        "org/na me",
        "org/",
        "/",
    ] {
        let r = resolve(id, &opts);
        assert!(
            matches!(r, Err(ModelError::ModelLocation(_))),
            "{id}: {r:?}"
        );
    }
    assert!(location_msg(resolve("a/b/c", &opts)).contains("not a valid Hugging Face repo id"));
    assert!(location_msg(resolve("  ", &opts)).contains("no model given"));
    let bad_rev = HubOptions {
        revision: Some("../../etc".into()),
        offline: true,
        ..Default::default()
    };
    assert!(location_msg(resolve("org/name", &bad_rev)).contains("invalid revision"));
}

#[test]
fn incomplete_local_dir_lists_what_is_missing() {
    let d = ScratchDir::new("src-incomplete");
    let m = location_msg(resolve(d.path().to_str().unwrap(), &HubOptions::default()));
    assert!(
        m.contains("config.json") && m.contains("*.safetensors"),
        "{m}"
    );
    d.write("model.Q4_K_M.gguf", b"GGUF");
    let m = location_msg(resolve(d.path().to_str().unwrap(), &HubOptions::default()));
    assert!(m.contains("model.Q4_K_M.gguf"), "gguf hint missing: {m}");
    d.write("config.json", b"{}");
    d.write(
        INDEX_FILE,
        br#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
    );
    d.write("model-00001-of-00002.safetensors", b"x");
    let m = location_msg(resolve(d.path().to_str().unwrap(), &HubOptions::default()));
    assert!(
        m.contains("model-00002-of-00002.safetensors") && !m.contains("config.json"),
        "{m}"
    );
    d.write("model-00002-of-00002.safetensors", b"x");
    assert!(resolve(d.path().to_str().unwrap(), &HubOptions::default()).is_ok());
}

#[test]
fn offline_miss_says_so() {
    let cache = ScratchDir::new("src-offline-miss");
    let m = hub_msg(resolve(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        &offline_in(cache.path()),
    ));
    assert!(
        m.contains("HuggingFaceTB/SmolLM2-135M-Instruct is not in the local HF cache")
            && m.contains("HF_HUB_OFFLINE is set"),
        "{m}"
    );
    // A cached ref for another revision is still a miss.
    fake_cache_repo(
        &cache,
        "models--HuggingFaceTB--SmolLM2-135M-Instruct",
        "abc123",
        &["config.json", "model.safetensors"],
    );
    let opts = HubOptions {
        revision: Some("v2".into()),
        ..offline_in(cache.path())
    };
    assert!(hub_msg(resolve("HuggingFaceTB/SmolLM2-135M-Instruct", &opts)).contains("revision v2"));
}

#[test]
fn offline_hit_returns_the_snapshot() {
    let cache = ScratchDir::new("src-offline-hit");
    let files = [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
    ];
    let snap = fake_cache_repo(&cache, "models--org--name", "0123abcd", &files);
    let src = resolve("org/name", &offline_in(cache.path())).unwrap();
    assert_eq!(src, ModelSource::Dir(snap.clone()));
    // A commit hash as the revision finds the snapshot without a ref.
    let by_commit = HubOptions {
        revision: Some("0123abcd".into()),
        ..offline_in(cache.path())
    };
    assert_eq!(
        resolve("org/name", &by_commit).unwrap(),
        ModelSource::Dir(snap.clone())
    );
    // HF_HOME/hub is the cache when no download dir is given.
    let home = ScratchDir::new("src-hf-home");
    let snap2 = fake_cache_repo(&home, "hub/models--single", "feed", &files);
    let opts = HubOptions {
        hf_home: Some(home.path().to_path_buf()),
        offline: true,
        ..Default::default()
    };
    assert_eq!(resolve("single", &opts).unwrap(), ModelSource::Dir(snap2));
}

#[test]
fn offline_incomplete_snapshot_is_reported() {
    let cache = ScratchDir::new("src-offline-partial");
    fake_cache_repo(
        &cache,
        "models--org--partial",
        "beef",
        &["config.json", "tokenizer.json"],
    );
    let m = hub_msg(resolve("org/partial", &offline_in(cache.path())));
    assert!(
        m.contains("incomplete") && m.contains("*.safetensors"),
        "{m}"
    );
}

#[test]
fn unreachable_hub_is_a_hub_error_or_falls_back_to_the_cache() {
    let cache = ScratchDir::new("src-online");
    let opts = HubOptions {
        download_dir: Some(cache.path().to_path_buf()),
        endpoint: Some("http://127.0.0.1:9".into()),
        token: Some("hf_secret".into()),
        ..Default::default()
    };
    let m = hub_msg(resolve("org/name", &opts));
    assert!(
        m.contains("HF_HUB_OFFLINE") && !m.contains("hf_secret"),
        "{m}"
    );
    let snap = fake_cache_repo(
        &cache,
        "models--org--name",
        "c0ffee",
        &["config.json", "model.safetensors"],
    );
    assert_eq!(resolve("org/name", &opts).unwrap(), ModelSource::Dir(snap));
}

#[test]
fn repo_id_rules() {
    for ok in [
        "gpt2",
        "org/name",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "Qwen/Qwen2.5-0.5B",
        "a_b/c.d",
    ] {
        assert!(is_valid_repo_id(ok), "{ok}");
    }
    for bad in [
        "",
        "a/b/c",
        "a//b",
        ".a/b",
        "a/b.",
        "a--b",
        "a..b/c",
        "a/b c",
        &"x".repeat(97),
    ] {
        assert!(!is_valid_repo_id(bad), "{bad}");
    }
}

#[test]
fn options_cache_dir_and_debug() {
    let o = HubOptions {
        download_dir: Some("/dl".into()),
        hf_home: Some("/hf".into()),
        token: Some("hf_secret".into()),
        ..Default::default()
    };
    assert_eq!(o.cache_dir().unwrap(), PathBuf::from("/dl"));
    let o2 = HubOptions {
        download_dir: None,
        ..o.clone()
    };
    assert_eq!(o2.cache_dir().unwrap(), PathBuf::from("/hf/hub"));
    assert_eq!(o2.revision(), "main");
    let dbg = format!("{o:?}");
    assert!(
        !dbg.contains("hf_secret") && dbg.contains("redacted"),
        "{dbg}"
    );
}
