//! Dense matmul with f32 activations and f32 / bf16 / f16 weights: `y = x Wᵀ`.
//!
//! This module owns the public API ([`matmul`], [`matmul_with`], [`matmul_ref`], [`gemv`],
//! [`gemm_panels`], [`DenseWeight`], [`DenseImpl`]), the run-time dispatch between the
//! implementations, the scalar reference and the portable fallbacks. The SIMD kernels live in
//! `avx2.rs` (AVX2+FMA+F16C: f32 FMA on weights widened in registers) and `avx512.rs`
//! (AVX-512 + AVX512_BF16: `vdpbf16ps` for bf16 weights, f32 FMA for f32 / f16 weights).
//!
//! Weights stay in their stored precision in memory (bf16 halves the bytes a decode step reads).
//! Precision contract: f32 and f16 weights always multiply exact f32 activations. bf16 weights on
//! the AVX-512 path multiply activations rounded once per call to bf16 (round to nearest even)
//! and accumulate in f32, as vLLM / PyTorch do for `dtype=bfloat16`; every other path keeps f32
//! activations. All paths are checked against [`matmul_ref`] in `tests.rs`.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_dot;
#[cfg(target_arch = "x86_64")]
mod avx512_pack;
#[cfg(test)]
mod tests;

use half::{bf16, f16};

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

/// Which implementation [`matmul_with`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseImpl {
    /// No hand-written SIMD: scalar streaming GEMV for small batches, the `gemm` crate (which
    /// picks its own SIMD at run time) on widened panels for larger ones.
    Portable,
    /// AVX2+FMA+F16C streaming GEMV for `rows <= GEMV_MAX_ROWS`, widen-and-gemm beyond.
    Avx2,
    /// AVX-512F/BW/VL + AVX512_BF16 kernels (bf16 activations for bf16 weights, see the module
    /// doc), any `rows`.
    Avx512,
    /// [`DenseImpl::Avx512`] with the AMX-BF16 tile GEMM (`amx.rs`) for bf16 weights beyond
    /// [`BF16_DOT_MAX_ROWS`] rows when `k` is a multiple of 32 (same arithmetic contract).
    Amx,
}

impl DenseImpl {
    /// The fastest implementation this CPU supports (what [`matmul`] runs).
    pub fn best() -> Self {
        if DenseImpl::Amx.available() {
            DenseImpl::Amx
        } else if DenseImpl::Avx512.available() {
            DenseImpl::Avx512
        } else if DenseImpl::Avx2.available() {
            DenseImpl::Avx2
        } else {
            DenseImpl::Portable
        }
    }

    /// The fastest implementation that keeps the activations in f32 for weights of `w`'s
    /// precision (what [`matmul_exact`] runs): [`DenseImpl::Avx512`] rounds activations to
    /// bf16 when the weights are bf16, so those go to the AVX2 path instead.
    pub fn best_exact(w: &DenseWeight<'_>) -> Self {
        match (DenseImpl::best(), w) {
            (DenseImpl::Avx512 | DenseImpl::Amx, DenseWeight::BF16(_))
                if DenseImpl::Avx2.available() =>
            {
                DenseImpl::Avx2
            }
            (DenseImpl::Avx512 | DenseImpl::Amx, DenseWeight::BF16(_)) => DenseImpl::Portable,
            (imp, _) => imp,
        }
    }

