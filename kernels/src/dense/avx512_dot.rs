//! The AVX-512 GEMVs in "dot-product" formulation for `rows <= DOT_MAX_ROWS` (8; the f16
//! kernel takes at most 4): each accumulator
//! lane sums over `k` for one (row, column) pair, reduced horizontally once per output, and
//! weight rows stream sequentially, which the hardware prefetcher follows.
//!
//! - bf16 weights: activations rounded to bf16 row-major, 32 values per `vdpbf16ps`.
//! - f16 weights (e.g. the tied fp16 LM head of AWQ / GPTQ checkpoints): widened 16 at a time
//!   with `vcvtph2ps` (exact) and multiplied into exact f32 activations with FMA.

use super::avx512::OutPtr;
use half::{bf16, f16};
use std::arch::x86_64::*;

/// Output columns per GEMV task.
const GEMV_COLS: usize = 64;
/// Most activation rows the dot GEMVs take.
pub(super) const DOT_MAX_ROWS: usize = 8;

/// Runs `cols(j)` (the `[rows]` outputs, padded to 8, of columns `j..j + P`; entries for
/// columns `>= n` are ignored) for every `P`-th column over the kernel team, `GEMV_COLS`
/// columns per task on the kernel team (`crate::pool`), and writes them to `out` `[rows, n]`.
fn for_each_column<const P: usize>(
    rows: usize,
    n: usize,
    out: &mut [f32],
    cols: impl Fn(usize) -> [[f32; 8]; P] + Sync,
) {
    assert!(
        rows <= DOT_MAX_ROWS && out.len() == rows * n && GEMV_COLS.is_multiple_of(P),
        "dot GEMV: shapes"
    );
    let o = OutPtr(out.as_mut_ptr());
    crate::pool::for_each(n.div_ceil(GEMV_COLS), |b| {
        for j in (b * GEMV_COLS..((b + 1) * GEMV_COLS).min(n)).step_by(P) {
            for (p, col) in cols(j).iter().enumerate().take(n - j) {
                for (r, v) in col.iter().enumerate().take(rows) {
                    // SAFETY: `out` is `[rows, n]` (asserted), `j + p < n`, and this task
                    // alone writes column `j + p`.
                    unsafe { *o.get().add(r * n + j + p) = *v };
                }
            }
        }
    });
}

/// Dot-product GEMV for f16 weights and `rows <= 4` with exact f32 activations; shapes as
/// [`super::matmul`].
pub(super) fn gemv_f16(x: &[f32], rows: usize, w: &[f16], n: usize, k: usize, out: &mut [f32]) {
    assert!(rows <= 4, "f16 dot GEMV: at most 4 rows");
    for_each_column(rows, n, out, |j| {
        let wj = &w[j * k..(j + 1) * k];
        // SAFETY: AVX-512F is available (checked by `matmul_with`); `x` is `[rows, k]`, `wj`
        // is `[k]`.
        unsafe {
            [match rows {
                1 => dot_col_f16::<1>(x, wj, k),
                2 => dot_col_f16::<2>(x, wj, k),
                3 => dot_col_f16::<3>(x, wj, k),
                _ => dot_col_f16::<4>(x, wj, k),
            }]
        }
    });
}

/// Dot-product GEMV for bf16 weights and `rows <= 8`; shapes as [`super::matmul`]. Weight rows
/// are read one after another (a single sequential stream per task), each 64-byte chunk used
/// for every activation row.
pub(super) fn gemv_bf16(x: &[f32], rows: usize, w: &[bf16], n: usize, k: usize, out: &mut [f32]) {
    let xb: Vec<u16> = x.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
    if rows <= 4 {
        return for_each_column(rows, n, out, |j| {
            let wj = &w[j * k..(j + 1) * k];
            // SAFETY: AVX-512 is available (checked by `matmul_with`); `xb` is `[rows, k]`,
            // `wj` is `[k]`.
            unsafe {
                [match rows {
                    1 => dot_col::<1>(&xb, wj, k),
                    2 => dot_col::<2>(&xb, wj, k),
                    3 => dot_col::<3>(&xb, wj, k),
                    _ => dot_col::<4>(&xb, wj, k),
                }]
            }
        });
    }
    // 5-8 rows: two columns per pass, so each activation load feeds two `vdpbf16ps`.
    for_each_column(rows, n, out, |j| {
        let w0 = &w[j * k..(j + 1) * k];
        let w1 = w.get((j + 1) * k..(j + 2) * k).unwrap_or(w0);
        // SAFETY: AVX-512 is available (checked by `matmul_with`); `xb` is `[rows, k]`, `w0`
        // and `w1` are `[k]`.
        unsafe {
            match rows {
                5 => dot_cols2::<5>(&xb, w0, w1, k),
                6 => dot_cols2::<6>(&xb, w0, w1, k),
                7 => dot_cols2::<7>(&xb, w0, w1, k),
                _ => dot_cols2::<8>(&xb, w0, w1, k),
            }
        }
    });
}

