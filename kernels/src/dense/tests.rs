//! Tests of every available [`DenseImpl`] (and the old `gemv` / `gemm_panels` entry points)
//! against [`matmul_ref`] on odd shapes, with error bounds derived from the arithmetic.

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

/// Unit roundoff of f32 (round to nearest): a rounded operation's relative error is <= U32.
const U32: f64 = 1.0 / (1u64 << 24) as f64;
/// Unit roundoff of bf16 (8 significant bits): |bf16(x) - x| <= 2^-8 |x| for normal x.
const U_BF16: f64 = 1.0 / 256.0;

/// `γ_m = m u / (1 - m u)`: the relative bound on an f32 sum of `m` terms in any order.
fn gamma(m: usize) -> f64 {
    let mu = m as f64 * U32;
    mu / (1.0 - mu)
}

/// Per-output error bound for `got` vs [`matmul_ref`], given `s = Σ_i |x_i w_i|` (exact):
///
/// - exact f32 activations (f32 / f16 weights on every path, bf16 weights off AVX-512): both
///   sides sum the same `k` products in different orders, each side within `γ_{k+1} s` of the
///   exact sum (`+1` covers the reference's rounded products), so `|Δ| <= 2 γ_{k+1} s`;
/// - bf16 activations (bf16 weights on AVX-512): with `x̃ = bf16(x)`, `|x̃_i - x_i| <= 2^-8 |x_i|`
///   moves the exact sum by at most `2^-8 s`; the kernel's products of two bf16 are exact in
///   f32 and its sums are within `γ_k Σ|x̃_i w_i| <= γ_k (1 + 2^-8) s`; the reference adds
///   `γ_{k+1} s`. So `|Δ| <= (2^-8 + (2 + 2^-8) γ_{k+1}) s + k 2^-125` (the last term:
///   `vdpbf16ps` flushes subnormal inputs and outputs, each worth `< 2^-126`).
fn bound(s: f64, k: usize, bf16_activations: bool) -> f64 {
    if bf16_activations {
        (U_BF16 + (2.0 + U_BF16) * gamma(k + 1)) * s + k as f64 * 2f64.powi(-125)
    } else {
        2.0 * gamma(k + 1) * s
    }
}

/// `Σ_i |x[r, i] w[j, i]|` in f64 (exact enough: f64 carries every product exactly).
fn abs_dot(x: &[f32], w: DenseWeight<'_>, k: usize, r: usize, j: usize) -> f64 {
    (0..k)
        .map(|i| (x[r * k + i] as f64 * w.get(j * k + i) as f64).abs())
        .sum()
}

type Runner<'a> = (
    &'a str,
    &'a dyn Fn(&[f32], usize, DenseWeight<'_>, usize, usize, &mut [f32]),
);

