//! The paged-attention kernel behind [`super::paged_attention`] for every call (decode and
//! prefill): blocked, flash-attention style, generic over the vector ISA of `crate::simd`.
//!
//! Work unit: one sequence, one KV head, up to [`BLOCK_TOKENS`] consecutive query tokens; all
//! `group = n_heads / n_kv_heads` query heads of that KV head are processed together, so each
//! key/value tile is loaded once for `group x tokens` queries. Units run in parallel (`crate::pool`);
//! a decode of one sequence still has `n_kv_heads` units.
//!
//! Keys are walked in tiles of [`LANES`] consecutive positions (`16t..16t + 16`, whatever the
//! cache's block size). A tile is gathered from the pages into `kt` `[head_dim][16]` (keys
//! transposed) and `vt` `[16][head_dim]` (values), decoding FP8 on the way. For each query that
//! can see the tile (position >= 16t), in order:
//! 1. scores `s[j] = scale * Σ_d q[d] kt[d][j]` as one 16-lane vector: a broadcast of `q[d]`
//!    times a row of `kt`, accumulated by FMA in `d` order (no horizontal sums);
//! 2. causal mask: lanes of keys after the query's position become -inf;
//! 3. online softmax: `m' = max(m, max_j s[j])`, `α = e^(m - m')`, `p = e^(s - m')`,
//!    `l = l α + p` (kept per lane, summed once at the end);
//! 4. `acc = acc α + Σ_j p[j] vt[j]` over the visible keys in `j` order, as vectors over
//!    `head_dim`.
//!
//! Finally `out = acc / Σ l`.
//!
//! Throughput details that do not change any result: step 1 runs for up to
//! `Isa::MAX_QUERIES` queries at once (independent FMA chains sharing each `kt` row), steps
//! 2–3 for all of them before any step 4, step 4 for pairs of queries with the same visible
//! keys where registers allow (`Isa::PV_PAIRS`), and the next tile is prefetched while the
//! current one is computed (the pages are scattered, so the hardware prefetcher cannot guess
//! them).
//!
//! Every step of one query depends only on that query, its position
//! and the cache: not on which other queries share the unit or the call, nor on how many there
//! are. So a row's output is bit-identical whether it is decoded alone or computed inside any
//! prefill chunk or batch (the engine's batch invariance rests on this), and, since the
//! [`Isa`] paths compute the same lane-wise operations, on any of the three paths.

use super::{AttnSeq, KvLayout, KvSrc};
use crate::simd::{exp, Isa, Lanes, Path, Portable, LANES};
#[cfg(target_arch = "x86_64")]
use crate::simd::{Avx2, Avx512};

/// Query tokens per work unit (a throughput knob only: results do not depend on it).
const BLOCK_TOKENS: usize = 16;

/// Runs the kernel on `path` (falls back to the portable path if the CPU lacks it).
/// Shapes and semantics: [`super::paged_attention`].
#[allow(clippy::too_many_arguments)]
pub(super) fn attend<K: KvSrc, V: KvSrc>(
    path: Path,
    q: &[f32],
    k: &K,
    v: &V,
    seqs: &[AttnSeq<'_>],
    n_heads: usize,
    layout: KvLayout,
    scale: f32,
    out: &mut [f32],
) {
    let (d, n_kv) = (layout.head_dim, layout.n_kv_heads);
    if d == 0 || n_kv == 0 || n_heads == 0 || !n_heads.is_multiple_of(n_kv) {
        return;
    }
    let group = n_heads / n_kv;
    let call = Call {
        q,
        k,
        v,
        layout,
        n_heads,
        group,
        scale,
    };
    // Output of one (row, KV head): its `group` query heads, `[group * head_dim]`.
    let mut parts: Vec<Option<&mut [f32]>> = out.chunks_mut(group * d).map(Some).collect();
    let mut units = Vec::new();
    for seq in seqs {
        let pos0 = seq.context_len - seq.query_len;
        for first in (0..seq.query_len).step_by(BLOCK_TOKENS) {
            let len = BLOCK_TOKENS.min(seq.query_len - first);
            let row = seq.query_start + first;
            for kvh in 0..n_kv {
                let out = (row..row + len)
                    .map(|r| parts.get_mut(r * n_kv + kvh).and_then(Option::take))
                    .collect();
                units.push(Unit {
                    seq,
                    kvh,
                    row,
                    pos: pos0 + first,
                    out,
                });
            }
        }
    }
    crate::pool::for_each_item_mut_init(&mut units, Scratch::default, |s, u| {
        run(path, &call, u, s)
    });
}

/// The inputs every work unit reads.
struct Call<'a, K, V> {
    /// Queries, `[T, n_heads * head_dim]`.
    q: &'a [f32],
    k: &'a K,
    v: &'a V,
    layout: KvLayout,
    n_heads: usize,
    /// Query heads per KV head.
    group: usize,
    scale: f32,
}

