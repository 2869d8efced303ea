//! Tests of the paged-attention kernels: against dense references (f32 as before, f64 for the
//! shape sweeps), against the previous per-head kernel, across the ISA paths, and for the
//! batch invariance of a row's output.

use super::*;
use crate::simd::tests::pseudo;
use crate::simd::Path;

/// Dense causal attention of one sequence (queries at the last positions), the reference:
/// [`dense64`] at the usual `1/sqrt(d)` scale, rounded to f32.
#[allow(clippy::too_many_arguments)]
fn dense(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_q: usize,
    n_ctx: usize,
    nh: usize,
    nkv: usize,
    d: usize,
) -> Vec<f32> {
    let scale = 1.0 / (d as f32).sqrt();
    dense64(q, k, v, n_q, n_ctx, nh, nkv, d, scale)
        .into_iter()
        .map(|x| x as f32)
        .collect()
}

/// [`dense`] in f64 with an explicit `scale`: the "exact" answer for the sweeps.
#[allow(clippy::too_many_arguments)]
fn dense64(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_q: usize,
    n_ctx: usize,
    nh: usize,
    nkv: usize,
    d: usize,
    scale: f32,
) -> Vec<f64> {
    let mut out = vec![0.0; n_q * nh * d];
    for i in 0..n_q {
        let pos = n_ctx - n_q + i;
        for h in 0..nh {
            let kvh = h / (nh / nkv);
            let qh = &q[(i * nh + h) * d..][..d];
            let s: Vec<f64> = (0..=pos)
                .map(|p| {
                    let k = &k[(p * nkv + kvh) * d..][..d];
                    let dot: f64 = qh.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum();
                    dot * scale as f64
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            let o = &mut out[(i * nh + h) * d..][..d];
            for (p, w) in e.iter().enumerate() {
                for (j, o) in o.iter_mut().enumerate() {
                    *o += w / z * v[(p * nkv + kvh) * d + j] as f64;
                }
            }
        }
    }
    out
}

/// The ISA paths this CPU can run.
fn paths() -> Vec<Path> {
    [Path::Avx512, Path::Avx2, Path::Portable]
        .into_iter()
        .filter(|p| p.available())
        .collect()
}

/// A batch of sequences over one scattered, NaN-initialised f32 cache.
struct Fixture {
    layout: KvLayout,
    n_heads: usize,
    /// Per sequence: `(query_len, context_len)`.
    specs: Vec<(usize, usize)>,
    /// Per sequence: its keys and values, `[context_len, n_kv_heads * head_dim]`.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    tables: Vec<Vec<u32>>,
    kc: Vec<f32>,
    vc: Vec<f32>,
    /// `[rows, n_heads * head_dim]`, sequences in order.
    q: Vec<f32>,
    scale: f32,
}

impl Fixture {
    /// Keys and queries are uniform in `[-amp, amp]` (larger `amp`: peakier softmax), values in
    /// `[-1, 1]`. Blocks are handed out in a scrambled order; unused slots hold NaN, so a read
    /// outside `0..context_len` would show.
    fn new(
        layout: KvLayout,
        n_heads: usize,
        specs: &[(usize, usize)],
        seed: u32,
        amp: f32,
    ) -> Fixture {
        let (bs, w) = (layout.block_size, layout.slot_width());
        let n_blocks: usize = specs.iter().map(|s| s.1.div_ceil(bs)).sum::<usize>() + 3;
        // 7919 is prime, so `i * 7919 % n` is a permutation unless n is a multiple of it.
        let mut ids = (0..n_blocks).map(|i| (i * 7919 % n_blocks) as u32);
        let mut kc = vec![f32::NAN; n_blocks * bs * w];
        let mut vc = kc.clone();
        let (mut k, mut v, mut tables) = (vec![], vec![], vec![]);
        for (i, &(_, ctx)) in specs.iter().enumerate() {
            let seed = seed * 101 + i as u32 * 3;
            let ks: Vec<f32> = pseudo(ctx * w, seed).iter().map(|x| x * amp).collect();
            let vs = pseudo(ctx * w, seed + 1);
            let table: Vec<u32> = ids.by_ref().take(ctx.div_ceil(bs)).collect();
            let slots: Vec<u32> = (0..ctx)
                .map(|p| table[p / bs] * bs as u32 + (p % bs) as u32)
                .collect();
            reshape_and_cache(&ks, &vs, &mut kc, &mut vc, &slots, layout);
            k.push(ks);
            v.push(vs);
            tables.push(table);
        }
        let rows: usize = specs.iter().map(|s| s.0).sum();
        let q = pseudo(rows * n_heads * layout.head_dim, seed + 77)
            .iter()
            .map(|x| x * amp)
            .collect();
        Fixture {
            layout,
            n_heads,
            specs: specs.to_vec(),
            k,
            v,
            tables,
            kc,
            vc,
            q,
            scale: 1.0 / (layout.head_dim as f32).sqrt(),
        }
    }

    fn seqs(&self) -> Vec<AttnSeq<'_>> {
        let mut start = 0;
        self.specs
            .iter()
            .zip(&self.tables)
            .map(|(&(query_len, context_len), table)| {
                let s = AttnSeq {
                    query_start: start,
                    query_len,
                    context_len,
                    block_table: table,
                };
                start += query_len;
                s
            })
            .collect()
    }

    fn blocked(&self, path: Path) -> Vec<f32> {
        let mut out = vec![0.0; self.q.len()];
        let (k, v) = (F32Kv(&self.kc), F32Kv(&self.vc));
        let seqs = self.seqs();
        let (nh, layout, scale) = (self.n_heads, self.layout, self.scale);
        blocked::attend(path, &self.q, &k, &v, &seqs, nh, layout, scale, &mut out);
        out
    }

    fn per_head(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.q.len()];
        let seqs = self.seqs();
        let (nh, layout, scale) = (self.n_heads, self.layout, self.scale);
        paged_attention_per_head(
            &self.q, &self.kc, &self.vc, &seqs, nh, layout, scale, &mut out,
        );
        out
    }

    /// The f64 dense answer, with keys/values mapped through `kv` first (FP8 rounding).
    fn reference(&self, kv: impl Fn(&[f32], bool) -> Vec<f32>) -> Vec<f64> {
        let (nh, nkv, d) = (self.n_heads, self.layout.n_kv_heads, self.layout.head_dim);
        let mut out = Vec::with_capacity(self.q.len());
        let mut row = 0;
        for (i, &(n_q, n_ctx)) in self.specs.iter().enumerate() {
            let q = &self.q[row * nh * d..(row + n_q) * nh * d];
            let (k, v) = (kv(&self.k[i], true), kv(&self.v[i], false));
            out.extend(dense64(q, &k, &v, n_q, n_ctx, nh, nkv, d, self.scale));
            row += n_q;
        }
        out
    }
}

