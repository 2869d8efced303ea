//! Int4 matmul benchmarks at Qwen2.5-0.5B shapes (hidden 896, intermediate 4864, q|k|v 1152,
//! group 128): GEMV effective bandwidth (packed bytes read per second: nibbles + f16 scales +
//! u8 zeros) against this machine's read bandwidth measured in the same run, and GEMM GFLOP/s.
//!
//! Each GEMV call uses the next of several weight copies totalling > 256 MB, so the weights
//! come from DRAM, not from the 32 MiB L3 (the read bandwidth pass is over 1 GiB for the same
//! reason). The summary covers the exact f32-activation path ([`Int4Impl::best`]), the
//! int8-activation path ([`Int4Impl::best_q8`]) and, for the GEMM, the bf16-activation prefill
//! path ([`Int4Impl::best_bf16`]). Run:
//! `cargo bench -p candela-kernels --bench int4` (`-- summary` for the plain-text summary only).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use candela_kernels::memory::ReadProbe;
use candela_kernels::{Int4Impl, Int4Weights};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant};

const SHAPES: [(usize, usize); 3] = [(896, 4864), (4864, 896), (896, 1152)];
const GROUP: usize = 128;

fn weights(k: usize, n: usize, seed: u32) -> Int4Weights {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    let mut rng = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let groups = k.div_ceil(GROUP);
    let q = (0..n * k / 8).map(|_| rng()).collect();
    let s = (0..n * groups)
        .map(|_| half::f16::from_f32(0.01).to_bits())
        .collect();
    let z = (0..n * groups).map(|_| (rng() % 16) as u8).collect();
    Int4Weights::new(k, n, GROUP, q, s, z).expect("valid shapes")
}

/// Enough copies of a `[n, k]` matrix to exceed 256 MB (8x the L3).
fn copies(k: usize, n: usize) -> Vec<Int4Weights> {
    let one = weights(k, n, 1).packed_bytes();
    (0..(256usize << 20).div_ceil(one).max(2))
        .map(|i| weights(k, n, i as u32 + 1))
        .collect()
}

/// Mean seconds per multiply over at least `min_time`, cycling through the copies.
fn time_per_call(ws: &[Int4Weights], rows: usize, imp: Int4Impl, min_time: Duration) -> f64 {
    let (k, n) = (ws[0].k(), ws[0].n());
    let x: Vec<f32> = (0..rows * k).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
    let mut out = vec![0.0; rows * n];
    let (mut calls, t) = (0usize, Instant::now());
    while t.elapsed() < min_time || calls < ws.len() {
        ws[calls % ws.len()]
            .matmul_with(imp, &x, rows, &mut out)
            .expect("shapes match");
        calls += 1;
    }
    t.elapsed().as_secs_f64() / calls as f64
}

fn gemv(c: &mut Criterion) {
    let mut g = c.benchmark_group("int4_gemv");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for (k, n) in SHAPES {
        let ws = copies(k, n);
        let x: Vec<f32> = (0..8 * k).map(|i| (i % 7) as f32 * 0.1).collect();
        for rows in [1, 4, 8] {
            g.throughput(Throughput::Bytes(ws[0].packed_bytes() as u64));
            let mut out = vec![0.0; rows * n];
            let mut i = 0;
            g.bench_with_input(
                BenchmarkId::new(format!("k{k}_n{n}"), rows),
                &rows,
                |b, &rows| {
                    b.iter(|| {
                        i += 1;
                        ws[i % ws.len()]
                            .matmul(&x[..rows * k], rows, &mut out)
                            .expect("shapes match");
                    })
                },
            );
        }
    }
    g.finish();
}

fn gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("int4_gemm");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for (k, n) in SHAPES {
        let w = weights(k, n, 7);
        for rows in [33, 128] {
            let x: Vec<f32> = (0..rows * k).map(|i| (i % 7) as f32 * 0.1).collect();
            let mut out = vec![0.0; rows * n];
            g.throughput(Throughput::Elements((2 * rows * k * n) as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("k{k}_n{n}_flop"), rows),
                &rows,
                |b, &rows| b.iter(|| w.matmul(&x, rows, &mut out).expect("shapes match")),
            );
        }
    }
    g.finish();
}

