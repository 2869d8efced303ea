//! Every int4 path against the scalar reference on odd shapes.

use super::*;

fn xorshift(seed: u32) -> impl FnMut() -> u32 {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    }
}

pub(super) fn random_weights(k: usize, n: usize, gs: usize, seed: u32) -> Int4Weights {
    let mut rng = xorshift(seed);
    let groups = k.div_ceil(gs);
    let qweight = (0..n * k / 8).map(|_| rng()).collect();
    let scales = (0..n * groups)
        .map(|_| half::f16::from_f32(0.002 + (rng() % 1000) as f32 * 1e-4).to_bits())
        .collect();
    let zeros = (0..n * groups).map(|_| (rng() % 17) as u8).collect();
    Int4Weights::new(k, n, gs, qweight, scales, zeros).unwrap()
}

pub(super) fn random_x(len: usize, seed: u32) -> Vec<f32> {
    let mut rng = xorshift(seed);
    (0..len)
        .map(|_| (rng() % 20001) as f32 / 10000.0 - 1.0)
        .collect()
}

/// Compares `imp` with the reference; tolerance relative to `Σ |x w|` of each output.
fn check(k: usize, n: usize, gs: usize, rows: usize, imp: Int4Impl) {
    let w = random_weights(k, n, gs, (k * 31 + n * 7 + gs) as u32);
    let mut x = random_x(rows * k, rows as u32 + 99);
    if imp.rounds_to_bf16(rows) {
        // The products of bf16 activations and integer codes are exact in f32: only the
        // summation order and the per-group scaling differ from the reference on rounded x.
        x.iter_mut()
            .for_each(|v| *v = half::bf16::from_f32(*v).to_f32());
    }
    let mut want = vec![0.0; rows * n];
    matmul_reference(&w, &x, rows, &mut want).unwrap();
    let dense = w.dequantize();
    let mut got = vec![f32::NAN; rows * n];
    w.matmul_with(imp, &x, rows, &mut got).unwrap();
    for r in 0..rows {
        for c in 0..n {
            let mag: f32 = (0..k)
                .map(|i| (x[r * k + i] * dense[c * k + i]).abs())
                .sum();
            let (a, b) = (got[r * n + c], want[r * n + c]);
            assert!(
                (a - b).abs() <= 2e-6 * mag + 1e-7,
                "{imp:?} k={k} n={n} gs={gs} rows={rows} r={r} c={c}: {a} vs {b}"
            );
        }
    }
}

/// `(k, n, group)`: k not a multiple of the group, n not a multiple of 8 or of the column
/// block (shared with `q8_tests.rs`).
/// `(160, 21, 64)` ends in a half group with k a multiple of 32 (the AMX tile GEMM's case).
/// `(512, 9, 256)` has two-block groups for the AVX-512 GEMVs.
pub(super) const ODD_SHAPES: [(usize, usize, usize); 11] = [
    (512, 9, 256),
    (72, 13, 32),
    (64, 1, 64),
    (200, 37, 16),
    (256, 100, 128),
    (896, 45, 128),
    (40, 8, 8),
    (520, 70, 256),
    (200, 19, 128),
    (136, 5, 64),
    (160, 21, 64),
];

#[test]
fn every_path_matches_reference_on_odd_shapes() {
    for imp in Int4Impl::available()
        .into_iter()
        .filter(|&i| i != Int4Impl::Reference && !i.is_q8())
    {
        for &(k, n, gs) in &ODD_SHAPES {
            for rows in [1, 2, 3, 4, 5, 6, 7, 8, 9, 33] {
                check(k, n, gs, rows, imp);
            }
        }
    }
}

#[test]
fn large_shapes_split_over_threads() {
    for imp in Int4Impl::available()
        .into_iter()
        .filter(|&i| i != Int4Impl::Reference && !i.is_q8())
    {
        for rows in [1, 3, 8, 33] {
            check(512, 300, 128, rows, imp);
        }
    }
}

#[test]
fn concat_stacks_output_rows() {
    let a = random_weights(64, 24, 32, 1);
    let b = random_weights(64, 13, 32, 2);
    let ab = Int4Weights::concat(vec![a.clone(), b.clone()]).unwrap();
    assert_eq!(ab.n(), 37);
    let mut want = a.dequantize();
    want.extend(b.dequantize());
    assert_eq!(ab.dequantize(), want);
    let c = random_weights(64, 8, 16, 3);
    assert!(Int4Weights::concat(vec![a, c]).is_err());
}

#[test]
fn dequantize_follows_the_layout() {
    // Column 0: codes 0..8 in word 0, scale 0.5, zero 3.
    let s = half::f16::from_f32(0.5).to_bits();
    let w = Int4Weights::new(8, 1, 8, vec![0x7654_3210], vec![s], vec![3]).unwrap();
    let want: Vec<f32> = (0..8).map(|q| (q as f32 - 3.0) * 0.5).collect();
    assert_eq!(w.dequantize(), want);
}

#[test]
fn bad_shapes_are_errors() {
    assert!(Int4Weights::new(12, 1, 8, vec![0; 1], vec![0; 2], vec![0; 2]).is_err());
    assert!(Int4Weights::new(16, 1, 12, vec![0; 2], vec![0; 2], vec![0; 2]).is_err());
    assert!(Int4Weights::new(16, 1, 8, vec![0; 3], vec![0; 2], vec![0; 2]).is_err());
    assert!(Int4Weights::new(16, 1, 8, vec![0; 2], vec![0; 2], vec![0, 17]).is_err());
    let w = random_weights(16, 2, 8, 5);
    let mut out = vec![0.0; 2];
    assert!(w.matmul(&[0.0; 15], 1, &mut out).is_err());
}
