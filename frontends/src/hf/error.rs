//! Errors of the Hugging Face folder frontend.

use std::path::PathBuf;

use crate::safetensors::SafetensorsError;

/// Why a Hugging Face model folder (or adapter folder) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// The folder has no `config.json`.
    #[error("{dir}: no config.json (a Hugging Face model folder has config.json next to model.safetensors)")]
    MissingConfig {
        /// The folder.
        dir: PathBuf,
    },
    /// A JSON file could not be read or parsed.
    #[error("{path}: {message}")]
    BadJson {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A config key is missing or has the wrong type.
    #[error("{path}: {message}")]
    BadConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The architecture named by `architectures` is not one kiln builds.
    #[error("{path}: unknown architecture {name:?}; kiln builds {known}")]
    UnknownArchitecture {
        /// The config file.
        path: PathBuf,
        /// The architecture named there.
        name: String,
        /// The supported ones, comma-separated.
        known: String,
    },
    /// No weights file was found.
    #[error("{dir}: no weights (expected model.safetensors or model.safetensors.index.json)")]
    MissingWeights {
        /// The folder.
        dir: PathBuf,
    },
    /// Reading the weights failed.
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    /// A tensor the architecture needs is absent.
    #[error("{source_name}: missing tensor {tensor} (expected shape {expected:?})")]
    MissingTensor {
        /// Where the weights came from.
        source_name: String,
        /// The tensor's name.
        tensor: String,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor has another shape than the config implies.
    #[error(
        "{source_name}: tensor {tensor} has shape {actual:?}, the config implies {expected:?}"
    )]
    TensorShape {
        /// Where the weights came from.
        source_name: String,
        /// The tensor's name.
        tensor: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// Its shape in the file.
        actual: Vec<usize>,
    },
    /// A tensor has a dtype kiln cannot compute with here.
    #[error("{source_name}: tensor {tensor} is {dtype}; expected f32, f16 or bf16")]
    TensorDtype {
        /// Where the weights came from.
        source_name: String,
        /// The tensor's name.
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// An adapter folder is unusable.
    #[error("adapter {dir}: {message}")]
    BadAdapter {
        /// The adapter folder.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Building the graph failed (an internal inconsistency: a shape the config allows
    /// but an op rejects).
    #[error("building {arch}: {message}")]
    Build {
        /// The architecture.
        arch: String,
        /// The failing node and why.
        message: String,
    },
}
