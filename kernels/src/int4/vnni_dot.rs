//! AVX-512 VNNI int4 GEMV with int8 activations in dot-product formulation: the
//! `Int4Impl::Q8Avx512` kernel for 1..=8 rows when the group size and `k` are multiples of 128
//! (AWQ / GPTQ's usual 128), otherwise `vnni.rs`'s column-tile kernel runs.
//!
//! Each task walks its columns one after another and each column's packed bytes front to back,
//! so a thread reads one sequential stream (what the hardware prefetcher follows best; the
//! column-tile kernel reads 16 interleaved 64-byte streams and stalled at ~16 GB/s from DRAM).
//! Per 128 channels (one 64-byte load of a column): low nibbles `v & 0x0F` and high nibbles
//! `(v >> 4) & 0x0F` go to two `vpdpbusd` against 64 activation bytes each, laid out by
//! [`DotPrepared`] to match (low nibble of byte `p` = channel `8 (p / 4) + 2 (p % 4)`, the high
//! nibble the next channel). At a group's end each row's 16 integer lanes are summed and the
//! zero point removed in integers (`Σ q xq − z Σ xq`, exact), then multiplied by `dx s` and
//! added to the row's f32 sum, as the Q8 reference does.
//! The quantization is `q8::quantize_block`'s, so the integer brackets equal the Q8 reference's.

use super::q8::quantize_block;
use super::{Int4Weights, GEMV_MAX_ROWS};

/// Channels per 64-byte load of one column.
const BLOCK: usize = 128;

/// Whether the dot kernel handles `w`: whole groups (no shorter last one) of whole 128-channel
/// blocks.
pub(super) fn supported(w: &Int4Weights) -> bool {
    super::vnni::available()
        && w.group_size().is_multiple_of(BLOCK)
        && w.k().is_multiple_of(w.group_size())
}

/// The quantized activations of one call (1..=8 rows) in the dot kernel's layout.
pub(super) struct DotPrepared {
    rows: usize,
    /// `[rows, k]` bytes: per 128-channel block, 64 bytes matching the low nibbles then 64
    /// matching the high nibbles (see the module doc).
    xq: Vec<i8>,
    /// `[rows, groups]` block scales `dx`.
    dx: Vec<f32>,
    /// `[rows, groups]` block sums `Σ xq`.
    sumq: Vec<i32>,
}

