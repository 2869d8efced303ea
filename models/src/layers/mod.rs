//! Layers shared by every architecture: written once, composed by the files in `arch/`.

pub mod attention;
pub mod decoder;
pub mod embedding;
pub mod linear;
pub mod mlp;
pub mod norm;
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

/// Options that apply to every weight of a model.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Precision the weights are rounded to. Compute on CPU is always f32.
    pub dtype: WeightDType,
}
