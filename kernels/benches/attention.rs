//! Paged-attention benchmarks at Qwen2.5-0.5B shapes (14 query heads, 2 KV heads, head_dim 64,
//! block size 16, f32 cache): the blocked kernel (`paged_attention`) against the previous
//! per-head one (`paged_attention_per_head`), measured alternately in the same run, in
//! GFLOP/s counting `4 * head_dim` FLOPs per (query head, visible key) (`q·k` and `p·v`).
//!
//! Cases: one 256-token prefill, 8 sequences x 256-token prefill, decode of 8 and 32 sequences
//! with 512 cached tokens each. Block tables are scrambled over the pool. The summary also
//! times the blocked kernel over a bf16 copy of the cache (`paged_attention_bf16`, what a bf16
//! model stores under `--kv-cache-dtype auto`). One layer's cache fits in L3 here, so these
//! are compute-side figures; in a model every layer's cache streams from DRAM and the halved
//! bytes of bf16 count for more.
//!
//! Run: `cargo bench -p candela-kernels --bench attention` (`-- summary` for the plain-text
//! summary only).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use candela_kernels::paged_attention::{paged_attention_bf16, paged_attention_per_head};
use candela_kernels::{paged_attention, AttnSeq, KvLayout};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::bf16;
use std::time::{Duration, Instant};

const N_HEADS: usize = 14;
const LAYOUT: KvLayout = KvLayout {
    block_size: 16,
    n_kv_heads: 2,
    head_dim: 64,
};

/// `(name, sequences, query tokens per sequence, context tokens per sequence)`.
const CASES: [(&str, usize, usize, usize); 4] = [
    ("prefill 1 x 256", 1, 256, 256),
    ("prefill 8 x 256", 8, 256, 256),
    ("decode 8 x 512", 8, 1, 513),
    ("decode 32 x 512", 32, 1, 513),
];