/// Bytes ahead of the read position at which the 1-4 row bf16 kernel prefetches its weight
/// stream into L2. Same-run A/B on an AMD EPYC (Zen 4) host, weights from DRAM, 2 threads: the
/// hardware prefetcher alone streams 4 rows at 15-25 GB/s, with this 21-31 GB/s (4 KiB and
/// 16 KiB ahead were no better). Not used at 1 row (see the kernel).
const PF_AHEAD_BYTES: usize = 8 << 10;
/// Column pairs ahead at which the 5-8 row kernel prefetches into L2 (the next pairs are
/// contiguous in `[n, k]` storage). Same-run A/B on the Zen 4 host at 8 rows from DRAM: the
/// previous one pair ahead into L1 streamed 15-18 GB/s (LM head 15.7 ms), two pairs ahead into
/// L2 22-27 GB/s (LM head 10.1-11.6 ms); three pairs, or the L3 hint, were no better.
const PF_AHEAD_PAIRS: usize = 2;

/// Chunks of 32 (bf16) or 16 (f16) values in flight per row (independent accumulator chains).
const DOT_UNROLL: usize = 4;

/// `[Σ_i xb[r, i] · w[i] for r < R]` (entries `R..8` are zero).
///
/// # Safety
/// AVX-512F/BW/VL/BF16 available; `xb` holds at least `R * k` values and `w` exactly `k`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn dot_col<const R: usize>(xb: &[u16], w: &[bf16], k: usize) -> [f32; 8] {
    const U: usize = DOT_UNROLL;
    let mut acc = [[_mm512_setzero_ps(); R]; U];
    let wp = w.as_ptr() as *const i16;
    let xr: [*const i16; R] = std::array::from_fn(|r| xb[r * k..].as_ptr() as *const i16);
    let bh = |v: __m512i| {
        // SAFETY: same size, any bit pattern is a valid vector.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    };
    let mut i = 0;
    while i + 32 * U <= k {
        for (u, a) in acc.iter_mut().enumerate() {
            let o = i + 32 * u;
            // One line per chunk (a chunk is one line of weights), from 2 rows: the 1-row
            // kernel already streams at the bandwidth limit and the extra loads cost it 5-8 %
            // end to end. A prefetch past the end of `w` is harmless (it cannot fault), hence
            // `wrapping_add`.
            if R > 1 {
                let ahead = (wp as *const u8).wrapping_add(2 * o + PF_AHEAD_BYTES);
                _mm_prefetch::<_MM_HINT_T1>(ahead as *const i8);
            }
            // SAFETY: `o + 32 <= k`: inside `w` and every activation row.
            unsafe {
                let wv = bh(_mm512_loadu_epi16(wp.add(o)));
                for r in 0..R {
                    a[r] = _mm512_dpbf16_ps(a[r], bh(_mm512_loadu_epi16(xr[r].add(o))), wv);
                }
            }
        }
        i += 32 * U;
    }
    while i < k {
        // A partial last chunk loads zeros past `k` in both operands.
        let mask: __mmask32 = if k - i >= 32 {
            !0
        } else {
            (1u32 << (k - i)) - 1
        };
        // SAFETY: masked loads touch only `i..min(i + 32, k)`.
        unsafe {
            let wv = bh(_mm512_maskz_loadu_epi16(mask, wp.add(i)));
            for r in 0..R {
                let xv = bh(_mm512_maskz_loadu_epi16(mask, xr[r].add(i)));
                acc[0][r] = _mm512_dpbf16_ps(acc[0][r], xv, wv);
            }
        }
        i += 32;
    }
    let mut s = [0.0f32; 8];
    for (r, v) in s.iter_mut().enumerate().take(R) {
        let t = _mm512_add_ps(
            _mm512_add_ps(acc[0][r], acc[1][r]),
            _mm512_add_ps(acc[2][r], acc[3][r]),
        );
        *v = _mm512_reduce_add_ps(t);
    }
    s
}