/// Asserts `|got - want| <= tol` elementwise.
fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!((a as f64 - b).abs() <= tol, "{what}: [{i}] {a} vs {b}");
    }
}

/// Asserts bit equality.
fn assert_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "{what}: [{i}] {a} vs {b}");
    }
}

// Tolerance of the f32 kernels against the f64 reference, absolute, for outputs that are
// convex combinations of values in [-1, 1]. Error sources: the D-term f32 score dot products
// (|q|, |k| <= 4 with D <= 128: |score| <= 16 · 128 / sqrt(128) ≈ 181, worst-case accumulated
// rounding ~ D · 2^-24 · 181 ≈ 1.4e-3 absolute, typically ~sqrt(D) · 2^-24 · |terms| ≈ 1e-5),
// which perturb the weights relatively by the same amount; `exp`'s 2e-7 relative error; and
// the f32 sums over <= 60 keys (~60 · 6e-8 relative). Observed max errors: 1.7e-7 for amp = 1,
// 5.2e-6 for amp = 4 (d = 128, group 7), likewise against the per-head kernel; 2e-5 leaves 4x
// room without hiding a real bug (a wrong mask, tile or rescale gives errors > 1e-2).
const F32_TOL: f64 = 2e-5;

#[test]
fn paged_equals_dense_with_scattered_blocks_and_gqa() {
    let (nh, nkv, d, bs) = (4, 2, 8, 4);
    let layout = KvLayout {
        block_size: bs,
        n_kv_heads: nkv,
        head_dim: d,
    };
    let n_ctx = 11; // 3 blocks, last one partial
    let k = pseudo(n_ctx * nkv * d, 1);
    let v = pseudo(n_ctx * nkv * d, 2);
    let n_blocks = 8;
    let mut kc = vec![0.0; n_blocks * bs * nkv * d];
    let mut vc = kc.clone();
    let table = [5u32, 2, 7];
    let slots: Vec<u32> = (0..n_ctx)
        .map(|p| table[p / bs] * bs as u32 + (p % bs) as u32)
        .collect();
    reshape_and_cache(&k, &v, &mut kc, &mut vc, &slots, layout);
    // A chunk of 3 query tokens at the end (prefill over a cached prefix).
    let n_q = 3;
    let q = pseudo(n_q * nh * d, 3);
    let seqs = [AttnSeq {
        query_start: 0,
        query_len: n_q,
        context_len: n_ctx,
        block_table: &table,
    }];
    let mut out = vec![0.0; q.len()];
    paged_attention(
        &q,
        &kc,
        &vc,
        &seqs,
        nh,
        layout,
        1.0 / (d as f32).sqrt(),
        &mut out,
    );
    let want = dense(&q, &k, &v, n_q, n_ctx, nh, nkv, d);
    for (a, b) in out.iter().zip(&want) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn fp8_cache_equals_dense_attention_on_the_rounded_values() {
    let (nh, nkv, d, bs) = (4, 2, 8, 4);
    let layout = KvLayout {
        block_size: bs,
        n_kv_heads: nkv,
        head_dim: d,
    };
    let n_ctx = 10;
    let k: Vec<f32> = pseudo(n_ctx * nkv * d, 4).iter().map(|x| x * 3.0).collect();
    let v = pseudo(n_ctx * nkv * d, 5);
    let table = [3u32, 0, 6];
    let slots: Vec<u32> = (0..n_ctx)
        .map(|p| table[p / bs] * bs as u32 + (p % bs) as u32)
        .collect();
    let n_q = 2;
    let q = pseudo(n_q * nh * d, 6);
    let seqs = [AttnSeq {
        query_start: 0,
        query_len: n_q,
        context_len: n_ctx,
        block_table: &table,
    }];
    for format in [Fp8Format::E4M3, Fp8Format::E5M2] {
        let fp8 = Fp8Kv {
            format,
            k_scale: 0.5,
            v_scale: 0.25,
        };
        let mut kc = vec![0u8; 8 * bs * nkv * d];
        let mut vc = kc.clone();
        reshape_and_cache_fp8(&k, &v, &mut kc, &mut vc, &slots, layout, fp8);
        let mut out = vec![0.0; q.len()];
        paged_attention_fp8(
            &q,
            &kc,
            &vc,
            fp8,
            &seqs,
            nh,
            layout,
            1.0 / (d as f32).sqrt(),
            &mut out,
        );
        let round = |x: &[f32], s: f32| {
            x.iter()
                .map(|&a| format.decode(format.encode(a / s)) * s)
                .collect::<Vec<f32>>()
        };
        let want = dense(
            &q,
            &round(&k, 0.5),
            &round(&v, 0.25),
            n_q,
            n_ctx,
            nh,
            nkv,
            d,
        );
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{format:?}: {a} vs {b}");
        }
        // And within FP8 precision of the unrounded attention.
        let exact = dense(&q, &k, &v, n_q, n_ctx, nh, nkv, d);
        let tol = if format == Fp8Format::E4M3 { 0.1 } else { 0.2 };
        for (a, b) in out.iter().zip(&exact) {
            assert!((a - b).abs() < tol, "{format:?}: {a} vs {b}");
        }
    }
}

