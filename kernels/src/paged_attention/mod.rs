//! Attention over a paged KV cache (prefill chunks and decodes in one call), and the cache write.
//!
//! Cache layout per layer: `[num_blocks, block_size, n_kv_heads, head_dim]`, so one token slot
//! (`slot = block * block_size + offset`) holds all its KV heads contiguously. Elements are f32,
//! bf16 (`*_bf16`, what vLLM's `--kv-cache-dtype auto` stores for a bf16 model), or FP8 codes
//! with a per-tensor scale (`*_fp8`, vLLM's `--kv-cache-dtype fp8`).
//!
//! This file owns the public API, the cache writes and the storage abstraction ([`KvSrc`]).
//! The attention kernel is `blocked.rs` (flash-attention style, used for every call) on the
//! vector primitives of `crate::simd`; `per_head.rs` keeps the previous one-head-at-a-time kernel
//! as a second reference and for the benchmark.

mod blocked;
mod per_head;

#[cfg(test)]
mod tests;

use crate::fp8::{decode_scaled, encode_scaled, Fp8Format};
use half::bf16;

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
///
/// A row's result depends only on its query, its position and its sequence's cache: it is
/// bit-identical however the rows are grouped into calls (decode, prefill chunks, batches).
/// Rows of `out` that belong to no sequence are left unchanged. Callers validate the inputs
/// (see `models::kv_cache`): this panics if a block table does not cover its sequence's
/// `context_len`, and does nothing if `n_heads` is not a multiple of `n_kv_heads`.
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
    let (k, v) = (F32Kv(k_cache), F32Kv(v_cache));
    blocked::attend(
        crate::simd::Path::best(),
        q,
        &k,
        &v,
        seqs,
        n_heads,
        layout,
        scale,
        out,
    );
}

/// The previous kernel (one query head at a time: a dot product per key, then an axpy per
/// key), same signature and semantics as [`paged_attention`]. Kept as a second reference for
/// tests and as the baseline of `benches/attention.rs`; not for production use.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn paged_attention_per_head(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    seqs: &[AttnSeq<'_>],
    n_heads: usize,
    layout: KvLayout,
    scale: f32,
    out: &mut [f32],
) {
    let (k, v) = (F32Kv(k_cache), F32Kv(v_cache));
    per_head::attend(q, &k, &v, seqs, n_heads, layout, scale, out);
}

/// [`reshape_and_cache`] into bf16 caches (`[num_blocks * block_size, n_kv_heads * head_dim]`),
/// rounding to nearest even.
pub fn reshape_and_cache_bf16(
    k: &[f32],
    v: &[f32],
    k_cache: &mut [bf16],
    v_cache: &mut [bf16],
    slot_mapping: &[u32],
    layout: KvLayout,
) {
    let w = layout.slot_width();
    for (t, &slot) in slot_mapping.iter().enumerate() {
        let dst = slot as usize * w;
        for (src, cache) in [(k, &mut *k_cache), (v, &mut *v_cache)] {
            for (c, &x) in cache[dst..dst + w].iter_mut().zip(&src[t * w..(t + 1) * w]) {
                *c = bf16::from_f32(x);
            }
        }
    }
}

/// [`paged_attention`] over bf16 caches written by [`reshape_and_cache_bf16`]: keys and values
/// are widened to f32 (exactly) when a tile is loaded, and everything else is computed in f32
/// exactly as for an f32 cache holding the widened values (so bit-identical to it).
#[allow(clippy::too_many_arguments)]
pub fn paged_attention_bf16(
    q: &[f32],
    k_cache: &[bf16],
    v_cache: &[bf16],
    seqs: &[AttnSeq<'_>],
    n_heads: usize,
    layout: KvLayout,
    scale: f32,
    out: &mut [f32],
) {
    let (k, v) = (Bf16Kv(k_cache), Bf16Kv(v_cache));
    blocked::attend(
        crate::simd::Path::best(),
        q,
        &k,
        &v,
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
/// are decoded to f32 (`decode(code) * scale`) when a tile is loaded, and everything else is
/// computed in f32 exactly as for an f32 cache holding the decoded values.
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
    let (k, v) = fp8_srcs(k_cache, v_cache, fp8);
    blocked::attend(
        crate::simd::Path::best(),
        q,
        &k,
        &v,
        seqs,
        n_heads,
        layout,
        scale,
        out,
    );
}

fn fp8_srcs<'a>(k_cache: &'a [u8], v_cache: &'a [u8], fp8: Fp8Kv) -> (Fp8Src<'a>, Fp8Src<'a>) {
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
    (k, v)
}

/// Read access to one head of one cache slot, whatever the storage type.
trait KvSrc: Sync {
    /// The `n` values of the head starting at element `off`, as f32: borrowed from the cache
    /// when it is f32, else decoded into `buf` (at least `n` long).
    fn row<'s>(&'s self, off: usize, n: usize, buf: &'s mut [f32]) -> &'s [f32];
    /// Hints the CPU to start fetching the `n` elements at `off` (a later [`KvSrc::row`]).
    fn prefetch(&self, off: usize, n: usize);
    /// `q · head` for the head starting at element `off` (the per-head kernel).
    fn dot(&self, off: usize, q: &[f32]) -> f32;
    /// `o += w * head` for the head starting at element `off` (the per-head kernel).
    fn axpy(&self, off: usize, w: f32, o: &mut [f32]);
}

/// An f32 cache, `[slots, n_kv_heads * head_dim]`.
struct F32Kv<'a>(&'a [f32]);