/// The kernel under test (both have the same signature).
type Kernel = fn(&[f32], &[f32], &[f32], &[AttnSeq<'_>], usize, KvLayout, f32, &mut [f32]);

const KERNELS: [(&str, Kernel); 2] = [
    ("per-head", paged_attention_per_head),
    ("blocked", paged_attention),
];

/// One case's inputs: caches, block tables, queries.
struct Case {
    n_seqs: usize,
    query_len: usize,
    context_len: usize,
    tables: Vec<Vec<u32>>,
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    /// The caches rounded to bf16.
    k16: Vec<bf16>,
    v16: Vec<bf16>,
    q: Vec<f32>,
}

impl Case {
    fn new(n_seqs: usize, query_len: usize, context_len: usize) -> Case {
        let bs = LAYOUT.block_size;
        let per_seq = context_len.div_ceil(bs);
        let n_blocks = n_seqs * per_seq;
        // 7919 is prime: a permutation of the pool unless it is a multiple of it.
        let mut ids = (0..n_blocks).map(|i| (i * 7919 % n_blocks) as u32);
        let tables = (0..n_seqs)
            .map(|_| ids.by_ref().take(per_seq).collect())
            .collect();
        let fill = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + seed * 104729) % 1000) as f32 * 2e-3 - 1.0)
                .collect()
        };
        let cache = n_blocks * bs * LAYOUT.slot_width();
        let (k_cache, v_cache) = (fill(cache, 1), fill(cache, 2));
        let half = |c: &[f32]| c.iter().map(|&x| bf16::from_f32(x)).collect();
        Case {
            n_seqs,
            query_len,
            context_len,
            tables,
            k16: half(&k_cache),
            v16: half(&v_cache),
            k_cache,
            v_cache,
            q: fill(n_seqs * query_len * N_HEADS * LAYOUT.head_dim, 3),
        }
    }

    fn seqs(&self) -> Vec<AttnSeq<'_>> {
        self.tables
            .iter()
            .enumerate()
            .map(|(i, t)| AttnSeq {
                query_start: i * self.query_len,
                query_len: self.query_len,
                context_len: self.context_len,
                block_table: t,
            })
            .collect()
    }

    /// FLOPs of one call: `4 * head_dim` per (query head, visible key).
    fn flops(&self) -> f64 {
        let first = self.context_len - self.query_len;
        let keys: usize = (0..self.query_len).map(|i| first + i + 1).sum();
        (4 * LAYOUT.head_dim * N_HEADS * self.n_seqs * keys) as f64
    }

    fn run(&self, kernel: Kernel, seqs: &[AttnSeq<'_>], out: &mut [f32]) {
        let scale = 1.0 / (LAYOUT.head_dim as f32).sqrt();
        let (q, k, v) = (&self.q, &self.k_cache, &self.v_cache);
        kernel(q, k, v, seqs, N_HEADS, LAYOUT, scale, out);
    }

    /// The blocked kernel over the bf16 caches.
    fn run_bf16(&self, seqs: &[AttnSeq<'_>], out: &mut [f32]) {
        let scale = 1.0 / (LAYOUT.head_dim as f32).sqrt();
        let (q, k, v) = (&self.q, &self.k16, &self.v16);
        paged_attention_bf16(q, k, v, seqs, N_HEADS, LAYOUT, scale, out);
    }

    /// Mean seconds per call of `kernel` (`None`: blocked over bf16) over at least `min`
    /// (and 3 calls).
    fn time_per_call(&self, kernel: Option<Kernel>, min: Duration) -> f64 {
        let seqs = self.seqs();
        let mut out = vec![0.0; self.q.len()];
        let (mut calls, t) = (0usize, Instant::now());
        while t.elapsed() < min || calls < 3 {
            match kernel {
                Some(k) => self.run(k, &seqs, &mut out),
                None => self.run_bf16(&seqs, &mut out),
            }
            calls += 1;
        }
        t.elapsed().as_secs_f64() / calls as f64
    }
}

/// Plain-text summary: per-head vs blocked, same run, measured alternately (best of 3 rounds of
/// 0.3 s each) because the machine is shared.
fn summary(_: &mut Criterion) {
    // `cargo test` runs bench targets without `--bench` (criterion's one-pass test mode): the
    // timed summary only means something under `cargo bench`, so it is skipped there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!(
        "paged attention, {N_HEADS} heads / {} KV heads, d {}, block {}, f32 cache, {} threads",
        LAYOUT.n_kv_heads,
        LAYOUT.head_dim,
        LAYOUT.block_size,
        rayon::current_num_threads()
    );
    for (name, n_seqs, query_len, context_len) in CASES {
        let case = Case::new(n_seqs, query_len, context_len);
        let mut best = [f64::INFINITY; 3];
        let kernels = [Some(KERNELS[0].1), Some(KERNELS[1].1), None];
        for _ in 0..3 {
            for (b, kernel) in best.iter_mut().zip(kernels) {
                *b = b.min(case.time_per_call(kernel, Duration::from_millis(300)));
            }
        }
        let gf = |t: f64| case.flops() / t / 1e9;
        println!(
            "{name:16}: per-head {:8.1} us {:6.1} GFLOP/s | blocked {:8.1} us {:6.1} GFLOP/s | x{:.2} | blocked, bf16 cache {:8.1} us {:6.1} GFLOP/s",
            best[0] * 1e6,
            gf(best[0]),
            best[1] * 1e6,
            gf(best[1]),
            best[0] / best[1],
            best[2] * 1e6,
            gf(best[2]),
        );
    }
}

/// Criterion view of every case, both kernels.
fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("paged_attention_qwen05b");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    for (name, n_seqs, query_len, context_len) in CASES {
        let case = Case::new(n_seqs, query_len, context_len);
        let seqs = case.seqs();
        let mut out = vec![0.0; case.q.len()];
        g.throughput(Throughput::Elements(case.flops() as u64));
        for (kname, kernel) in KERNELS {
            g.bench_with_input(BenchmarkId::new(kname, name), &(), |b, _| {
                b.iter(|| case.run(kernel, &seqs, &mut out))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, summary, bench);
criterion_main!(benches);
