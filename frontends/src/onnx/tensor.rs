//! ONNX `TensorProto` → kiln [`Tensor`]: typed fields, `raw_data` (zero-copy) and
//! external data files (memory-mapped, confined to the model's folder).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use kiln_ir::{DType, Tensor};

use super::proto::{TensorProto, TypeProto};
use super::OnnxError;

/// The kiln dtype of an ONNX `TensorProto.DataType` code.
pub fn dtype_of(code: i32) -> Option<DType> {
    Some(match code {
        1 => DType::F32,
        2 => DType::U8,
        3 => DType::I8,
        4 => DType::U16,
        5 => DType::I16,
        6 => DType::I32,
        7 => DType::I64,
        9 => DType::Bool,
        10 => DType::F16,
        11 => DType::F64,
        12 => DType::U32,
        13 => DType::U64,
        16 => DType::BF16,
        17 => DType::F8E4M3FN,
        18 => DType::F8E4M3FNUZ,
        19 => DType::F8E5M2,
        20 => DType::F8E5M2FNUZ,
        21 => DType::U4,
        22 => DType::I4,
        23 => DType::F4E2M1,
        24 => DType::F8E8M0,
        25 => DType::U2,
        26 => DType::I2,
        _ => return None,
    })
}

/// The ONNX name of a data type code, for messages.
pub fn onnx_type_name(code: i32) -> String {
    super::proto::tensor_proto::DataType::try_from(code)
        .map(|d| format!("{d:?}").to_uppercase())
        .unwrap_or_else(|_| format!("type {code}"))
}

/// The element type of a `TypeProto` that is a tensor type.
pub fn tensor_elem_type(tp: &TypeProto) -> Option<i32> {
    match tp.value.as_ref()? {
        super::proto::type_proto::Value::TensorType(t) => Some(t.elem_type),
        _ => None,
    }
}

/// Where external data files may be read from: the model's folder.
#[derive(Clone, Debug)]
pub struct DataDir(pub Option<PathBuf>);

