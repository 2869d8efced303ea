//! Picks one next token from one row of logits under a request's [`SamplingParams`].
//!
//! Order as in vLLM v1: raw logprobs (of the unprocessed logits, vLLM's default
//! `logprobs_mode=raw_logprobs`), min_tokens, logit_bias, repetition / frequency / presence
//! penalties, then greedy argmax or temperature, min_p, top_k, top_p and a draw.
//!
//! The draw for output position k depends only on `(seed, k)`, so a preempted and recomputed or
//! differently batched request reproduces the same tokens. No full sort of the vocabulary is made
//! unless top_p needs it; top_k uses partial selection.

use std::cmp::Ordering;

use crate::sampling::SamplingParams;

/// What the sampler needs to know about the sequence besides its logits.
#[derive(Debug, Clone, Copy)]
pub struct SampleContext<'a> {
    /// Prompt token ids (for the repetition penalty).
    pub prompt_ids: &'a [u32],
    /// Tokens generated so far; its length is the output position being sampled.
    pub output_ids: &'a [u32],
    /// The model's EOS ids (suppressed while fewer than `min_tokens` outputs exist).
    pub eos_ids: &'a [u32],
    /// Seed of this sequence: `params.seed` or one the engine picked for the request.
    pub seed: u64,
}

/// The sampled token and its log-probabilities under the raw model logits.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The chosen token id.
    pub token: u32,
    /// Raw log-probability of `token`; NaN when `params.logprobs` is `None` (not computed).
    pub logprob: f32,
    /// The `params.logprobs` most likely tokens under the raw logits, best first.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// Orders `(logit, id)` pairs best first: higher logit, then lower id (a total order).
fn better(a: (f32, u32), b: (f32, u32)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Samples the next token. `logits` is one row (its length is the vocabulary) and is modified in
/// place by the logits processors (bias, penalties, min_tokens). Never panics: an empty row gives
/// token 0 with a NaN logprob.
pub fn sample(logits: &mut [f32], params: &SamplingParams, ctx: &SampleContext) -> Sampled {
    let bare = |token| Sampled {
        token,
        logprob: f32::NAN,
        top_logprobs: Vec::new(),
    };
    if logits.is_empty() {
        return bare(0);
    }
    for l in logits.iter_mut() {
        if l.is_nan() {
            *l = f32::NEG_INFINITY;
        }
    }
    let raw = params.logprobs.map(|k| RawLogprobs::new(logits, k));
    let mut undo: Vec<(u32, f32)> = Vec::new();
    apply_processors(logits, params, ctx, raw.is_some().then_some(&mut undo));
    let u = uniform(ctx.seed, ctx.output_ids.len() as u64);
    let token = if params.is_greedy() {
        argmax(logits)
    } else {
        draw(logits, params, u)
    };
    let Some(raw) = raw else { return bare(token) };
    let original = undo.iter().find(|(id, _)| *id == token).map(|&(_, v)| v);
    let logprob = original.unwrap_or(logits[token as usize]) - raw.lse;
    Sampled {
        token,
        logprob,
        top_logprobs: raw.top,
    }
}

/// Log-softmax normaliser and top-k of the unprocessed logits.
struct RawLogprobs {
    lse: f32,
    top: Vec<(u32, f32)>,
}

impl RawLogprobs {
    fn new(logits: &[f32], k: usize) -> Self {
        let lse = log_sum_exp(logits);
        let top = top_k_pairs(logits, k)
            .into_iter()
            .map(|(l, id)| (id, l - lse))
            .collect();
        Self { lse, top }
    }
}

fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY || max.is_nan() {
        return max;
    }
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    max + sum.ln()
}

/// The `k` best `(logit, id)` pairs, best first, in one pass with a small sorted buffer.
fn top_k_pairs(logits: &[f32], k: usize) -> Vec<(f32, u32)> {
    let mut top: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return top;
    }
    for (i, &l) in logits.iter().enumerate() {
        let cand = (l, i as u32);
        if top.len() == k && better(cand, top[k - 1]) != Ordering::Less {
            continue;
        }
        let pos = top.partition_point(|&x| better(x, cand) == Ordering::Less);
        top.insert(pos, cand);
        top.truncate(k);
    }
    top
}

