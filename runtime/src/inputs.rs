//! The check every executor makes of a run's inputs before touching them.

use kiln_codegen::program::Program;
use kiln_ir::Tensor;

use crate::RunError;

/// Fails unless `inputs` are exactly the program's inputs: as many, each with
/// the dtype and shape the program was specialized for.
pub fn check(program: &Program, inputs: &[Tensor]) -> Result<(), RunError> {
    if inputs.len() != program.inputs.len() {
        return Err(RunError::Input(format!(
            "{} inputs given, the model takes {}",
            inputs.len(),
            program.inputs.len()
        )));
    }
    for ((name, b), t) in program.inputs.iter().zip(inputs) {
        let buf = &program.buffers[*b];
        if t.dtype() != buf.dtype || t.shape() != buf.shape.as_slice() {
            return Err(RunError::Input(format!(
                "input `{name}`: expected {}{:?}, got {}{:?}",
                buf.dtype,
                buf.shape,
                t.dtype(),
                t.shape()
            )));
        }
    }
    Ok(())
}
