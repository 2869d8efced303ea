//! AMX kernel of [`super::matmul`] (AMX-TILE + AMX-BF16, Sapphire Rapids and later): the
//! bf16-weight GEMM on `tdpbf16ps`, optionally block-scaled (the int4 prefill's exact codes).
//!
//! Same arithmetic contract as the AVX-512 bf16 GEMM: activations rounded once per call to bf16
//! (nearest even), products of two bf16 exact in f32, f32 accumulation (AMX flushes subnormal
//! inputs and outputs, as `vdpbf16ps` does).
//!
//! Formulation (the transpose of `y = x Wᵀ`, so neither operand is repacked per weight):
//! - tile A is 16 weight rows × 32 k (bf16), loaded straight from `[n, k]` storage (row stride
//!   `2k` bytes);
//! - tile B is the activations of 16 rows × 32 k in AMX's pair layout (`B[q][lane]` = the bf16
//!   pair `(x[lane, 2q], x[lane, 2q + 1])`), exactly the lane groups `avx512::pack_x` builds
//!   (`[groups][kq][16]` u32): 16 consecutive pair rows are one contiguous 1 KiB tile;
//! - `C[i][l] += Σ A[i][..] · B[..][l]` is output column `i` of activation row `l`; finished
//!   tiles are transposed in registers on the way to `out`.
//!
//! A block is 2 A tiles × 2 B tiles (32 columns × 32 rows, accumulators tmm0-3, A in tmm4-5,
//! B in tmm6-7). The kernel team (`crate::pool`) splits the columns into panels; a panel walks its 32-column blocks and,
//! inside each, every 32-row block, so its weights (32 · k bf16) stay in L2 while the
//! activations stream. Needs `k % 32 == 0` (and a group size that is a multiple of 32 when
//! scaled); callers fall back to the AVX-512 kernel otherwise. Columns past `n` in the last
//! block are read from a zero-padded copy.
//!
//! The tile registers are programmed with inline assembly (Rust's AMX intrinsics are not
//! stable); the compiler never uses them, so their state is ours between `asm!` blocks of one
//! task. Linux hands AMX state to a process only after `arch_prctl(ARCH_REQ_XCOMP_PERM)`,
//! which [`available`] requests once.

use super::avx512::{pack_x, GroupScales, OutPtr};
use half::bf16;
use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// k values per tile step (one 64-byte tile row of bf16).
pub(super) const K_STEP: usize = 32;
/// Rows (lanes) and columns per tile.
const T: usize = 16;

/// Whether AMX-TILE and AMX-BF16 are present, enabled by the OS (XCR0 tile bits), granted to
/// this process, and the AVX-512 kernels (activation packing, output transpose) run here.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| super::avx512::available() && cpu_has_amx() && request_permission())
}

/// CPUID leaf 7 (AMX-BF16: EDX bit 22, AMX-TILE: EDX bit 24) and XCR0 bits 17-18
/// (XTILECFG, XTILEDATA enabled by the OS).
fn cpu_has_amx() -> bool {
    // CPUID leaf 7 exists on every CPU with AVX-512 (checked by the caller first).
    let edx = __cpuid_count(7, 0).edx;
    if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
        return false;
    }
    let (lo, _hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 is available when OSXSAVE is set, which AVX-512 requires.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _hi, options(nomem, nostack))
    };
    lo & (3 << 17) == 3 << 17
}

/// Asks Linux for the AMX tile data state (`ARCH_REQ_XCOMP_PERM`, feature 18, process-wide).
fn request_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: this arch_prctl only extends the process's permitted xsave features.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// The 64-byte tile configuration (palette 1): all eight tiles 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// Whether [`gemm`] takes these shapes (`k` and the group size multiples of [`K_STEP`]).
pub(super) fn supports(k: usize, scales: Option<&GroupScales<'_>>) -> bool {
    k.is_multiple_of(K_STEP) && scales.is_none_or(|g| g.size.is_multiple_of(K_STEP))
}

