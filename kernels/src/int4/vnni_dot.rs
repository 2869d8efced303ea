//! AVX-512 VNNI int4 GEMV with int8 activations in dot-product formulation: the
//! `Int4Impl::Q8Avx512` kernel for 1..=8 rows when the group size and `k` are multiples of 128
//! (AWQ / GPTQ's usual 128; `avx512::supported`), otherwise `vnni.rs`'s column-tile kernel runs.
//!
//! Each task walks its columns one after another and each column's packed bytes front to back,
//! so a thread reads one sequential stream (what the hardware prefetcher follows best; the
//! column-tile kernel reads 16 interleaved 64-byte streams and stalled at ~16 GB/s from DRAM).
//! Per 128 channels (one 64-byte load of a column): low nibbles `v & 0x0F` and high nibbles
//! `(v >> 4) & 0x0F` go to two `vpdpbusd` against 64 activation bytes each, laid out by
//! [`DotPrepared`] to match (low nibble of byte `p` = channel `8 (p / 4) + 2 (p % 4)`, the high
//! nibble the next channel). At a group's end the 16 integer lanes `Σ q xq` are converted to
//! f32 (exact: below 2^24) and added to the row's vector sum with one FMA by the broadcast
//! `dx s`, with no horizontal sum per group. The zero-point term `Σ_g dx s z Σ xq` is computed
//! 16 groups at a time from the column-major scale / zero copies; both vector sums are reduced
//! once per column. The integer dot products equal the Q8 reference's; the float sums differ
//! in order and in that the two terms are rounded separately (see `q8_tests.rs`).
//! The quantization is `q8::quantize_block`'s, so the integer brackets equal the Q8 reference's.

use super::q8::quantize_block;
use super::{Int4Weights, GEMV_MAX_ROWS};
use crate::pool::Shared;

/// Channels per 64-byte load of one column.
const BLOCK: usize = 128;

/// Whether the dot kernel handles `w`: whole groups (no shorter last one) of whole 128-channel
/// blocks, with the column-major scale copies.
pub(super) fn supported(w: &Int4Weights) -> bool {
    super::vnni::available() && super::avx512::supported(w)
}

/// The quantized activations of one call (1..=8 rows) in the dot kernel's layout.
pub(super) struct DotPrepared {
    rows: usize,
    /// `[rows, k]` bytes: per 128-channel block, 64 bytes matching the low nibbles then 64
    /// matching the high nibbles (see the module doc).
    xq: Vec<i8>,
    /// `[rows, groups]` block scales `dx`.
    dx: Vec<f32>,
    /// `[rows, groups]` `dx Σ xq` (the integer sum is exact in f32: below 2^24).
    dxsum: Vec<f32>,
}

impl DotPrepared {
    /// Quantizes `x` (`[rows, k]`, `rows <= GEMV_MAX_ROWS`, lengths checked by the caller).
    pub(super) fn new(w: &Int4Weights, x: &[f32], rows: usize) -> Self {
        let (k, gs, groups) = (w.k(), w.group_size(), w.groups());
        let mut xq = vec![0i8; rows * k];
        let (mut dx, mut dxsum) = (vec![0.0f32; rows * groups], vec![0.0f32; rows * groups]);
        let (dx_s, dxsum_s) = (Shared::new(&mut dx), Shared::new(&mut dxsum));
        // One row per task: at 8 rows this ran serially for 2.6 % of an AWQ decode step while
        // the other threads waited.
        crate::pool::for_each_chunk_mut(&mut xq, k, |r, xq_r| {
            // SAFETY: row `r`'s `groups` entries of `dx` / `dxsum` (both `[rows, groups]`, still
            // borrowed here) belong to this task alone.
            let (dx_r, dxsum_r) = unsafe {
                (
                    dx_s.slice(r * groups, groups),
                    dxsum_s.slice(r * groups, groups),
                )
            };
            let mut tmp = vec![0i8; gs];
            for g in 0..groups {
                let i0 = g * gs;
                let (d, sum) = quantize_block(&x[r * k + i0..r * k + i0 + gs], &mut tmp);
                dx_r[g] = d;
                dxsum_r[g] = d * sum as f32;
                let dst = &mut xq_r[i0..i0 + gs];
                for (d, s) in dst.chunks_exact_mut(BLOCK).zip(tmp.chunks_exact(BLOCK)) {
                    for b in 0..64 {
                        let ch = 8 * (b / 4) + 2 * (b % 4);
                        d[b] = s[ch];
                        d[64 + b] = s[ch + 1];
                    }
                }
            }
        });
        DotPrepared {
            rows,
            xq,
            dx,
            dxsum,
        }
    }
}