/// Block sizes 1, 3, 4, 16 x head_dim 16, 24, 40, 64, 128 x GQA group 1, 2, 7, each call mixing
/// decodes, a 13-token and a 40-token chunk over cached prefixes, and a fresh prompt: equal to
/// the f64 reference within [`F32_TOL`], to the per-head kernel within the same, and
/// bit-identical on every ISA path.
#[test]
fn blocked_matches_references_over_odd_shapes() {
    let specs = [(1, 1), (1, 37), (13, 13), (40, 57), (5, 21), (2, 16)];
    for bs in [1, 3, 4, 16] {
        for d in [16, 24, 40, 64, 128] {
            for group in [1, 2, 7] {
                let layout = KvLayout {
                    block_size: bs,
                    n_kv_heads: 2,
                    head_dim: d,
                };
                for amp in [1.0, 4.0] {
                    let fx = Fixture::new(layout, 2 * group, &specs, (bs * d + group) as u32, amp);
                    let what = format!("bs {bs} d {d} group {group} amp {amp}");
                    let want = fx.reference(|x, _| x.to_vec());
                    let paths = paths();
                    let got = fx.blocked(paths[0]);
                    assert_close(&got, &want, F32_TOL, &what);
                    let old: Vec<f64> = fx.per_head().iter().map(|&x| x as f64).collect();
                    assert_close(&got, &old, F32_TOL, &format!("{what} vs per-head"));
                    for &p in &paths[1..] {
                        assert_bits(&fx.blocked(p), &got, &format!("{what}: {p:?}"));
                    }
                }
            }
        }
    }
}

