//! AVX-512 kernels of [`super::matmul`] (AVX-512F/BW/VL + AVX512_BF16): the bf16-weight GEMM
//! and GEMV built on `vdpbf16ps`, and an f32-FMA GEMM for f32 / f16 weights.
//!
//! GEMM ("broadcast" formulation, any `rows`): activations are packed once per call into lane
//! groups of 16 rows, `xp[g][q][lane]`, where a 32-bit element `q` is a pair of bf16 (bf16
//! weights: `x[r, 2q]` in the low half, `x[r, 2q + 1]` in the high half, rounded to nearest
//! even) or one f32 (`x[r, q]`, f32 / f16 weights). A weight row is already a run of such
//! elements (bf16 pairs are adjacent in `[n, k]` storage), so the micro-kernel broadcasts one
//! 32-bit weight element of each of `C` columns and multiplies it into `M` lane-group vectors:
//! `M x C` accumulators, each holding 16 rows of one output column, with no horizontal sums
//! and no weight repacking (f16 weights are widened a `C x KC` strip at a time into an f32
//! scratch). Blocking: the kernel team (`crate::pool`) over column panels, then row blocks of
//! `MG` groups, `KC`-element k blocks (partial sums kept in a per-panel `[cols][rows]` scratch), `C`-column strips that
//! stay in L1 while every row group of the block passes over them.
//!
//! The GEMV for bf16 weights and `rows <= BF16_DOT_MAX_ROWS` (dot-product formulation) is in
//! `avx512_dot.rs`.
//!
//! Callers check [`available`].

use super::DenseWeight;
use half::bf16;
use std::arch::x86_64::*;

/// Whether the CPU has AVX-512F, BW, VL and AVX512_BF16.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bf16")
}

/// Activation rows per lane group (one zmm of f32 accumulators).
const L: usize = 16;
/// 32-bit activation elements per k block (256 pairs = 512 k for bf16, 256 k for f32):
/// a 256-row block of packed activations is 256 KiB (L2), a 6-column weight strip 6 KiB (L1).
const KC: usize = 256;
/// Lane groups per row block (256 rows).
const MG: usize = 16;
/// Columns of the 8-lane (ymm, `rows <= 8`) tile: 12 independent `vdpbf16ps` chains cover its
/// latency at two per cycle.
const Y_COLS: usize = 12;

/// `out` shared by the tasks of one call; each task writes a disjoint set of columns.
#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub(super) *mut f32);
// SAFETY: tasks write disjoint elements through the pointer while the caller's `&mut` borrow of
// `out` outlives them (the team call returns before `matmul` does).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the `Send` wrapper, not the raw field).
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// [`super::matmul_with`] for [`super::DenseImpl::Avx512`]; shapes checked by the caller,
/// `rows, n, k >= 1`.
pub fn matmul(x: &[f32], rows: usize, w: DenseWeight<'_>, n: usize, k: usize, out: &mut [f32]) {
    match w {
        DenseWeight::BF16(wb) if rows <= super::BF16_DOT_MAX_ROWS => {
            super::avx512_dot::gemv_bf16(x, rows, wb, n, k, out)
        }
        DenseWeight::BF16(_) => gemm(x, rows, w, n, k, out, n, None),
        DenseWeight::F16(wh) if rows <= super::F16_DOT_MAX_ROWS => {
            super::avx512_dot::gemv_f16(x, rows, wh, n, k, out)
        }
        DenseWeight::F16(_) if rows <= super::F16_AVX2_MAX_ROWS => {
            super::gemv_impl(super::DenseImpl::Avx2.available(), x, rows, w, n, k, out)
        }
        _ if rows <= super::F32_AVX2_MAX_ROWS => {
            super::gemv_impl(super::DenseImpl::Avx2.available(), x, rows, w, n, k, out)
        }
        _ => gemm(x, rows, w, n, k, out, n, None),
    }
}

