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
#[path = "sampler_tests.rs"]
mod tests;
