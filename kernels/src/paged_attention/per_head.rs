//! The previous paged-attention kernel, kept as a second reference for the tests and as the
//! baseline of `benches/attention.rs`: one (row, query head) at a time, a dot product (with a
//! horizontal sum) per key, a scalar-exp softmax, then an axpy per key over V.

use super::{AttnSeq, KvLayout, KvSrc};
use rayon::prelude::*;

/// Per-head attention over `[T, n_heads * head_dim]` queries into `out` (same shape); the
/// semantics of [`super::paged_attention`] (rows of no sequence compute sequence 0, position 0).
#[allow(clippy::too_many_arguments)]
pub(super) fn attend<K: KvSrc, V: KvSrc>(
    q: &[f32],
    k_cache: &K,
    v_cache: &V,
    seqs: &[AttnSeq<'_>],
    n_heads: usize,
    layout: KvLayout,
    scale: f32,
    out: &mut [f32],
) {
    let d = layout.head_dim;
    let group = n_heads / layout.n_kv_heads;
    // Map every batch row to (sequence, position) once.
    let n_rows = q.len() / (n_heads * d);
    let mut row_seq = vec![(0usize, 0usize); n_rows];
    for (s_idx, s) in seqs.iter().enumerate() {
        for i in 0..s.query_len {
            row_seq[s.query_start + i] = (s_idx, s.context_len - s.query_len + i);
        }
    }
    let wide = wide_available();
    out.par_chunks_mut(d).enumerate().for_each(|(idx, o)| {
        let (row, h) = (idx / n_heads, idx % n_heads);
        let (s_idx, pos) = row_seq[row];
        let head = Head {
            q: &q[row * n_heads * d + h * d..][..d],
            seq: &seqs[s_idx],
            kvh: h / group,
            pos,
            layout,
            scale,
        };
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide_available` detected AVX2 and FMA on this CPU.
            unsafe { attend_head_avx2(&head, k_cache, v_cache, o) };
            return;
        }
        let _ = wide;
        attend_head(&head, k_cache, v_cache, o);
    });
}

/// One query head of one token: what it attends over.
struct Head<'a> {
    /// The query, `[head_dim]`.
    q: &'a [f32],
    seq: &'a AttnSeq<'a>,
    /// The KV head it reads.
    kvh: usize,
    /// Its position: it sees keys `0..=pos`.
    pos: usize,
    layout: KvLayout,
    scale: f32,
}

/// Whether [`attend_head_avx2`] can run (the portable loops compiled for AVX2 + FMA).
fn wide_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`attend_head`] compiled with AVX2 enabled: the same operations in the same order (no FMA
/// contraction happens without fast-math), so results are bit-identical, only wider vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_head_avx2<K: KvSrc, V: KvSrc>(h: &Head<'_>, k: &K, v: &V, o: &mut [f32]) {
    attend_head(h, k, v, o)
}

/// Softmax(q·K / √d)·V for one head into `o` `[head_dim]`.
#[inline(always)]
fn attend_head<K: KvSrc, V: KvSrc>(h: &Head<'_>, k_cache: &K, v_cache: &V, o: &mut [f32]) {
    let (layout, d) = (h.layout, h.layout.head_dim);
    let slot_off = |p: usize| {
        let blk = h.seq.block_table[p / layout.block_size] as usize;
        (blk * layout.block_size + p % layout.block_size) * layout.slot_width() + h.kvh * d
    };
    let mut scores = Vec::with_capacity(h.pos + 1);
    let mut max = f32::NEG_INFINITY;
    for p in 0..=h.pos {
        let s = k_cache.dot(slot_off(p), h.q) * h.scale;
        max = max.max(s);
        scores.push(s);
    }
    let mut sum = 0.0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    o.fill(0.0);
    for (p, &w) in scores.iter().enumerate() {
        v_cache.axpy(slot_off(p), w / sum, o);
    }
}

/// `a · b` over `a.len()` elements.
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise without reassociation.
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}