impl<K, V> Call<'_, K, V> {
    /// Query head `h` of batch row `row`, `[head_dim]`.
    #[inline(always)]
    fn query(&self, row: usize, h: usize) -> &[f32] {
        let d = self.layout.head_dim;
        &self.q[(row * self.n_heads + h) * d..][..d]
    }
}

/// `group` query heads sharing KV head `kvh`, for consecutive query tokens of one sequence.
/// Queries are numbered token-major: query `i` is token `i / group`, head `i % group` of `kvh`.
struct Unit<'a, 'o> {
    seq: &'a AttnSeq<'a>,
    kvh: usize,
    /// Batch row of the first token.
    row: usize,
    /// Position of the first token (token `t` sees keys `0..=pos + t`).
    pos: usize,
    /// Per token, its output `[group * head_dim]` (`None`: a row claimed by an earlier sequence
    /// or outside `out`; computed but not written).
    out: Vec<Option<&'o mut [f32]>>,
}

/// Per-thread buffers, reused across units.
#[derive(Default)]
struct Scratch {
    /// Key tile as loaded, laid out like `vt` (rows past the tile's last key zeroed).
    ks: Vec<Lanes>,
    /// Key tile, transposed: `kt[d].0[j]` is element `d` of key `16t + j`. `[16 * c]`, rows
    /// past `head_dim` unused.
    kt: Vec<Lanes>,
    /// Value tile: `vt[j * c + i]` is elements `16i..16i + 16` of value `16t + j`, zero padded
    /// past `head_dim` (`c = ceil(head_dim / 16)`). `[16 * c]`.
    vt: Vec<Lanes>,
    /// One decoded cache row (FP8 caches). `[head_dim]`.
    row: Vec<f32>,
    /// Per query, the running max of its scores. `[queries]`.
    m: Vec<f32>,
    /// Per query, the running sum of `e^(score - m)` per key lane. `[queries]`.
    l: Vec<Lanes>,
    /// Per query, the running `Σ e^(score - m) v`, `[queries * c]`.
    acc: Vec<Lanes>,
}

impl Scratch {
    /// Sizes and clears the buffers for `nq` queries of width `d`.
    fn start(&mut self, nq: usize, d: usize) {
        let c = d.div_ceil(LANES);
        let zero = Lanes::default();
        let bufs = [
            &mut self.ks,
            &mut self.kt,
            &mut self.vt,
            &mut self.l,
            &mut self.acc,
        ];
        for (buf, len) in bufs
            .into_iter()
            .zip([LANES * c, LANES * c, LANES * c, nq, nq * c])
        {
            buf.clear();
            buf.resize(len, zero);
        }
        self.row.resize(d, 0.0);
        self.m.clear();
        self.m.resize(nq, f32::NEG_INFINITY);
    }
}

/// Dispatches one unit to the compiled variant of `path`.
fn run<K: KvSrc, V: KvSrc>(path: Path, call: &Call<K, V>, u: &mut Unit, s: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    match path {
        Path::Avx512 => {
            if let Some(isa) = Avx512::detect() {
                // SAFETY: the token proves the CPU has the features `unit_avx512` enables.
                return unsafe { unit_avx512(isa, call, u, s) };
            }
        }
        Path::Avx2 => {
            if let Some(isa) = Avx2::detect() {
                // SAFETY: the token proves the CPU has the features `unit_avx2` enables.
                return unsafe { unit_avx2(isa, call, u, s) };
            }
        }
        Path::Portable => {}
    }
    let _ = path;
    unit(Portable, call, u, s)
}