    /// Whether this implementation can run on this CPU.
    pub fn available(self) -> bool {
        match self {
            DenseImpl::Portable => true,
            #[cfg(target_arch = "x86_64")]
            DenseImpl::Avx2 => avx2::available(),
            #[cfg(target_arch = "x86_64")]
            DenseImpl::Avx512 => avx512::available(),
            #[cfg(target_arch = "x86_64")]
            DenseImpl::Amx => amx::available(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// Activation rows one weight load is reused for in the AVX2/portable GEMV kernel.
pub const GEMV_BLOCK_ROWS: usize = 8;
/// Rows up to which the AVX2 and portable paths use the streaming GEMV (each weight row read once
/// and reused from registers for every activation row) instead of widen-and-gemm. Placed by
/// `benches/dense.rs` (bf16, 4864 x 896, same run): streaming wins up to 16 rows (3.15 vs
/// 3.50 ms), gemm from 32 (5.9 vs 6.6 ms). The AVX-512 path has its own crossover,
/// [`BF16_DOT_MAX_ROWS`].
pub const GEMV_MAX_ROWS: usize = 24;
/// Rows up to which the AVX-512 path runs bf16 weights through the dot-product GEMV (each lane
/// sums over `k`, one horizontal sum per output, weight rows streamed sequentially) instead of
/// the broadcast GEMM (lanes = 8 or 16 activation rows, no horizontal sums). Measured with the
/// 896 x 151936 LM head (272 MB, from DRAM; same runs, noisy shared machine): rows 1-3 the dot
/// GEMV ran 25-27 ms vs 74-80 ms for the broadcast kernel (whose 12 thin column streams defeat
/// the hardware prefetcher); rows 4: 18-48 ms vs 30-58 ms (and 285-292 us vs 457 us at
/// 896 x 4864 from L3). 5-8 rows run a two-column variant (each activation load feeds two
/// columns) with software prefetch of the next column pair: LM head at 8 rows 15.0-15.5 ms
/// vs 24.1 ms without the prefetch (same session; the hardware prefetcher alone suffices at
/// 1-4 rows, where adding it measured slower); bf16 decode at batch 8 went from 77 to 65 ms
/// per step against the 8-lane broadcast kernel.
pub const BF16_DOT_MAX_ROWS: usize = 8;
/// Rows from which [`DenseImpl::Amx`] runs bf16 weights through the AMX tile GEMM (below, the
/// dot GEMV). Measured with `benches/dense.rs` (same run, Intel AMX host, rayon-era driver):
/// at 1 row the two were even on L3-resident 896 x 4864 (264 vs 254 us) and AMX 1.2x faster on
/// the DRAM-resident LM head; at 4-8 rows AMX was 1.4-1.7x faster (LM head 8 rows 12.8 vs
/// 19.4 ms). An AMX call costs about the same for 1-16 rows, so 2 rows already favour it.
pub const AMX_MIN_ROWS: usize = 2;
/// Rows up to which the AVX-512 path runs f16 weights through the dot-product GEMV (exact f32
/// activations, weights widened with `vcvtph2ps`). Measured with the fp16 896 x 151936 LM head
/// from DRAM (`benches/dense.rs`, loaded machine, same run): 1 row 12.6 ms vs 18.4 ms for the
/// AVX2 streaming GEMV (64 % vs 43 % of read bandwidth), 4 rows 25.3 vs 43.4 ms.
pub const F16_DOT_MAX_ROWS: usize = 4;
/// Rows up to which the AVX-512 path sends f16 weights beyond [`F16_DOT_MAX_ROWS`] to the AVX2
/// streaming GEMV (same measurement, 8 rows: 66.9 ms vs 94.2 ms for the broadcast GEMM with
/// widened strips).
pub const F16_AVX2_MAX_ROWS: usize = 8;
/// Rows up to which the AVX-512 path sends f32 (and f16 beyond [`F16_DOT_MAX_ROWS`]) weights to
/// the AVX2 streaming GEMV
/// (measured, 896 x 4864 f32: AVX2 1.5x faster at 1-2 rows, even at 4, AVX-512 1.2x at 8 and
/// 2.6x at 16).
pub const F32_AVX2_MAX_ROWS: usize = 3;
/// Weight rows widened per gemm panel.
const PANEL: usize = 64;

/// `out[r, j] = Σ_i x[r, i] · w[j, i]` with the fastest implementation for this CPU.
/// Shapes: `x` `[rows, k]`, `w` `[n, k]`, `out` `[rows, n]`.
pub fn matmul(x: &[f32], rows: usize, w: DenseWeight<'_>, n: usize, k: usize, out: &mut [f32]) {
    matmul_with(DenseImpl::best(), x, rows, w, n, k, out);
}

/// [`matmul`] with activations kept in f32 whatever the weights' precision (the
/// implementation of [`DenseImpl::best_exact`]). Shapes as [`matmul`].
pub fn matmul_exact(
    x: &[f32],
    rows: usize,
    w: DenseWeight<'_>,
    n: usize,
    k: usize,
    out: &mut [f32],
) {
    matmul_with(DenseImpl::best_exact(&w), x, rows, w, n, k, out);
}

/// [`matmul`] forced through one implementation (tests and benchmarks compare them).
/// Shapes: `x` `[rows, k]`, `w` `[n, k]`, `out` `[rows, n]`.
///
/// # Panics
/// If the shapes are inconsistent or `imp` is not [`DenseImpl::available`] on this CPU.
pub fn matmul_with(
    imp: DenseImpl,
    x: &[f32],
    rows: usize,
    w: DenseWeight<'_>,
    n: usize,
    k: usize,
    out: &mut [f32],
) {
    assert_eq!(x.len(), rows * k, "matmul: x is not [rows, k]");
    assert_eq!(w.len(), n * k, "matmul: w is not [n, k]");
    assert_eq!(out.len(), rows * n, "matmul: out is not [rows, n]");
    assert!(
        imp.available(),
        "matmul: {imp:?} is not available on this CPU"
    );
    if rows == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        return;
    }
    match imp {
        #[cfg(target_arch = "x86_64")]
        DenseImpl::Avx512 => avx512::matmul(x, rows, w, n, k, out),
        #[cfg(target_arch = "x86_64")]
        DenseImpl::Amx => match w {
            DenseWeight::BF16(wb) if rows >= AMX_MIN_ROWS && amx::supports(k, None) => {
                amx::gemm(x, rows, wb, n, k, out, n, None)
            }
            _ => avx512::matmul(x, rows, w, n, k, out),
        },
        _ if rows <= GEMV_MAX_ROWS => gemv_impl(imp == DenseImpl::Avx2, x, rows, w, n, k, out),
        _ => gemm_panels(x, rows, w, n, k, out),
    }
}

/// The AVX-512 broadcast GEMM (any `rows`; the AMX tile GEMM instead for bf16 weights when
/// [`DenseImpl::Amx`] is available and `k` and the group size are multiples of 32) writing `n` columns of a wider output, optionally
/// block-scaled: `out[r * ldo + j] = Σ_g s(g, j) · Σ_{i ∈ g} x[r, i] · w[j, i]` with
/// `s(g, j) = scales[g * n + j]` for groups of `group_size` input channels (the last may be
/// shorter) when `scales` is `Some((scales, group_size))`, else 1 (one group). Each group's
/// sum is scaled in f32. bf16 weights multiply bf16-rounded activations as in [`matmul`]; the
/// scales need bf16 weights and an even group size. Shapes: `x` `[rows, k]`, `w` `[n, k]`,
/// `scales` `[ceil(k / group_size), n]`, `out` at least `(rows − 1) · ldo + n` values,
/// `ldo >= n`. For the int4 prefill GEMM (whose codes `q − z` are exact in bf16). Only call
/// when [`DenseImpl::Avx512`] is available.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_avx512_strided(
    x: &[f32],
    rows: usize,
    w: DenseWeight<'_>,
    n: usize,
    k: usize,
    out: &mut [f32],
    ldo: usize,
    scales: Option<(&[f32], usize)>,
) {
    assert_eq!(x.len(), rows * k, "matmul: x is not [rows, k]");
    assert_eq!(w.len(), n * k, "matmul: w is not [n, k]");
    assert!(ldo >= n, "matmul: output stride below n");
    assert!(
        rows == 0 || out.len() >= (rows - 1) * ldo + n,
        "matmul: out too short"
    );
    if let Some((s, gs)) = scales {
        assert!(
            matches!(w, DenseWeight::BF16(_)),
            "group scales need bf16 weights"
        );
        assert!(gs > 0 && gs.is_multiple_of(2), "group size must be even");
        assert_eq!(s.len(), k.div_ceil(gs) * n, "scales are not [groups, n]");
    }
    assert!(DenseImpl::Avx512.available());
    if rows == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.chunks_mut(ldo).for_each(|o| o[..n].fill(0.0));
        return;
    }
    let scaled = scales.map(|(scales, size)| avx512::GroupScales { scales, size });
    match w {
        DenseWeight::BF16(wb)
            if DenseImpl::Amx.available() && amx::supports(k, scaled.as_ref()) =>
        {
            amx::gemm(x, rows, wb, n, k, out, ldo, scaled)
        }
        _ => avx512::gemm(x, rows, w, n, k, out, ldo, scaled),
    }
}

/// The scalar reference: plain loops, f32 accumulation in index order.
/// Shapes: `x` `[rows, k]`, `w` `[n, k]`, `out` `[rows, n]`.
pub fn matmul_ref(x: &[f32], rows: usize, w: DenseWeight<'_>, n: usize, k: usize, out: &mut [f32]) {
    for r in 0..rows {
        for j in 0..n {
            out[r * n + j] = (0..k).map(|i| x[r * k + i] * w.get(j * k + i)).sum();
        }
    }
}

/// Output columns one task computes; the result is written column-block by column-block.
const COLS_PER_TASK: usize = 24;

/// The streaming (GEMV) path of the AVX2 implementation (portable if the CPU lacks AVX2),
/// whatever `rows` is (benchmarks compare the paths). Shapes as [`matmul`].
pub fn gemv(x: &[f32], rows: usize, w: DenseWeight<'_>, n: usize, k: usize, out: &mut [f32]) {
    gemv_impl(DenseImpl::Avx2.available(), x, rows, w, n, k, out);
}

/// [`gemv`] with the AVX2 kernels (`simd`, which the caller has checked are available) or the
/// scalar fallback.
fn gemv_impl(
    simd: bool,
    x: &[f32],
    rows: usize,
    w: DenseWeight<'_>,
    n: usize,
    k: usize,
    out: &mut [f32],
) {
    // Tasks own disjoint column ranges; each writes a [rows, cols] scratch then scatters it.
    let mut blocks: Vec<(usize, Vec<f32>)> = vec![(0, Vec::new()); n.div_ceil(COLS_PER_TASK)];
    crate::pool::for_each_chunk_mut(&mut blocks, 1, |b, slot| {
        slot[0] = {
            let j0 = b * COLS_PER_TASK;
            let j1 = (j0 + COLS_PER_TASK).min(n);
            let cols = j1 - j0;
            let mut acc = vec![0.0f32; rows * cols];
            // Register tiles of 3 weight rows x 4 activation rows where the batch allows
            // (7 loads feed 12 FMAs), single weight rows for the rest.
            let (tiled_j, tiled_r) = if simd && rows >= TILE_R {
                ((cols / TILE_W) * TILE_W, (rows / TILE_R) * TILE_R)
            } else {
                (0, 0)
            };
            let mut sums = [0.0f32; GEMV_BLOCK_ROWS];
            for jt in (0..tiled_j).step_by(TILE_W) {
                for r0 in (0..tiled_r).step_by(TILE_R) {
                    let t = tile(&x[r0 * k..(r0 + TILE_R) * k], k, w, (j0 + jt) * k);
                    for (dj, row) in t.iter().enumerate() {
                        for (dr, v) in row.iter().enumerate() {
                            acc[(r0 + dr) * cols + jt + dj] = *v;
                        }
                    }
                }
                for dj in 0..TILE_W {
                    let j = j0 + jt + dj;
                    for r0 in (tiled_r..rows).step_by(GEMV_BLOCK_ROWS) {
                        let nb = GEMV_BLOCK_ROWS.min(rows - r0);
                        let xs = &x[r0 * k..(r0 + nb) * k];
                        dot_rows(simd, xs, nb, k, w, j * k, &mut sums[..nb]);
                        for (r, v) in sums[..nb].iter().enumerate() {
                            acc[(r0 + r) * cols + jt + dj] = *v;
                        }
                    }
                }
            }
            for j in j0 + tiled_j..j1 {
                for r0 in (0..rows).step_by(GEMV_BLOCK_ROWS) {
                    let nr = GEMV_BLOCK_ROWS.min(rows - r0);
                    let xs = &x[r0 * k..(r0 + nr) * k];
                    dot_rows(simd, xs, nr, k, w, j * k, &mut sums[..nr]);
                    for (r, s) in sums[..nr].iter().enumerate() {
                        acc[(r0 + r) * cols + (j - j0)] = *s;
                    }
                }
            }
            (j0, acc)
        };
    });
    for (j0, acc) in blocks {
        let cols = acc.len() / rows;
        for r in 0..rows {
            out[r * n + j0..r * n + j0 + cols].copy_from_slice(&acc[r * cols..(r + 1) * cols]);
        }
    }
}

/// Weight rows per AVX2 register tile.
const TILE_W: usize = 3;
/// Activation rows per AVX2 register tile.
const TILE_R: usize = 4;

/// `t[j][r] = x[r, :] · w[off + j*k ..][..k]` for a 3 x 4 tile; only called with AVX2 available.
fn tile(x: &[f32], k: usize, w: DenseWeight<'_>, off: usize) -> [[f32; TILE_R]; TILE_W] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `gemv_impl` only tiles when the caller checked AVX2, FMA and F16C.
        unsafe { avx2::tile(x, k, w, off) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, k, w, off);
        unreachable!("tile() without SIMD support")
    }
}