/// One micro-kernel call: an `M x C` tile over one k block.
struct Tile {
    /// Packed activations at (first lane group, first element of the k block).
    x: *const u32,
    /// u32 elements between lane groups.
    xs: usize,
    /// Weights of the strip's first column at the k block start (u16 units for bf16, f32 else).
    w: *const u8,
    /// Bytes between weight columns.
    ws: usize,
    /// Full 32-bit elements to process.
    steps: usize,
    /// bf16 with odd `k`, last block: one more element holding only `x[.., k-1]`.
    tail: bool,
    /// Valid columns of the strip (`1..=C`); columns beyond repeat the last one.
    cc: usize,
    /// Partial sums `[C][ld]` at this tile (read unless `first`, written unless `last`).
    y: *mut f32,
    /// Group scales of this k block for the strip's columns (`cc` values), or null. With
    /// scales the block's sums start from zero and `y + scale · sums` is the new partial sum
    /// (see [`GroupScales`]).
    scale: *const f32,
    ld: usize,
    first: bool,
    /// Last k block: write `out[r, col]` instead of `y`.
    last: bool,
    out: *mut f32,
    /// Output row stride, and the tile's first output row and column.
    n: usize,
    row0: usize,
    col0: usize,
    /// Total rows (lanes at or beyond it are padding).
    rows: usize,
    /// Prefetch the next strip's weights.
    pf: bool,
}

type TileFn = unsafe fn(&Tile);

/// Defines an `M x C` tile kernel: `$lanes` rows per vector of type `$ps` (f32) / `$si`
/// (packed activations), `$elem` the weight element type, `$load_w(ptr, q)` the broadcast of
/// weight element `q`, `$mul(acc, x, w)` the multiply-accumulate.
macro_rules! tile_kernel {
    ($name:ident, $elem:ty, $lanes:literal, $ps:ty, $si:ty, $zero:ident, $load_ps:ident,
     $store_ps:ident, $load_si:ident, $set1_ps:ident, $fmadd_ps:ident, $load_w:expr,
     $mul:expr) => {
        /// An `M x C` tile, see [`Tile`].
        ///
        /// # Safety
        /// AVX-512F/BW/VL/BF16 available; every pointer in `t` covers the ranges its doc
        /// describes for `M` lane groups, `C` columns (clamped to `cc`) and `steps (+ tail)`
        /// elements.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,fma")]
        unsafe fn $name<const M: usize, const C: usize>(t: &Tile) {
            const LN: usize = $lanes;
            // SAFETY: every access below stays inside the ranges the caller vouched for.
            unsafe {
                let mut acc: [[$ps; C]; M] = [[$zero(); C]; M];
                let scaled = !t.scale.is_null();
                if !t.first && !scaled {
                    for (m, a) in acc.iter_mut().enumerate() {
                        for (c, v) in a.iter_mut().enumerate().take(t.cc) {
                            *v = $load_ps(t.y.add(c * t.ld + m * LN));
                        }
                    }
                }
                // The odd-k tail (bf16 only) runs the same loop once more on the columns' last
                // weights, zero-extended into a local buffer (the pair's second half would be
                // the next row, or past the end of `w`).
                let mut tail = [0u32; C];
                let segments = if t.tail {
                    for (c, v) in tail.iter_mut().enumerate() {
                        let p = t.w.add(c.min(t.cc - 1) * t.ws) as *const u16;
                        *v = *p.add(2 * t.steps) as u32;
                    }
                    2
                } else {
                    1
                };
                for s in 0..segments {
                    let (w, ws, x, steps) = if s == 0 {
                        (t.w, t.ws, t.x, t.steps)
                    } else {
                        (tail.as_ptr() as *const u8, 4, t.x.add(t.steps * LN), 1)
                    };
                    let wc: [*const $elem; C] =
                        std::array::from_fn(|c| w.add(c.min(t.cc - 1) * ws) as *const $elem);
                    for q in 0..steps {
                        if s == 0 && q % 16 == 0 && t.pf {
                            // One line ahead per column of the next strip: the weight streams
                            // are 4 bytes a step, too thin for the hardware prefetcher.
                            for p in wc.iter() {
                                let a = (*p as *const u8).wrapping_add(C * ws + 4 * q);
                                _mm_prefetch::<_MM_HINT_T0>(a as *const i8);
                            }
                        }
                        let xv: [$si; M] = std::array::from_fn(|m| {
                            $load_si(x.add(m * t.xs + q * LN) as *const i32)
                        });
                        for (c, p) in wc.iter().enumerate() {
                            let b: $si = $load_w(*p, q);
                            for m in 0..M {
                                acc[m][c] = $mul(acc[m][c], xv[m], b);
                            }
                        }
                    }
                }
                if scaled {
                    for c in 0..t.cc.min(C) {
                        let s = $set1_ps(*t.scale.add(c));
                        for (m, a) in acc.iter_mut().enumerate() {
                            let prev = if t.first {
                                $zero()
                            } else {
                                $load_ps(t.y.add(c * t.ld + m * LN))
                            };
                            a[c] = $fmadd_ps(a[c], s, prev);
                        }
                    }
                }
                if !t.last {
                    // Partial sums go straight to `y` (padding lanes included).
                    for (m, a) in acc.iter().enumerate() {
                        for (c, v) in a.iter().enumerate().take(t.cc) {
                            $store_ps(t.y.add(c * t.ld + m * LN), *v);
                        }
                    }
                    return;
                }
                let mut buf = [[[0.0f32; 16]; C]; M];
                for (a, b) in acc.iter().zip(buf.iter_mut()) {
                    for (v, o) in a.iter().zip(b.iter_mut()) {
                        $store_ps(o.as_mut_ptr(), *v);
                    }
                }
                finish::<M, C>(&buf, LN, t);
            }
        }
    };
}

