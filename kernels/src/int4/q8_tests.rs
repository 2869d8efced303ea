//! The int8-activation (Q8) paths: every SIMD kernel against the Q8 scalar reference, and the
//! Q8 result against the exact f32 reference within the activation rounding error.

use super::q8::{cols_scalar, quantize_block, Q8Prepared};
use super::tests::{random_weights, random_x};
use super::*;

/// Per output `(r, c)`: `Σ_g dx_g s_g (Σ |q xq| + |z Σ xq|)` (bounds the magnitude of the float
/// terms the Q8 paths sum: the reference rounds `dx s (Σ q xq − z Σ xq)` with an exact integer
/// bracket, the dot kernel the two parts separately and 16 lane partial sums of `Σ q xq`), `Σ_g 0.5 dx_g Σ_i |s (q − z)|` (the activation rounding bound)
/// and `Σ_i |x w|`.
fn magnitudes(w: &Int4Weights, x: &[f32], rows: usize) -> Vec<(f64, f64, f64)> {
    let (k, n, gs) = (w.k(), w.n(), w.group_size());
    let mut out = Vec::with_capacity(rows * n);
    let mut xq = vec![0i8; k];
    for r in 0..rows {
        let mut blocks = Vec::new();
        for g in 0..w.groups() {
            let (i0, i1) = (g * gs, ((g + 1) * gs).min(k));
            let (dx, sq) = quantize_block(&x[r * k + i0..r * k + i1], &mut xq[i0..i1]);
            blocks.push((i0, i1, dx as f64, sq as i64));
        }
        for c in 0..n {
            let (mut term, mut bound, mut mag) = (0.0, 0.0, 0.0);
            for (g, &(i0, i1, dx, sq)) in blocks.iter().enumerate() {
                let (s, z) = w.scale_zero(c, g);
                let (s, z) = (s as f64, z as f64);
                let dot: i64 = (i0..i1)
                    .map(|i| (w.code(c, i) as i64 * xq[i] as i64).abs())
                    .sum();
                term += (dx * s).abs() * (dot as f64 + (z * sq as f64).abs());
                for i in i0..i1 {
                    let wv = s * (w.code(c, i) as f64 - z);
                    bound += 0.5 * dx * wv.abs();
                    mag += (x[r * k + i] as f64 * wv).abs();
                }
            }
            out.push((term, bound, mag));
        }
    }
    out
}

/// Tolerance between two Q8 paths: the integer parts are exact, so only the f32 sums over `G`
/// groups differ: recursive summation of at most `2G` terms, the 16-lane reductions and the
/// `dx s`, `dx Σ xq` products err by at most `(2G + 20) u Σ |terms|` with `u = 2^-24`.
fn q8_tol(groups: usize, term: f64) -> f64 {
    (2.0 * groups as f64 + 20.0) * 2f64.powi(-24) * term + 1e-30
}

/// The exact paths' odd shapes plus a group of 40 (not a multiple of 32, the Q8 chunk), and
/// two-block groups of 256 for the dot kernel: whole (`k = 768`) and with a shorter last group
/// (`k = 384`, which goes to the column-tile kernel).
fn shapes() -> impl Iterator<Item = (usize, usize, usize)> {
    super::tests::ODD_SHAPES
        .into_iter()
        .chain([(328, 33, 40), (768, 21, 256), (384, 21, 256)])
}

fn q8_simd() -> Vec<Int4Impl> {
    Int4Impl::available()
        .into_iter()
        .filter(|&i| i.is_q8() && i != Int4Impl::Q8Reference)
        .collect()
}

fn check_against_q8_reference(imp: Int4Impl, k: usize, n: usize, gs: usize, rows: usize) {
    let w = random_weights(k, n, gs, (k * 31 + n * 7 + gs) as u32);
    let x = random_x(rows * k, rows as u32 + 7 * k as u32);
    let mut want = vec![0.0; rows * n];
    matmul_q8_reference(&w, &x, rows, &mut want).unwrap();
    let mut got = vec![f32::NAN; rows * n];
    if imp == Int4Impl::Q8Reference {
        // The scalar fallback on the kernel layout, standing in for a SIMD path.
        let p = Q8Prepared::new(&w, &x, rows);
        let mut t = vec![f32::NAN; rows * n];
        cols_scalar(&w, &p, 0, n, &mut t);
        for (c, col) in t.chunks_exact(rows).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                got[r * n + c] = v;
            }
        }
    } else {
        w.matmul_with(imp, &x, rows, &mut got).unwrap();
    }
    let mags = magnitudes(&w, &x, rows);
    for r in 0..rows {
        for c in 0..n {
            let (a, b) = (got[r * n + c] as f64, want[r * n + c] as f64);
            let tol = if rows > GEMV_MAX_ROWS {
                2e-6 * mags[r * n + c].2 + 1e-7
            } else {
                q8_tol(w.groups(), mags[r * n + c].0)
            };
            assert!(
                (a - b).abs() <= tol,
                "{imp:?} k={k} n={n} gs={gs} rows={rows} r={r} c={c}: {a} vs {b} (tol {tol:e})"
            );
        }
    }
}

