//! Reference evaluation of reductions, arg-reductions, scans and top-k.

use crate::op::ReduceOp;
use crate::Tensor;

/// Evaluates a reduction-family op.
pub(super) fn eval(op: &ReduceOp, _inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
    Err(format!(
        "{} is not implemented in the reference interpreter yet",
        crate::op::OpFamily::name(op)
    ))
}