/// `out[r * ldo + j] = Σ_i x[r, i] · w[j, i]` (scaled per group as [`GroupScales`] when
/// given). Shapes: `x` `[rows, k]`, `w` `[n, k]` bf16, `out` `(rows − 1) · ldo + n` values.
/// Callers check [`available`] and [`supports`]; `rows, n, k >= 1`.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    x: &[f32],
    rows: usize,
    w: &[bf16],
    n: usize,
    k: usize,
    out: &mut [f32],
    ldo: usize,
    scaled: Option<GroupScales<'_>>,
) {
    debug_assert!(available() && supports(k, scaled.as_ref()));
    debug_assert!(ldo >= n && out.len() >= (rows - 1) * ldo + n);
    let xp = pack_x(x, rows, k, true, T);
    let kq = k / 2;
    let groups = rows.div_ceil(T);
    let blocks = n.div_ceil(2 * T);
    // About 4 panels per thread (load balance) but at least one 32-column block each.
    let per_panel = blocks.div_ceil(4 * crate::pool::threads()).max(1);
    let o = OutPtr(out.as_mut_ptr());
    crate::pool::for_each(blocks.div_ceil(per_panel), |p| {
        let mut pad: Vec<bf16> = Vec::new();
        let mut acc = [[[0.0f32; T * T]; 2]; 2];
        // SAFETY: AMX is available and permitted (the caller checked `available`).
        unsafe { asm!("ldtilecfg [{0}]", in(reg) &CONFIG, options(nostack, readonly)) };
        for b in p * per_panel..((p + 1) * per_panel).min(blocks) {
            let j0 = b * 2 * T;
            let cols = (2 * T).min(n - j0);
            let na = cols.div_ceil(T);
            // Tile A sources: the weights in place, or a zero-padded copy of a short tile.
            let a: [*const bf16; 2] = std::array::from_fn(|t| {
                let c0 = j0 + t * T;
                if t >= na || c0 + T <= n {
                    w[c0.min(n - 1) * k..].as_ptr()
                } else {
                    pad.clear();
                    pad.extend_from_slice(&w[c0 * k..n * k]);
                    pad.resize(T * k, bf16::ZERO);
                    pad.as_ptr()
                }
            });
            for g in (0..groups).step_by(2) {
                let nb = (groups - g).min(2);
                let bp: [*const u32; 2] =
                    std::array::from_fn(|t| xp[((g + t.min(nb - 1)) * kq) * T..].as_ptr());
                let blk = Block {
                    a,
                    lda: 2 * k,
                    b: bp,
                    k,
                };
                // SAFETY: A pointers cover 16 rows of `k` bf16 (in place or padded), B
                // pointers `kq` pair rows of 16 lanes; the tile config is loaded.
                unsafe {
                    match (na, nb) {
                        (2, 2) => blk.run::<2, 2>(scaled, j0, n, &mut acc),
                        (2, _) => blk.run::<2, 1>(scaled, j0, n, &mut acc),
                        (_, 2) => blk.run::<1, 2>(scaled, j0, n, &mut acc),
                        _ => blk.run::<1, 1>(scaled, j0, n, &mut acc),
                    }
                }
                // SAFETY: this task alone writes columns `j0..j0 + cols`; rows < `rows`.
                unsafe { store(&acc, na, nb, o, ldo, g * T, rows, j0, cols) };
            }
        }
        // SAFETY: drops this thread's tile state (cheaper context switches).
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    });
}

/// One 32 × 32 (at most) block: A tiles at `a[t]` (row stride `lda` bytes), B tiles at `b[t]`
/// (1 KiB per 32 k), over `k` values.
struct Block {
    a: [*const bf16; 2],
    lda: usize,
    b: [*const u32; 2],
    k: usize,
}

