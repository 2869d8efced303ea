//! FP8 scalars for the KV cache: E4M3 (the "fn" variant: no infinities, max 448, NaN = S.1111.111,
//! what vLLM calls `fp8`/`fp8_e4m3`) and E5M2 (IEEE-like, max 57344, with inf and NaN).
//!
//! Encoding rounds to nearest, ties to even, and saturates out-of-range values (inf included) to
//! the largest finite value of the sign, as vLLM's `__NV_SATFINITE` casts do; NaN stays NaN.
//! Decoding is exact (every FP8 value is an f32): one value through a 256-entry table, slices
//! 8 at a time through f16 and F16C when available ([`decode_scaled`]).

use std::sync::OnceLock;

/// An 8-bit float format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fp8Format {
    /// 1 sign, 4 exponent (bias 7), 3 mantissa bits; finite range ±448, subnormals down to 2⁻⁹.
    E4M3,
    /// 1 sign, 5 exponent (bias 15), 2 mantissa bits; finite range ±57344, subnormals to 2⁻¹⁶.
    E5M2,
}

impl Fp8Format {
    /// `(mantissa bits, exponent bias, largest finite magnitude code)`.
    const fn params(self) -> (u32, i32, u8) {
        match self {
            Fp8Format::E4M3 => (3, 7, 0x7E),
            Fp8Format::E5M2 => (2, 15, 0x7B),
        }
    }

    /// Largest finite value (448 or 57344).
    pub fn max_finite(self) -> f32 {
        self.decode(self.params().2)
    }

    /// Rounds `x` to the nearest FP8 value (ties to even), saturating to ±[`Self::max_finite`].
    pub fn encode(self, x: f32) -> u8 {
        let (mb, bias, max_code) = self.params();
        let sign = ((x.to_bits() >> 24) & 0x80) as u8;
        if x.is_nan() {
            return sign | 0x7F;
        }
        let a = x.abs();
        if a >= self.max_finite() {
            return sign | max_code;
        }
        let emin = 1 - bias;
        // Exponent of the binade of `a`, clamped to the subnormal binade.
        let e = (((a.to_bits() >> 23) as i32) - 127).max(emin);
        // Spacing of FP8 values in that binade: 2^(e - mb), a normal f32, so the division is exact.
        let quantum = f32::from_bits(((e - mb as i32 + 127) as u32) << 23);
        let r = (a / quantum).round_ties_even() as u32;
        // Subnormals (e = emin, r < 2^mb), normals and the carry into the next binade
        // (r = 2^(mb+1)) all encode as `((e + bias - 1) << mb) + r`.
        let code = ((((e + bias - 1) as u32) << mb) + r).min(max_code as u32);
        sign | code as u8
    }

    /// The exact value of code `b` (through the table).
    #[inline]
    pub fn decode(self, b: u8) -> f32 {
        self.table()[b as usize]
    }

    /// All 256 decoded values, indexed by code.
    pub fn table(self) -> &'static [f32; 256] {
        static TABLES: OnceLock<[[f32; 256]; 2]> = OnceLock::new();
        let t = TABLES.get_or_init(|| {
            let build = |f: Fp8Format| std::array::from_fn(|b| f.decode_bits(b as u8));
            [build(Fp8Format::E4M3), build(Fp8Format::E5M2)]
        });
        match self {
            Fp8Format::E4M3 => &t[0],
            Fp8Format::E5M2 => &t[1],
        }
    }

    /// Decodes by assembling the f32 bit pattern directly (builds the table).
    fn decode_bits(self, b: u8) -> f32 {
        let (mb, bias, _) = self.params();
        let sign = ((b as u32) & 0x80) << 24;
        let mag = (b & 0x7F) as u32;
        match self {
            Fp8Format::E4M3 if mag == 0x7F => return f32::NAN,
            Fp8Format::E5M2 if mag == 0x7C => return f32::from_bits(sign | 0x7F80_0000),
            Fp8Format::E5M2 if mag > 0x7C => return f32::NAN,
            _ => {}
        }
        let (e, m) = (mag >> mb, mag & ((1 << mb) - 1));
        let bits = if e == 0 {
            if m == 0 {
                0
            } else {
                // Subnormal m * 2^(1 - bias - mb): normalise on m's leading bit p.
                let p = 31 - m.leading_zeros();
                let exp = p as i32 + 1 - bias - mb as i32;
                (((exp + 127) as u32) << 23) | ((m - (1 << p)) << (23 - p))
            }
        } else {
            (((e as i32 - bias + 127) as u32) << 23) | (m << (23 - mb))
        };
        f32::from_bits(sign | bits)
    }
}

