//! Dense matmul with f32 activations and f32 / bf16 / f16 weights: `y = x Wᵀ`.
//!
//! Weights stay in their stored precision in memory (bf16 halves the bytes a decode step reads)
//! and are widened to f32 in registers. Small batches (decode, ≤ 8 rows) run a bandwidth-bound
//! GEMV kernel that streams each weight row once for all activation rows; larger batches
//! (prefill) widen a panel of weight rows to f32 and hand it to the `gemm` crate, which is
//! compute-bound and cache-blocked. Both are checked against [`matmul_ref`].

use half::{bf16, f16};
use rayon::prelude::*;

/// A `[n, k]` row-major weight matrix in one of the supported precisions.
#[derive(Debug, Clone, Copy)]
pub enum DenseWeight<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// bfloat16 bit patterns.
    BF16(&'a [bf16]),
    /// IEEE half bit patterns.
    F16(&'a [f16]),
}

impl DenseWeight<'_> {
    fn len(&self) -> usize {
        match self {
            DenseWeight::F32(w) => w.len(),
            DenseWeight::BF16(w) => w.len(),
            DenseWeight::F16(w) => w.len(),
        }
    }

    fn get(&self, i: usize) -> f32 {
        match self {
            DenseWeight::F32(w) => w[i],
            DenseWeight::BF16(w) => w[i].to_f32(),
            DenseWeight::F16(w) => w[i].to_f32(),
        }
    }

    /// Widens `out.len()` values starting at `start` into `out`.
    fn widen(&self, start: usize, out: &mut [f32]) {
        match self {
            DenseWeight::F32(w) => out.copy_from_slice(&w[start..start + out.len()]),
            DenseWeight::BF16(w) => w[start..start + out.len()]
                .iter()
                .zip(out)
                .for_each(|(a, o)| *o = a.to_f32()),
            DenseWeight::F16(w) => half::slice::HalfFloatSliceExt::convert_to_f32_slice(
                &w[start..start + out.len()],
                out,
            ),
        }
    }
}

/// Activation rows one weight load is reused for in the GEMV kernel (registers: 8 accumulators).
pub const GEMV_BLOCK_ROWS: usize = 8;
/// Rows up to which the streaming kernel is used: each weight row is read from memory once and
/// reused from registers/L1 for every activation row. Placed by `benches/dense.rs` (bf16,
/// 4864 x 896, same run): streaming wins up to 16 rows (3.15 vs 3.50 ms), gemm from 32
/// (5.9 vs 6.6 ms).
pub const GEMV_MAX_ROWS: usize = 24;
/// Weight rows widened per gemm panel.
const PANEL: usize = 64;

/// `out[r, j] = Σ_i x[r, i] · w[j, i]`. Shapes: `x` `[rows, k]`, `w` `[n, k]`, `out` `[rows, n]`.
pub fn matmul(x: &[f32], rows: usize, w: DenseWeight<'_>, n: usize, k: usize, out: &mut [f32]) {
    assert_eq!(x.len(), rows * k, "matmul: x is not [rows, k]");
    assert_eq!(w.len(), n * k, "matmul: w is not [n, k]");
    assert_eq!(out.len(), rows * n, "matmul: out is not [rows, n]");
    if rows == 0 || n == 0 {
        return;
    }
    if rows <= GEMV_MAX_ROWS {
        gemv(x, rows, w, n, k, out);
    } else {
        gemm_panels(x, rows, w, n, k, out);
    }
}

/// The scalar reference: plain loops, f32 accumulation in index order.
pub fn matmul_ref(x: &[f32], rows: usize, w: DenseWeight<'_>, n: usize, k: usize, out: &mut [f32]) {
    for r in 0..rows {
        for j in 0..n {
            out[r * n + j] = (0..k).map(|i| x[r * k + i] * w.get(j * k + i)).sum();
        }
    }
}

/// Output columns one rayon task computes; the result is written column-block by column-block.
const COLS_PER_TASK: usize = 24;

