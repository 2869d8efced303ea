//! Prompts for `bench serve`: the `random` dataset (random token ids, a shared random prefix,
//! lengths drawn in `[len·(1−r), len·(1+r)]`, decoded to text when a tokenizer is at hand) and
//! `custom` JSONL files (`{"prompt": "...", "output_tokens": N}` per line).

use candela_engine::tokenizer::Tokenizer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// What is sent as the prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// Text (any endpoint).
    Text(String),
    /// Token ids (`/v1/completions` only; used when no tokenizer is available).
    Tokens(Vec<u32>),
}

/// One request of the benchmark.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    /// The prompt.
    pub prompt: PromptInput,
    /// Its length in tokens (what the metrics count as input).
    pub prompt_len: usize,
    /// `max_tokens` of the request.
    pub output_len: usize,
}

/// Settings of the random dataset.
#[derive(Debug, Clone)]
pub struct RandomSpec {
    /// Mean prompt tokens after the prefix.
    pub input_len: usize,
    /// Mean output tokens.
    pub output_len: usize,
    /// Lengths are drawn uniformly from `[len·(1−r), len·(1+r)]`.
    pub range_ratio: f64,
    /// Random tokens shared by every prompt, before its own tokens.
    pub prefix_len: usize,
}

/// Token ids the random prompts draw from when there is no tokenizer (present in any vocab).
const NO_TOKENIZER_VOCAB: u32 = 1000;

/// Inclusive length range of `[len·(1−r), len·(1+r)]`.
fn len_range(len: usize, r: f64) -> (usize, usize) {
    (
        (len as f64 * (1.0 - r)).floor() as usize,
        (len as f64 * (1.0 + r)).ceil() as usize,
    )
}

/// Random ids that are not special tokens.
fn random_ids(rng: &mut StdRng, n: usize, tok: Option<&Tokenizer>) -> Vec<u32> {
    let vocab = tok.map_or(NO_TOKENIZER_VOCAB, |t| t.vocab_size().max(2) as u32);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let id = rng.random_range(0..vocab);
        if tok.is_none_or(|t| !t.is_special(id)) {
            out.push(id);
        }
    }
    out
}

/// Decodes `ids` to text whose re-encoding has `ids.len()` tokens where it can (decoding and
/// re-encoding random ids merges or splits some); returns the text and its real length.
fn to_text(
    tok: &Tokenizer,
    mut ids: Vec<u32>,
    rng: &mut StdRng,
) -> anyhow::Result<(String, usize)> {
    let target = ids.len();
    let mut text = tok.decode(&ids, false)?;
    for _ in 0..10 {
        let enc = tok.encode(&text, false)?;
        if enc.len() == target {
            break;
        }
        ids = enc;
        if ids.len() > target {
            ids.truncate(target);
        } else {
            let more = random_ids(rng, target - ids.len(), Some(tok));
            ids.extend(more);
        }
        text = tok.decode(&ids, false)?;
    }
    let len = tok.encode(&text, false)?.len();
    Ok((text, len))
}

/// `n` random requests (deterministic for a seed).
pub fn random(
    spec: &RandomSpec,
    n: usize,
    seed: u64,
    tok: Option<&Tokenizer>,
) -> anyhow::Result<Vec<SampleRequest>> {
    anyhow::ensure!(
        (0.0..1.0).contains(&spec.range_ratio),
        "--random-range-ratio must be in [0, 1)"
    );
    anyhow::ensure!(
        spec.output_len > 0,
        "--random-output-len must be at least 1"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let prefix = random_ids(&mut rng, spec.prefix_len, tok);
    let (ilo, ihi) = len_range(spec.input_len, spec.range_ratio);
    let (olo, ohi) = len_range(spec.output_len, spec.range_ratio);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let in_len = rng.random_range(ilo..=ihi);
        let out_len = rng.random_range(olo.max(1)..=ohi.max(1));
        let mut ids = prefix.clone();
        ids.extend(random_ids(&mut rng, in_len, tok));
        let (prompt, prompt_len) = match tok {
            Some(t) => {
                let (text, len) = to_text(t, ids, &mut rng)?;
                (PromptInput::Text(text), len)
            }
            None => {
                let len = ids.len();
                (PromptInput::Tokens(ids), len)
            }
        };
        out.push(SampleRequest {
            prompt,
            prompt_len,
            output_len: out_len,
        });
    }
    Ok(out)
}