/// Sets `logits[id]`, remembering the original value the first time an id is touched.
fn set(logits: &mut [f32], id: u32, value: f32, undo: &mut Option<&mut Vec<(u32, f32)>>) {
    let Some(slot) = logits.get_mut(id as usize) else {
        return;
    };
    if let Some(u) = undo.as_deref_mut() {
        u.push((id, *slot));
    }
    *slot = value;
}

/// min_tokens, logit_bias and the penalties, in vLLM v1's order.
fn apply_processors(
    logits: &mut [f32],
    params: &SamplingParams,
    ctx: &SampleContext,
    mut undo: Option<&mut Vec<(u32, f32)>>,
) {
    if ctx.output_ids.len() < params.min_tokens {
        // vLLM suppresses `all_stop_token_ids`, which holds EOS only when EOS stops generation.
        let eos: &[u32] = if params.ignore_eos { &[] } else { ctx.eos_ids };
        for &id in eos.iter().chain(&params.stop_token_ids) {
            set(logits, id, f32::NEG_INFINITY, &mut undo);
        }
    }
    for &(id, bias) in &params.logit_bias {
        if let Some(&l) = logits.get(id as usize) {
            set(logits, id, l + bias, &mut undo);
        }
    }
    let vocab = logits.len();
    if params.repetition_penalty != 1.0 {
        let rp = params.repetition_penalty;
        let mut seen = BitSet::new(vocab);
        for &id in ctx.prompt_ids.iter().chain(ctx.output_ids) {
            if seen.insert(id) {
                let l = logits[id as usize];
                set(logits, id, if l > 0.0 { l / rp } else { l * rp }, &mut undo);
            }
        }
    }
    if params.frequency_penalty != 0.0 || params.presence_penalty != 0.0 {
        let mut counts: Vec<u32> = ctx
            .output_ids
            .iter()
            .copied()
            .filter(|&i| (i as usize) < vocab)
            .collect();
        counts.sort_unstable();
        for run in counts.chunk_by(|a, b| a == b) {
            let id = run[0];
            let l = logits[id as usize];
            let penalty = params.frequency_penalty * run.len() as f32 + params.presence_penalty;
            set(logits, id, l - penalty, &mut undo);
        }
    }
}

/// A fixed-size bit set over token ids.
struct BitSet(Vec<u64>, usize);

impl BitSet {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)], n)
    }
    /// Inserts `id`; false if it was already there or is out of range.
    fn insert(&mut self, id: u32) -> bool {
        let i = id as usize;
        if i >= self.1 {
            return false;
        }
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let fresh = self.0[w] & b == 0;
        self.0[w] |= b;
        fresh
    }
}

/// Index of the largest logit; ties go to the lowest id.
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &l) in logits.iter().enumerate().skip(1) {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The splitmix64 finaliser: a bijective 64-bit mix.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) that depends only on the seed and the output position.
pub fn uniform(seed: u64, position: u64) -> f64 {
    let bits = mix64(mix64(seed) ^ mix64(position.wrapping_add(0x5851_F42D_4C95_7F2D)));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Temperature, min_p, top_k, top_p, then inverse-CDF draw with `u` in [0, 1).
fn draw(logits: &[f32], params: &SamplingParams, u: f64) -> u32 {
    let t = params.temperature;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return argmax(logits);
    }
    let weight = |l: f32| f64::from(((l - max) / t).exp());
    // min_p: p_i >= min_p * p_max  <=>  (l_i - max) / t >= ln(min_p).
    let floor = if params.min_p > 0.0 {
        max + t * params.min_p.ln()
    } else {
        f32::NEG_INFINITY
    };
    let top_k = usize::try_from(params.top_k).unwrap_or(0);
    let restrict = (top_k > 0 && top_k < logits.len()) || params.top_p < 1.0;
    if !restrict {
        // No truncation besides min_p: scan the whole row in id order.
        let total: f64 = logits
            .iter()
            .filter(|&&l| l >= floor)
            .map(|&l| weight(l))
            .sum();
        let target = u * total;
        let mut acc = 0.0;
        let mut last = argmax(logits);
        for (i, &l) in logits.iter().enumerate() {
            if l >= floor && l > f32::NEG_INFINITY {
                acc += weight(l);
                last = i as u32;
                if acc > target {
                    return i as u32;
                }
            }
        }
        return last;
    }
    let mut cand: Vec<(f32, u32)> = logits
        .iter()
        .enumerate()
        .filter(|&(_, &l)| l >= floor && l > f32::NEG_INFINITY)
        .map(|(i, &l)| (l, i as u32))
        .collect();
    if top_k > 0 && top_k < cand.len() {
        // Like vLLM, tokens tied with the k-th logit stay.
        let kth = *cand
            .select_nth_unstable_by(top_k - 1, |a, b| better(*a, *b))
            .1;
        cand.retain(|&(l, _)| l >= kth.0);
    }
    let sorted_len = if params.top_p < 1.0 {
        top_p_prefix(&mut cand, params.top_p as f64, weight)
    } else {
        0
    };
    if sorted_len > 0 {
        cand.truncate(sorted_len);
    } else {
        // Canonical order so the draw does not depend on the selection algorithm.
        cand.sort_unstable_by(|a, b| better(*a, *b));
    }
    let total: f64 = cand.iter().map(|&(l, _)| weight(l)).sum();
    let target = u * total;
    let mut acc = 0.0;
    for &(l, id) in &cand {
        acc += weight(l);
        if acc > target {
            return id;
        }
    }
    cand.last().map_or_else(|| argmax(logits), |&(_, id)| id)
}

