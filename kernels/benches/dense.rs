//! Dense bf16 matmul at the Qwen2.5-0.5B gate/up shape: the streaming GEMV path vs the
//! widen-and-gemm path over batch sizes, to place `GEMV_MAX_ROWS`. Reports weight bytes/s.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use candela_kernels::dense::{gemm_panels, gemv, DenseWeight};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::bf16;

fn bench(c: &mut Criterion) {
    let (n, k) = (4864usize, 896usize);
    let w: Vec<bf16> = (0..n * k)
        .map(|i| bf16::from_f32(((i * 7919) % 1000) as f32 * 1e-4 - 0.05))
        .collect();
    let mut g = c.benchmark_group("dense_bf16_4864x896");
    g.sample_size(10);
    g.throughput(Throughput::Bytes((n * k * 2) as u64));
    for rows in [1usize, 8, 16, 32, 64] {
        let x: Vec<f32> = (0..rows * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let mut out = vec![0.0f32; rows * n];
        g.bench_with_input(BenchmarkId::new("gemv", rows), &rows, |b, &r| {
            b.iter(|| gemv(&x, r, DenseWeight::BF16(&w), n, k, &mut out))
        });
        g.bench_with_input(BenchmarkId::new("gemm", rows), &rows, |b, &r| {
            b.iter(|| gemm_panels(&x, r, DenseWeight::BF16(&w), n, k, &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
