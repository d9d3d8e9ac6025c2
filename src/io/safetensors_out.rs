//! Writing named tensors to a `.safetensors` file.

use std::path::Path;

use kiln_ir::{DType, Tensor};
use safetensors::tensor::{Dtype, TensorView};

use crate::Error;

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::U16 => Dtype::U16,
        DType::U32 => Dtype::U32,
        DType::U64 => Dtype::U64,
        DType::Bool => Dtype::BOOL,
    }
}

/// Serializes named tensors in the safetensors format.
pub fn to_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>, Error> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, t)| {
            TensorView::new(st_dtype(t.dtype()), t.shape().to_vec(), t.bytes())
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Output(format!("tensor `{n}`: {e}")))
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::Output(e.to_string()))
}

/// Writes named tensors to `path` atomically.
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), Error> {
    super::write_atomically(path, &to_bytes(tensors)?)
}
