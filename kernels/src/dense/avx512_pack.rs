//! Activation packing for the AVX-512 broadcast GEMM (`avx512.rs`): 16 rows at a time, rounded
//! to bf16 pairs (or kept as f32 bits) with `vcvtne2ps2bf16` and turned into 16-lane groups by
//! a 16 x 16 register transpose (the scalar per-element version was ~8 % of a prefill profile).

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
            let t = transpose16(v);
            for (q, tq) in t.iter().enumerate().take(kq - q0) {
                _mm512_storeu_si512(dst.as_mut_ptr().add((q0 + q) * 16) as *mut _, *tq);
            }
        }
    }
}

/// Transposes a 16 x 16 matrix of 32-bit elements held as 16 row vectors: element `j` of
/// output vector `i` is element `i` of input vector `j`.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    // 32-bit interleave of row pairs: per 128-bit lane L, a[2i] = (r2i[4L], r2i+1[4L],
    // r2i[4L+1], r2i+1[4L+1]), a[2i+1] the same for elements 4L+2, 4L+3.
    let a: [__m512i; 16] = std::array::from_fn(|i| {
        let (x, y) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi32(x, y)
        } else {
            _mm512_unpackhi_epi32(x, y)
        }
    });
    // 64-bit interleave: b[4i + j] holds, in lane L, column 4L + j of rows 4i..4i + 4.
    let b: [__m512i; 16] = std::array::from_fn(|idx| {
        let (i, j) = (idx / 4, idx % 4);
        let (x, y) = (a[4 * i + j / 2], a[4 * i + 2 + j / 2]);
        if j % 2 == 0 {
            _mm512_unpacklo_epi64(x, y)
        } else {
            _mm512_unpackhi_epi64(x, y)
        }
    });
    // 4 x 4 transpose of 128-bit lanes: output 4L + j = lane L of b[j], b[4 + j], b[8 + j],
    // b[12 + j].
    let mut out = [_mm512_setzero_si512(); 16];
    for j in 0..4 {
        let c0 = _mm512_shuffle_i32x4::<0x44>(b[j], b[4 + j]);
        let c1 = _mm512_shuffle_i32x4::<0xEE>(b[j], b[4 + j]);
        let c2 = _mm512_shuffle_i32x4::<0x44>(b[8 + j], b[12 + j]);
        let c3 = _mm512_shuffle_i32x4::<0xEE>(b[8 + j], b[12 + j]);
        out[j] = _mm512_shuffle_i32x4::<0x88>(c0, c2);
        out[4 + j] = _mm512_shuffle_i32x4::<0xDD>(c0, c2);
        out[8 + j] = _mm512_shuffle_i32x4::<0x88>(c1, c3);
        out[12 + j] = _mm512_shuffle_i32x4::<0xDD>(c1, c3);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose16_is_a_transpose() {
        if !is_x86_feature_detected!("avx512f") {
            return;
        }
        let m: Vec<i32> = (0..256).collect();
        // SAFETY: AVX-512F detected above; loads/stores cover 16 x 16 i32.
        unsafe {
            let r: [__m512i; 16] =
                std::array::from_fn(|i| _mm512_loadu_si512(m[16 * i..].as_ptr() as *const _));
            let t = transpose16(r);
            let mut got = vec![0i32; 256];
            for (i, v) in t.iter().enumerate() {
                _mm512_storeu_si512(got[16 * i..].as_mut_ptr() as *mut _, *v);
            }
            for i in 0..16 {
                for j in 0..16 {
                    assert_eq!(got[16 * i + j], m[16 * j + i], "at [{i}, {j}]");
                }
            }
        }
    }
}
