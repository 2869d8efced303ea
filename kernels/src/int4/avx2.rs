//! AVX2 + FMA + F16C int4 kernels (x86_64, detected at run time).
//!
//! GEMV (1..=8 rows), when `group_size` is a multiple of 64: one 256-bit load brings 8 words
//! (64 consecutive input channels) of a column; shifting it by 4 bits at a time gives, in lane
//! `l` of step `j`, channel `8l + j`, so `x` is transposed once per call to match (`prepared.rs`).
//! For 1..=3 rows the zero point is folded out: `Σ x (q - z) s = s Σ x q + m Σ x` (`m = -z s`)
//! with `Σ x` per group precomputed, leaving one FMA per 8 weights per row; for 4..=8 rows each
//! vector is dequantized once (`q s + m`, one FMA) and reused by every row. `C` columns are
//! processed together so `C * rows` (x2 at one row) FMA chains hide the FMA latency.
//! The weight stream is software-prefetched two column blocks ahead (+20 % from DRAM).
//! Other group sizes use a per-word path (broadcast, variable shift, dequantize).
//! GEMM (more rows): a `[24 columns, 256 channels]` tile is dequantized into L1 and a 4-row x
//! 3-column register-blocked dot-product micro-kernel runs over all rows.

use super::prepared::Prepared;
use super::Int4Weights;

