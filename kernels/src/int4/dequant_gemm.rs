//! Int4 GEMM for prefill-sized batches (more than [`GEMV_MAX_ROWS`] rows) on AVX-512 hosts:
//! panels of output columns are dequantized to f32 (`(q − z) · s` is exact in f32, see the
//! module doc of `int4`) into a buffer and multiplied by the dense AVX-512 f32 GEMM, which keeps
//! the activations in f32. The result is therefore a dense f32 matmul on the dequantized
//! weights, like every exact int4 path, only the summation order differs. The dequantization
//! is paid once per call per weight (`n k` values), against `rows n k` multiply-adds.

use super::{Int4Weights, GEMV_MAX_ROWS};
use crate::dense::{matmul_with, DenseImpl, DenseWeight};
use rayon::prelude::*;

/// Bytes of dequantized f32 weights per panel: large enough that the per-panel costs (packing
/// the activations, one parallel region) stay small, small enough to stay in L3 while the GEMM
/// streams it once per 256-row block.
const PANEL_BYTES: usize = 4 << 20;

/// Whether this path runs here (the dense AVX-512 GEMM is available).
pub(super) fn available() -> bool {
    DenseImpl::Avx512.available()
}

/// `out = x Wᵀ` for `rows > GEMV_MAX_ROWS`. Shapes as [`Int4Weights::matmul`], checked by the
/// caller.
pub(super) fn matmul(w: &Int4Weights, x: &[f32], rows: usize, out: &mut [f32]) {
    debug_assert!(rows > GEMV_MAX_ROWS && available());
    let (k, n) = (w.k(), w.n());
    let panel = (PANEL_BYTES / (4 * k))
        .clamp(48, n.max(48))
        .next_multiple_of(48)
        .min(n);
    let mut wf = vec![0.0f32; panel * k];
    let mut yp = vec![0.0f32; rows * panel];
    for c0 in (0..n).step_by(panel) {
        let np = panel.min(n - c0);
        wf[..np * k]
            .par_chunks_mut(k)
            .enumerate()
            .for_each(|(j, col)| dequantize_column(w, c0 + j, col));
        matmul_with(
            DenseImpl::Avx512,
            x,
            rows,
            DenseWeight::F32(&wf[..np * k]),
            np,
            k,
            &mut yp[..rows * np],
        );
        for (o, y) in out.chunks_exact_mut(n).zip(yp.chunks_exact(np)) {
            o[c0..c0 + np].copy_from_slice(y);
        }
    }
}

/// Column `c` of the dequantized matrix into `col` (`[k]`).
fn dequantize_column(w: &Int4Weights, c: usize, col: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 detected just above.
        return unsafe { dequantize_column_avx2(w, c, col) };
    }
    dequantize_column_plain(w, c, col)
}

/// [`dequantize_column_plain`] compiled for AVX2 (variable shifts vectorise the nibble loop).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dequantize_column_avx2(w: &Int4Weights, c: usize, col: &mut [f32]) {
    dequantize_column_plain(w, c, col)
}

/// `col[i] = (q(c, i) − z) · s` group by group, eight nibbles per packed word.
#[inline(always)]
fn dequantize_column_plain(w: &Int4Weights, c: usize, col: &mut [f32]) {
    let (k, gs) = (w.k(), w.group_size());
    let words = &w.raw().0[c * (k / 8)..(c + 1) * (k / 8)];
    for (g, (dst, src)) in col.chunks_mut(gs).zip(words.chunks(gs / 8)).enumerate() {
        let (s, z) = w.scale_zero(c, g);
        for (d8, &word) in dst.chunks_exact_mut(8).zip(src) {
            for (j, d) in d8.iter_mut().enumerate() {
                *d = (((word >> (4 * j)) & 0xF) as f32 - z) * s;
            }
        }
    }
}