/// Columns `c0..c1` of the Q8 `x Wᵀ` into `out_t` `[c1 - c0, rows]`.
///
/// # Panics
/// If the shapes disagree with `w` or [`supported`] is false.
pub(super) fn cols(w: &Int4Weights, p: &DotPrepared, c0: usize, c1: usize, out_t: &mut [f32]) {
    let groups = w.groups();
    assert!(
        supported(w)
            && (1..=GEMV_MAX_ROWS).contains(&p.rows)
            && p.xq.len() == p.rows * w.k()
            && p.dx.len() == p.rows * groups
            && p.dxsum.len() == p.rows * groups
            && c0 <= c1
            && c1 <= w.n()
            && out_t.len() >= (c1 - c0) * p.rows,
        "vnni_dot::cols: shapes"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU features and every length the kernel relies on were asserted above:
    // it reads `xq` `[rows, k]`, `dx` / `dxsum` `[rows, groups]`, the packed bytes and
    // column-major scales / zeros of columns `c0..c1 < n`, and writes `out_t` below
    // `(c1 - c0) * rows`.
    unsafe {
        match p.rows {
            1 => imp::cols::<1>(w, p, c0, c1, out_t.as_mut_ptr()),
            2 => imp::cols::<2>(w, p, c0, c1, out_t.as_mut_ptr()),
            3 => imp::cols::<3>(w, p, c0, c1, out_t.as_mut_ptr()),
            4 => imp::cols::<4>(w, p, c0, c1, out_t.as_mut_ptr()),
            5 => imp::cols::<5>(w, p, c0, c1, out_t.as_mut_ptr()),
            6 => imp::cols::<6>(w, p, c0, c1, out_t.as_mut_ptr()),
            7 => imp::cols::<7>(w, p, c0, c1, out_t.as_mut_ptr()),
            _ => imp::cols::<8>(w, p, c0, c1, out_t.as_mut_ptr()),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{DotPrepared, Int4Weights, BLOCK};
    use std::arch::x86_64::*;

    /// Bytes ahead of the current load that each column's stream is prefetched.
    const PREFETCH: usize = 1024;

    /// [`super::cols`] for `R` rows, one column after another (one sequential stream per task:
    /// measured from DRAM, 4 interleaved columns read 15-35 % slower although they computed
    /// faster with the weights in cache).
    ///
    /// # Safety
    /// AVX-512F/BW/VL/VNNI and F16C available; the shapes asserted by [`super::cols`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    pub(super) unsafe fn cols<const R: usize>(
        w: &Int4Weights,
        p: &DotPrepared,
        c0: usize,
        c1: usize,
        out: *mut f32,
    ) {
        for c in c0..c1 {
            // SAFETY: forwarded, `c < c1 <= n`.
            unsafe { column::<R>(w, p, c, out.add((c - c0) * R)) };
        }
    }

    /// Column `c` into `out` `[R]`.
    ///
    /// # Safety
    /// As [`cols`], with `c < n`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    #[inline]
    unsafe fn column<const R: usize>(w: &Int4Weights, p: &DotPrepared, c: usize, out: *mut f32) {
        let (k, gs, groups) = (w.k(), w.group_size(), w.groups());
        let (scm, zcm) = w.raw_column_major();
        let nib = _mm512_set1_epi8(0x0F);
        // SAFETY (whole body): column `c < n` spans bytes `c * k / 2..(c + 1) * k / 2` of the
        // packed words and its group blocks lie inside; `xq` row `r` spans `r * k..(r + 1) * k`;
        // the masked loads read `[n, groups]` entries `c * groups + g` and `[rows, groups]`
        // entries `r * groups + g` for `g < groups` only; `out` covers `R` values (caller).
        // Prefetches never fault.
        unsafe {
            let col = (w.raw().0.as_ptr() as *const u8).add(c * k / 2);
            let xq = p.xq.as_ptr();
            let mut yacc = [_mm512_setzero_ps(); R];
            let mut zacc = [_mm512_setzero_ps(); R];
            // `dx s` of the current 16 groups, per row.
            let mut f = [[0.0f32; 16]; R];
            for g0 in (0..groups).step_by(16) {
                let m = (groups - g0).min(16);
                let mask: __mmask16 = ((1u32 << m) - 1) as u16;
                let s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(
                    mask,
                    scm.as_ptr().add(c * groups + g0) as *const i16,
                ));
                let z = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(
                    mask,
                    zcm.as_ptr().add(c * groups + g0) as *const i8,
                )));
                let sz = _mm512_mul_ps(s, z);
                for r in 0..R {
                    let o = r * groups + g0;
                    let dx = _mm512_maskz_loadu_ps(mask, p.dx.as_ptr().add(o));
                    _mm512_storeu_ps(f[r].as_mut_ptr(), _mm512_mul_ps(s, dx));
                    let ds = _mm512_maskz_loadu_ps(mask, p.dxsum.as_ptr().add(o));
                    zacc[r] = _mm512_fmadd_ps(sz, ds, zacc[r]);
                }
                for (gi, g) in (g0..g0 + m).enumerate() {
                    let mut acc = [_mm512_setzero_si512(); R];
                    for b in (g * gs..(g + 1) * gs).step_by(BLOCK) {
                        let src = col.add(b / 2);
                        _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(PREFETCH) as *const i8);
                        let v = _mm512_loadu_si512(src as *const _);
                        let lo = _mm512_and_si512(v, nib);
                        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib);
                        for (r, a) in acc.iter_mut().enumerate() {
                            let x = xq.add(r * k + b);
                            *a = _mm512_dpbusd_epi32(*a, lo, _mm512_loadu_si512(x as *const _));
                            *a = _mm512_dpbusd_epi32(
                                *a,
                                hi,
                                _mm512_loadu_si512(x.add(64) as *const _),
                            );
                        }
                    }
                    for r in 0..R {
                        let fv = _mm512_set1_ps(f[r][gi]);
                        yacc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r]), fv, yacc[r]);
                    }
                }
            }
            for r in 0..R {
                *out.add(r) = _mm512_reduce_add_ps(yacc[r]) - _mm512_reduce_add_ps(zacc[r]);
            }
        }
    }
}