/// Encodes `src / scale` into `dst` (same length). A `scale` of 1.0 stores the values as they are.
pub fn encode_scaled(format: Fp8Format, src: &[f32], scale: f32, dst: &mut [u8]) {
    let inv = 1.0 / scale;
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = format.encode(x * inv);
    }
}

/// Decodes `src` into `dst` (same length) times `scale`. With AVX2 + F16C (detected at run
/// time) 8 codes at a time go through f16: an E5M2 code is the top byte of the f16 with the
/// same value, and an E4M3 code shifted into f16's fields is its value / 256; elsewhere through
/// the table. Equals `decode(b) * scale` for every code except E4M3's NaN (0x7F/0xFF), which the
/// SIMD path decodes as ±480 · scale; [`Fp8Format::encode`] produces it only for NaN input.
pub fn decode_scaled(format: Fp8Format, src: &[u8], scale: f32, dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c") {
        // SAFETY: the features were just checked; the kernel touches `src[..n]`/`dst[..n]` only.
        done = unsafe { decode_f16c(format, &src[..n], scale, &mut dst[..n]) };
    }
    let table = format.table();
    for (d, &b) in dst[done..n].iter_mut().zip(&src[done..n]) {
        *d = table[b as usize] * scale;
    }
}

/// Decodes the longest multiple of 8 codes of `src` into `dst`; returns how many.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn decode_f16c(format: Fp8Format, src: &[u8], scale: f32, dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len()) / 8 * 8;
    let mul = _mm256_set1_ps(match format {
        Fp8Format::E4M3 => scale * 256.0,
        Fp8Format::E5M2 => scale,
    });
    let (sign, mag) = (_mm_set1_epi16(0x80), _mm_set1_epi16(0x7F));
    for i in (0..n).step_by(8) {
        let w = _mm_cvtepu8_epi16(_mm_loadl_epi64(src.as_ptr().add(i) as *const __m128i));
        let h = match format {
            Fp8Format::E5M2 => _mm_slli_epi16::<8>(w),
            Fp8Format::E4M3 => _mm_or_si128(
                _mm_slli_epi16::<8>(_mm_and_si128(w, sign)),
                _mm_slli_epi16::<7>(_mm_and_si128(w, mag)),
            ),
        };
        _mm256_storeu_ps(
            dst.as_mut_ptr().add(i),
            _mm256_mul_ps(_mm256_cvtph_ps(h), mul),
        );
    }
    n
}

/// `Σ q[i] · decode(codes[i])` over `min(len)` elements (the caller applies the tensor scale),
/// decoding in registers with AVX2 + F16C when available (same values as [`decode_scaled`]).
pub fn dot_codes(format: Fp8Format, codes: &[u8], q: &[f32]) -> f32 {
    let n = codes.len().min(q.len());
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("f16c")
        && is_x86_feature_detected!("fma")
    {
        // SAFETY: features checked; the kernel reads `codes[..n]` and `q[..n]` only.
        return unsafe { simd::dot(format, &codes[..n], &q[..n]) };
    }
    let table = format.table();
    codes[..n]
        .iter()
        .zip(&q[..n])
        .map(|(&b, &x)| x * table[b as usize])
        .sum()
}

