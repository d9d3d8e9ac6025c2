//! Reference evaluation of the sample ops.

use crate::op::MiscOp;
use crate::Tensor;

/// Evaluates a sample op.
pub(super) fn eval(op: &MiscOp, _inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
    Err(format!(
        "{} is not implemented in the reference interpreter yet",
        crate::op::OpFamily::name(op)
    ))
}