tile_kernel!(
    tile_bf16,
    u16,
    16,
    __m512,
    __m512i,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_loadu_epi32,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    // SAFETY (macro body): `p + 2q + 1` is inside the weight column (or the tail buffer).
    |p: *const u16, q: usize| _mm512_set1_epi32(p.add(2 * q).cast::<i32>().read_unaligned()),
    |a: __m512, x: __m512i, b: __m512i| _mm512_dpbf16_ps(
        a,
        std::mem::transmute::<__m512i, __m512bh>(x),
        std::mem::transmute::<__m512i, __m512bh>(b)
    )
);

tile_kernel!(
    tile_bf16_y,
    u16,
    8,
    __m256,
    __m256i,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_loadu_epi32,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    // SAFETY (macro body): as `tile_bf16`.
    |p: *const u16, q: usize| _mm256_set1_epi32(p.add(2 * q).cast::<i32>().read_unaligned()),
    |a: __m256, x: __m256i, b: __m256i| _mm256_dpbf16_ps(
        a,
        std::mem::transmute::<__m256i, __m256bh>(x),
        std::mem::transmute::<__m256i, __m256bh>(b)
    )
);

tile_kernel!(
    tile_f32,
    f32,
    16,
    __m512,
    __m512i,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_loadu_epi32,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    |p: *const f32, q: usize| _mm512_castps_si512(_mm512_set1_ps(*p.add(q))),
    |a: __m512, x: __m512i, b: __m512i| _mm512_fmadd_ps(
        _mm512_castsi512_ps(x),
        _mm512_castsi512_ps(b),
        a
    )
);

tile_kernel!(
    tile_f32_y,
    f32,
    8,
    __m256,
    __m256i,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_loadu_epi32,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    |p: *const f32, q: usize| _mm256_castps_si256(_mm256_set1_ps(*p.add(q))),
    |a: __m256, x: __m256i, b: __m256i| _mm256_fmadd_ps(
        _mm256_castsi256_ps(x),
        _mm256_castsi256_ps(b),
        a
    )
);

/// Writes the last k block's finished tile (`buf[m][c][lane]`, `lanes` valid lanes per vector):
/// its valid rows and columns to `out` (earlier blocks store their partial sums to `t.y` in
/// the kernel).
///
/// # Safety
/// As the tile kernels.
unsafe fn finish<const M: usize, const C: usize>(
    buf: &[[[f32; 16]; C]; M],
    lanes: usize,
    t: &Tile,
) {
    // SAFETY: `out` rows `< rows`, columns `< col0 + cc`.
    unsafe {
        for (m, b) in buf.iter().enumerate() {
            let r0 = t.row0 + m * lanes;
            if r0 < t.rows {
                for l in 0..lanes.min(t.rows - r0) {
                    let o = t.out.add((r0 + l) * t.n + t.col0);
                    for (c, v) in b.iter().enumerate().take(t.cc) {
                        *o.add(c) = v[l];
                    }
                }
            }
        }
    }
}

