//! Ops that move every element to a new place: transpose, expand, tile, the
//! triangle of `Trilu`, `Where`'s selection, depth/space rearrangements and
//! sequence reversal.

use super::super::broadcast::{broadcast_shapes, BroadcastIndex};
use super::super::strides::row_major_strides;
use super::elements::{element_bytes, gather_with, index_values, input, take};
use crate::error::OpError;
use crate::Tensor;

/// [`crate::op::LayoutOp::Transpose`] by `perm`.
pub(super) fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor, OpError> {
    let r = x.rank();
    if perm.len() != r || !(0..r).all(|i| perm.contains(&i)) {
        return Err(OpError::attribute(format!(
            "perm {perm:?} is not a permutation of rank {r}"
        )));
    }
    let st = row_major_strides(x.shape());
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    gather_with(x, x.dtype(), shape, None, |i| {
        Ok(Some(i.iter().zip(&pst).map(|(a, s)| a * s).sum()))
    })
}

/// [`crate::op::LayoutOp::Expand`] to the shape in operand 1 (numpy broadcasting).
pub(super) fn expand(x: &Tensor, inputs: &[&Tensor], name: &str) -> Result<Tensor, OpError> {
    let target = index_values(input(inputs, 1, name)?, "expand shape")?;
    if target.iter().any(|&d| d < 0) {
        return Err(OpError::shape(format!("invalid expand shape {target:?}")));
    }
    let target: Vec<usize> = target.iter().map(|&d| d as usize).collect();
    let out = broadcast_shapes(&[x.shape(), &target])
        .ok_or_else(|| OpError::shape(format!("cannot expand {:?} to {target:?}", x.shape())))?;
    let idx = BroadcastIndex::new(x.shape(), &out).indices();
    take(x, out, &idx)
}

/// [`crate::op::LayoutOp::Tile`] by the repeats in operand 1.
pub(super) fn tile(x: &Tensor, inputs: &[&Tensor], name: &str) -> Result<Tensor, OpError> {
    let reps = index_values(input(inputs, 1, name)?, "tile repeats")?;
    if reps.len() != x.rank() || reps.iter().any(|&r| r < 0) {
        return Err(OpError::shape(format!(
            "tile repeats {reps:?} invalid for shape {:?}",
            x.shape()
        )));
    }
    let shape = x
        .shape()
        .iter()
        .zip(&reps)
        .map(|(&d, &r)| d.checked_mul(r as usize))
        .collect::<Option<Vec<usize>>>()
        .filter(|s| crate::shape::checked_product(s).is_some())
        .ok_or_else(|| {
            OpError::too_large(format!("Tile of {:?} by {reps:?} overflows", x.shape()))
        })?;
    let st = row_major_strides(x.shape());
    let dims = x.shape().to_vec();
    gather_with(x, x.dtype(), shape, None, |idx| {
        Ok(Some(
            idx.iter()
                .zip(&dims)
                .zip(&st)
                .map(|((&i, &d), &s)| (i % d) * s)
                .sum(),
        ))
    })
}

/// [`crate::op::LayoutOp::Trilu`]: the upper or lower triangle from diagonal k (operand 1), zeros elsewhere.
pub(super) fn trilu(x: &Tensor, inputs: &[&Tensor], upper: bool) -> Result<Tensor, OpError> {
    let k = match inputs.get(1) {
        Some(k) => k
            .scalar_i64()
            .ok_or(OpError::value("Trilu k must be a scalar"))?,
        None => 0,
    };
    if x.rank() < 2 {
        return Err(OpError::shape("Trilu needs rank >= 2"));
    }
    let r = x.rank();
    let st = row_major_strides(x.shape());
    let zero = element_bytes(x.dtype(), 0.0);
    gather_with(x, x.dtype(), x.shape().to_vec(), Some(&zero), |idx| {
        let d = idx[r - 1] as i64 - idx[r - 2] as i64;
        let keep = if upper { d >= k } else { d <= k };
        Ok(keep.then(|| idx.iter().zip(&st).map(|(i, s)| i * s).sum()))
    })
}

