//! AutoAWQ GEMM checkpoints: reading `qweight` `[in, out/8]` / `qzeros` `[groups, out/8]`
//! (8 nibbles per int32 along the output dim, interleaved: nibble `p` of packed column `c` is
//! output column `8c + AWQ_ORDER[p]`) and `scales` `[groups, out]` f16, repacking them into the
//! kernel layout, and the plain dequantization used as a test oracle.

use super::{f16_bits, group_layout, ints, QuantConfig};
use crate::error::{ModelError, Result};
use crate::weights::WeightSource;
use candela_kernels::Int4Weights;

/// Output column (within a group of 8) held by nibble `p` of a packed word.
const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// The tensors of one AWQ projection, as stored.
struct Raw {
    qweight: Vec<i32>,
    qzeros: Vec<i32>,
    scales: Vec<u16>,
    gs: usize,
    groups: usize,
}

fn read(
    src: &dyn WeightSource,
    prefix: &str,
    k: usize,
    n: usize,
    cfg: &QuantConfig,
) -> Result<Raw> {
    let (gs, groups) = group_layout(prefix, "AWQ", k, n, cfg)?;
    Ok(Raw {
        qweight: ints(src, &format!("{prefix}.qweight"), &[k, n / 8])?,
        qzeros: ints(src, &format!("{prefix}.qzeros"), &[groups, n / 8])?,
        scales: f16_bits(src, &format!("{prefix}.scales"), &[groups, n])?,
        gs,
        groups,
    })
}

/// Nibble of output column `o` in row `r` of a `[rows, n/8]` AWQ-packed tensor.
#[inline]
fn nibble(packed: &[i32], n: usize, r: usize, o: usize) -> u32 {
    let p = AWQ_ORDER.iter().position(|&j| j == o % 8).unwrap_or(0);
    (packed[r * (n / 8) + o / 8] as u32 >> (4 * p)) & 0xF
}

/// Repacks `<prefix>.{qweight,qzeros,scales}` (`in` = `k`, `out` = `n`) into kernel layout.
pub(super) fn load(
    src: &dyn WeightSource,
    prefix: &str,
    k: usize,
    n: usize,
    cfg: &QuantConfig,
) -> Result<Int4Weights> {
    let raw = read(src, prefix, k, n, cfg)?;
    let (k8, n8, g) = (k / 8, n / 8, raw.groups);
    let mut qweight = vec![0u32; n * k8];
    for i in 0..k {
        for c in 0..n8 {
            let word = raw.qweight[i * n8 + c] as u32;
            for (p, &j) in AWQ_ORDER.iter().enumerate() {
                let q = (word >> (4 * p)) & 0xF;
                qweight[(8 * c + j) * k8 + i / 8] |= q << (4 * (i % 8));
            }
        }
    }
    let mut zeros = vec![0u8; n * g];
    for gi in 0..g {
        for o in 0..n {
            zeros[gi * n + o] = nibble(&raw.qzeros, n, gi, o) as u8;
        }
    }
    Int4Weights::new(k, n, raw.gs, qweight, raw.scales, zeros)
        .map_err(|e| ModelError::Config(format!("{prefix}: {e}")))
}

/// Dense `[out, in]` f32: `W[o, i] = (q[i, o] - z[i/group, o]) * s[i/group, o]`, straight from
/// the stored tensors (tests only).
pub(super) fn unpack(
    src: &dyn WeightSource,
    prefix: &str,
    k: usize,
    n: usize,
    cfg: &QuantConfig,
) -> Result<Vec<f32>> {
    let raw = read(src, prefix, k, n, cfg)?;
    let mut w = vec![0.0f32; n * k];
    for o in 0..n {
        for i in 0..k {
            let g = i / raw.gs;
            let q = nibble(&raw.qweight, n, i, o) as f32;
            let z = nibble(&raw.qzeros, n, g, o) as f32;
            let s = half::f16::from_bits(raw.scales[g * n + o]).to_f32();
            w[o * k + i] = (q - z) * s;
        }
    }
    Ok(w)
}