impl DataDir {
    /// Resolves an external data location, refusing anything that leaves the folder.
    fn resolve(&self, tensor: &str, location: &str) -> Result<PathBuf, OnnxError> {
        let base = self.0.as_ref().ok_or_else(|| OnnxError::ExternalData {
            tensor: tensor.to_string(),
            message: format!("external data `{location}` but the model was not loaded from a file"),
        })?;
        let rel = Path::new(location);
        let escapes = rel.is_absolute()
            || rel.components().any(|c| {
                !matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
        if escapes {
            return Err(OnnxError::ExternalData {
                tensor: tensor.to_string(),
                message: format!(
                    "external data location `{location}` leaves the model's folder; refused"
                ),
            });
        }
        let path = base.join(rel);
        // A symlink inside the folder could still point outside it.
        let (canon_base, canon) = (base.canonicalize(), path.canonicalize());
        match (canon_base, canon) {
            (Ok(b), Ok(p)) if !p.starts_with(&b) => Err(OnnxError::ExternalData {
                tensor: tensor.to_string(),
                message: format!("external data location `{location}` resolves outside the model's folder; refused"),
            }),
            (_, Err(e)) => Err(OnnxError::ExternalData { tensor: tensor.to_string(), message: format!("cannot open external data file `{}`: {e}", path.display()) }),
            _ => Ok(path),
        }
    }
}

/// Converts a `TensorProto` to a tensor (`what` names it in errors).
pub fn tensor_from_proto(t: &TensorProto, dir: &DataDir) -> Result<Tensor, OnnxError> {
    let name = if t.name.is_empty() {
        "<unnamed tensor>"
    } else {
        t.name.as_str()
    };
    let bad = |message: String| OnnxError::BadTensor {
        tensor: name.to_string(),
        message,
    };
    let dtype = dtype_of(t.data_type).ok_or_else(|| OnnxError::UnsupportedDtype {
        tensor: name.to_string(),
        dtype: onnx_type_name(t.data_type),
    })?;
    if t.dims.iter().any(|&d| d < 0) {
        return Err(bad(format!("negative dimension in {:?}", t.dims)));
    }
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dims {:?} overflow", t.dims)))?;
    let nbytes = numel
        .checked_mul(dtype.size())
        .ok_or_else(|| bad("size overflows".into()))?;
    // Sub-byte types are packed in the file (first element in the low bits) and
    // unpacked, one per byte, in kiln.
    let sub_byte = kiln_ir::lowp::sub_byte_bits(dtype);
    let stored_bytes = match sub_byte {
        Some(bits) => numel.div_ceil(8 / bits as usize),
        None => nbytes,
    };
    let unpack = |packed: &[u8]| -> Result<Tensor, OnnxError> {
        let bytes = kiln_ir::lowp::unpack_sub_byte(dtype, packed, numel).ok_or_else(|| {
            bad(format!(
                "{} packed bytes, {dtype}{shape:?} needs {stored_bytes}",
                packed.len()
            ))
        })?;
        Tensor::from_bytes(dtype, shape.clone(), Bytes::from(bytes)).map_err(|e| bad(e.to_string()))
    };
    if t.data_location == 1 {
        let mut location = None;
        let (mut offset, mut length) = (0usize, None);
        for kv in &t.external_data {
            match kv.key.as_str() {
                "location" => location = Some(kv.value.clone()),
                "offset" => {
                    offset = kv
                        .value
                        .parse()
                        .map_err(|_| bad(format!("bad external data offset `{}`", kv.value)))?
                }
                "length" => {
                    length = Some(
                        kv.value
                            .parse::<usize>()
                            .map_err(|_| bad(format!("bad external data length `{}`", kv.value)))?,
                    )
                }
                _ => {}
            }
        }
        let location = location.ok_or_else(|| bad("external data without a location".into()))?;
        let path = dir.resolve(name, &location)?;
        let file = kiln_ir::map_file(&path).map_err(|e| OnnxError::ExternalData {
            tensor: name.to_string(),
            message: format!("cannot map `{}`: {e}", path.display()),
        })?;
        let len = length.unwrap_or(stored_bytes);
        if len != stored_bytes || offset.checked_add(len).is_none_or(|end| end > file.len()) {
            return Err(OnnxError::ExternalData {
                tensor: name.to_string(),
                message: format!(
                    "needs {stored_bytes} bytes at offset {offset} of `{}` ({} bytes long{})",
                    path.display(),
                    file.len(),
                    if len != stored_bytes {
                        format!(", length field says {len}")
                    } else {
                        String::new()
                    }
                ),
            });
        }
        if sub_byte.is_some() {
            return unpack(&file[offset..offset + len]);
        }
        return Tensor::from_bytes(dtype, shape, file.slice(offset..offset + len))
            .map_err(|e| bad(e.to_string()));
    }
    if !t.raw_data.is_empty() || numel == 0 {
        if t.raw_data.len() != stored_bytes {
            return Err(bad(format!("raw_data has {} bytes, {dtype}{shape:?} needs {stored_bytes} (truncated or corrupt file?)", t.raw_data.len())));
        }
        if sub_byte.is_some() {
            return unpack(&t.raw_data);
        }
        return Tensor::from_bytes(dtype, shape, t.raw_data.clone())
            .map_err(|e| bad(e.to_string()));
    }
    let count_err = |n: usize| {
        bad(format!(
            "holds {n} elements, dims {:?} need {numel}",
            t.dims
        ))
    };
    let out = match dtype {
        DType::F32 => {
            check(t.float_data.len(), numel).map_err(count_err)?;
            Tensor::from_vec(shape, t.float_data.clone())
        }
        DType::F64 => {
            check(t.double_data.len(), numel).map_err(count_err)?;
            Tensor::from_vec(shape, t.double_data.clone())
        }
        DType::I64 => {
            check(t.int64_data.len(), numel).map_err(count_err)?;
            Tensor::from_vec(shape, t.int64_data.clone())
        }
        DType::U32 | DType::U64 => {
            check(t.uint64_data.len(), numel).map_err(count_err)?;
            let v: Vec<i64> = t.uint64_data.iter().map(|&x| x as i64).collect();
            Tensor::from_i64(dtype, shape, &v)
        }
        DType::F16 | DType::BF16 => {
            check(t.int32_data.len(), numel).map_err(count_err)?;
            let mut bytes = Vec::with_capacity(nbytes);
            for &bits in &t.int32_data {
                bytes.extend_from_slice(&(bits as u16).to_le_bytes());
            }
            Tensor::from_bytes(dtype, shape, Bytes::from(bytes)).map_err(|e| bad(e.to_string()))?
        }
        // One element per int32 (its bits), as f16 above.
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0 => {
            check(t.int32_data.len(), numel).map_err(count_err)?;
            let bytes: Vec<u8> = t.int32_data.iter().map(|&bits| bits as u8).collect();
            Tensor::from_bytes(dtype, shape, Bytes::from(bytes)).map_err(|e| bad(e.to_string()))?
        }
        // One packed byte per int32.
        DType::F4E2M1 | DType::I4 | DType::U4 | DType::I2 | DType::U2 => {
            check(t.int32_data.len(), stored_bytes).map_err(|n| {
                bad(format!(
                    "holds {n} packed bytes, dims {:?} need {stored_bytes}",
                    t.dims
                ))
            })?;
            let packed: Vec<u8> = t.int32_data.iter().map(|&bits| bits as u8).collect();
            unpack(&packed)?
        }
        DType::I32 | DType::I16 | DType::I8 | DType::U8 | DType::U16 | DType::Bool => {
            check(t.int32_data.len(), numel).map_err(count_err)?;
            let v: Vec<i64> = t.int32_data.iter().map(|&x| x as i64).collect();
            Tensor::from_i64(dtype, shape, &v)
        }
        // No ONNX data type code maps to the IR's list dtype.
        DType::List => return Err(bad("a list is not a tensor".into())),
    };
    Ok(out)
}

fn check(have: usize, want: usize) -> Result<(), usize> {
    if have == want {
        Ok(())
    } else {
        Err(have)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(code: i32, dims: &[i64]) -> TensorProto {
        TensorProto {
            name: "t".into(),
            data_type: code,
            dims: dims.to_vec(),
            ..Default::default()
        }
    }

    /// ONNX's codes of the types below.
    const FLOAT8E4M3FN: i32 = 17;
    const INT4: i32 = 22;
    const UINT2: i32 = 25;

    #[test]
    fn packed_sub_byte_raw_data_unpacks_low_nibble_first() {
        let mut t = proto(INT4, &[3]);
        t.raw_data = Bytes::from_static(&[0xF1, 0x08]);
        let x = tensor_from_proto(&t, &DataDir(None)).unwrap();
        assert_eq!((x.dtype(), x.to_i64_vec()), (DType::I4, vec![1, -1, -8]));
        let mut t = proto(UINT2, &[5]);
        t.int32_data = vec![0b1110_0100, 0b01];
        let x = tensor_from_proto(&t, &DataDir(None)).unwrap();
        assert_eq!(x.to_i64_vec(), vec![0, 1, 2, 3, 1]);
    }

    #[test]
    fn float8_int32_data_holds_one_element_each() {
        let mut t = proto(FLOAT8E4M3FN, &[2]);
        t.int32_data = vec![0x7E, 0xC0];
        let x = tensor_from_proto(&t, &DataDir(None)).unwrap();
        assert_eq!(x.to_f64_vec(), vec![448.0, -2.0]);
    }

    #[test]
    fn a_short_packed_tensor_is_an_error_naming_it() {
        let mut t = proto(INT4, &[5]);
        t.raw_data = Bytes::from_static(&[0x11, 0x22]);
        let e = tensor_from_proto(&t, &DataDir(None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`t`") && e.contains("needs 3"), "{e}");
        let mut t = proto(INT4, &[5]);
        t.int32_data = vec![1, 2];
        let e = tensor_from_proto(&t, &DataDir(None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`t`") && e.contains("need 3"), "{e}");
    }
}