/// `sums[r] = x[r, :] · w[off .. off + k]` for every activation row (`x` is `[rows, k]`).
fn dot_rows(
    simd: bool,
    x: &[f32],
    rows: usize,
    k: usize,
    w: DenseWeight<'_>,
    off: usize,
    sums: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only true when the caller checked AVX2, FMA and F16C.
        unsafe { avx2::dot_rows(x, rows, k, w, off, sums) };
        return;
    }
    let _ = simd;
    for (r, s) in sums.iter_mut().enumerate().take(rows) {
        *s = (0..k).map(|i| x[r * k + i] * w.get(off + i)).sum();
    }
}

/// The widen-and-gemm path of the AVX2 / portable implementations, whatever `rows` is
/// (benchmarks compare the paths). Shapes as [`matmul`].
pub fn gemm_panels(
    x: &[f32],
    rows: usize,
    w: DenseWeight<'_>,
    n: usize,
    k: usize,
    out: &mut [f32],
) {
    let mut panels: Vec<(usize, Vec<f32>)> = vec![(0, Vec::new()); n.div_ceil(PANEL)];
    crate::pool::for_each_chunk_mut(&mut panels, 1, |p, slot| {
        slot[0] = {
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
        };
    });
    for (j0, y) in panels {
        let cols = y.len() / rows;
        for r in 0..rows {
            out[r * n + j0..r * n + j0 + cols].copy_from_slice(&y[r * cols..(r + 1) * cols]);
        }
    }
}
