//! Attention over a paged KV cache (prefill chunks and decodes in one call), and the cache write.
//!
//! Cache layout per layer: `[num_blocks, block_size, n_kv_heads, head_dim]`, so one token slot
//! (`slot = block * block_size + offset`) holds all its KV heads contiguously. Elements are f32,
//! or FP8 codes with a per-tensor scale (`*_fp8`, vLLM's `--kv-cache-dtype fp8`).

use crate::fp8::{axpy_codes, dot_codes, encode_scaled, Fp8Format};
use rayon::prelude::*;

/// Shape of one layer's K (or V) cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    /// Token slots per block.
    pub block_size: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl KvLayout {
    /// Floats in one token slot: `n_kv_heads * head_dim`.
    pub fn slot_width(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// One sequence's part of a batch, as the attention kernel needs it.
#[derive(Debug, Clone, Copy)]
pub struct AttnSeq<'a> {
    /// Row of the sequence's first query token in the batch.
    pub query_start: usize,
    /// Query tokens of this sequence in the batch.
    pub query_len: usize,
    /// Tokens in the cache after this step (cached prefix + this chunk).
    pub context_len: usize,
    /// Physical blocks covering positions `0..context_len`.
    pub block_table: &'a [u32],
}

/// Writes new keys and values into their cache slots.
///
/// Shapes: `k`, `v`: `[T, n_kv_heads * head_dim]`; `slot_mapping`: `[T]`;
/// caches: `[num_blocks * block_size, n_kv_heads * head_dim]`.
pub fn reshape_and_cache(
    k: &[f32],
    v: &[f32],
    k_cache: &mut [f32],
    v_cache: &mut [f32],
    slot_mapping: &[u32],
    layout: KvLayout,
) {
    let w = layout.slot_width();
    for (t, &slot) in slot_mapping.iter().enumerate() {
        let dst = slot as usize * w;
        k_cache[dst..dst + w].copy_from_slice(&k[t * w..(t + 1) * w]);
        v_cache[dst..dst + w].copy_from_slice(&v[t * w..(t + 1) * w]);
    }
}

/// Causal attention of each query token over its sequence's cached keys.
///
/// Query token `i` of a sequence sits at position `context_len - query_len + i` and sees keys
/// `0..=position`. Shapes: `q`, `out`: `[T, n_heads * head_dim]`; caches as in
/// [`reshape_and_cache`]. GQA: query head `h` reads KV head `h / (n_heads / n_kv_heads)`.
/// Softmax in f32 with max subtraction; `scale` is usually `1/sqrt(head_dim)`.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    seqs: &[AttnSeq<'_>],
    n_heads: usize,
    layout: KvLayout,
    scale: f32,
    out: &mut [f32],
) {
    attend(
        q,
        &F32Kv(k_cache),
        &F32Kv(v_cache),
        seqs,
        n_heads,
        layout,
        scale,
        out,
    );
}

/// FP8 storage of a paged K/V cache pair: the format and the per-tensor scales
/// (stored code = fp8(x / scale), read value = decode(code) * scale; vLLM's default scale is 1.0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fp8Kv {
    /// E4M3 or E5M2.
    pub format: Fp8Format,
    /// Scale of the keys.
    pub k_scale: f32,
    /// Scale of the values.
    pub v_scale: f32,
}

/// [`reshape_and_cache`] into FP8 caches (`[num_blocks * block_size, n_kv_heads * head_dim]`
/// bytes), rounding to nearest even with saturation.
pub fn reshape_and_cache_fp8(
    k: &[f32],
    v: &[f32],
    k_cache: &mut [u8],
    v_cache: &mut [u8],
    slot_mapping: &[u32],
    layout: KvLayout,
    fp8: Fp8Kv,
) {
    let w = layout.slot_width();
    for (t, &slot) in slot_mapping.iter().enumerate() {
        let dst = slot as usize * w;
        encode_scaled(
            fp8.format,
            &k[t * w..(t + 1) * w],
            fp8.k_scale,
            &mut k_cache[dst..dst + w],
        );
        encode_scaled(
            fp8.format,
            &v[t * w..(t + 1) * w],
            fp8.v_scale,
            &mut v_cache[dst..dst + w],
        );
    }
}

/// [`paged_attention`] over FP8 caches written by [`reshape_and_cache_fp8`]; keys and values
/// are decoded to f32 (times their scale) on read, and everything else is computed in f32.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention_fp8(
    q: &[f32],
    k_cache: &[u8],
    v_cache: &[u8],
    fp8: Fp8Kv,
    seqs: &[AttnSeq<'_>],
    n_heads: usize,
    layout: KvLayout,
    scale: f32,
    out: &mut [f32],
) {
    let k = Fp8Src {
        data: k_cache,
        format: fp8.format,
        scale: fp8.k_scale,
    };
    let v = Fp8Src {
        data: v_cache,
        format: fp8.format,
        scale: fp8.v_scale,
    };
    attend(q, &k, &v, seqs, n_heads, layout, scale, out);
}

/// Read access to one head of one cache slot, whatever the storage type.
trait KvSrc: Sync {
    /// `q · head` for the head starting at element `off`.
    fn dot(&self, off: usize, q: &[f32]) -> f32;
    /// `o += w * head` for the head starting at element `off`.
    fn axpy(&self, off: usize, w: f32, o: &mut [f32]);
}

struct F32Kv<'a>(&'a [f32]);

// `inline(always)`: these must inline into `attend_head_avx2` to be compiled with its AVX2
// features (a separate function would keep the baseline SSE2 code).
impl KvSrc for F32Kv<'_> {
    #[inline(always)]
    fn dot(&self, off: usize, q: &[f32]) -> f32 {
        dot(q, &self.0[off..][..q.len()])
    }
    #[inline(always)]
    fn axpy(&self, off: usize, w: f32, o: &mut [f32]) {
        let n = o.len();
        for (a, &b) in o.iter_mut().zip(&self.0[off..][..n]) {
            *a += w * b;
        }
    }
}

