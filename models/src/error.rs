//! The models crate's error type: everything that can go wrong loading or running a model.

use std::path::PathBuf;

/// Errors from loading checkpoints and running forward passes.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A required file is absent from the model directory.
    #[error("model file missing: {0}")]
    MissingFile(PathBuf),
    /// config.json (or GGUF metadata) is malformed or inconsistent.
    #[error("invalid model config: {0}")]
    Config(String),
    /// The checkpoint's architecture has no implementation here.
    #[error("unsupported architecture {name:?}; supported: {supported}")]
    UnsupportedArchitecture {
        /// Architecture named by the checkpoint.
        name: String,
        /// Comma-separated list of supported architectures.
        supported: String,
    },
    /// A weight the architecture needs is not in the checkpoint.
    #[error("weight {0:?} not found in checkpoint")]
    MissingTensor(String),
    /// A weight has the wrong shape.
    #[error("weight {name:?} has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Weight name.
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape found in the file.
        got: Vec<usize>,
    },
    /// A weight file is corrupt (bad header, truncated data, unknown dtype).
    #[error("corrupt weight file {path}: {msg}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The model argument names no usable local checkpoint (missing path, directory without
    /// config.json or weights) and is not a valid hub repo id; the message says what is missing.
    #[error("{0}")]
    ModelLocation(String),
    /// Downloading from the Hugging Face hub failed.
    #[error("cannot fetch {repo} from the Hugging Face hub: {msg}")]
    Hub {
        /// Repository id.
        repo: String,
        /// Reason.
        msg: String,
    },
    /// An error from the tensor library.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Result alias for the models crate.
pub type Result<T> = std::result::Result<T, ModelError>;