/// [`unit`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn unit_avx512<K: KvSrc, V: KvSrc>(
    isa: Avx512,
    call: &Call<K, V>,
    u: &mut Unit,
    s: &mut Scratch,
) {
    unit(isa, call, u, s)
}

/// [`unit`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn unit_avx2<K: KvSrc, V: KvSrc>(
    isa: Avx2,
    call: &Call<K, V>,
    u: &mut Unit,
    s: &mut Scratch,
) {
    unit(isa, call, u, s)
}

/// Attention of all queries of `u` into their outputs.
#[inline(always)]
fn unit<I: Isa, K: KvSrc, V: KvSrc>(isa: I, call: &Call<K, V>, u: &mut Unit, s: &mut Scratch) {
    let (d, g) = (call.layout.head_dim, call.group);
    let n_tok = u.out.len();
    if n_tok == 0 {
        return;
    }
    let nq = n_tok * g;
    let last = u.pos + n_tok - 1;
    s.start(nq, d);
    for t0 in (0..=last).step_by(LANES) {
        load_tile(isa, call, u, t0, (last + 1 - t0).min(LANES), s);
        if let Some(n) = (last + 1).checked_sub(t0 + LANES) {
            prefetch_tile(call, u, t0 + LANES, n.min(LANES));
        }
        // The queries that see this tile: tokens at positions >= t0, all their heads.
        let mut qi = t0.saturating_sub(u.pos) * g;
        while qi < nq {
            // Up to `I::MAX_QUERIES` queries at a time: independent FMA chains sharing each
            // `kt` load.
            qi += match (nq - qi).min(I::MAX_QUERIES) {
                1 => tile_step::<I, K, V, 1>(isa, call, u, s, t0, qi),
                2 => tile_step::<I, K, V, 2>(isa, call, u, s, t0, qi),
                3 => tile_step::<I, K, V, 3>(isa, call, u, s, t0, qi),
                4 => tile_step::<I, K, V, 4>(isa, call, u, s, t0, qi),
                5 => tile_step::<I, K, V, 5>(isa, call, u, s, t0, qi),
                6 => tile_step::<I, K, V, 6>(isa, call, u, s, t0, qi),
                7 => tile_step::<I, K, V, 7>(isa, call, u, s, t0, qi),
                _ => tile_step::<I, K, V, 8>(isa, call, u, s, t0, qi),
            };
        }
    }
    for (qi, l) in s.l.iter().enumerate() {
        let sum = isa.hsum(isa.load(l));
        let (t, h) = (qi / g, qi % g);
        if let Some(o) = u.out[t].as_deref_mut() {
            let acc = &s.acc[qi * d.div_ceil(LANES)..];
            for (oc, a) in o[h * d..][..d].chunks_mut(LANES).zip(acc) {
                for (x, &y) in oc.iter_mut().zip(&a.0) {
                    *x = y / sum;
                }
            }
        }
    }
}

/// Gathers keys/values of positions `t0..t0 + n` of `u`'s sequence and KV head into the tile:
/// values into `vt`, keys into `ks`, then `ks` transposed 16 x 16 blocks at a time into `kt`
/// (lanes `n..16` of `kt` are zero; they are masked anyway).
#[inline(always)]
fn load_tile<I: Isa, K: KvSrc, V: KvSrc>(
    isa: I,
    call: &Call<K, V>,
    u: &Unit,
    t0: usize,
    n: usize,
    s: &mut Scratch,
) {
    let d = call.layout.head_dim;
    let c = d.div_ceil(LANES);
    for (j, off) in SlotOffsets::new(call.layout, u, t0, n).enumerate() {
        copy_row(&mut s.ks[j * c..][..c], call.k.row(off, d, &mut s.row));
        copy_row(&mut s.vt[j * c..][..c], call.v.row(off, d, &mut s.row));
    }
    s.ks[n * c..].fill(Lanes::default());
    for (i, kt) in s.kt.chunks_exact_mut(LANES).enumerate() {
        let rows = std::array::from_fn(|j| &s.ks[j * c + i]);
        if let Ok(kt) = <&mut [Lanes; LANES]>::try_from(kt) {
            isa.transpose(rows, kt);
        }
    }
}

