//! Dense matmul benchmarks at Qwen2.5-0.5B shapes (`k, n` = 896 x 4864 gate/up, 4864 x 896
//! down, 896 x 1152 q|k|v, 896 x 151936 LM head at small batches): the AVX2 implementation
//! (streaming GEMV up to `GEMV_MAX_ROWS`, widen-and-gemm beyond) against the AVX-512 one
//! (`vdpbf16ps` for bf16 weights, f32 FMA for f32 and f16 weights) and, where the CPU has it,
//! the AMX tile GEMM for bf16 beyond 8 rows, in GFLOP/s and, at one row, weight
//! GB/s against this machine's read bandwidth measured in the same run (rows-1 calls cycle
//! through weight copies totalling > 64 MiB, so the weights come from DRAM, not the 32 MiB L3).
//!
//! Run: `cargo bench -p candela-kernels --bench dense` (`-- summary` for the plain-text
//! summary only).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use candela_kernels::dense::{matmul_with, DenseImpl, DenseWeight};
use candela_kernels::memory::ReadProbe;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::{bf16, f16};
use std::time::{Duration, Instant};

const SHAPES: [(usize, usize); 3] = [(896, 4864), (4864, 896), (896, 1152)];
const LM_HEAD: (usize, usize) = (896, 151936);
const ROWS: [usize; 6] = [1, 8, 16, 32, 64, 256];

/// Weight precision of a case.
#[derive(Clone, Copy, PartialEq)]
enum Ty {
    F32,
    BF16,
    F16,
}

enum Store {
    F32(Vec<f32>),
    BF16(Vec<bf16>),
    F16(Vec<f16>),
}

impl Store {
    fn weight(&self) -> DenseWeight<'_> {
        match self {
            Store::F32(w) => DenseWeight::F32(w),
            Store::BF16(w) => DenseWeight::BF16(w),
            Store::F16(w) => DenseWeight::F16(w),
        }
    }
    fn bytes(&self) -> usize {
        match self {
            Store::F32(w) => w.len() * 4,
            Store::BF16(w) => w.len() * 2,
            Store::F16(w) => w.len() * 2,
        }
    }
}

fn weights(k: usize, n: usize, seed: usize, ty: Ty) -> Store {
    let v = (0..n * k).map(|i| ((i * 7919 + seed * 104729) % 1000) as f32 * 1e-4 - 0.05);
    match ty {
        Ty::F32 => Store::F32(v.collect()),
        Ty::BF16 => Store::BF16(v.map(bf16::from_f32).collect()),
        Ty::F16 => Store::F16(v.map(f16::from_f32).collect()),
    }
}

/// Enough copies of a `[n, k]` matrix to exceed 64 MiB (one if it alone does).
fn copies(k: usize, n: usize, ty: Ty) -> Vec<Store> {
    let one = weights(k, n, 0, ty).bytes();
    (0..(64usize << 20).div_ceil(one))
        .map(|i| weights(k, n, i, ty))
        .collect()
}

/// Mean seconds per multiply over at least `min_time`, cycling through the weight copies.
fn time_per_call(
    ws: &[Store],
    k: usize,
    n: usize,
    rows: usize,
    imp: DenseImpl,
    min: Duration,
) -> f64 {
    let x: Vec<f32> = (0..rows * k).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
    let mut out = vec![0.0; rows * n];
    let (mut calls, t) = (0usize, Instant::now());
    while t.elapsed() < min || calls < ws.len().max(2) {
        matmul_with(imp, &x, rows, ws[calls % ws.len()].weight(), n, k, &mut out);
        calls += 1;
    }
    t.elapsed().as_secs_f64() / calls as f64
}

