//! The x86 implementations. Each method is one intrinsic or a short sequence; the safety of
//! every `unsafe` block rests on the token invariant: a value of `Avx512` / `Avx2` exists only
//! after `detect` found its features on this CPU, and the `load`/`store` pointers come from
//! a `&Lanes` (64 aligned, 16 floats).

use super::{Isa, Lanes};
use std::arch::x86_64::*;

const ROUND: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

/// Token for AVX-512F (plus AVX2 and FMA, which every AVX-512 CPU has).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// The token, if this CPU has the features.
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma"))
        .then_some(Avx512(()))
    }
}

/// Token for AVX2 + FMA.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The token, if this CPU has the features.
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2(()))
    }
}

/// Horizontal max of 8 lanes (any order: max is exact).
#[inline(always)]
unsafe fn hmax8(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(s, _mm_shuffle_ps::<1>(s, s)))
}

/// Sum of 8 lanes in the tree of [`Isa::hsum`]'s last three levels.
#[inline(always)]
unsafe fn hsum8(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
}

// The transposes below use plain loops, not closures: a closure is a separate function
// without the target features, and the intrinsics would not inline into it.

/// 8 x 8 transpose: `out[i][j] = r[j][i]`.
#[inline(always)]
unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    // t[2i], t[2i + 1]: rows 2i and 2i + 1 interleaved, per 128-bit lane.
    let mut t = r;
    for i in 0..4 {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // s[4g + e], 128-bit lane k: element 4k + e of rows 4g..4g + 4.
    let mut s = t;
    for g in 0..2 {
        let (lo, hi) = (4 * g, 4 * g + 2);
        s[4 * g] = _mm256_shuffle_ps::<0x44>(t[lo], t[hi]);
        s[4 * g + 1] = _mm256_shuffle_ps::<0xEE>(t[lo], t[hi]);
        s[4 * g + 2] = _mm256_shuffle_ps::<0x44>(t[lo + 1], t[hi + 1]);
        s[4 * g + 3] = _mm256_shuffle_ps::<0xEE>(t[lo + 1], t[hi + 1]);
    }
    // Output row 4k + e: lane k of s[e] (rows 0..4) and of s[4 + e] (rows 4..8).
    let mut out = s;
    for e in 0..4 {
        out[e] = _mm256_permute2f128_ps::<0x20>(s[e], s[4 + e]);
        out[4 + e] = _mm256_permute2f128_ps::<0x31>(s[e], s[4 + e]);
    }
    out
}

/// 16 x 16 transpose of 32-bit elements held as 16 row vectors: `out[i][j] = r[j][i]` (also
/// used on integer data, through casts, by the dense GEMM's activation packing).
///
/// # Safety
/// AVX-512F available.
#[inline(always)]
pub(crate) unsafe fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    // SAFETY: register-only AVX-512F operations (the caller vouches for the feature).
    unsafe {
        let mut out = [_mm512_setzero_ps(); 16];
        // t[2i], t[2i + 1]: rows 2i and 2i + 1 interleaved, per 128-bit lane.
        let mut t = r;
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // c[4g + e], 128-bit lane k: element 4k + e of rows 4g..4g + 4.
        let mut c = t;
        for g in 0..4 {
            let (lo, hi) = (4 * g, 4 * g + 2);
            let (a0, b0) = (_mm512_castps_pd(t[lo]), _mm512_castps_pd(t[hi]));
            let (a1, b1) = (_mm512_castps_pd(t[lo + 1]), _mm512_castps_pd(t[hi + 1]));
            c[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, b0));
            c[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, b0));
            c[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, b1));
            c[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, b1));
        }
        for e in 0..4 {
            // Lanes (0, 1) and (2, 3) of row groups (0, 1) and (2, 3).
            let u0 = _mm512_shuffle_f32x4::<0x44>(c[e], c[4 + e]);
            let u1 = _mm512_shuffle_f32x4::<0xEE>(c[e], c[4 + e]);
            let u2 = _mm512_shuffle_f32x4::<0x44>(c[8 + e], c[12 + e]);
            let u3 = _mm512_shuffle_f32x4::<0xEE>(c[8 + e], c[12 + e]);
            // Output row 4k + e: lane k of the four row groups.
            out[e] = _mm512_shuffle_f32x4::<0x88>(u0, u2);
            out[4 + e] = _mm512_shuffle_f32x4::<0xDD>(u0, u2);
            out[8 + e] = _mm512_shuffle_f32x4::<0x88>(u1, u3);
            out[12 + e] = _mm512_shuffle_f32x4::<0xDD>(u1, u3);
        }
        out
    }
}

