//! Host steps: ops kiln generates no code for, evaluated by the reference
//! interpreter on tensors copied out of (and back into) the run's buffers.

use bytes::Bytes;
use kiln_codegen::program::{BufferId, BufferKind, Program};
use kiln_ir::OpError;
use kiln_ir::{Op, Tensor};

use crate::RunError;

/// Evaluates `op` reading `inputs` and writing `outputs` through `ptrs`.
pub fn run<'c>(
    program: &Program,
    node: &str,
    op: &Op,
    inputs: &[BufferId],
    outputs: &[BufferId],
    ptrs: &[*mut u8],
    constant: impl Fn(usize) -> &'c Tensor,
) -> Result<(), RunError> {
    let fail = |e: OpError| RunError::Node {
        node: node.to_string(),
        kind: e.kind,
        message: e.message,
    };
    let args: Vec<Tensor> = inputs
        .iter()
        .map(|&b| {
            let buf = &program.buffers[b];
            if let BufferKind::Const(c) = program.buffers[program.root(b)].kind {
                return constant(c)
                    .reshaped(buf.shape.clone())
                    .map_err(|e| fail(OpError::shape(e.to_string())));
            }
            // SAFETY: the pointer addresses `buf.bytes()` bytes of this run.
            let bytes = unsafe { std::slice::from_raw_parts(ptrs[b], buf.bytes()) };
            Tensor::from_bytes(buf.dtype, buf.shape.clone(), Bytes::copy_from_slice(bytes))
                .map_err(|e| fail(OpError::shape(e.to_string())))
        })
        .collect::<Result<_, _>>()?;
    let refs: Vec<&Tensor> = args.iter().collect();
    let results = kiln_ir::interp::eval_op(op, &refs, outputs.len()).map_err(fail)?;
    for (&b, t) in outputs.iter().zip(&results) {
        let buf = &program.buffers[b];
        if t.dtype() != buf.dtype || t.shape() != buf.shape.as_slice() {
            return Err(fail(OpError::dtype(format!(
                "produced {}{:?} where {}{:?} was planned",
                t.dtype(),
                t.shape(),
                buf.dtype,
                buf.shape
            ))));
        }
        // SAFETY: the output buffer holds exactly the tensor's bytes.
        unsafe { std::ptr::copy_nonoverlapping(t.bytes().as_ptr(), ptrs[b], buf.bytes()) };
    }
    Ok(())
}
