//! Writing named tensors to a `.safetensors` file.

use std::path::Path;

use kiln_ir::{DType, Tensor};
use safetensors::tensor::{Dtype, TensorView};

use crate::Error;

/// The safetensors dtype of a kiln dtype; the FNUZ float8s and the packed
/// sub-byte types have none kiln writes (an error naming the tensor).
fn st_dtype(name: &str, d: DType) -> Result<Dtype, Error> {
    Ok(match d {
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
        DType::F8E4M3FN => Dtype::F8_E4M3,
        DType::F8E5M2 => Dtype::F8_E5M2,
        DType::F8E8M0 => Dtype::F8_E8M0,
        DType::F8E4M3FNUZ
        | DType::F8E5M2FNUZ
        | DType::F4E2M1
        | DType::I4
        | DType::U4
        | DType::I2
        | DType::U2
        | DType::List => {
            return Err(Error::Output(format!(
                "tensor `{name}`: safetensors has no {d} dtype kiln writes"
            )))
        }
    })
}

/// Serializes named tensors in the safetensors format.
pub fn to_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>, Error> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, t)| {
            TensorView::new(st_dtype(n, t.dtype())?, t.shape().to_vec(), t.bytes())
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
