//! Layers shared by every architecture: written once, composed by the files in `arch/`.

pub mod attention;
pub mod decoder;
pub mod dense;
pub mod embedding;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod quant;
pub mod rope;
pub mod tensor;

/// How weights are materialised at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDType {
    /// Keep the stored values exactly (upcast to f32 for compute).
    Auto,
    /// Round every weight to f32 (a no-op on f32 checkpoints).
    F32,
    /// Round every weight through bfloat16.
    BF16,
    /// Round every weight through float16.
    F16,
}

pub use quant::{QuantConfig, QuantMethod};

/// Options that apply to every weight of a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Precision the dense weights are rounded to. Compute on CPU is always f32. Int4 weights
    /// keep their stored f16 scales whatever this says.
    pub dtype: WeightDType,
    /// The checkpoint's int4 quantization (from [`QuantConfig::resolve`]); `None` for dense
    /// checkpoints. Projections with `<prefix>.qweight` then load as packed int4.
    pub quant: Option<QuantConfig>,
}

impl LoadOptions {
    /// Dense loading at `dtype`.
    pub fn new(dtype: WeightDType) -> Self {
        LoadOptions { dtype, quant: None }
    }

    /// Sets the checkpoint's quantization.
    pub fn with_quant(mut self, quant: Option<QuantConfig>) -> Self {
        self.quant = quant;
        self
    }
}