/// Plain-text summary: AVX2 vs AVX-512, same run, measured alternately (best of 3 rounds of
/// 0.25 s each) because the machine is shared.
fn summary(_: &mut Criterion) {
    // `cargo test` runs bench targets without `--bench` (criterion's one-pass test mode): the
    // timed summary only means something under `cargo bench`, so it is skipped there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if !DenseImpl::Avx512.available() || !DenseImpl::Avx2.available() {
        println!("dense summary: needs both AVX2 and AVX-512 BF16");
        return;
    }
    // 512 MiB, 16x the L3.
    let probe = ReadProbe::new(512 << 20);
    let mut bw = probe.best_of(5);
    println!(
        "read bandwidth, first 5 passes over 512 MiB: {:.1} GB/s",
        bw / 1e9
    );
    let mut cases: Vec<(usize, usize, Ty, &[usize])> = SHAPES
        .iter()
        .map(|&(k, n)| (k, n, Ty::BF16, &ROWS[..]))
        .collect();
    cases.push((LM_HEAD.0, LM_HEAD.1, Ty::BF16, &[1, 4, 8, 16, 32, 64]));
    // The tied fp16 LM head of AWQ / GPTQ checkpoints.
    cases.push((LM_HEAD.0, LM_HEAD.1, Ty::F16, &[1, 4, 8]));
    cases.push((896, 4864, Ty::F32, &[1, 16, 64, 256]));
    for (k, n, wty, rows_list) in cases {
        let dram = copies(k, n, wty);
        let ty = match wty {
            Ty::F32 => "f32",
            Ty::BF16 => "bf16",
            Ty::F16 => "f16",
        };
        for &rows in rows_list {
            let ws = if rows == 1 { &dram[..] } else { &dram[..1] };
            let (mut old, mut new, mut amx) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
            for _ in 0..3 {
                let d = Duration::from_millis(250);
                old = old.min(time_per_call(ws, k, n, rows, DenseImpl::Avx2, d));
                new = new.min(time_per_call(ws, k, n, rows, DenseImpl::Avx512, d));
                if DenseImpl::Amx.available() && wty == Ty::BF16 {
                    amx = amx.min(time_per_call(ws, k, n, rows, DenseImpl::Amx, d));
                }
                if rows == 1 {
                    bw = bw.max(probe.pass());
                }
            }
            let gf = |t: f64| 2.0 * (rows * k * n) as f64 / t / 1e9;
            let mut line = format!(
                "{ty} k={k:5} n={n:6} rows={rows:3}: avx2 {:8.1} us {:6.1} GFLOP/s | avx512 {:8.1} us {:6.1} GFLOP/s | x{:.2}",
                old * 1e6,
                gf(old),
                new * 1e6,
                gf(new),
                old / new
            );
            if amx.is_finite() {
                line += &format!(
                    " | amx {:8.1} us {:6.1} GFLOP/s x{:.2} vs avx512",
                    amx * 1e6,
                    gf(amx),
                    new / amx
                );
            }
            if rows == 1 {
                let b = ws[0].bytes() as f64;
                line += &format!(
                    " | weights {:.1} vs {:.1} GB/s = {:.0} % vs {:.0} % of read bw",
                    b / old / 1e9,
                    b / new / 1e9,
                    100.0 * b / old / bw,
                    100.0 * b / new / bw
                );
            }
            println!("{line}");
        }
    }
    println!(
        "read bandwidth ({} threads), best of all rounds: {:.1} GB/s",
        rayon::current_num_threads(),
        bw / 1e9
    );
}

/// Criterion view of the bf16 gate/up shape over the batch sizes, both implementations.
fn bench(c: &mut Criterion) {
    let (k, n) = SHAPES[0];
    let w = weights(k, n, 0, Ty::BF16);
    let mut g = c.benchmark_group("dense_bf16_k896_n4864");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    for rows in ROWS {
        let x: Vec<f32> = (0..rows * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let mut out = vec![0.0f32; rows * n];
        g.throughput(Throughput::Elements((2 * rows * k * n) as u64));
        for imp in [DenseImpl::Avx2, DenseImpl::Avx512, DenseImpl::Amx] {
            if !imp.available() {
                continue;
            }
            g.bench_with_input(
                BenchmarkId::new(format!("{imp:?}"), rows),
                &rows,
                |b, &r| b.iter(|| matmul_with(imp, &x, r, w.weight(), n, k, &mut out)),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, summary, bench);
criterion_main!(benches);
