//! The one error type of the GGUF reader.

use std::path::PathBuf;

use super::types::{GgmlType, SUPPORTED_TYPES_TEXT};

/// Why a GGUF file could not be read, or a tensor or model not taken from it.
///
/// Every variant names the file; those about one tensor or metadata key name it too.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, read or mapped.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file does not start with the four bytes `GGUF`.
    #[error("{path}: not a GGUF file: starts with {found:?}, not the magic \"GGUF\"")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Its first bytes (fewer than four for a shorter file).
        found: Vec<u8>,
    },
    /// The header's version is not one this reader understands.
    #[error("{path}: GGUF version {version} is not supported (this reader reads versions 2 and 3){hint}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version the file claims (read little-endian).
        version: u32,
        /// A remark on the likely cause (a big-endian file), or empty.
        hint: &'static str,
    },
    /// The file ends before something it declares.
    #[error(
        "{path}: truncated: {what} needs {needed} bytes at offset {offset}, but the file has only {file_len} bytes"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read.
        what: String,
        /// Its byte offset in the file.
        offset: u64,
        /// Bytes it needs.
        needed: u64,
        /// The file's length in bytes.
        file_len: u64,
    },
    /// A count, length or size is beyond one of the reader's limits.
    #[error("{path}: {what} is {value}, beyond the limit of {limit}")]
    LimitExceeded {
        /// The file.
        path: PathBuf,
        /// What the number counts.
        what: String,
        /// The number the file claims.
        value: u64,
        /// The reader's limit (a named constant of [`crate::gguf`]).
        limit: u64,
    },
    /// The file's structure is inconsistent (an unknown value type, a bad
    /// alignment, invalid UTF-8, a duplicate name, a misplaced tensor...).
    #[error("{path}: corrupt GGUF file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No tensor of that name is in the file.
    #[error("{path}: no tensor `{tensor}`")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor asked for.
        tensor: String,
    },
    /// A tensor's element type is one this reader does not decode.
    #[error(
        "{path}: unsupported GGUF tensor type {ggml_type} for tensor {tensor}; supported: {SUPPORTED_TYPES_TEXT}"
    )]
    UnsupportedTensorType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its ggml type.
        ggml_type: GgmlType,
    },
    /// A metadata key the model needs is absent.
    #[error("{path}: no metadata key `{key}`")]
    MissingMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A metadata value has another type than the key needs.
    #[error("{path}: metadata key `{key}` is {found}, expected {expected}")]
    WrongMetadataType {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the key needs ("an unsigned integer", "a string array"...).
        expected: &'static str,
        /// What the file holds (its GGUF type, e.g. "f32" or "array of string").
        found: String,
    },
    /// The model's architecture is not one the Hugging Face mapping knows.
    #[error(
        "{path}: GGUF architecture `{architecture}` is not supported by the Hugging Face mapping (supported: llama, mistral, qwen2)"
    )]
    UnsupportedArchitecture {
        /// The file.
        path: PathBuf,
        /// The `general.architecture` value.
        architecture: String,
    },
    /// The model's metadata and tensors do not describe a model the Hugging Face
    /// mapping can express (inconsistent sizes, an unknown tensor, a wrong shape...).
    #[error("{path}: cannot map to Hugging Face: {reason}")]
    BadModel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