/// The streaming (GEMV) path of [`matmul`], whatever `rows` is (benchmarks compare the paths).
pub fn gemv(x: &[f32], rows: usize, w: DenseWeight<'_>, n: usize, k: usize, out: &mut [f32]) {
    // Tasks own disjoint column ranges; each writes a [rows, cols] scratch then scatters it.
    let blocks: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(COLS_PER_TASK))
        .into_par_iter()
        .map(|b| {
            let j0 = b * COLS_PER_TASK;
            let j1 = (j0 + COLS_PER_TASK).min(n);
            let mut acc = vec![0.0f32; rows * (j1 - j0)];
            let cols = j1 - j0;
            // Register tiles of 3 weight rows x 4 activation rows where the batch allows
            // (7 loads feed 12 FMAs), single weight rows for the rest.
            let (tiled_j, tiled_r) = if rows >= TILE_R && tile_available() {
                ((cols / TILE_W) * TILE_W, (rows / TILE_R) * TILE_R)
            } else {
                (0, 0)
            };
            for jt in (0..tiled_j).step_by(TILE_W) {
                for r0 in (0..tiled_r).step_by(TILE_R) {
                    let t = tile(&x[r0 * k..(r0 + TILE_R) * k], k, w, (j0 + jt) * k);
                    for (dj, row) in t.iter().enumerate() {
                        for (dr, v) in row.iter().enumerate() {
                            acc[(r0 + dr) * cols + jt + dj] = *v;
                        }
                    }
                }
                if tiled_r < rows {
                    for dj in 0..TILE_W {
                        let j = j0 + jt + dj;
                        let mut sums = [0.0f32; GEMV_BLOCK_ROWS];
                        for r0 in (tiled_r..rows).step_by(GEMV_BLOCK_ROWS) {
                            let nb = GEMV_BLOCK_ROWS.min(rows - r0);
                            dot_rows(&x[r0 * k..(r0 + nb) * k], nb, k, w, j * k, &mut sums[..nb]);
                            for (r, v) in sums[..nb].iter().enumerate() {
                                acc[(r0 + r) * cols + jt + dj] = *v;
                            }
                        }
                    }
                }
            }
            for j in j0 + tiled_j..j1 {
                for r0 in (0..rows).step_by(GEMV_BLOCK_ROWS) {
                    let nr = GEMV_BLOCK_ROWS.min(rows - r0);
                    let mut sums = [0.0f32; GEMV_BLOCK_ROWS];
                    dot_rows(&x[r0 * k..(r0 + nr) * k], nr, k, w, j * k, &mut sums[..nr]);
                    for (r, s) in sums[..nr].iter().enumerate() {
                        acc[(r0 + r) * (j1 - j0) + (j - j0)] = *s;
                    }
                }
            }
            (j0, acc)
        })
        .collect();
    for (j0, acc) in blocks {
        let cols = acc.len() / rows;
        for r in 0..rows {
            out[r * n + j0..r * n + j0 + cols].copy_from_slice(&acc[r * cols..(r + 1) * cols]);
        }
    }
}

/// Weight rows per register tile.
const TILE_W: usize = 3;
/// Activation rows per register tile.
const TILE_R: usize = 4;

fn tile_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `t[j][r] = x[r, :] · w[off + j*k ..][..k]` for a 3 x 4 tile; only called when
/// [`tile_available`].
fn tile(x: &[f32], k: usize, w: DenseWeight<'_>, off: usize) -> [[f32; TILE_R]; TILE_W] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: callers check `tile_available`, i.e. AVX2, FMA and F16C.
        unsafe { simd::tile(x, k, w, off) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, k, w, off);
        unreachable!("tile() without SIMD support")
    }
}

/// `sums[r] = x[r, :] · w[off .. off + k]` for every activation row.
fn dot_rows(x: &[f32], rows: usize, k: usize, w: DenseWeight<'_>, off: usize, sums: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::available() {
            // SAFETY: the CPU supports AVX2, FMA and F16C (checked at run time above).
            unsafe { simd::dot_rows(x, rows, k, w, off, sums) };
            return;
        }
    }
    for (r, s) in sums.iter_mut().enumerate() {
        *s = (0..k).map(|i| x[r * k + i] * w.get(off + i)).sum();
    }
}

