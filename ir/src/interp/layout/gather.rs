//! Ops that read elements at indices or by a condition: gather (by axis,
//! element and index tuple), compress and non-zero positions.

use super::super::strides::row_major_strides;
use super::elements::{
    element_offset, gather_with, index_values, input, take, take_slices, wrap_index,
};
use crate::error::OpError;
use crate::Tensor;

/// [`crate::op::LayoutOp::Gather`]: slices of `axis` at `indices` (negative ones wrapped).
pub(super) fn gather(x: &Tensor, indices: &Tensor, axis: usize) -> Result<Tensor, OpError> {
    if axis >= x.rank() {
        return Err(OpError::attribute(format!(
            "gather axis {axis} out of range"
        )));
    }
    let idx = index_values(indices, "gather indices")?;
    let n = x.shape()[axis];
    let outer: usize = x.shape()[..axis].iter().product();
    let inner: usize = x.shape()[axis + 1..].iter().product::<usize>() * x.dtype().size();
    let wrapped = idx
        .iter()
        .map(|&i| wrap_index(i, n, "gather"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(outer * wrapped.len() * inner);
    for o in 0..outer {
        for &i in &wrapped {
            let base = (o * n + i) * inner;
            out.extend_from_slice(&x.bytes()[base..base + inner]);
        }
    }
    let mut shape = x.shape()[..axis].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&x.shape()[axis + 1..]);
    Tensor::from_bytes(x.dtype(), shape, out.into()).map_err(|e| OpError::shape(e.to_string()))
}

/// [`crate::op::LayoutOp::GatherElements`]: one element of `axis` per index.
pub(super) fn gather_elements(
    x: &Tensor,
    indices: &Tensor,
    axis: usize,
) -> Result<Tensor, OpError> {
    let r = x.rank();
    if axis >= r || indices.rank() != r {
        return Err(OpError::attribute(format!(
            "GatherElements of {:?} with indices {:?} on axis {axis}",
            x.shape(),
            indices.shape()
        )));
    }
    let idx = index_values(indices, "GatherElements indices")?;
    let st = row_major_strides(x.shape());
    let mut k = 0;
    gather_with(x, x.dtype(), indices.shape().to_vec(), None, |i| {
        let flat = element_offset(i, idx[k], axis, x.shape(), &st, "GatherElements")?;
        k += 1;
        Ok(Some(flat))
    })
}

/// For ND gather/scatter: the flat element offset (into the data) of each index
/// tuple, and the number of elements each tuple addresses.
pub(super) fn nd_offsets(
    data_shape: &[usize],
    indices: &Tensor,
    batch_dims: usize,
) -> Result<(Vec<usize>, usize), OpError> {
    let q = indices.rank();
    let k = *indices
        .shape()
        .last()
        .ok_or(OpError::shape("ND indices must have rank >= 1"))?;
    if batch_dims >= q || batch_dims + k > data_shape.len() {
        return Err(OpError::shape(format!(
            "ND indices {:?} (batch_dims {batch_dims}) do not fit data {:?}",
            indices.shape(),
            data_shape
        )));
    }
    if indices.shape()[..batch_dims] != data_shape[..batch_dims] {
        return Err(OpError::shape("ND batch dims of data and indices differ"));
    }
    let idx = index_values(indices, "ND indices")?;
    let st = row_major_strides(data_shape);
    let inner: usize = data_shape[batch_dims + k..].iter().product();
    let batch_size: usize = data_shape[batch_dims..].iter().product();
    let per_batch: usize = indices.shape()[batch_dims..q - 1].iter().product();
    let tuples = idx
        .len()
        .checked_div(k)
        .unwrap_or_else(|| indices.shape()[..q - 1].iter().product());
    let mut offsets = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let mut off = t.checked_div(per_batch).unwrap_or(0) * batch_size;
        for j in 0..k {
            let d = batch_dims + j;
            off += wrap_index(idx[t * k + j], data_shape[d], "ND")? * st[d];
        }
        offsets.push(off);
    }
    Ok((offsets, inner))
}

/// [`crate::op::LayoutOp::GatherND`]: the slices addressed by index tuples after `batch_dims`.
pub(super) fn gather_nd(
    x: &Tensor,
    indices: &Tensor,
    batch_dims: usize,
) -> Result<Tensor, OpError> {
    let (offsets, inner) = nd_offsets(x.shape(), indices, batch_dims)?;
    let k = indices.shape()[indices.rank() - 1];
    let mut shape = indices.shape()[..indices.rank() - 1].to_vec();
    shape.extend_from_slice(&x.shape()[batch_dims + k..]);
    let es = x.dtype().size();
    let mut out = Vec::with_capacity(offsets.len() * inner * es);
    for off in offsets {
        out.extend_from_slice(&x.bytes()[off * es..(off + inner) * es]);
    }
    Tensor::from_bytes(x.dtype(), shape, out.into()).map_err(|e| OpError::shape(e.to_string()))
}

/// [`crate::op::LayoutOp::Compress`]: the slices (or flat elements) where operand 1 holds.
pub(super) fn compress(
    x: &Tensor,
    inputs: &[&Tensor],
    name: &str,
    axis: Option<usize>,
) -> Result<Tensor, OpError> {
    let cond = input(inputs, 1, name)?.to_bool_vec();
    match axis {
        None => {
            if cond.len() > x.numel() {
                return Err(OpError::value("compress condition longer than the input"));
            }
            let idx: Vec<usize> = (0..cond.len()).filter(|&i| cond[i]).collect();
            take(x, vec![idx.len()], &idx)
        }
        Some(a) => {
            if a >= x.rank() || cond.len() > x.shape()[a] {
                return Err(OpError::attribute(
                    "compress condition longer than the axis",
                ));
            }
            let keep: Vec<usize> = (0..cond.len()).filter(|&i| cond[i]).collect();
            take_slices(x, a, &keep)
        }
    }
}

/// [`crate::op::LayoutOp::NonZero`]: the indices of non-zero elements, one row per axis.
pub(super) fn nonzero(x: &Tensor) -> Result<Tensor, OpError> {
    let vals = x.to_f64_vec();
    let nz: Vec<usize> = (0..vals.len()).filter(|&i| vals[i] != 0.0).collect();
    let st = row_major_strides(x.shape());
    let r = x.rank();
    let mut out = vec![0i64; r * nz.len()];
    for (j, &flat) in nz.iter().enumerate() {
        for ax in 0..r {
            out[ax * nz.len() + j] = ((flat / st[ax]) % x.shape()[ax]) as i64;
        }
    }
    Ok(Tensor::from_vec(vec![r, nz.len()], out))
}