/// `o[i] += w · decode(codes[i])` over `min(len)` elements (fold the tensor scale into `w`).
pub fn axpy_codes(format: Fp8Format, codes: &[u8], w: f32, o: &mut [f32]) {
    let n = codes.len().min(o.len());
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("f16c")
        && is_x86_feature_detected!("fma")
    {
        // SAFETY: features checked; the kernel touches `codes[..n]` and `o[..n]` only.
        unsafe { simd::axpy(format, &codes[..n], w, &mut o[..n]) };
        return;
    }
    let table = format.table();
    for (a, &b) in o[..n].iter_mut().zip(&codes[..n]) {
        *a += w * table[b as usize];
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::Fp8Format;
    use std::arch::x86_64::*;

    /// 8 codes at `p` as f32 (E4M3 values / 256, E5M2 values as they are).
    #[target_feature(enable = "avx2,f16c,fma")]
    #[inline]
    unsafe fn load8(format: Fp8Format, p: *const u8) -> __m256 {
        let w = _mm_cvtepu8_epi16(_mm_loadl_epi64(p as *const __m128i));
        let h = match format {
            Fp8Format::E5M2 => _mm_slli_epi16::<8>(w),
            Fp8Format::E4M3 => _mm_or_si128(
                _mm_slli_epi16::<8>(_mm_and_si128(w, _mm_set1_epi16(0x80))),
                _mm_slli_epi16::<7>(_mm_and_si128(w, _mm_set1_epi16(0x7F))),
            ),
        };
        _mm256_cvtph_ps(h)
    }

    fn unit(format: Fp8Format) -> f32 {
        match format {
            Fp8Format::E4M3 => 256.0,
            Fp8Format::E5M2 => 1.0,
        }
    }

    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn dot(format: Fp8Format, codes: &[u8], q: &[f32]) -> f32 {
        let n8 = codes.len() / 8 * 8;
        let mut acc = _mm256_setzero_ps();
        for i in (0..n8).step_by(8) {
            acc = _mm256_fmadd_ps(
                load8(format, codes.as_ptr().add(i)),
                _mm256_loadu_ps(q.as_ptr().add(i)),
                acc,
            );
        }
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let mut sum = _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s))) * unit(format);
        let table = format.table();
        for i in n8..codes.len() {
            sum += q[i] * table[codes[i] as usize];
        }
        sum
    }

    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn axpy(format: Fp8Format, codes: &[u8], w: f32, o: &mut [f32]) {
        let n8 = codes.len() / 8 * 8;
        let wv = _mm256_set1_ps(w * unit(format));
        for i in (0..n8).step_by(8) {
            let p = o.as_mut_ptr().add(i);
            _mm256_storeu_ps(
                p,
                _mm256_fmadd_ps(load8(format, codes.as_ptr().add(i)), wv, _mm256_loadu_ps(p)),
            );
        }
        let table = format.table();
        for i in n8..codes.len() {
            o[i] += w * table[codes[i] as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent decode from the format definition, in f64 arithmetic.
    fn reference(f: Fp8Format, b: u8) -> f64 {
        let (eb, mb, bias) = match f {
            Fp8Format::E4M3 => (4, 3, 7),
            Fp8Format::E5M2 => (5, 2, 15),
        };
        let s = if b & 0x80 != 0 { -1.0 } else { 1.0 };
        let e = ((b >> mb) & ((1 << eb) - 1)) as i32;
        let m = (b & ((1 << mb) - 1)) as f64;
        let emax = (1 << eb) - 1;
        match f {
            Fp8Format::E4M3 if e == emax && m == 7.0 => return f64::NAN,
            Fp8Format::E5M2 if e == emax => {
                return if m == 0.0 {
                    s * f64::INFINITY
                } else {
                    f64::NAN
                }
            }
            _ => {}
        }
        if e == 0 {
            s * m / (1 << mb) as f64 * 2f64.powi(1 - bias)
        } else {
            s * (1.0 + m / (1 << mb) as f64) * 2f64.powi(e - bias)
        }
    }

    const FORMATS: [Fp8Format; 2] = [Fp8Format::E4M3, Fp8Format::E5M2];

    #[test]
    fn decode_matches_reference_for_all_256_codes() {
        for f in FORMATS {
            for b in 0..=255u8 {
                let (got, want) = (f.decode(b) as f64, reference(f, b));
                assert!(
                    got == want || (got.is_nan() && want.is_nan()),
                    "{f:?} {b:#04x}: {got} vs {want}"
                );
            }
        }
        assert_eq!(Fp8Format::E4M3.max_finite(), 448.0);
        assert_eq!(Fp8Format::E5M2.max_finite(), 57344.0);
    }

    /// Nearest finite code by brute force, ties to the even code; saturating.
    fn nearest(f: Fp8Format, x: f32) -> u8 {
        // Saturation (satfinite): beyond the largest finite value, clamp to it.
        if x.abs() > f.max_finite() {
            return if x < 0.0 { 0x80 } else { 0 } | f.encode(f.max_finite());
        }
        let mut best = (f64::INFINITY, 0u8);
        for b in 0..=255u8 {
            let v = reference(f, b);
            // Only codes of x's sign (the nearest value never has the other sign).
            if !v.is_finite() || (b & 0x80 != 0) != x.is_sign_negative() {
                continue;
            }
            let d = (v - x as f64).abs();
            if d < best.0 || (d == best.0 && b & 1 == 0) {
                best = (d, b);
            }
        }
        best.1
    }

    #[test]
    fn encode_round_trips_every_finite_code() {
        for f in FORMATS {
            for b in 0..=255u8 {
                let v = f.decode(b);
                if v.is_finite() {
                    assert_eq!(f.encode(v), b, "{f:?} {b:#04x} = {v}");
                }
            }
        }
    }

    #[test]
    fn encode_is_nearest_even_with_saturation() {
        for f in FORMATS {
            let mut probes = vec![
                0.0f32,
                -0.0,
                1e-30,
                -1e-30,
                1e30,
                -1e30,
                f32::INFINITY,
                f32::NEG_INFINITY,
            ];
            // Midpoints between neighbours and values just either side of them.
            let finite: Vec<f32> = (0..=255u8)
                .map(|b| f.decode(b))
                .filter(|v| v.is_finite())
                .collect();
            for &a in &finite {
                for &b in &finite {
                    if a < b && finite.iter().all(|&v| v <= a || v >= b) {
                        let mid = (a as f64 + b as f64) / 2.0;
                        let m = mid as f32;
                        probes.extend([
                            m,
                            f32::from_bits(m.to_bits() + 1),
                            f32::from_bits(m.to_bits() - 1),
                        ]);
                    }
                }
            }
            let mut x = 0x1234_5678u32;
            for _ in 0..20000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let v = f32::from_bits(x);
                if v.is_finite() && v.abs() < 1e6 && v.abs() > 1e-8 {
                    probes.push(v);
                }
            }
            for &p in &probes {
                assert_eq!(f.encode(p), nearest(f, p), "{f:?} {p:e}");
            }
            assert_eq!(f.encode(f32::NAN) & 0x7F, 0x7F);
            assert!(f.decode(f.encode(f32::NAN)).is_nan());
        }
    }

    #[test]
    fn slice_decode_equals_the_table_times_the_scale() {
        let codes: Vec<u8> = (0..=255u8).collect();
        let mut out = vec![0.0f32; 256];
        for f in FORMATS {
            for scale in [1.0f32, 0.375, 3.0] {
                decode_scaled(f, &codes, scale, &mut out);
                for (&b, &v) in codes.iter().zip(&out) {
                    let want = f.decode(b) * scale;
                    if f == Fp8Format::E4M3 && b & 0x7F == 0x7F {
                        assert_eq!(v.abs(), 480.0 * scale, "{f:?} NaN code {b:#04x}");
                    } else {
                        assert!(
                            v == want || (v.is_nan() && want.is_nan()),
                            "{f:?} {b:#04x} x {scale}: {v} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn fused_dot_and_axpy_match_the_table() {
        let codes: Vec<u8> = (0..=255u8)
            .filter(|b| b & 0x7F < 0x7B)
            .chain([3, 200, 17])
            .collect();
        let q: Vec<f32> = (0..codes.len())
            .map(|i| (i % 7) as f32 * 0.25 - 0.75)
            .collect();
        for f in FORMATS {
            let want: f64 = codes
                .iter()
                .zip(&q)
                .map(|(&b, &x)| x as f64 * f.decode(b) as f64)
                .sum();
            let got = dot_codes(f, &codes, &q) as f64;
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{f:?}: {got} vs {want}"
            );
            let mut o = q.clone();
            axpy_codes(f, &codes, 0.5, &mut o);
            for ((&a, &x), &b) in o.iter().zip(&q).zip(&codes) {
                assert_eq!(a, x + 0.5 * f.decode(b), "{f:?} {b:#04x}");
            }
        }
    }

    #[test]
    fn scaled_encoding_divides_by_the_scale() {
        let mut out = [0u8; 3];
        encode_scaled(Fp8Format::E4M3, &[2.0, -4.0, 1000.0], 2.0, &mut out);
        assert_eq!(out.map(|b| Fp8Format::E4M3.decode(b)), [1.0, -2.0, 448.0]);
    }
}
