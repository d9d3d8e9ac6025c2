//! Reference evaluation of composite ops.

use crate::op::CompositeOp;
use crate::Tensor;

/// Evaluates a composite op.
pub(super) fn eval(op: &CompositeOp, _inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
    Err(format!(
        "{} is not implemented in the reference interpreter yet",
        crate::op::OpFamily::name(op)
    ))
}