fn check(rows: usize, n: usize, k: usize) {
    let x = data(rows * k, 1 + rows as u32);
    let wf = data(n * k, 2 + k as u32);
    let wb: Vec<bf16> = wf.iter().map(|&v| bf16::from_f32(v)).collect();
    let wh: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
    let xr: Vec<f32> = x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
    let runs: Vec<Runner<'_>> = vec![
        ("Portable", &|x, r, w, n, k, o| {
            matmul_with(DenseImpl::Portable, x, r, w, n, k, o)
        }),
        ("Avx2", &|x, r, w, n, k, o| {
            matmul_with(DenseImpl::Avx2, x, r, w, n, k, o)
        }),
        ("Avx512", &|x, r, w, n, k, o| {
            matmul_with(DenseImpl::Avx512, x, r, w, n, k, o)
        }),
        ("Amx", &|x, r, w, n, k, o| {
            matmul_with(DenseImpl::Amx, x, r, w, n, k, o)
        }),
        ("gemv", &gemv),
        ("gemm_panels", &gemm_panels),
        ("matmul", &matmul),
    ];
    for (name, run) in runs {
        let imp = match name {
            "Portable" => DenseImpl::Portable,
            "Avx512" => DenseImpl::Avx512,
            "Amx" => DenseImpl::Amx,
            "matmul" => DenseImpl::best(),
            _ => DenseImpl::Avx2,
        };
        if !imp.available() {
            continue;
        }
        for (kind, w) in [
            ("f32", DenseWeight::F32(&wf)),
            ("bf16", DenseWeight::BF16(&wb)),
            ("f16", DenseWeight::F16(&wh)),
        ] {
            let bf16_act = matches!(imp, DenseImpl::Avx512 | DenseImpl::Amx) && kind == "bf16";
            let mut got = vec![f32::NAN; rows * n];
            let mut want = vec![0.0; rows * n];
            let mut want_r = vec![0.0; rows * n];
            run(&x, rows, w, n, k, &mut got);
            matmul_ref(&x, rows, w, n, k, &mut want);
            matmul_ref(&xr, rows, w, n, k, &mut want_r);
            for r in 0..rows {
                for j in 0..n {
                    let (a, b) = (got[r * n + j] as f64, want[r * n + j] as f64);
                    let s = abs_dot(&x, w, k, r, j);
                    let tol = bound(s, k, bf16_act);
                    assert!(
                        (a - b).abs() <= tol,
                        "{name} {kind} rows {rows} n {n} k {k} at [{r}, {j}]: {a} vs {b} (tol {tol})"
                    );
                    if bf16_act {
                        // Against the reference on pre-rounded activations only the two
                        // summation orders differ: |Δ| <= 2 γ_{k+1} Σ|x̃ w|.
                        let b = want_r[r * n + j] as f64;
                        let tol = bound(abs_dot(&xr, w, k, r, j), k, false);
                        assert!(
                            (a - b).abs() <= tol,
                            "{name} {kind} vs rounded-x reference, rows {rows} n {n} k {k} at \
                             [{r}, {j}]: {a} vs {b} (tol {tol})"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn all_paths_match_reference_on_odd_shapes() {
    for &(rows, n, k) in &[
        (1, 1, 1),
        (1, 17, 13),
        (1, 70, 37),
        (2, 9, 33),
        (3, 33, 64),
        (3, 13, 100),
        (4, 3, 8),
        (5, 21, 70),
        (6, 19, 200),
        (7, 50, 19),
        (8, 40, 100),
        (8, 29, 515),
        (9, 65, 31),
        (12, 31, 129),
        (16, 20, 7),
        (17, 13, 45),
        (25, 29, 77),
        (33, 130, 72),
        (33, 7, 300),
        (48, 11, 9),
        (64, 20, 40),
        (65, 70, 33),
        (100, 9, 17),
        (100, 13, 515),
    ] {
        check(rows, n, k);
    }
}

#[test]
fn amx_tile_shapes() {
    // k a multiple of 32 (the AMX GEMM's condition), rows and n around the 16 / 32 tile edges
    // (partial B tiles, zero-padded A tiles), k from one tile step to many.
    for &(rows, n, k) in &[
        (9, 1, 32),
        (16, 16, 32),
        (17, 33, 64),
        (31, 17, 96),
        (32, 32, 32),
        (33, 47, 160),
        (48, 100, 288),
        (64, 64, 64),
        (97, 65, 1024),
    ] {
        check(rows, n, k);
    }
}

#[test]
fn many_panels_row_blocks_and_k_blocks() {
    // > 16 lane groups (row blocks), > 256 pairs (k blocks), many column panels.
    check(300, 200, 531);
    check(25, 1000, 61);
}

#[test]
fn degenerate_shapes() {
    for imp in [
        DenseImpl::Portable,
        DenseImpl::Avx2,
        DenseImpl::Avx512,
        DenseImpl::Amx,
    ] {
        if !imp.available() {
            continue;
        }
        let mut out = vec![1.0; 6];
        matmul_with(imp, &[], 2, DenseWeight::F32(&[]), 3, 0, &mut out);
        assert_eq!(out, [0.0; 6]);
        matmul_with(imp, &[], 0, DenseWeight::F32(&[1.0; 6]), 3, 2, &mut []);
    }
}

#[test]
fn bf16_activation_rounding_is_nearest_even() {
    // x = 1 + 2^-8 is a tie between bf16 1.0 and 1 + 2^-7: nearest even gives 1.0, so
    // x * 1.0 = 1.0 exactly on the bf16-activation path; 1 + 3 * 2^-8 rounds up to 1 + 2^-6.
    if !DenseImpl::Avx512.available() {
        return;
    }
    let w = [bf16::from_f32(1.0)];
    for rows in [1, 20] {
        for (xv, want) in [
            (1.0 + 1.0 / 256.0, 1.0),
            (1.0 + 3.0 / 256.0, 1.0 + 1.0 / 64.0),
        ] {
            let x = vec![xv; rows];
            let mut out = vec![0.0; rows];
            matmul_with(
                DenseImpl::Avx512,
                &x,
                rows,
                DenseWeight::BF16(&w),
                1,
                1,
                &mut out,
            );
            assert!(
                out.iter().all(|&o| o == want),
                "rows {rows}: {xv} -> {out:?}"
            );
        }
    }
}
