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

/// Activations entering matmuls with bf16 weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenseActivations {
    /// Rounded to bf16 where the CPU has bf16 dot products (AVX512_BF16), accumulated in f32:
    /// what vLLM and PyTorch compute for `dtype=bfloat16`.
    #[default]
    Bf16,
    /// Exact f32 (the HF float32 goldens are compared this way).
    F32,
}

/// How int4 (AWQ/GPTQ) projections treat their activations in decode-sized batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Int4Activations {
    /// Quantize each activation row to int8 per weight group and use integer dot products
    /// (VNNI where the CPU has it; as llama.cpp's Q4×Q8 and IPEX's int8 weight-only mode).
    /// Decode batches (≤ 8 rows) only; prefill stays exact. Falls back to `F32` on CPUs
    /// without a fast int8 path. The CLI's `--int4-activations auto` picks it with bf16 weights
    /// (vLLM's CPU backend runs AWQ/GPTQ as W4A8 for bf16 models); on an AVX-512 VNNI host its
    /// GEMV streamed 77-94 % of DRAM bandwidth at one row against 53-60 % for `F32`, and AWQ
    /// 0.5B-shape decode ran 42.0 vs 32.5 tok/s.
    Int8,
    /// Exact: dequantize to f32 in registers and multiply in f32.
    #[default]
    F32,
}

/// Options that apply to every weight of a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Precision the dense weights are rounded to. Accumulation is f32 (see
    /// [`DenseActivations`] for the activations). Int4 weights keep their stored f16 scales
    /// whatever this says.
    pub dtype: WeightDType,
    /// The checkpoint's int4 quantization (from [`QuantConfig::resolve`]); `None` for dense
    /// checkpoints. Projections with `<prefix>.qweight` then load as packed int4.
    pub quant: Option<QuantConfig>,
    /// Activation precision of the int4 projections.
    pub int4_activations: Int4Activations,
    /// Activation precision of the matmuls with bf16 weights.
    pub dense_activations: DenseActivations,
}

impl LoadOptions {
    /// Dense loading at `dtype`.
    pub fn new(dtype: WeightDType) -> Self {
        LoadOptions {
            dtype,
            quant: None,
            int4_activations: Int4Activations::default(),
            dense_activations: DenseActivations::default(),
        }
    }

    /// Sets the checkpoint's quantization.
    pub fn with_quant(mut self, quant: Option<QuantConfig>) -> Self {
        self.quant = quant;
        self
    }

    /// Sets the activation precision of matmuls with bf16 weights.
    pub fn with_dense_activations(mut self, a: DenseActivations) -> Self {
        self.dense_activations = a;
        self
    }

    /// Sets the int4 projections' activation precision.
    pub fn with_int4_activations(mut self, a: Int4Activations) -> Self {
        self.int4_activations = a;
        self
    }

    /// Whether int4 projections round prefill activations to bf16 (the block-scaled bf16 GEMM
    /// on the exact integer codes): with `--dtype bfloat16` and bf16 dense activations, the
    /// precision vLLM computes a bf16 model in. Otherwise prefill is exact f32.
    pub fn int4_bf16_prefill(&self) -> bool {
        self.dtype == WeightDType::BF16 && self.dense_activations == DenseActivations::Bf16
    }
}
