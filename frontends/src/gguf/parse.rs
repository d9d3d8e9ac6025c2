//! Parsing of a GGUF file's header, metadata and tensor infos.
//!
//! Every count, length and offset is checked against the bytes left in the file
//! and against the module's limits before it is used, so no input makes the
//! parser panic or allocate more than the file could justify.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use super::meta::{value_type, value_type_name, MetaArray, MetaValue};
use super::types::GgmlType;
use super::{
    GgufError, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ALIGNMENT, MAX_ARRAY_DEPTH,
    MAX_DIMS, MAX_KEY_LEN, MAX_METADATA_ENTRIES, MAX_METADATA_VALUES, MAX_STRING_LEN, MAX_TENSORS,
    MAX_TENSOR_NAME_LEN,
};

/// Smallest encoding of one metadata entry: key length, empty key, type, one byte.
const MIN_ENTRY_BYTES: u64 = 8 + 4 + 1;
/// Smallest encoding of one tensor info: name length, empty name, zero dims, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// What the header, metadata and tensor infos of a GGUF file say.
pub(crate) struct Parsed {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_start: u64,
}

/// Parses the whole mapped file `bytes` (the tensor data is checked, not read).
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor {
        path,
        bytes,
        pos: 0,
    };
    if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
        return Err(c.truncated("the magic \"GGUF\"".to_owned(), MAGIC.len() as u64));
    }
    if !bytes.starts_with(MAGIC) {
        return Err(GgufError::BadMagic {
            path: path.to_owned(),
            found: bytes[..bytes.len().min(MAGIC.len())].to_vec(),
        });
    }
    c.pos = MAGIC.len();
    let version = c.u32(&|| "the version".to_owned())?;
    if version != 2 && version != 3 {
        let hint = if version == 1 {
            " (version 1 used 32-bit counts and lengths; convert the model again with a current llama.cpp)"
        } else if matches!(version.swap_bytes(), 2 | 3) {
            " (this looks like a big-endian GGUF file; only little-endian files are read)"
        } else {
            ""
        };
        return Err(GgufError::UnsupportedVersion {
            path: path.to_owned(),
            version,
            hint,
        });
    }
    let tensor_count = c.u64(&|| "the tensor count".to_owned())?;
    c.limit("the tensor count", tensor_count, MAX_TENSORS)?;
    let entry_count = c.u64(&|| "the metadata entry count".to_owned())?;
    c.limit(
        "the metadata entry count",
        entry_count,
        MAX_METADATA_ENTRIES,
    )?;

    c.room(entry_count, MIN_ENTRY_BYTES, "metadata entries")?;
    let mut metadata = BTreeMap::new();
    let mut budget = MAX_METADATA_VALUES;
    for i in 0..entry_count {
        let key = c.string(MAX_KEY_LEN, "MAX_KEY_LEN", &|| {
            format!("the key of metadata entry {i}")
        })?;
        let ty = c.u32(&|| format!("the value type of metadata `{key}`"))?;
        let value = c.value(ty, 0, &mut budget, &|| format!("metadata `{key}`"))?;
        if metadata.contains_key(&key) {
            return Err(c.corrupt(format!("metadata key `{key}` appears twice")));
        }
        metadata.insert(key, value);
    }

    c.room(tensor_count, MIN_TENSOR_INFO_BYTES, "tensor infos")?;
    // At most MAX_TENSORS.
    let mut infos = Vec::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        infos.push(c.tensor_info(i)?);
    }

    let alignment = alignment(path, &metadata)?;
    let data_start = (c.pos as u64).next_multiple_of(alignment);

    let mut tensors = Vec::with_capacity(infos.len());
    let mut names = BTreeMap::new();
    for raw in infos {
        if names.insert(raw.name.clone(), ()).is_some() {
            return Err(c.corrupt(format!("tensor `{}` appears twice", raw.name)));
        }
        tensors.push(c.place(raw, alignment, data_start)?);
    }
    Ok(Parsed {
        version,
        metadata,
        tensors,
        alignment,
        data_start,
    })
}

/// The `general.alignment` of the file: a power of two up to [`MAX_ALIGNMENT`].
fn alignment(path: &Path, metadata: &BTreeMap<String, MetaValue>) -> Result<u64, GgufError> {
    let Some(value) = metadata.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let alignment = value.as_u64().ok_or_else(|| GgufError::WrongMetadataType {
        path: path.to_owned(),
        key: ALIGNMENT_KEY.to_owned(),
        expected: "an unsigned integer",
        found: value.type_name(),
    })?;
    if !alignment.is_power_of_two() {
        return Err(GgufError::Corrupt {
            path: path.to_owned(),
            reason: format!("`{ALIGNMENT_KEY}` is {alignment}, not a power of two"),
        });
    }
    if alignment > MAX_ALIGNMENT {
        return Err(GgufError::LimitExceeded {
            path: path.to_owned(),
            what: format!("`{ALIGNMENT_KEY}`"),
            value: alignment,
            limit: MAX_ALIGNMENT,
        });
    }
    Ok(alignment)
}

