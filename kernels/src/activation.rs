//! Gated activations of the MLP: `act(gate) * up`.

use rayon::prelude::*;

/// `out[t, i] = silu(gu[t, i]) * gu[t, I + i]` where `gu` is the fused gate/up projection.
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
    out.par_chunks_mut(inter)
        .zip(gate_up.par_chunks(2 * inter))
        .for_each(|(o, gu)| {
            let (g, u) = gu.split_at(inter);
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = g / (1.0 + (-g).exp()) * u;
            }
        });
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
}