// `inline(always)`: these must inline into the `#[target_feature]` kernels to be compiled with
// their features (a separate function would keep the baseline SSE2 code).
impl KvSrc for F32Kv<'_> {
    #[inline(always)]
    fn row<'s>(&'s self, off: usize, n: usize, _buf: &'s mut [f32]) -> &'s [f32] {
        &self.0[off..][..n]
    }
    #[inline(always)]
    fn prefetch(&self, off: usize, n: usize) {
        prefetch(&self.0[off..][..n]);
    }
    #[inline(always)]
    fn dot(&self, off: usize, q: &[f32]) -> f32 {
        per_head::dot(q, &self.0[off..][..q.len()])
    }
    #[inline(always)]
    fn axpy(&self, off: usize, w: f32, o: &mut [f32]) {
        let n = o.len();
        for (a, &b) in o.iter_mut().zip(&self.0[off..][..n]) {
            *a += w * b;
        }
    }
}

/// A bf16 cache, `[slots, n_kv_heads * head_dim]`, widened to f32 on read.
struct Bf16Kv<'a>(&'a [bf16]);

/// `bf16 -> f32` (exact: the bf16 bits are the f32's high half), written so that it vectorises
/// inside the `#[target_feature]` kernels it inlines into.
#[inline(always)]
fn widen(b: bf16) -> f32 {
    f32::from_bits(u32::from(b.to_bits()) << 16)
}

impl KvSrc for Bf16Kv<'_> {
    #[inline(always)]
    fn row<'s>(&'s self, off: usize, n: usize, buf: &'s mut [f32]) -> &'s [f32] {
        let buf = &mut buf[..n];
        for (o, &b) in buf.iter_mut().zip(&self.0[off..][..n]) {
            *o = widen(b);
        }
        buf
    }
    #[inline(always)]
    fn prefetch(&self, off: usize, n: usize) {
        prefetch(&self.0[off..][..n]);
    }
    #[inline(always)]
    fn dot(&self, off: usize, q: &[f32]) -> f32 {
        q.iter()
            .zip(&self.0[off..][..q.len()])
            .map(|(&a, &b)| a * widen(b))
            .sum()
    }
    #[inline(always)]
    fn axpy(&self, off: usize, w: f32, o: &mut [f32]) {
        let n = o.len();
        for (a, &b) in o.iter_mut().zip(&self.0[off..][..n]) {
            *a += w * widen(b);
        }
    }
}

/// An FP8 cache, `[slots, n_kv_heads * head_dim]` codes, read as `decode(code) * scale`.
struct Fp8Src<'a> {
    data: &'a [u8],
    format: Fp8Format,
    scale: f32,
}

impl KvSrc for Fp8Src<'_> {
    #[inline]
    fn row<'s>(&'s self, off: usize, n: usize, buf: &'s mut [f32]) -> &'s [f32] {
        let buf = &mut buf[..n];
        decode_scaled(self.format, &self.data[off..][..n], self.scale, buf);
        buf
    }
    #[inline(always)]
    fn prefetch(&self, off: usize, n: usize) {
        prefetch(&self.data[off..][..n]);
    }
    #[inline]
    fn dot(&self, off: usize, q: &[f32]) -> f32 {
        crate::fp8::dot_codes(self.format, &self.data[off..][..q.len()], q) * self.scale
    }
    #[inline]
    fn axpy(&self, off: usize, w: f32, o: &mut [f32]) {
        let n = o.len();
        crate::fp8::axpy_codes(self.format, &self.data[off..][..n], w * self.scale, o);
    }
}

/// Hints the CPU to fetch the cache lines of `data` (no effect on results; a no-op off x86).
#[inline(always)]
fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let (p, bytes) = (data.as_ptr() as *const i8, std::mem::size_of_val(data));
        for off in (0..bytes).step_by(64).chain(bytes.checked_sub(1)) {
            // SAFETY: a prefetch is only a hint and `p + off` is inside `data`; SSE is part of
            // the x86_64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