/// A tensor info as the file states it, before its data is placed and checked.
struct RawTensorInfo {
    name: String,
    /// GGUF order: innermost first.
    dims: Vec<u64>,
    ggml_type: GgmlType,
    offset: u64,
}

/// A reading position in the file.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

/// Describes what is being read, for an error message (built only on error).
type What<'w> = &'w dyn Fn() -> String;

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn truncated(&self, what: String, needed: u64) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_owned(),
            what,
            offset: self.pos as u64,
            needed,
            file_len: self.bytes.len() as u64,
        }
    }

    fn corrupt(&self, reason: String) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_owned(),
            reason,
        }
    }

    fn limit(&self, what: &str, value: u64, limit: u64) -> Result<(), GgufError> {
        if value > limit {
            return Err(GgufError::LimitExceeded {
                path: self.path.to_owned(),
                what: what.to_owned(),
                value,
                limit,
            });
        }
        Ok(())
    }

    /// Checks that the bytes left can hold `count` items of at least `min_bytes`
    /// each (`count` is at most a limit of the module, so no overflow).
    fn room(&self, count: u64, min_bytes: u64, items: &str) -> Result<(), GgufError> {
        let needed = count * min_bytes;
        if needed > self.remaining() {
            return Err(self.truncated(
                format!("{count} {items} (at least {min_bytes} bytes each)"),
                needed,
            ));
        }
        Ok(())
    }

    /// The next `n` bytes.
    fn take(&mut self, n: u64, what: What<'_>) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(self.truncated(what(), n));
        }
        // At most the bytes left, so it fits a usize.
        let n = n as usize;
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: What<'_>) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: What<'_>) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: What<'_>) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes (`max_name` names the limit).
    fn string(&mut self, max: u64, max_name: &str, what: What<'_>) -> Result<String, GgufError> {
        let len = self.u64(&|| format!("the length of {}", what()))?;
        if len > max {
            return Err(GgufError::LimitExceeded {
                path: self.path.to_owned(),
                what: format!("the length of {} ({max_name})", what()),
                value: len,
                limit: max,
            });
        }
        let bytes = self.take(len, &|| format!("{} (a string of {len} bytes)", what()))?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.corrupt(format!("{} is not valid UTF-8: {e}", what())))
    }

    /// One metadata value of type id `ty`, at array nesting `depth`; arrays take
    /// their elements from `budget`, the elements left for the whole file.
    fn value(
        &mut self,
        ty: u32,
        depth: u32,
        budget: &mut u64,
        what: What<'_>,
    ) -> Result<MetaValue, GgufError> {
        Ok(match ty {
            value_type::U8 => MetaValue::U8(u8::from_le_bytes(self.array(what)?)),
            value_type::I8 => MetaValue::I8(i8::from_le_bytes(self.array(what)?)),
            value_type::U16 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            value_type::I16 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            value_type::U32 => MetaValue::U32(u32::from_le_bytes(self.array(what)?)),
            value_type::I32 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            value_type::F32 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            value_type::U64 => MetaValue::U64(u64::from_le_bytes(self.array(what)?)),
            value_type::I64 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            value_type::F64 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            value_type::BOOL => match self.array::<1>(what)? {
                [0] => MetaValue::Bool(false),
                [1] => MetaValue::Bool(true),
                [b] => {
                    return Err(
                        self.corrupt(format!("{} is a bool of byte {b}, not 0 or 1", what()))
                    )
                }
            },
            value_type::STRING => {
                MetaValue::String(self.string(MAX_STRING_LEN, "MAX_STRING_LEN", what)?)
            }
            value_type::ARRAY => self.meta_array(depth, budget, what)?,
            other => {
                return Err(self.corrupt(format!("{} has unknown value type {other}", what())));
            }
        })
    }

    fn meta_array(
        &mut self,
        depth: u32,
        budget: &mut u64,
        what: What<'_>,
    ) -> Result<MetaValue, GgufError> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::LimitExceeded {
                path: self.path.to_owned(),
                what: format!("the array nesting depth of {} (MAX_ARRAY_DEPTH)", what()),
                value: u64::from(depth) + 1,
                limit: u64::from(MAX_ARRAY_DEPTH),
            });
        }
        let element_type = self.u32(&|| format!("the element type of {}", what()))?;
        let Some(element_name) = value_type_name(element_type) else {
            return Err(self.corrupt(format!(
                "{} is an array of unknown value type {element_type}",
                what()
            )));
        };
        let count = self.u64(&|| format!("the length of {}", what()))?;
        if count > *budget {
            return Err(GgufError::LimitExceeded {
                path: self.path.to_owned(),
                what: format!(
                    "the number of array elements in the metadata up to {} (MAX_METADATA_VALUES)",
                    what()
                ),
                value: (MAX_METADATA_VALUES - *budget).saturating_add(count),
                limit: MAX_METADATA_VALUES,
            });
        }
        *budget -= count;
        let min_bytes = match element_type {
            value_type::U8 | value_type::I8 | value_type::BOOL => 1,
            value_type::U16 | value_type::I16 => 2,
            value_type::U32 | value_type::I32 | value_type::F32 => 4,
            value_type::U64 | value_type::I64 | value_type::F64 | value_type::STRING => 8,
            _ => 12, // an array: element type and length
        };
        // At most MAX_METADATA_VALUES · 12, no overflow.
        let needed = count * min_bytes;
        if needed > self.remaining() {
            return Err(self.truncated(
                format!("{} (an array of {count} {element_name})", what()),
                needed,
            ));
        }
        let mut values = Vec::with_capacity(count as usize);
        for i in 0..count {
            values.push(self.value(element_type, depth + 1, budget, &|| {
                format!("element {i} of {}", what())
            })?);
        }
        Ok(MetaValue::Array(MetaArray {
            element_type,
            values,
        }))
    }

    fn tensor_info(&mut self, index: u64) -> Result<RawTensorInfo, GgufError> {
        let name = self.string(MAX_TENSOR_NAME_LEN, "MAX_TENSOR_NAME_LEN", &|| {
            format!("the name of tensor {index}")
        })?;
        let n_dims = self.u32(&|| format!("the dimension count of tensor `{name}`"))?;
        self.limit(
            &format!("the dimension count of tensor `{name}` (MAX_DIMS)"),
            n_dims.into(),
            MAX_DIMS as u64,
        )?;
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(self.u64(&|| format!("dimension {d} of tensor `{name}`"))?);
        }
        let type_id = self.u32(&|| format!("the type of tensor `{name}`"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
            self.corrupt(format!(
                "tensor `{name}` has unknown ggml type id {type_id}"
            ))
        })?;
        let offset = self.u64(&|| format!("the data offset of tensor `{name}`"))?;
        Ok(RawTensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        })
    }

    /// The tensor info of `raw`, its data checked to lie in the file.
    fn place(
        &self,
        raw: RawTensorInfo,
        alignment: u64,
        data_start: u64,
    ) -> Result<TensorInfo, GgufError> {
        let RawTensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        } = raw;
        let too_big = || {
            self.corrupt(format!(
                "tensor `{name}` has dimensions {dims:?} whose size overflows"
            ))
        };
        // Zero-sized dimensions count as one here, so that no product of the
        // dimensions taken later (in any order) can overflow.
        let nonzero = dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d.max(1)))
            .ok_or_else(too_big)?;
        let numel = if dims.contains(&0) { 0 } else { nonzero };
        let block = ggml_type.block_size() as u64;
        let row = dims.first().copied().unwrap_or(1);
        if !row.is_multiple_of(block) {
            return Err(self.corrupt(format!(
                "tensor `{name}` of type {ggml_type} has rows of {row} elements, not a multiple of its block size {block}"
            )));
        }
        let byte_len = (numel / block)
            .checked_mul(ggml_type.block_bytes() as u64)
            .ok_or_else(too_big)?;
        if !offset.is_multiple_of(alignment) {
            return Err(self.corrupt(format!(
                "tensor `{name}` has data offset {offset}, not a multiple of the alignment {alignment}"
            )));
        }
        let file_len = self.bytes.len() as u64;
        let start = data_start.checked_add(offset);
        let end = start.and_then(|s| s.checked_add(byte_len));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(self.corrupt(format!(
                "tensor `{name}` has data offset {offset} and {byte_len} bytes, past any file"
            )));
        };
        if end > file_len {
            return Err(GgufError::Truncated {
                path: self.path.to_owned(),
                what: format!(
                    "the data of tensor `{name}` ({ggml_type} {dims:?}, data offset {offset})"
                ),
                offset: start,
                needed: byte_len,
                file_len,
            });
        }
        // The product of the dimensions fits a u64; on a 32-bit target it may
        // not fit a usize.
        usize::try_from(nonzero).map_err(|_| too_big())?;
        let shape: Option<Vec<usize>> = dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).ok())
            .collect();
        let shape = shape.ok_or_else(too_big)?;
        let file_range: Range<usize> = (start as usize)..(end as usize);
        Ok(TensorInfo {
            name,
            shape,
            ggml_type,
            offset,
            file_range,
        })
    }
}
