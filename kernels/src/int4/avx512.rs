//! AVX-512 int4 GEMV with exact f32 activations: the `Int4Impl::Avx512` kernel for 1..=8 rows
//! when the group size and `k` are multiples of 128 (AWQ / GPTQ's usual 128); other shapes and
//! larger batches take the `Int4Impl::Avx2` paths.
//!
//! One 64-byte load brings 16 words (128 consecutive input channels) of a column; shifting it so
//! that nibble `j` lands on bits 19..23 gives, in lane `l`, channel `8l + j`, so `x` is
//! transposed once per call to match ([`WidePrepared`]). One `vpternlogd` masks the nibble and
//! ORs in the exponent of 1.0, making the f32 `1 + q/16` (exact) without a conversion; these are
//! multiplied into per-row vector sums of `A = Σ x (1 + q/16)` for the group, and at the group's
//! end one FMA with the broadcast `16 s` adds them to the row's accumulator, with no horizontal
//! sum. `Σ x (q − z) s = 16 s A − (16 + z) s Σ x`: the second term is computed 16 groups at a
//! time from the column-major scale / zero copies (`Int4Weights::raw_column_major`) and `Σ x`
//! per group. Per 16 weights that is a shift, a ternary-logic op and an FMA (the conversion
//! path needed a shift, an AND, a conversion and an FMA, two of them on one port).
//! Each task walks its columns one after another (one sequential weight stream per thread).

use super::{Int4Weights, GEMV_MAX_ROWS};

/// Channels per 64-byte load of one column.
const BLOCK: usize = 128;

/// Whether this CPU has AVX-512F/BW/VL, FMA and F16C.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether `k` / `group_size` suit the 128-channel block kernels: whole groups (no shorter last
/// one) of whole blocks.
pub(super) fn layout_ok(k: usize, group_size: usize) -> bool {
    group_size.is_multiple_of(BLOCK) && k.is_multiple_of(group_size)
}

/// Whether the AVX-512 GEMVs (this one and `vnni_dot.rs`) handle `w`: the layout fits and the
/// column-major scale copies exist.
pub(super) fn supported(w: &Int4Weights) -> bool {
    layout_ok(w.k(), w.group_size())
        && w.raw_column_major().0.len() == w.n() * w.groups()
        && available()
}

/// The activations of one call (1..=8 rows) in this kernel's layout.
pub(super) struct WidePrepared {
    rows: usize,
    /// `[rows, k]`: per 128-channel block `b`, `xt[128b + 16j + l] = x[128b + 8l + j]`.
    xt: Vec<f32>,
    /// `[rows, groups]`: `Σ x` per group.
    xsum: Vec<f32>,
}

impl WidePrepared {
    /// Rearranges `x` (`[rows, k]`, `rows <= GEMV_MAX_ROWS`, lengths checked by the caller).
    pub(super) fn new(w: &Int4Weights, x: &[f32], rows: usize) -> Self {
        let (k, gs) = (w.k(), w.group_size());
        let mut xt = vec![0.0f32; rows * k];
        let mut xsum = Vec::with_capacity(rows * w.groups());
        for r in 0..rows {
            let (src, dst) = (&x[r * k..(r + 1) * k], &mut xt[r * k..(r + 1) * k]);
            for (s, d) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(BLOCK)) {
                for j in 0..8 {
                    for l in 0..16 {
                        d[16 * j + l] = s[8 * l + j];
                    }
                }
            }
            xsum.extend(src.chunks_exact(gs).map(|g| g.iter().sum::<f32>()));
        }
        WidePrepared { rows, xt, xsum }
    }
}