struct Fp8Src<'a> {
    data: &'a [u8],
    format: Fp8Format,
    scale: f32,
}

impl KvSrc for Fp8Src<'_> {
    #[inline]
    fn dot(&self, off: usize, q: &[f32]) -> f32 {
        dot_codes(self.format, &self.data[off..][..q.len()], q) * self.scale
    }
    #[inline]
    fn axpy(&self, off: usize, w: f32, o: &mut [f32]) {
        let n = o.len();
        axpy_codes(self.format, &self.data[off..][..n], w * self.scale, o);
    }
}

#[allow(clippy::too_many_arguments)]
fn attend<K: KvSrc, V: KvSrc>(
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

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense causal attention of one sequence (queries at the last positions), the reference.
    #[allow(clippy::too_many_arguments)]
    fn dense(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        n_q: usize,
        n_ctx: usize,
        nh: usize,
        nkv: usize,
        d: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0; n_q * nh * d];
        for i in 0..n_q {
            let pos = n_ctx - n_q + i;
            for h in 0..nh {
                let kvh = h / (nh / nkv);
                let qh = &q[(i * nh + h) * d..][..d];
                let s: Vec<f32> = (0..=pos)
                    .map(|p| {
                        qh.iter()
                            .zip(&k[(p * nkv + kvh) * d..][..d])
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            / (d as f32).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f32 = e.iter().sum();
                for (p, w) in e.iter().enumerate() {
                    for j in 0..d {
                        out[(i * nh + h) * d + j] += w / z * v[(p * nkv + kvh) * d + j];
                    }
                }
            }
        }
        out
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn paged_equals_dense_with_scattered_blocks_and_gqa() {
        let (nh, nkv, d, bs) = (4, 2, 8, 4);
        let layout = KvLayout {
            block_size: bs,
            n_kv_heads: nkv,
            head_dim: d,
        };
        let n_ctx = 11; // 3 blocks, last one partial
        let k = pseudo(n_ctx * nkv * d, 1);
        let v = pseudo(n_ctx * nkv * d, 2);
        let n_blocks = 8;
        let mut kc = vec![0.0; n_blocks * bs * nkv * d];
        let mut vc = kc.clone();
        let table = [5u32, 2, 7];
        let slots: Vec<u32> = (0..n_ctx)
            .map(|p| table[p / bs] * bs as u32 + (p % bs) as u32)
            .collect();
        reshape_and_cache(&k, &v, &mut kc, &mut vc, &slots, layout);
        // A chunk of 3 query tokens at the end (prefill over a cached prefix).
        let n_q = 3;
        let q = pseudo(n_q * nh * d, 3);
        let seqs = [AttnSeq {
            query_start: 0,
            query_len: n_q,
            context_len: n_ctx,
            block_table: &table,
        }];
        let mut out = vec![0.0; q.len()];
        paged_attention(
            &q,
            &kc,
            &vc,
            &seqs,
            nh,
            layout,
            1.0 / (d as f32).sqrt(),
            &mut out,
        );
        let want = dense(&q, &k, &v, n_q, n_ctx, nh, nkv, d);
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn fp8_cache_equals_dense_attention_on_the_rounded_values() {
        let (nh, nkv, d, bs) = (4, 2, 8, 4);
        let layout = KvLayout {
            block_size: bs,
            n_kv_heads: nkv,
            head_dim: d,
        };
        let n_ctx = 10;
        let k: Vec<f32> = pseudo(n_ctx * nkv * d, 4).iter().map(|x| x * 3.0).collect();
        let v = pseudo(n_ctx * nkv * d, 5);
        let table = [3u32, 0, 6];
        let slots: Vec<u32> = (0..n_ctx)
            .map(|p| table[p / bs] * bs as u32 + (p % bs) as u32)
            .collect();
        let n_q = 2;
        let q = pseudo(n_q * nh * d, 6);
        let seqs = [AttnSeq {
            query_start: 0,
            query_len: n_q,
            context_len: n_ctx,
            block_table: &table,
        }];
        for format in [Fp8Format::E4M3, Fp8Format::E5M2] {
            let fp8 = Fp8Kv {
                format,
                k_scale: 0.5,
                v_scale: 0.25,
            };
            let mut kc = vec![0u8; 8 * bs * nkv * d];
            let mut vc = kc.clone();
            reshape_and_cache_fp8(&k, &v, &mut kc, &mut vc, &slots, layout, fp8);
            let mut out = vec![0.0; q.len()];
            paged_attention_fp8(
                &q,
                &kc,
                &vc,
                fp8,
                &seqs,
                nh,
                layout,
                1.0 / (d as f32).sqrt(),
                &mut out,
            );
            let round = |x: &[f32], s: f32| {
                x.iter()
                    .map(|&a| format.decode(format.encode(a / s)) * s)
                    .collect::<Vec<f32>>()
            };
            let want = dense(
                &q,
                &round(&k, 0.5),
                &round(&v, 0.25),
                n_q,
                n_ctx,
                nh,
                nkv,
                d,
            );
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{format:?}: {a} vs {b}");
            }
            // And within FP8 precision of the unrounded attention.
            let exact = dense(&q, &k, &v, n_q, n_ctx, nh, nkv, d);
            let tol = if format == Fp8Format::E4M3 { 0.1 } else { 0.2 };
            for (a, b) in out.iter().zip(&exact) {
                assert!((a - b).abs() < tol, "{format:?}: {a} vs {b}");
            }
        }
    }
}
