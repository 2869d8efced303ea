//! Int8-activation ("Q8") int4 GEMV: the dynamic activation quantizer shared by every Q8 path,
//! the per-call activation layout the SIMD kernels read ([`Q8Prepared`]), and the scalar
//! reference of the Q8 math (the oracle for `vnni.rs`).
//!
//! Each activation row is quantized per weight group (block = `group_size` channels):
//! `dx = max|x| / 127`, `xq = round_ties_even(x * 127 / max|x|)` as i8, plus `Σ xq`. Then
//! `y[c] = Σ_g dx_g s_{g,c} (Σ_i q_i xq_i − z_{g,c} Σ xq_g)`: the bracket is an exact integer,
//! only the final float sum over groups is rounded. Batches of more than
//! [`GEMV_MAX_ROWS`](super::GEMV_MAX_ROWS) rows (prefill) keep exact f32 activations.

use super::{Int4Error, Int4Weights, GEMV_MAX_ROWS};

/// Quantizes one block `x` into `q` (same length): returns `(dx, Σ q)`. An all-zero block gives
/// `dx = 0`; a block with a non-finite value gives `dx = NaN` (so the outputs are NaN, as with
/// f32 activations). Every Q8 path uses this function, so all of them see identical `xq`.
#[inline(always)]
pub(super) fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    // Lane-wise max and "not finite" flags (8 lanes, so the loop vectorises); NaN and ±inf
    // both are not finite.
    let (mut m8, mut bad8) = ([0.0f32; 8], [false; 8]);
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            let a = c[l].abs();
            m8[l] = m8[l].max(a);
            bad8[l] |= !a.is_finite();
        }
    }
    let (mut amax, mut bad) = (0.0f32, false);
    for &v in chunks.remainder() {
        amax = amax.max(v.abs());
        bad |= !v.is_finite();
    }
    for l in 0..8 {
        amax = amax.max(m8[l]);
        bad |= bad8[l];
    }
    if bad {
        q.fill(0);
        return (f32::NAN, 0);
    }
    if amax == 0.0 {
        q.fill(0);
        return (0.0, 0);
    }
    let inv = 127.0 / amax;
    let mut sum = 0i32;
    for (d, &v) in q.iter_mut().zip(x) {
        // Round to nearest, ties to even, without a libm call (`round_ties_even` is `rintf`
        // on the baseline target): adding 1.5 * 2^23 leaves no fraction bits, so the FPU's
        // default rounding does it; exact for |v * inv| < 2^22. |v * inv| <= 127 up to one
        // rounding, so the clamp only guards against that ulp.
        const MAGIC: f32 = 12_582_912.0;
        let t = ((v * inv + MAGIC) - MAGIC).clamp(-127.0, 127.0) as i32;
        *d = t as i8;
        sum += t;
    }
    (amax / 127.0, sum)
}

/// Bytes of `xq` per group: the group's channels rounded up to 32 (one 4-word chunk).
fn group_pad(group_size: usize) -> usize {
    group_size.next_multiple_of(32)
}

/// Position of channel `j` (relative to its group's start) in the kernel layout: within each
/// 32-channel chunk, 16 bytes of even channels then 16 of odd ones, each word's 4 in order
/// (`8w + 2e` at byte `4w + e`), matching the low / high nibbles of the packed bytes.
#[inline]
pub(super) fn xq_index(j: usize) -> usize {
    let (t, w, e) = (j / 32, (j % 32) / 8, j % 8);
    32 * t + 16 * (e % 2) + 4 * w + e / 2
}

/// The quantized activations of one GEMV call (1..=8 rows), shared by every column task.
pub(super) struct Q8Prepared {
    /// Rows of `x`.
    pub(super) rows: usize,
    /// Bytes of `xq` per group (a multiple of 32, see [`xq_index`]).
    pub(super) gpad: usize,
    /// `[rows, groups, gpad]` quantized activations in the kernel layout, zero-padded.
    pub(super) xq: Vec<i8>,
    /// `[rows, groups]` block scales `dx`.
    pub(super) dx: Vec<f32>,
    /// `[rows, groups]` block sums `Σ xq`.
    pub(super) sumq: Vec<i32>,
}