impl Isa for Avx512 {
    type V = __m512;
    const MAX_QUERIES: usize = 8;
    const PV_PAIRS: bool = true;
    #[inline(always)]
    fn transpose(self, rows: [&Lanes; 16], out: &mut [Lanes; 16]) {
        // SAFETY: token invariant; every pointer comes from a `&Lanes` (64 bytes, aligned).
        unsafe {
            let mut r = [_mm512_setzero_ps(); 16];
            for (v, row) in r.iter_mut().zip(rows) {
                *v = _mm512_load_ps(row.0.as_ptr());
            }
            for (o, v) in out.iter_mut().zip(transpose16(r)) {
                _mm512_store_ps(o.0.as_mut_ptr(), v);
            }
        }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        // SAFETY: token invariant (module doc).
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn load(self, a: &Lanes) -> __m512 {
        // SAFETY: token invariant; `a` is 64 bytes, 64-aligned.
        unsafe { _mm512_load_ps(a.0.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, v: __m512, a: &mut Lanes) {
        // SAFETY: token invariant; `a` is 64 bytes, 64-aligned, exclusively borrowed.
        unsafe { _mm512_store_ps(a.0.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: token invariant.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: token invariant.
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: token invariant.
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: token invariant.
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: token invariant.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: token invariant.
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: token invariant.
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    fn round(self, a: __m512) -> __m512 {
        // SAFETY: token invariant.
        unsafe { _mm512_roundscale_ps::<ROUND>(a) }
    }
    #[inline(always)]
    fn pow2(self, n: __m512) -> __m512 {
        // SAFETY: token invariant. `n` is integral, so the conversion is exact.
        unsafe {
            let e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(e))
        }
    }
    #[inline(always)]
    fn select_lt(self, a: __m512, b: __m512, x: __m512, y: __m512) -> __m512 {
        // SAFETY: token invariant.
        unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b), y, x) }
    }
    #[inline(always)]
    fn mask_from(self, v: __m512, n: usize) -> __m512 {
        let keep = if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 };
        // SAFETY: token invariant.
        unsafe { _mm512_mask_blend_ps(keep, _mm512_set1_ps(f32::NEG_INFINITY), v) }
    }
    #[inline(always)]
    fn hmax(self, v: __m512) -> f32 {
        // SAFETY: token invariant (AVX-512F implies the AVX of `hmax8`).
        unsafe {
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            hmax8(_mm256_max_ps(_mm512_castps512_ps256(v), hi))
        }
    }
    #[inline(always)]
    fn hsum(self, v: __m512) -> f32 {
        // SAFETY: token invariant (AVX-512F implies the AVX of `hsum8`).
        unsafe {
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), hi))
        }
    }
}

/// Lanes 0..8 and 8..16.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair(__m256, __m256);

/// `Pair(f(a.0, b.0), f(a.1, b.1))` for a two-operand intrinsic `f`.
macro_rules! pairwise {
    ($f:ident, $a:expr, $b:expr) => {{
        let (a, b) = ($a, $b);
        // SAFETY: token invariant (module doc).
        unsafe { Pair($f(a.0, b.0), $f(a.1, b.1)) }
    }};
}