/// Prefetches the keys/values of positions `t0..t0 + n` (the next tile, fetched while the
/// current one is computed: the pages are scattered, so the hardware cannot guess them).
#[inline(always)]
fn prefetch_tile<K: KvSrc, V: KvSrc>(call: &Call<K, V>, u: &Unit, t0: usize, n: usize) {
    let d = call.layout.head_dim;
    for off in SlotOffsets::new(call.layout, u, t0, n) {
        call.k.prefetch(off, d);
        call.v.prefetch(off, d);
    }
}

/// Cache element offsets of `u`'s KV head in the slots of positions `p..p + n` of its
/// sequence, walking the block table without a division per position.
struct SlotOffsets<'a> {
    table: &'a [u32],
    layout: KvLayout,
    /// Offset of the KV head inside a slot.
    head: usize,
    /// Block-table index and offset in the block of the next position.
    block: usize,
    in_block: usize,
    left: usize,
}

impl<'a> SlotOffsets<'a> {
    #[inline(always)]
    fn new(layout: KvLayout, u: &'a Unit, p: usize, n: usize) -> Self {
        SlotOffsets {
            table: u.seq.block_table,
            layout,
            head: u.kvh * layout.head_dim,
            block: p / layout.block_size,
            in_block: p % layout.block_size,
            left: n,
        }
    }
}

impl Iterator for SlotOffsets<'_> {
    type Item = usize;
    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let bs = self.layout.block_size;
        let slot = self.table[self.block] as usize * bs + self.in_block;
        self.in_block += 1;
        if self.in_block == bs {
            (self.block, self.in_block) = (self.block + 1, 0);
        }
        self.left -= 1;
        Some(slot * self.layout.slot_width() + self.head)
    }
}

/// Copies `src` into the first `src.len()` lanes of `dst` (whole chunks as fixed-size copies,
/// which compile to vector moves rather than `memcpy` calls).
#[inline(always)]
fn copy_row(dst: &mut [Lanes], src: &[f32]) {
    for (dst, src) in dst.iter_mut().zip(src.chunks(LANES)) {
        match <[f32; LANES]>::try_from(src) {
            Ok(whole) => dst.0 = whole,
            Err(_) => dst.0[..src.len()].copy_from_slice(src),
        }
    }
}