/// The widen-and-gemm path of [`matmul`], whatever `rows` is (benchmarks compare the paths).
pub fn gemm_panels(
    x: &[f32],
    rows: usize,
    w: DenseWeight<'_>,
    n: usize,
    k: usize,
    out: &mut [f32],
) {
    let panels: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(PANEL))
        .into_par_iter()
        .map(|p| {
            let j0 = p * PANEL;
            let cols = PANEL.min(n - j0);
            let mut wp = vec![0.0f32; cols * k];
            w.widen(j0 * k, &mut wp);
            let mut y = vec![0.0f32; rows * cols];
            // SAFETY: all pointers cover the [rows, cols], [rows, k] and [cols, k] buffers with
            // the strides given; the buffers do not alias.
            unsafe {
                gemm::gemm(
                    rows,
                    cols,
                    k,
                    y.as_mut_ptr(),
                    1,
                    cols as isize,
                    false,
                    x.as_ptr(),
                    1,
                    k as isize,
                    wp.as_ptr(),
                    k as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            (j0, y)
        })
        .collect();
    for (j0, y) in panels {
        let cols = y.len() / rows;
        for r in 0..rows {
            out[r * n + j0..r * n + j0 + cols].copy_from_slice(&y[r * cols..(r + 1) * cols]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::DenseWeight;
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(w: DenseWeight<'_>, i: usize) -> __m256 {
        match w {
            DenseWeight::F32(w) => _mm256_loadu_ps(w.as_ptr().add(i)),
            DenseWeight::BF16(w) => {
                let h = _mm_loadu_si128(w.as_ptr().add(i) as *const __m128i);
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            }
            DenseWeight::F16(w) => {
                _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(i) as *const __m128i))
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    /// See `super::tile`: 12 accumulators, 3 weight and 1 activation register.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn tile(x: &[f32], k: usize, w: DenseWeight<'_>, off: usize) -> [[f32; 4]; 3] {
        let mut acc = [[_mm256_setzero_ps(); 4]; 3];
        let k8 = k / 8 * 8;
        let xp = x.as_ptr();
        let mut i = 0;
        while i < k8 {
            let w0 = load8(w, off + i);
            let w1 = load8(w, off + k + i);
            let w2 = load8(w, off + 2 * k + i);
            #[allow(clippy::needless_range_loop)] // r indexes acc's inner arrays and x's rows alike
            for r in 0..4 {
                let xv = _mm256_loadu_ps(xp.add(r * k + i));
                acc[0][r] = _mm256_fmadd_ps(xv, w0, acc[0][r]);
                acc[1][r] = _mm256_fmadd_ps(xv, w1, acc[1][r]);
                acc[2][r] = _mm256_fmadd_ps(xv, w2, acc[2][r]);
            }
            i += 8;
        }
        let mut out = [[0.0f32; 4]; 3];
        for j in 0..3 {
            for r in 0..4 {
                let mut s = hsum(acc[j][r]);
                for t in k8..k {
                    s += x[r * k + t] * w.get(off + j * k + t);
                }
                out[j][r] = s;
            }
        }
        out
    }

    /// See `super::dot_rows`; each weight vector is loaded once and used for every row.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_rows(
        x: &[f32],
        rows: usize,
        k: usize,
        w: DenseWeight<'_>,
        off: usize,
        sums: &mut [f32],
    ) {
        let mut acc = [_mm256_setzero_ps(); super::GEMV_BLOCK_ROWS];
        let k8 = k / 8 * 8;
        let xp = x.as_ptr();
        let mut i = 0;
        while i < k8 {
            let wv = load8(w, off + i);
            for (r, a) in acc.iter_mut().enumerate().take(rows) {
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(r * k + i)), wv, *a);
            }
            i += 8;
        }
        for r in 0..rows {
            let mut s = hsum(acc[r]);
            for t in k8..k {
                s += x[r * k + t] * w.get(off + t);
            }
            sums[r] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(747796405).wrapping_add(2891336453);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn check(rows: usize, n: usize, k: usize) {
        let x = data(rows * k, 1);
        let wf = data(n * k, 2);
        let wb: Vec<bf16> = wf.iter().map(|&v| bf16::from_f32(v)).collect();
        let wh: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
        for (kind, w) in [
            ("f32", DenseWeight::F32(&wf)),
            ("bf16", DenseWeight::BF16(&wb)),
            ("f16", DenseWeight::F16(&wh)),
        ] {
            let mut got = vec![0.0; rows * n];
            let mut want = vec![0.0; rows * n];
            matmul(&x, rows, w, n, k, &mut got);
            matmul_ref(&x, rows, w, n, k, &mut want);
            for (a, b) in got.iter().zip(&want) {
                // Same products, different summation order: error grows like sqrt(k) ulps.
                assert!(
                    (a - b).abs() <= 1e-5 * (k as f32).sqrt() * (1.0 + b.abs()),
                    "{rows}x{n}x{k} {kind}: {a} vs {b}"
                );
            }
        }
    }
    #[test]
    fn gemv_and_gemm_paths_match_reference_on_odd_shapes() {
        for &(rows, n, k) in &[
            (1, 1, 1),
            (1, 17, 13),
            (3, 33, 64),
            (8, 40, 100),
            (9, 65, 31),
            (33, 130, 72),
            (1, 96, 896),
            (64, 20, 40),
            (4, 3, 8),
            (7, 50, 19),
            (12, 31, 896),
            (6, 25, 17),
            (65, 70, 33),
            (100, 9, 17),
        ] {
            check(rows, n, k);
        }
    }
}
