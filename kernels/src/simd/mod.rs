//! 16-lane f32 vector primitives (the blocked attention kernel, the MLP activation), the
//! vectorised `exp`, and the AVX-512 16 x 16 register transpose.
//!
//! [`Isa`] is implemented three times: one `__m512` (AVX-512F), two `__m256` (AVX2 + FMA) and
//! a portable `[f32; 16]`. Every operation is lane-wise IEEE arithmetic with one rounding
//! (`fma` is fused on all three, via `f32::mul_add` in the portable one), and the horizontal
//! reductions use one fixed tree, so the three paths produce bit-identical results; they differ
//! only in speed. The kernel is written once, generic over [`Isa`], and compiled per path inside
//! a `#[target_feature]` function (see `blocked.rs`), into which these `#[inline(always)]`
//! methods inline. The x86 implementations are in `x86.rs`.

/// Width of a vector: key positions per tile, and the chunk of `head_dim` per accumulator.
pub(crate) const LANES: usize = 16;

/// One vector's worth of f32 in memory, cache-line aligned.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub(crate) struct Lanes(pub(crate) [f32; LANES]);

/// Which [`Isa`] implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// `__m512` (AVX-512F).
    Avx512,
    /// Two `__m256` (AVX2 + FMA).
    Avx2,
    /// `[f32; 16]` loops; any CPU.
    Portable,
}

impl Path {
    /// The fastest path this CPU supports (detected at run time).
    pub(crate) fn best() -> Path {
        [Path::Avx512, Path::Avx2]
            .into_iter()
            .find(|p| p.available())
            .unwrap_or(Path::Portable)
    }

    /// Whether this CPU can run the path.
    pub(crate) fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => x86::Avx512::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => x86::Avx2::detect().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Path::Avx512 | Path::Avx2 => false,
            Path::Portable => true,
        }
    }
}

/// Lane-wise operations on a 16-lane f32 vector `V`. A value of an implementing type is a token
/// proving the CPU supports it (only constructible after run-time detection).
pub(crate) trait Isa: Copy {
    /// The vector.
    type V: Copy;
    /// Queries whose scores the kernel computes together (1..=8): as many independent FMA
    /// chains as fit the registers next to the key row.
    const MAX_QUERIES: usize;
    /// Whether the P·V step can keep two queries' accumulators (8 vectors) in registers.
    const PV_PAIRS: bool;
    /// All lanes `x`.
    fn splat(self, x: f32) -> Self::V;
    /// Loads 16 lanes.
    fn load(self, a: &Lanes) -> Self::V;
    /// Stores 16 lanes.
    fn store(self, v: Self::V, a: &mut Lanes);
    /// `a + b`.
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a - b`.
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b`.
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a / b` (IEEE, correctly rounded).
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c` with one rounding.
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `if a > b { a } else { b }` (x86 `maxps`: `b` when either is NaN).
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// `if a < b { a } else { b }` (x86 `minps`).
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    /// Round to the nearest integer, ties to even.
    fn round(self, a: Self::V) -> Self::V;
    /// `2^n` for integer-valued `n` in `-126..=127`.
    fn pow2(self, n: Self::V) -> Self::V;
    /// `if a < b { x } else { y }` per lane.
    fn select_lt(self, a: Self::V, b: Self::V, x: Self::V, y: Self::V) -> Self::V;
    /// `v` with lanes `n..16` set to -inf.
    fn mask_from(self, v: Self::V, n: usize) -> Self::V;
    /// Largest lane.
    fn hmax(self, v: Self::V) -> f32;
    /// Transposes a 16 x 16 block: `out[i].0[j] = rows[j].0[i]` (pure data movement).
    fn transpose(self, rows: [&Lanes; LANES], out: &mut [Lanes; LANES]);
    /// Sum of the lanes in the fixed tree `v[i] + v[i + 8]`, then `+ [i + 4]`, `+ [i + 2]`,
    /// `+ [i + 1]`.
    fn hsum(self, v: Self::V) -> f32;
}

