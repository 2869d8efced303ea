//! Gated MLP: `down(act(gate(x)) * up(x))`, with gate and up fused into one projection.

use super::linear::{Bias, Linear};
use super::LoadOptions;
use crate::config::{Activation, ModelConfig};
use crate::error::{ModelError, Result};
use crate::weights::WeightSource;
use candela_kernels::activation::silu_mul;

/// Rows the MLP runs at once. A 2048-token prefill step would otherwise allocate `[2048, 2I]` +
/// `[2048, I]` f32 intermediates (120 MiB for Qwen2.5-0.5B) per layer: above glibc's mmap
/// threshold, so every layer paid for fresh zeroed pages (`clear_page` was 11-14 % of a prefill
/// profile). 256-row chunks keep them at 15 MiB (reused from the heap, mostly L3-resident
/// between the two projections), and the dense GEMM already streams its weights once per 256
/// rows, so no weight traffic is added.
pub const CHUNK_ROWS: usize = 256;

/// SwiGLU feed-forward block.
pub struct GatedMlp {
    gate_up: Linear,
    down: Linear,
    inter: usize,
}

impl GatedMlp {
    /// Loads `<prefix>.{gate,up,down}_proj`.
    pub fn load(
        src: &dyn WeightSource,
        prefix: &str,
        cfg: &ModelConfig,
        opts: &LoadOptions,
    ) -> Result<Self> {
        if cfg.hidden_act != Activation::Silu {
            return Err(ModelError::Config(format!(
                "hidden_act {:?} is not supported by the gated MLP",
                cfg.hidden_act
            )));
        }
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let (g, u) = (format!("{prefix}.gate_proj"), format!("{prefix}.up_proj"));
        let gate_up = Linear::load_fused(src, &[(&g, i), (&u, i)], h, Bias::IfPresent, opts)?;
        let down = Linear::load(
            src,
            &format!("{prefix}.down_proj"),
            i,
            h,
            Bias::IfPresent,
            opts,
        )?;
        Ok(GatedMlp {
            gate_up,
            down,
            inter: i,
        })
    }

    /// Bytes of weights one forward pass reads.
    pub fn bytes(&self) -> usize {
        self.gate_up.bytes() + self.down.bytes()
    }

    /// `[rows, hidden]` → `[rows, hidden]`, [`CHUNK_ROWS`] rows at a time.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        if rows <= CHUNK_ROWS {
            return self.forward_chunk(x, rows);
        }
        let h = x.len() / rows;
        let mut out = Vec::with_capacity(rows * self.down.out_dim());
        for (i, xc) in x.chunks(CHUNK_ROWS * h).enumerate() {
            let r = (rows - i * CHUNK_ROWS).min(CHUNK_ROWS);
            out.extend_from_slice(&self.forward_chunk(xc, r)?);
        }
        Ok(out)
    }

    fn forward_chunk(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let gu = self.gate_up.forward(x, rows)?;
        let mut act = vec![0.0; rows * self.inter];
        silu_mul(&gu, rows, &mut act);
        self.down.forward(&act, rows)
    }
}
