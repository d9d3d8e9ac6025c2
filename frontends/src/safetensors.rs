//! Memory-mapped reader of safetensors files (the weight format of Hugging Face
//! model folders).
//!
//! [`load`] maps one `.safetensors` file and returns its tensors as [`Tensor`]s that
//! view the mapping directly: nothing is copied, and the mapping lives as long as
//! any tensor slicing it. [`load_sharded`] does the same for a model split into
//! shards listed by a `model.safetensors.index.json`.
//!
//! Every failure is a [`SafetensorsError`] naming the file and what is wrong with
//! it; no input bytes make the reader panic.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use ::safetensors::tensor::Metadata;
use ::safetensors::{Dtype, SafeTensorError, SafeTensors};
use bytes::Bytes;
use kiln_ir::{map_file, DType, Tensor};

/// Bytes of the little-endian `u64` header length that starts every safetensors file.
pub const HEADER_LEN_BYTES: usize = 8;

pub use kiln_ir::limits::SAFETENSORS_MAX_HEADER_BYTES as MAX_HEADER_BYTES;

pub use kiln_ir::limits::SAFETENSORS_MAX_INDEX_BYTES as MAX_INDEX_BYTES;

/// Why a safetensors file or shard index could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    /// The file could not be opened, read or mapped.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is too short to hold even the header length.
    #[error(
        "{path}: not a safetensors file: {len} bytes, shorter than the {HEADER_LEN_BYTES}-byte header length"
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// The header length is larger than [`MAX_HEADER_BYTES`].
    #[error(
        "{path}: not a safetensors file: header length {header_len} exceeds the limit of {MAX_HEADER_BYTES} bytes"
    )]
    HeaderTooLarge {
        /// The file.
        path: PathBuf,
        /// The header length the file claims.
        header_len: u64,
    },
    /// The header length claims more bytes than the file has.
    #[error(
        "{path}: header claims {header_len} bytes after the {HEADER_LEN_BYTES}-byte length, but the file has only {file_len} bytes in all"
    )]
    HeaderBeyondFile {
        /// The file.
        path: PathBuf,
        /// The header length the file claims.
        header_len: u64,
        /// The file's length in bytes.
        file_len: usize,
    },
    /// The header is not valid safetensors metadata (bad UTF-8, bad JSON, bad
    /// offsets or shapes); `message` is the `safetensors` crate's error text.
    #[error("{path}: corrupt safetensors header: {message}")]
    CorruptHeader {
        /// The file.
        path: PathBuf,
        /// What the `safetensors` crate found wrong.
        message: String,
    },
    /// The header's tensors need a different number of data bytes than the file
    /// holds after the header (a truncated file, or trailing bytes).
    #[error(
        "{path}: header describes {declared} bytes of tensor data, but the file has {actual} bytes after the header"
    )]
    DataSizeMismatch {
        /// The file.
        path: PathBuf,
        /// Data bytes the header's tensors need.
        declared: usize,
        /// Data bytes the file has after the header.
        actual: usize,
    },
    /// A tensor has an element type kiln does not load.
    #[error("{path}: tensor `{tensor}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its safetensors dtype.
        dtype: String,
    },
    /// A required tensor is absent.
    #[error("{path}: no tensor `{tensor}`")]
    MissingTensor {
        /// The file (or shard index) the weights came from.
        path: PathBuf,
        /// The tensor asked for.
        tensor: String,
    },
    /// A required tensor has another shape than expected.
    #[error("{path}: tensor `{tensor}` has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The file (or shard index) the weights came from.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The shape asked for.
        expected: Vec<usize>,
        /// The tensor's shape.
        actual: Vec<usize>,
    },
    /// The shard index is not a JSON object with a `weight_map` of tensor names to
    /// shard file names.
    #[error("{path}: bad shard index: {reason}")]
    BadIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The shard index names a shard outside the index file's folder.
    #[error("{path}: shard `{shard}` is outside the index's folder: {reason}")]
    ShardOutsideFolder {
        /// The index file.
        path: PathBuf,
        /// The shard name as the index spells it.
        shard: String,
        /// Why it is outside (absolute, `..`, or a link leading out).
        reason: String,
    },
    /// The index places a tensor in a shard that does not hold it.
    #[error("{path}: tensor `{tensor}` is listed in shard `{shard}`, which does not hold it")]
    MissingInShard {
        /// The index file.
        path: PathBuf,
        /// The shard the index names.
        shard: String,
        /// The tensor.
        tensor: String,
    },
    /// Two shards hold a tensor of the same name.
    #[error("{path}: tensor `{tensor}` is in two shards, `{first}` and `{second}`")]
    DuplicateTensor {
        /// The index file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// One shard holding it.
        first: String,
        /// Another shard holding it.
        second: String,
    },
}