/// Sorts the best candidates first and returns the length of the smallest prefix whose mass
/// reaches `p` of the total (vLLM keeps a token while the mass strictly above it is below `p`).
/// Works on growing partial selections so that peaked distributions never sort the vocabulary.
fn top_p_prefix(cand: &mut [(f32, u32)], p: f64, weight: impl Fn(f32) -> f64) -> usize {
    let total: f64 = cand.iter().map(|&(l, _)| weight(l)).sum();
    let target = p * total;
    let mut m = 64usize;
    loop {
        let head = if m >= cand.len() {
            cand.sort_unstable_by(|a, b| better(*a, *b));
            cand.len()
        } else {
            cand.select_nth_unstable_by(m - 1, |a, b| better(*a, *b));
            cand[..m].sort_unstable_by(|a, b| better(*a, *b));
            m
        };
        let mut acc = 0.0;
        for (i, &(l, _)) in cand[..head].iter().enumerate() {
            acc += weight(l);
            if acc >= target {
                return i + 1;
            }
        }
        if head == cand.len() {
            return head.max(1).min(cand.len());
        }
        m = m.saturating_mul(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(prompt: &'a [u32], out: &'a [u32], eos: &'a [u32], seed: u64) -> SampleContext<'a> {
        SampleContext {
            prompt_ids: prompt,
            output_ids: out,
            eos_ids: eos,
            seed,
        }
    }

    fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    fn one(logits: &[f32], p: &SamplingParams, c: &SampleContext) -> u32 {
        sample(&mut logits.to_vec(), p, c).token
    }

    /// Tokens drawn at output positions 0..n (no penalties, so positions only matter via the seed).
    fn draws(logits: &[f32], p: &SamplingParams, seed: u64, n: usize) -> Vec<u32> {
        let out = vec![0u32; n];
        (0..n)
            .map(|k| one(logits, p, &ctx(&[], &out[..k], &[], seed)))
            .collect()
    }

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        let c = ctx(&[], &[], &[], 1);
        assert_eq!(one(&[0.1, 3.0, 3.0, f32::NAN], &greedy(), &c), 1);
        assert_eq!(one(&[f32::NEG_INFINITY; 3], &greedy(), &c), 0);
        assert_eq!(sample(&mut [], &greedy(), &c).token, 0);
    }

    #[test]
    fn draw_follows_the_distribution() {
        let logits: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        let p = SamplingParams::default();
        let got = draws(&logits, &p, 7, 20_000);
        for (id, want) in [(0u32, 0.5), (1, 0.3), (2, 0.2)] {
            let f = got.iter().filter(|&&t| t == id).count() as f64 / got.len() as f64;
            assert!((f - want).abs() < 0.02, "token {id}: {f} vs {want}");
        }
    }

    #[test]
    fn temperature_spreads_or_sharpens() {
        let logits = [2.0f32, 0.0, 0.0, 0.0];
        let hot = SamplingParams {
            temperature: 100.0,
            ..Default::default()
        };
        assert!(
            draws(&logits, &hot, 3, 200)
                .iter()
                .filter(|&&t| t != 0)
                .count()
                > 100
        );
        let cold = SamplingParams {
            temperature: 0.05,
            ..Default::default()
        };
        assert!(draws(&logits, &cold, 3, 200).iter().all(|&t| t == 0));
    }

    #[test]
    fn same_seed_same_tokens_different_seed_differs() {
        let logits = vec![0.0f32; 1000];
        let p = SamplingParams::default();
        assert_eq!(draws(&logits, &p, 42, 64), draws(&logits, &p, 42, 64));
        assert_ne!(draws(&logits, &p, 42, 64), draws(&logits, &p, 43, 64));
        // Position k's draw depends on (seed, k) only, not on the earlier tokens' values.
        let a = one(&logits, &p, &ctx(&[5], &[1, 2, 3], &[], 9));
        let b = one(&logits, &p, &ctx(&[6, 7], &[4, 4, 4], &[], 9));
        assert_eq!(a, b);
    }

    #[test]
    fn top_k_one_is_argmax_under_temperature_one() {
        let mut logits = vec![0.0f32; 100];
        logits[37] = 0.5;
        let p = SamplingParams {
            top_k: 1,
            ..Default::default()
        };
        assert!(draws(&logits, &p, 1, 100).iter().all(|&t| t == 37));
        let p2 = SamplingParams {
            top_k: 2,
            ..Default::default()
        };
        logits[3] = 0.5;
        let got = draws(&logits, &p2, 1, 100);
        assert!(got.iter().all(|&t| t == 3 || t == 37) && got.contains(&3) && got.contains(&37));
    }

    #[test]
    fn top_p_cuts_the_tail() {
        let mut logits = vec![0.0f32; 1001];
        logits[500] = 5.0; // p = e^5 / (e^5 + 1000) ~ 0.13
        let p = SamplingParams {
            top_p: 0.1,
            ..Default::default()
        };
        assert!(draws(&logits, &p, 5, 100).iter().all(|&t| t == 500));
        let off = SamplingParams::default();
        assert!(draws(&logits, &off, 5, 100).iter().any(|&t| t != 500));
        // vLLM keeps a token while the mass above it is below top_p: {0.5, 0.3} for 0.79.
        let l: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        let p = SamplingParams {
            top_p: 0.79,
            ..Default::default()
        };
        let got = draws(&l, &p, 5, 300);
        assert!(!got.contains(&2) && got.contains(&1));
    }

    #[test]
    fn min_p_cuts_relative_to_the_best() {
        let mut logits = vec![-3.0f32; 1001];
        logits[0] = 0.0; // each tail token has 0.05 of token 0's probability
        let p = SamplingParams {
            min_p: 0.1,
            ..Default::default()
        };
        assert!(draws(&logits, &p, 11, 100).iter().all(|&t| t == 0));
        assert!(draws(&logits, &SamplingParams::default(), 11, 100)
            .iter()
            .any(|&t| t != 0));
    }

    #[test]
    fn logit_bias_forces_a_token() {
        let c = ctx(&[], &[], &[], 0);
        let p = SamplingParams {
            logit_bias: vec![(2, 100.0)],
            ..greedy()
        };
        assert_eq!(one(&[5.0, 4.0, -3.0], &p, &c), 2);
        let p = SamplingParams {
            logit_bias: vec![(0, -100.0), (9, 1.0)],
            ..greedy()
        };
        assert_eq!(one(&[5.0, 4.0, -3.0], &p, &c), 1);
    }

    #[test]
    fn repetition_penalty_divides_positive_multiplies_negative() {
        let p = SamplingParams {
            repetition_penalty: 1.2,
            ..greedy()
        };
        assert_eq!(one(&[2.0, 1.9], &p, &ctx(&[0], &[], &[], 0)), 1);
        assert_eq!(one(&[2.0, 1.9], &p, &ctx(&[], &[0], &[], 0)), 1);
        assert_eq!(one(&[-1.0, -1.1], &p, &ctx(&[0], &[], &[], 0)), 1);
        assert_eq!(one(&[2.0, 1.9], &greedy(), &ctx(&[0], &[], &[], 0)), 0);
    }

    #[test]
    fn presence_and_frequency_penalise_output_tokens_only() {
        let presence = SamplingParams {
            presence_penalty: 0.2,
            ..greedy()
        };
        assert_eq!(one(&[1.0, 0.9], &presence, &ctx(&[], &[0], &[], 0)), 1);
        assert_eq!(one(&[1.0, 0.9], &presence, &ctx(&[0], &[], &[], 0)), 0);
        let freq = SamplingParams {
            frequency_penalty: 0.05,
            ..greedy()
        };
        assert_eq!(one(&[1.0, 0.9], &freq, &ctx(&[], &[0], &[], 0)), 0);
        assert_eq!(one(&[1.0, 0.9], &freq, &ctx(&[], &[0, 0, 0], &[], 0)), 1);
    }

    #[test]
    fn min_tokens_blocks_eos_and_stop_tokens() {
        let logits = [0.0f32, 1.0, 5.0, 4.0];
        let p = SamplingParams {
            min_tokens: 2,
            stop_token_ids: vec![3],
            ..greedy()
        };
        assert_eq!(one(&logits, &p, &ctx(&[], &[0], &[2], 0)), 1);
        assert_eq!(one(&logits, &p, &ctx(&[], &[0, 0], &[2], 0)), 2);
        let ignore = SamplingParams {
            ignore_eos: true,
            ..p.clone()
        };
        assert_eq!(one(&logits, &ignore, &ctx(&[], &[0], &[2], 0)), 2);
    }

    #[test]
    fn logprobs_are_log_softmax_of_raw_logits() {
        let raw = [1.0f32, 3.0, -2.0, 0.5, 3.0];
        let lse = raw.iter().map(|l| l.exp()).sum::<f32>().ln();
        let p = SamplingParams {
            logprobs: Some(3),
            logit_bias: vec![(2, 50.0)],
            ..greedy()
        };
        let s = sample(&mut raw.to_vec(), &p, &ctx(&[], &[], &[], 0));
        assert_eq!(s.token, 2);
        assert!((s.logprob - (raw[2] - lse)).abs() < 1e-5);
        let ids: Vec<u32> = s.top_logprobs.iter().map(|x| x.0).collect();
        assert_eq!(ids, vec![1, 4, 0]);
        for (id, lp) in s.top_logprobs {
            assert!((lp - (raw[id as usize] - lse)).abs() < 1e-5);
        }
        assert!(sample(&mut raw.to_vec(), &greedy(), &ctx(&[], &[], &[], 0))
            .logprob
            .is_nan());
    }

    #[test]
    fn greedy_reproduces_golden_ids_from_reference_logits() {
        use crate::tokenizer::tests::{fixture, golden, ids};
        let path = format!("{}/reference/golden.safetensors", fixture("qwen2"));
        let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
        for case in golden("qwen2")["cases"].as_array().unwrap() {
            let rows = tensors[case["logits_key"].as_str().unwrap()]
                .to_vec2::<f32>()
                .unwrap();
            let (prompt, want_ids) = (ids(&case["input_ids"]), ids(&case["greedy_ids"]));
            let p = SamplingParams {
                logprobs: Some(1),
                ..greedy()
            };
            for (k, &want) in want_ids.iter().enumerate() {
                let mut row = rows[prompt.len() - 1 + k].clone();
                let s = sample(&mut row, &p, &ctx(&prompt, &want_ids[..k], &[482], 0));
                assert_eq!((s.token, s.top_logprobs[0].0), (want, want));
                assert_eq!(s.logprob, s.top_logprobs[0].1);
            }
        }
    }

    #[test]
    fn large_vocab_with_all_filters() {
        let logits: Vec<f32> = (0..150_000)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0)
            .collect();
        let p = SamplingParams {
            top_k: 50,
            top_p: 0.9,
            min_p: 0.01,
            ..Default::default()
        };
        let t = one(&logits, &p, &ctx(&[], &[], &[], 3));
        assert!(logits[t as usize] >= 9.0);
        let p = SamplingParams {
            top_p: 0.95,
            ..Default::default()
        };
        let t = one(&logits, &p, &ctx(&[], &[], &[], 3));
        assert!(logits[t as usize] > 5.0);
    }
}