/// Every query length 1..=40 in one call, over cached prefixes of varied length.
#[test]
fn blocked_matches_reference_for_every_query_length() {
    let specs: Vec<(usize, usize)> = (1..=40).map(|n| (n, n + n * 7 % 23)).collect();
    for (bs, d) in [(4, 24), (16, 64), (5, 40)] {
        let layout = KvLayout {
            block_size: bs,
            n_kv_heads: 2,
            head_dim: d,
        };
        let fx = Fixture::new(layout, 14, &specs, 9, 2.0);
        let got = fx.blocked(Path::best());
        assert_close(&got, &fx.reference(|x, _| x.to_vec()), F32_TOL, "lengths");
    }
}

/// FP8 caches (E4M3, E5M2, non-unit scales) against the f64 reference on the decoded codes,
/// and against the per-head kernel's FP8 path.
#[test]
fn blocked_fp8_matches_reference_on_the_same_codes() {
    let specs = [(1, 30), (13, 20), (7, 7)];
    for (bs, d, nh) in [(3, 40, 14), (16, 64, 4), (4, 24, 2)] {
        let layout = KvLayout {
            block_size: bs,
            n_kv_heads: 2,
            head_dim: d,
        };
        let fx = Fixture::new(layout, nh, &specs, 5, 2.0);
        for format in [Fp8Format::E4M3, Fp8Format::E5M2] {
            let fp8 = Fp8Kv {
                format,
                k_scale: 0.5,
                v_scale: 0.125,
            };
            // Encode the whole pool (NaN slots become NaN codes, never read).
            let n = fx.kc.len();
            let (mut kc, mut vc) = (vec![0u8; n], vec![0u8; n]);
            let slots: Vec<u32> = (0..(n / layout.slot_width()) as u32).collect();
            reshape_and_cache_fp8(&fx.kc, &fx.vc, &mut kc, &mut vc, &slots, layout, fp8);
            let seqs = fx.seqs();
            let (k, v) = fp8_srcs(&kc, &vc, fp8);
            let mut got = vec![0.0; fx.q.len()];
            paged_attention_fp8(&fx.q, &kc, &vc, fp8, &seqs, nh, layout, fx.scale, &mut got);
            let decoded = |x: &[f32], is_k: bool| {
                let s = if is_k { fp8.k_scale } else { fp8.v_scale };
                x.iter()
                    .map(|&a| format.decode(format.encode(a / s)) * s)
                    .collect::<Vec<f32>>()
            };
            let what = format!("{format:?} bs {bs} d {d}");
            assert_close(&got, &fx.reference(decoded), F32_TOL, &what);
            let mut old = vec![0.0; fx.q.len()];
            per_head::attend(&fx.q, &k, &v, &seqs, nh, layout, fx.scale, &mut old);
            let old: Vec<f64> = old.iter().map(|&x| x as f64).collect();
            assert_close(&got, &old, F32_TOL, &format!("{what} vs per-head"));
            for p in paths() {
                let mut out = vec![0.0; fx.q.len()];
                blocked::attend(p, &fx.q, &k, &v, &seqs, nh, layout, fx.scale, &mut out);
                assert_bits(&out, &got, &format!("{what}: {p:?}"));
            }
        }
    }
}