#[test]
fn q8_paths_match_q8_reference_on_odd_shapes() {
    // `Q8Reference` here stands for the scalar kernel on the prepared layout (`cols_scalar`).
    let mut imps = q8_simd();
    imps.push(Int4Impl::Q8Reference);
    for imp in imps {
        for (k, n, gs) in shapes() {
            for rows in [1, 2, 3, 4, 5, 6, 7, 8, 33] {
                if imp == Int4Impl::Q8Reference && rows > GEMV_MAX_ROWS {
                    continue;
                }
                check_against_q8_reference(imp, k, n, gs, rows);
            }
        }
    }
}

#[test]
fn q8_large_shapes_split_over_threads() {
    for imp in q8_simd() {
        for rows in [1, 3, 8] {
            check_against_q8_reference(imp, 512, 300, 128, rows);
            check_against_q8_reference(imp, 1024, 97, 32, rows);
        }
    }
}

/// `|y_q8 − y| <= Σ_g 0.5 dx_g Σ_i |w_i|` (each activation moves by at most half a step; the
/// slack covers `dx` / `1/dx` rounding and the float sums), and the bound is far from vacuous.
#[test]
fn q8_error_is_bounded_by_activation_rounding() {
    let mut imps = q8_simd();
    imps.push(Int4Impl::Q8Reference);
    let (mut worst, mut rel2, mut cnt) = (0.0f64, 0.0f64, 0usize);
    for imp in imps {
        for (k, n, gs) in shapes() {
            for rows in [1, 3, 8] {
                let w = random_weights(k, n, gs, (k + n + gs) as u32);
                let x = random_x(rows * k, 3 + rows as u32);
                let mut exact = vec![0.0; rows * n];
                matmul_reference(&w, &x, rows, &mut exact).unwrap();
                let mut got = vec![f32::NAN; rows * n];
                w.matmul_with(imp, &x, rows, &mut got).unwrap();
                let mags = magnitudes(&w, &x, rows);
                for (i, &(term, bound, mag)) in mags.iter().enumerate() {
                    let err = (got[i] as f64 - exact[i] as f64).abs();
                    let tol = bound * (1.0 + 1e-5) + q8_tol(w.groups(), term) + 2e-6 * mag + 1e-7;
                    assert!(
                        err <= tol,
                        "{imp:?} k={k} n={n} gs={gs} rows={rows} out {i}: {} vs exact {} (bound {tol:e})",
                        got[i],
                        exact[i]
                    );
                    // Uniform activations: half a step is < 1 % of Σ |x w| on average.
                    assert!(bound <= 0.02 * mag + 1e-9, "bound {bound} vs Σ|xw| {mag}");
                    worst = worst.max(err / bound.max(1e-30));
                    rel2 += (err / mag.max(1e-30)).powi(2);
                    cnt += 1;
                }
            }
        }
    }
    eprintln!(
        "q8 vs exact: max |err| / bound = {worst:.3}, rms |err| / Σ|x w| = {:.2e} over {cnt} outputs",
        (rel2 / cnt as f64).sqrt()
    );
}

#[test]
fn quantizer_edge_cases() {
    let mut q = [0i8; 5];
    assert_eq!(quantize_block(&[0.0; 5], &mut q), (0.0, 0));
    assert_eq!(q, [0; 5]);
    let (dx, s) = quantize_block(&[1.0, -2.0, 0.5, 2.0, -0.0], &mut q);
    assert_eq!(q, [64, -127, 32, 127, 0]);
    assert_eq!((dx, s), (2.0 / 127.0, 96));
    assert!(quantize_block(&[1.0, f32::NAN], &mut q[..2]).0.is_nan());
    assert!(quantize_block(&[1.0, f32::INFINITY], &mut q[..2])
        .0
        .is_nan());
    // A NaN activation makes the outputs NaN on every Q8 path, as on the exact ones.
    let w = random_weights(64, 20, 32, 9);
    let mut x = random_x(64, 1);
    x[3] = f32::NAN;
    let mut imps = q8_simd();
    imps.push(Int4Impl::Q8Reference);
    for imp in imps {
        let mut out = vec![0.0; 20];
        w.matmul_with(imp, &x, 1, &mut out).unwrap();
        assert!(out.iter().all(|v| v.is_nan()), "{imp:?}: {out:?}");
    }
}

#[test]
fn best_q8_is_available_and_best_is_exact() {
    assert!(Int4Impl::available().contains(&Int4Impl::best_q8()));
    assert!(!Int4Impl::best().is_q8());
}