/// `ln(2^-126)`: below this `e^x` is not a normal f32, and [`exp`] returns 0.
const EXP_LO: f32 = -87.336_55;
/// Inputs above this are clamped to it (`e^88` ≈ 1.65e38, keeping `2^n` in range).
const EXP_HI: f32 = 88.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `n * LN2_HI` is exact for `|n| <= 2^9` (Cephes).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes `expf` minimax coefficients of `(e^r - 1 - r) / r^2` on `|r| <= ln(2) / 2`, highest
/// degree first (the last, 0.5000000120, rounds to 0.5 in f32).
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `e^x` per lane: `x = n ln2 + r` with `n = round(x log2 e)`, `e^r` by a degree-7 polynomial
/// (Cephes `expf`), times `2^n` built from the exponent bits.
///
/// Max relative error 2e-7 (asserted by `tests::exp_matches_std_within_2e7` over
/// `[-87.3, 88]`; measured 8.2e-8, about 1 ulp). Inputs below `ln(2^-126)` ≈ -87.34,
/// including -inf (masked keys), give exactly 0: their true value is below the smallest normal
/// f32, so the absolute error is < 1.2e-38. `exp(0) = 1` exactly. Inputs above 88 are clamped
/// to 88; NaN gives an unspecified finite value (the kernel never passes one for finite
/// inputs).
#[inline(always)]
pub(crate) fn exp<I: Isa>(isa: I, x: I::V) -> I::V {
    let xc = isa.min(isa.max(x, isa.splat(EXP_LO)), isa.splat(EXP_HI));
    let n = isa.round(isa.mul(xc, isa.splat(LOG2E)));
    let r = isa.fma(n, isa.splat(-LN2_HI), xc);
    let r = isa.fma(n, isa.splat(-LN2_LO), r);
    let mut p = isa.splat(EXP_POLY[0]);
    for &c in &EXP_POLY[1..] {
        p = isa.fma(p, r, isa.splat(c));
    }
    // e^r ≈ 1 + r + r² p(r)
    let er = isa.add(isa.fma(p, isa.mul(r, r), r), isa.splat(1.0));
    let y = isa.mul(er, isa.pow2(n));
    isa.select_lt(x, isa.splat(EXP_LO), isa.splat(0.0), y)
}

/// `[f32; 16]` loops: runs anywhere, same results as the SIMD paths.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

impl Portable {
    #[inline(always)]
    fn map(a: Lanes, f: impl Fn(f32) -> f32) -> Lanes {
        Lanes(a.0.map(f))
    }
    #[inline(always)]
    fn zip(a: Lanes, b: Lanes, f: impl Fn(f32, f32) -> f32) -> Lanes {
        Lanes(std::array::from_fn(|i| f(a.0[i], b.0[i])))
    }
}

impl Isa for Portable {
    type V = Lanes;
    const MAX_QUERIES: usize = 4;
    const PV_PAIRS: bool = false;
    #[inline(always)]
    fn transpose(self, rows: [&Lanes; LANES], out: &mut [Lanes; LANES]) {
        for (i, o) in out.iter_mut().enumerate() {
            o.0 = std::array::from_fn(|j| rows[j].0[i]);
        }
    }
    #[inline(always)]
    fn splat(self, x: f32) -> Lanes {
        Lanes([x; LANES])
    }
    #[inline(always)]
    fn load(self, a: &Lanes) -> Lanes {
        *a
    }
    #[inline(always)]
    fn store(self, v: Lanes, a: &mut Lanes) {
        *a = v;
    }
    #[inline(always)]
    fn add(self, a: Lanes, b: Lanes) -> Lanes {
        Self::zip(a, b, |x, y| x + y)
    }
    #[inline(always)]
    fn sub(self, a: Lanes, b: Lanes) -> Lanes {
        Self::zip(a, b, |x, y| x - y)
    }
    #[inline(always)]
    fn mul(self, a: Lanes, b: Lanes) -> Lanes {
        Self::zip(a, b, |x, y| x * y)
    }
    #[inline(always)]
    fn div(self, a: Lanes, b: Lanes) -> Lanes {
        Self::zip(a, b, |x, y| x / y)
    }
    #[inline(always)]
    fn fma(self, a: Lanes, b: Lanes, c: Lanes) -> Lanes {
        Lanes(std::array::from_fn(|i| a.0[i].mul_add(b.0[i], c.0[i])))
    }
    #[inline(always)]
    fn max(self, a: Lanes, b: Lanes) -> Lanes {
        Self::zip(a, b, |x, y| if x > y { x } else { y })
    }
    #[inline(always)]
    fn min(self, a: Lanes, b: Lanes) -> Lanes {
        Self::zip(a, b, |x, y| if x < y { x } else { y })
    }
    #[inline(always)]
    fn round(self, a: Lanes) -> Lanes {
        Self::map(a, f32::round_ties_even)
    }
    #[inline(always)]
    fn pow2(self, n: Lanes) -> Lanes {
        Self::map(n, |x| f32::from_bits(((x as i32 + 127) as u32) << 23))
    }
    #[inline(always)]
    fn select_lt(self, a: Lanes, b: Lanes, x: Lanes, y: Lanes) -> Lanes {
        Lanes(std::array::from_fn(|i| {
            if a.0[i] < b.0[i] {
                x.0[i]
            } else {
                y.0[i]
            }
        }))
    }
    #[inline(always)]
    fn mask_from(self, v: Lanes, n: usize) -> Lanes {
        Lanes(std::array::from_fn(|i| {
            if i < n {
                v.0[i]
            } else {
                f32::NEG_INFINITY
            }
        }))
    }
    #[inline(always)]
    fn hmax(self, v: Lanes) -> f32 {
        v.0.into_iter()
            .fold(f32::NEG_INFINITY, |m, x| if m > x { m } else { x })
    }
    #[inline(always)]
    fn hsum(self, v: Lanes) -> f32 {
        let mut a = v.0;
        let mut w = LANES / 2;
        while w > 0 {
            for i in 0..w {
                a[i] += a[i + w];
            }
            w /= 2;
        }
        a[0]
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{transpose16, Avx2, Avx512};

#[cfg(test)]
pub(crate) mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;