/// Fn pointers `[M=1, 2, 3, 4]` of one tile kernel at width `C`.
macro_rules! table {
    ($k:ident, $c:literal) => {
        [
            $k::<1, $c> as TileFn,
            $k::<2, $c> as TileFn,
            $k::<3, $c> as TileFn,
            $k::<4, $c> as TileFn,
        ]
    };
}

/// Packs `x` (`[rows, k]`) into `[groups][kq][L]` 32-bit elements (see the module doc).
pub(super) fn pack_x(x: &[f32], rows: usize, k: usize, pairs: bool, lanes: usize) -> Vec<u32> {
    let kq = if pairs { k.div_ceil(2) } else { k };
    let groups = rows.div_ceil(lanes);
    let mut xp = vec![0u32; groups * kq * lanes];
    crate::pool::for_each_chunk_mut(&mut xp, kq * lanes, |g, dst| {
        if lanes == 16 {
            let rs = g * lanes..(g * lanes + lanes).min(rows);
            // SAFETY: AVX-512F/BW/VL/BF16 are available (this module's GEMM only runs
            // then); `dst` is this group's `[kq][16]`, `x` holds rows `rs` of `k`.
            unsafe {
                super::avx512_pack::pack_group16(&x[rs.start * k..rs.end * k], k, pairs, dst)
            };
            return;
        }
        for l in 0..lanes.min(rows - g * lanes) {
            let xr = &x[(g * lanes + l) * k..(g * lanes + l + 1) * k];
            if pairs {
                for (q, p) in xr.chunks(2).enumerate() {
                    let lo = bf16::from_f32(p[0]).to_bits() as u32;
                    let hi = p.get(1).map_or(0, |&v| bf16::from_f32(v).to_bits() as u32);
                    dst[q * lanes + l] = lo | hi << 16;
                }
            } else {
                for (q, v) in xr.iter().enumerate() {
                    dst[q * lanes + l] = v.to_bits();
                }
            }
        }
    });
    xp
}

/// Per-(group, column) scales of a block-scaled weight: `w[j, i]` stands for
/// `scales[(i / size) * n + j] · w[j, i]`, so each group's sums are scaled in f32 before they
/// are added up (int4 prefill multiplies its exact integer codes `q − z` this way).
#[derive(Clone, Copy)]
pub(super) struct GroupScales<'a> {
    /// `[ceil(k / size), n]` f32.
    pub(super) scales: &'a [f32],
    /// Input channels per group, even (whole bf16 pairs).
    pub(super) size: usize,
}

