//! AVX-512 VNNI int4 GEMV with int8 activations (x86_64, detected at run time): the
//! `Int4Impl::Q8Avx512` kernel for 1..=8 rows, on the activations quantized by `q8.rs`.
//!
//! A tile of `4B` columns (16 for 1..=4 rows, 8 for 5..=8) walks the groups. Per 128 channels
//! (16 words) it loads 64 bytes of each column and transposes 128-bit lanes in blocks of 4
//! columns (8 `vshufi32x4` per 4 columns), so vector `t` holds words `4t..4t+3` of column
//! `4b + L` in 128-bit lane `L`; groups whose length is not a multiple of 128 channels use
//! 4-word chunks (masked loads past the group end). The unsigned nibbles (`v & 0x0F`, and
//! `(v >> 4) & 0x0F`) feed `vpdpbusd` directly against the even / odd activation bytes of those
//! 4 words (one 128-bit broadcast each), so the transpose and unpacking are shared by all rows
//! and each row costs two `vpdpbusd` per 64 weight bytes and 4 columns. At the end of a group,
//! a 4x4 transpose-add per 128-bit lane turns each row's `B` accumulators into one vector of
//! column sums (lane `j` = column `4 (j % 4) + j / 4`), the zero point is removed exactly in
//! integers (`Σ q xq − z Σ xq`) and `dx s` is applied in f32 with the tile's 16 adjacent f16
//! scales converted at once. Tail columns load a clamped (valid) column and are masked out.
//! The weight stream is software-prefetched (`prefetchnta`) one tile ahead, in load order.

use super::q8::Q8Prepared;
use super::Int4Weights;