impl Block {
    /// Runs the block into `acc[ta][tb]` (`[16 columns][16 rows]` f32 each): the plain sums, or
    /// with `scaled` the sum over groups of each group's tile scaled per column.
    ///
    /// # Safety
    /// AMX available with [`CONFIG`] loaded; the pointers cover what [`Block`] describes.
    unsafe fn run<const NA: usize, const NB: usize>(
        &self,
        scaled: Option<GroupScales<'_>>,
        j0: usize,
        n: usize,
        acc: &mut [[[f32; T * T]; 2]; 2],
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let Some(gs) = scaled else {
                self.steps::<NA, NB>(0, self.k / K_STEP);
                self.store_tiles::<NA, NB>(acc);
                return;
            };
            let mut part = [[[0.0f32; T * T]; 2]; 2];
            for (gi, g0) in (0..self.k).step_by(gs.size).enumerate() {
                let steps = (gs.size.min(self.k - g0)) / K_STEP;
                self.steps::<NA, NB>(g0 / K_STEP, steps);
                self.store_tiles::<NA, NB>(&mut part);
                for ta in 0..NA {
                    // Scales of the tile's 16 columns (clamped at `n`; the padding is zero).
                    let s: [f32; T] =
                        std::array::from_fn(|i| gs.scales[gi * n + (j0 + ta * T + i).min(n - 1)]);
                    for tb in 0..NB {
                        scale_add(&mut acc[ta][tb], &part[ta][tb], &s, gi == 0);
                    }
                }
            }
        }
    }

    /// Zeroes the accumulators and adds `steps` k steps from step `s0`.
    ///
    /// # Safety
    /// As [`Block::run`].
    #[inline(always)]
    unsafe fn steps<const NA: usize, const NB: usize>(&self, s0: usize, steps: usize) {
        // SAFETY: tile loads stay inside the ranges the caller vouched for.
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            let bs = 64usize;
            for s in s0..s0 + steps {
                let a0 = self.a[0].add(s * K_STEP);
                let b0 = self.b[0].add(s * K_STEP / 2 * T);
                asm!("tileloadd tmm4, [{p} + {s}*1]", p = in(reg) a0, s = in(reg) self.lda,
                     options(nostack, readonly));
                asm!("tileloadd tmm6, [{p} + {s}*1]", p = in(reg) b0, s = in(reg) bs,
                     options(nostack, readonly));
                asm!("tdpbf16ps tmm0, tmm4, tmm6", options(nostack, nomem));
                if NB == 2 {
                    let b1 = self.b[1].add(s * K_STEP / 2 * T);
                    asm!("tileloadd tmm7, [{p} + {s}*1]", p = in(reg) b1, s = in(reg) bs,
                         options(nostack, readonly));
                    asm!("tdpbf16ps tmm1, tmm4, tmm7", options(nostack, nomem));
                }
                if NA == 2 {
                    let a1 = self.a[1].add(s * K_STEP);
                    asm!("tileloadd tmm5, [{p} + {s}*1]", p = in(reg) a1, s = in(reg) self.lda,
                         options(nostack, readonly));
                    asm!("tdpbf16ps tmm2, tmm5, tmm6", options(nostack, nomem));
                    if NB == 2 {
                        asm!("tdpbf16ps tmm3, tmm5, tmm7", options(nostack, nomem));
                    }
                }
            }
        }
    }

    /// Stores the live accumulator tiles to `dst[ta][tb]` (tile `tmm(2 ta + tb)`).
    ///
    /// # Safety
    /// As [`Block::run`].
    #[inline(always)]
    unsafe fn store_tiles<const NA: usize, const NB: usize>(
        &self,
        dst: &mut [[[f32; T * T]; 2]; 2],
    ) {
        let bs = 64usize;
        // SAFETY: each destination is a 1 KiB array (16 rows of 64 bytes).
        unsafe {
            asm!("tilestored [{p} + {s}*1], tmm0", p = in(reg) dst[0][0].as_mut_ptr(),
                 s = in(reg) bs, options(nostack));
            if NB == 2 {
                asm!("tilestored [{p} + {s}*1], tmm1", p = in(reg) dst[0][1].as_mut_ptr(),
                     s = in(reg) bs, options(nostack));
            }
            if NA == 2 {
                asm!("tilestored [{p} + {s}*1], tmm2", p = in(reg) dst[1][0].as_mut_ptr(),
                     s = in(reg) bs, options(nostack));
                if NB == 2 {
                    asm!("tilestored [{p} + {s}*1], tmm3", p = in(reg) dst[1][1].as_mut_ptr(),
                         s = in(reg) bs, options(nostack));
                }
            }
        }
    }
}

/// `acc[i][l] = (first ? 0 : acc[i][l]) + s[i] · part[i][l]` (one fused multiply-add, so the
/// per-group scaling rounds as the AVX-512 kernel's does).
#[target_feature(enable = "avx512f")]
fn scale_add(acc: &mut [f32; T * T], part: &[f32; T * T], s: &[f32; T], first: bool) {
    for (i, &si) in s.iter().enumerate() {
        // SAFETY: row `i` of both 16 x 16 arrays is in bounds.
        unsafe {
            let p = _mm512_loadu_ps(part.as_ptr().add(i * T));
            let prev = if first {
                _mm512_setzero_ps()
            } else {
                _mm512_loadu_ps(acc.as_ptr().add(i * T))
            };
            let v = _mm512_fmadd_ps(p, _mm512_set1_ps(si), prev);
            _mm512_storeu_ps(acc.as_mut_ptr().add(i * T), v);
        }
    }
}

/// Writes the finished tiles of one block, transposed (`acc[ta][tb][i][l]` is output row
/// `row0 + 16 tb + l`, column `j0 + 16 ta + i`), keeping rows `< rows` and columns
/// `< j0 + cols`.
///
/// # Safety
/// AVX-512F available; `out` holds `rows` rows of stride `ldo` covering the block's columns.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn store(
    acc: &[[[f32; T * T]; 2]; 2],
    na: usize,
    nb: usize,
    out: OutPtr,
    ldo: usize,
    row0: usize,
    rows: usize,
    j0: usize,
    cols: usize,
) {
    for (ta, at) in acc.iter().enumerate().take(na) {
        let cc = (cols - ta * T).min(T);
        let mask: __mmask16 = if cc == T { !0 } else { (1u16 << cc) - 1 };
        for (tb, tile) in at.iter().enumerate().take(nb) {
            let r0 = row0 + tb * T;
            if r0 >= rows {
                continue;
            }
            // SAFETY: 16 rows of the 1 KiB tile; stores limited to valid rows and columns.
            unsafe {
                let v: [__m512; T] =
                    std::array::from_fn(|i| _mm512_loadu_ps(tile.as_ptr().add(i * T)));
                let t = crate::simd::transpose16(v);
                for (l, tl) in t.iter().enumerate().take(rows - r0) {
                    let dst = out.get().add((r0 + l) * ldo + j0 + ta * T);
                    _mm512_mask_storeu_ps(dst, mask, *tl);
                }
            }
        }
    }
}