/// Columns `c0..c1` of `x Wᵀ` into `out_t` `[c1 - c0, rows]`.
///
/// # Panics
/// If the shapes disagree with `w` or [`supported`] is false.
pub(super) fn cols(w: &Int4Weights, p: &WidePrepared, c0: usize, c1: usize, out_t: &mut [f32]) {
    assert!(
        supported(w)
            && (1..=GEMV_MAX_ROWS).contains(&p.rows)
            && p.xt.len() == p.rows * w.k()
            && p.xsum.len() == p.rows * w.groups()
            && c0 <= c1
            && c1 <= w.n()
            && out_t.len() >= (c1 - c0) * p.rows,
        "avx512::cols: shapes"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU features and every length the kernel relies on were asserted above:
    // it reads `xt` `[rows, k]`, `xsum` `[rows, groups]`, the packed bytes and column-major
    // scales / zeros of columns `c0..c1 < n`, and writes `out_t` below `(c1 - c0) * rows`.
    unsafe {
        let o = out_t.as_mut_ptr();
        for c in c0..c1 {
            let o = o.add((c - c0) * p.rows);
            match p.rows {
                1 => imp::column::<1>(w, p, c, o),
                2 => imp::column::<2>(w, p, c, o),
                3 => imp::column::<3>(w, p, c, o),
                4 => imp::column::<4>(w, p, c, o),
                5 => imp::column::<5>(w, p, c, o),
                6 => imp::column::<6>(w, p, c, o),
                7 => imp::column::<7>(w, p, c, o),
                _ => imp::column::<8>(w, p, c, o),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{Int4Weights, WidePrepared, BLOCK};
    use std::arch::x86_64::*;

    /// Bytes ahead of the current load that the column stream is prefetched.
    const PREFETCH: usize = 1024;

    /// Column `c` into `out` `[R]`.
    ///
    /// # Safety
    /// AVX-512F/BW/VL, FMA and F16C available; the shapes asserted by [`super::cols`]; `c < n`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    pub(super) unsafe fn column<const R: usize>(
        w: &Int4Weights,
        p: &WidePrepared,
        c: usize,
        out: *mut f32,
    ) {
        let (k, gs, groups) = (w.k(), w.group_size(), w.groups());
        let (scm, zcm) = w.raw_column_major();
        // Bits 19..23 of an f32 (the top 4 mantissa bits) and the exponent of 1.0.
        let nib = _mm512_set1_epi32(0xF << 19);
        let one = _mm512_set1_epi32(0x3F80_0000);
        // SAFETY (whole body): column `c` spans bytes `c * k / 2..(c + 1) * k / 2` of the packed
        // words; `xt` row `r` spans `r * k..(r + 1) * k`; the masked loads read `[n, groups]`
        // entries `c * groups + g` and `[rows, groups]` entries `r * groups + g` for
        // `g < groups` only; `out` covers `R` values (caller). Prefetches never fault.
        unsafe {
            let col = (w.raw().0.as_ptr() as *const u8).add(c * k / 2);
            let xt = p.xt.as_ptr();
            let mut yacc = [_mm512_setzero_ps(); R];
            let mut zacc = [_mm512_setzero_ps(); R];
            let mut s16 = [0.0f32; 16];
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
                // `(16 + z) s` and `16 s` (exact: a power of two times an f16).
                let sz = _mm512_mul_ps(s, _mm512_add_ps(z, _mm512_set1_ps(16.0)));
                let s = _mm512_mul_ps(s, _mm512_set1_ps(16.0));
                for (r, a) in zacc.iter_mut().enumerate() {
                    let xs = _mm512_maskz_loadu_ps(mask, p.xsum.as_ptr().add(r * groups + g0));
                    *a = _mm512_fmadd_ps(sz, xs, *a);
                }
                _mm512_storeu_ps(s16.as_mut_ptr(), s);
                for (gi, &sg) in s16.iter().enumerate().take(m) {
                    let g = g0 + gi;
                    // Two vector sums per row (even / odd shift steps) halve the FMA chain (four
                    // for one row measured the same: the loop is throughput-bound).
                    let mut acc = [[_mm512_setzero_ps(); R]; 2];
                    for b in (g * gs..(g + 1) * gs).step_by(BLOCK) {
                        let src = col.add(b / 2);
                        _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(PREFETCH) as *const i8);
                        let v = _mm512_loadu_si512(src as *const _);
                        for j in 0..8 {
                            // Nibble `j` (bits 4j..4j+4) to bits 19..23.
                            let sh = if 4 * j <= 19 {
                                _mm512_sllv_epi32(v, _mm512_set1_epi32(19 - 4 * j as i32))
                            } else {
                                _mm512_srlv_epi32(v, _mm512_set1_epi32(4 * j as i32 - 19))
                            };
                            // `(sh & nib) | one`: the f32 `1 + q / 16`.
                            let q = _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<0xEA>(
                                sh, nib, one,
                            ));
                            for (r, a) in acc[j % 2].iter_mut().enumerate() {
                                let xv = _mm512_loadu_ps(xt.add(r * k + b + 16 * j));
                                *a = _mm512_fmadd_ps(q, xv, *a);
                            }
                        }
                    }
                    let sv = _mm512_set1_ps(sg);
                    for r in 0..R {
                        let sum = _mm512_add_ps(acc[0][r], acc[1][r]);
                        yacc[r] = _mm512_fmadd_ps(sum, sv, yacc[r]);
                    }
                }
            }
            for r in 0..R {
                *out.add(r) = _mm512_reduce_add_ps(yacc[r]) - _mm512_reduce_add_ps(zacc[r]);
            }
        }
    }
}