/// Whether this CPU has AVX-512 F/BW/VL and VNNI.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Columns `c0..c1` of the Q8 `x Wᵀ` into `out_t` `[c1 - c0, rows]` (1..=8 rows); the scalar
/// Q8 kernel when the CPU lacks the features or shapes disagree.
pub(super) fn cols(w: &Int4Weights, p: &Q8Prepared, c0: usize, c1: usize, out_t: &mut [f32]) {
    let groups = w.groups();
    let ok = (1..=super::GEMV_MAX_ROWS).contains(&p.rows)
        && p.gpad >= w.group_size().next_multiple_of(32)
        && p.xq.len() == p.rows * groups * p.gpad
        && p.dx.len() == p.rows * groups
        && p.sumq.len() == p.rows * groups
        && c0 <= c1
        && c1 <= w.n()
        && out_t.len() >= (c1 - c0) * p.rows;
    #[cfg(target_arch = "x86_64")]
    if ok && available() {
        // SAFETY: the CPU features were checked just above. The kernel reads `xq`, `dx` and
        // `sumq` within the lengths checked above (each group's chunks lie inside its `gpad`
        // bytes), the weights of columns `c0..c1` (clamped to valid columns) within the shapes
        // `Int4Weights::new` validated (partial chunks use masked loads), scales / zeros of
        // columns `c0..c1` with masked loads, and writes `out_t` below `(c1 - c0) * rows`.
        unsafe { imp::cols(w, p, c0, c1, out_t.as_mut_ptr()) };
        return;
    }
    let _ = ok;
    super::q8::cols_scalar(w, p, c0, c1, out_t);
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::super::Int4Weights;
    use super::Q8Prepared;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn cols(w: &Int4Weights, p: &Q8Prepared, c0: usize, c1: usize, op: *mut f32) {
        match p.rows {
            1 => run::<1, 4>(w, p, c0, c1, op),
            2 => run::<2, 4>(w, p, c0, c1, op),
            3 => run::<3, 4>(w, p, c0, c1, op),
            4 => run::<4, 4>(w, p, c0, c1, op),
            5 => run::<5, 2>(w, p, c0, c1, op),
            6 => run::<6, 2>(w, p, c0, c1, op),
            7 => run::<7, 2>(w, p, c0, c1, op),
            _ => run::<8, 2>(w, p, c0, c1, op),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn run<const R: usize, const B: usize>(
        w: &Int4Weights,
        p: &Q8Prepared,
        c0: usize,
        c1: usize,
        op: *mut f32,
    ) {
        let mut c = c0;
        while c < c1 {
            let nc = (c1 - c).min(4 * B);
            tile::<R, B>(w, p, c, nc, op.add((c - c0) * R));
            c += nc;
        }
    }

    /// Transposes the 128-bit lanes of 4 column vectors: lane `L` of result `t` is lane `t`
    /// of input `L`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn transpose4(l: [__m512i; 4]) -> [__m512i; 4] {
        let p = _mm512_shuffle_i32x4::<0x88>(l[0], l[1]);
        let q = _mm512_shuffle_i32x4::<0xDD>(l[0], l[1]);
        let r = _mm512_shuffle_i32x4::<0x88>(l[2], l[3]);
        let s = _mm512_shuffle_i32x4::<0xDD>(l[2], l[3]);
        [
            _mm512_shuffle_i32x4::<0x88>(p, r),
            _mm512_shuffle_i32x4::<0x88>(q, s),
            _mm512_shuffle_i32x4::<0xDD>(p, r),
            _mm512_shuffle_i32x4::<0xDD>(q, s),
        ]
    }

    /// Sums each 128-bit lane of the first `B` (<= 4) accumulators: lane `j` of the result is
    /// the sum of lane `j / 4` of accumulator `j % 4` (zero when `j % 4 >= B`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn reduce<const B: usize>(a: &[__m512i; 4]) -> __m512i {
        let z = _mm512_setzero_si512();
        let at = |i: usize| if i < B { a[i] } else { z };
        let (a0, a1, a2, a3) = (at(0), at(1), at(2), at(3));
        let s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
        let s23 = if B > 2 {
            _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3))
        } else {
            z
        };
        _mm512_add_epi32(
            _mm512_unpacklo_epi64(s01, s23),
            _mm512_unpackhi_epi64(s01, s23),
        )
    }

    /// One 4-column block (`colp[c4..c4 + 4]`), 16 words from `wi`, into `acc` (one per row):
    /// `x = (xq of the chunk in row 0, row stride)`. Prefetches the same words `pf` ahead.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn step64<const R: usize>(
        acc: &mut [__m512i; R],
        colp: &[*const u32; 16],
        c4: usize,
        wi: usize,
        x: (*const i8, usize),
        pf: usize,
    ) {
        let l: [__m512i; 4] = std::array::from_fn(|i| {
            let ptr = colp[c4 + i].add(wi);
            // Same words in the next tile (`wrapping_add`: a prefetch past the end is harmless
            // and never dereferenced). Non-temporal: the weights are read once per call, and
            // NTA measured 5-10 % faster from DRAM than T0 (2 or 0 tiles ahead were slower).
            _mm_prefetch::<_MM_HINT_NTA>(ptr.wrapping_add(pf) as *const i8);
            _mm512_loadu_si512(ptr as *const _)
        });
        let v = transpose4(l);
        for (t, &vt) in v.iter().enumerate() {
            dot_rows(acc, vt, x.0.add(32 * t), x.1);
        }
    }

    /// As [`step64`] for up to 4 words (`wm` selects them; masked loads never fault).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn step16<const R: usize>(
        acc: &mut [__m512i; R],
        colp: &[*const u32; 16],
        c4: usize,
        wi: usize,
        wm: __mmask8,
        x: (*const i8, usize),
    ) {
        let ld = |i: usize| _mm_maskz_loadu_epi32(wm, colp[c4 + i].add(wi) as *const _);
        let mut v = _mm512_castsi128_si512(ld(0));
        v = _mm512_inserti32x4::<1>(v, ld(1));
        v = _mm512_inserti32x4::<2>(v, ld(2));
        v = _mm512_inserti32x4::<3>(v, ld(3));
        dot_rows(acc, v, x.0, x.1);
    }

    /// `acc[r] += nibbles(v) · xq[r]` for one 4-word chunk: low nibbles against the 16 even
    /// bytes at `xp + r * stride`, high nibbles against the 16 odd bytes after them.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn dot_rows<const R: usize>(
        acc: &mut [__m512i; R],
        v: __m512i,
        xp: *const i8,
        stride: usize,
    ) {
        let nib = _mm512_set1_epi8(0x0F);
        let lo = _mm512_and_si512(v, nib);
        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib);
        for (r, a) in acc.iter_mut().enumerate() {
            let p = xp.add(r * stride);
            let xe = _mm512_broadcast_i32x4(_mm_loadu_si128(p as *const _));
            let xd = _mm512_broadcast_i32x4(_mm_loadu_si128(p.add(16) as *const _));
            *a = _mm512_dpbusd_epi32(*a, lo, xe);
            *a = _mm512_dpbusd_epi32(*a, hi, xd);
        }
    }

    /// `R` rows x `nc` (<= `4B`) columns from `c`, over all of `k`, into `op` `[nc, R]`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile<const R: usize, const B: usize>(
        w: &Int4Weights,
        p: &Q8Prepared,
        c: usize,
        nc: usize,
        op: *mut f32,
    ) {
        let (k, n, k8, gs, groups) = (w.k(), w.n(), w.k() / 8, w.group_size(), w.groups());
        let (qw, sc, zs) = w.raw();
        let (qw, sc, zs) = (qw.as_ptr(), sc.as_ptr(), zs.as_ptr());
        let (xq, dxp, sqp) = (p.xq.as_ptr(), p.dx.as_ptr(), p.sumq.as_ptr());
        let xstride = groups * p.gpad;
        // Column `c + i` for i < nc; past the tail the last valid column (masked out below).
        let colp: [*const u32; 16] = std::array::from_fn(|i| qw.add((c + i.min(nc - 1)) * k8));
        // Lane order of `reduce` <-> column order (the map is its own inverse).
        let perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let cmask: __mmask16 = if nc >= 16 { 0xFFFF } else { (1u16 << nc) - 1 };
        let mut y = [_mm512_setzero_ps(); R];
        for g in 0..groups {
            let (w0, w1) = (g * gs / 8, ((g + 1) * gs).min(k) / 8);
            let xg = xq.add(g * p.gpad);
            // `acc[b][r]`: block `b` (columns `4b..4b+4`), row `r`; constant `b` keeps them in
            // registers.
            let mut acc = [[_mm512_setzero_si512(); R]; 4];
            let (mut wi, mut xo) = (w0, 0usize);
            while wi + 16 <= w1 {
                let x = (xg.add(xo), xstride);
                let pf = 4 * B * k8;
                step64(&mut acc[0], &colp, 0, wi, x, pf);
                if B > 1 {
                    step64(&mut acc[1], &colp, 4, wi, x, pf);
                }
                if B > 2 {
                    step64(&mut acc[2], &colp, 8, wi, x, pf);
                    step64(&mut acc[3], &colp, 12, wi, x, pf);
                }
                wi += 16;
                xo += 128;
            }
            while wi < w1 {
                let wm: __mmask8 = (1u8 << (w1 - wi).min(4)) - 1;
                let x = (xg.add(xo), xstride);
                step16(&mut acc[0], &colp, 0, wi, wm, x);
                if B > 1 {
                    step16(&mut acc[1], &colp, 4, wi, wm, x);
                }
                if B > 2 {
                    step16(&mut acc[2], &colp, 8, wi, wm, x);
                    step16(&mut acc[3], &colp, 12, wi, wm, x);
                }
                wi += 4;
                xo += 32;
            }
            let idx = g * n + c;
            let s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(cmask, sc.add(idx) as *const _));
            let s = _mm512_permutexvar_ps(perm, s);
            let z = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(cmask, zs.add(idx) as *const _));
            let z = _mm512_permutexvar_epi32(perm, z);
            for (r, yr) in y.iter_mut().enumerate() {
                let sq = _mm512_set1_epi32(*sqp.add(r * groups + g));
                let a = [acc[0][r], acc[1][r], acc[2][r], acc[3][r]];
                let d = _mm512_sub_epi32(reduce::<B>(&a), _mm512_mullo_epi32(z, sq));
                let sdx = _mm512_mul_ps(s, _mm512_set1_ps(*dxp.add(r * groups + g)));
                *yr = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sdx, *yr);
            }
        }
        let mut tmp = [0.0f32; 16];
        for (r, &yr) in y.iter().enumerate() {
            _mm512_storeu_ps(tmp.as_mut_ptr(), _mm512_permutexvar_ps(perm, yr));
            for (cc, &v) in tmp.iter().enumerate().take(nc) {
                *op.add(cc * R + r) = v;
            }
        }
    }
}