/// Whether this CPU has AVX2, FMA and F16C.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Columns `c0..c1` of `x Wᵀ` into `out_t` `[c1 - c0, rows]`; the portable kernel when the
/// CPU lacks the features (callers normally check [`available`] first) or shapes disagree.
pub(super) fn cols(w: &Int4Weights, p: &Prepared<'_>, c0: usize, c1: usize, out_t: &mut [f32]) {
    let ok = p.x.len() == p.rows * w.k()
        && (!p.fast() || (p.xt.len() == p.x.len() && p.xsum.len() == p.rows * w.groups()))
        && c0 <= c1
        && c1 <= w.n()
        && out_t.len() >= (c1 - c0) * p.rows;
    #[cfg(target_arch = "x86_64")]
    if ok && available() {
        // SAFETY: the CPU features were checked just above. The kernels read `x`/`xt` below
        // `rows * k`, `xsum` below `rows * groups`, the weights within the shapes
        // `Int4Weights::new` validated, and write `out_t` below `(c1 - c0) * rows`; the checks
        // above make all of these in bounds.
        unsafe { imp::cols(w, p, c0, c1, out_t.as_mut_ptr()) };
        return;
    }
    let _ = ok;
    super::scalar::cols_portable(w, p, c0, c1, out_t);
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::super::scalar::{TILE_K, TILE_N};
    use super::super::Int4Weights;
    use super::Prepared;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn cols(
        w: &Int4Weights,
        p: &Prepared<'_>,
        c0: usize,
        c1: usize,
        op: *mut f32,
    ) {
        let xp = p.x.as_ptr();
        if p.fast() {
            let (xt, xs) = (p.xt.as_ptr(), p.xsum.as_ptr());
            match p.rows {
                1 => return gemv_x::<1, 4, 2>(w, xt, xs, c0, c1, op),
                2 => return gemv_x::<2, 2, 2>(w, xt, xs, c0, c1, op),
                3 => return gemv_x::<3, 2, 1>(w, xt, xs, c0, c1, op),
                4 => return gemv_d::<4, 2>(w, xt, c0, c1, op),
                5 => return gemv_d::<5, 1>(w, xt, c0, c1, op),
                6 => return gemv_d::<6, 1>(w, xt, c0, c1, op),
                7 => return gemv_d::<7, 1>(w, xt, c0, c1, op),
                8 => return gemv_d::<8, 1>(w, xt, c0, c1, op),
                _ => {}
            }
        }
        match p.rows {
            1 => gemv_w::<1, 4>(w, xp, c0, c1, op),
            2 => gemv_w::<2, 2>(w, xp, c0, c1, op),
            3 => gemv_w::<3, 2>(w, xp, c0, c1, op),
            4 => gemv_w::<4, 2>(w, xp, c0, c1, op),
            5 => gemv_w::<5, 1>(w, xp, c0, c1, op),
            6 => gemv_w::<6, 1>(w, xp, c0, c1, op),
            7 => gemv_w::<7, 1>(w, xp, c0, c1, op),
            8 => gemv_w::<8, 1>(w, xp, c0, c1, op),
            rows => gemm(w, xp, rows, c0, c1, op),
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    /// `(s, m = -z * s)` of column `c`, group `g` as f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn scale_zero(w: &Int4Weights, c: usize, g: usize) -> (f32, f32) {
        let (_, sc, zs) = w.raw();
        let idx = g * w.n() + c;
        let s = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            *sc.get_unchecked(idx) as i32
        )));
        (s, -(*zs.get_unchecked(idx) as f32) * s)
    }

    /// The 8 codes of one packed word (channels `8i..8i+8`) as floats.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn word_codes(word: u32) -> __m256 {
        let shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
        let q = _mm256_srlv_epi32(_mm256_set1_epi32(word as i32), shifts);
        _mm256_cvtepi32_ps(_mm256_and_si256(q, _mm256_set1_epi32(0xF)))
    }

    /// Zero-point folded GEMV for `B` rows, `C` columns at a time, `A` accumulators per chain.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn gemv_x<const B: usize, const C: usize, const A: usize>(
        w: &Int4Weights,
        xt: *const f32,
        xs: *const f32,
        c0: usize,
        c1: usize,
        op: *mut f32,
    ) {
        let mut c = c0;
        while c < c1 {
            if c + C <= c1 {
                gemv_x_block::<B, C, A>(w, xt, xs, c, op.add((c - c0) * B));
                c += C;
            } else {
                gemv_x_block::<B, 1, A>(w, xt, xs, c, op.add((c - c0) * B));
                c += 1;
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn gemv_x_block<const B: usize, const C: usize, const A: usize>(
        w: &Int4Weights,
        xt: *const f32,
        xs: *const f32,
        c: usize,
        op: *mut f32,
    ) {
        let (k, k8, gs, groups) = (w.k(), w.k() / 8, w.group_size(), w.groups());
        let qw = w.raw().0.as_ptr();
        let mask = _mm256_set1_epi32(0xF);
        let mut tot = [[_mm256_setzero_ps(); B]; C];
        let mut corr = [[0.0f32; B]; C];
        let mut corr4 = [_mm_setzero_ps(); B];
        let (_, sc, zs) = w.raw();
        let (sc, zs) = (sc.as_ptr(), zs.as_ptr());
        for g in 0..groups {
            let (i0, i1) = (g * gs, ((g + 1) * gs).min(k));
            let full = i0 + (i1 - i0) / 64 * 64;
            let mut acc = [[[_mm256_setzero_ps(); A]; B]; C];
            for blk in (i0..full).step_by(64) {
                for (cc, ac) in acc.iter_mut().enumerate() {
                    let p = qw.add((c + cc) * k8 + blk / 8);
                    // Same position two column blocks ahead (`wrapping_add`: a prefetch past the
                    // end is harmless and never dereferenced).
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(2 * C * k8) as *const i8);
                    let mut v = _mm256_loadu_si256(p as *const __m256i);
                    for j in 0..8 {
                        let q = _mm256_cvtepi32_ps(_mm256_and_si256(v, mask));
                        v = _mm256_srli_epi32::<4>(v);
                        for (b, a) in ac.iter_mut().enumerate() {
                            a[j % A] = _mm256_fmadd_ps(
                                q,
                                _mm256_loadu_ps(xt.add(b * k + blk + 8 * j)),
                                a[j % A],
                            );
                        }
                    }
                }
            }
            for wi in full / 8..i1 / 8 {
                for (cc, ac) in acc.iter_mut().enumerate() {
                    let q = word_codes(*qw.add((c + cc) * k8 + wi));
                    for (b, a) in ac.iter_mut().enumerate() {
                        a[0] = _mm256_fmadd_ps(q, _mm256_loadu_ps(xt.add(b * k + wi * 8)), a[0]);
                    }
                }
            }
            if C == 4 {
                // The 4 columns' scales and zeros are adjacent (`[groups, n]`): convert them
                // together and keep the zero-point corrections as one 4-lane vector per row.
                let idx = g * w.n() + c;
                let s4 = _mm_cvtph_ps(_mm_loadl_epi64(sc.add(idx) as *const __m128i));
                let z4 = _mm_cvtsi32_si128((zs.add(idx) as *const i32).read_unaligned());
                let z4 = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(z4));
                let m4 = _mm_mul_ps(z4, _mm_sub_ps(_mm_setzero_ps(), s4));
                let s8 = _mm256_castps128_ps256(s4);
                for (cc, (t, ac)) in tot.iter_mut().zip(&acc).enumerate() {
                    let sb = _mm256_permutevar8x32_ps(s8, _mm256_set1_epi32(cc as i32));
                    for (tb, a) in t.iter_mut().zip(ac) {
                        *tb = _mm256_fmadd_ps(sum_acc(a), sb, *tb);
                    }
                }
                for (b, c4) in corr4.iter_mut().enumerate() {
                    *c4 = _mm_fmadd_ps(m4, _mm_set1_ps(*xs.add(b * groups + g)), *c4);
                }
            } else {
                for cc in 0..C {
                    let (s, m) = scale_zero(w, c + cc, g);
                    for b in 0..B {
                        let sum = sum_acc(&acc[cc][b]);
                        tot[cc][b] = _mm256_fmadd_ps(sum, _mm256_set1_ps(s), tot[cc][b]);
                        corr[cc][b] += m * *xs.add(b * groups + g);
                    }
                }
            }
        }
        if C == 4 {
            for (b, c4) in corr4.iter().enumerate() {
                let mut lanes = [0.0f32; 4];
                _mm_storeu_ps(lanes.as_mut_ptr(), *c4);
                for cc in 0..C {
                    corr[cc][b] = lanes[cc];
                }
            }
        }
        for cc in 0..C {
            for b in 0..B {
                *op.add(cc * B + b) = hsum(tot[cc][b]) + corr[cc][b];
            }
        }
    }

    /// Sum of a chain's accumulators.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn sum_acc<const A: usize>(a: &[__m256; A]) -> __m256 {
        let mut sum = a[0];
        for &v in &a[1..] {
            sum = _mm256_add_ps(sum, v);
        }
        sum
    }

    /// Dequantize-once GEMV for `B` rows (4..=8), `C` columns at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn gemv_d<const B: usize, const C: usize>(
        w: &Int4Weights,
        xt: *const f32,
        c0: usize,
        c1: usize,
        op: *mut f32,
    ) {
        let mut c = c0;
        while c < c1 {
            if c + C <= c1 {
                gemv_d_block::<B, C>(w, xt, c, op.add((c - c0) * B));
                c += C;
            } else {
                gemv_d_block::<B, 1>(w, xt, c, op.add((c - c0) * B));
                c += 1;
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn gemv_d_block<const B: usize, const C: usize>(
        w: &Int4Weights,
        xt: *const f32,
        c: usize,
        op: *mut f32,
    ) {
        let (k, k8, gs) = (w.k(), w.k() / 8, w.group_size());
        let qw = w.raw().0.as_ptr();
        let mask = _mm256_set1_epi32(0xF);
        let mut acc = [[_mm256_setzero_ps(); B]; C];
        for g in 0..w.groups() {
            let (i0, i1) = (g * gs, ((g + 1) * gs).min(k));
            let full = i0 + (i1 - i0) / 64 * 64;
            let mut sm = [(_mm256_setzero_ps(), _mm256_setzero_ps()); C];
            for (cc, x) in sm.iter_mut().enumerate() {
                let (s, m) = scale_zero(w, c + cc, g);
                *x = (_mm256_set1_ps(s), _mm256_set1_ps(m));
            }
            for blk in (i0..full).step_by(64) {
                for (cc, ac) in acc.iter_mut().enumerate() {
                    let p = qw.add((c + cc) * k8 + blk / 8);
                    // Same position two column blocks ahead (`wrapping_add`: a prefetch past the
                    // end is harmless and never dereferenced).
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(2 * C * k8) as *const i8);
                    let mut v = _mm256_loadu_si256(p as *const __m256i);
                    for j in 0..8 {
                        let q = _mm256_cvtepi32_ps(_mm256_and_si256(v, mask));
                        v = _mm256_srli_epi32::<4>(v);
                        let wv = _mm256_fmadd_ps(q, sm[cc].0, sm[cc].1);
                        for (b, a) in ac.iter_mut().enumerate() {
                            *a = _mm256_fmadd_ps(
                                wv,
                                _mm256_loadu_ps(xt.add(b * k + blk + 8 * j)),
                                *a,
                            );
                        }
                    }
                }
            }
            for wi in full / 8..i1 / 8 {
                for (cc, ac) in acc.iter_mut().enumerate() {
                    let wv = _mm256_fmadd_ps(
                        word_codes(*qw.add((c + cc) * k8 + wi)),
                        sm[cc].0,
                        sm[cc].1,
                    );
                    for (b, a) in ac.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xt.add(b * k + wi * 8)), *a);
                    }
                }
            }
        }
        for (cc, ac) in acc.iter().enumerate() {
            for (b, &a) in ac.iter().enumerate() {
                *op.add(cc * B + b) = hsum(a);
            }
        }
    }

    /// Per-word GEMV (any group size that is a multiple of 8) on the untransposed `x`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn gemv_w<const B: usize, const C: usize>(
        w: &Int4Weights,
        xp: *const f32,
        c0: usize,
        c1: usize,
        op: *mut f32,
    ) {
        let (k, k8, gs) = (w.k(), w.k() / 8, w.group_size());
        let qw = w.raw().0.as_ptr();
        let mut c = c0;
        while c < c1 {
            let cn = if c + C <= c1 { C } else { 1 };
            let mut acc = [[_mm256_setzero_ps(); B]; C];
            for g in 0..w.groups() {
                let mut sm = [(_mm256_setzero_ps(), _mm256_setzero_ps()); C];
                for (cc, x) in sm.iter_mut().enumerate().take(cn) {
                    let (s, m) = scale_zero(w, c + cc, g);
                    *x = (_mm256_set1_ps(s), _mm256_set1_ps(m));
                }
                for wi in g * gs / 8..((g + 1) * gs).min(k) / 8 {
                    for (cc, ac) in acc.iter_mut().enumerate().take(cn) {
                        let wv = _mm256_fmadd_ps(
                            word_codes(*qw.add((c + cc) * k8 + wi)),
                            sm[cc].0,
                            sm[cc].1,
                        );
                        for (b, a) in ac.iter_mut().enumerate() {
                            *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xp.add(b * k + wi * 8)), *a);
                        }
                    }
                }
            }
            for (cc, ac) in acc.iter().enumerate().take(cn) {
                for (b, &a) in ac.iter().enumerate() {
                    *op.add((c - c0 + cc) * B + b) = hsum(a);
                }
            }
            c += cn;
        }
    }

    /// Dequantizes columns `t0..t0 + nb`, channels `kc0..kc0 + kc` into `tile` `[nb, kc]`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dequant_tile(
        w: &Int4Weights,
        t0: usize,
        nb: usize,
        kc0: usize,
        kc: usize,
        tile: *mut f32,
    ) {
        let (k8, gs) = (w.k() / 8, w.group_size());
        let qw = w.raw().0.as_ptr();
        for ci in 0..nb {
            let c = t0 + ci;
            let mut g = usize::MAX;
            let (mut s, mut m) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for wi in kc0 / 8..(kc0 + kc) / 8 {
                if wi * 8 / gs != g {
                    g = wi * 8 / gs;
                    let (sf, mf) = scale_zero(w, c, g);
                    (s, m) = (_mm256_set1_ps(sf), _mm256_set1_ps(mf));
                }
                let v = _mm256_fmadd_ps(word_codes(*qw.add(c * k8 + wi)), s, m);
                _mm256_storeu_ps(tile.add(ci * kc + wi * 8 - kc0), v);
            }
        }
    }

    /// `out[c * rows + r] += x[r] · tile[c]` for an `R x C` block, over `kc` channels.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn micro<const R: usize, const C: usize>(
        xp: *const f32,
        ldx: usize,
        tp: *const f32,
        kc: usize,
        op: *mut f32,
        rows: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut kk = 0;
        while kk < kc {
            let mut wv = [_mm256_setzero_ps(); C];
            for (cc, v) in wv.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(tp.add(cc * kc + kk));
            }
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = _mm256_loadu_ps(xp.add(r * ldx + kk));
                for cc in 0..C {
                    a[cc] = _mm256_fmadd_ps(xv, wv[cc], a[cc]);
                }
            }
            kk += 8;
        }
        for (r, a) in acc.iter().enumerate() {
            for (cc, &v) in a.iter().enumerate() {
                *op.add(cc * rows + r) += hsum(v);
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn micro_any(
        rr: usize,
        cn: usize,
        xp: *const f32,
        ldx: usize,
        tp: *const f32,
        kc: usize,
        op: *mut f32,
        rows: usize,
    ) {
        match (rr, cn) {
            (4, 3) => micro::<4, 3>(xp, ldx, tp, kc, op, rows),
            (4, 2) => micro::<4, 2>(xp, ldx, tp, kc, op, rows),
            (4, _) => micro::<4, 1>(xp, ldx, tp, kc, op, rows),
            (3, 3) => micro::<3, 3>(xp, ldx, tp, kc, op, rows),
            (3, 2) => micro::<3, 2>(xp, ldx, tp, kc, op, rows),
            (3, _) => micro::<3, 1>(xp, ldx, tp, kc, op, rows),
            (2, 3) => micro::<2, 3>(xp, ldx, tp, kc, op, rows),
            (2, 2) => micro::<2, 2>(xp, ldx, tp, kc, op, rows),
            (2, _) => micro::<2, 1>(xp, ldx, tp, kc, op, rows),
            (_, 3) => micro::<1, 3>(xp, ldx, tp, kc, op, rows),
            (_, 2) => micro::<1, 2>(xp, ldx, tp, kc, op, rows),
            _ => micro::<1, 1>(xp, ldx, tp, kc, op, rows),
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn gemm(
        w: &Int4Weights,
        xp: *const f32,
        rows: usize,
        c0: usize,
        c1: usize,
        op: *mut f32,
    ) {
        let k = w.k();
        std::ptr::write_bytes(op, 0, (c1 - c0) * rows);
        let mut tile = vec![0.0f32; TILE_N * TILE_K];
        let tp = tile.as_mut_ptr();
        for t0 in (c0..c1).step_by(TILE_N) {
            let nb = TILE_N.min(c1 - t0);
            for kc0 in (0..k).step_by(TILE_K) {
                let kc = TILE_K.min(k - kc0);
                dequant_tile(w, t0, nb, kc0, kc, tp);
                for r in (0..rows).step_by(4) {
                    let rr = 4.min(rows - r);
                    for ci in (0..nb).step_by(3) {
                        let cn = 3.min(nb - ci);
                        let o = op.add((t0 - c0 + ci) * rows + r);
                        micro_any(rr, cn, xp.add(r * k + kc0), k, tp.add(ci * kc), kc, o, rows);
                    }
                }
            }
        }
    }
}