/// bf16 caches: the write rounds to nearest even, and attention over them is bit-identical
/// to attention over an f32 cache holding the same rounded values (the widening is exact), on
/// every path; the per-head kernel reading the bf16 cache agrees within the f32 tolerance.
#[test]
fn bf16_cache_is_the_f32_kernel_on_the_rounded_values() {
    let specs = [(1, 30), (13, 20), (7, 7), (16, 47)];
    for (bs, d, nh) in [(3, 40, 14), (16, 64, 14), (4, 24, 2)] {
        let layout = KvLayout {
            block_size: bs,
            n_kv_heads: 2,
            head_dim: d,
        };
        let fx = Fixture::new(layout, nh, &specs, 9, 3.0);
        // Write the whole pool (NaN slots stay NaN, never read).
        let n = fx.kc.len();
        let (mut kc, mut vc) = (vec![bf16::ZERO; n], vec![bf16::ZERO; n]);
        let slots: Vec<u32> = (0..(n / layout.slot_width()) as u32).collect();
        reshape_and_cache_bf16(&fx.kc, &fx.vc, &mut kc, &mut vc, &slots, layout);
        for (c, &x) in kc.iter().zip(&fx.kc).chain(vc.iter().zip(&fx.vc)) {
            assert!(x.is_nan() || c.to_bits() == bf16::from_f32(x).to_bits());
        }
        let seqs = fx.seqs();
        let mut got = vec![0.0; fx.q.len()];
        paged_attention_bf16(&fx.q, &kc, &vc, &seqs, nh, layout, fx.scale, &mut got);
        let rounded = |c: &[bf16]| c.iter().map(|b| b.to_f32()).collect::<Vec<f32>>();
        let (kf, vf) = (rounded(&kc), rounded(&vc));
        let what = format!("bf16 bs {bs} d {d}");
        for p in paths() {
            let mut want = vec![0.0; fx.q.len()];
            let (k, v) = (F32Kv(&kf), F32Kv(&vf));
            blocked::attend(p, &fx.q, &k, &v, &seqs, nh, layout, fx.scale, &mut want);
            let mut out = vec![0.0; fx.q.len()];
            let (k, v) = (Bf16Kv(&kc), Bf16Kv(&vc));
            blocked::attend(p, &fx.q, &k, &v, &seqs, nh, layout, fx.scale, &mut out);
            assert_bits(&out, &want, &format!("{what}: {p:?}"));
        }
        let round = |x: &[f32], _: bool| -> Vec<f32> {
            x.iter().map(|&a| bf16::from_f32(a).to_f32()).collect()
        };
        assert_close(&got, &fx.reference(round), F32_TOL, &what);
        let mut old = vec![0.0; fx.q.len()];
        let (k, v) = (Bf16Kv(&kc), Bf16Kv(&vc));
        per_head::attend(&fx.q, &k, &v, &seqs, nh, layout, fx.scale, &mut old);
        let old: Vec<f64> = old.iter().map(|&x| x as f64).collect();
        assert_close(&got, &old, F32_TOL, &format!("{what} vs per-head"));
    }
}