impl Q8Prepared {
    /// Quantizes `x` (`[rows, k]`, length checked by the caller) for `w`.
    pub(super) fn new(w: &Int4Weights, x: &[f32], rows: usize) -> Self {
        let (k, gs, groups) = (w.k(), w.group_size(), w.groups());
        let gpad = group_pad(gs);
        let mut p = Q8Prepared {
            rows,
            gpad,
            xq: vec![0; rows * groups * gpad],
            dx: Vec::with_capacity(rows * groups),
            sumq: Vec::with_capacity(rows * groups),
        };
        let mut tmp = vec![0i8; gs];
        for r in 0..rows {
            for g in 0..groups {
                let (i0, i1) = (g * gs, ((g + 1) * gs).min(k));
                let q = &mut tmp[..i1 - i0];
                let (dx, sum) = quantize_block(&x[r * k + i0..r * k + i1], q);
                let dst = &mut p.xq[(r * groups + g) * gpad..][..gpad];
                // `xq_index` chunk by chunk: even channels to the first 16 bytes, odd ones to
                // the next 16 (`q`'s length is a multiple of 8; the rest stays zero).
                for (d, s) in dst.chunks_exact_mut(32).zip(q.chunks(32)) {
                    for (e, pair) in s.chunks_exact(2).enumerate() {
                        d[e] = pair[0];
                        d[16 + e] = pair[1];
                    }
                }
                p.dx.push(dx);
                p.sumq.push(sum);
            }
        }
        p
    }

    /// `xq` of row `r`, group `g` (`gpad` bytes in the kernel layout).
    #[inline]
    pub(super) fn block(&self, r: usize, g: usize, groups: usize) -> &[i8] {
        &self.xq[(r * groups + g) * self.gpad..][..self.gpad]
    }
}

/// Scalar kernel over a [`Q8Prepared`] for columns `c0..c1` into `out_t` `[c1 - c0, rows]`:
/// the fallback of the SIMD Q8 paths (same float order as theirs is not attempted).
pub(super) fn cols_scalar(
    w: &Int4Weights,
    p: &Q8Prepared,
    c0: usize,
    c1: usize,
    out_t: &mut [f32],
) {
    let (k, gs, groups) = (w.k(), w.group_size(), w.groups());
    for c in c0..c1 {
        for r in 0..p.rows {
            let mut y = 0.0f32;
            for g in 0..groups {
                let xb = p.block(r, g, groups);
                let dot: i32 = (g * gs..((g + 1) * gs).min(k))
                    .map(|i| w.code(c, i) as i32 * xb[xq_index(i - g * gs)] as i32)
                    .sum();
                let (s, z) = w.scale_zero(c, g);
                let d = dot - z as i32 * p.sumq[r * groups + g];
                y += d as f32 * (s * p.dx[r * groups + g]);
            }
            out_t[(c - c0) * p.rows + r] = y;
        }
    }
}

/// Q8 reference `out = x Wᵀ`: for 1..=[`GEMV_MAX_ROWS`] rows quantizes `x` with
/// [`quantize_block`] (natural channel order, independent of the kernel layout), takes the
/// integer dot products exactly and sums the groups in f64; more rows use the exact
/// [`matmul_reference`](super::matmul_reference), as the Q8 kernels do. Shapes as
/// [`Int4Weights::matmul`].
pub fn matmul_q8_reference(
    w: &Int4Weights,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
) -> Result<(), Int4Error> {
    let (k, n, gs, groups) = (w.k(), w.n(), w.group_size(), w.groups());
    if rows > GEMV_MAX_ROWS || x.len() != rows * k || out.len() != rows * n {
        return super::matmul_reference(w, x, rows, out);
    }
    let mut xq = vec![0i8; rows * k];
    let mut dx = vec![0.0f32; rows * groups];
    let mut sq = vec![0i32; rows * groups];
    for r in 0..rows {
        for g in 0..groups {
            let (i0, i1) = (r * k + g * gs, r * k + ((g + 1) * gs).min(k));
            (dx[r * groups + g], sq[r * groups + g]) = quantize_block(&x[i0..i1], &mut xq[i0..i1]);
        }
    }
    for r in 0..rows {
        for c in 0..n {
            let mut acc = 0.0f64;
            for g in 0..groups {
                let dot: i64 = (g * gs..((g + 1) * gs).min(k))
                    .map(|i| w.code(c, i) as i64 * xq[r * k + i] as i64)
                    .sum();
                let (s, z) = w.scale_zero(c, g);
                let d = dot - z as i64 * sq[r * groups + g] as i64;
                acc += dx[r * groups + g] as f64 * s as f64 * d as f64;
            }
            out[r * n + c] = acc as f32;
        }
    }
    Ok(())
}
