//! Ops that write updates at indices: ScatterND and ScatterElements, with
//! their reductions, and TensorScatter (a KV-cache write).

use super::super::strides::row_major_strides;
use super::elements::{element_offset, for_each_index, index_values};
use super::gather::nd_offsets;
use crate::error::OpError;
use crate::op::ScatterReduction;
use crate::{with_dtype, Element, Tensor};

/// Combines `u` into `dst` with a scatter reduction, in the element's own arithmetic
/// (integers wrap; floats compute in f64 and round once).
fn combine<T: Element>(dst: &mut T, u: T, red: ScatterReduction) {
    let float = T::DTYPE.is_float();
    *dst = match red {
        ScatterReduction::None => u,
        ScatterReduction::Add if float => T::from_f64(dst.to_f64() + u.to_f64()),
        ScatterReduction::Add => T::from_i64(dst.to_i64().wrapping_add(u.to_i64())),
        ScatterReduction::Mul if float => T::from_f64(dst.to_f64() * u.to_f64()),
        ScatterReduction::Mul => T::from_i64(dst.to_i64().wrapping_mul(u.to_i64())),
        ScatterReduction::Max => {
            if u.to_f64() > dst.to_f64() {
                u
            } else {
                *dst
            }
        }
        ScatterReduction::Min => {
            if u.to_f64() < dst.to_f64() {
                u
            } else {
                *dst
            }
        }
    };
}

/// Applies `updates[j]` to `data[targets[j]]` for every j.
fn scatter_apply(
    data: &Tensor,
    updates: &Tensor,
    targets: &[usize],
    red: ScatterReduction,
) -> Result<Tensor, OpError> {
    if updates.dtype() != data.dtype() {
        return Err(OpError::dtype(format!(
            "scatter updates are {}, data is {}",
            updates.dtype(),
            data.dtype()
        )));
    }
    if targets.len() != updates.numel() {
        return Err(OpError::shape("scatter updates do not match the indices"));
    }
    with_dtype!(data.dtype(), T => {
        let mut d = data.to_vec::<T>();
        let u = updates.to_vec::<T>();
        for (j, &t) in targets.iter().enumerate() {
            combine(&mut d[t], u[j], red);
        }
        Ok(Tensor::from_vec(data.shape().to_vec(), d))
    })
}

/// [`crate::op::LayoutOp::ScatterND`]: `x` with the updates written (or reduced) at index tuples.
pub(super) fn scatter_nd(
    x: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    red: ScatterReduction,
) -> Result<Tensor, OpError> {
    let (offsets, inner) = nd_offsets(x.shape(), indices, 0)?;
    let k = indices.shape()[indices.rank() - 1];
    let mut ushape = indices.shape()[..indices.rank() - 1].to_vec();
    ushape.extend_from_slice(&x.shape()[k..]);
    if updates.shape() != ushape.as_slice() {
        return Err(OpError::shape(format!(
            "ScatterND updates have shape {:?}, expected {ushape:?}",
            updates.shape()
        )));
    }
    let targets: Vec<usize> = offsets
        .iter()
        .flat_map(|&o| o..o + inner)
        .collect::<Vec<_>>();
    scatter_apply(x, updates, &targets, red)
}

/// [`crate::op::LayoutOp::ScatterElements`]: `x` with one update per index along `axis`.
pub(super) fn scatter_elements(
    x: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    axis: usize,
    red: ScatterReduction,
) -> Result<Tensor, OpError> {
    let r = x.rank();
    if axis >= r || indices.rank() != r || indices.shape() != updates.shape() {
        return Err(OpError::attribute(format!(
            "ScatterElements of {:?} with indices {:?} and updates {:?} on axis {axis}",
            x.shape(),
            indices.shape(),
            updates.shape()
        )));
    }
    let idx = index_values(indices, "ScatterElements indices")?;
    let st = row_major_strides(x.shape());
    let mut targets = Vec::with_capacity(idx.len());
    let mut k = 0;
    for_each_index(indices.shape(), |i| {
        let flat = element_offset(i, idx[k], axis, x.shape(), &st, "ScatterElements")?;
        k += 1;
        targets.push(flat);
        Ok(())
    })?;
    scatter_apply(x, updates, &targets, red)
}

/// [`crate::op::LayoutOp::TensorScatter`]: `cache` with `update`'s positions along
/// `axis` written from `write_indices[b]` on (wrapping when `circular`).
pub(super) fn tensor_scatter(
    cache: &Tensor,
    update: &Tensor,
    write_indices: Option<&Tensor>,
    axis: usize,
    circular: bool,
) -> Result<Tensor, OpError> {
    let (cs, us) = (cache.shape(), update.shape());
    let fits = axis >= 1
        && axis < cs.len()
        && us.len() == cs.len()
        && us[axis] <= cs[axis]
        && (0..cs.len()).all(|i| i == axis || cs[i] == us[i]);
    if !fits {
        return Err(OpError::shape(format!(
            "TensorScatter of cache {cs:?} and update {us:?} on axis {axis}"
        )));
    }
    if update.dtype() != cache.dtype() {
        return Err(OpError::dtype(format!(
            "TensorScatter update is {}, the cache {}",
            update.dtype(),
            cache.dtype()
        )));
    }
    let batch = cs[0];
    let starts = match write_indices {
        Some(w) => {
            let v = index_values(w, "TensorScatter write_indices")?;
            if w.shape() != [batch] {
                return Err(OpError::shape(format!(
                    "TensorScatter write_indices of shape {:?} for batch {batch}",
                    w.shape()
                )));
            }
            v
        }
        None => vec![0; batch],
    };
    let (max_seq, seq) = (cs[axis], us[axis]);
    let inner: usize = cs[axis + 1..].iter().product();
    let prefix: usize = cs[..axis].iter().product();
    let per_batch = prefix.checked_div(batch).unwrap_or(0);
    // For every prefix row and update position, the cache position it lands on.
    let mut targets = Vec::with_capacity(prefix * seq * inner);
    for row in 0..prefix {
        let start = starts[row / per_batch];
        for s in 0..seq {
            let at = start + s as i64;
            let pos = if circular && max_seq > 0 {
                at.rem_euclid(max_seq as i64)
            } else {
                at
            };
            if pos < 0 || pos >= max_seq as i64 {
                return Err(OpError::value(format!(
                    "TensorScatter writes position {at} of a cache of {max_seq} on axis {axis} \
                     (write index {start}, {seq} updates)"
                )));
            }
            let base = (row * max_seq + pos as usize) * inner;
            targets.extend(base..base + inner);
        }
    }
    scatter_apply(cache, update, &targets, ScatterReduction::None)
}