/// A query row's output is bit-identical when computed (a) alone as a decode row, (b) inside a
/// 13-token prefill chunk, (c) inside a 40-token chunk batched with other sequences, on every
/// path; in (a) the cache slots after the row's position hold NaN.
#[test]
fn a_rows_output_does_not_depend_on_its_batch() {
    let (nh, d) = (14, 64);
    for bs in [16, 3] {
        let layout = KvLayout {
            block_size: bs,
            n_kv_heads: 2,
            head_dim: d,
        };
        let w = nh * d;
        // Sequence A has 60 tokens; the row under test is position 45. (c) computes positions
        // 20..60 of A between a decode of B and a prefill of C.
        let fx = Fixture::new(layout, nh, &[(1, 9), (40, 60), (17, 30)], 3, 3.0);
        let (pos, a) = (45, 1);
        let row_c = 1 + (pos - 20);
        let q_row = &fx.q[row_c * w..][..w];
        let table = &fx.tables[a];
        let run = |path: Path, q: &[f32], seqs: &[AttnSeq<'_>], kc: &[f32], vc: &[f32]| {
            let mut out = vec![0.0; q.len()];
            let (k, v) = (F32Kv(kc), F32Kv(vc));
            blocked::attend(path, q, &k, &v, seqs, nh, layout, fx.scale, &mut out);
            out
        };
        // (a) decode: context ends at `pos`; later slots of A are NaN.
        let (mut kc, mut vc) = (fx.kc.clone(), fx.vc.clone());
        for p in pos + 1..60 {
            let slot = (table[p / bs] as usize * bs + p % bs) * layout.slot_width();
            kc[slot..][..layout.slot_width()].fill(f32::NAN);
            vc[slot..][..layout.slot_width()].fill(f32::NAN);
        }
        let decode = [AttnSeq {
            query_start: 0,
            query_len: 1,
            context_len: pos + 1,
            block_table: table,
        }];
        // (b) a 13-token chunk, positions 40..53.
        let mut q13 = vec![0.0; 13 * w];
        q13[(pos - 40) * w..][..w].copy_from_slice(q_row);
        let chunk13 = [AttnSeq {
            query_start: 0,
            query_len: 13,
            context_len: 53,
            block_table: table,
        }];
        let batch = fx.seqs();
        let want = run(Path::best(), q_row, &decode, &kc, &vc);
        assert!(want.iter().all(|x| x.is_finite()));
        for p in paths() {
            assert_bits(
                &run(p, q_row, &decode, &kc, &vc),
                &want,
                &format!("decode {p:?}"),
            );
            let out13 = run(p, &q13, &chunk13, &fx.kc, &fx.vc);
            assert_bits(&out13[(pos - 40) * w..][..w], &want, &format!("13 {p:?}"));
            let out40 = run(p, &fx.q, &batch, &fx.kc, &fx.vc);
            assert_bits(&out40[row_c * w..][..w], &want, &format!("40 {p:?}"));
        }
        // The public entry point is the same kernel.
        let mut out = vec![0.0; w];
        paged_attention(q_row, &kc, &vc, &decode, nh, layout, fx.scale, &mut out);
        assert_bits(&out, &want, "paged_attention");
    }
}

/// Rows claimed by no sequence are left as they were.
#[test]
fn rows_of_no_sequence_are_untouched() {
    let layout = KvLayout {
        block_size: 4,
        n_kv_heads: 1,
        head_dim: 16,
    };
    let fx = Fixture::new(layout, 2, &[(2, 5)], 1, 1.0);
    let seqs = fx.seqs();
    let mut q = fx.q.clone();
    q.extend(pseudo(32, 4));
    let mut out = vec![7.0; q.len()];
    paged_attention(&q, &fx.kc, &fx.vc, &seqs, 2, layout, fx.scale, &mut out);
    assert_bits(
        &out[..fx.q.len()],
        &fx.blocked(Path::best()),
        "covered rows",
    );
    assert!(out[fx.q.len()..].iter().all(|&x| x == 7.0));
}
