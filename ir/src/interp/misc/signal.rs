//! Reference evaluation of the signal ops.

use crate::op::MiscOp;
use crate::Tensor;

/// Evaluates a signal op.
pub(super) fn eval(op: &MiscOp, _inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
    Err(format!(
        "{} is not implemented in the reference interpreter yet",
        crate::op::OpFamily::name(op)
    ))
}