/// `[[Σ_i xb[r, i] · w0[i] for r < R], [.. · w1[i] ..]]` (entries `R..8` are zero), for
/// `R` = 5..=8: one activation load feeds both columns, `2R` independent `vdpbf16ps` chains
/// (`3R + 2` ≤ 26 zmm registers).
///
/// # Safety
/// AVX-512F/BW/VL/BF16 available; `xb` holds at least `R * k` values, `w0` and `w1` exactly `k`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn dot_cols2<const R: usize>(
    xb: &[u16],
    w0: &[bf16],
    w1: &[bf16],
    k: usize,
) -> [[f32; 8]; 2] {
    let mut acc = [[_mm512_setzero_ps(); R]; 2];
    let wp = [w0.as_ptr() as *const i16, w1.as_ptr() as *const i16];
    let xr: [*const i16; R] = std::array::from_fn(|r| xb[r * k..].as_ptr() as *const i16);
    let bh = |v: __m512i| {
        // SAFETY: same size, any bit pattern is a valid vector.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    };
    let mut i = 0;
    while i < k {
        // Full chunks, then a partial last one that loads zeros past `k` in every operand.
        let mask: __mmask32 = if k - i >= 32 {
            !0
        } else {
            (1u32 << (k - i)) - 1
        };
        // The pair `PF_AHEAD_PAIRS` ahead (contiguous after these in `[n, k]` storage), into
        // L2: the prefetcher alone leaves the 8-row kernel waiting on DRAM. Past the end of
        // `w` a prefetch is harmless, hence `wrapping_add`.
        let ahead = (wp[0] as *const u8).wrapping_add(2 * (2 * PF_AHEAD_PAIRS * k + i));
        _mm_prefetch::<_MM_HINT_T1>(ahead as *const i8);
        _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(2 * k) as *const i8);
        // SAFETY: masked loads touch only `i..min(i + 32, k)`, inside every row and column.
        unsafe {
            let wv = [
                bh(_mm512_maskz_loadu_epi16(mask, wp[0].add(i))),
                bh(_mm512_maskz_loadu_epi16(mask, wp[1].add(i))),
            ];
            for r in 0..R {
                let xv = bh(_mm512_maskz_loadu_epi16(mask, xr[r].add(i)));
                acc[0][r] = _mm512_dpbf16_ps(acc[0][r], xv, wv[0]);
                acc[1][r] = _mm512_dpbf16_ps(acc[1][r], xv, wv[1]);
            }
        }
        i += 32;
    }
    let mut s = [[0.0f32; 8]; 2];
    for (a, sc) in acc.iter().zip(s.iter_mut()) {
        for (r, v) in sc.iter_mut().enumerate().take(R) {
            *v = _mm512_reduce_add_ps(a[r]);
        }
    }
    s
}

/// `[Σ_i x[r, i] · w[i] for r < R]` in f32 (entries `R..8` are zero).
///
/// # Safety
/// AVX-512F available; `x` holds at least `R * k` values and `w` exactly `k`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,fma")]
unsafe fn dot_col_f16<const R: usize>(x: &[f32], w: &[f16], k: usize) -> [f32; 8] {
    let mut acc = [[_mm512_setzero_ps(); R]; DOT_UNROLL];
    let wp = w.as_ptr() as *const u16;
    let xr: [*const f32; R] = std::array::from_fn(|r| x[r * k..].as_ptr());
    let mut i = 0;
    while i + 16 * DOT_UNROLL <= k {
        for (u, a) in acc.iter_mut().enumerate() {
            let o = i + 16 * u;
            // SAFETY: `o + 16 <= k`: inside `w` and every activation row.
            unsafe {
                let wv = _mm512_cvtph_ps(_mm256_loadu_si256(wp.add(o) as *const __m256i));
                for r in 0..R {
                    a[r] = _mm512_fmadd_ps(_mm512_loadu_ps(xr[r].add(o)), wv, a[r]);
                }
            }
        }
        i += 16 * DOT_UNROLL;
    }
    while i < k {
        // A partial last chunk loads zeros past `k` in both operands.
        let mask: __mmask16 = if k - i >= 16 {
            !0
        } else {
            (1u16 << (k - i)) - 1
        };
        // SAFETY: masked loads touch only `i..min(i + 16, k)`.
        unsafe {
            let wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, wp.add(i) as *const i16));
            for r in 0..R {
                let xv = _mm512_maskz_loadu_ps(mask, xr[r].add(i));
                acc[0][r] = _mm512_fmadd_ps(xv, wv, acc[0][r]);
            }
        }
        i += 16;
    }
    let mut s = [0.0f32; 8];
    for (r, v) in s.iter_mut().enumerate().take(R) {
        let t = _mm512_add_ps(
            _mm512_add_ps(acc[0][r], acc[1][r]),
            _mm512_add_ps(acc[2][r], acc[3][r]),
        );
        *v = _mm512_reduce_add_ps(t);
    }
    s
}