/// `n` requests from a JSONL file, cycling through its lines when it has fewer; lines without
/// `output_tokens` get `default_output_len`. Prompt lengths come from the tokenizer (0 without).
pub fn custom(
    path: &Path,
    n: usize,
    default_output_len: usize,
    tok: Option<&Tokenizer>,
) -> anyhow::Result<Vec<SampleRequest>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        let prompt = v["prompt"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("{}:{}: no \"prompt\" string", path.display(), i + 1))?
            .to_string();
        let output_len = v["output_tokens"]
            .as_u64()
            .map_or(default_output_len, |x| x as usize);
        let prompt_len = match tok {
            Some(t) => t.encode(&prompt, false)?.len(),
            None => 0,
        };
        rows.push(SampleRequest {
            prompt: PromptInput::Text(prompt),
            prompt_len,
            output_len,
        });
    }
    anyhow::ensure!(!rows.is_empty(), "{}: no prompts", path.display());
    Ok(rows.iter().cycle().take(n).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_without_tokenizer_is_exact_and_seeded() {
        let spec = RandomSpec {
            input_len: 20,
            output_len: 8,
            range_ratio: 0.5,
            prefix_len: 4,
        };
        let a = random(&spec, 50, 3, None).unwrap();
        let b = random(&spec, 50, 3, None).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.prompt, y.prompt);
        }
        let PromptInput::Tokens(first) = &a[0].prompt else {
            panic!("token prompt")
        };
        for r in &a {
            let PromptInput::Tokens(ids) = &r.prompt else {
                panic!("token prompt")
            };
            assert_eq!(ids.len(), r.prompt_len);
            assert!((4 + 10..=4 + 30).contains(&r.prompt_len));
            assert!((4..=12).contains(&r.output_len));
            assert_eq!(ids[..4], first[..4], "shared prefix");
        }
        assert!(
            a.iter().any(|r| r.prompt_len != a[0].prompt_len),
            "lengths vary with the range ratio"
        );
        assert!(random(
            &RandomSpec {
                range_ratio: 1.0,
                ..spec
            },
            1,
            0,
            None
        )
        .is_err());
    }

    #[test]
    fn random_with_tokenizer_gives_text_of_about_the_length() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/qwen2");
        let Ok(tok) = Tokenizer::from_dir(&dir) else {
            return;
        };
        let spec = RandomSpec {
            input_len: 32,
            output_len: 4,
            range_ratio: 0.0,
            prefix_len: 0,
        };
        for r in random(&spec, 5, 1, Some(&tok)).unwrap() {
            let PromptInput::Text(t) = &r.prompt else {
                panic!("text prompt")
            };
            assert_eq!(tok.encode(t, false).unwrap().len(), r.prompt_len);
            assert!(r.prompt_len.abs_diff(32) <= 2, "{}", r.prompt_len);
        }
    }

    #[test]
    fn custom_jsonl_cycles_and_defaults() {
        let p =
            std::env::temp_dir().join(format!("candela-bench-custom-{}.jsonl", std::process::id()));
        std::fs::write(
            &p,
            "{\"prompt\": \"a b\", \"output_tokens\": 3}\n\n{\"prompt\": \"c\"}\n",
        )
        .unwrap();
        let r = custom(&p, 5, 7, None).unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(
            (r[0].output_len, r[1].output_len, r[2].output_len),
            (3, 7, 3)
        );
        assert_eq!(r[1].prompt, PromptInput::Text("c".into()));
        std::fs::write(&p, "{\"text\": 1}\n").unwrap();
        assert!(custom(&p, 1, 7, None).is_err());
        std::fs::remove_file(&p).ok();
    }
}
