//! Int4 GEMM for prefill-sized batches (more than [`GEMV_MAX_ROWS`] rows) on AVX-512 hosts:
//! panels of output columns are dequantized into a buffer once per call and multiplied by the
//! dense AVX-512 GEMM, which writes the panel's columns of the output in place. Two precisions
//! ([`Panels`]):
//! - exact: `(q − z) · s` in f32 (exact, see the module doc of `int4`) through the f32 GEMM,
//!   which keeps the activations in f32: a dense f32 matmul on the dequantized weights, like
//!   every exact int4 path, only the summation order differs;
//! - bf16: the integer codes `q − z` (exact in bf16, |q − z| ≤ 16) through the block-scaled
//!   bf16 GEMM (`vdpbf16ps`, twice the f32 FMA rate), which rounds the activations to bf16
//!   and multiplies each group's f32 sum by its scale `s`. The weights stay exact; the
//!   activations are rounded as for dense bf16 weights.
//!
//! The dequantization is paid once per call per weight (`n k` values), against `rows n k`
//! multiply-adds. The panel buffers are kept per thread between calls: fresh multi-MB
//! allocations cost page faults and zeroing on every projection of every step.

use super::{Int4Weights, GEMV_MAX_ROWS};
use crate::dense::{gemm_avx512_strided, DenseImpl, DenseWeight};
use half::bf16;
use std::cell::RefCell;

/// Bytes of dequantized weights per panel: large enough that the per-panel costs (packing
/// the activations, one parallel region) stay small, small enough to stay in L3 while the GEMM
/// streams it once per 256-row block.
const PANEL_BYTES: usize = 4 << 20;

/// What the panels hold, and so which dense GEMM multiplies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Panels {
    /// `(q − z) · s` in f32, exact f32 activations.
    F32,
    /// `q − z` in bf16 with f32 group scales, bf16 activations.
    Bf16,
}

/// Per-thread panel buffers, grown on demand and reused by later calls.
#[derive(Default)]
struct Scratch {
    /// f32 panel `[np, k]` ([`Panels::F32`]).
    f32s: Vec<f32>,
    /// bf16 code panel `[np, k]` ([`Panels::Bf16`]).
    codes: Vec<bf16>,
    /// Group scales of the panel `[groups, np]` ([`Panels::Bf16`]).
    scales: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `v` with at least `len` elements (new ones `T::default()`; contents are overwritten).
fn grown<T: Default + Clone>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::default());
    }
    &mut v[..len]
}

/// Whether this path runs here (the dense AVX-512 GEMM is available).
pub(super) fn available() -> bool {
    DenseImpl::Avx512.available()
}

/// `out = x Wᵀ` for `rows > GEMV_MAX_ROWS`. Shapes as [`Int4Weights::matmul`], checked by the
/// caller.
pub(super) fn matmul(w: &Int4Weights, x: &[f32], rows: usize, out: &mut [f32], panels: Panels) {
    debug_assert!(rows > GEMV_MAX_ROWS && available());
    let (k, n) = (w.k(), w.n());
    let elem = if panels == Panels::F32 { 4 } else { 2 };
    let panel = (PANEL_BYTES / (elem * k))
        .clamp(48, n.max(48))
        .next_multiple_of(48)
        .min(n);
    // A call nested inside another on this thread (e.g. a serial fallback of `crate::pool`) gets its own buffers.
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => panels_into(w, x, rows, out, panels, panel, &mut s),
        Err(_) => panels_into(w, x, rows, out, panels, panel, &mut Scratch::default()),
    });
}

/// Columns one kernel-team task unpacks. A column of codes takes tens of nanoseconds; with one
/// column per task, claiming tasks (an atomic add on a line both cores write) cost more than
/// the work: 14-17 % of an AWQ batch-32 decode step on the Zen 4 host (perf).
const COLS_PER_TASK: usize = 16;

/// The panel loop of [`matmul`], `panel` columns at a time, with buffers from `s`.
fn panels_into(
    w: &Int4Weights,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
    panels: Panels,
    panel: usize,
    s: &mut Scratch,
) {
    let (k, n, groups) = (w.k(), w.n(), w.groups());
    for c0 in (0..n).step_by(panel) {
        let np = panel.min(n - c0);
        let o = &mut out[c0..];
        match panels {
            Panels::F32 => {
                let wf = grown(&mut s.f32s, np * k);
                crate::pool::for_each_chunk_mut(wf, k * COLS_PER_TASK, |t, cols| {
                    for (j, col) in cols.chunks_mut(k).enumerate() {
                        dequantize_column(w, c0 + t * COLS_PER_TASK + j, col);
                    }
                });
                gemm_avx512_strided(x, rows, DenseWeight::F32(wf), np, k, o, n, None);
            }
            Panels::Bf16 => {
                let wb = grown(&mut s.codes, np * k);
                crate::pool::for_each_chunk_mut(wb, k * COLS_PER_TASK, |t, cols| {
                    for (j, col) in cols.chunks_mut(k).enumerate() {
                        codes_column(w, c0 + t * COLS_PER_TASK + j, col);
                    }
                });
                let sp = grown(&mut s.scales, groups * np);
                for (g, sg) in sp.chunks_exact_mut(np).enumerate() {
                    for (j, v) in sg.iter_mut().enumerate() {
                        *v = w.scale_zero(c0 + j, g).0;
                    }
                }
                let scales = Some((&*sp, w.group_size()));
                gemm_avx512_strided(x, rows, DenseWeight::BF16(wb), np, k, o, n, scales);
            }
        }
    }
}

