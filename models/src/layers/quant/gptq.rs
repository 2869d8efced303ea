//! AutoGPTQ / GPTQModel checkpoints: reading `qweight` `[in/8, out]` (8 input channels per
//! int32, sequential), `qzeros` `[groups, out/8]` (sequential along the output dim; v1 stores
//! `zero - 1`, `gptq_v2` the zero itself), `scales` `[groups, out]` f16 and `g_idx` `[in]`,
//! repacking them into the kernel layout, and the plain dequantization used as a test oracle.
//!
//! Act-order (`desc_act`, non-monotonic `g_idx`): input channels are sorted by group at load
//! (a stable sort, so each group's channels become one contiguous run) and the kernel sees the
//! permuted channels; [`super::QuantLinear`] permutes `x` the same way at run time.

use super::{f16_bits, group_layout, ints, QuantConfig, QuantFormat};
use crate::error::{ModelError, Result};
use crate::weights::WeightSource;
use candela_kernels::Int4Weights;

/// The tensors of one GPTQ projection, as stored, with `g_idx` defaulted to `i / group`.
struct Raw {
    qweight: Vec<i32>,
    qzeros: Vec<i32>,
    scales: Vec<u16>,
    g_idx: Vec<usize>,
    gs: usize,
    groups: usize,
    zero_offset: u32,
}

fn read(
    src: &dyn WeightSource,
    prefix: &str,
    k: usize,
    n: usize,
    cfg: &QuantConfig,
) -> Result<Raw> {
    let bad = |m: String| Err(ModelError::Config(format!("{prefix}: {m}")));
    let (gs, groups) = group_layout(prefix, "GPTQ", k, n, cfg)?;
    let gname = format!("{prefix}.g_idx");
    let g_idx: Vec<usize> = if src.contains(&gname) {
        let raw = ints(src, &gname, &[k])?;
        if let Some(&g) = raw.iter().find(|&&g| g < 0 || g as usize >= groups) {
            return bad(format!("g_idx value {g} is outside 0..{groups}"));
        }
        raw.into_iter().map(|g| g as usize).collect()
    } else {
        (0..k).map(|i| i / gs).collect()
    };
    Ok(Raw {
        qweight: ints(src, &format!("{prefix}.qweight"), &[k / 8, n])?,
        qzeros: ints(src, &format!("{prefix}.qzeros"), &[groups, n / 8])?,
        scales: f16_bits(src, &format!("{prefix}.scales"), &[groups, n])?,
        g_idx,
        gs,
        groups,
        zero_offset: u32::from(cfg.format == QuantFormat::GptqV1),
    })
}

impl Raw {
    #[inline]
    fn code(&self, n: usize, i: usize, o: usize) -> u32 {
        (self.qweight[(i / 8) * n + o] as u32 >> (4 * (i % 8))) & 0xF
    }

    #[inline]
    fn zero(&self, n: usize, g: usize, o: usize) -> u32 {
        ((self.qzeros[g * (n / 8) + o / 8] as u32 >> (4 * (o % 8))) & 0xF) + self.zero_offset
    }
}

/// Repacks `<prefix>.{qweight,qzeros,scales,g_idx}` (`in` = `k`, `out` = `n`) into kernel layout.
/// Returns the permutation of input channels (kernel position → original channel) when
/// `g_idx` is not `i / group_size`.
pub(super) fn load(
    src: &dyn WeightSource,
    prefix: &str,
    k: usize,
    n: usize,
    cfg: &QuantConfig,
) -> Result<(Int4Weights, Option<Vec<u32>>)> {
    let raw = read(src, prefix, k, n, cfg)?;
    let (k8, g, gs) = (k / 8, raw.groups, raw.gs);
    let perm: Option<Vec<u32>> = if raw.g_idx.iter().enumerate().all(|(i, &gi)| gi == i / gs) {
        None
    } else {
        let mut p: Vec<u32> = (0..k as u32).collect();
        p.sort_by_key(|&i| raw.g_idx[i as usize]);
        if let Some(pos) = (0..k).find(|&pos| raw.g_idx[p[pos] as usize] != pos / gs) {
            return Err(ModelError::Config(format!(
                "{prefix}: g_idx groups are not all of size {gs} (position {pos}); this act-order layout is not supported"
            )));
        }
        Some(p)
    };
    let mut qweight = vec![0u32; n * k8];
    for o in 0..n {
        for pos in 0..k {
            let i = perm.as_ref().map_or(pos, |p| p[pos] as usize);
            qweight[o * k8 + pos / 8] |= raw.code(n, i, o) << (4 * (pos % 8));
        }
    }
    let mut zeros = vec![0u8; n * g];
    for gi in 0..g {
        for o in 0..n {
            zeros[gi * n + o] = raw.zero(n, gi, o) as u8;
        }
    }
    let w = Int4Weights::new(k, n, gs, qweight, raw.scales, zeros)
        .map_err(|e| ModelError::Config(format!("{prefix}: {e}")))?;
    Ok((w, perm))
}

/// Dense `[out, in]` f32: `W[o, i] = (q[i, o] - z[g_idx[i], o]) * s[g_idx[i], o]` with the
/// stored zero plus one for v1 checkpoints, straight from the stored tensors (tests only).
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
            let g = raw.g_idx[i];
            let s = half::f16::from_bits(raw.scales[g * n + o]).to_f32();
            w[o * k + i] = (raw.code(n, i, o) as f32 - raw.zero(n, g, o) as f32) * s;
        }
    }
    Ok(w)
}
