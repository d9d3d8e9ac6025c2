//! Ops that cut or join tensors along an axis: concat, split and slice.

use super::super::strides::row_major_strides;
use super::elements::{gather_with, index_values};
use crate::error::OpError;
use crate::op::{slice_bounds, slice_len};
use crate::Tensor;

/// [`crate::op::LayoutOp::Concat`] along `axis`.
pub(super) fn concat(inputs: &[&Tensor], axis: usize) -> Result<Tensor, OpError> {
    let first = inputs
        .first()
        .ok_or(OpError::shape("Concat of no inputs"))?;
    let r = first.rank();
    if axis >= r {
        return Err(OpError::attribute(format!(
            "concat axis {axis} out of range for rank {r}"
        )));
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = 0;
    for t in inputs {
        let ok = t.rank() == r
            && t.dtype() == first.dtype()
            && (0..r).all(|d| d == axis || t.shape()[d] == first.shape()[d]);
        if !ok {
            return Err(OpError::dtype(format!(
                "cannot concat {}{:?} with {}{:?} on axis {axis}",
                first.dtype(),
                first.shape(),
                t.dtype(),
                t.shape()
            )));
        }
        shape[axis] += t.shape()[axis];
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product::<usize>() * first.dtype().size();
    let mut out = Vec::with_capacity(shape.iter().product::<usize>() * first.dtype().size());
    for o in 0..outer {
        for t in inputs {
            let chunk = t.shape()[axis] * inner;
            out.extend_from_slice(&t.bytes()[o * chunk..(o + 1) * chunk]);
        }
    }
    Tensor::from_bytes(first.dtype(), shape, out.into()).map_err(|e| OpError::shape(e.to_string()))
}

/// [`crate::op::LayoutOp::Split`] into `sizes`, or the sizes in operand 1.
pub(super) fn split_by(
    x: &Tensor,
    inputs: &[&Tensor],
    axis: usize,
    sizes: &[usize],
) -> Result<Vec<Tensor>, OpError> {
    match inputs.get(1) {
        Some(s) => {
            let s = index_values(s, "split sizes")?;
            if s.iter().any(|&v| v < 0) {
                return Err(OpError::shape(format!("negative split sizes {s:?}")));
            }
            split(x, axis, &s.iter().map(|&v| v as usize).collect::<Vec<_>>())
        }
        None => split(x, axis, sizes),
    }
}

/// Splits `x` along `axis` into pieces of `sizes`.
fn split(x: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>, OpError> {
    if axis >= x.rank() {
        return Err(OpError::attribute(format!(
            "split axis {axis} out of range"
        )));
    }
    let n = x.shape()[axis];
    if sizes.iter().sum::<usize>() != n {
        return Err(OpError::shape(format!(
            "split sizes {sizes:?} do not add up to {n}"
        )));
    }
    let outer: usize = x.shape()[..axis].iter().product();
    let inner: usize = x.shape()[axis + 1..].iter().product::<usize>() * x.dtype().size();
    let mut start = 0;
    let mut outs = Vec::with_capacity(sizes.len());
    for &s in sizes {
        let mut bytes = Vec::with_capacity(outer * s * inner);
        for o in 0..outer {
            let base = (o * n + start) * inner;
            bytes.extend_from_slice(&x.bytes()[base..base + s * inner]);
        }
        let mut shape = x.shape().to_vec();
        shape[axis] = s;
        outs.push(
            Tensor::from_bytes(x.dtype(), shape, bytes.into())
                .map_err(|e| OpError::shape(e.to_string()))?,
        );
        start += s;
    }
    Ok(outs)
}

/// [`crate::op::LayoutOp::Slice`] with starts, ends, axes and steps from the operands.
pub(super) fn slice(inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    let x = inputs[0];
    let r = x.rank();
    let ints = |i: usize, what: &str| -> Result<Option<Vec<i64>>, OpError> {
        inputs.get(i).map(|t| index_values(t, what)).transpose()
    };
    let starts = ints(1, "slice starts")?.ok_or(OpError::value("Slice needs starts"))?;
    let ends = ints(2, "slice ends")?.ok_or(OpError::value("Slice needs ends"))?;
    let axes = ints(3, "slice axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = ints(4, "slice steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(OpError::attribute(
            "slice starts, ends, axes and steps differ in length",
        ));
    }
    let mut begin = vec![0i64; r];
    let mut step = vec![1i64; r];
    let mut shape = x.shape().to_vec();
    let mut seen = vec![false; r];
    for i in 0..starts.len() {
        let a = crate::op::util::axis(axes[i], r)?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(OpError::attribute(format!("slice axis {a} repeated")));
        }
        let n = x.shape()[a];
        let (s, _) = slice_bounds(n, starts[i], ends[i], steps[i])?;
        shape[a] = slice_len(n, starts[i], ends[i], steps[i])?;
        begin[a] = s;
        step[a] = steps[i];
    }
    let st = row_major_strides(x.shape());
    gather_with(x, x.dtype(), shape, None, |i| {
        let mut flat = 0i64;
        for d in 0..r {
            flat += (begin[d] + i[d] as i64 * step[d]) * st[d] as i64;
        }
        Ok(Some(flat as usize))
    })
}
