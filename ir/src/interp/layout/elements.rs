//! Element-wise copying, the primitive of every data-movement op: an output
//! element is the input element an index function names (or a fill value),
//! moved as bytes whatever the dtype; and the index arguments such ops read.

use super::super::strides::row_major_strides;
use crate::error::OpError;
use crate::{DType, Tensor};

/// Calls `f` with every multi-index of `shape`, in row-major order.
pub(super) fn for_each_index(
    shape: &[usize],
    mut f: impl FnMut(&[usize]) -> Result<(), OpError>,
) -> Result<(), OpError> {
    let n: usize = shape.iter().product();
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        f(&idx)?;
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    Ok(())
}

/// A tensor of `shape` whose elements are copied from `src` at `index(out_index)`,
/// or set to `fill` where `index` returns `None`.
pub(super) fn gather_with(
    src: &Tensor,
    dtype: DType,
    shape: Vec<usize>,
    fill: Option<&[u8]>,
    mut index: impl FnMut(&[usize]) -> Result<Option<usize>, OpError>,
) -> Result<Tensor, OpError> {
    let es = dtype.size();
    let n: usize = shape.iter().product();
    let data = src.bytes();
    let mut out = Vec::with_capacity(n * es);
    for_each_index(&shape, |idx| {
        match index(idx)? {
            Some(i) => out.extend_from_slice(&data[i * es..(i + 1) * es]),
            None => out.extend_from_slice(fill.ok_or(OpError::value("internal: no fill value"))?),
        }
        Ok(())
    })?;
    Tensor::from_bytes(dtype, shape, out.into()).map_err(|e| OpError::shape(e.to_string()))
}

/// A tensor copying `src`'s elements at the flat `indices`.
pub(super) fn take(src: &Tensor, shape: Vec<usize>, indices: &[usize]) -> Result<Tensor, OpError> {
    let es = src.dtype().size();
    let data = src.bytes();
    let mut out = Vec::with_capacity(indices.len() * es);
    for &i in indices {
        out.extend_from_slice(&data[i * es..(i + 1) * es]);
    }
    Tensor::from_bytes(src.dtype(), shape, out.into()).map_err(|e| OpError::shape(e.to_string()))
}

/// The slices of `x` along `axis` listed in `keep`, in that order (what
/// Compress and Unique keep).
pub(super) fn take_slices(x: &Tensor, axis: usize, keep: &[usize]) -> Result<Tensor, OpError> {
    let mut shape = x.shape().to_vec();
    shape[axis] = keep.len();
    let st = row_major_strides(x.shape());
    gather_with(x, x.dtype(), shape, None, |i| {
        Ok(Some(
            i.iter()
                .enumerate()
                .map(|(d, &v)| if d == axis { keep[v] } else { v } * st[d])
                .sum(),
        ))
    })
}

/// The bytes of one element of `dtype` with value `v`.
pub(super) fn element_bytes(dtype: DType, v: f64) -> Vec<u8> {
    Tensor::from_f64(dtype, vec![], &[v]).bytes().to_vec()
}

/// Integer index values of an index tensor (floats are rejected).
pub(super) fn index_values(t: &Tensor, what: &str) -> Result<Vec<i64>, OpError> {
    if !t.dtype().is_int() {
        return Err(OpError::dtype(format!(
            "{what} must be integers, got {}",
            t.dtype()
        )));
    }
    Ok(t.to_i64_vec())
}

/// Normalizes a possibly negative index into `0..n`, or reports it.
pub(super) fn wrap_index(i: i64, n: usize, what: &str) -> Result<usize, OpError> {
    let r = if i < 0 { i + n as i64 } else { i };
    if r < 0 || r >= n as i64 {
        return Err(OpError::shape(format!(
            "{what} index {i} out of range for size {n}"
        )));
    }
    Ok(r as usize)
}

/// The flat offset, in a tensor of `shape` with strides `st`, of position `pos`
/// with its `axis` coordinate replaced by `index` (wrapped): the element
/// GatherElements reads and ScatterElements writes (`op` names them in errors).
pub(super) fn element_offset(
    pos: &[usize],
    index: i64,
    axis: usize,
    shape: &[usize],
    st: &[usize],
    op: &str,
) -> Result<usize, OpError> {
    let mut flat = 0;
    for (d, &p) in pos.iter().enumerate() {
        let v = if d == axis {
            wrap_index(index, shape[d], op)?
        } else if p < shape[d] {
            p
        } else {
            return Err(OpError::value(format!("{op} indices larger than data")));
        };
        flat += v * st[d];
    }
    Ok(flat)
}

/// Operand `i` of `op`, or an error naming it.
pub(super) fn input<'a>(inputs: &[&'a Tensor], i: usize, op: &str) -> Result<&'a Tensor, OpError> {
    inputs
        .get(i)
        .copied()
        .ok_or_else(|| OpError::value(format!("{op}: missing input {i}")))
}