/// Steps 1–4 of the module doc for queries `qi..qi + N` over the tile at `t0`; returns `N`.
#[inline(always)]
fn tile_step<I: Isa, K, V, const N: usize>(
    isa: I,
    call: &Call<K, V>,
    u: &Unit,
    s: &mut Scratch,
    t0: usize,
    qi: usize,
) -> usize {
    let (d, g) = (call.layout.head_dim, call.group);
    // Token and head of query `qi` (queries are token-major).
    let (t_first, h_first) = (qi / g, qi % g);
    // (A loop rather than `array::from_fn`, so that it inlines and the compiler sees every
    // length is `d`: no bounds checks in the loop below.)
    let mut qs: [&[f32]; N] = [&[]; N];
    let (mut t, mut h) = (t_first, h_first);
    for q in qs.iter_mut() {
        *q = call.query(u.row + t, u.kvh * g + h);
        h += 1;
        if h == g {
            (t, h) = (t + 1, 0);
        }
    }
    // 1. Scores, each query's sum in `d` order.
    let mut scores = [isa.splat(0.0); N];
    let kt = &s.kt[..d];
    for i in 0..d {
        let keys = isa.load(&kt[i]);
        for n in 0..N {
            scores[n] = isa.fma(isa.splat(qs[n][i]), keys, scores[n]);
        }
    }
    // 2–3 for all N queries before any P·V: N independent dependency chains to overlap.
    let mut visible = [0; N];
    let mut alpha = [None; N];
    let mut p = [Lanes::default(); N];
    let (mut t, mut h) = (t_first, h_first);
    for n in 0..N {
        let q = qi + n;
        // 2. Keys `t0 + j` with `j < visible` are at or before the query's position.
        visible[n] = (u.pos + t + 1 - t0).min(LANES);
        h += 1;
        if h == g {
            (t, h) = (t + 1, 0);
        }
        let mut x = isa.mul(scores[n], isa.splat(call.scale));
        if visible[n] < LANES {
            x = isa.mask_from(x, visible[n]);
        }
        // 3. Online softmax. `α = e^(m - m')` is 1 when the max did not grow and the scale is
        // skipped (`x · 1 = x` and `fma(l, 1, p) = l + p` exactly, so this only saves work);
        // before the first tile `m = -inf` and `l`, `acc` are 0, so it is skipped too. Lane 0
        // is always visible, so `m'` is finite.
        let m_old = s.m[q];
        let m_new = m_old.max(isa.hmax(x));
        if m_new > m_old && m_old > f32::NEG_INFINITY {
            alpha[n] = Some(exp(isa, isa.splat(m_old - m_new)));
        }
        let pn = exp(isa, isa.sub(x, isa.splat(m_new)));
        s.m[q] = m_new;
        let l = isa.load(&s.l[q]);
        let l = match alpha[n] {
            Some(alpha) => isa.fma(l, alpha, pn),
            None => isa.add(l, pn),
        };
        isa.store(l, &mut s.l[q]);
        isa.store(pn, &mut p[n]);
    }
    // 4. P·V. Two queries with the same visible keys at a time where the registers allow
    // (`I::PV_PAIRS`), sharing each value load; up to four head_dim chunks at a time.
    let c = d.div_ceil(LANES);
    let mut n = 0;
    while n < N {
        let pair = I::PV_PAIRS && n + 1 < N && visible[n] == visible[n + 1];
        let q = if pair { 2 } else { 1 };
        let acc = &mut s.acc[(qi + n) * c..][..q * c];
        let vis = visible[n];
        let mut i = 0;
        while i < c {
            i += if pair {
                let (p, al) = ([&p[n], &p[n + 1]], [alpha[n], alpha[n + 1]]);
                match c - i {
                    1 => pv::<I, 2, 1>(isa, acc, c, &s.vt, i, p, vis, al),
                    2 => pv::<I, 2, 2>(isa, acc, c, &s.vt, i, p, vis, al),
                    3 => pv::<I, 2, 3>(isa, acc, c, &s.vt, i, p, vis, al),
                    _ => pv::<I, 2, 4>(isa, acc, c, &s.vt, i, p, vis, al),
                }
            } else {
                let (p, al) = ([&p[n]], [alpha[n]]);
                match c - i {
                    1 => pv::<I, 1, 1>(isa, acc, c, &s.vt, i, p, vis, al),
                    2 => pv::<I, 1, 2>(isa, acc, c, &s.vt, i, p, vis, al),
                    3 => pv::<I, 1, 3>(isa, acc, c, &s.vt, i, p, vis, al),
                    _ => pv::<I, 1, 4>(isa, acc, c, &s.vt, i, p, vis, al),
                }
            };
        }
        n += q;
    }
    N
}

/// For each of `Q` queries `q` (accumulators `acc[q * c..][..c]`, weights `p[q]`, rescale
/// `alpha[q]`, 1 if `None`), head_dim chunks `i..i + B`:
/// `acc = acc α + Σ_{j < visible} p[j] vt[j]`, in `j` order; returns `B`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pv<I: Isa, const Q: usize, const B: usize>(
    isa: I,
    acc: &mut [Lanes],
    c: usize,
    vt: &[Lanes],
    i: usize,
    p: [&Lanes; Q],
    visible: usize,
    alpha: [Option<I::V>; Q],
) -> usize {
    let mut a = [[isa.splat(0.0); B]; Q];
    for q in 0..Q {
        let acc = &acc[q * c + i..][..B];
        for b in 0..B {
            let x = isa.load(&acc[b]);
            a[q][b] = match alpha[q] {
                Some(alpha) => isa.mul(x, alpha),
                None => x,
            };
        }
    }
    for (j, row) in vt.chunks_exact(c).take(visible).enumerate() {
        let row = &row[i..][..B];
        let mut v = [isa.splat(0.0); B];
        for b in 0..B {
            v[b] = isa.load(&row[b]);
        }
        for q in 0..Q {
            let pj = isa.splat(p[q].0[j]);
            for b in 0..B {
                a[q][b] = isa.fma(pj, v[b], a[q][b]);
            }
        }
    }
    for q in 0..Q {
        let acc = &mut acc[q * c + i..][..B];
        for b in 0..B {
            isa.store(a[q][b], &mut acc[b]);
        }
    }
    B
}
