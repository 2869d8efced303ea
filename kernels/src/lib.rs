//! candela-kernels: the numeric ops of the engine, knowing no model.
//!
//! Every op has a CPU implementation that is also the reference for faster variants (SIMD, CUDA).
//! Tensors are plain row-major `f32` slices; shapes are given in the names and doc comments
//! (`T` = tokens in the batch, `H` = heads, `D` = head dim).

pub mod activation;
pub mod dense;
pub mod fp8;
pub mod int4;
pub mod memory;
pub mod norm;
pub mod paged_attention;
pub mod pool;
pub mod rope;
mod simd;

pub use int4::{Int4Error, Int4Impl, Int4Weights};
pub use paged_attention::{paged_attention, reshape_and_cache, AttnSeq, KvLayout};