/// Plain-text summary: GEMV effective bandwidth as a percentage of the read bandwidth. The
/// machine is shared, so bandwidth (one pass over 1 GiB) and kernel (0.3 s) are measured
/// alternately, 7 rounds per case, and the best of each so far is reported (the perf doc's
/// "best-of in quiet windows"); 5 bandwidth passes come first so the first shape's percentages
/// are not against a cold figure.
fn summary(_: &mut Criterion) {
    // 1 GiB (32x the L3), like `measure_read_bandwidth` in the server crate.
    let probe = ReadProbe::new(1 << 30);
    let mut bw = probe.best_of(5);
    println!(
        "read bandwidth, first 5 passes over 1 GiB: {:.1} GB/s",
        bw / 1e9
    );
    // `INT4_BENCH_Q8=1`: only the exact AVX2 and Q8 GEMV cases (no portable, no GEMM).
    let q8_only = std::env::var_os("INT4_BENCH_Q8").is_some();
    let all = [
        (Int4Impl::Portable, &[1, 8][..]),
        (Int4Impl::best(), &[1, 4, 8][..]),
        (Int4Impl::best_q8(), &[1, 4, 8][..]),
    ];
    let cases = if q8_only { &all[1..] } else { &all[..] };
    for (k, n) in SHAPES {
        let ws = copies(k, n);
        let bytes = ws[0].packed_bytes() as f64;
        for &(imp, rows_list) in cases {
            for &rows in rows_list {
                let mut t = f64::INFINITY;
                for _ in 0..7 {
                    bw = bw.max(probe.pass());
                    t = t.min(time_per_call(&ws, rows, imp, Duration::from_millis(300)));
                }
                println!(
                    "gemv {imp:?} k={k} n={n} rows={rows}: {:.1} us, {:.1} GB/s packed = {:.0} % of {:.1} GB/s read bandwidth",
                    t * 1e6,
                    bytes / t / 1e9,
                    100.0 * bytes / t / bw,
                    bw / 1e9
                );
            }
        }
        for rows in [33, 128, 256] {
            if q8_only {
                break;
            }
            let mut imps = vec![Int4Impl::best()];
            if Int4Impl::best_bf16() != Int4Impl::best() {
                imps.push(Int4Impl::best_bf16());
            }
            for imp in imps {
                let t = (0..3)
                    .map(|_| time_per_call(&ws[..1], rows, imp, Duration::from_millis(500)))
                    .fold(f64::INFINITY, f64::min);
                println!(
                    "gemm {imp:?} k={k} n={n} rows={rows}: {:.2} ms, {:.1} GFLOP/s",
                    t * 1e3,
                    2.0 * (rows * k * n) as f64 / t / 1e9
                );
            }
        }
    }
    println!(
        "read bandwidth ({} threads; kernels on {}), best of all rounds: {:.1} GB/s",
        rayon::current_num_threads(),
        candela_kernels::pool::threads(),
        bw / 1e9
    );
}

/// Compute ceiling without DRAM: one thread, one `[1152, 896]` copy (516 KB, L2-resident),
/// best of 3 x 0.2 s per case. Part of `summary`; `-- hot` runs only this. The kernels run
/// inside a one-task call of the kernel team, where (as for any nested call) they stay on the
/// calling thread; the team itself keeps all its threads for the summary.
fn hot() {
    let (k, n) = (896, 1152);
    let ws = vec![weights(k, n, 3)];
    let bytes = ws[0].packed_bytes() as f64;
    for imp in [Int4Impl::best(), Int4Impl::best_q8()] {
        for rows in [1, 4, 8] {
            let t = std::sync::Mutex::new(f64::INFINITY);
            candela_kernels::pool::for_each(1, |_| {
                let best = (0..3)
                    .map(|_| time_per_call(&ws, rows, imp, Duration::from_millis(200)))
                    .fold(f64::INFINITY, f64::min);
                *t.lock().expect("not poisoned") = best;
            });
            let t = t.into_inner().expect("not poisoned");
            println!(
                "hot 1-thread {imp:?} k={k} n={n} rows={rows}: {:.1} us, {:.1} GB/s packed",
                t * 1e6,
                bytes / t / 1e9
            );
        }
    }
}

/// `INT4_CALLS=N`: exactly `N` Q8 GEMV calls per shape and row count (`INT4_ROWS`), cycling
/// through the DRAM copies (`INT4_CACHED=1`: one copy): A/B timing of two builds.
fn fixed_calls(calls: usize) {
    let rows_list: Vec<usize> = std::env::var("INT4_ROWS")
        .unwrap_or("1,4,8".into())
        .split(',')
        .map(|r| r.parse().expect("rows"))
        .collect();
    let cached = std::env::var_os("INT4_CACHED").is_some();
    for (k, n) in SHAPES {
        let mut ws = copies(k, n);
        if cached {
            ws.truncate(1);
        }
        for &rows in &rows_list {
            let x: Vec<f32> = (0..rows * k).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
            let mut out = vec![0.0; rows * n];
            let t = Instant::now();
            for i in 0..calls {
                ws[i % ws.len()]
                    .matmul_with(Int4Impl::best_q8(), &x, rows, &mut out)
                    .expect("shapes match");
            }
            println!(
                "fixed k={k} n={n} rows={rows}: {:.1} us/call",
                t.elapsed().as_secs_f64() * 1e6 / calls as f64
            );
        }
    }
}

fn summary_or_hot(c: &mut Criterion) {
    // `cargo test` runs bench targets without `--bench` (criterion's one-pass test mode): the
    // timed summaries only mean something under `cargo bench`, so they are skipped there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if let Some(calls) = std::env::var("INT4_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        fixed_calls(calls);
        return;
    }
    hot();
    if !std::env::args().any(|a| a == "hot") {
        summary(c);
    }
}

criterion_group!(benches, summary_or_hot, gemv, gemm);
criterion_main!(benches);