/// The broadcast GEMM for any weight type; shapes as [`super::matmul`] except that output row
/// `r` starts at `out[r * ldo]` (`ldo >= n`). `scaled` (bf16 weights only) makes the k blocks
/// the scale groups.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    x: &[f32],
    rows: usize,
    w: DenseWeight<'_>,
    n: usize,
    k: usize,
    out: &mut [f32],
    ldo: usize,
    scaled: Option<GroupScales<'_>>,
) {
    debug_assert!(ldo >= n && out.len() >= (rows - 1) * ldo + n);
    let pairs = matches!(w, DenseWeight::BF16(_));
    debug_assert!(scaled.is_none_or(|g| pairs && g.size % 2 == 0 && g.size > 0));
    let kq = if pairs { k.div_ceil(2) } else { k };
    // 32-bit elements per k block.
    let kc = scaled.map_or(KC, |g| g.size / 2);
    let lanes = if rows <= 8 { 8 } else { L };
    let xp = pack_x(x, rows, k, pairs, lanes);
    let groups = rows.div_ceil(lanes);
    let (mt, c, tab): (usize, usize, [TileFn; 4]) = match (pairs, groups) {
        (true, _) if lanes == 8 => (1, Y_COLS, table!(tile_bf16_y, 12)),
        (false, _) if lanes == 8 => (1, Y_COLS, table!(tile_f32_y, 12)),
        (true, 1) => (1, 8, table!(tile_bf16, 8)),
        (true, 2) => (2, 8, table!(tile_bf16, 8)),
        (true, 3) => (3, 8, table!(tile_bf16, 8)),
        (true, _) => (4, 6, table!(tile_bf16, 6)),
        (false, 1) => (1, 8, table!(tile_f32, 8)),
        (false, 2) => (2, 8, table!(tile_f32, 8)),
        (false, 3) => (3, 8, table!(tile_f32, 8)),
        (false, _) => (4, 6, table!(tile_f32, 6)),
    };
    let strips = n.div_ceil(c);
    let per_panel = (strips / (8 * crate::pool::threads())).clamp(1, 32);
    let nc = per_panel * c;
    let ld = groups * lanes;
    let o = OutPtr(out.as_mut_ptr());
    // The partial sums `[cols][ld]` (when there is more than one k block) are reused by the
    // panels one thread runs in a call; the first k block writes them before any read.
    let y_len = if kq > kc { nc * ld } else { 0 };
    let init = || vec![0.0f32; y_len];
    crate::pool::for_each_init(n.div_ceil(nc), init, |y, pi| {
        let (j0, cols) = (pi * nc, nc.min(n - pi * nc));
        let mut strip = vec![
            0.0f32;
            if matches!(w, DenseWeight::F16(_)) {
                c * KC
            } else {
                0
            }
        ];
        for rb in (0..groups).step_by(MG) {
            let rb1 = (rb + MG).min(groups);
            for kb in (0..kq).step_by(kc) {
                let kb1 = (kb + kc).min(kq);
                let full = if pairs { kb1.min(k / 2) - kb } else { kb1 - kb };
                for ct in (0..cols).step_by(c) {
                    let cc = c.min(cols - ct);
                    let j = j0 + ct;
                    let (wp, ws) = match w {
                        DenseWeight::BF16(wb) => {
                            (wb[j * k + 2 * kb..].as_ptr() as *const u8, 2 * k)
                        }
                        DenseWeight::F32(wf) => (wf[j * k + kb..].as_ptr() as *const u8, 4 * k),
                        DenseWeight::F16(wh) => {
                            let len = kb1 - kb;
                            for (jj, s) in strip.chunks_mut(KC).take(cc).enumerate() {
                                let src = &wh[(j + jj) * k + kb..(j + jj) * k + kb1];
                                half::slice::HalfFloatSliceExt::convert_to_f32_slice(
                                    src,
                                    &mut s[..len],
                                );
                            }
                            (strip.as_ptr() as *const u8, 4 * KC)
                        }
                    };
                    for g in (rb..rb1).step_by(mt) {
                        let mm = mt.min(rb1 - g);
                        let t = Tile {
                            x: xp[(g * kq + kb) * lanes..].as_ptr(),
                            xs: kq * lanes,
                            w: wp,
                            ws,
                            steps: full,
                            tail: pairs && k % 2 == 1 && kb1 == kq,
                            cc,
                            y: y.as_mut_ptr().wrapping_add(ct * ld + g * lanes),
                            ld,
                            scale: scaled.map_or(std::ptr::null(), |gs| {
                                gs.scales[(kb / kc) * n + j..].as_ptr()
                            }),
                            first: kb == 0,
                            last: kb1 == kq,
                            out: o.get(),
                            n: ldo,
                            row0: g * lanes,
                            col0: j,
                            rows,
                            pf: true,
                        };
                        // SAFETY: AVX-512 is available (checked by `matmul_with`); `x` covers
                        // `mm` groups of `kq` elements from `kb`; the weight pointer covers `cc`
                        // columns of `ws` bytes from the block start through `kb1` (bf16: the
                        // tail reads only element `k-1`); `y` (allocated when there is more than
                        // one k block) covers `[cols][ld]`; `scale` (if any) covers columns
                        // `j..j + cc` of this block's group; `out` holds `rows` rows of stride
                        // `ldo` and this task alone writes columns `j0..j0 + cols`.
                        unsafe { tab[mm - 1](&t) };
                    }
                }
            }
        }
    });
}
