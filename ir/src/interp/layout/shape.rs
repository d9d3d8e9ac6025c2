//! Ops that change a tensor's shape, not its elements: reshape, squeeze,
//! unsqueeze, flatten, bit casts, and the shape itself as a tensor.

use super::elements::{index_values, input};
use crate::error::OpError;
use crate::op::shape_range;
use crate::{DType, Tensor};

/// [`crate::op::LayoutOp::Reshape`] to the shape in operand 1.
pub(super) fn reshape(
    x: &Tensor,
    inputs: &[&Tensor],
    name: &str,
    allowzero: bool,
) -> Result<Tensor, OpError> {
    let target = index_values(input(inputs, 1, name)?, "reshape shape")?;
    let dims = reshape_dims(x.shape(), &target, allowzero)?;
    x.reshaped(dims).map_err(|e| OpError::value(e.to_string()))
}

/// [`crate::op::LayoutOp::Squeeze`] of `axes` (or operand 1's).
pub(super) fn squeeze(
    x: &Tensor,
    inputs: &[&Tensor],
    axes: &[usize],
    not_one: &[usize],
) -> Result<Tensor, OpError> {
    if let Some(a) = not_one.iter().find(|&&a| x.shape().get(a) == Some(&1)) {
        return Err(OpError::shape(format!(
            "Squeeze without axes: dim {a} of {:?} is 1, which ONNX would remove, but the \
             graph was built for the rank with it kept (its size was unknown at import)",
            x.shape()
        )));
    }
    let axes = &runtime_axes(inputs, axes, x.rank())?;
    for &a in axes {
        if x.shape().get(a) != Some(&1) {
            return Err(OpError::attribute(format!(
                "cannot squeeze axis {a} of shape {:?}",
                x.shape()
            )));
        }
    }
    let dims = x
        .shape()
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect();
    x.reshaped(dims).map_err(|e| OpError::value(e.to_string()))
}

/// [`crate::op::LayoutOp::Unsqueeze`] at `axes` (or operand 1's).
pub(super) fn unsqueeze(x: &Tensor, inputs: &[&Tensor], axes: &[usize]) -> Result<Tensor, OpError> {
    let out_rank = x.rank() + inputs.get(1).map_or(axes.len(), |a| a.numel());
    let axes = &runtime_axes(inputs, axes, out_rank)?;
    if axes.iter().any(|&a| a >= out_rank) {
        return Err(OpError::attribute(format!(
            "unsqueeze axes {axes:?} out of range"
        )));
    }
    let mut src = x.shape().iter();
    let dims = (0..out_rank)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                src.next().copied().unwrap_or(1)
            }
        })
        .collect();
    x.reshaped(dims).map_err(|e| OpError::value(e.to_string()))
}

/// [`crate::op::LayoutOp::Flatten`] into `[before axis, from axis]`.
pub(super) fn flatten(x: &Tensor, axis: usize) -> Result<Tensor, OpError> {
    if axis > x.rank() {
        return Err(OpError::attribute(format!(
            "flatten axis {axis} out of range"
        )));
    }
    let rows = x.shape()[..axis].iter().product();
    let cols = x.shape()[axis..].iter().product();
    x.reshaped(vec![rows, cols])
        .map_err(|e| OpError::value(e.to_string()))
}

/// [`crate::op::LayoutOp::Shape`]: dims `start..end` as an i64 vector.
pub(super) fn shape_of(x: &Tensor, start: i64, end: Option<i64>) -> Result<Tensor, OpError> {
    let (s, e) = shape_range(x.rank(), start, end);
    Ok(Tensor::from_vec(
        vec![e - s],
        x.shape()[s..e].iter().map(|&d| d as i64).collect(),
    ))
}

/// [`crate::op::LayoutOp::BitCast`]: the same bytes as `to`.
pub(super) fn bitcast(x: &Tensor, to: DType) -> Result<Tensor, OpError> {
    if x.dtype().bits() != to.bits() {
        return Err(OpError::dtype(format!(
            "BitCast from {} to {to}: the element sizes differ",
            x.dtype()
        )));
    }
    if to == DType::Bool && x.bytes().iter().any(|&b| b > 1) {
        return Err(OpError::value(
            "BitCast to bool of a byte other than 0 or 1",
        ));
    }
    let t = Tensor::from_bytes(to, x.shape().to_vec(), x.bytes().to_vec().into())
        .map_err(|e| OpError::value(e.to_string()))?;
    Ok(t)
}

/// The concrete target of ONNX `Reshape` (`0` copies unless `allowzero`, one `-1` inferred).
pub(super) fn reshape_dims(
    input: &[usize],
    target: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, OpError> {
    let bad = || OpError::shape(format!("cannot reshape {input:?} to {target:?}"));
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        out.push(match t {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                1
            }
            0 if !allowzero => *input.get(i).ok_or_else(bad)?,
            t if t < 0 => return Err(bad()),
            t => t as usize,
        });
    }
    let total: usize = input.iter().product();
    let known: usize = out.iter().product();
    if let Some(at) = infer_at {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(bad());
        }
        out[at] = total / known;
    } else if known != total {
        return Err(bad());
    }
    Ok(out)
}

/// The op's axes, or those of its second input (normalized against `rank`, sorted).
pub(super) fn runtime_axes(
    inputs: &[&Tensor],
    axes: &[usize],
    rank: usize,
) -> Result<Vec<usize>, OpError> {
    let Some(t) = inputs.get(1) else {
        return Ok(axes.to_vec());
    };
    let mut out = index_values(t, "axes")?
        .into_iter()
        .map(|a| crate::op::util::axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(OpError::attribute("repeated axis"));
    }
    Ok(out)
}
