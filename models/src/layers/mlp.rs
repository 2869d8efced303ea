//! Gated MLP: `down(act(gate(x)) * up(x))`, with gate and up fused into one projection.

use super::linear::{Bias, Linear};
use super::LoadOptions;
use crate::config::{Activation, ModelConfig};
use crate::error::{ModelError, Result};
use crate::weights::WeightSource;
use candela_kernels::activation::silu_mul;

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

    /// `[rows, hidden]` → `[rows, hidden]`.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let gu = self.gate_up.forward(x, rows)?;
        let mut act = vec![0.0; rows * self.inter];
        silu_mul(&gu, rows, &mut act);
        self.down.forward(&act, rows)
    }
}
