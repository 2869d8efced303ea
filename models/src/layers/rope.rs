//! Rotary embedding frequencies (plain, linear, Llama 3 scaling) and per-batch cos/sin tables.

use crate::config::{ModelConfig, RopeScaling};
use std::f64::consts::PI;

/// Inverse frequencies of one head, `[head_dim / 2]`.
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
}

/// Cos and sin of every token's angles, `[T, head_dim / 2]` each; computed once per forward.
pub struct CosSin {
    /// `cos(pos * inv_freq)`.
    pub cos: Vec<f32>,
    /// `sin(pos * inv_freq)`.
    pub sin: Vec<f32>,
}

impl RotaryEmbedding {
    /// Frequencies for `cfg` (base `rope_theta`, scaling from `rope_scaling`), as HF computes them.
    pub fn new(cfg: &ModelConfig) -> Self {
        let d = cfg.head_dim;
        let base = cfg.rope_theta;
        let mut inv: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f64 / d as f64))
            .collect();
        match &cfg.rope_scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => inv.iter_mut().for_each(|f| *f /= factor),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = *original_max_position_embeddings as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                for f in inv.iter_mut() {
                    let wavelen = 2.0 * PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
        }
        RotaryEmbedding {
            inv_freq: inv.into_iter().map(|f| f as f32).collect(),
        }
    }

    /// Angles for `positions` (`[T]`). Products are taken in f32 like HF, so long contexts round
    /// the same way.
    pub fn cos_sin(&self, positions: &[u32]) -> CosSin {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        CosSin { cos, sin }
    }
}