impl Isa for Avx2 {
    type V = Pair;
    const MAX_QUERIES: usize = 4;
    const PV_PAIRS: bool = false;
    #[inline(always)]
    fn transpose(self, rows: [&Lanes; 16], out: &mut [Lanes; 16]) {
        // SAFETY: token invariant; every pointer comes from a `&Lanes` (64 bytes, aligned).
        unsafe {
            // Quadrant (a, b): rows 8a..8a+8, elements 8b..8b+8; it becomes elements
            // 8a..8a+8 of output rows 8b..8b+8.
            for a in 0..2 {
                for b in 0..2 {
                    let mut r = [_mm256_setzero_ps(); 8];
                    for (j, v) in r.iter_mut().enumerate() {
                        *v = _mm256_load_ps(rows[8 * a + j].0.as_ptr().add(8 * b));
                    }
                    for (i, v) in transpose8(r).into_iter().enumerate() {
                        _mm256_store_ps(out[8 * b + i].0.as_mut_ptr().add(8 * a), v);
                    }
                }
            }
        }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> Pair {
        // SAFETY: token invariant.
        let v = unsafe { _mm256_set1_ps(x) };
        Pair(v, v)
    }
    #[inline(always)]
    fn load(self, a: &Lanes) -> Pair {
        let p = a.0.as_ptr();
        // SAFETY: token invariant; `a` is 64 bytes, 64-aligned.
        unsafe { Pair(_mm256_load_ps(p), _mm256_load_ps(p.add(8))) }
    }
    #[inline(always)]
    fn store(self, v: Pair, a: &mut Lanes) {
        let p = a.0.as_mut_ptr();
        // SAFETY: token invariant; `a` is 64 bytes, 64-aligned, exclusively borrowed.
        unsafe {
            _mm256_store_ps(p, v.0);
            _mm256_store_ps(p.add(8), v.1);
        }
    }
    #[inline(always)]
    fn add(self, a: Pair, b: Pair) -> Pair {
        pairwise!(_mm256_add_ps, a, b)
    }
    #[inline(always)]
    fn sub(self, a: Pair, b: Pair) -> Pair {
        pairwise!(_mm256_sub_ps, a, b)
    }
    #[inline(always)]
    fn mul(self, a: Pair, b: Pair) -> Pair {
        pairwise!(_mm256_mul_ps, a, b)
    }
    #[inline(always)]
    fn div(self, a: Pair, b: Pair) -> Pair {
        pairwise!(_mm256_div_ps, a, b)
    }
    #[inline(always)]
    fn fma(self, a: Pair, b: Pair, c: Pair) -> Pair {
        // SAFETY: token invariant.
        unsafe {
            Pair(
                _mm256_fmadd_ps(a.0, b.0, c.0),
                _mm256_fmadd_ps(a.1, b.1, c.1),
            )
        }
    }
    #[inline(always)]
    fn max(self, a: Pair, b: Pair) -> Pair {
        pairwise!(_mm256_max_ps, a, b)
    }
    #[inline(always)]
    fn min(self, a: Pair, b: Pair) -> Pair {
        pairwise!(_mm256_min_ps, a, b)
    }
    #[inline(always)]
    fn round(self, a: Pair) -> Pair {
        // SAFETY: token invariant.
        unsafe { Pair(_mm256_round_ps::<ROUND>(a.0), _mm256_round_ps::<ROUND>(a.1)) }
    }
    #[inline(always)]
    fn pow2(self, n: Pair) -> Pair {
        // SAFETY: token invariant. `n` is integral, so the conversion is exact.
        unsafe {
            let bias = _mm256_set1_epi32(127);
            let e0 = _mm256_add_epi32(_mm256_cvtps_epi32(n.0), bias);
            let e1 = _mm256_add_epi32(_mm256_cvtps_epi32(n.1), bias);
            Pair(
                _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e0)),
                _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e1)),
            )
        }
    }
    #[inline(always)]
    fn select_lt(self, a: Pair, b: Pair, x: Pair, y: Pair) -> Pair {
        // SAFETY: token invariant.
        unsafe {
            let m0 = _mm256_cmp_ps::<_CMP_LT_OQ>(a.0, b.0);
            let m1 = _mm256_cmp_ps::<_CMP_LT_OQ>(a.1, b.1);
            Pair(
                _mm256_blendv_ps(y.0, x.0, m0),
                _mm256_blendv_ps(y.1, x.1, m1),
            )
        }
    }
    #[inline(always)]
    fn mask_from(self, v: Pair, n: usize) -> Pair {
        // SAFETY: token invariant.
        unsafe {
            let lim = _mm256_set1_ps(n.min(16) as f32);
            let lo = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
            let hi = _mm256_add_ps(lo, _mm256_set1_ps(8.0));
            let inf = _mm256_set1_ps(f32::NEG_INFINITY);
            Pair(
                _mm256_blendv_ps(inf, v.0, _mm256_cmp_ps::<_CMP_LT_OQ>(lo, lim)),
                _mm256_blendv_ps(inf, v.1, _mm256_cmp_ps::<_CMP_LT_OQ>(hi, lim)),
            )
        }
    }
    #[inline(always)]
    fn hmax(self, v: Pair) -> f32 {
        // SAFETY: token invariant.
        unsafe { hmax8(_mm256_max_ps(v.0, v.1)) }
    }
    #[inline(always)]
    fn hsum(self, v: Pair) -> f32 {
        // SAFETY: token invariant.
        unsafe { hsum8(_mm256_add_ps(v.0, v.1)) }
    }
}