impl DotPrepared {
    /// Quantizes `x` (`[rows, k]`, `rows <= GEMV_MAX_ROWS`, lengths checked by the caller).
    pub(super) fn new(w: &Int4Weights, x: &[f32], rows: usize) -> Self {
        let (k, gs, groups) = (w.k(), w.group_size(), w.groups());
        let mut p = DotPrepared {
            rows,
            xq: vec![0; rows * k],
            dx: Vec::with_capacity(rows * groups),
            sumq: Vec::with_capacity(rows * groups),
        };
        let mut tmp = vec![0i8; gs];
        for r in 0..rows {
            for g in 0..groups {
                let i0 = g * gs;
                let (dx, sum) = quantize_block(&x[r * k + i0..r * k + i0 + gs], &mut tmp);
                p.dx.push(dx);
                p.sumq.push(sum);
                let dst = &mut p.xq[r * k + i0..][..gs];
                for (d, s) in dst.chunks_exact_mut(BLOCK).zip(tmp.chunks_exact(BLOCK)) {
                    for b in 0..64 {
                        let ch = 8 * (b / 4) + 2 * (b % 4);
                        d[b] = s[ch];
                        d[64 + b] = s[ch + 1];
                    }
                }
            }
        }
        p
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
            && p.sumq.len() == p.rows * groups
            && c0 <= c1
            && c1 <= w.n()
            && out_t.len() >= (c1 - c0) * p.rows,
        "vnni_dot::cols: shapes"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU features and every length the kernel relies on were asserted above:
    // it reads `xq` `[rows, k]`, `dx` / `sumq` `[rows, groups]`, the packed bytes, scales and
    // zeros of columns `c0..c1 < n`, and writes `out_t` below `(c1 - c0) * rows`.
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
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
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

    /// Column `c` into `out` `[R]`: groups 4 at a time while `R <= 2` (their integer sums
    /// reduced together by [`hsum4`]), one at a time otherwise and for the last `< 4`.
    ///
    /// # Safety
    /// As [`cols`], with `c < n`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    #[inline]
    unsafe fn column<const R: usize>(w: &Int4Weights, p: &DotPrepared, c: usize, out: *mut f32) {
        let (k, n, gs, groups) = (w.k(), w.n(), w.group_size(), w.groups());
        let (qw, sc, zs) = w.raw();
        let nib = _mm512_set1_epi8(0x0F);
        // SAFETY (whole body): column `c < n` spans bytes `c * k / 2..(c + 1) * k / 2` of the
        // packed words and its group blocks lie inside; `xq` row `r` spans `r * k..(r + 1) * k`;
        // `dx` / `sumq` `[R, groups]` and scales / zeros `g * n + c` are read for `g < groups`;
        // `out` covers `R` values (caller). Prefetches never fault.
        unsafe {
            let col = (qw.as_ptr() as *const u8).add(c * k / 2);
            // The group's integer bracket sums `Σ q xq` of each row, `acc[r]` 16 lanes.
            let group = |g: usize, acc: &mut [__m512i; R]| {
                for b in (g * gs..(g + 1) * gs).step_by(BLOCK) {
                    let src = col.add(b / 2);
                    _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(PREFETCH) as *const i8);
                    let v = _mm512_loadu_si512(src as *const _);
                    let lo = _mm512_and_si512(v, nib);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib);
                    for (r, a) in acc.iter_mut().enumerate() {
                        let x = p.xq.as_ptr().add(r * k + b);
                        *a = _mm512_dpbusd_epi32(*a, lo, _mm512_loadu_si512(x as *const _));
                        *a = _mm512_dpbusd_epi32(*a, hi, _mm512_loadu_si512(x.add(64) as *const _));
                    }
                }
            };
            // Per row and group: `(Σ q xq − z Σ xq)` exact in integers, times `dx s` in f32,
            // added up over the groups (in 4 lanes, then across them, for the 4-group steps).
            let mut y4 = [_mm_setzero_ps(); R];
            let mut y = [0.0f32; R];
            let mut g = 0;
            if R <= 2 {
                while g + 4 <= groups {
                    let mut acc = [[_mm512_setzero_si512(); R]; 4];
                    for (i, a) in acc.iter_mut().enumerate() {
                        group(g + i, a);
                    }
                    let at = |i: usize| g * n + i * n + c;
                    let s4 = _mm_cvtph_ps(_mm_setr_epi16(
                        sc[at(0)] as i16,
                        sc[at(1)] as i16,
                        sc[at(2)] as i16,
                        sc[at(3)] as i16,
                        0,
                        0,
                        0,
                        0,
                    ));
                    let z4 = _mm_setr_epi32(
                        zs[at(0)] as i32,
                        zs[at(1)] as i32,
                        zs[at(2)] as i32,
                        zs[at(3)] as i32,
                    );
                    for r in 0..R {
                        let sums = hsum4([acc[0][r], acc[1][r], acc[2][r], acc[3][r]]);
                        let o = r * groups + g;
                        let sq = _mm_loadu_si128(p.sumq.as_ptr().add(o) as *const _);
                        let d = _mm_sub_epi32(sums, _mm_mullo_epi32(z4, sq));
                        let f = _mm_mul_ps(s4, _mm_loadu_ps(p.dx.as_ptr().add(o)));
                        y4[r] = _mm_add_ps(y4[r], _mm_mul_ps(_mm_cvtepi32_ps(d), f));
                    }
                    g += 4;
                }
            }
            while g < groups {
                let mut acc = [_mm512_setzero_si512(); R];
                group(g, &mut acc);
                let s = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(sc[g * n + c] as i32)));
                let z = zs[g * n + c] as i32;
                for (r, a) in acc.iter().enumerate() {
                    let d = _mm512_reduce_add_epi32(*a) - z * p.sumq[r * groups + g];
                    y[r] += d as f32 * (s * p.dx[r * groups + g]);
                }
                g += 1;
            }
            for (r, v) in y.iter().enumerate() {
                let mut lanes = [0.0f32; 4];
                _mm_storeu_ps(lanes.as_mut_ptr(), y4[r]);
                *out.add(r) = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + v;
            }
        }
    }

    /// The four vectors' lane sums, `[Σ a0, Σ a1, Σ a2, Σ a3]` (exact, i32).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn hsum4(a: [__m512i; 4]) -> __m128i {
        // Per 128-bit lane: [a0 + a0', a1 + a1', ...] pairs, then [Σ a0, Σ a1, Σ a2, Σ a3].
        let s01 = _mm512_add_epi32(
            _mm512_unpacklo_epi32(a[0], a[1]),
            _mm512_unpackhi_epi32(a[0], a[1]),
        );
        let s23 = _mm512_add_epi32(
            _mm512_unpacklo_epi32(a[2], a[3]),
            _mm512_unpackhi_epi32(a[2], a[3]),
        );
        let s = _mm512_add_epi32(
            _mm512_unpacklo_epi64(s01, s23),
            _mm512_unpackhi_epi64(s01, s23),
        );
        // Add the four 128-bit lanes.
        let t = _mm512_add_epi32(s, _mm512_shuffle_i32x4::<0x4E>(s, s));
        let t = _mm512_add_epi32(t, _mm512_shuffle_i32x4::<0xB1>(t, t));
        _mm512_castsi512_si128(t)
    }
}
