//! Reference evaluation of neural-network ops.

use crate::op::NnOp;
use crate::Tensor;

/// Evaluates an nn-family op.
pub(super) fn eval(
    op: &NnOp,
    _inputs: &[&Tensor],
    _n_outputs: usize,
) -> Result<Vec<Tensor>, String> {
    Err(format!(
        "{} is not implemented in the reference interpreter yet",
        crate::op::OpFamily::name(op)
    ))
}
