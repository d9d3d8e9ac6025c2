//! Reference evaluation of layout ops (data movement, shapes, casts, creation).
//!
//! Pure data movement is dtype-agnostic: an op computes, for every output element,
//! which input element it copies (or that it takes a fill value), and the bytes are
//! moved element by element ([`elements`]). Only scatter reductions and `Range`
//! look at values. One module per kind of op: [`shape`] (same elements, new
//! shape), [`movement`] (every element to a new place), [`pieces`] (concat,
//! split, slice), [`gather`] and [`scatter`] (indexed reads and writes),
//! [`pad`], [`create`] (tensors from sizes and values), [`unique`]; `eval` only
//! dispatches.

use crate::error::OpError;
mod create;
mod elements;
mod gather;
mod movement;
mod pad;
mod pieces;
mod scatter;
mod shape;
mod unique;

use crate::op::LayoutOp;
use crate::Tensor;
use elements::input;

/// Evaluates a layout-family op.
pub(super) fn eval(
    op: &LayoutOp,
    inputs: &[&Tensor],
    _n_outputs: usize,
) -> Result<Vec<Tensor>, OpError> {
    let name = crate::op::OpFamily::name(op);
    let x = input(inputs, 0, name)?;
    let operand = |i: usize| input(inputs, i, name);
    let t = match op {
        LayoutOp::Identity => x.clone(),
        LayoutOp::Cast { to, saturate } => x.cast_saturating(*to, *saturate),
        LayoutOp::Reshape { allowzero } => shape::reshape(x, inputs, name, *allowzero)?,
        LayoutOp::Transpose { perm } => movement::transpose(x, perm)?,
        LayoutOp::Squeeze { axes, not_one } => shape::squeeze(x, inputs, axes, not_one)?,
        LayoutOp::Unsqueeze { axes } => shape::unsqueeze(x, inputs, axes)?,
        LayoutOp::Flatten { axis } => shape::flatten(x, *axis)?,
        LayoutOp::Expand => movement::expand(x, inputs, name)?,
        LayoutOp::Concat { axis } => pieces::concat(inputs, *axis)?,
        LayoutOp::Split { axis, sizes } => return pieces::split_by(x, inputs, *axis, sizes),
        LayoutOp::Slice => pieces::slice(inputs)?,
        LayoutOp::Gather { axis } => gather::gather(x, operand(1)?, *axis)?,
        LayoutOp::GatherElements { axis } => gather::gather_elements(x, operand(1)?, *axis)?,
        LayoutOp::GatherND { batch_dims } => gather::gather_nd(x, operand(1)?, *batch_dims)?,
        LayoutOp::ScatterND { reduction } => {
            scatter::scatter_nd(x, operand(1)?, operand(2)?, *reduction)?
        }
        LayoutOp::ScatterElements { axis, reduction } => {
            scatter::scatter_elements(x, operand(1)?, operand(2)?, *axis, *reduction)?
        }
        LayoutOp::TensorScatter { axis, circular } => {
            scatter::tensor_scatter(x, operand(1)?, inputs.get(2).copied(), *axis, *circular)?
        }
        LayoutOp::Tile => movement::tile(x, inputs, name)?,
        LayoutOp::Pad { mode } => pad::pad(inputs, *mode)?,
        LayoutOp::Shape { start, end } => shape::shape_of(x, *start, *end)?,
        LayoutOp::Size => Tensor::scalar(x.numel() as i64),
        LayoutOp::ConstantOfShape { dtype, value } => create::constant_of_shape(x, *dtype, *value)?,
        LayoutOp::Range => create::range(inputs)?,
        LayoutOp::Trilu { upper } => movement::trilu(x, inputs, *upper)?,
        LayoutOp::OneHot { axis } => create::one_hot(inputs, *axis)?,
        LayoutOp::NonZero => gather::nonzero(x)?,
        LayoutOp::Where => movement::select(x, inputs, name)?,
        LayoutOp::DepthToSpace { blocksize, crd } => {
            movement::depth_to_space(x, name, *blocksize, *crd)?
        }
        LayoutOp::SpaceToDepth { blocksize } => movement::space_to_depth(x, name, *blocksize)?,
        LayoutOp::ReverseSequence {
            batch_axis,
            time_axis,
        } => movement::reverse_sequence(x, inputs, name, *batch_axis, *time_axis)?,
        LayoutOp::Compress { axis } => gather::compress(x, inputs, name, *axis)?,
        LayoutOp::EyeLike { k, dtype } => create::eye_like(x, *k, *dtype)?,
        LayoutOp::Unique { axis, sorted } => return unique::unique(x, *axis, *sorted),
        LayoutOp::BitCast { to } => shape::bitcast(x, *to)?,
    };
    Ok(vec![t])
}

#[cfg(test)]
mod tests;