/// Column `c` of the dequantized matrix into `col` (`[k]`): `(q − z) · s`.
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

/// `CODES[z][q]`: the bf16 bit pattern of `q − z` for zeros `0..=16` and codes `0..16` (the
/// upper 16 entries repeat, so a row is one 32-lane `vpermw` table). Small integers are exact
/// in bf16: the top half of their f32.
const CODES: [[u16; 32]; 17] = {
    let mut t = [[0u16; 32]; 17];
    let mut z = 0;
    while z < 17 {
        let mut q = 0;
        while q < 32 {
            t[z][q] = (((q % 16) as f32 - z as f32).to_bits() >> 16) as u16;
            q += 1;
        }
        z += 1;
    }
    t
};

/// Column `c`'s integer codes `q − z` into `col` (`[k]`, bf16).
fn codes_column(w: &Int4Weights, c: usize, col: &mut [bf16]) {
    let (k, gs, n) = (w.k(), w.group_size(), w.n());
    let (qweight, _, zeros) = w.raw();
    let words = &qweight[c * (k / 8)..(c + 1) * (k / 8)];
    let zero = |g: usize| zeros[g * n + c] as usize;
    #[cfg(target_arch = "x86_64")]
    if gs.is_multiple_of(32) && k.is_multiple_of(gs) && available() {
        // SAFETY: AVX-512BW is part of the dense AVX-512 requirement (`available`); `col`
        // holds the 8 codes of each word of `words`; every group is whole 32-code runs.
        return unsafe { codes_column_avx512(words, gs, zero, col) };
    }
    for (g, (dst, src)) in col.chunks_mut(gs).zip(words.chunks(gs / 8)).enumerate() {
        let table = &CODES[zero(g)];
        for (d8, &word) in dst.chunks_exact_mut(8).zip(src) {
            for (j, d) in d8.iter_mut().enumerate() {
                *d = bf16::from_bits(table[((word >> (4 * j)) & 0xF) as usize]);
            }
        }
    }
}

/// [`codes_column`] for groups of whole 32-code runs (4 words), the whole column in one call
/// (a call per group, with its constant set-up, cost as much as the conversion itself: AWQ
/// batch-32 decode spent 17 % of its step here): each group's `vpermw` table row is picked by
/// its zero point `zero(g)`.
///
/// # Safety
/// AVX-512F/BW/VL available; `dst.len() == 8 * src.len()`, `gs` a multiple of 32 dividing
/// `dst.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn codes_column_avx512(
    src: &[u32],
    gs: usize,
    zero: impl Fn(usize) -> usize,
    dst: &mut [bf16],
) {
    use std::arch::x86_64::*;
    let runs_per_group = gs / 32;
    // SAFETY: run `r` reads words `4r..4r + 4` and writes codes `32r..32r + 32`, inside both.
    unsafe {
        let lo = _mm256_set1_epi16(0x000F);
        let hi = _mm256_set1_epi16(0x0F00);
        for g in 0..dst.len() / gs {
            let tab = _mm512_loadu_si512(CODES[zero(g)].as_ptr().cast());
            for r in g * runs_per_group..(g + 1) * runs_per_group {
                // 16 bytes of two codes each (code 2b in the low nibble of byte b, 2b + 1 in
                // the high one). Byte b goes to 16-bit lane b, its low nibble to the lane's
                // low byte and its high nibble to the lane's high byte: the 32 bytes are the
                // codes in order.
                let bytes = _mm_loadu_si128(src.as_ptr().add(4 * r).cast());
                let x = _mm256_cvtepu8_epi16(bytes);
                let pairs = _mm256_or_si256(
                    _mm256_and_si256(x, lo),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(x), hi),
                );
                let codes = _mm512_cvtepu8_epi16(pairs);
                let v = _mm512_permutexvar_epi16(codes, tab);
                _mm512_storeu_si512(dst.as_mut_ptr().add(32 * r).cast(), v);
            }
        }
    }
}
