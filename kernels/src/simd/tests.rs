//! Tests of the vector primitives: `exp` against `f64::exp`, the transpose, and bit equality
//! of every path.

use super::{exp, Isa, Lanes, Path, Portable, LANES};
#[cfg(target_arch = "x86_64")]
use super::{Avx2, Avx512};

/// The ISA paths this CPU can run.
fn paths() -> Vec<Path> {
    [Path::Avx512, Path::Avx2, Path::Portable]
        .into_iter()
        .filter(|p| p.available())
        .collect()
}

/// Deterministic values in `[-1, 1)` (xorshift), shared by the kernels' SIMD tests.
pub(crate) fn pseudo(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// `Isa::transpose` on every path is the plain transpose.
#[test]
fn transpose_is_exact_on_every_path() {
    fn run<I: Isa>(isa: I) -> [Lanes; LANES] {
        let rows: Vec<Lanes> = (0..LANES)
            .map(|j| Lanes(std::array::from_fn(|i| (j * 100 + i) as f32)))
            .collect();
        let mut out = [Lanes::default(); LANES];
        isa.transpose(std::array::from_fn(|j| &rows[j]), &mut out);
        out
    }
    for p in paths() {
        let out = match p {
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => run(Avx512::detect().expect("detected")),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => run(Avx2::detect().expect("detected")),
            _ => run(Portable),
        };
        for (i, o) in out.iter().enumerate() {
            for (j, &x) in o.0.iter().enumerate() {
                assert_eq!(x, (j * 100 + i) as f32, "{p:?} [{i}][{j}]");
            }
        }
    }
}

/// [`exp`] on one path, 16 inputs at a time.
fn exp_on(path: Path, xs: &[f32]) -> Vec<f32> {
    fn run<I: Isa>(isa: I, xs: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(xs.len());
        for c in xs.chunks(LANES) {
            let mut l = Lanes::default();
            l.0[..c.len()].copy_from_slice(c);
            let mut r = Lanes::default();
            isa.store(exp(isa, isa.load(&l)), &mut r);
            out.extend_from_slice(&r.0[..c.len()]);
        }
        out
    }
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => run(Avx512::detect().expect("detected"), xs),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => run(Avx2::detect().expect("detected"), xs),
        _ => run(Portable, xs),
    }
}

/// The documented bound of [`exp`]: relative error <= 2e-7 against `f64::exp` over
/// `[-87.3, 88]` (dense grid plus random points), 0 below ln(2^-126) and for -inf, exactly 1 at
/// 0; identical on every path.
#[test]
fn exp_matches_std_within_2e7() {
    let mut xs: Vec<f32> = (0..=400_000)
        .map(|i| -87.3 + (88.0 + 87.3) * i as f32 / 400_000.0)
        .collect();
    xs.extend(pseudo(100_000, 42).iter().map(|x| x * 20.0));
    xs.extend([0.0, -0.0, 1e-8, -1e-8, 88.0, -87.33]);
    let mut worst = 0.0f64;
    let first = exp_on(paths()[0], &xs);
    for (&x, &y) in xs.iter().zip(&first) {
        let want = (x as f64).exp();
        let rel = (y as f64 - want).abs() / want;
        worst = worst.max(rel);
        assert!(rel <= 2e-7, "exp({x}) = {y}, want {want} (rel {rel:e})");
    }
    assert!(worst > 0.0);
    for p in &paths()[1..] {
        let got = exp_on(*p, &xs);
        for ((x, a), b) in xs.iter().zip(&got).zip(&first) {
            assert_eq!(a.to_bits(), b.to_bits(), "exp({x}) on {p:?}");
        }
    }
    let special = [f32::NEG_INFINITY, -1e30, -100.0, -87.4, 0.0];
    for p in paths() {
        let got = exp_on(p, &special);
        assert_eq!(got, [0.0, 0.0, 0.0, 0.0, 1.0], "{p:?}");
    }
    // Relative error measured: printed with `--nocapture` for the doc's number.
    println!("exp max relative error {worst:e}");
}
