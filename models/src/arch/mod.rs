//! One file per architecture, each built only from `layers`.

pub mod llama;
pub mod qwen2;
