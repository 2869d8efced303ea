//! Int4 matmul without intrinsics: the scalar reference (one weight at a time, f64 sums; the
//! oracle for every other path) and the portable blocked kernels (GEMV and tiled GEMM) that the
//! compiler vectorises for the baseline target.

use super::prepared::Prepared;
use super::{Int4Error, Int4Weights, GEMV_MAX_ROWS};

/// Reference `out = x Wᵀ`: dequantizes each weight as `(q - z) * s` and sums in f64.
/// Shapes: `x` `[rows, k]`, `out` `[rows, n]`.
pub fn matmul_reference(
    w: &Int4Weights,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
) -> Result<(), Int4Error> {
    let (k, n) = (w.k(), w.n());
    if x.len() != rows * k || out.len() != rows * n {
        return Err(Int4Error::Shape(format!(
            "reference: x {} / out {} for rows {rows}, k {k}, n {n}",
            x.len(),
            out.len()
        )));
    }
    for r in 0..rows {
        for c in 0..n {
            let mut acc = 0.0f64;
            for i in 0..k {
                let (s, z) = w.scale_zero(c, i / w.group_size());
                acc += x[r * k + i] as f64 * ((w.code(c, i) as f32 - z) * s) as f64;
            }
            out[r * n + c] = acc as f32;
        }
    }
    Ok(())
}

/// Dequantizes word `wi` of column `c` (input channels `8*wi..8*wi+8`) as `q * s + m`.
#[inline(always)]
fn word8(word: u32, s: f32, m: f32) -> [f32; 8] {
    std::array::from_fn(|j| ((word >> (4 * j)) & 0xF) as f32 * s + m)
}

/// Scale and `m = -z * s` (exact in f32) of column `c`, group `g`.
#[inline(always)]
pub(super) fn sm(w: &Int4Weights, c: usize, g: usize) -> (f32, f32) {
    let (s, z) = w.scale_zero(c, g);
    (s, -z * s)
}

/// Portable kernel for columns `c0..c1` into `out_t` `[c1 - c0, rows]`.
pub(super) fn cols_portable(
    w: &Int4Weights,
    p: &Prepared<'_>,
    c0: usize,
    c1: usize,
    out_t: &mut [f32],
) {
    if p.fast() {
        gemv_fast(w, p, c0, c1, out_t);
    } else if p.rows <= GEMV_MAX_ROWS {
        gemv(w, p.x, p.rows, c0, c1, out_t);
    } else {
        gemm(w, p.x, p.rows, c0, c1, out_t);
    }
}

/// GEMV on the transposed `x` with the zero point folded out (see `prepared.rs`): per 64-channel
/// block, 8 words shifted together give 8-lane code vectors that the compiler vectorises with
/// plain (SSE2) shifts.
fn gemv_fast(w: &Int4Weights, p: &Prepared<'_>, c0: usize, c1: usize, out_t: &mut [f32]) {
    let (k, k8, gs, groups, rows) = (w.k(), w.k() / 8, w.group_size(), w.groups(), p.rows);
    let (qw, _, _) = w.raw();
    for c in c0..c1 {
        let mut tot = [0.0f32; GEMV_MAX_ROWS];
        for g in 0..groups {
            let (i0, i1) = (g * gs, ((g + 1) * gs).min(k));
            let full = i0 + (i1 - i0) / 64 * 64;
            let mut acc = [[0.0f32; 8]; GEMV_MAX_ROWS];
            for blk in (i0..full).step_by(64) {
                let words = &qw[c * k8 + blk / 8..][..8];
                let mut qb = [0.0f32; 64];
                for (j, qj) in qb.chunks_exact_mut(8).enumerate() {
                    for (q, &w) in qj.iter_mut().zip(words) {
                        *q = ((w >> (4 * j)) & 0xF) as i32 as f32;
                    }
                }
                for (r, a) in acc.iter_mut().enumerate().take(rows) {
                    let xr = &p.xt[r * k + blk..][..64];
                    for (qc, xc) in qb.chunks_exact(8).zip(xr.chunks_exact(8)) {
                        for l in 0..8 {
                            a[l] += qc[l] * xc[l];
                        }
                    }
                }
            }
            for wi in full / 8..i1 / 8 {
                let word = qw[c * k8 + wi];
                for (r, a) in acc.iter_mut().enumerate().take(rows) {
                    let xr = &p.xt[r * k + wi * 8..][..8];
                    for j in 0..8 {
                        a[j] += ((word >> (4 * j)) & 0xF) as f32 * xr[j];
                    }
                }
            }
            let (s, m) = sm(w, c, g);
            for r in 0..rows {
                tot[r] += s * acc[r].iter().sum::<f32>() + m * p.xsum[r * groups + g];
            }
        }
        out_t[(c - c0) * rows..][..rows].copy_from_slice(&tot[..rows]);
    }
}

