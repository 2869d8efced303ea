//! Gated activations of the MLP: `act(gate) * up`, vectorised over 16 lanes with the `exp` of
//! `crate::simd` (AVX-512, AVX2 or portable; the three give identical bits).

use crate::simd::{exp, Isa, Lanes, Path, Portable, LANES};

/// `out[t, i] = silu(gu[t, i]) * gu[t, I + i]` where `gu` is the fused gate/up projection and
/// `silu(g) = g / (1 + e^-g)`, with `e^x` within 2e-7 relative (`crate::simd::exp`), so each
/// output is within about 4e-7 relative of the formula in f32.
///
/// Shapes: `gate_up`: `[rows, 2I]` (gate columns first, then up); `out`: `[rows, I]`.
pub fn silu_mul(gate_up: &[f32], rows: usize, out: &mut [f32]) {
    if rows == 0 {
        return;
    }
    assert_eq!(
        gate_up.len(),
        2 * out.len(),
        "silu_mul: out must be half of gate_up"
    );
    let inter = out.len() / rows;
    let path = Path::best();
    crate::pool::for_each_chunk_mut(out, inter, |i, o| {
        let (g, u) = gate_up[2 * i * inter..2 * (i + 1) * inter].split_at(inter);
        silu_mul_row(path, g, u, o);
    });
}

/// One row on the compiled variant of `path`.
fn silu_mul_row(path: Path, g: &[f32], u: &[f32], o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match path {
        Path::Avx512 => {
            if let Some(isa) = crate::simd::Avx512::detect() {
                // SAFETY: the token proves the CPU has the features `row_avx512` enables.
                return unsafe { row_avx512(isa, g, u, o) };
            }
        }
        Path::Avx2 => {
            if let Some(isa) = crate::simd::Avx2::detect() {
                // SAFETY: the token proves the CPU has the features `row_avx2` enables.
                return unsafe { row_avx2(isa, g, u, o) };
            }
        }
        Path::Portable => {}
    }
    let _ = path;
    row(Portable, g, u, o)
}

/// [`row`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn row_avx512(isa: crate::simd::Avx512, g: &[f32], u: &[f32], o: &mut [f32]) {
    row(isa, g, u, o)
}

/// [`row`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_avx2(isa: crate::simd::Avx2, g: &[f32], u: &[f32], o: &mut [f32]) {
    row(isa, g, u, o)
}

/// `o = silu(g) * u` in chunks of 16 (the last one zero-padded).
#[inline(always)]
fn row<I: Isa>(isa: I, g: &[f32], u: &[f32], o: &mut [f32]) {
    let one = isa.splat(1.0);
    for ((o, g), u) in o
        .chunks_mut(LANES)
        .zip(g.chunks(LANES))
        .zip(u.chunks(LANES))
    {
        let (mut gl, mut ul) = (Lanes::default(), Lanes::default());
        gl.0[..g.len()].copy_from_slice(g);
        ul.0[..u.len()].copy_from_slice(u);
        let gv = isa.load(&gl);
        let e = exp(isa, isa.sub(isa.splat(0.0), gv));
        let y = isa.mul(isa.div(gv, isa.add(one, e)), isa.load(&ul));
        let mut ol = Lanes::default();
        isa.store(y, &mut ol);
        o.copy_from_slice(&ol.0[..o.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_mul_formula() {
        let gu = [0.0f32, 1.0, 2.0, 3.0, -1.0, 5.0, 7.0, 11.0];
        let mut out = [0.0f32; 4];
        silu_mul(&gu, 2, &mut out);
        let silu = |x: f32| x / (1.0 + (-x).exp());
        let want = [
            silu(0.0) * 2.0,
            silu(1.0) * 3.0,
            silu(-1.0) * 7.0,
            silu(5.0) * 11.0,
        ];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    /// Every path against the f64 formula over a wide range (incl. the tails where `e^-g`
    /// clamps or underflows) and odd widths: relative error <= 1e-6 (exp's 2e-7 plus three f32
    /// roundings), absolute 1e-30 near zero; and the paths agree bit for bit.
    #[test]
    fn silu_mul_matches_formula_on_every_path() {
        let inter = 37;
        let rows = 5;
        let gu: Vec<f32> = (0..rows * 2 * inter)
            .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
            .enumerate()
            .map(|(i, v)| {
                if i % (2 * inter) < inter {
                    v * 120.0
                } else {
                    v
                }
            })
            .collect();
        let mut outs = Vec::new();
        for path in [Path::Avx512, Path::Avx2, Path::Portable] {
            if !path.available() {
                continue;
            }
            let mut out = vec![f32::NAN; rows * inter];
            for (r, o) in out.chunks_mut(inter).enumerate() {
                let (g, u) = gu[r * 2 * inter..(r + 1) * 2 * inter].split_at(inter);
                silu_mul_row(path, g, u, o);
            }
            for r in 0..rows {
                for i in 0..inter {
                    let (g, u) = (
                        gu[r * 2 * inter + i] as f64,
                        gu[r * 2 * inter + inter + i] as f64,
                    );
                    let want = g / (1.0 + (-g).exp()) * u;
                    let got = out[r * inter + i] as f64;
                    assert!(
                        (got - want).abs() <= 1e-6 * want.abs() + 1e-30,
                        "{path:?} g={g} u={u}: {got} vs {want}"
                    );
                }
            }
            outs.push(out);
        }
        for o in &outs[1..] {
            assert!(o
                .iter()
                .zip(&outs[0])
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
