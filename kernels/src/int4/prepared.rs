//! The activations of one int4 GEMV call, rearranged once and shared by every column task.
//!
//! With `group_size` a multiple of 64, the fast GEMV paths read 8 packed words (64 consecutive
//! input channels of one column) at once and shift them together, so step `j` of block `b`
//! yields channel `64b + 8l + j` in lane `l`; `xt` stores `x` in that order. `xsum` holds
//! `Σ x` per group, for folding the zero point out of the inner loop
//! (`Σ x (q − z) s = s Σ x q − z s Σ x`).

use super::{Int4Weights, GEMV_MAX_ROWS};

/// `x` `[rows, k]` as given, plus (GEMV with 64-aligned groups only; empty otherwise)
/// `xt` `[rows, k]` with every full 64-channel block transposed as 8x8
/// (`xt[64b + 8j + l] = x[64b + 8l + j]`, the tail past the last full block as is) and
/// `xsum` `[rows, groups]`.
pub(super) struct Prepared<'a> {
    pub(super) x: &'a [f32],
    pub(super) xt: Vec<f32>,
    pub(super) xsum: Vec<f32>,
    pub(super) rows: usize,
}

impl<'a> Prepared<'a> {
    /// Prepares `x` (`[rows, k]`, length checked by the caller) for `w`.
    pub(super) fn new(w: &Int4Weights, x: &'a [f32], rows: usize) -> Self {
        let (k, gs) = (w.k(), w.group_size());
        let (mut xt, mut xsum) = (Vec::new(), Vec::new());
        if rows <= GEMV_MAX_ROWS && gs.is_multiple_of(64) && x.len() == rows * k {
            xt = x.to_vec();
            xsum.reserve(rows * w.groups());
            for r in 0..rows {
                for blk in 0..k / 64 {
                    let src = &x[r * k + blk * 64..][..64];
                    let dst = &mut xt[r * k + blk * 64..][..64];
                    for j in 0..8 {
                        for l in 0..8 {
                            dst[8 * j + l] = src[8 * l + j];
                        }
                    }
                }
                for g in 0..w.groups() {
                    xsum.push(
                        x[r * k + g * gs..r * k + ((g + 1) * gs).min(k)]
                            .iter()
                            .sum(),
                    );
                }
            }
        }
        Prepared { x, xt, xsum, rows }
    }

    /// Whether the transposed layout (and `xsum`) is available.
    pub(super) fn fast(&self) -> bool {
        !self.xt.is_empty()
    }
}