/// [`crate::op::LayoutOp::Where`]: operand 1 where `x` holds, else operand 2 (broadcast).
pub(super) fn select(x: &Tensor, inputs: &[&Tensor], name: &str) -> Result<Tensor, OpError> {
    let (a, b) = (input(inputs, 1, name)?, input(inputs, 2, name)?);
    if a.dtype() != b.dtype() {
        return Err(OpError::dtype("Where branches differ in dtype"));
    }
    let out = broadcast_shapes(&[x.shape(), a.shape(), b.shape()]).ok_or_else(|| {
        format!(
            "shapes {:?}, {:?} and {:?} do not broadcast",
            x.shape(),
            a.shape(),
            b.shape()
        )
    })?;
    let cond = x.to_bool_vec();
    let ci = BroadcastIndex::new(x.shape(), &out).indices();
    let ai = BroadcastIndex::new(a.shape(), &out).indices();
    let bi = BroadcastIndex::new(b.shape(), &out).indices();
    let es = a.dtype().size();
    let (ad, bd) = (a.bytes(), b.bytes());
    let mut bytes = Vec::with_capacity(ci.len() * es);
    for k in 0..ci.len() {
        if cond[ci[k]] {
            bytes.extend_from_slice(&ad[ai[k] * es..(ai[k] + 1) * es]);
        } else {
            bytes.extend_from_slice(&bd[bi[k] * es..(bi[k] + 1) * es]);
        }
    }
    Tensor::from_bytes(a.dtype(), out, bytes.into()).map_err(|e| OpError::shape(e.to_string()))
}

/// [`crate::op::LayoutOp::DepthToSpace`] (DCR, or CRD when `crd`).
pub(super) fn depth_to_space(
    x: &Tensor,
    name: &str,
    blocksize: usize,
    crd: bool,
) -> Result<Tensor, OpError> {
    let (b, crd) = (blocksize, crd);
    let [n, c, h, w] = dims4(x, name)?;
    if b == 0 || c % (b * b) != 0 {
        return Err(OpError::shape(format!(
            "channels {c} not divisible by blocksize² ({b})"
        )));
    }
    let oc = c / (b * b);
    gather_with(x, x.dtype(), vec![n, oc, h * b, w * b], None, |i| {
        let (bi, bj) = (i[2] % b, i[3] % b);
        let ch = if crd {
            i[1] * b * b + bi * b + bj
        } else {
            (bi * b + bj) * oc + i[1]
        };
        Ok(Some(((i[0] * c + ch) * h + i[2] / b) * w + i[3] / b))
    })
}

/// [`crate::op::LayoutOp::SpaceToDepth`].
pub(super) fn space_to_depth(x: &Tensor, name: &str, blocksize: usize) -> Result<Tensor, OpError> {
    let b = blocksize;
    let [n, c, h, w] = dims4(x, name)?;
    if b == 0 || h % b != 0 || w % b != 0 {
        return Err(OpError::shape(format!(
            "spatial dims {h}x{w} not divisible by {b}"
        )));
    }
    gather_with(x, x.dtype(), vec![n, c * b * b, h / b, w / b], None, |i| {
        let (blk, ch) = (i[1] / c, i[1] % c);
        let (bi, bj) = (blk / b, blk % b);
        Ok(Some(
            ((i[0] * c + ch) * h + i[2] * b + bi) * w + i[3] * b + bj,
        ))
    })
}

/// [`crate::op::LayoutOp::ReverseSequence`] by the lengths in operand 1.
pub(super) fn reverse_sequence(
    x: &Tensor,
    inputs: &[&Tensor],
    name: &str,
    batch_axis: usize,
    time_axis: usize,
) -> Result<Tensor, OpError> {
    let lens = index_values(input(inputs, 1, name)?, "sequence lengths")?;
    let (ba, ta) = (batch_axis, time_axis);
    if ba >= x.rank() || ta >= x.rank() || ba == ta {
        return Err(OpError::attribute("invalid batch/time axes"));
    }
    if lens.len() != x.shape()[ba] {
        return Err(OpError::shape(format!(
            "{} sequence lengths for batch size {}",
            lens.len(),
            x.shape()[ba]
        )));
    }
    let tmax = x.shape()[ta] as i64;
    if lens.iter().any(|&l| l < 0 || l > tmax) {
        return Err(OpError::shape(format!(
            "sequence lengths {lens:?} out of range 0..={tmax}"
        )));
    }
    let st = row_major_strides(x.shape());
    gather_with(x, x.dtype(), x.shape().to_vec(), None, |i| {
        let l = lens[i[ba]] as usize;
        let mut flat: usize = i.iter().zip(&st).map(|(a, s)| a * s).sum();
        if i[ta] < l {
            flat = flat - i[ta] * st[ta] + (l - 1 - i[ta]) * st[ta];
        }
        Ok(Some(flat))
    })
}

/// The dims of a rank-4 input, or an error naming `op`.
pub(super) fn dims4(x: &Tensor, op: &str) -> Result<[usize; 4], OpError> {
    x.shape()
        .try_into()
        .map_err(|_| OpError::shape(format!("{op} needs a rank-4 input, got {:?}", x.shape())))
}
