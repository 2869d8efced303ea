//! AVX2+FMA+F16C kernels of the streaming GEMV in `mod.rs`: weights of any precision are loaded
//! eight at a time, widened to f32 in registers (bf16: a 16-bit shift; f16: `vcvtph2ps`) and
//! multiplied into f32 accumulators with exact f32 activations. Callers check [`available`].

use super::DenseWeight;
use std::arch::x86_64::*;

/// Whether the CPU has AVX2, FMA and F16C.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// Eight weights from `w[i..i + 8]`, widened to f32.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8(w: DenseWeight<'_>, i: usize) -> __m256 {
    // SAFETY: callers pass `i + 8 <= w.len()`; unaligned loads.
    unsafe {
        match w {
            DenseWeight::F32(w) => _mm256_loadu_ps(w.as_ptr().add(i)),
            DenseWeight::BF16(w) => {
                let h = _mm_loadu_si128(w.as_ptr().add(i) as *const __m128i);
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            }
            DenseWeight::F16(w) => {
                _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(i) as *const __m128i))
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// `t[j][r] = x[r, :] · w[off + j*k ..][..k]` for a 3 x 4 tile (`x` is `[4, k]`, the three weight
/// rows start at `off`, `off + k`, `off + 2k`): 12 accumulators, 3 weight and 1 activation
/// register.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `x.len() >= 4k` and `off + 3k <= w.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile(x: &[f32], k: usize, w: DenseWeight<'_>, off: usize) -> [[f32; 4]; 3] {
    let mut acc = [[_mm256_setzero_ps(); 4]; 3];
    let k8 = k / 8 * 8;
    let xp = x.as_ptr();
    let mut i = 0;
    while i < k8 {
        // SAFETY: `i + 8 <= k`, so every load stays inside the rows the caller vouched for.
        unsafe {
            let w0 = load8(w, off + i);
            let w1 = load8(w, off + k + i);
            let w2 = load8(w, off + 2 * k + i);
            #[allow(clippy::needless_range_loop)] // r indexes acc's inner arrays and x's rows alike
            for r in 0..4 {
                let xv = _mm256_loadu_ps(xp.add(r * k + i));
                acc[0][r] = _mm256_fmadd_ps(xv, w0, acc[0][r]);
                acc[1][r] = _mm256_fmadd_ps(xv, w1, acc[1][r]);
                acc[2][r] = _mm256_fmadd_ps(xv, w2, acc[2][r]);
            }
        }
        i += 8;
    }
    let mut out = [[0.0f32; 4]; 3];
    for j in 0..3 {
        for r in 0..4 {
            let mut s = hsum(acc[j][r]);
            for t in k8..k {
                s += x[r * k + t] * w.get(off + j * k + t);
            }
            out[j][r] = s;
        }
    }
    out
}

/// `sums[r] = x[r, :] · w[off .. off + k]` for `r < rows` (`x` is `[rows, k]`, `rows <= 8`);
/// each weight vector is loaded once and used for every row.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `x.len() >= rows * k`, `off + k <= w.len()`,
/// `rows <= min(8, sums.len())`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_rows(
    x: &[f32],
    rows: usize,
    k: usize,
    w: DenseWeight<'_>,
    off: usize,
    sums: &mut [f32],
) {
    let mut acc = [_mm256_setzero_ps(); super::GEMV_BLOCK_ROWS];
    let k8 = k / 8 * 8;
    let xp = x.as_ptr();
    let mut i = 0;
    while i < k8 {
        // SAFETY: `i + 8 <= k` and `r < rows`, inside the buffers the caller vouched for.
        unsafe {
            let wv = load8(w, off + i);
            for (r, a) in acc.iter_mut().enumerate().take(rows) {
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(r * k + i)), wv, *a);
            }
        }
        i += 8;
    }
    for r in 0..rows {
        let mut s = hsum(acc[r]);
        for t in k8..k {
            s += x[r * k + t] * w.get(off + t);
        }
        sums[r] = s;
    }
}