/// Named tensors loaded from a safetensors file or a sharded model.
///
/// The tensors view the memory-mapped files; cloning one never copies its data.
#[derive(Clone, Debug)]
pub struct Weights {
    path: PathBuf,
    tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    /// The file the weights came from (the index file for a sharded model).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// The tensor called `name`, which must exist and have shape `expected_shape`.
    pub fn require(
        &self,
        name: &str,
        expected_shape: &[usize],
    ) -> Result<&Tensor, SafetensorsError> {
        let tensor = self
            .tensors
            .get(name)
            .ok_or_else(|| SafetensorsError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_owned(),
            })?;
        if tensor.shape() != expected_shape {
            return Err(SafetensorsError::ShapeMismatch {
                path: self.path.clone(),
                tensor: name.to_owned(),
                expected: expected_shape.to_vec(),
                actual: tensor.shape().to_vec(),
            });
        }
        Ok(tensor)
    }

    /// The tensors' names, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tensors.keys().map(String::as_str)
    }

    /// The tensors with their names, in sorted order of names.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> + '_ {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many tensors there are.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// Loads one `.safetensors` file, memory-mapped: every tensor views the mapping.
pub fn load(path: &Path) -> Result<Weights, SafetensorsError> {
    let bytes = map_file(path).map_err(|source| SafetensorsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let tensors = parse(path, &bytes)?;
    Ok(Weights {
        path: path.to_owned(),
        tensors,
    })
}

/// Parses the mapped file `bytes` into tensors slicing it.
fn parse(path: &Path, bytes: &Bytes) -> Result<BTreeMap<String, Tensor>, SafetensorsError> {
    let Some(len_bytes) = bytes.get(..HEADER_LEN_BYTES) else {
        return Err(SafetensorsError::TooShort {
            path: path.to_owned(),
            len: bytes.len(),
        });
    };
    let mut len_le = [0u8; HEADER_LEN_BYTES];
    len_le.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(len_le);
    if header_len > MAX_HEADER_BYTES {
        return Err(SafetensorsError::HeaderTooLarge {
            path: path.to_owned(),
            header_len,
        });
    }
    // At most MAX_HEADER_BYTES, so it fits a usize and the sum cannot overflow.
    let data_start = HEADER_LEN_BYTES + header_len as usize;
    if data_start > bytes.len() {
        return Err(SafetensorsError::HeaderBeyondFile {
            path: path.to_owned(),
            header_len,
            file_len: bytes.len(),
        });
    }
    let metadata = match SafeTensors::read_metadata(bytes) {
        Ok((_, metadata)) => metadata,
        Err(SafeTensorError::MetadataIncompleteBuffer) => {
            // The header itself is sound; its tensors do not fill the file exactly.
            // Parse it again to say how many bytes it wants.
            let declared = serde_json::from_slice::<Metadata>(&bytes[HEADER_LEN_BYTES..data_start])
                .map(|m| m.data_len())
                .map_err(|e| corrupt(path, e.to_string()))?;
            return Err(SafetensorsError::DataSizeMismatch {
                path: path.to_owned(),
                declared,
                actual: bytes.len() - data_start,
            });
        }
        Err(e) => return Err(corrupt(path, e.to_string())),
    };

    let mut tensors = BTreeMap::new();
    for (name, info) in metadata.tensors() {
        let dtype = kiln_dtype(info.dtype).ok_or_else(|| SafetensorsError::UnsupportedDtype {
            path: path.to_owned(),
            tensor: name.clone(),
            dtype: format!("{:?}", info.dtype),
        })?;
        // `read_metadata` checked that the offsets tile the data exactly up to the
        // end of the file, so these additions cannot overflow and the range is in
        // bounds; checked all the same so that no input can panic here.
        let (start, end) = info.data_offsets;
        let range = data_start
            .checked_add(start)
            .zip(data_start.checked_add(end))
            .filter(|&(s, e)| s <= e && e <= bytes.len())
            .ok_or_else(|| {
                corrupt(
                    path,
                    format!("tensor `{name}` has data offsets {start}..{end} outside the file"),
                )
            })?;
        let tensor = Tensor::from_bytes(dtype, info.shape.clone(), bytes.slice(range.0..range.1))
            .map_err(|e| corrupt(path, format!("tensor `{name}`: {e}")))?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

fn corrupt(path: &Path, message: String) -> SafetensorsError {
    SafetensorsError::CorruptHeader {
        path: path.to_owned(),
        message,
    }
}

/// The kiln element type of a safetensors dtype, for the dtypes kiln loads.
fn kiln_dtype(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F64 => DType::F64,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::I16 => DType::I16,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

/// Loads a sharded model from its `model.safetensors.index.json`.
///
/// The index's `weight_map` maps tensor names to shard file names, which must lie
/// inside the index file's folder (no absolute paths, no `..`, no links leading
/// out). Each shard is loaded once and the tensors of all shards are merged. Every
/// tensor the index lists must be in the shard it names, and no tensor may be in
/// two shards. Tensors a shard holds beyond those the index lists are kept.
pub fn load_sharded(index_json: &Path) -> Result<Weights, SafetensorsError> {
    let index_path = index_json.to_owned();
    let io = |source| SafetensorsError::Io {
        path: index_path.clone(),
        source,
    };
    let bad = |reason: String| SafetensorsError::BadIndex {
        path: index_path.clone(),
        reason,
    };

    let size = std::fs::metadata(index_json).map_err(io)?.len();
    if size > MAX_INDEX_BYTES {
        return Err(bad(format!(
            "{size} bytes, more than the limit of {MAX_INDEX_BYTES}"
        )));
    }
    let text = std::fs::read(index_json).map_err(io)?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .ok_or_else(|| bad("no `weight_map`".to_owned()))?
        .as_object()
        .ok_or_else(|| bad("`weight_map` is not an object".to_owned()))?;
    if map.is_empty() {
        return Err(bad("`weight_map` is empty".to_owned()));
    }
    // Tensor name → shard name, and the shard names once each.
    let mut listed = BTreeMap::new();
    for (tensor, shard) in map {
        let shard = shard
            .as_str()
            .ok_or_else(|| bad(format!("shard of tensor `{tensor}` is not a string")))?;
        listed.insert(tensor.as_str(), shard);
    }

    let folder = match index_json.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let canonical_folder = folder
        .canonicalize()
        .map_err(|source| SafetensorsError::Io {
            path: folder.to_owned(),
            source,
        })?;

    let mut merged: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut owner: BTreeMap<String, &str> = BTreeMap::new();
    let mut shard_names: Vec<&str> = listed.values().copied().collect();
    shard_names.sort_unstable();
    shard_names.dedup();
    for shard in shard_names {
        let shard_path = shard_path(index_json, folder, &canonical_folder, shard)?;
        let weights = load(&shard_path)?;
        for (name, tensor) in weights.tensors {
            if let Some(first) = owner.get(&name) {
                return Err(SafetensorsError::DuplicateTensor {
                    path: index_path.clone(),
                    tensor: name,
                    first: (*first).to_owned(),
                    second: shard.to_owned(),
                });
            }
            owner.insert(name.clone(), shard);
            merged.insert(name, tensor);
        }
    }
    for (tensor, shard) in listed {
        if owner.get(tensor) != Some(&shard) {
            return Err(SafetensorsError::MissingInShard {
                path: index_path.clone(),
                shard: shard.to_owned(),
                tensor: tensor.to_owned(),
            });
        }
    }
    Ok(Weights {
        path: index_path,
        tensors: merged,
    })
}

/// The path of shard `shard`, checked to lie inside the index's folder.
fn shard_path(
    index_json: &Path,
    folder: &Path,
    canonical_folder: &Path,
    shard: &str,
) -> Result<PathBuf, SafetensorsError> {
    let outside = |reason: &str| SafetensorsError::ShardOutsideFolder {
        path: index_json.to_owned(),
        shard: shard.to_owned(),
        reason: reason.to_owned(),
    };
    let relative = Path::new(shard);
    if shard.is_empty() {
        return Err(outside("empty name"));
    }
    if relative.is_absolute() || relative.has_root() {
        return Err(outside("absolute path"));
    }
    for component in relative.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(outside("`..` component")),
            Component::RootDir | Component::Prefix(_) => return Err(outside("absolute path")),
        }
    }
    let joined = folder.join(relative);
    let canonical = joined
        .canonicalize()
        .map_err(|source| SafetensorsError::Io {
            path: joined.clone(),
            source,
        })?;
    if !canonical.starts_with(canonical_folder) {
        return Err(outside("a symbolic link leads out of the folder"));
    }
    Ok(canonical)
}
