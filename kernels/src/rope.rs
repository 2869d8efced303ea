//! Rotary position embedding in the half-split ("neox") layout that HF Llama and Qwen2 use.

/// Rotates every head of every token in place.
///
/// Shapes: `x`: `[T, n_heads * head_dim]`; `cos`, `sin`: `[T, head_dim / 2]` (the angles of each
/// token's position). For `i < D/2`: `x'[i] = x[i] cos - x[i + D/2] sin` and
/// `x'[i + D/2] = x[i + D/2] cos + x[i] sin`.
pub fn apply_rope(x: &mut [f32], cos: &[f32], sin: &[f32], n_heads: usize, head_dim: usize) {
    let half = head_dim / 2;
    let row = n_heads * head_dim;
    assert_eq!(x.len() % row, 0, "apply_rope: x is not [T, heads*dim]");
    assert_eq!(
        cos.len(),
        x.len() / row * half,
        "apply_rope: cos is not [T, dim/2]"
    );
    crate::pool::for_each_chunk_mut(x, row, |t, tok| {
        let (c, s) = (
            &cos[t * half..(t + 1) * half],
            &sin[t * half..(t + 1) * half],
        );
        for head in tok.chunks_mut(head_dim) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x0, x1) = (a[i], b[i]);
                a[i] = x0 * c[i] - x1 * s[i];
                b[i] = x1 * c[i] + x0 * s[i];
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_by_quarter_turn() {
        // One head of dim 4, angle pi/2 for both pairs: (x0, x1) -> (-x1, x0).
        let mut x = vec![1.0f32, 2.0, 3.0, 4.0];
        let c = [0.0f32, 0.0];
        let s = [1.0f32, 1.0];
        apply_rope(&mut x, &c, &s, 1, 4);
        assert_eq!(x, vec![-3.0, -4.0, 1.0, 2.0]);
    }

    #[test]
    fn preserves_norm() {
        let mut x: Vec<f32> = (0..16).map(|i| i as f32 * 0.3 - 2.0).collect();
        let n0: f32 = x.iter().map(|v| v * v).sum();
        let ang: Vec<f32> = (0..4).map(|i| 0.7 * i as f32).collect();
        let c: Vec<f32> = ang.iter().map(|a| a.cos()).collect();
        let s: Vec<f32> = ang.iter().map(|a| a.sin()).collect();
        apply_rope(&mut x, &c, &s, 2, 8);
        let n1: f32 = x.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-4);
    }
}
