//! Reference evaluation of layout ops (data movement, shapes, casts, creation).

use crate::op::LayoutOp;
use crate::Tensor;

/// Evaluates a layout-family op.
pub(super) fn eval(
    op: &LayoutOp,
    inputs: &[&Tensor],
    _n_outputs: usize,
) -> Result<Vec<Tensor>, String> {
    match op {
        LayoutOp::Identity => Ok(vec![inputs[0].clone()]),
        LayoutOp::Cast { to } => Ok(vec![inputs[0].cast(*to)]),
        _ => Err(format!(
            "{} is not implemented in the reference interpreter yet",
            crate::op::OpFamily::name(op)
        )),
    }
}