fn gemv(w: &Int4Weights, x: &[f32], rows: usize, c0: usize, c1: usize, out_t: &mut [f32]) {
    let (k, k8, gs) = (w.k(), w.k() / 8, w.group_size());
    let (qw, _, _) = w.raw();
    for c in c0..c1 {
        let mut acc = [[0.0f32; 8]; GEMV_MAX_ROWS];
        for g in 0..w.groups() {
            let (s, m) = sm(w, c, g);
            let (w0, w1) = (g * gs / 8, ((g + 1) * gs).min(k) / 8);
            for wi in w0..w1 {
                let wv = word8(qw[c * k8 + wi], s, m);
                for (r, a) in acc.iter_mut().enumerate().take(rows) {
                    let xr = &x[r * k + wi * 8..][..8];
                    for j in 0..8 {
                        a[j] += wv[j] * xr[j];
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate().take(rows) {
            out_t[(c - c0) * rows + r] = a.iter().sum();
        }
    }
}

/// Columns per dequantized tile and input channels per K chunk of the GEMM.
pub(super) const TILE_N: usize = 24;
pub(super) const TILE_K: usize = 256;

/// Dequantizes columns `t0..t0 + nb`, channels `kc0..kc0 + kc` into `tile` `[nb, kc]`.
pub(super) fn dequant_tile(
    w: &Int4Weights,
    t0: usize,
    nb: usize,
    kc0: usize,
    kc: usize,
    tile: &mut [f32],
) {
    let (k8, gs) = (w.k() / 8, w.group_size());
    let (qw, _, _) = w.raw();
    for ci in 0..nb {
        let c = t0 + ci;
        for wi in kc0 / 8..(kc0 + kc) / 8 {
            let (s, m) = sm(w, c, wi * 8 / gs);
            let dst = &mut tile[ci * kc + wi * 8 - kc0..][..8];
            dst.copy_from_slice(&word8(qw[c * k8 + wi], s, m));
        }
    }
}

fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for j in 0..8 {
            acc[j] += ca[j] * cb[j];
        }
    }
    acc.iter().sum()
}

fn gemm(w: &Int4Weights, x: &[f32], rows: usize, c0: usize, c1: usize, out_t: &mut [f32]) {
    let k = w.k();
    out_t.fill(0.0);
    let mut tile = vec![0.0f32; TILE_N * TILE_K];
    for t0 in (c0..c1).step_by(TILE_N) {
        let nb = TILE_N.min(c1 - t0);
        for kc0 in (0..k).step_by(TILE_K) {
            let kc = TILE_K.min(k - kc0);
            dequant_tile(w, t0, nb, kc0, kc, &mut tile);
            for r in 0..rows {
                let xr = &x[r * k + kc0..][..kc];
                for ci in 0..nb {
                    out_t[(t0 - c0 + ci) * rows + r] += dot8(xr, &tile[ci * kc..][..kc]);
                }
            }
        }
    }
}
