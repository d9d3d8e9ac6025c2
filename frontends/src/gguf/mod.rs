//! Memory-mapped reader of GGUF files (llama.cpp's model format), and the mapping
//! of Llama-family GGUF models to Hugging Face names, config and tokenizer data.
//!
//! [`GgufFile::open`] maps a file and parses its header (versions 2 and 3,
//! little-endian), its metadata (every GGUF value type, nested arrays included)
//! and its tensor infos. Tensors are decoded on demand by [`GgufFile::tensor`]:
//! `F32`, `F16`, `BF16` (and the plain integer and `F64` types) view the mapping
//! without copying; `Q8_0`, `Q4_0` and `Q4_1` are dequantized to f32; other
//! quantized types are an error naming the tensor and its type.
//! [`GgufFile::to_hf_llama`] gives what a Hugging Face `LlamaForCausalLM` folder
//! would hold: its `config.json`, its weights under their Hugging Face names (with
//! llama.cpp's rotary permutation of the query and key projections undone) and the
//! tokenizer's data.
//!
//! Every failure is a [`GgufError`] naming the file and what is wrong with it:
//! every count, length and offset is checked against the file's size and against
//! this module's limits before use, so no input bytes make the reader panic or
//! allocate more than the file could justify.

mod decode;
mod error;
mod kquant;
pub mod llama;
mod meta;
mod parse;
mod tokenizer;
mod types;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kiln_ir::{map_file, Tensor};

pub use decode::{PARALLEL_MIN_BLOCKS, QUANT_BLOCK};
pub use error::GgufError;
pub use llama::HfLlama;
pub use meta::{MetaArray, MetaValue};
pub use tokenizer::GgufTokenizerData;
pub use types::{GgmlType, SUPPORTED_TYPES_TEXT};

/// The four bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";

/// The metadata key of the data section's alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Alignment of the data section and of tensor offsets when the file does not
/// set [`ALIGNMENT_KEY`].
pub const DEFAULT_ALIGNMENT: u64 = 32;

pub use kiln_ir::limits::GGUF_MAX_ALIGNMENT as MAX_ALIGNMENT;

pub use kiln_ir::limits::GGUF_MAX_TENSORS as MAX_TENSORS;

pub use kiln_ir::limits::GGUF_MAX_METADATA_ENTRIES as MAX_METADATA_ENTRIES;

pub use kiln_ir::limits::GGUF_MAX_METADATA_VALUES as MAX_METADATA_VALUES;

pub use kiln_ir::limits::GGUF_MAX_ARRAY_DEPTH as MAX_ARRAY_DEPTH;

pub use kiln_ir::limits::GGUF_MAX_STRING_LEN as MAX_STRING_LEN;

pub use kiln_ir::limits::GGUF_MAX_KEY_LEN as MAX_KEY_LEN;

pub use kiln_ir::limits::GGUF_MAX_TENSOR_NAME_LEN as MAX_TENSOR_NAME_LEN;

pub use kiln_ir::limits::GGUF_MAX_DIMS as MAX_DIMS;

/// One tensor's entry in a GGUF file: its name, shape, type and where its data is.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    name: String,
    shape: Vec<usize>,
    ggml_type: GgmlType,
    offset: u64,
    file_range: Range<usize>,
}

impl TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The row-major shape: the file's dimensions (innermost first) reversed. For
    /// a linear layer's weight this is `[out_features, in_features]`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type as stored.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The data's offset from the start of the data section, as the file states it.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The data's byte range in the file.
    pub fn file_range(&self) -> Range<usize> {
        self.file_range.clone()
    }
}

/// A memory-mapped GGUF file: its metadata and tensor infos, parsed and checked;
/// tensor data decoded on demand.
#[derive(Clone)]
pub struct GgufFile {
    path: PathBuf,
    bytes: Bytes,
    version: u32,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<TensorInfo>,
    by_name: BTreeMap<String, usize>,
    alignment: u64,
    data_start: u64,
}

impl fmt::Debug for GgufFile {
    /// The path, version, sizes and tensor names; not the metadata values or the
    /// mapped bytes (a vocabulary or a model file would flood the output).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("file_len", &self.bytes.len())
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_start", &self.data_start)
            .finish()
    }
}

impl GgufFile {
    /// Maps the file at `path` and parses its header, metadata and tensor infos,
    /// checking that every tensor's data lies in the file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let bytes = map_file(path).map_err(|source| GgufError::Io {
            path: path.to_owned(),
            source,
        })?;
        let parsed = parse::parse(path, &bytes)?;
        let by_name = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path: path.to_owned(),
            bytes,
            version: parsed.version,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            by_name,
            alignment: parsed.alignment,
            data_start: parsed.data_start,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole mapped file.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of the data section and of tensor offsets.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The byte offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// All metadata, by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.metadata
    }

    /// The metadata value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// The value of `key` as a `u64`, if it is a non-negative integer.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    /// The value of `key` as an `f32`, if it is a number.
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f32()
    }

    /// The value of `key` as a `bool`, if it is one.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    /// The value of `key` as a string, if it is one.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// The value of `key` as strings, if it is an array of strings.
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get(key)?.as_str_array()
    }

    /// The value of `key` as `f32`s, if it is an array of numbers.
    pub fn get_f32_array(&self, key: &str) -> Option<Vec<f32>> {
        self.get(key)?.as_f32_array()
    }

    /// The value of `key` as `i32`s, if it is an array of integers that fit.
    pub fn get_i32_array(&self, key: &str) -> Option<Vec<i32>> {
        self.get(key)?.as_i32_array()
    }

    /// The tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of the tensor called `name`, if any.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor called `name`, decoded: `F32`, `F16` and `BF16` (and `F64`,
    /// `I8`..`I64`) as tensors of that dtype viewing the mapping; `Q8_0`, `Q4_0`
    /// and `Q4_1` dequantized to f32. Any other type is
    /// [`GgufError::UnsupportedTensorType`].
    pub fn tensor(&self, name: &str) -> Result<Tensor, GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_owned(),
            })?;
        decode::decode(&self.path, &self.bytes, info)
    }

    /// The Llama-family model in Hugging Face terms; see [`llama`].
    pub fn to_hf_llama(&self) -> Result<HfLlama, GgufError> {
        llama::to_hf_llama(self)
    }

    /// The tokenizer's data (`tokenizer.ggml.*` and `tokenizer.chat_template`).
    pub fn tokenizer_data(&self) -> Result<GgufTokenizerData, GgufError> {
        tokenizer::read(self)
    }

    /// [`GgufError::MissingMetadata`] or [`GgufError::WrongMetadataType`] for
    /// `key`, which is absent or fails `convert`.
    fn require<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        convert: impl FnOnce(&'a MetaValue) -> Option<T>,
    ) -> Result<T, GgufError> {
        self.optional(key, expected, convert)?
            .ok_or_else(|| GgufError::MissingMetadata {
                path: self.path.clone(),
                key: key.to_owned(),
            })
    }

    /// `None` when `key` is absent, its converted value when `convert` accepts it,
    /// else [`GgufError::WrongMetadataType`].
    fn optional<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        convert: impl FnOnce(&'a MetaValue) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        let Some(value) = self.metadata.get(key) else {
            return Ok(None);
        };
        convert(value)
            .map(Some)
            .ok_or_else(|| GgufError::WrongMetadataType {
                path: self.path.clone(),
                key: key.to_owned(),
                expected,
                found: value.type_name(),
            })
    }
}
