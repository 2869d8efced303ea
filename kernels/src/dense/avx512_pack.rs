//! Activation packing for the AVX-512 broadcast GEMM (`avx512.rs`): 16 rows at a time, rounded
//! to bf16 pairs (or kept as f32 bits) with `vcvtne2ps2bf16` and turned into 16-lane groups by
//! the 16 x 16 register transpose of `crate::simd` (the scalar per-element version was ~8 % of a
//! prefill profile).

use std::arch::x86_64::*;

/// One 16-row lane group of `avx512::pack_x`: `x` holds `x.len() / k <= 16` rows of `k`;
/// `dst` (`[kq][16]`, `kq = ceil(k / 2)` for `pairs`, else `k`) gets element `q` of lane `l`
/// = row `l`'s pair `(bf16(x[2q]), bf16(x[2q + 1]))` (low, high; nearest even; zero past `k`)
/// or the bits of `x[q]`. Lanes past the rows are zero.
///
/// # Safety
/// AVX-512F/BW/VL/BF16 available; `dst.len() == 16 * kq`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) unsafe fn pack_group16(x: &[f32], k: usize, pairs: bool, dst: &mut [u32]) {
    let nrows = x.len() / k;
    let kq = dst.len() / 16;
    let mask = |valid: usize| -> __mmask16 {
        if valid >= 16 {
            !0
        } else {
            (1u16 << valid) - 1
        }
    };
    // SAFETY: masked loads read row `l`'s elements `< k` only; stores write `dst[q * 16..][..16]`
    // for `q < kq`.
    unsafe {
        for q0 in (0..kq).step_by(16) {
            let mut v = [_mm512_setzero_si512(); 16];
            for (l, vl) in v.iter_mut().enumerate().take(nrows) {
                let row = x.as_ptr().add(l * k);
                *vl = if pairs {
                    let e = 2 * q0;
                    let lo = _mm512_maskz_loadu_ps(mask(k - e), row.add(e));
                    let hi = _mm512_maskz_loadu_ps(mask(k.saturating_sub(e + 16)), row.add(e + 16));
                    std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
                } else {
                    _mm512_castps_si512(_mm512_maskz_loadu_ps(mask(k - q0), row.add(q0)))
                };
            }
            let t = crate::simd::transpose16(v.map(|x| _mm512_castsi512_ps(x)))
                .map(|x| _mm512_castps_si512(x));
            for (q, tq) in t.iter().enumerate().take(kq - q0) {
                _mm512_storeu_si512(dst.as_mut_ptr().add((q0 + q) * 16) as *mut _, *tq);
            }
        }
    }
}
