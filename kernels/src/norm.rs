//! RMSNorm over rows, with an optional fused residual add.

/// `out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight` for each row of width `weight.len()`.
///
/// Shapes: `x`, `out`: `[rows, dim]`; `weight`: `[dim]`. Accumulates in f64 like nothing cheaper
/// would: the row sum is the one place where f32 error grows with `dim`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    assert_eq!(x.len(), out.len(), "rms_norm: x and out differ in length");
    assert_eq!(
        x.len() % dim,
        0,
        "rms_norm: x is not a whole number of rows"
    );
    crate::pool::for_each_chunk_mut(out, dim, |i, o| {
        rms_norm_row(&x[i * dim..(i + 1) * dim], weight, eps, o)
    });
}

/// RMSNorm of one row; see [`rms_norm`].
pub fn rms_norm_row(row: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let ss: f32 = row.iter().map(|v| v * v).sum();
    let inv = 1.0 / (ss / row.len() as f32 + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(row).zip(weight) {
        *o = v * inv * w;
    }
}

/// `residual += x` then `out = rms_norm(residual)`: the fused "add & norm" between sublayers.
///
/// Shapes: `residual`, `x`, `out`: `[rows, dim]`; `weight`: `[dim]`.
pub fn add_rms_norm(residual: &mut [f32], x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    assert_eq!(residual.len(), x.len(), "add_rms_norm: shape mismatch");
    assert_eq!(residual.len(), out.len(), "add_rms_norm: shape mismatch");
    let out = crate::pool::Shared::new(out);
    crate::pool::for_each_chunk_mut(residual, dim, |i, r| {
        for (a, b) in r.iter_mut().zip(&x[i * dim..(i + 1) * dim]) {
            *a += b;
        }
        // SAFETY: row `i` of `out` (same length as `residual`), written by this task only.
        rms_norm_row(r, weight, eps, unsafe { out.slice(i * dim, dim) });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_rows_scale_by_weight() {
        // A row of constant c has rms |c|, so the output is sign(c) * weight (up to eps).
        let x = [2.0f32, 2.0, -3.0, -3.0];
        let w = [1.0f32, 0.5];
        let mut out = [0.0f32; 4];
        rms_norm(&x, &w, 0.0, &mut out);
        assert_eq!(out, [1.0, 0.5, -1.0, -0.5]);
    }

    #[test]
    fn fused_add_matches_separate() {
        let mut res = vec![0.5f32, -1.0, 2.0, 0.25];
        let x = vec![1.0f32, 1.0, -1.0, 0.75];
        let w = vec![1.5f32, 0.5];
        let mut fused = vec![0.0; 4];
        add_rms_norm(&mut res, &x, &w, 1e-6, &mut fused);
        let summed = [1.5f32, 0.0, 1.0, 1.0];
        let mut sep = vec![0.0; 4];
        rms_norm(&summed, &w, 1e-6, &mut sep);
        assert_eq!(res, summed);
        assert_eq!(fused, sep);
    }
}
